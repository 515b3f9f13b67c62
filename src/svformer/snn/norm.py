"""Batch normalisation for multi-step (T, B, ...) activations.

SVFormer normalises each (time step, channel) pair on its own: statistics over the batch and the
spatial/token positions, and its own running mean/var and affine gamma/beta. The authors implement this
by reshaping (T, B, C, ...) to (B, T*C, ...) and calling an ordinary BatchNorm over T*C channels, so
their state dicts store C*T entries ordered t-major (entry t*C + c is channel c at step t). This module
stores its parameters and buffers exactly that way, so the authors' weights load without reordering.

``per_step=False`` gives the ordinary shared-over-time BN (C entries; statistics over T, B and
positions), which also lets T vary between calls.

Layouts: ``channels_last=False`` for feature maps (T, B, C, H, W) (any number of trailing spatial dims),
``channels_last=True`` for token sequences (T, B, N, C).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from . import pool
from .layout import like, time_major


def _bn_view(x_t: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """One contiguous time step as an ordinary BatchNorm input: (B, C, ...) maps or (B*N, C) tokens."""
    return x_t.view(-1, x_t.shape[-1]) if channels_last else x_t


class _PerStepBatchNorm(torch.autograd.Function):
    """Training-mode per-step BN with PyTorch's own kernels on each contiguous time step, written into one
    preallocated output: none of the (T, B) <-> (B, T) permute copies of the reshape formulation."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum: float, eps: float, channels_last: bool):
        T = x.shape[0]
        C = weight.shape[0] // T
        y = pool.empty_like(x)
        save_mean, save_invstd = weight.new_empty(T * C), weight.new_empty(T * C)
        for t in range(T):
            part = slice(t * C, (t + 1) * C)
            torch.ops.aten.native_batch_norm.out(
                _bn_view(x[t], channels_last), weight[part], bias[part],
                None if running_mean is None else running_mean[part],
                None if running_var is None else running_var[part], True, momentum, eps,
                out=_bn_view(y[t], channels_last), save_mean=save_mean[part], save_invstd=save_invstd[part])
        ctx.save_for_backward(x, weight, save_mean, save_invstd)
        ctx.eps, ctx.channels_last = eps, channels_last
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, weight, save_mean, save_invstd = ctx.saved_tensors
        grad_y = like(grad_y, x)
        T = x.shape[0]
        C = weight.shape[0] // T
        grad_x, grad_w, grad_b = pool.empty_like(x), torch.empty_like(weight), torch.empty_like(weight)
        cl = ctx.channels_last
        for t in range(T):
            part = slice(t * C, (t + 1) * C)
            torch.ops.aten.native_batch_norm_backward.out(
                _bn_view(grad_y[t], cl), _bn_view(x[t], cl), weight[part], None, None, save_mean[part],
                save_invstd[part], True, ctx.eps, [True, True, True],
                out0=_bn_view(grad_x[t], cl), out1=grad_w[part], out2=grad_b[part])
        return grad_x, grad_w, grad_b, None, None, None, None, None


