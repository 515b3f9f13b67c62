"""Recycled CPU memory for the large tensors svformer's own kernels allocate.

A training step of the paper model allocates about 1 GB of fresh neuron spikes, BatchNorm outputs and
their gradients, and glibc's allocator hands every large block back to the kernel when it is freed and
takes it back the next time, so each step the kernel faults in and zeroes that memory again. PyTorch
keeps a caching allocator for CUDA but none for the CPU; this is one for svformer's own large outputs
only, so it changes nothing for the rest of the process (unlike `allocator.tune_allocator`).

A block is free when no tensor uses its memory any more. Each block is a tensor's memory seen as a
NumPy array; every tensor handed out is made with `torch.from_numpy` over that array, whose storage
holds a reference to the array until the last tensor, view or autograd-saved tensor sharing the storage
is gone. So the array's Python reference count (`sys.getrefcount`) says whether the block is in use,
through public APIs only. A request takes a free block of its exact size, since a model's shapes repeat
from step to step, else the smallest free block up to `MAX_SLACK` times its size: a block then serves the
shapes of several layers in turn rather than sit idle while the step works on other ones, which lowers
the pool's share of the peak. A free block that has not been reused for
`MAX_IDLE` requests is given back when the pool would otherwise grow (e.g. training blocks during a
long evaluation with another batch size); `release` gives back every free block at once, and
`set_enabled(False)` turns the pool off (the lean allocator setting does: `allocator.lean_allocator`).

Off the CPU (where PyTorch caches already), under torch.compile and for small tensors, `empty_like` is
`torch.empty_like`.
"""
from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np
import torch

# Below this, a request is served by torch.empty_like: the pool is for the large outputs.
MIN_BYTES = 8 << 20
# Requests a free block may go unused before the pool gives it back when it needs to grow: about
# eight training steps of the paper model (about 130 requests per step).
MAX_IDLE = 1024
# The largest block a request may take, as a multiple of its size: a bound on the memory a small tensor
# can hold (the peaks measured were the same from 2x up to any size).
MAX_SLACK = 4

@dataclass
class _Block:
    memory: np.ndarray  # a view of a torch tensor's memory; each storage made over it holds a reference
    last_use: int

    def free(self) -> bool:
        return sys.getrefcount(self.memory) <= _FREE_REFS

    def storage(self) -> torch.UntypedStorage:
        return torch.from_numpy(self.memory).untyped_storage()


# References to a free block's array, as `sys.getrefcount` counts them (the block's own and the call's).
_probe = _Block(np.empty(0), 0)
_FREE_REFS = sys.getrefcount(_probe.memory)
del _probe


@dataclass
class PoolStats:
    """What the pool holds: blocks and bytes in all, how many of them are free now, and the requests it
    has served (each a reuse of a free block or a new one)."""

    blocks: int
    bytes: int
    free_blocks: int
    free_bytes: int
    requests: int


class BufferPool:
    """CPU buffers of at least ``min_bytes`` recycled by exact size once nothing else references them."""

    def __init__(self, max_idle: int = MAX_IDLE, min_bytes: int = MIN_BYTES):
        self.max_idle, self.min_bytes = max_idle, min_bytes
        self.enabled = True
        self._blocks: Dict[int, List[_Block]] = {}
        self._requests = 0
        self._lock = threading.Lock()

    def empty_like(self, t: torch.Tensor, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """An uninitialised tensor with `torch.empty_like(t, dtype=dtype)`'s shape, dtype and strides."""
        dtype = t.dtype if dtype is None else dtype
        if not self._applies(t.device, t.numel() * dtype.itemsize):
            return torch.empty_like(t, dtype=dtype)
        template = torch.empty_like(t, dtype=dtype, device="meta")  # empty_like's strides, no memory
        storage = self._take(template.untyped_storage().nbytes())
        return torch.empty(0, dtype=dtype).set_(storage, 0, template.shape, template.stride())

    def _applies(self, device: torch.device, nbytes: int) -> bool:
        return (
            self.enabled
            and device.type == "cpu"
            and nbytes >= self.min_bytes
            and not torch.compiler.is_compiling()
        )

    def _take(self, nbytes: int) -> torch.UntypedStorage:
        with self._lock:
            self._requests += 1
            block = self._free_block(nbytes)
            if block is not None:
                block.last_use = self._requests
                return block.storage()
            self._drop_idle()
            block = _Block(torch.empty(nbytes, dtype=torch.uint8).numpy(), self._requests)  # torch's allocator
            self._blocks.setdefault(nbytes, []).append(block)
            return block.storage()

    def _free_block(self, nbytes: int) -> Optional[_Block]:
        """A free block of ``nbytes``, else the smallest free one up to `MAX_SLACK` times larger."""
        for size in sorted(s for s in self._blocks if nbytes <= s <= MAX_SLACK * nbytes):
            for block in self._blocks[size]:
                if block.free():
                    return block
        return None

    def _drop_idle(self) -> None:
        self._keep(lambda b: not b.free() or self._requests - b.last_use <= self.max_idle)

    def _keep(self, keep) -> int:
        """Drop the blocks ``keep`` rejects; returns their bytes."""
        dropped = 0
        for size in list(self._blocks):
            kept = [b for b in self._blocks[size] if keep(b)]
            dropped += size * (len(self._blocks[size]) - len(kept))
            if kept:
                self._blocks[size] = kept
            else:
                del self._blocks[size]
        return dropped

    def release(self) -> int:
        """Give back every free block; returns the bytes released (tensors in use keep theirs)."""
        with self._lock:
            return self._keep(lambda b: not b.free())

    def set_enabled(self, enabled: bool) -> None:
        """Whether the pool serves requests (it does by default). Disabled, every request is
        `torch.empty_like`, and the pool lets go of all its blocks: the free ones go back now, those in
        use when their last tensor is gone."""
        with self._lock:
            self.enabled = enabled
            if not enabled:
                self._blocks.clear()

    def stats(self) -> PoolStats:
        with self._lock:
            blocks = [b for bs in self._blocks.values() for b in bs]
        free = [b for b in blocks if b.free()]
        return PoolStats(len(blocks), sum(b.memory.nbytes for b in blocks), len(free),
                         sum(b.memory.nbytes for b in free), self._requests)


_POOL = BufferPool()


def empty_like(t: torch.Tensor, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """`BufferPool.empty_like` on the process's pool."""
    return _POOL.empty_like(t, dtype)


def release() -> int:
    """Give the process pool's free blocks back to the system; returns the bytes released."""
    return _POOL.release()


def set_enabled(enabled: bool) -> None:
    """`BufferPool.set_enabled` on the process's pool."""
    _POOL.set_enabled(enabled)


def stats() -> PoolStats:
    """What the process's pool holds now."""
    return _POOL.stats()
