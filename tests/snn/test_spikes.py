"""1-byte saved spikes: exact gradients, real savings, and only for tensors that are still spikes."""
import torch

from svformer import SVFormer
from svformer.snn import ParametricLIFNode, compact_saved_spikes, is_spikes

SMALL = dict(embed_dim=(16, 32, 48, 64), depth=(1, 1, 1, 1), head_dim=16, img_size=64, num_frames=3,
             v_threshold=0.3)


def _grads(compact: bool, x):
    torch.manual_seed(0)
    model = SVFormer(num_classes=5, compact_spikes=False, recompute_norm=False, **SMALL).train()
    with compact_saved_spikes() if compact else torch.enable_grad() as stats:
        loss = model(x).square().sum()
    loss.backward()
    return {n: p.grad for n, p in model.named_parameters()}, stats


def test_compact_spikes_give_bit_identical_gradients_and_save_three_quarters():
    x = torch.randn(2, 3, 3, 64, 64)
    plain, _ = _grads(False, x)
    compact, stats = _grads(True, x)
    for name, grad in plain.items():
        assert torch.equal(grad, compact[name]), name
    # Every conv/linear after a neuron (at least 2 per block), the attention products and the head.
    assert stats.tensors >= 12
    assert stats.packed_bytes * 4 == stats.float_bytes > 0


def test_model_compacts_by_default_and_only_when_building_a_graph(monkeypatch):
    import svformer.models.svformer as module

    entered = []
    real = module.compact_saved

    def spy(spikes, norm_outputs):
        entered.append((spikes, norm_outputs))
        return real(spikes, norm_outputs)

    monkeypatch.setattr(module, "compact_saved", spy)
    x = torch.randn(2, 3, 3, 64, 64)
    model = SVFormer(num_classes=5, **SMALL).train()
    model(x).sum().backward()
    assert entered == [(True, True)]
    with torch.no_grad():
        model(x)
    SVFormer(num_classes=5, compact_spikes=False, **SMALL).train()(x).sum().backward()
    assert entered == [(True, True), (False, True)]
    SVFormer(num_classes=5, compact_spikes=False, recompute_norm=False, **SMALL).train()(x).sum().backward()
    assert len(entered) == 2


def test_only_unmodified_spikes_are_recognised():
    neuron = ParametricLIFNode()
    s = neuron(torch.randn(4, 2, 8, requires_grad=True) * 3)
    assert is_spikes(s) and is_spikes(s[1:].transpose(-1, -2))
    assert not is_spikes(s * 1.0)  # a new tensor, not the neuron's output
    s.mul_(0.5)  # in place: no longer binary
    assert not is_spikes(s) and not is_spikes(s[0])
    with torch.no_grad():
        assert not is_spikes(ParametricLIFNode()(torch.randn(4, 2, 8)))  # no graph: not marked
