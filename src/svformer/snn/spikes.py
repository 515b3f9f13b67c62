"""Spike tensors saved for the backward as 1 byte per element instead of 4.

Every conv, linear and attention product after a neuron saves its binary input for the weight
gradient; in float32 these inputs are about a third of the activations a training step keeps. Neurons
mark the spike tensors they return (`mark_spikes`); inside `compact_saved_spikes`, autograd's pack hook
stores any saved tensor that is a marked spike tensor, or a view of one, as uint8 and the unpack hook
restores the original dtype when the backward needs it. 0 and 1 survive the round trip exactly, so the
gradients are bit-identical; the cost is one conversion pass each way.

A marked tensor written in place after marking (its version counter moved) is saved as it is.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch

from . import pool

_MARK = "_svformer_spike_version"


def compaction_applies() -> bool:
    """Whether autograd may save tensors here that `compact_saved_spikes` can pack: a graph is being
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


@dataclass
class SavedSpikeStats:
    """What `compact_saved_spikes` did: tensors compacted and their bytes before/after."""

    tensors: int = 0
    float_bytes: int = 0
    packed_bytes: int = 0


class _Packed:
    __slots__ = ("data", "dtype")

    def __init__(self, data: torch.Tensor, dtype: torch.dtype):
        self.data, self.dtype = data, dtype


@contextlib.contextmanager
def compact_saved_spikes() -> Iterator[SavedSpikeStats]:
    """Within this context, tensors autograd saves that are spikes are kept as uint8."""
    stats = SavedSpikeStats()

    def pack(t: torch.Tensor):
        if not t.is_floating_point() or not is_spikes(t):
            return t
        with torch.no_grad():  # recycled memory (`pool`): these are as large as the feature maps
            packed = pool.empty_like(t, torch.uint8).copy_(t)  # t's strides (dense) or dense (a strided view)
        stats.tensors += 1
        stats.float_bytes += t.numel() * t.element_size()
        stats.packed_bytes += packed.numel()
        return _Packed(packed, t.dtype)

    def unpack(p):
        if not isinstance(p, _Packed):
            return p
        with torch.no_grad():
            return pool.empty_like(p.data, p.dtype).copy_(p.data)

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        yield stats
