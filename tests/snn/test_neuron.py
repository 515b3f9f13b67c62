"""Neurons: the plain loop == the accelerated CPU kernel == spikingjelly 0.0.0.0.14 (torch backend, step_mode='m')."""
import itertools
import zlib

import pytest
import torch

from svformer.cpu import chunked, pool
from svformer.cpu.neuron import NeuronKernel
from svformer.snn import ATan, IFNode, LIFNode, ParametricLIFNode, Sigmoid, reset_states

sj_neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
sj_surrogate = pytest.importorskip("spikingjelly.activation_based.surrogate")

SHAPES = [(6, 16), (5, 2, 4, 7), (4, 2, 3, 5, 5)]
KINDS = ["if", "lif", "plif"]
V_RESETS = [0.0, None, -0.3]


def _cases():
    for kind, v_reset, detach, decay, surr, shape in itertools.product(
        KINDS, V_RESETS, [True, False], [True, False], ["atan", "sigmoid"], SHAPES
    ):
        if kind == "if" and not decay:
            continue  # IF has no decay_input option
        yield kind, v_reset, detach, decay, surr, shape


def _accelerate(node, backend):
    """``backend``: 'plain' (the layer as built), 'accelerated' (the CPU kernel, recycled buffers: the
    compiled loops where they apply) or 'chunked' (the CPU kernel's eager loops)."""
    if backend in ("accelerated", "chunked"):
        node.kernel = NeuronKernel(pool.empty_like, compile=backend == "accelerated")
    return node


def _pair(kind, v_reset, detach, decay, surr, backend, w=0.3, tau=1.7, v_th=0.6):
    ours_s = ATan(2.0) if surr == "atan" else Sigmoid(4.0)
    sj_s = sj_surrogate.ATan(2.0) if surr == "atan" else sj_surrogate.Sigmoid(4.0)
    common = dict(v_threshold=v_th, v_reset=v_reset, detach_reset=detach)
    if kind == "if":
        ours = IFNode(surrogate=ours_s, store_v_seq=True, **common)
        ref = sj_neuron.IFNode(surrogate_function=sj_s, step_mode="m", store_v_seq=True, **common)
    elif kind == "lif":
        ours = LIFNode(tau=tau, decay_input=decay, surrogate=ours_s, store_v_seq=True, **common)
        ref = sj_neuron.LIFNode(tau=tau, decay_input=decay, surrogate_function=sj_s, step_mode="m",
                                store_v_seq=True, **common)
    else:
        ours = ParametricLIFNode(decay_input=decay, surrogate=ours_s, store_v_seq=True, **common)
        ref = sj_neuron.ParametricLIFNode(decay_input=decay, surrogate_function=sj_s, step_mode="m",
                                          store_v_seq=True, **common)
        with torch.no_grad():
            ours.w.fill_(w)
            ref.w.fill_(w)
    return _accelerate(ours, backend), ref


def _run(node, x, grad_out):
    x = x.clone().requires_grad_(True)
    s = node(x)
    (s * grad_out).sum().backward()
    w_grad = node.w.grad.clone() if hasattr(node, "w") else None
    return s.detach(), node.v_seq.detach(), x.grad, w_grad


