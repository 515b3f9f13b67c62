"""Spike tensors saved for the backward as 1 byte per element instead of 4.

Every conv, linear and attention product after a neuron saves its binary input for the weight
gradient; in float32 these inputs are about a third of the activations a training step keeps. The
accelerated neurons mark the spike tensors they return (`mark_spikes`); inside `saved.compact_saved`,
autograd's pack hook
stores any saved tensor that is a marked spike tensor, or a view of one, as uint8 (`pack`) and the
unpack hook restores the original dtype when the backward needs it. 0 and 1 survive the round trip
exactly, so the gradients are bit-identical; the cost is one conversion pass each way.

A marked tensor written in place after marking (its version counter moved) is saved as it is.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

_MARK = "_svformer_spike_version"


def compaction_applies() -> bool:
    """Whether autograd may save tensors here that `saved.compact_saved` can pack: a graph is being
    recorded, outside inference mode and outside torch.compile (which cannot trace saved-tensor hooks)."""
    return (not torch.compiler.is_compiling() and torch.is_grad_enabled()
            and not torch.is_inference_mode_enabled())


def mark_spikes(spikes: torch.Tensor) -> torch.Tensor:
    """Declare that ``spikes`` holds only 0 and 1 (at its current version). Returns it."""
    setattr(spikes, _MARK, spikes._version)
    return spikes


def is_spikes(t: torch.Tensor) -> bool:
    """Whether ``t`` is a marked spike tensor, or a view of one, not written since it was marked."""
    if t.is_inference():
        return False
    base = t if t._base is None else t._base
    return getattr(base, _MARK, None) == t._version


class Packed:
    """A saved spike tensor kept as uint8 (`pack`); `restore` gives it back in its float dtype."""

    __slots__ = ("data", "dtype", "alloc")

    def __init__(self, data: torch.Tensor, dtype: torch.dtype, alloc: Callable):
        self.data, self.dtype, self.alloc = data, dtype, alloc

    def restore(self) -> torch.Tensor:
        with torch.no_grad():
            return self.alloc(self.data, dtype=self.dtype).copy_(self.data)


def pack(t: torch.Tensor, alloc: Callable = torch.empty_like) -> Optional[Packed]:
    """``t`` as 1 byte per element if it is (a view of) marked spikes, else None. ``alloc(like, dtype=)``
    makes the packed and the restored tensors (as large as the feature maps)."""
    if not t.is_floating_point() or not is_spikes(t):
        return None
    with torch.no_grad():
        return Packed(alloc(t, dtype=torch.uint8).copy_(t), t.dtype, alloc)  # t's strides, or dense for a view
