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

from dataclasses import dataclass, replace
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from . import pool
from .layout import like, time_major


def _bn_view(x_t: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """One contiguous time step as an ordinary BatchNorm input: (B, C, ...) maps or (B*N, C) tokens."""
    return x_t.view(-1, x_t.shape[-1]) if channels_last else x_t


def _affine_into(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, channels_last: bool,
                 out: torch.Tensor) -> torch.Tensor:
    """y[t] = x[t] * scale[t] + shift[t] per channel, into ``out`` (x's layout); scale/shift are (T*C,).

    A multiply and then an add, each rounded once, never fused into one multiply-add: the training
    forward and `Recompute` run this same code, so a recomputed output has the forward's bits on any
    CPU and thread count.
    """
    C = scale.shape[0] // x.shape[0]
    for t in range(x.shape[0]):
        part = slice(t * C, (t + 1) * C)
        x_t, y_t = _bn_view(x[t], channels_last), _bn_view(out[t], channels_last)
        shape = (C,) if channels_last else (C,) + (1,) * (x_t.dim() - 2)
        torch.mul(x_t, scale[part].view(shape), out=y_t).add_(shift[part].view(shape))
    return out


def _stats_without_output(device: torch.device) -> bool:
    """Whether `torch.batch_norm_update_stats` is used (CPU only: the one device it is tested on here)."""
    return device.type == "cpu"


def _batch_stats(x_t: torch.Tensor, running_mean, running_var, momentum: float, eps: float):
    """Mean and 1/sqrt(var + eps) of one time step's batch, updating the running statistics as BatchNorm
    does (the unbiased variance). On the CPU without computing an output (the library's
    `batch_norm_update_stats`, as fast as the statistics pass of its BatchNorm; `var_mean` is 20x
    slower); elsewhere through the BatchNorm kernel, whose output is dropped."""
    if _stats_without_output(x_t.device):
        mean, var = torch.batch_norm_update_stats(x_t, running_mean, running_var, momentum)  # biased var
        return mean, (var.double() + eps).rsqrt().to(var.dtype)  # in double, as the BN kernel
    _, mean, invstd = torch.native_batch_norm(x_t, None, None, running_mean, running_var, True, momentum, eps)
    return mean, invstd


@dataclass(frozen=True, eq=False)  # eq=False: no element-wise tensor comparison
class Recompute:
    """A saved per-step BN output, kept as the recipe that made it: the BN input (which the BN keeps for
    its own backward anyway) and the per-(t, c) scale and shift. The BN marks its output with one
    (``view`` None); each saved view of it gets a copy with its ``view`` (size, stride, offset), and
    `restore` recomputes the output (the same bits, `_affine_into`) and returns that view."""

    x: torch.Tensor
    x_version: int
    scale: torch.Tensor
    shift: torch.Tensor
    channels_last: bool
    version: int  # the output's version when the BN made it
    view: Optional[tuple] = None

    def restore(self) -> torch.Tensor:
        if self.x._version != self.x_version:
            raise RuntimeError("the input of a per-step BatchNorm was modified in place after the forward; its "
                               "output, which a later layer saved for the backward, cannot be recomputed")
        with torch.no_grad():
            y = _affine_into(self.x, self.scale, self.shift, self.channels_last, pool.empty_like(self.x))
        return y.as_strided(*self.view)


_RECIPE = "_svformer_bn_recipe"


def recompute_recipe(t: torch.Tensor) -> Optional[Recompute]:
    """For autograd's pack hook: a `Recompute` if ``t`` is (a view of) a per-step BN output not written since
    the BN made it, else None."""
    if t.is_inference():
        return None
    base = t if t._base is None else t._base
    recipe = getattr(base, _RECIPE, None)
    if recipe is None or recipe.version != t._version:
        return None
    return replace(recipe, view=(t.size(), t.stride(), t.storage_offset()))


class _PerStepBatchNorm(torch.autograd.Function):
    """Training-mode per-step BN on each contiguous time step, written into one preallocated output: none
    of the (T, B) <-> (B, T) permute copies of the reshape formulation. PyTorch's own kernels compute the
    statistics (and update the running ones) and the input gradients; the output is `_affine_into`, so
    that a later layer's saved copy of it can be recomputed instead of kept (`recompute_recipe`)."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum: float, eps: float, channels_last: bool):
        T = x.shape[0]
        C = weight.shape[0] // T
        save_mean, save_invstd = weight.new_empty(T * C), weight.new_empty(T * C)
        for t in range(T):
            part = slice(t * C, (t + 1) * C)
            save_mean[part], save_invstd[part] = _batch_stats(
                _bn_view(x[t], channels_last), None if running_mean is None else running_mean[part],
                None if running_var is None else running_var[part], momentum, eps)
        scale = weight * save_invstd
        shift = bias - save_mean * scale
        y = _affine_into(x, scale, shift, channels_last, pool.empty_like(x))
        setattr(y, _RECIPE, Recompute(x, x._version, scale, shift, channels_last, y._version))
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
