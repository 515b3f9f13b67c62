"""Memory layouts of multi-step tensors (T, B, ...): time outermost, any dense order inside a step.

SVFormer's feature maps may be stored channels-last (memory order T, B, H, W, C: the fast layout for
PyTorch's CPU convolutions) while keeping the logical (T, B, C, H, W) shape. Element-wise kernels
(neurons, per-step BatchNorm) only need each time step to be one dense block: they then work on a flat
(T, n) view of the memory, and outputs made with ``torch.empty_like`` share the input's strides, so
element i of every such view is the same logical position.
"""
from __future__ import annotations

import torch


def is_dense(x: torch.Tensor) -> bool:
    """True if ``x`` covers one block of memory without gaps or overlaps (in any dim order)."""
    # Picks the dims innermost-first by matching strides instead of sorting them: under
    # torch.compile with dynamic shapes the strides are symbolic, and dynamo can compare them but not sort.
    strides, sizes = [], []
    for s, n in zip(x.stride(), x.shape):
        if n != 1:
            strides.append(s)
            sizes.append(n)
    expected = 1
    for _ in sizes:
        for i, s in enumerate(strides):
            if s == expected:
                break
        else:
            return False
        expected *= sizes[i]
        strides[i] = -1  # never matches again (expected is a product of sizes): each dim is used once
    return True


def is_time_major(x: torch.Tensor) -> bool:
    """True if the steps x[0], x[1], ... of ``x`` are consecutive dense blocks."""
    return x.dim() >= 1 and is_dense(x) and (x.shape[0] == 1 or x.stride(0) == x[0].numel())


def time_major(x: torch.Tensor, alloc=None) -> torch.Tensor:
    """``x`` itself if `is_time_major`, else a contiguous copy, made by ``alloc(like)`` when given (an
    ``empty_like``: it is handed a memoryless template whose ``empty_like`` is contiguous)."""
    if is_time_major(x):
        return x
    if alloc is None:
        return x.contiguous()
    return alloc(torch.empty((), dtype=x.dtype, device=x.device).expand(x.shape)).copy_(x)


def flat(x: torch.Tensor, steps: bool = True) -> torch.Tensor:
    """The memory of a dense (`time_major`) tensor as a (T, n) view, or (n,) with ``steps=False``."""
    if steps:
        n = x[0].numel() if x.shape[0] else 0
        return x.as_strided((x.shape[0], n), (n, 1))
    return x.as_strided((x.numel(),), (1,))


def like(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``x`` with ``ref``'s strides (a copy only if they differ), so their flat views line up."""
    if all(a == b for a, b, n in zip(x.stride(), ref.stride(), ref.shape) if n != 1):
        return x
    out = torch.empty_like(ref)
    return out.copy_(x)
