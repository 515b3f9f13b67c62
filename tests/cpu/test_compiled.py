"""The compiled C neuron loops against the eager chunked loops and the plain autograd loop."""
import pytest
import torch

from svformer.cpu import chunked, compiled
from svformer.cpu.neuron import NeuronKernel
from svformer.snn import IFNode, LIFNode, ParametricLIFNode, Sigmoid
from svformer.snn.dynamics import reference_multistep

pytestmark = pytest.mark.skipif(not compiled.available(), reason="no C compiler")

# Several blocks and a partial last one; a threshold and tau that are not exact in float32.
SHAPE = (7, 2 * compiled.BLOCK + 37)


def _layer(kind):
    if kind == "if":
        return IFNode(v_threshold=0.6, detach_reset=True)
    if kind == "lif":
        return LIFNode(tau=1.7, v_threshold=0.6, detach_reset=True)
    node = ParametricLIFNode(v_threshold=0.6, detach_reset=True)
    with torch.no_grad():
        node.w.fill_(0.3)
    return node


def _inputs(dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(SHAPE, generator=gen, dtype=dtype) * 1.5 + 0.5
    return x, torch.randn(SHAPE, generator=gen, dtype=dtype), torch.randn(SHAPE[1:], generator=gen, dtype=dtype)


def _k(node, dtype):
    return torch.sigmoid(node.w.detach()).to(dtype) if isinstance(node, ParametricLIFNode) else None


@pytest.mark.parametrize("kind", ["if", "lif", "plif"])
def test_compiled_equals_chunked(kind):
    node = _layer(kind)
    dyn, surrogate = node.dynamics, node.surrogate
    x, grad_s, grad_v = _inputs()
    v0 = torch.rand(SHAPE[1:]) * 0.5
    k = _k(node, x.dtype)
    assert compiled.supports(dyn, surrogate, x)
    s1, v1, _ = compiled.forward(dyn, x, v0, k)
    s2, v2, _ = chunked.forward(dyn, x, v0, k)
    assert 0.05 < s2.mean() < 0.95
    assert torch.equal(s1, s2) and torch.equal(v1, v2)
    g1 = compiled.backward(dyn, surrogate, x, v0, k, grad_s, grad_v, k is not None)
    g2 = chunked.backward(dyn, surrogate, x, v0, k, grad_s, grad_v, k is not None)
    torch.testing.assert_close(g1[0], g2[0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(g1[1], g2[1], rtol=1e-6, atol=1e-6)
    if k is not None:
        torch.testing.assert_close(g1[2], g2[2], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("kind", ["if", "lif", "plif"])
def test_compiled_float64_equals_autograd(kind):
    """In float64 the compiled backward is the plain loop's autograd gradient to 1e-12."""
    node = _layer(kind).double()
    x, grad_s, _ = _inputs(torch.float64, seed=1)
    k_param = torch.sigmoid(node.w) if isinstance(node, ParametricLIFNode) else None
    xr = x.clone().requires_grad_(True)
    spikes, v_last, _ = reference_multistep(node.dynamics, node.surrogate, xr, torch.zeros(SHAPE[1:],
                                            dtype=torch.float64), k_param)
    wanted = torch.autograd.grad((spikes * grad_s).sum(), [xr] + ([node.w] if k_param is not None else []))
    k = _k(node, torch.float64)
    s, _, _ = compiled.forward(node.dynamics, x, torch.zeros(SHAPE[1:], dtype=torch.float64), k)
    assert torch.equal(s, spikes.detach())
    gx, _, gk = compiled.backward(node.dynamics, node.surrogate, x, torch.zeros(SHAPE[1:], dtype=torch.float64), k,
                                  grad_s, torch.zeros(SHAPE[1:], dtype=torch.float64), k is not None)
    torch.testing.assert_close(gx, wanted[0], rtol=1e-12, atol=1e-12)
    if k is not None:  # dL/dw = dL/dk * k (1 - k)
        torch.testing.assert_close(gk * k * (1 - k), wanted[1], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("pool", [False, True], ids=["openmp", "thread-pool"])
def test_thread_count_changes_no_bit(pool, monkeypatch):
    """1 or 2 threads, on OpenMP's threads (where built with it) or on a pool of our own (as in a forked
    child, or without OpenMP): the same bits."""
    if pool:
        monkeypatch.setattr(compiled, "_forked", True)
    node = _layer("plif")
    x, grad_s, grad_v = _inputs(seed=2)
    k = _k(node, x.dtype)
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            results.append(compiled.forward(node.dynamics, x, torch.zeros(SHAPE[1:]), k)[:2]
                           + compiled.backward(node.dynamics, node.surrogate, x, torch.zeros(SHAPE[1:]), k,
                                               grad_s, grad_v, True))
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_built_with_openmp_where_the_compiler_has_it():
    """GCC has OpenMP: the loops then share PyTorch's threads (a test that would otherwise pass on the
    thread-pool fallback unnoticed)."""
    import subprocess

    try:
        version = subprocess.run([*compiled._compiler(), "--version"], capture_output=True, text=True).stdout
    except OSError:
        pytest.skip("no C compiler")
    if "Free Software Foundation" not in version:
        pytest.skip("the compiler is not GCC")
    assert compiled._library(torch.float32).openmp
    # One OpenMP runtime in the process: the loops run on the threads PyTorch's ops use (a second
    # runtime's threads would spin beside them, which is what running on OpenMP is meant to avoid).
    with open("/proc/self/maps") as f:
        runtimes = {line.split()[-1] for line in f if "libgomp" in line}
    assert len(runtimes) == 1, runtimes


def test_kernel_uses_compiled_loops_where_they_apply():
    kernel = NeuronKernel()
    x = torch.zeros(3, 4)
    svformer_neuron = ParametricLIFNode(detach_reset=True)
    assert kernel.loops(svformer_neuron.dynamics, svformer_neuron.surrogate, x, False) is compiled
    assert kernel.loops(svformer_neuron.dynamics, svformer_neuron.surrogate, x, True) is chunked  # keeps H
    assert kernel.loops(svformer_neuron.dynamics, svformer_neuron.surrogate, x.half(), False) is chunked
    for other in (ParametricLIFNode(detach_reset=False), ParametricLIFNode(v_reset=None, detach_reset=True),
                  ParametricLIFNode(detach_reset=True, decay_input=False),
                  ParametricLIFNode(detach_reset=True, surrogate=Sigmoid())):
        assert kernel.loops(other.dynamics, other.surrogate, x, False) is chunked
    assert NeuronKernel(compile=False).loops(svformer_neuron.dynamics, svformer_neuron.surrogate, x, False) is chunked


def test_strided_inputs():
    """Channels-last steps and an expanded initial potential, as the model passes them."""
    node = _layer("plif")
    k = _k(node, torch.float32)
    x = (torch.randn(4, 2, 3, 5, 6) + 0.6).contiguous(memory_format=torch.channels_last_3d)
    v0 = torch.zeros(()).expand(x.shape[1:])
    s1, v1, _ = compiled.forward(node.dynamics, x, v0, k)
    s2, v2, _ = chunked.forward(node.dynamics, x, v0, k)
    assert torch.equal(s1, s2) and torch.equal(v1, v2)


def test_backward_with_strided_state():
    """A channels-last sequence with a channels-last initial potential and final-state gradient."""
    node = _layer("plif")
    k = _k(node, torch.float32)
    x = (torch.randn(4, 2, 3, 5, 6) + 0.6).contiguous(memory_format=torch.channels_last_3d)
    v0 = x[0].detach().clone() * 0.3
    grad_s, grad_v = torch.randn_like(x), torch.randn_like(x[0])
    g1 = compiled.backward(node.dynamics, node.surrogate, x, v0, k, grad_s, grad_v, True)
    g2 = chunked.backward(node.dynamics, node.surrogate, x, v0, k, grad_s, grad_v, True)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_without_a_compiler_the_eager_loops_serve(tmp_path, monkeypatch):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("SVFORMER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(compiled, "_libraries", {})
    with pytest.warns(UserWarning, match="could not build the compiled neuron loops"):
        assert not compiled.available()
    node = ParametricLIFNode(detach_reset=True)
    assert NeuronKernel().loops(node.dynamics, node.surrogate, torch.zeros(2, 3), False) is chunked
    x = torch.randn(5, 7) + 0.5
    node.kernel = NeuronKernel()
    assert torch.equal(node(x), chunked.forward(node.dynamics, x, torch.zeros(7), torch.sigmoid(node.w.detach()))[0])


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_a_forked_child_runs_the_loops_with_threads_of_its_own():
    """The parent's worker threads do not exist in a forked child (e.g. a fork-started process after the
    parent trained): the child must not wait for them."""
    import multiprocessing

    node = _layer("plif")
    x, _, _ = _inputs()
    k = _k(node, x.dtype)
    expected = compiled.forward(node.dynamics, x, torch.zeros(SHAPE[1:]), k)[0]  # the parent's pool exists now
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as workers:
        spikes = workers.apply_async(_forward_in_child, (x.numpy(), k.item())).get(timeout=60)
    assert torch.equal(torch.from_numpy(spikes), expected)


def _forward_in_child(x, k):
    # Arrays in and out: a tensor result would be sent back through shared memory, which is not what
    # this test is about.
    torch.set_num_threads(2)
    x, k = torch.from_numpy(x), torch.tensor(k, dtype=torch.float32)
    return compiled.forward(_layer("plif").dynamics, x, torch.zeros(SHAPE[1:]), k)[0].numpy()
