"""The eager fused neuron loops, run chunk by chunk so that every pass stays in cache.

A neuron layer's sequences are large (stage 1 of SVFormer at batch 2: 16 x 2 x 128 x 56 x 56 floats, 51 MB
per tensor) and each eager element-wise op is one pass over memory, so a time step's ~10 ops on whole
(B, ...) slices would be memory bound. The positions of a layer are independent of each other, so here
they are cut into chunks of `CHUNK` elements and the whole time loop runs on one chunk at a time: its
membrane potential and temporaries stay in cache, and each big tensor is read or written once.

Traffic is the cost, so the forward writes only the spikes (plus the last potential). The backward
gets the inputs X (which autograd keeps anyway as this layer's saved tensor, in place of the
potentials) and recomputes what the gradient recurrence of `neuron`'s docstring reads for one chunk at a
time into small buffers: H[t] and V[t-1] in general, H[t], the not-fired mask and X[t] - V[t-1] for
SVFormer's neuron (`_ZeroResetChunk`).

The ops write into preallocated outputs (``out=``, in place), so nothing large is allocated inside the
loops; the two large outputs (spikes, input gradients) come from ``alloc`` (see `accelerate`). Any
dense layout with time outermost (e.g. channels-last maps) is used as it is (`layout`). The arithmetic
is `dynamics.charge`/`reset_values`', op for op where it decides a spike, so the spikes are the same
bits.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from ..snn.dynamics import Dynamics, charge, reset_derivative, reset_values
from ..snn.surrogate import ATan, Surrogate
from .layout import flat, like, time_major

# Elements per chunk: 128 Ki floats (512 KB) per tensor keeps a step's working set in the two cores' L2
# and the backward's three recomputed (T, CHUNK) buffers in L3, while the per-op overhead (a few
# microseconds, the real cost at small chunks) stays small against the work of a chunk; it was the
# fastest of 2^14..2^18 on the neuron benchmark.
CHUNK = 1 << 17


def grad_into(surrogate: Surrogate, x: torch.Tensor, grad: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``grad * surrogate.derivative(x)`` into ``out``; ``x`` (a scratch buffer) may be overwritten."""
    if type(surrogate) is ATan:
        # grad / (1 + (pi alpha x / 2)^2) * (alpha / 2) in three passes (two for the paper's alpha = 2).
        c = math.pi / 2 * surrogate.alpha
        denominator = torch.addcmul(torch.ones((), dtype=x.dtype, device=x.device), x, x, value=c * c, out=x)
        torch.div(grad, denominator, out=out)
        return out if surrogate.alpha == 2.0 else out.mul_(surrogate.alpha / 2)
    return torch.mul(surrogate.derivative(x), grad, out=out)


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


def forward(dyn: Dynamics, x_seq: torch.Tensor, v0: torch.Tensor, k: Optional[torch.Tensor],
            alloc: Callable = torch.empty_like, keep_h: bool = False):
    """Run the neuron over ``x_seq`` (T, ...) from ``v0``.

    Returns ``(spike_seq, v_last, h_seq)``; ``h_seq``, the pre-reset potentials, is None unless
    ``keep_h`` (diagnostics only: `backward` recomputes what it needs from the inputs).
    """
    x_seq = time_major(x_seq, alloc)
    T = x_seq.shape[0]
    x = flat(x_seq)
    n = x.shape[1]
    spike_seq = alloc(x_seq)
    h_seq = alloc(x_seq) if keep_h else None
    v_last = torch.empty_like(x_seq[0])
    spikes, h_all, v_all = flat(spike_seq), flat(h_seq) if keep_h else None, flat(v_last, steps=False)
    v0 = flat(like(v0, v_last), steps=False)
    h_buf = None if keep_h else x.new_empty(min(n, CHUNK))
    for a in range(0, n, CHUNK):
        b = min(a + CHUNK, n)
        v = v_all[a:b]
        v.copy_(v0[a:b])
        for t in range(T):
            h = _charge_into(dyn, v, x[t, a:b], k, h_all[t, a:b] if keep_h else h_buf[: b - a])
            s = torch.ge(h, dyn.v_threshold, out=spikes[t, a:b])
            _reset_into(dyn, h, s, v)
    return spike_seq, v_last, h_seq


