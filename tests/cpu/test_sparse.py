"""Sparse inference of the layers that read spikes (`cpu.sparse`): the dense ops' results to float rounding,
in every shape the model uses and some it does not, the same bits for any thread count, and the dense op
itself wherever the sparse kernel does not apply."""
import contextlib

import pytest
import torch

from svformer import SVFormer
from svformer.cpu import sparse
from svformer.cpu.sparse import SparseKernel
from svformer.models.layers import SeqConv2d, SpikeInput, SpikeLinear

pytestmark = pytest.mark.skipif(not sparse.available(), reason="no C compiler for the sparse kernels")

# (layer, input shape): 1x1, the patch embeddings' 4x4 stride 2, odd sizes, kernels larger than the input
# at the border, output channels below, at and between multiples of the 64-channel tile, no bias.
CASES = [
    (lambda: SeqConv2d(32, 64, 1, spike_input=True), (3, 32, 7, 9)),
    (lambda: SeqConv2d(16, 100, 4, stride=2, padding=1, spike_input=True), (2, 16, 11, 10)),
    (lambda: SeqConv2d(5, 7, 3, stride=1, padding=1, spike_input=True), (2, 5, 6, 5)),
    (lambda: SeqConv2d(6, 130, (3, 5), stride=(2, 1), padding=(2, 0), bias=False, spike_input=True), (1, 6, 5, 8)),
    (lambda: SeqConv2d(4, 8, 6, stride=4, padding=1, spike_input=True), (2, 4, 9, 13)),
    (lambda: SeqConv2d(48, 72, 3, padding=1, spike_input=True), (2, 48, 7, 6)),
    (lambda: SpikeLinear(48, 192), (2, 3, 5, 48)),
    (lambda: SpikeLinear(40, 24, bias=False), (7, 40)),
    (lambda: SpikeLinear(300, 130), (50, 300)),
]
# (The rows of a tile are summed in chunks of 128: 432 and 300 rows span several.)


def _spikes(shape, rate, seed=0, maps=True):
    """Spikes at ``rate``; 4-D ``maps`` channels-last, as the accelerated model stores them."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(shape, generator=g) < rate).float()
    return x.contiguous(memory_format=torch.channels_last) if maps and x.dim() == 4 else x


def _dense(layer, x):
    return sparse._plain(layer, x)


@contextlib.contextmanager
def _sparse_calls():
    """A list that gets an entry for each call of the C kernel (`sparse.spike_conv`) inside the block."""
    calls = []
    original = sparse.spike_conv
    sparse.spike_conv = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        yield calls
    finally:
        sparse.spike_conv = original


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("rate", [0.0, 0.05, 0.3])
def test_sparse_equals_the_dense_op_to_rounding(case, rate):
    make, shape = CASES[case]
    torch.manual_seed(case)
    layer = make()
    x = _spikes(shape, rate, seed=case, maps=not isinstance(layer, SpikeLinear))
    kernel = SparseKernel(max_density=1.0)  # at any density
    with torch.no_grad():
        with _sparse_calls() as used:
            y = kernel(layer, x)
        want = _dense(layer, x)
    assert used, "the sparse kernel did not run"
    assert y.shape == want.shape and y.stride() == want.stride()
    torch.testing.assert_close(y, want, rtol=0, atol=1e-6 * max(1.0, want.abs().max().item()))
    if rate == 0.0:  # nothing fired: every output is the bias, exactly
        linear = isinstance(layer, SpikeLinear)
        bias = torch.zeros(want.shape[-1 if linear else 1]) if layer.bias is None else layer.bias.detach()
        assert torch.equal(y, (bias if linear else bias.view(-1, 1, 1)).expand_as(want))


def test_any_layout_gives_the_same_bits():
    """Streaming's frames are NCHW: copied to channels-last for the kernel, summed in the same order."""
    torch.manual_seed(0)
    layer = SeqConv2d(16, 70, 4, stride=2, padding=1, spike_input=True)
    x = _spikes((1, 16, 12, 12), 0.1)
    with torch.no_grad():
        assert torch.equal(SparseKernel()(layer, x), SparseKernel()(layer, x.contiguous()))


def test_same_bits_for_any_thread_count():
    torch.manual_seed(0)
    layer = SeqConv2d(32, 96, 4, stride=2, padding=1, spike_input=True)
    x = _spikes((4, 32, 20, 20), 0.15)
    threads = torch.get_num_threads()
    outputs = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            with torch.no_grad():
                outputs.append(SparseKernel()(layer, x))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(outputs[0], o) for o in outputs[1:])


def test_profiler_names_the_sparse_products():
    """benchmarks/dense.py counts eager sparse products by this event's name."""
    torch.manual_seed(0)
    layer = SeqConv2d(16, 70, 4, stride=2, padding=1, spike_input=True)
    x = _spikes((1, 16, 12, 12), 0.1)
    with torch.no_grad(), torch.profiler.profile() as prof:
        SparseKernel()(layer, x)
    assert sum(e.name == sparse.PROFILER_NAME for e in prof.events()) == 1


