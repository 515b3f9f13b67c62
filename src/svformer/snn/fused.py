"""Fused multi-step neuron: one autograd Function over the whole (T, ...) sequence.

The reference loop (`dynamics.reference_multistep`) lets autograd record about ten tensors per time
step. Here the forward runs the same charge/fire/reset loop without a graph and keeps one tensor per
layer for the backward: eagerly the inputs X (from which `chunked` recomputes H and V[t-1] chunk by
chunk, in cache), compiled the pre-reset potentials H (from which spikes, surrogate derivatives and
V[t-1] follow, and PLIF's dH/dk = X - (V[t-1] - v_reset) = (H - V[t-1]) / k). Only a two-op recurrence
is sequential:

    dL/dH[t]   = dL/dS[t] * g'(H[t] - v_th) + dL/dV[t] * dV[t]/dH[t]
    dL/dV[t-1] = dL/dH[t] * dH[t]/dV[t-1]

where dV/dH = (1 - S) for a hard reset (plus (v_reset - H) g' without detach_reset), 1 for a soft reset
(minus v_th g' without detach_reset), and dH/dV = 1 - k (1 for IF).

Eagerly (``compiled=False``) the loops run chunk by chunk over the positions so that each pass stays in
cache (`chunked`). `_forward` and `_backward` here are the same arithmetic as pure functions of plain
PyTorch ops (no in-place writes) for ``compiled=True``: `torch.compile` fuses each loop into one kernel
(C++ on CPU, Triton on GPU) - no hand-written kernels either way.
"""
from __future__ import annotations

from typing import Optional

import torch

from . import chunked
from .dynamics import Dynamics, charge, reset_values
from .layout import time_major
from .surrogate import Surrogate


def _forward(dyn: Dynamics, x_seq: torch.Tensor, v0: torch.Tensor, k: Optional[torch.Tensor]):
    v = v0
    hs = []
    for t in range(x_seq.shape[0]):
        h = charge(dyn, v, x_seq[t], k)
        hs.append(h)
        v = reset_values(dyn, h)
    h_seq = torch.stack(hs)
    return (h_seq >= dyn.v_threshold).to(x_seq.dtype), v, h_seq


def _backward(dyn: Dynamics, surrogate: Surrogate, h_seq, v0, k, grad_spike, grad_v, need_k: bool):
    sg = surrogate.derivative(h_seq - dyn.v_threshold)
    fired = h_seq >= dyn.v_threshold
    if dyn.hard_reset:
        dv_dh = (~fired).to(h_seq.dtype)
        if not dyn.detach_reset:
            dv_dh = dv_dh + (dyn.v_reset - h_seq) * sg
    else:
        dv_dh = torch.ones_like(h_seq) if dyn.detach_reset else 1.0 - dyn.v_threshold * sg
    if dyn.kind == "if":
        dh_dv, dh_dx = 1.0, 1.0
    else:
        decay = k if dyn.kind == "plif" else 1.0 / dyn.tau
        dh_dv = 1.0 - decay
        dh_dx = decay if dyn.decay_input else 1.0
    direct = grad_spike * sg
    grads = []
    for t in range(h_seq.shape[0] - 1, -1, -1):
        g = direct[t] + grad_v * dv_dh[t]
        grads.append(g)
        grad_v = g * dh_dv
    grad_h = torch.stack(grads[::-1])
    grad_k = None
    if need_k:
        v_prev = torch.cat([v0.unsqueeze(0), reset_values(dyn, h_seq[:-1])])
        if dyn.decay_input:
            dh_dk = (h_seq - v_prev) / k
        else:
            dh_dk = -(v_prev - dyn.v_reset) if dyn.v_reset else -v_prev
        grad_k = (grad_h * dh_dk).sum().reshape(k.shape)
    return grad_h * dh_dx, grad_v, grad_k


_compiled = {}


def _compile(fn):
    if fn not in _compiled:
        _compiled[fn] = torch.compile(fn, dynamic=None)
    return _compiled[fn]


class FusedMultiStep(torch.autograd.Function):
    """Apply with ``FusedMultiStep.apply(x_seq, v0, k, dyn, surrogate, compiled, keep_h)``.

    Returns ``(spike_seq, v_last, h_seq)``. The first two carry gradients (``v_last`` so that a sequence
    split over several calls still backpropagates through the state); ``h_seq``, the pre-reset
    potentials, is a non-differentiable by-product for diagnostics, empty unless ``keep_h`` (the eager
    backward recomputes the potentials from the inputs it keeps; the compiled one keeps H instead).
    ``k`` is sigmoid(w) for PLIF, else None.
    """

    @staticmethod
    def forward(ctx, x_seq, v0, k, dyn: Dynamics, surrogate: Surrogate, compiled: bool = False,
                keep_h: bool = False):
        if compiled:
            spike_seq, v, h_seq = _compile(_forward)(dyn, x_seq, v0, k)
            saved = h_seq
        else:
            saved = time_major(x_seq)
            spike_seq, v, h_seq = chunked.forward(dyn, saved, v0, k, keep_h=keep_h)
            if h_seq is None:
                h_seq = x_seq.new_empty(0)
        ctx.dyn, ctx.surrogate, ctx.compiled = dyn, surrogate, compiled
        ctx.k_needs_grad = k is not None and ctx.needs_input_grad[2]
        ctx.save_for_backward(saved, v0, k)
        ctx.mark_non_differentiable(h_seq)
        return spike_seq, v, h_seq

    @staticmethod
    def backward(ctx, grad_spike, grad_v_last, _grad_h):
        saved, v0, k = ctx.saved_tensors
        if grad_spike is None:
            grad_spike = torch.zeros_like(saved)
        if grad_v_last is None:
            grad_v_last = torch.zeros_like(v0)
        step = _compile(_backward) if ctx.compiled else chunked.backward
        grad_x, grad_v, grad_k = step(ctx.dyn, ctx.surrogate, saved, v0, k, grad_spike, grad_v_last,
                                      ctx.k_needs_grad)
        return grad_x, grad_v, grad_k, None, None, None, None


def fused_multistep(dyn: Dynamics, surrogate: Surrogate, x_seq: torch.Tensor, v0: torch.Tensor,
                    k: Optional[torch.Tensor], compiled: bool = False, keep_h: bool = False):
    """Functional form of `FusedMultiStep`: returns (spike_seq, v_last, h_seq)."""
    return FusedMultiStep.apply(x_seq, v0, k, dyn, surrogate, compiled, keep_h)
