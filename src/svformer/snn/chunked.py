"""The eager fused neuron loops, run chunk by chunk so that every pass stays in cache.

A neuron layer's sequences are large (stage 1 of SVFormer at batch 2: 16 x 2 x 128 x 56 x 56 floats, 51 MB
per tensor) and each eager element-wise op is one pass over memory, so a time step's ~10 ops on whole
(B, ...) slices are memory bound. The positions of a layer are independent of each other, so here they
are cut into chunks of `CHUNK` elements and the whole time loop runs on one chunk at a time: its
membrane potential and temporaries stay in cache, the inputs are read once and the outputs written once.
The ops write into preallocated outputs (``out=``, in place), so nothing large is allocated inside the
loops. Any dense layout with time outermost (e.g. channels-last maps) is used as it is (`layout`). The arithmetic is `dynamics.charge`/`reset_values` and `fused._backward`'s, op for op where it
decides a spike, so the spikes are the same bits.

`torch.compile` cannot trace in-place writes into views as cheaply; the ``compiled`` backend keeps the
pure functions in `fused.py`.
"""
from __future__ import annotations

from typing import Optional

import torch

from .dynamics import Dynamics, charge, reset_values
from .layout import flat, like, time_major
from .surrogate import Surrogate

# Elements per chunk: 64 Ki floats (256 KB) per tensor keeps a step's working set in L2 while the
# per-op overhead (a few microseconds) stays small against the work of a chunk.
CHUNK = 1 << 16


def _charge_into(dyn: Dynamics, v: torch.Tensor, x: torch.Tensor, k, out: torch.Tensor) -> torch.Tensor:
    """`dynamics.charge` written into ``out`` with the same operation order (hence the same bits)."""
    reset0 = dyn.v_reset is None or dyn.v_reset == 0.0
    if dyn.kind == "if":
        return torch.add(v, x, out=out)
    if dyn.decay_input and reset0:  # v + (x - v) * k, or / tau for LIF
        torch.sub(x, v, out=out)
        out.mul_(k) if dyn.kind == "plif" else out.div_(dyn.tau)
        return out.add_(v)
    return out.copy_(charge(dyn, v, x, k))


def _reset_into(dyn: Dynamics, h: torch.Tensor, spike: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """`dynamics.reset_values` from the float spikes, into ``out``; the same values, bit for bit."""
    if dyn.v_reset == 0.0:
        return torch.addcmul(h, h, spike, value=-1.0, out=out)  # h - h*s: h or exactly 0
    if dyn.v_reset is None:
        return torch.add(h, spike, alpha=-dyn.v_threshold, out=out)  # h - v_th*s, as h - v_th where fired
    return out.copy_(reset_values(dyn, h))


def forward(dyn: Dynamics, x_seq: torch.Tensor, v0: torch.Tensor, k: Optional[torch.Tensor], keep_h: bool):
    """Run the neuron over ``x_seq`` (T, ...) from ``v0``.

    Returns ``(spike_seq, v_last, h_seq)``; ``h_seq`` (the pre-reset potentials the backward needs) is
    None unless ``keep_h``, so that inference writes only the spikes.
    """
    x_seq = time_major(x_seq)
    T = x_seq.shape[0]
    x = flat(x_seq)
    n = x.shape[1]
    spike_seq = torch.empty_like(x_seq)
    h_seq = torch.empty_like(x_seq) if keep_h else None
    v_last = torch.empty_like(x_seq[0])
    spikes, h_all, v_all = flat(spike_seq), flat(h_seq) if keep_h else None, flat(v_last, steps=False)
    v0 = flat(like(v0, v_last), steps=False)
    h_buf = None if keep_h else torch.empty(min(n, CHUNK), dtype=x.dtype, device=x.device)
    for a in range(0, n, CHUNK):
        b = min(a + CHUNK, n)
        v = v_all[a:b]
        v.copy_(v0[a:b])
        for t in range(T):
            h = _charge_into(dyn, v, x[t, a:b], k, h_all[t, a:b] if keep_h else h_buf[: b - a])
            s = torch.ge(h, dyn.v_threshold, out=spikes[t, a:b])
            _reset_into(dyn, h, s, v)
    return spike_seq, v_last, h_seq


def backward(dyn: Dynamics, surrogate: Surrogate, h_seq: torch.Tensor, v0: torch.Tensor, k, grad_spike,
             grad_v_last, need_k: bool):
    """Gradients of `forward` (the recurrence in `fused`'s docstring), chunk by chunk.

    Returns ``(grad_x_seq, grad_v0, grad_k or None)``; ``grad_k`` is accumulated in float64.
    """
    T = h_seq.shape[0]
    h = flat(h_seq)
    n = h.shape[1]
    gs = flat(like(grad_spike, h_seq))
    grad_x_seq = torch.empty_like(h_seq)
    grad_x = flat(grad_x_seq)
    grad_v0_out = like(grad_v_last, h_seq[0]).clone(memory_format=torch.preserve_format)
    grad_v0 = flat(grad_v0_out, steps=False)
    v0 = flat(like(v0, h_seq[0]), steps=False)
    vth = dyn.v_threshold
    if dyn.kind == "if":
        dh_dv, dh_dx = 1.0, 1.0
    else:
        decay = k if dyn.kind == "plif" else 1.0 / dyn.tau
        dh_dv = 1.0 - decay
        dh_dx = decay if dyn.decay_input else 1.0
    grad_k = torch.zeros((), dtype=torch.float64, device=h.device) if need_k else None
    for a in range(0, n, CHUNK):
        b = min(a + CHUNK, n)
        grad_v = grad_v0[a:b]  # dL/dV[t], updated in place down to dL/dV[-1] = dL/dv0
        for t in range(T - 1, -1, -1):
            ht = h[t, a:b]
            g = surrogate.derivative(ht - vth).mul_(gs[t, a:b])  # dL/dS * dS/dH
            fired = ht >= vth
            if dyn.hard_reset and dyn.detach_reset:
                g.add_(grad_v.masked_fill_(fired, 0.0))
            else:
                g.add_(grad_v * _dv_dh(dyn, surrogate, ht, fired))
            if need_k:
                v_prev = v0[a:b] if t == 0 else reset_values(dyn, h[t - 1, a:b])
                dh_dk = (ht - v_prev) / k if dyn.decay_input else -(v_prev - dyn.reset_value)
                grad_k += torch.dot(g, dh_dk).double()
            torch.mul(g, dh_dx, out=grad_x[t, a:b])
            torch.mul(g, dh_dv, out=grad_v)
    return grad_x_seq, grad_v0_out, None if grad_k is None else grad_k.to(k.dtype).reshape(k.shape)


def _dv_dh(dyn: Dynamics, surrogate: Surrogate, h: torch.Tensor, fired: torch.Tensor) -> torch.Tensor:
    """dV/dH for the reset variants other than a detached hard reset (see `fused`)."""
    if dyn.hard_reset:
        return (~fired).to(h.dtype) + (dyn.v_reset - h) * surrogate.derivative(h - dyn.v_threshold)
    if dyn.detach_reset:
        return torch.ones_like(h)
    return 1.0 - dyn.v_threshold * surrogate.derivative(h - dyn.v_threshold)
