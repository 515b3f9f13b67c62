"""Integrate-and-fire dynamics: charge, fire, reset, and the reference multi-step loop.

Every neuron here runs the same three steps per time step t (spikingjelly's formulation, Fang et al.,
"Incorporating learnable membrane time constant", ICCV 2021):

    charge  H[t] = f(V[t-1], X[t])
    fire    S[t] = heaviside(H[t] - v_threshold)
    reset   V[t] = H[t] * (1 - S[t]) + v_reset * S[t]     (hard reset)
            V[t] = H[t] - v_threshold * S[t]               (soft reset, v_reset=None)

with f, for decay factor k = 1/tau (a constant for LIF, sigmoid(w) for the parametric LIF):

    IF                          H = V + X
    LIF/PLIF, decay_input       H = V + (X - (V - v_reset)) * k
    LIF/PLIF, no decay_input    H = V - (V - v_reset) * k + X

The arithmetic is written exactly as spikingjelly 0.0.0.0.14 writes it (including its special case for
v_reset in {0, None} and its division by tau for LIF) so that float32 results agree bit for bit where
the operations are the same, and spikes never flip through rounding.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .surrogate import Surrogate

NEURON_KINDS = ("if", "lif", "plif")


@dataclass(frozen=True)
class Dynamics:
    """The fixed (non-learnable) description of a neuron layer.

    ``tau`` is used by LIF only; the parametric LIF passes its decay k = sigmoid(w) as a tensor.
    """

    kind: str
    v_threshold: float = 1.0
    v_reset: Optional[float] = 0.0
    detach_reset: bool = False
    decay_input: bool = True
    tau: float = 2.0

    def __post_init__(self):
        if self.kind not in NEURON_KINDS:
            raise ValueError(f"unknown neuron kind {self.kind!r}; choose one of {NEURON_KINDS}")
        if self.kind == "lif" and not self.tau > 1.0:
            raise ValueError(f"LIF needs tau > 1, got {self.tau}")

    @property
    def hard_reset(self) -> bool:
        return self.v_reset is not None

    @property
    def reset_value(self) -> float:
        """Initial and reset potential (0 for soft reset, as in spikingjelly)."""
        return 0.0 if self.v_reset is None else self.v_reset


def charge(dyn: Dynamics, v: torch.Tensor, x: torch.Tensor, k: Optional[torch.Tensor]) -> torch.Tensor:
    """H[t] from V[t-1] and X[t]. ``k`` is sigmoid(w) for PLIF and ignored otherwise."""
    if dyn.kind == "if":
        return v + x
    reset0 = dyn.v_reset is None or dyn.v_reset == 0.0
    if dyn.kind == "lif":
        tau = dyn.tau
        if dyn.decay_input:
            return v + (x - v) / tau if reset0 else v + (x - (v - dyn.v_reset)) / tau
        return v * (1.0 - 1.0 / tau) + x if reset0 else v - (v - dyn.v_reset) / tau + x
    if dyn.decay_input:
        return v + (x - v) * k if reset0 else v + (x - (v - dyn.v_reset)) * k
    return v * (1.0 - k) + x if reset0 else v - (v - dyn.v_reset) * k + x


def reset(dyn: Dynamics, h: torch.Tensor, spike: torch.Tensor) -> torch.Tensor:
    """V[t] from H[t] and S[t] (differentiable; detach ``spike`` first for detach_reset)."""
    if dyn.hard_reset:
        return (1.0 - spike) * h + spike * dyn.v_reset
    return h - spike * dyn.v_threshold


def reset_values(dyn: Dynamics, h: torch.Tensor) -> torch.Tensor:
    """V from H without autograd, recomputing the spikes; equal to ``reset`` in value, bit for bit."""
    fired = h >= dyn.v_threshold
    if dyn.hard_reset:
        return torch.where(fired, dyn.v_reset, h)
    return torch.where(fired, h - dyn.v_threshold, h)


def reset_derivative(dyn: Dynamics, h: torch.Tensor, surrogate_grad: torch.Tensor) -> torch.Tensor:
    """dV[t]/dH[t] through the reset, given g'(H - v_th) (the surrogate's derivative at H[t]):
    (1 - S) for a hard reset, plus (v_reset - H) g' unless the reset is detached; 1 for a soft reset,
    minus v_th g' unless detached."""
    fired = h >= dyn.v_threshold
    if dyn.hard_reset:
        dv_dh = (~fired).to(h.dtype)
        return dv_dh if dyn.detach_reset else dv_dh + (dyn.v_reset - h) * surrogate_grad
    return torch.ones_like(h) if dyn.detach_reset else 1.0 - dyn.v_threshold * surrogate_grad


def reference_multistep(
    dyn: Dynamics,
    surrogate: Surrogate,
    x_seq: torch.Tensor,
    v0: torch.Tensor,
    k: Optional[torch.Tensor],
    store_v_seq: bool = False,
):
    """The plain loop: one charge/fire/reset per time step, differentiated by autograd.

    Args:
        x_seq: input currents, shape (T, ...).
        v0: membrane potential before the first step, shape ``x_seq.shape[1:]``.
        k: sigmoid(w) for PLIF, else None.
    Returns:
        (spike_seq (T, ...), v_last (...), v_seq (T, ...) or None)
    """
    v = v0
    spikes, vs = [], []
    for t in range(x_seq.shape[0]):
        h = charge(dyn, v, x_seq[t], k)
        spike = surrogate(h - dyn.v_threshold)
        v = reset(dyn, h, spike.detach() if dyn.detach_reset else spike)
        spikes.append(spike)
        if store_v_seq:
            vs.append(v)
    return torch.stack(spikes), v, (torch.stack(vs) if store_v_seq else None)
