"""Per-time-step BatchNorm on the CPU without the permute copies of the plain formulation.

The plain `snn.norm.per_step_batch_norm` reshapes (T, B, C, ...) to (B, T*C, ...), which costs a copy
of the input and of the output in each direction. Here each contiguous time step is an ordinary
BatchNorm of its own slice of the parameters, computed in place in the (T, B, ...) layout:

- training: `_PerStepBatchNorm`, PyTorch's kernels for the statistics (and the running-statistics
  update) and for the input gradients, the output as y = x * scale + shift into one preallocated
  tensor; optionally marked with the recipe that made it (`Recompute`), so that a later layer's saved
  copy of it can be recomputed in the backward instead of kept (`saved.compact_saved`);
- evaluation: the affine map per (t, c) in one pass.

The same function as the plain formulation, up to float rounding in the statistics.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Optional

import torch

from ..snn.norm import TimeBatchNorm, per_step_batch_norm
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


def _batch_stats(x_t: torch.Tensor, running_mean, running_var, momentum: float, eps: float):
    """Mean and 1/sqrt(var + eps) of one time step's batch (this kernel runs on CPU tensors only),
    updating the running statistics as BatchNorm does (the unbiased variance), without computing an
    output: the library's `batch_norm_update_stats`, as fast as the statistics pass of its BatchNorm."""
    mean, var = torch.batch_norm_update_stats(x_t, running_mean, running_var, momentum)  # biased var
    return mean, (var.double() + eps).rsqrt().to(var.dtype)  # in double, as the BN kernel


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
    alloc: Callable
    view: Optional[tuple] = None

    def restore(self) -> torch.Tensor:
        if self.x._version != self.x_version:
            raise RuntimeError("the input of a per-step BatchNorm was modified in place after the forward; its "
                               "output, which a later layer saved for the backward, cannot be recomputed")
        with torch.no_grad():
            y = _affine_into(self.x, self.scale, self.shift, self.channels_last, self.alloc(self.x))
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
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum: float, eps: float, channels_last: bool,
                alloc: Callable, recipe: bool):
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
        if recipe:
            setattr(y, _RECIPE, Recompute(x, x._version, scale, shift, channels_last, y._version, alloc))
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
    ``recipe``: mark training outputs for recomputation."""

    def __init__(self, alloc: Callable = torch.empty_like, recipe: bool = True):
        self.alloc, self.recipe = alloc, recipe

    def __call__(self, bn: TimeBatchNorm, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or torch.compiler.is_compiling():
            return per_step_batch_norm(bn, x)
        x = x.contiguous() if bn.channels_last else time_major(x)  # maps may be channels-last inside a step
        if bn.training:
            return _PerStepBatchNorm.apply(x, bn.weight, bn.bias, bn.running_mean, bn.running_var,
                                           bn.batch_momentum(), bn.eps, bn.channels_last, self.alloc,
                                           self.recipe and torch.is_grad_enabled())
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        shift = bn.bias - bn.running_mean * scale
        if bn.channels_last:
            shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (bn.num_features,)
        else:
            shape = (x.shape[0], 1, bn.num_features) + (1,) * (x.dim() - 3)
        return torch.addcmul(shift.view(shape), x, scale.view(shape))
