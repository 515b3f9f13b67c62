"""Spiking neuron layers in multi-step mode: IF, LIF and parametric LIF.

Shape: every layer maps a current sequence (T, B, ...) to a spike sequence of the same shape and dtype.

State: a layer keeps its membrane potential ``v`` (shape (B, ...)) after a call, so a sequence can be
fed in pieces (streaming). ``reset()`` drops it; models call `reset_states` at the start of every
forward, so training loops never have to.

Computation: ``kernel(dynamics, surrogate, x_seq, v0, k, store_v_seq) -> (spikes, v_last, v_seq)``,
by default `dynamics.reference_multistep`, the plain loop that autograd differentiates on any device
and that torch.compile traces. `svformer.cpu.accelerate` swaps in a faster kernel with the same results
(tests/snn/test_neuron.py checks both against spikingjelly 0.0.0.0.14).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from .dynamics import Dynamics, reference_multistep
from .surrogate import Surrogate, get_surrogate


class BaseNeuron(nn.Module):
    """Common machinery; subclasses only fix the dynamics and their parameters."""

    kind: str = ""

    def __init__(
        self,
        v_threshold: float = 1.0,
        v_reset: Optional[float] = 0.0,
        surrogate: Surrogate | str = "atan",
        detach_reset: bool = False,
        decay_input: bool = True,
        tau: float = 2.0,
        store_v_seq: bool = False,
    ):
        super().__init__()
        self.dynamics = Dynamics(
            kind=self.kind,
            v_threshold=float(v_threshold),
            v_reset=None if v_reset is None else float(v_reset),
            detach_reset=bool(detach_reset),
            decay_input=bool(decay_input),
            tau=float(tau),
        )
        self.surrogate = get_surrogate(surrogate) if isinstance(surrogate, str) else surrogate
        self.kernel = reference_multistep
        self.store_v_seq = store_v_seq
        self.v: Optional[torch.Tensor] = None
        self.v_seq: Optional[torch.Tensor] = None

    @property
    def v_threshold(self) -> float:
        return self.dynamics.v_threshold

    @property
    def v_reset(self) -> Optional[float]:
        return self.dynamics.v_reset

    def decay(self) -> Optional[torch.Tensor]:
        """k = 1/tau as a tensor when it is learnable, else None."""
        return None

    def reset(self) -> None:
        """Forget the membrane potential (cheap: drops a reference)."""
        self.v = None
        self.v_seq = None

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """Shape: (T, B, ...) -> (T, B, ...) spikes in {0, 1}, same dtype."""
        if x_seq.dim() < 2:
            raise ValueError(f"{type(self).__name__} expects a (T, B, ...) sequence, got shape {tuple(x_seq.shape)}")
        v0 = self.v
        if v0 is None or v0.shape != x_seq.shape[1:]:
            if v0 is not None:
                raise ValueError(
                    f"{type(self).__name__}: state has shape {tuple(v0.shape)} but the input steps have shape "
                    f"{tuple(x_seq.shape[1:])}; call reset() between sequences of different shapes"
                )
            # One value broadcast over the step's shape: the backward keeps v0, and a layer's worth of
            # zeros per neuron would be saved memory for nothing.
            v0 = x_seq.new_full((), self.dynamics.reset_value).expand(x_seq.shape[1:])
        k = self.decay()
        if k is not None:
            k = k.to(x_seq.dtype)
        spikes, self.v, self.v_seq = self.kernel(self.dynamics, self.surrogate, x_seq, v0, k, self.store_v_seq)
        return spikes

    def extra_repr(self) -> str:
        d = self.dynamics
        s = (
            f"v_threshold={d.v_threshold}, v_reset={d.v_reset}, detach_reset={d.detach_reset}, "
            f"surrogate={self.surrogate}"
        )
        return s


class IFNode(BaseNeuron):
    """Integrate-and-fire: H = V + X."""

    kind = "if"

    def __init__(self, v_threshold=1.0, v_reset=0.0, surrogate="atan", detach_reset=False, store_v_seq=False):
        super().__init__(v_threshold, v_reset, surrogate, detach_reset, True, 2.0, store_v_seq)


class LIFNode(BaseNeuron):
    """Leaky integrate-and-fire with a fixed time constant ``tau`` (> 1)."""

    kind = "lif"

    def __init__(self, tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0, surrogate="atan",
                 detach_reset=False, store_v_seq=False):
        super().__init__(v_threshold, v_reset, surrogate, detach_reset, decay_input, tau, store_v_seq)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", tau={self.dynamics.tau}, decay_input={self.dynamics.decay_input}"


class ParametricLIFNode(BaseNeuron):
    """Parametric LIF (Fang et al., ICCV 2021): 1/tau = sigmoid(w), one learnable scalar ``w`` per layer,
    initialised to w = -ln(init_tau - 1) so that tau starts at ``init_tau``."""

    kind = "plif"

    def __init__(self, init_tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0, surrogate="atan",
                 detach_reset=False, store_v_seq=False):
        if not init_tau > 1.0:
            raise ValueError(f"ParametricLIFNode needs init_tau > 1, got {init_tau}")
        super().__init__(v_threshold, v_reset, surrogate, detach_reset, decay_input, 2.0, store_v_seq)
        self.w = nn.Parameter(torch.tensor(-math.log(init_tau - 1.0)))

    def decay(self) -> torch.Tensor:
        return self.w.sigmoid()

    @property
    def tau(self) -> float:
        return float(1.0 / self.w.detach().sigmoid())

    def extra_repr(self) -> str:
        return super().extra_repr() + f", tau={self.tau:.4f}, decay_input={self.dynamics.decay_input}"


NEURONS = {"if": IFNode, "lif": LIFNode, "plif": ParametricLIFNode}


def is_neuron(module: nn.Module) -> bool:
    """True for svformer neurons and for spikingjelly nodes swapped in through a neuron factory."""
    return isinstance(module, BaseNeuron) or hasattr(module, "v_threshold") and hasattr(module, "reset")


def reset_states(model: nn.Module) -> None:
    """Reset every stateful neuron in ``model`` (svformer's and spikingjelly's)."""
    for m in model.modules():
        if is_neuron(m):
            m.reset()
