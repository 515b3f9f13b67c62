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


def per_step_batch_norm(bn: "TimeBatchNorm", x: torch.Tensor) -> torch.Tensor:
    """Per-(t, c) BatchNorm as one ordinary BatchNorm over T*C channels: the authors' formulation.

    (T, B, C, ...) maps become (B, T*C, ...) and (T, B, N, C) tokens (B*N, T*C), so channel t*C + c is
    channel c at step t; training normalises with the batch statistics of each (t, c) and updates its
    running statistics, evaluation uses them.
    """
    T, B = x.shape[:2]
    C = bn.num_features
    if bn.channels_last:  # (T, B, N, C) -> (B*N, T*C)
        y = x.permute(1, 2, 0, 3).reshape(B * x.shape[2], T * C)
    else:  # (T, B, C, ...) -> (B, T*C, ...)
        y = x.transpose(0, 1).reshape(B, T * C, *x.shape[3:])
    y = bn.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, bn.training, bn.batch_momentum(),
                      bn.eps)
    if bn.channels_last:
        return y.reshape(B, x.shape[2], T, C).permute(2, 0, 1, 3)
    return y.reshape(B, T, *x.shape[2:]).transpose(0, 1)


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
        # Per-step computation, ``kernel(bn, x)``; `svformer.cpu.accelerate` swaps in a faster one.
        self.kernel = per_step_batch_norm
        # The normalisation itself, with ``F.batch_norm``'s signature; `sync_norm.convert_sync_batchnorm`
        # swaps in one whose batch statistics span every process of a distributed run.
        self.batch_norm = F.batch_norm

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

    def batch_momentum(self) -> float:
        """The momentum of this call's running-statistics update (cumulative average when None)."""
        if self.training and self.momentum is None:
            return 1.0 / float(self.num_batches_tracked)
        return 0.0 if self.momentum is None else self.momentum

    def forward_step(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """One frame (1, B, ...) that is time step ``t`` of its sequence, normalised with that step's
        running statistics (evaluation only: streaming inference)."""
        if self.training:
            raise RuntimeError("single-step (streaming) BatchNorm works in eval mode only")
        if x.shape[0] != 1:
            raise ValueError(f"forward_step takes one time step (1, B, ...), got shape {tuple(x.shape)}")
        if self.per_step and not 0 <= t < self.num_steps:
            raise ValueError(f"time step {t} is outside the {self.num_steps} steps this BatchNorm was built for")
        c = self.num_features
        part = slice(t * c, (t + 1) * c) if self.per_step else slice(0, c)
        y = x[0].movedim(-1, 1) if self.channels_last else x[0]  # (B, C, ...)
        y = F.batch_norm(y, self.running_mean[part], self.running_var[part], self.weight[part], self.bias[part],
                         False, 0.0, self.eps)
        return (y.movedim(1, -1) if self.channels_last else y).unsqueeze(0)

    def forward(self, x: torch.Tensor, t: Optional[int] = None) -> torch.Tensor:
        """Shape: (T, B, C, ...) or, with channels_last, (T, B, N, C); output has the input's shape.
        ``t``: ``x`` is the single time step ``t`` (`forward_step`) instead of a whole sequence."""
        if t is not None:
            return self.forward_step(x, t)
        self._check(x)
        if self.training:
            self.num_batches_tracked.add_(1)
        if self.per_step:
            return self.kernel(self, x)
        # Shared over time: one ordinary BN over (T, B, positions) on a view.
        y = x.reshape(-1, self.num_features) if self.channels_last else x.flatten(0, 1)
        y = self.batch_norm(y, self.running_mean, self.running_var, self.weight, self.bias, self.training,
                            self.batch_momentum(), self.eps)
        return y.reshape(x.shape)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, num_steps={self.num_steps}, per_step={self.per_step}, "
            f"channels_last={self.channels_last}, eps={self.eps}, momentum={self.momentum}"
        )