class TimeBatchNorm(nn.Module):
    """BatchNorm over multi-step activations, per time step (default) or shared over time.

    Args:
        num_features: channels C.
        num_steps: T. Required when ``per_step``; an input with another T raises ValueError.
        per_step: one set of statistics and affine parameters per (t, c), stored t-major.
        channels_last: input is (T, B, N, C) tokens instead of (T, B, C, ...) maps.
    """

    def __init__(
        self,
        num_features: int,
        num_steps: Optional[int] = None,
        per_step: bool = True,
        channels_last: bool = False,
        eps: float = 1e-5,
        momentum: float = 0.1,
    ):
        super().__init__()
        if per_step and (num_steps is None or num_steps < 1):
            raise ValueError(f"per-time-step BatchNorm needs num_steps >= 1, got {num_steps}")
        self.num_features = num_features
        self.num_steps = num_steps if per_step else None
        self.per_step = per_step
        self.channels_last = channels_last
        self.eps = eps
        self.momentum = momentum
        n = num_features * (num_steps if per_step else 1)
        self.weight = nn.Parameter(torch.ones(n))
        self.bias = nn.Parameter(torch.zeros(n))
        self.register_buffer("running_mean", torch.zeros(n))
        self.register_buffer("running_var", torch.ones(n))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        # Set by streaming inference: the time step of single-frame inputs (see models/streaming.py).
        self.stream_step: Optional[int] = None

    def _check(self, x: torch.Tensor) -> None:
        min_dim = 3
        if x.dim() < min_dim:
            raise ValueError(f"TimeBatchNorm expects (T, B, ...) input, got shape {tuple(x.shape)}")
        c = x.shape[-1] if self.channels_last else x.shape[2]
        if c != self.num_features:
            where = "last" if self.channels_last else "third (T, B, C, ...)"
            raise ValueError(
                f"TimeBatchNorm expected {self.num_features} channels in the {where} dim, got shape {tuple(x.shape)}"
            )
        if self.per_step and x.shape[0] != self.num_steps:
            raise ValueError(
                f"per-time-step TimeBatchNorm was built for T={self.num_steps} time steps, got T={x.shape[0]} "
                f"(input shape {tuple(x.shape)}); build the model with num_frames={x.shape[0]} or use shared BN"
            )

    def _momentum(self) -> float:
        if self.training and self.momentum is None:
            return 1.0 / float(self.num_batches_tracked)
        return 0.0 if self.momentum is None else self.momentum

    def _forward_step(self, x: torch.Tensor) -> torch.Tensor:
        """One frame (1, B, ...) at step ``stream_step``, with that step's running statistics (eval only)."""
        if self.training:
            raise RuntimeError("streaming (single-step) BatchNorm works in eval mode only")
        t = self.stream_step if self.per_step else 0
        if self.per_step and not 0 <= t < self.num_steps:
            raise ValueError(f"time step {t} is outside the {self.num_steps} steps this BatchNorm was built for")
        c = self.num_features
        part = slice(t * c, (t + 1) * c)
        y = x[0].movedim(-1, 1) if self.channels_last else x[0]  # (B, C, ...)
        y = F.batch_norm(y, self.running_mean[part], self.running_var[part], self.weight[part], self.bias[part],
                         False, 0.0, self.eps)
        return (y.movedim(1, -1) if self.channels_last else y).unsqueeze(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shape: (T, B, C, ...) or, with channels_last, (T, B, N, C); output has the input's shape."""
        if self.stream_step is not None and x.shape[0] == 1:
            return self._forward_step(x)
        self._check(x)
        if self.training:
            self.num_batches_tracked.add_(1)
        if self.per_step:
            return self._forward_per_step(x)
        # Shared over time: one ordinary BN over (T, B, positions) on a view.
        y = x.reshape(-1, self.num_features) if self.channels_last else x.flatten(0, 1)
        y = F.batch_norm(y, self.running_mean, self.running_var, self.weight, self.bias, self.training,
                         self._momentum(), self.eps)
        return y.reshape(x.shape)

    def _forward_per_step(self, x: torch.Tensor) -> torch.Tensor:
        """Each time step is an ordinary BN over its own T*C slice of the parameters, in place in (T, B, ...)."""
        if self.training and torch.compiler.is_compiling():
            return self._forward_reshaped(x)
        x = x.contiguous() if self.channels_last else time_major(x)  # maps may be channels-last inside a step
        if self.training:
            return _PerStepBatchNorm.apply(x, self.weight, self.bias, self.running_mean, self.running_var,
                                           self._momentum(), self.eps, self.channels_last)
        # Eval: an affine map per (t, c), y = x * scale + shift, in one pass.
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        shift = self.bias - self.running_mean * scale
        if self.channels_last:
            shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (self.num_features,)
        else:
            shape = (x.shape[0], 1, self.num_features) + (1,) * (x.dim() - 3)
        return torch.addcmul(shift.view(shape), x, scale.view(shape))

    def _forward_reshaped(self, x: torch.Tensor) -> torch.Tensor:
        """Training-mode per-step BN as one ordinary BN over T*C channels (the authors' formulation): the
        traceable form for torch.compile, whose inductor fuses the permutes away."""
        T, B = x.shape[:2]
        if self.channels_last:  # (T, B, N, C) -> (B*N, T*C)
            y = x.permute(1, 2, 0, 3).reshape(B * x.shape[2], T * self.num_features)
        else:  # (T, B, C, ...) -> (B, T*C, ...)
            y = x.transpose(0, 1).reshape(B, T * self.num_features, *x.shape[3:])
        y = F.batch_norm(y, self.running_mean, self.running_var, self.weight, self.bias, True, self._momentum(),
                         self.eps)
        if self.channels_last:
            return y.reshape(B, x.shape[2], T, self.num_features).permute(2, 0, 1, 3)
        return y.reshape(B, T, *x.shape[2:]).transpose(0, 1)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, num_steps={self.num_steps}, per_step={self.per_step}, "
            f"channels_last={self.channels_last}, eps={self.eps}, momentum={self.momentum}"
        )
