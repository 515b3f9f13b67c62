"""Surrogate gradients for the spike function.

A spike is the Heaviside step of the membrane potential above threshold, whose derivative is zero almost
everywhere. Surrogate-gradient training (Neftci et al., 2019) keeps the step in the forward pass and
uses the derivative of a smooth primitive in the backward pass. Each surrogate here is the smooth
primitive and its derivative; calling one applies `SpikeFunction` (heaviside forward, the derivative in
the backward).

The formulas and defaults follow spikingjelly 0.0.0.0.14 (`activation_based/surrogate.py`) so that
gradients agree with it to rounding.
"""
from __future__ import annotations

import math

import torch


def heaviside(x: torch.Tensor) -> torch.Tensor:
    """Step function with heaviside(0) = 1, in the dtype of ``x``."""
    return (x >= 0).to(x.dtype)


class SpikeFunction(torch.autograd.Function):
    """heaviside(x) forward; ``derivative(x, alpha) * grad`` backward. Apply with
    ``SpikeFunction.apply(x, derivative, alpha)``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, derivative, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.derivative, ctx.alpha = derivative, alpha
        return heaviside(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (x,) = ctx.saved_tensors
        return ctx.derivative(x, ctx.alpha) * grad_output, None, None


def atan_primitive(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """g(x) = arctan(pi * alpha * x / 2) / pi + 1/2."""
    return torch.atan(math.pi / 2 * alpha * x) / math.pi + 0.5


def atan_derivative(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """g'(x) = (alpha / 2) / (1 + (pi * alpha * x / 2)^2)."""
    return alpha / 2 / (1 + (math.pi / 2 * alpha * x).square())


def sigmoid_primitive(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """g(x) = sigmoid(alpha * x)."""
    return torch.sigmoid(alpha * x)


def sigmoid_derivative(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """g'(x) = alpha * sigmoid(alpha x) * (1 - sigmoid(alpha x))."""
    s = torch.sigmoid(x * alpha)
    return (1.0 - s) * s * alpha


class Surrogate:
    """A spike function with a surrogate gradient.

    Calling it on ``x`` (the membrane potential minus threshold) returns heaviside(x) with the surrogate
    backward attached. ``primitive`` is the smooth function whose derivative ``derivative`` is used.
    Instances are immutable and comparable, so they can sit in module attributes and in configs.
    """

    name: str = ""
    default_alpha: float = 1.0

    def __init__(self, alpha: float | None = None):
        self.alpha = float(self.default_alpha if alpha is None else alpha)
        if not self.alpha > 0:
            raise ValueError(f"{type(self).__name__}: alpha must be positive, got {alpha}")

    # Subclasses set these to module-level functions of (x, alpha).
    _primitive = None
    _derivative = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return SpikeFunction.apply(x, type(self)._derivative, self.alpha)

    def primitive(self, x: torch.Tensor) -> torch.Tensor:
        return type(self)._primitive(x, self.alpha)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return type(self)._derivative(x, self.alpha)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alpha={self.alpha})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.alpha == other.alpha

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.alpha))


class ATan(Surrogate):
    """Arc-tangent surrogate (Fang et al., 2021); the SVFormer default with alpha = 2."""

    name = "atan"
    default_alpha = 2.0
    _primitive = staticmethod(atan_primitive)
    _derivative = staticmethod(atan_derivative)


class Sigmoid(Surrogate):
    """Sigmoid surrogate with slope alpha (spikingjelly default alpha = 4)."""

    name = "sigmoid"
    default_alpha = 4.0
    _primitive = staticmethod(sigmoid_primitive)
    _derivative = staticmethod(sigmoid_derivative)


SURROGATES = {cls.name: cls for cls in (ATan, Sigmoid)}


def get_surrogate(spec: str | Surrogate, alpha: float | None = None) -> Surrogate:
    """Build a surrogate from its name (``'atan'``, ``'sigmoid'``) or pass an instance through."""
    if isinstance(spec, Surrogate):
        return spec
    try:
        return SURROGATES[spec.lower()](alpha)
    except KeyError:
        raise ValueError(f"unknown surrogate {spec!r}; choose one of {sorted(SURROGATES)}") from None