def _recompute(dyn: Dynamics, x: torch.Tensor, v0: torch.Tensor, k, hs: torch.Tensor, vs: torch.Tensor,
               spike: torch.Tensor) -> None:
    """The forward of one chunk again: H[t] into hs[t] and V[t-1] into vs[t] (vs[0] = v0)."""
    vs[0].copy_(v0)
    for t in range(x.shape[0]):
        h = _charge_into(dyn, vs[t], x[t], k, hs[t])
        if t + 1 < x.shape[0]:
            _reset_into(dyn, h, torch.ge(h, dyn.v_threshold, out=spike), vs[t + 1])


def backward(dyn: Dynamics, surrogate: Surrogate, x_seq: torch.Tensor, v0: torch.Tensor, k, grad_spike,
             grad_v_last, need_k: bool, alloc: Callable = torch.empty_like):
    """Gradients of `forward` from its (time-major) inputs, chunk by chunk.

    Returns ``(grad_x_seq, grad_v0, grad_k or None)``; ``grad_k`` is accumulated in float64.
    """
    T = x_seq.shape[0]
    x = flat(x_seq)
    n = x.shape[1]
    gs = flat(like(grad_spike, x_seq))
    grad_x_seq = alloc(x_seq)
    grad_x = flat(grad_x_seq)
    grad_v0_out = like(grad_v_last, x_seq[0]).clone(memory_format=torch.preserve_format)
    grad_v0 = flat(grad_v0_out, steps=False)
    v0 = flat(like(v0, x_seq[0]), steps=False)
    if dyn.kind == "if":
        dh_dv, dh_dx = 1.0, 1.0
    else:
        decay = k if dyn.kind == "plif" else 1.0 / dyn.tau
        dh_dv = 1.0 - decay
        dh_dx = decay if dyn.decay_input else 1.0
    chunk = _ZeroResetChunk if _zero_detached_reset(dyn) else _GeneralChunk
    work = chunk(dyn, surrogate, k, T, min(n, CHUNK), x, need_k)
    for a in range(0, n, CHUNK):
        b = min(a + CHUNK, n)
        work(x[:, a:b], v0[a:b], gs[:, a:b], grad_x[:, a:b], grad_v0[a:b], dh_dv)
        if not isinstance(dh_dx, float) or dh_dx != 1.0:
            grad_x[:, a:b].mul_(dh_dx)
    grad_k = None if work.acc is None else work.acc.to(k.dtype).reshape(k.shape)
    return grad_x_seq, grad_v0_out, grad_k


def _zero_detached_reset(dyn: Dynamics) -> bool:
    """SVFormer's neurons: hard reset to 0, detached, input decayed (or IF) - the specialised loop."""
    return dyn.v_reset == 0.0 and dyn.detach_reset and (dyn.kind == "if" or dyn.decay_input)


