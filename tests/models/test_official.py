"""The proof that svformer is the authors' model: their golden outputs reproduced from their weights."""
import pytest
import torch
import torch.nn.functional as F

from svformer import create_model, load_official
from svformer.models import official_to_svformer_key, svformer_to_official_key
from svformer.cpu import accelerate
from svformer.snn import FiringRateMonitor

from ..golden import golden_model, load_golden, model_from_config, reference_path

FIXTURES = ["official_small.pt", "official_dvs.pt"]


def _official_shapes():
    shapes = {}
    for line in reference_path("official_full_state_dict.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            key, shape = line.split(" ", 1)
            shapes[key] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    return shapes


def _loaded(golden, backend, memory_format="channels_last"):
    """The fixture's model, ``backend`` 'accelerated' (svformer.cpu) or 'plain', maps stored ``memory_format``."""
    model = golden_model(golden)
    accelerate(model, backend == "accelerated")
    model.memory_format = memory_format
    return model


def _official_rates(monitor):
    return {svformer_to_official_key(name + ".")[:-1]: r for name, r in monitor.rates().items()}


def _rel(a, b):
    return float((a.detach() - b).norm() / b.norm())


@pytest.fixture(params=FIXTURES, scope="module")
def golden(request):
    return load_golden(request.param)


@pytest.mark.parametrize("backend,memory_format", [("accelerated", "channels_last"), ("accelerated", "contiguous"),
                                                   ("plain", "contiguous")])
def test_eval_logits_and_firing_rates(golden, backend, memory_format):
    model = _loaded(golden, backend, memory_format).eval()
    with torch.no_grad(), FiringRateMonitor(model) as mon:
        logits = model(golden["input"])
    assert _rel(logits, golden["logits_eval"]) < 1e-4
    rates = _official_rates(mon)
    assert rates.keys() == golden["firing_rates_eval"].keys()
    for name, ref in golden["firing_rates_eval"].items():
        assert rates[name] == pytest.approx(ref, abs=1e-6), name


@pytest.mark.parametrize("backend,checkpointing", [("accelerated", "none"), ("plain", "none"), ("accelerated", "block"),
                                                   ("plain", "stage")])
def test_train_logits_loss_gradients_and_firing_rates(golden, backend, checkpointing):
    # In the contiguous layout our convolutions sum in the authors' order; channels-last is checked below.
    model = _loaded(golden, backend, "contiguous").train()
    model.checkpointing = checkpointing  # activation checkpointing recomputes the same function
    with FiringRateMonitor(model) as mon:
        logits = model(golden["input"])
    loss = F.cross_entropy(logits, golden["target"])
    loss.backward()
    assert _rel(logits, golden["logits_train"]) < 1e-4
    assert float(loss.detach()) == pytest.approx(float(golden["loss_train"]), rel=1e-5)
    for name, ref in golden["firing_rates_train"].items():
        assert _official_rates(mon)[name] == pytest.approx(ref, abs=1e-6), name

    grads = {svformer_to_official_key(n): p.grad for n, p in model.named_parameters()}
    assert grads.keys() == golden["grads_train"].keys()
    scale = max(float(g.abs().max()) for g in golden["grads_train"].values())
    for name, ref in golden["grads_train"].items():
        ours = grads[name]
        if _bias_before_batchnorm(name):
            # A train-mode BN removes any constant shift, so the exact gradient of a bias right before it
            # is zero; both implementations return float32 rounding noise of the summed input gradient.
            # Check that both are negligible next to the gradient of the same layer's weight (which is 0
            # where the layer's input spikes are all 0) and to the largest gradient in the model.
            weight = golden["grads_train"][name[: -len("bias")] + "weight"]
            limit = 1e-2 * float(weight.abs().max()) + 1e-5 * scale
            assert float(ours.abs().max()) <= limit and float(ref.abs().max()) <= limit, name
            continue
        err = float((ours - ref).abs().max())
        assert err <= 1e-4 * float(ref.abs().max()) + 1e-7, f"{name}: max error {err:.3g}"


def test_channels_last_is_the_same_function(golden):
    # Channels-last convolutions sum in another order; in float32 the DVS fixture's BN variances (~1e-8)
    # amplify that rounding to ~3e-3 in some gradients. In float64 the two layouts agree to rounding.
    results = []
    for memory_format in ("contiguous", "channels_last"):
        model = _loaded(golden, "accelerated", memory_format).double().train()
        logits = model(golden["input"].double())
        F.cross_entropy(logits, golden["target"]).backward()
        results.append((logits.detach(), {n: p.grad for n, p in model.named_parameters()}))
    (logits_a, grads_a), (logits_b, grads_b) = results
    torch.testing.assert_close(logits_b, logits_a, rtol=1e-10, atol=1e-12)
    scale = max(float(g.abs().max()) for g in grads_a.values())
    for name, g in grads_a.items():
        torch.testing.assert_close(grads_b[name], g, rtol=1e-9, atol=1e-11 * scale, msg=name)


def _bias_before_batchnorm(name):
    # Every conv/linear of SVFormer reaches a BatchNorm through linear, shift-preserving layers, except
    # the classifier and CBlock.conv1, whose shift the zero-padded 5x5 conv makes position-dependent.
    # Norms' own biases are affine parameters with real gradients.
    return (name.endswith(".bias") and name not in ("head.bias",) and not name.endswith("conv1.bias")
            and "norm" not in name and "BN" not in name and "dwconv_bn" not in name)


def test_key_mapping_round_trip():
    names = list(_official_shapes())
    model = create_model("svformer_paper")
    ours = set(model.state_dict())
    assert {official_to_svformer_key(n) for n in names} == ours
    assert all(official_to_svformer_key(svformer_to_official_key(k)) == k for k in ours)


def test_full_paper_state_dict_shapes_match():
    shapes = _official_shapes()
    state = create_model("svformer_paper").state_dict()
    fake = {k: torch.zeros(s, dtype=state[official_to_svformer_key(k)].dtype) for k, s in shapes.items()}
    load_official(create_model("svformer_paper"), fake)


def test_load_from_pyth_checkpoint(tmp_path, golden):
    path = tmp_path / "best_Valtop1Err_checkpoint.pyth"
    torch.save({"epoch": 600, "model_state": golden["state_dict"], "optimizer_state": {}, "cfg": "..."}, path)
    model = load_official(model_from_config(golden["config"]), path).eval()
    with torch.no_grad():
        assert _rel(model(golden["input"]), golden["logits_eval"]) < 1e-4


def test_strict_errors(tmp_path, golden):
    cfg = golden["config"]
    state = dict(golden["state_dict"])
    wrong_classes = model_from_config({**cfg, "num_classes": cfg["num_classes"] + 1})
    with pytest.raises(ValueError, match=r"shape mismatch for 'head.weight'"):
        load_official(wrong_classes, state)
    missing = dict(state)
    del missing["lpBN.running_var"]
    with pytest.raises(ValueError, match=r"missing 1 key\(s\), first 'lpBN.running_var'"):
        load_official(model_from_config(cfg), missing)
    extra = dict(state, **{"blocks9.0.attn.qkv.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="blocks9.0.attn.qkv.weight"):
        load_official(model_from_config(cfg), extra)
    with pytest.raises(FileNotFoundError, match="nowhere.pyth"):
        load_official(model_from_config(cfg), tmp_path / "nowhere.pyth")
    bad = tmp_path / "corrupt.pyth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt.pyth"):
        load_official(model_from_config(cfg), bad)
