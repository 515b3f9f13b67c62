"""Per-time-step BatchNorm on the CPU without the permute copies of the plain formulation.

The plain `snn.norm.per_step_batch_norm` reshapes (T, B, C, ...) to (B, T*C, ...), which costs a copy
of the input and of the output in each direction. Here each contiguous time step is an ordinary
BatchNorm of its own slice of the parameters, computed in place in the (T, B, ...) layout:

- training: `_PerStepBatchNorm`, PyTorch's kernels for the statistics (and the running-statistics
  update) and for the input gradients, the output as y = x * scale + shift into one preallocated
  tensor; with an `Outputs` registry, the recipe that made it is kept there, so that a neuron reading
  it can recompute it in the backward instead of keeping a float copy (`recipes`);
- evaluation: the affine map per (t, c) in one pass.

The same function as the plain formulation, up to float rounding in the statistics.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from ..snn.norm import TimeBatchNorm, per_step_batch_norm
from .layout import like, time_major
from .recipes import NormRecipe, Outputs


def _bn_view(x_t: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """One contiguous time step as an ordinary BatchNorm input: (B, C, ...) maps or (B*N, C) tokens."""
    return x_t.view(-1, x_t.shape[-1]) if channels_last else x_t


def _affine_into(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, channels_last: bool,
                 out: torch.Tensor) -> torch.Tensor:
    """y[t] = x[t] * scale[t] + shift[t] per channel, into ``out`` (x's layout); scale/shift are (T*C,).

    A multiply and then an add, each rounded once, never fused into one multiply-add: the training
    forward and `recipes.NormRecipe` run this same code, so a recomputed output has the forward's bits on any
    CPU and thread count.
    """
    C = scale.shape[0] // x.shape[0]
    for t in range(x.shape[0]):
        part = slice(t * C, (t + 1) * C)
        x_t, y_t = _bn_view(x[t], channels_last), _bn_view(out[t], channels_last)
        shape = (C,) if channels_last else (C,) + (1,) * (x_t.dim() - 2)
        torch.mul(x_t, scale[part].view(shape), out=y_t).add_(shift[part].view(shape))
    return out


def _batch_stats(x_t: torch.Tensor, running_mean, running_var, momentum: float, eps: float):
    """Mean and 1/sqrt(var + eps) of one time step's batch (this kernel runs on CPU tensors only),
    updating the running statistics as BatchNorm does (the unbiased variance), without computing an
    output: the library's `batch_norm_update_stats`, as fast as the statistics pass of its BatchNorm."""
    mean, var = torch.batch_norm_update_stats(x_t, running_mean, running_var, momentum)  # biased var
    return mean, (var.double() + eps).rsqrt().to(var.dtype)  # in double, as the BN kernel


class _PerStepBatchNorm(torch.autograd.Function):
    """Training-mode per-step BN on each contiguous time step, written into one preallocated output: none
    of the (T, B) <-> (B, T) permute copies of the reshape formulation. PyTorch's own kernels compute the
    statistics (and update the running ones) and the input gradients; the output is `_affine_into`, so
    that a neuron can recompute it from the recipe appended to ``recipes`` instead of keeping it."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum: float, eps: float, channels_last: bool,
                alloc: Callable, recipes: Optional[list]):
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
        y = _affine_into(x, scale, shift, channels_last, alloc(x))
        if recipes is not None:  # the BN keeps x for its backward anyway; scale and shift are the recipe's
            recipes.append((NormRecipe(channels_last), [x, scale, shift]))
        ctx.save_for_backward(x, weight, save_mean, save_invstd)
        ctx.eps, ctx.channels_last, ctx.alloc = eps, channels_last, alloc
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, weight, save_mean, save_invstd = ctx.saved_tensors
        grad_y = like(grad_y, x)
        T = x.shape[0]
        C = weight.shape[0] // T
        grad_x, grad_w, grad_b = ctx.alloc(x), torch.empty_like(weight), torch.empty_like(weight)
        cl = ctx.channels_last
        for t in range(T):
            part = slice(t * C, (t + 1) * C)
            torch.ops.aten.native_batch_norm_backward.out(
                _bn_view(grad_y[t], cl), _bn_view(x[t], cl), weight[part], None, None, save_mean[part],
                save_invstd[part], True, ctx.eps, [True, True, True],
                out0=_bn_view(grad_x[t], cl), out1=grad_w[part], out2=grad_b[part])
        return grad_x, grad_w, grad_b, None, None, None, None, None, None, None


class PerStepNormKernel:
    """A `TimeBatchNorm` kernel: the in-place per-step BatchNorm above on CPU tensors outside
    torch.compile, `per_step_batch_norm` elsewhere. ``alloc(like)`` makes the large outputs;
    ``outputs``: where the recipes of training outputs go (None: not kept)."""

    def __init__(self, alloc: Callable = torch.empty_like, outputs: Optional[Outputs] = None):
        self.alloc, self.outputs = alloc, outputs

    def __call__(self, bn: TimeBatchNorm, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or torch.compiler.is_compiling():
            return per_step_batch_norm(bn, x)
        x = x.contiguous() if bn.channels_last else time_major(x)  # maps may be channels-last inside a step
        if bn.training:
            made = [] if self.outputs is not None and torch.is_grad_enabled() else None
            y = _PerStepBatchNorm.apply(x, bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.batch_momentum(),
                                        bn.eps, bn.channels_last, self.alloc, made)
            if made:
                self.outputs.put(y, *made[0])
            return y
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        shift = bn.bias - bn.running_mean * scale
        if bn.channels_last:
            shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (bn.num_features,)
        else:
            shape = (x.shape[0], 1, bn.num_features) + (1,) * (x.dim() - 3)
        # Inference: into a buffer from ``alloc`` (the pool's, recycled between calls), not a fresh one.
        out = None if torch.is_grad_enabled() else self.alloc(x)
        return torch.addcmul(shift.view(shape), x, scale.view(shape), out=out)
