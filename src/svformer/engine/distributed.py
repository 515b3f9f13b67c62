"""torchrun / DistributedDataParallel helpers (gloo on CPU, nccl on CUDA); no-ops in a single process."""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group torchrun describes in the environment (RANK, WORLD_SIZE, LOCAL_RANK)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if "TORCHELASTIC_RUN_ID" in os.environ:
            store, rank, world = _attempt_store()
            dist.init_process_group(backend, store=store, rank=rank, world_size=world)
        else:
            dist.init_process_group(backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _attempt_store():
    """torchrun's store, under a namespace of this attempt's own.

    After a restart (``--max-restarts``), torchrun's workers join the same store as the attempt before,
    where the process group's keys (each rank's address) of the dead attempt are still set: a new rank
    can read an old rank's address and hang connecting to it. Every attempt therefore gets its own key
    prefix. On one node the restart count names the attempt (one agent counts them all); across nodes
    each agent counts only its own failures, so the attempt is numbered by the workers that joined the
    store, in blocks of the world size.
    """
    store, rank, world = next(dist.rendezvous("env://"))
    if int(os.environ.get("GROUP_WORLD_SIZE", "1")) == 1:
        attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    else:
        attempt = (store.add("svformer/workers_joined", 1) - 1) // world
    return dist.PrefixStore(f"svformer/attempt_{attempt}", store), rank, world


def tag_warnings(rank: int) -> None:
    """Prefix this process's warnings with ``[rank N]``: only rank 0 prints progress and results, but every
    rank's warnings (an unreadable sample in its shard, say) still reach the user, saying whose they are."""
    show = warnings.showwarning
    if getattr(show, "_svformer_rank", None) is not None:
        show = show.__wrapped__

    def tagged(message, category, filename, lineno, file=None, line=None):
        show(f"[rank {rank}] {message}", category, filename, lineno, file, line)

    tagged._svformer_rank, tagged.__wrapped__ = rank, show
    warnings.showwarning = tagged


def wrap_ddp(model: nn.Module, device: torch.device) -> DistributedDataParallel:
    """``model`` in DistributedDataParallel, its gradients handed over in the layout of DDP's buckets.

    A channels-last convolution's weight gradient comes with channels-last strides. For a 1x1 kernel that
    is the parameter's own memory layout with other strides on its size-1 dimensions, which autograd
    accepts as is and DDP reports ("Grad strides do not match bucket view strides") and copies around.
    Each parameter's gradient is therefore restrided to the parameter's strides where the memory is the
    same (no copy); other layouts autograd itself copies into the parameter's layout before DDP sees them.
    """
    for p in model.parameters():
        if p.requires_grad and p.dim() > 1:
            p.register_hook(_in_layout(tuple(p.shape), p.stride()))
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def _in_layout(shape: tuple, stride: tuple):
    def hook(grad: torch.Tensor):
        if grad.stride() == stride or tuple(grad.shape) != shape:
            return None
        if all(g == s for g, s, n in zip(grad.stride(), stride, shape) if n != 1):  # same memory
            return grad.as_strided(shape, stride, grad.storage_offset())
        return None
    return hook


def broadcast_buffers(model: nn.Module, info: DistInfo) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics).

    DDP broadcasts them at the start of each training forward, so after the last one every rank holds
    the statistics of its own part of the batch. Evaluation and checkpoints use rank 0's, on every rank.
    """
    if info.enabled:
        for b in model.buffers():
            dist.broadcast(b.data, 0)


def all_reduce_mean(value: float, info: DistInfo, device) -> float:
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item() / info.world_size)


def all_gather_objects(obj, info: DistInfo) -> list:
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