class _ZeroResetChunk:
    """The backward of one chunk for hard reset to 0 with detach_reset and decayed input (or IF).

    The recompute keeps what the gradient recurrence reads: H[t], the not-fired mask 1 - S[t] (as
    float, so that dV/dH = 1 - S is one multiply-add) and, for PLIF's dH/dk, D[t] = X[t] - V[t-1]
    (H = V + D k). Then dL/dH[t] = dL/dS[t] g'(H[t] - v_th) + dL/dV[t] (1 - S[t]) and
    dL/dV[t-1] = dL/dH[t] dH/dV. ``acc`` collects dL/dk in float64.
    """

    def __init__(self, dyn, surrogate, k, T, m, like_x, need_k):
        self.dyn, self.surrogate, self.k = dyn, surrogate, k
        self.h, self.not_fired = like_x.new_empty((T, m)), like_x.new_empty((T, m))
        self.d = like_x.new_empty((T, m)) if dyn.kind != "if" else None
        self.v, self.scratch = like_x.new_empty(m), like_x.new_empty(m)
        self.acc = torch.zeros((), dtype=torch.float64, device=like_x.device) if need_k else None

    def __call__(self, x, v0, gs, g_out, grad_v, dh_dv):
        dyn, m = self.dyn, x.shape[1]
        h, nf, v, scratch = self.h[:, :m], self.not_fired[:, :m], self.v[:m], self.scratch[:m]
        d = None if self.d is None else self.d[:, :m]
        vth = dyn.v_threshold
        v.copy_(v0)
        for t in range(x.shape[0]):  # the forward again, op for op as `_charge_into` (same bits)
            if d is None:
                torch.add(v, x[t], out=h[t])
            else:
                torch.sub(x[t], v, out=d[t])
                torch.mul(d[t], self.k, out=h[t]) if dyn.kind == "plif" else torch.div(d[t], dyn.tau, out=h[t])
                h[t].add_(v)
            torch.lt(h[t], vth, out=nf[t])
            torch.mul(h[t], nf[t], out=v)  # h or 0, as `_reset_into`'s h - h*s
        for t in range(x.shape[0] - 1, -1, -1):
            g = g_out[t]
            grad_into(self.surrogate, torch.sub(h[t], vth, out=scratch), gs[t], out=g)
            g.addcmul_(grad_v, nf[t])
            if self.acc is not None:
                self.acc += torch.dot(g, d[t])
            torch.mul(g, dh_dv, out=grad_v)


class _GeneralChunk:
    """The backward of one chunk for any reset: recompute H[t] and V[t-1], then the recurrence with
    dV/dH from `dynamics.reset_derivative` and dH/dk from `_dh_dk_dot`."""

    def __init__(self, dyn, surrogate, k, T, m, like_x, need_k):
        self.dyn, self.surrogate, self.k = dyn, surrogate, k
        self.h, self.v = like_x.new_empty((T, m)), like_x.new_empty((T, m))
        self.scratch = like_x.new_empty(m)
        self.fired = torch.empty(m, dtype=torch.bool, device=like_x.device)
        self.acc = torch.zeros((), dtype=torch.float64, device=like_x.device) if need_k else None

    def __call__(self, x, v0, gs, g_out, grad_v, dh_dv):
        dyn, m = self.dyn, x.shape[1]
        h, v, scratch, fired = self.h[:, :m], self.v[:, :m], self.scratch[:m], self.fired[:m]
        _recompute(dyn, x, v0, self.k, h, v, scratch)
        _chunk_general(dyn, self.surrogate, h, v, x if self.acc is not None else None, gs, g_out, grad_v,
                       dh_dv, self.acc, scratch, fired)


def _dh_dk_dot(dyn: Dynamics, g, x, v_prev):
    """sum(dL/dH * dH/dk) for PLIF: dH/dk = X - (V[t-1] - v_reset) with decay_input, else -(V[t-1] - v_reset)."""
    dot = -torch.dot(g, v_prev) + dyn.reset_value * g.sum() if dyn.reset_value else -torch.dot(g, v_prev)
    return dot + torch.dot(g, x) if dyn.decay_input else dot


def _chunk_general(dyn, surrogate, h, v, x, gs, g_out, grad_v, dh_dv, acc, scratch, fired):
    """One chunk, any reset: the recurrence with dV/dH from `dynamics.reset_derivative`."""
    vth = dyn.v_threshold
    for t in range(h.shape[0] - 1, -1, -1):
        ht, g = h[t], g_out[t]
        grad_into(surrogate, torch.sub(ht, vth, out=scratch), gs[t], out=g)
        torch.ge(ht, vth, out=fired)
        if dyn.hard_reset and dyn.detach_reset:
            g.add_(grad_v.masked_fill_(fired, 0.0))
        else:
            g.add_(grad_v * reset_derivative(dyn, ht, surrogate.derivative(ht - vth)))
        if acc is not None:
            acc += _dh_dk_dot(dyn, g, x[t], v[t])
        torch.mul(g, dh_dv, out=grad_v)