@pytest.mark.parametrize("backend", ["accelerated", "chunked", "chunked-7", "plain"])
@pytest.mark.parametrize("kind,v_reset,detach,decay,surr,shape", list(_cases()))
def test_matches_spikingjelly(backend, kind, v_reset, detach, decay, surr, shape, monkeypatch):
    if backend == "chunked-7":  # many chunks, the last one partial
        monkeypatch.setattr(chunked, "CHUNK", 7)
        backend = "chunked"
    gen = torch.Generator().manual_seed(zlib.crc32(repr((kind, v_reset, detach, decay, surr, shape)).encode()))
    x = torch.randn(shape, generator=gen) * 1.5 + 0.6
    grad_out = torch.randn(shape, generator=gen)
    ours, ref = _pair(kind, v_reset, detach, decay, surr, backend)
    s1, v1, gx1, gw1 = _run(ours, x, grad_out)
    s2, v2, gx2, gw2 = _run(ref, x, grad_out)
    assert 0 < s2.mean() < 1, "the test input must make the layer fire sometimes, not always"
    assert torch.equal(s1, s2)
    torch.testing.assert_close(v1, v2, rtol=0, atol=1e-5)
    torch.testing.assert_close(gx1, gx2, rtol=1e-5, atol=1e-5)
    if kind == "plif":
        torch.testing.assert_close(gw1, gw2, rtol=1e-5, atol=1e-5)
    # Inference (no graph, nothing kept for a backward) gives the same spikes and final state.
    ours.reset()
    with torch.no_grad():
        s3 = ours(x)
    assert torch.equal(s3, s2)
    torch.testing.assert_close(ours.v, ref.v.detach(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_accelerated_equals_plain_and_state_carries(kind):
    x = torch.randn(8, 3, 5) + 0.5
    fused, _ = _pair(kind, 0.0, True, True, "atan", "accelerated")
    ref, _ = _pair(kind, 0.0, True, True, "atan", "plain")
    whole = fused(x)
    # Two halves with the state kept in between give the same spikes as one call.
    ref.reset()
    halves = torch.cat([ref(x[:3]), ref(x[3:])])
    assert torch.equal(whole, halves)
    torch.testing.assert_close(fused.v, ref.v)


def test_gradient_through_carried_state_matches():
    x = torch.randn(8, 4, 3) + 0.5
    grads = []
    for backend in ["accelerated", "plain"]:
        node = _accelerate(ParametricLIFNode(detach_reset=False), backend)
        xi = x.clone().requires_grad_(True)
        out = torch.cat([node(xi[:5]), node(xi[5:])])
        (out * torch.arange(out.numel()).reshape(out.shape).sin()).sum().backward()
        grads.append((xi.grad, node.w.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-5, atol=1e-6)


def test_reset_and_shape_errors():
    node = ParametricLIFNode()
    node(torch.randn(4, 2, 3))
    assert node.v is not None
    with pytest.raises(ValueError, match="call reset"):
        node(torch.randn(4, 5, 3))
    reset_states(torch.nn.Sequential(node))
    assert node.v is None
    node(torch.randn(4, 5, 3))
    with pytest.raises(ValueError, match=r"\(T, B, \.\.\.\)"):
        node(torch.randn(4))
    with pytest.raises(ValueError, match="init_tau"):
        ParametricLIFNode(init_tau=0.5)


def test_plif_init_tau():
    node = ParametricLIFNode(init_tau=3.0)
    assert node.tau == pytest.approx(3.0)
    ref = sj_neuron.ParametricLIFNode(init_tau=3.0)
    assert float(node.w.detach()) == pytest.approx(float(ref.w.detach()))


def test_plain_neuron_under_torch_compile_matches_spikingjelly():
    # The path GPUs take: the plain loop traced by torch.compile (aot_eager: the graph inductor compiles).
    torch._dynamo.reset()
    x = torch.randn(5, 3, 16) * 1.5 + 0.6
    grad_out = torch.randn(5, 3, 16)
    ours, ref = _pair("plif", 0.0, True, True, "atan", "accelerated")  # falls back to plain when compiling
    compiled = torch.compile(ours, backend="aot_eager", fullgraph=True)
    x1 = x.clone().requires_grad_(True)
    s1 = compiled(x1)
    (s1 * grad_out).sum().backward()
    s2, v2, gx2, gw2 = _run(ref, x, grad_out)
    assert 0 < s2.mean() < 1
    assert torch.equal(s1.detach(), s2)
    torch.testing.assert_close(x1.grad, gx2, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.w.grad, gw2, rtol=1e-5, atol=1e-5)
