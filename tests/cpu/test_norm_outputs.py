"""BatchNorm outputs and residual sums that a neuron reads are recomputed in its backward (`cpu.recipes`)
with the forward's bits, and only while the BN's output and input are unmodified."""
import pytest
import torch

from svformer import SVFormer
from svformer.cpu import compiled
from svformer.cpu.neuron import NeuronKernel
from svformer.cpu.norm import PerStepNormKernel
from svformer.cpu.recipes import Outputs
from svformer.snn import ParametricLIFNode, TimeBatchNorm

from .test_compact import SMALL


def _train_step(recompute: bool, x, memory_format="channels_last", **kwargs):
    torch.manual_seed(0)
    model = SVFormer(num_classes=5, accelerate={"recompute_norm": recompute,
                                                "channels_last": memory_format == "channels_last"},
                     **SMALL, **kwargs).train()
    model(x).square().sum().backward()
    return model


def _outputs(model) -> Outputs:
    return next(m.kernel.outputs for m in model.modules() if isinstance(m, TimeBatchNorm))


@pytest.mark.parametrize("memory_format", ["channels_last", "contiguous"])
def test_recomputed_norm_outputs_give_bit_identical_training(memory_format):
    x = torch.randn(2, 3, 3, 64, 64)
    kept = _train_step(False, x, memory_format)
    recomputed = _train_step(True, x, memory_format)
    for (name, p), q in zip(kept.named_parameters(), recomputed.parameters()):
        assert torch.equal(p.grad, q.grad), name
    for (name, b), c in zip(kept.named_buffers(), recomputed.buffers()):
        assert torch.equal(b, c), name
    assert _outputs(kept) is None


def test_every_norm_output_and_residual_sum_a_neuron_reads_is_recognised():
    """The MLPs' hidden BN -> neuron (4 in SMALL), each patch embedding's output, read by the next block's
    first neuron (stages 1, 2 and 4, the attention blocks through a token view; stage 3's twice: its
    attention block and the local path), the attention's q/k/v neurons, which read slices of their
    BN's output (3 in each of the 2 attention blocks), and the residual sums: each block's first sum,
    read by its MLP, and the sums that end stages 1-3, read by the next patch embedding (the last stage's
    goes to the head through a concatenation, a copy)."""
    expected = sum(SMALL["depth"]) + 5 + 3 * 2 + 4 + 3
    model = _train_step(True, torch.randn(2, 3, 3, 64, 64))
    assert _outputs(model).recognised == expected
    # Checkpointed units: both forwards decide alike, and a unit's input, which the checkpoint keeps, is
    # read as it is (10 reads: each block's, residual step's of the convolutional blocks, and patch
    # embedding's first neuron, the local path's).
    checkpointed = _train_step(True, torch.randn(2, 3, 3, 64, 64), checkpointing="block")
    assert _outputs(checkpointed).recognised == 2 * (expected - 10)


def _bn_neuron(channels_last):
    torch.manual_seed(0)
    outputs = Outputs()
    bn = TimeBatchNorm(6, num_steps=4, channels_last=channels_last).train()
    bn.kernel = PerStepNormKernel(outputs=outputs)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.uniform_(-0.5, 0.5)
    neuron = ParametricLIFNode(detach_reset=True)
    neuron.kernel = NeuronKernel(norm_outputs=outputs)
    return bn, neuron, outputs


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("view", ["none", "whole", "slice"])
def test_bn_then_neuron_gradients_match_without_recompute(channels_last, view, monkeypatch):
    shape = (4, 3, 5, 6) if channels_last else (4, 3, 6, 5, 5)
    x = torch.randn(shape)
    grads = []
    # A BN's whole output is made again inside the compiled loops (``norm``), never as a tensor.
    made_inside, backward = [], compiled.backward
    monkeypatch.setattr(compiled, "backward", lambda *a, **kw: made_inside.append("norm" in kw) or backward(*a, **kw))
    for recompute in (False, True):
        bn, neuron, outputs = _bn_neuron(channels_last)
        if not recompute:
            neuron.kernel = NeuronKernel()
        xi = x.clone().requires_grad_()
        y = bn(xi)
        # The output itself, a view of all of it, or a strided slice of it (a copy inside the neuron).
        out = neuron({"none": y, "whole": y.flatten(2), "slice": y[:, :, 1::2]}[view])
        out.mul(torch.linspace(-1, 1, out.numel()).view(out.shape)).sum().backward()
        grads.append((xi.grad, bn.weight.grad, bn.bias.grad, neuron.w.grad))
        assert outputs.recognised == int(recompute)
        assert made_inside[-1] == (recompute and view == "none")
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def test_outputs_written_in_place_are_kept_not_recomputed():
    bn, neuron, outputs = _bn_neuron(False)
    x = torch.randn(4, 3, 6, 5, 5, requires_grad=True)
    y = bn(x)
    y.mul_(1.5)
    neuron(y).sum().backward()
    z = bn(x)
    z[:, 1:].add_(1.0)  # through a view: the output's history changes too
    neuron.reset()
    neuron(z).sum().backward()
    assert outputs.recognised == 0 and x.grad is not None


def test_an_input_modified_after_the_forward_is_a_clear_error():
    bn, neuron, _ = _bn_neuron(False)
    h = torch.randn(4, 3, 6, 5, 5, requires_grad=True) * 1.0  # the BN input, modified after the forward
    s = neuron(bn(h))
    with torch.no_grad():
        h.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        s.sum().backward()


def test_recipes_go_when_the_outputs_go():
    bn, neuron, outputs = _bn_neuron(False)
    for _ in range(3):
        neuron.reset()
        neuron(bn(torch.randn(4, 3, 6, 5, 5, requires_grad=True))).sum().backward()
    assert outputs._entries == {}
