"""Layers that read spikes keep them for the backward as 1 byte (`cpu.compact`): bit-identical gradients,
in every memory format, under autocast and activation checkpointing, on the plain model too."""
import pytest
import torch
from torch import nn

from svformer import SVFormer
from svformer.cpu import accelerate
from svformer.cpu.compact import CompactKernel
from svformer.models.layers import MatMul, SeqConv2d, SpikeInput, SpikeLinear

SMALL = dict(embed_dim=(16, 32, 48, 64), depth=(1, 1, 1, 1), head_dim=16, img_size=64, num_frames=3,
             v_threshold=0.3)
PLAIN = {"neurons": False, "norm": False, "channels_last": False, "recompute_norm": False, "pool": False}


def _saved_storages(fn):
    """Run ``fn`` while recording what autograd saves: {storage address: (dtype, bytes)}."""
    seen = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = (t.dtype, t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, seen


def _train(accelerate_spec, x, autocast=False, **kwargs):
    torch.manual_seed(0)
    model = SVFormer(num_classes=5, accelerate=accelerate_spec, **SMALL, **kwargs).train()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss, saved = _saved_storages(lambda: model(x).float().square().sum())
    loss.backward()
    return model, saved


@pytest.mark.parametrize("spec", [{}, {"channels_last": False}, PLAIN], ids=["accelerated", "contiguous", "plain"])
def test_compact_spikes_give_bit_identical_gradients_and_keep_one_byte(spec):
    x = torch.randn(2, 3, 3, 64, 64)
    floats, saved_floats = _train({**spec, "compact_spikes": False}, x)
    compact, saved = _train({**spec, "compact_spikes": True}, x)
    for (name, p), q in zip(floats.named_parameters(), compact.parameters()):
        assert torch.equal(p.grad, q.grad), name
    for (name, b), c in zip(floats.named_buffers(), compact.buffers()):
        assert torch.equal(b, c), name
    # Every conv/linear after a neuron (two per block at least), both attention products, the head.
    packed = [n for dtype, n in saved.values() if dtype == torch.uint8]
    assert len(packed) >= 12
    assert sum(n for _, n in saved.values()) < sum(n for _, n in saved_floats.values()) - 2 * sum(packed)


def test_compact_spikes_are_exact_under_autocast():
    x = torch.randn(2, 3, 3, 64, 64)
    floats, _ = _train({"compact_spikes": False}, x, autocast=True)
    compact, saved = _train(True, x, autocast=True)
    assert any(dtype == torch.uint8 for dtype, _ in saved.values())
    for (name, p), q in zip(floats.named_parameters(), compact.parameters()):
        assert p.grad.dtype == torch.float32 and torch.equal(p.grad, q.grad), name


def test_checkpointed_blocks_recompute_with_compact_spikes():
    x = torch.randn(2, 3, 3, 64, 64)
    kept, _ = _train({"compact_spikes": False}, x)
    recomputed, _ = _train(True, x, checkpointing="block")
    for (name, p), q in zip(kept.named_parameters(), recomputed.parameters()):
        assert torch.equal(p.grad, q.grad), name


def test_only_layers_that_read_spikes_get_the_kernel():
    model = SVFormer(num_classes=5, **SMALL)
    with_kernel = {n for n, m in model.named_modules() if isinstance(m, SpikeInput) and m.kernel is not None}
    assert "blocks1.0.conv1" in with_kernel and "blocks1.0.attn" not in with_kernel  # the depthwise conv reads conv1
    assert "patch_embed1.proj" not in with_kernel and "patch_embed2.proj" in with_kernel  # pixels, then spikes
    assert {"blocks3.0.attn.kv_matmul", "blocks3.0.attn.q_matmul", "head_conv", "local.dwconv"} <= with_kernel
    assert "head" not in with_kernel  # reads the head BatchNorm's output
    accelerate(model, {"compact_spikes": False})  # inference still reads them sparsely, training plainly
    assert all(m.kernel.inner is None for m in model.modules() if isinstance(m, SpikeInput) and m.kernel is not None)
    accelerate(model, {"compact_spikes": False, "sparse_spikes": False})
    assert not any(isinstance(m, SpikeInput) and m.kernel is not None for m in model.modules())


def test_models_with_foreign_neurons_keep_floats():
    """A neuron that is not svformer's may emit other values than 0 and 1: nothing is packed then."""
    class Graded(nn.Module):
        v_threshold = 1.0

        def reset(self):
            pass

        def forward(self, x):
            return torch.sigmoid(x)

    model = SVFormer(num_classes=5, neuron=Graded, **SMALL)
    assert not any(isinstance(m, SpikeInput) and m.kernel is not None for m in model.modules())


@pytest.mark.parametrize("layer", ["linear", "conv", "matmul"])
def test_each_kernel_matches_autograd_and_steps_aside_without_a_graph(layer):
    torch.manual_seed(0)
    spikes = (torch.rand(3, 2, 6, 8, 8) > 0.6).float()
    if layer == "linear":
        module, inputs = SpikeLinear(8, 5), (spikes,)
    elif layer == "conv":
        module, inputs = SeqConv2d(6, 4, 3, stride=2, padding=1, spike_input=True), (spikes,)
    else:
        module, inputs = MatMul((True, False)), (spikes, torch.randn(3, 2, 6, 8, 4))
    grads = []
    for kernel in (None, CompactKernel()):
        module.kernel = kernel
        leaves = [t.clone().requires_grad_() for t in inputs]
        out = module(*leaves)
        out.mul(torch.linspace(-1, 1, out.numel()).view(out.shape)).sum().backward()
        grads.append([t.grad for t in leaves] + [p.grad.clone() for p in module.parameters()])
        module.zero_grad(set_to_none=True)
    for a, b in zip(*grads):
        assert torch.equal(a, b)
    with torch.no_grad():
        _, saved = _saved_storages(lambda: module(*inputs))
    assert saved == {}


def _restored_alive_during_backward(layer, *inputs):
    """Run ``layer`` (kernel: a CompactKernel whose alloc records the float tensors it restores) and its
    backward; return [(op, restored tensors alive when it ran)] for the backward's dense products."""
    import weakref

    from torch.utils._python_dispatch import TorchDispatchMode

    restored = []

    def alloc(like, dtype=None):
        out = torch.empty_like(like, dtype=dtype)
        if out.dtype != torch.uint8:
            restored.append(weakref.ref(out))
        return out

    layer.kernel = CompactKernel(alloc)
    calls = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            if name in ("convolution_backward", "mm", "bmm", "matmul"):
                mask = tuple(args[-1]) if name == "convolution_backward" else None
                calls.append((name, mask, sum(r() is not None for r in restored)))
            return func(*args, **(kwargs or {}))

    out = layer(*inputs)
    with Record():
        out.square().sum().backward()
    return calls


def test_backward_restores_one_spike_operand_at_a_time():
    """The restored float input (as large as the input) is gone before the input gradient, which is as
    large again, is made: the two are never alive together."""
    spikes = (torch.rand(3, 2, 8, 10, 10) > 0.5).float().requires_grad_()
    conv = SeqConv2d(8, 6, 3, padding=1, spike_input=True)
    calls = _restored_alive_during_backward(conv, spikes)
    assert [c for c in calls if c[0] == "convolution_backward"] == [
        ("convolution_backward", (False, True, True), 1), ("convolution_backward", (True, False, False), 0)]
    assert spikes.grad is not None

    tokens = (torch.rand(3, 2, 5, 8) > 0.5).float().requires_grad_()
    calls = _restored_alive_during_backward(SpikeLinear(8, 4), tokens)
    assert calls[0][2] == 1 and calls[-1][2] == 0  # weight gradient with the input, then the input gradient

    a = (torch.rand(3, 2, 5, 8) > 0.5).float().requires_grad_()
    b = (torch.rand(3, 2, 8, 4) > 0.5).float().requires_grad_()
    calls = _restored_alive_during_backward(MatMul(spike_operands=(True, True)), a, b)
    assert len(calls) >= 2 and max(alive for *_, alive in calls) == 1


def test_compact_backward_stays_on_the_input_device():
    """Every tensor the backward hands to an op is on the input's device (the meta device stands in for a
    GPU: an op given a CPU tensor beside meta ones is recorded here even where its meta kernel copes)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    devices = set()

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            devices.update(a.device.type for a in args if isinstance(a, torch.Tensor))
            return func(*args, **(kwargs or {}))

    conv = SeqConv2d(8, 6, 3, padding=1, spike_input=True).to("meta")
    conv.kernel = CompactKernel()
    x = torch.empty(3, 2, 8, 10, 10, device="meta", requires_grad=True)
    out = conv(x).sum()
    with Record():
        out.backward()
    assert devices == {"meta"} and x.grad.device.type == "meta" and conv.weight.grad.device.type == "meta"
