"""1-byte saved spikes: exact gradients, real savings, and only for tensors that are still spikes."""
import torch

from svformer import SVFormer
from svformer.cpu.neuron import NeuronKernel
from svformer.cpu.saved import compact_saved
from svformer.cpu.spikes import is_spikes
from svformer.snn import ParametricLIFNode

SMALL = dict(embed_dim=(16, 32, 48, 64), depth=(1, 1, 1, 1), head_dim=16, img_size=64, num_frames=3,
             v_threshold=0.3)


def _grads(compact: bool, x):
    torch.manual_seed(0)
    model = SVFormer(num_classes=5, **SMALL).train()
    model.saved_tensors = None  # the model's own compaction off: this test wraps the forward itself
    with compact_saved(norm_outputs=False) if compact else torch.enable_grad() as stats:
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
    import svformer.cpu.saved as module

    entered = []
    real = module.compact_saved

    def spy(spikes, norm_outputs, alloc):
        entered.append((spikes, norm_outputs))
        return real(spikes, norm_outputs, alloc)

    monkeypatch.setattr(module, "compact_saved", spy)
    x = torch.randn(2, 3, 3, 64, 64)
    model = SVFormer(num_classes=5, **SMALL).train()
    model(x).sum().backward()
    assert entered == [(True, True)]
    with torch.no_grad():
        model(x)
    SVFormer(num_classes=5, accelerate={"compact_spikes": False}, **SMALL).train()(x).sum().backward()
    assert entered == [(True, True), (False, True)]
    SVFormer(num_classes=5, accelerate={"compact_spikes": False, "recompute_norm": False},
             **SMALL).train()(x).sum().backward()
    SVFormer(num_classes=5, accelerate=False, **SMALL).train()(x).sum().backward()
    assert len(entered) == 2


def _marking_neuron():
    neuron = ParametricLIFNode()
    neuron.kernel = NeuronKernel(mark=True)
    return neuron


def test_only_unmodified_spikes_are_recognised():
    neuron = _marking_neuron()
    s = neuron(torch.randn(4, 2, 8, requires_grad=True) * 3)
    assert is_spikes(s) and is_spikes(s[1:].transpose(-1, -2))
    assert not is_spikes(s * 1.0)  # a new tensor, not the neuron's output
    s.mul_(0.5)  # in place: no longer binary
    assert not is_spikes(s) and not is_spikes(s[0])
    with torch.no_grad():
        assert not is_spikes(_marking_neuron()(torch.randn(4, 2, 8)))  # no graph: not marked
    assert not is_spikes(ParametricLIFNode()(torch.randn(4, 2, 8, requires_grad=True)))  # plain: never marked
