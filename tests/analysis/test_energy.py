"""Energy protocols, the recount of the authors' UCF101 figure, and the script interface."""
import json

import pytest

from svformer import create_model
from svformer.analysis import PROTOCOLS, trace_operations, with_rates
from svformer.analysis.estimate import AUTHORS_UCF101, estimate_from_data, estimate_from_rates, load_rates
from svformer.cli import main


@pytest.fixture(scope="module")
def authors_estimate():
    model = create_model("svformer_paper")
    return estimate_from_rates(model, (1, 3, 16, 224, 224), load_rates(AUTHORS_UCF101), AUTHORS_UCF101)


def test_paper_protocol_reproduces_the_shape_correct_recount(authors_estimate):
    # The paper protocol on the paper model: MAC layers 2.759 G -> 12.69 mJ, AC layers 3.765 G -> 3.39 mJ, about 16.1 mJ.
    rep = authors_estimate.reports["paper"]
    assert rep.mac / 1e9 == pytest.approx(2.759, abs=5e-4)
    assert rep.ac / 1e9 == pytest.approx(3.765, abs=5e-4)
    assert rep.total_mj == pytest.approx(16.08, abs=0.01)
    rows = {r.name: r for r in rep.rows}
    # The largest AC term: patch_embed2.proj, 6.58 G dense x 18.037 %.
    assert rows["patch_embed2.proj"].ac / 1e9 == pytest.approx(6.58 * 0.18037, rel=2e-3)
    assert rows["patch_embed1.proj"].mac == 700_055_552  # the spec's true count, bias included


def test_full_protocol_adds_attention_bn_and_neurons(authors_estimate):
    paper, full = authors_estimate.reports["paper"], authors_estimate.reports["full"]
    ssa = sum(r.ac for r in full.rows if r.kind == "matmul")
    assert ssa / 1e9 == pytest.approx(0.059, abs=1e-3)  # spec 7.3: SSA ACs 0.059 G
    assert full.total_mj > paper.total_mj
    memory, ann = authors_estimate.reports["memory"], authors_estimate.reports["dense_ann"]
    assert memory.total_mj > full.total_mj and memory.extra_pj > 0
    assert ann.mac == pytest.approx(38_189_558_784 + sum(r.bias for r in trace_operations(
        create_model("svformer_paper"), (1, 3, 16, 224, 224)) if r.kind in ("conv", "linear")))
    assert authors_estimate.summary()["ann_to_snn_energy_ratio"] == pytest.approx(ann.total_mj / paper.total_mj)


def test_constants_are_parameters():
    traced = trace_operations(create_model("svformer_tiny"), (1, 3, 8, 64, 64))
    records = with_rates(traced, {r.name: 0.1 for r in traced if r.kind == "neuron"})
    base = PROTOCOLS["paper"](records)
    doubled = PROTOCOLS["paper"](records, e_mac=9.2, e_ac=1.8)
    assert doubled.total_pj == pytest.approx(2 * base.total_pj)


def test_rates_accept_both_namings_and_reject_bad_input():
    model = create_model("svformer_tiny")
    records = trace_operations(model, (1, 3, 8, 64, 64))
    names = [r.name for r in records if r.kind == "neuron"]
    ours = {n: 0.2 for n in names}
    authors = {("lplif" if n == "local.lif" else "lif_bf_head" if n == "head_lif" else n): 0.2 for n in names}
    a = PROTOCOLS["paper"](with_rates(records, ours)).total_pj
    b = PROTOCOLS["paper"](with_rates(records, authors)).total_pj
    assert a == b
    with pytest.raises(ValueError, match="must be a number in \\[0, 1\\]"):
        with_rates(records, {**ours, names[0]: 16.7})
    with pytest.raises(ValueError, match="no rate for 1 neuron layer"):
        with_rates(records, {n: 0.2 for n in names[1:]})
    with pytest.raises(ValueError, match="not a neuron layer"):
        with_rates(records, {**ours, "blocks9.0.act1": 0.1})


def test_measured_estimate_uses_real_spikes():
    # The authors' small golden model (calibrated so every layer fires): measured input rates must be the
    # authors' own firing rates, and the same rates given as a file must give the same paper energy.
    from svformer.models import svformer_to_official_key

    from ..golden import golden_model, load_golden

    golden = load_golden("official_small.pt")
    model = golden_model(golden)
    measured = estimate_from_data(model, [golden["input"]])
    rates = {svformer_to_official_key(k + ".")[:-1]: v for k, v in measured.rates.items()}
    assert rates == pytest.approx(golden["firing_rates_eval"], abs=1e-6)
    from_rates = estimate_from_rates(model, (1, *golden["input"].shape[1:]), measured.rates)
    assert measured.reports["paper"].total_pj == pytest.approx(from_rates.reports["paper"].total_pj, rel=1e-9)
    # K^T V measured exactly never exceeds the min(rate_K, rate_V) bound used when only rates are known.
    for name in [r.name for r in measured.reports["full"].rows if r.name.endswith("kv_matmul")]:
        exact = next(r.ac for r in measured.reports["full"].rows if r.name == name)
        bound = next(r.ac for r in from_rates.reports["full"].rows if r.name == name)
        assert exact <= bound + 1e-6


def test_cli_script_interface(tmp_path, capsys):
    rates = tmp_path / "rates.json"
    rates.write_text(json.dumps(load_rates(AUTHORS_UCF101)))
    out = tmp_path / "out.json"
    assert main(["energy", "--model", "svformer_paper", "--firing-rates", str(rates), "--json", str(out),
                 "--plots", str(tmp_path / "plots")]) == 0
    data = json.loads(out.read_text())
    for protocol in ("paper", "full", "memory", "dense_ann"):
        assert {"total_mJ", "mac_G", "ac_G"} <= data[protocol].keys()
    assert data["paper"]["total_mJ"] == pytest.approx(16.08, abs=0.01)
    assert (tmp_path / "plots" / "firing_rates.png").stat().st_size > 1000
    assert "16.080" in capsys.readouterr().out


def test_cli_errors(tmp_path):
    with pytest.raises(SystemExit, match="firing-rates file not found"):
        main(["energy", "--model", "svformer_paper", "--firing-rates", str(tmp_path / "none.json")])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SystemExit, match="not valid JSON"):
        main(["energy", "--model", "svformer_paper", "--firing-rates", str(bad)])