def test_same_bits_for_every_instruction_set():
    """The AVX-512, AVX2, AVX and plain C routines add the same rows in the same order (levels this CPU lacks
    are skipped: asking for one gives the best it has below it)."""
    outputs, used = {}, []
    try:
        for level in reversed(sparse.ISA_LEVELS):
            got = sparse.instruction_set(level)
            if got in used:
                continue
            used.append(got)
            for case, (make, shape) in enumerate(CASES):
                torch.manual_seed(case)
                layer = make()
                x = _spikes(shape, 0.3, seed=case, maps=not isinstance(layer, SpikeLinear))
                with torch.no_grad():
                    outputs.setdefault(case, []).append(SparseKernel(max_density=1.0)(layer, x))
    finally:
        sparse.instruction_set()
    assert "plain C" in used
    with pytest.raises(ValueError, match="one of plain C, AVX"):
        sparse.instruction_set("SSE")
    for case, ys in outputs.items():
        assert all(torch.equal(ys[0], y) for y in ys[1:]), f"case {case}: the instruction sets differ ({used})"


@pytest.mark.parametrize("why", ["dense", "not-binary", "grad", "groups", "float64"])
def test_the_dense_op_wherever_sparse_does_not_apply(why):
    torch.manual_seed(0)
    layer = SeqConv2d(8, 16, 3, padding=1, groups=8 if why == "groups" else 1, spike_input=True)
    x = _spikes((2, 8, 6, 6), 0.5 if why == "dense" else 0.1)
    if why == "not-binary":
        x = x * 0.5
    elif why == "float64":
        layer, x = layer.double(), x.double()
    with _sparse_calls() as calls, torch.set_grad_enabled(why == "grad"):
        y = SparseKernel()(layer, x)
    assert not calls
    with torch.no_grad():
        assert torch.equal(y, _dense(layer, x))


def test_model_uses_it_for_inference_only():
    """Evaluation of an accelerated model runs its spike-reading layers sparsely; training does not, and
    the logits of the two inference paths agree to rounding on a model whose potentials are far from the
    threshold (so that no rounding flips a spike)."""
    torch.manual_seed(0)
    small = dict(embed_dim=(16, 32, 48, 64), depth=(1, 1, 1, 1), head_dim=16, img_size=32, num_frames=2)
    model = SVFormer(num_classes=5, **small)
    layers = [m for m in model.modules() if isinstance(m, SpikeInput) and m.spike_input]
    assert layers and all(isinstance(m.kernel, SparseKernel) for m in layers)
    x = torch.randn(2, 3, 2, 32, 32)
    with _sparse_calls() as calls:
        model.train()
        model(x).sum().backward()
        assert not calls
        model.eval()
        with torch.inference_mode():
            y = model(x)
        assert calls
    dense = SVFormer(num_classes=5, accelerate={"sparse_spikes": False}, **small)
    dense.load_state_dict(model.state_dict())
    with torch.inference_mode():
        torch.testing.assert_close(y, dense.eval()(x), rtol=1e-5, atol=1e-5)


def test_firing_rate_is_judged_on_a_sample():
    x = _spikes((4, 64, 32, 32), 0.12, maps=False)
    assert sparse.sparse_enough(x, 0.15) and not sparse.sparse_enough(x, 0.09)
    assert sparse.sparse_enough(x, 0.15, every=1) and not sparse.sparse_enough(x, 0.09, every=1)
    runs = x.view(-1, 64)
    runs[1::16] = 1.0  # dense where the sample does not look (runs 0, 16, 32, ...): only a full count sees it
    assert sparse.sparse_enough(x, 0.15) and not sparse.sparse_enough(x, 0.15, every=1)
    runs[0, 3] = 2.0  # a value that is no spike, in the sample
    assert not sparse.sparse_enough(x, 1.0)


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("rate", [0.05, 0.6])
def test_spike_product_op(case, rate):
    """The graph op: the dense op's result (to rounding where sparse, exactly where dense), in the strides its
    fake kernel promises torch.compile, both ways."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    make, shape = CASES[case]
    torch.manual_seed(case)
    layer = make()
    x = _spikes(shape, rate, seed=case, maps=not isinstance(layer, SpikeLinear))
    conv = not isinstance(layer, SpikeLinear)
    stride, padding = (list(layer.stride), list(layer.padding)) if conv else ([1, 1], [0, 0])
    args = (layer.weight.detach(), sparse.rearranged(layer.weight.detach()),
            None if layer.bias is None else layer.bias.detach(), stride, padding, 0.3)
    with _sparse_calls() as used:
        y = torch.ops.svformer.spike_product(x, *args)
    assert bool(used) == (rate < 0.3)
    with torch.no_grad():
        want = _dense(layer, x)
    torch.testing.assert_close(y, want, rtol=0, atol=1e-6 * max(1.0, want.abs().max().item()))
    with FakeTensorMode() as mode:
        fake = torch.ops.svformer.spike_product(mode.from_tensor(x), *(
            mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args))
    assert fake.shape == y.shape and fake.stride() == y.stride()


def test_graph_kernel_in_a_compiled_graph():
    """`GraphKernel` puts the op in a torch.compile graph (inductor calls it, sparse at run time) and gives the
    eager layer's output to rounding."""
    torch.manual_seed(0)
    layer = SeqConv2d(32, 80, 4, stride=2, padding=1, spike_input=True).eval().requires_grad_(False)
    x = _spikes((2, 32, 12, 12), 0.1)
    with torch.no_grad():
        want = _dense(layer, x)
        layer.kernel = sparse.GraphKernel()
        compiled = torch.compile(lambda x: layer(x.unsqueeze(0)) * 2.0, fullgraph=True)  # (T, B, C, H, W)
        with _sparse_calls() as used:
            y = compiled(x)
    assert used
    torch.testing.assert_close(y[0], 2.0 * want, rtol=0, atol=2e-6 * max(1.0, want.abs().max().item()))
