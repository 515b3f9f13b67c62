"""BatchNorm whose batch statistics span every process of a distributed run (SyncBatchNorm).

Under DistributedDataParallel each process normalises its own part of the global batch with that part's
statistics (the paper's recipe: per-device BatchNorm, with DDP handing rank 0's running statistics to
the others). `convert_sync_batchnorm` makes every BatchNorm of a model, per-step ones included, use the
statistics of the whole global batch instead: what one process would compute on the whole batch. That
also lets the Conv3d head's BatchNorm3d train with one clip per device.

The math is plain PyTorch, differentiated by autograd: the per-channel sums go through
``torch.distributed.nn.functional.all_reduce``, whose backward all-reduces their gradients. It works with
every backend (gloo on CPUs, nccl on GPUs), unlike ``torch.nn.SyncBatchNorm``, which needs CUDA. Outside a
distributed run, or in eval mode, it is ``F.batch_norm``.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def sync_batch_norm(input: torch.Tensor, running_mean: Optional[torch.Tensor], running_var: Optional[torch.Tensor],
                    weight: Optional[torch.Tensor] = None, bias: Optional[torch.Tensor] = None,
                    training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> torch.Tensor:
    """``F.batch_norm`` with the batch statistics of ``input`` on every process of the default group.

    Input (N, C, ...); every process calls it with the same C (N may differ). Mean and biased variance
    normalise; the running variance takes the unbiased one, as ``F.batch_norm`` does. Statistics are
    computed in float32 (two passes: the mean, then the squared deviations from it).
    """
    if not training or not distributed():
        return F.batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)
    from torch.distributed.nn.functional import all_reduce

    c = input.shape[1]
    dims = [0, *range(2, input.dim())]
    shape = [1, c] + [1] * (input.dim() - 2)
    x = input.float()
    local = torch.cat([x.sum(dims), x.new_full((1,), input.numel() // c)])
    total = all_reduce(local)
    n = total[-1].detach()
    mean = total[:c] / n
    centred = x - mean.view(shape)
    var = all_reduce((centred * centred).sum(dims)) / n
    y = centred * torch.rsqrt(var + eps).view(shape)
    if weight is not None:
        y = y * weight.view(shape)
    if bias is not None:
        y = y + bias.view(shape)
    if running_mean is not None:
        with torch.no_grad():
            running_mean.lerp_(mean.to(running_mean.dtype), momentum)
            running_var.lerp_((var * n / (n - 1).clamp(min=1)).to(running_var.dtype), momentum)
    return y.to(input.dtype)


class SyncBatchNorm3d(nn.BatchNorm3d):
    """`nn.BatchNorm3d` (same parameters, buffers and state-dict keys) with `sync_batch_norm`'s statistics."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average
                momentum = 1.0 / float(self.num_batches_tracked)
        # Without tracked statistics the buffers are None, and every call normalises with the batch's.
        use_batch = self.training or self.running_mean is None
        return sync_batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, use_batch, momentum,
                               self.eps)


def is_synced(module: nn.Module) -> bool:
    """Whether ``module`` (a BatchNorm) takes its batch statistics from every process of this run."""
    return isinstance(module, SyncBatchNorm3d) and distributed()


def convert_sync_batchnorm(model: nn.Module) -> nn.Module:
    """Make every BatchNorm of ``model`` synchronise its batch statistics across processes, in place.

    Per-step `TimeBatchNorm`s compute with `sync_batch_norm` (their plain per-step kernel: a CPU kernel
    set by `svformer.cpu.accelerate` is replaced); ``nn.BatchNorm3d`` modules become `SyncBatchNorm3d`
    with the same state. Other BatchNorm types raise ValueError.
    """
    from .norm import TimeBatchNorm, per_step_batch_norm

    for name, m in list(model.named_modules()):
        if isinstance(m, TimeBatchNorm):
            m.kernel, m.batch_norm = per_step_batch_norm, sync_batch_norm
        elif isinstance(m, nn.BatchNorm3d) and not isinstance(m, SyncBatchNorm3d):
            synced = SyncBatchNorm3d(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats,
                                     device=m.weight.device if m.affine else None)
            synced.load_state_dict(m.state_dict())
            synced.train(m.training)
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, synced)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.SyncBatchNorm)):
            raise ValueError(f"sync_bn: {name} is a {type(m).__name__}, which svformer cannot synchronise")
    return model
