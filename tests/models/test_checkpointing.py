"""Activation checkpointing is exact: losses, every gradient (PLIF w included) and the running statistics
after several optimizer steps are bit-identical to keeping every activation, with drop path's random
masks; forward observers count each forward once."""
import pytest
import torch
import torch.nn.functional as F

from svformer import create_model
from svformer.analysis.operations import OperationCounter
from svformer.snn import FiringRateMonitor


def run(mode, accelerate, steps=3, monitor=False):
    torch.manual_seed(0)
    model = create_model("svformer_tiny", num_frames=4, img_size=64, drop_path_rate=0.2, checkpointing=mode,
                         accelerate=accelerate)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    losses, rates = [], None
    for i in range(steps):
        x = torch.randn(2, 3, 4, 64, 64, generator=torch.Generator().manual_seed(i))
        with FiringRateMonitor(model) if monitor else torch.enable_grad() as mon:
            loss = F.cross_entropy(model(x), torch.tensor([1, 2]))
            opt.zero_grad()
            loss.backward()  # the recomputation runs here, inside the monitor
        if monitor:
            rates = mon.rates()
        grads = {k: p.grad.clone() for k, p in model.named_parameters()}
        opt.step()
        losses.append(loss.item())
    return losses, grads, {k: b.clone() for k, b in model.named_buffers()}, model, rates


@pytest.mark.parametrize("accelerate", [True, False])
@pytest.mark.parametrize("mode", ["stage", "block"])
def test_bit_identical_to_keeping_activations(mode, accelerate):
    losses, grads, buffers, _, _ = run("none", accelerate)
    c_losses, c_grads, c_buffers, model, _ = run(mode, accelerate)
    assert c_losses == losses
    assert any(k.endswith(".w") for k in grads)  # PLIF time constants
    for k in grads:
        assert torch.equal(c_grads[k], grads[k]), k
    assert any(k.endswith("running_mean") for k in buffers)
    for k in buffers:
        assert torch.equal(c_buffers[k], buffers[k]), k  # running statistics updated once per step
    # Recomputed units drop their neurons' final potentials (they would keep the recomputation's graph).
    assert all(m.v is None for m in model.blocks1.modules() if hasattr(m, "dynamics"))


def test_observers_count_each_forward_once():
    *_, rates = run("none", True, steps=1, monitor=True)
    *_, c_rates = run("block", True, steps=1, monitor=True)
    assert c_rates == rates
    model = create_model("svformer_tiny", num_frames=4, img_size=64, checkpointing="block").train()
    x = torch.randn(2, 3, 4, 64, 64)
    with OperationCounter(model) as counter:
        model(x).sum().backward()
    plain = create_model("svformer_tiny", num_frames=4, img_size=64).train()
    plain.load_state_dict(model.state_dict())
    with OperationCounter(plain) as reference:
        plain(x).sum().backward()
    assert [(r.name, r.dense, r.elements) for r in counter.records()] == \
        [(r.name, r.dense, r.elements) for r in reference.records()]


def test_hooks_run_between_units(monkeypatch):
    from svformer.models import checkpointing
    from svformer.snn.recompute import discarding, recomputing

    calls = []
    monkeypatch.setattr(checkpointing, "_between_units", [])
    checkpointing.between_units(lambda: calls.append((discarding(), recomputing())))
    checkpointing.between_units(checkpointing._between_units[0])  # registered once
    model = create_model("svformer_tiny", num_frames=4, img_size=64, checkpointing="block").train()
    model(torch.randn(2, 3, 4, 64, 64)).sum().backward()
    # svformer_tiny's units: 4 patch embeddings, 2 conv blocks in two steps each, 3 attention blocks, the
    # local path; each unit ends its first forward and starts its recomputation outside both passes.
    assert calls == [(False, False)] * (2 * 12)
    calls.clear()
    model.eval()(torch.randn(2, 3, 4, 64, 64))
    assert calls == []


def test_evaluation_and_errors():
    model = create_model("svformer_tiny", num_frames=4, img_size=64, checkpointing="block").eval()
    plain = create_model("svformer_tiny", num_frames=4, img_size=64).eval()
    plain.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 4, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), plain(x))  # no recomputation outside training
    with pytest.raises(ValueError, match="unknown checkpointing 'layer'; choose one of"):
        create_model("svformer_tiny", checkpointing="layer")
