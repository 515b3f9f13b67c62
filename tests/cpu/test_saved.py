"""Per-step BatchNorm outputs saved as a recipe (`cpu.saved`): recomputed with the forward's bits, so
gradients are bit-identical, and only while the BN's input and output are unmodified."""
import pytest
import torch

from svformer import SVFormer
from svformer.cpu.neuron import NeuronKernel
from svformer.cpu.norm import PerStepNormKernel
from svformer.cpu.saved import compact_saved
from svformer.snn import ParametricLIFNode, TimeBatchNorm

from .test_spikes import SMALL


def _train_step(recompute: bool, x, memory_format="channels_last"):
    torch.manual_seed(0)
    model = SVFormer(num_classes=5, accelerate={"recompute_norm": recompute,
                                                "channels_last": memory_format == "channels_last"}, **SMALL).train()
    model(x).square().sum().backward()
    return model


@pytest.mark.parametrize("memory_format", ["channels_last", "contiguous"])
def test_recomputed_norm_outputs_give_bit_identical_training(memory_format):
    x = torch.randn(2, 3, 3, 64, 64)
    kept = _train_step(False, x, memory_format)
    recomputed = _train_step(True, x, memory_format)
    for (name, p), q in zip(kept.named_parameters(), recomputed.parameters()):
        assert torch.equal(p.grad, q.grad), name
    for (name, b), c in zip(kept.named_buffers(), recomputed.buffers()):
        assert torch.equal(b, c), name


def test_every_norm_output_a_neuron_reads_is_recomputed():
    """The MLPs' hidden BN -> neuron (4 in SMALL) and each patch embedding's output, read by the next block's
    first neuron (stages 1, 2 and 4; stage 3's twice: its attention block and the local path). The
    attention's q/k/v neurons read copies of slices of their BN's output, which are kept."""
    torch.manual_seed(0)
    model = SVFormer(num_classes=5, **SMALL).train()
    model.saved_tensors = None  # the model's own compaction off: this test wraps the forward itself
    with compact_saved(spikes=False, norm_outputs=True) as stats:
        loss = model(torch.randn(2, 3, 3, 64, 64)).square().sum()
    loss.backward()
    assert stats.recomputed == sum(SMALL["depth"]) + 5
    assert stats.recomputed_bytes > 0 and stats.tensors == 0


def _bn_neuron(channels_last):
    torch.manual_seed(0)
    bn = TimeBatchNorm(6, num_steps=4, channels_last=channels_last).train()
    bn.kernel = PerStepNormKernel(recipe=True)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.uniform_(-0.5, 0.5)
    neuron = ParametricLIFNode(detach_reset=True)
    neuron.kernel = NeuronKernel()
    return bn, neuron


@pytest.mark.parametrize("channels_last", [False, True])
def test_bn_then_neuron_gradients_match_without_recompute(channels_last):
    shape = (4, 3, 5, 6) if channels_last else (4, 3, 6, 5, 5)
    x = torch.randn(shape)
    grads = []
    for recompute in (False, True):
        bn, neuron = _bn_neuron(channels_last)
        xi = x.clone().requires_grad_()
        with compact_saved(spikes=False, norm_outputs=recompute) as stats:
            out = neuron(bn(xi).transpose(0, 0))  # a view of the BN output reaches the neuron
        out.mul(torch.linspace(-1, 1, out.numel()).view(out.shape)).sum().backward()
        grads.append((xi.grad, bn.weight.grad, bn.bias.grad, neuron.w.grad))
        assert stats.recomputed == int(recompute)
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def test_an_output_written_in_place_is_kept_not_recomputed():
    bn, neuron = _bn_neuron(False)
    x = torch.randn(4, 3, 6, 5, 5, requires_grad=True)
    with compact_saved(spikes=False) as stats:
        y = bn(x)
        y.mul_(1.5)
        neuron(y).sum().backward()
    assert stats.recomputed == 0 and x.grad is not None


def test_an_input_modified_after_the_forward_is_a_clear_error():
    bn, neuron = _bn_neuron(False)
    x = torch.randn(4, 3, 6, 5, 5)
    conv_out = x.clone().requires_grad_()
    h = conv_out * 1.0  # the BN input, modified in place after the forward below
    with compact_saved(spikes=False):
        s = neuron(bn(h))
    with torch.no_grad():
        h.add_(1.0)
    with pytest.raises(RuntimeError, match="modified in place"):
        s.sum().backward()
