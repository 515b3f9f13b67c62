"""What autograd keeps for the backward, made smaller: spikes as 1 byte, BatchNorm outputs as a recipe.

Inside `compact_saved`, autograd's pack hook replaces two kinds of saved tensors:

- spikes (`spikes.pack`): every conv, linear and attention product after a neuron saves its binary
  input for the weight gradient; stored as uint8, restored exactly.
- per-step BatchNorm outputs (`norm.recompute_recipe`): a neuron right after a BN (the MLPs' hidden
  layers; the first neuron after each patch embedding) saves its input for its backward, while the BN
  saves its own input for its backward too: two float copies of the same map, the MLPs' the widest of
  the model. The neuron's copy is kept as the BN's input plus the per-(t, c) scale and shift and
  recomputed when the backward reaches it, with the same bits.

Both give bit-identical gradients. A tensor written in place after it was made is saved as it is.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from . import spikes as _spikes
from .norm import Recompute, recompute_recipe


@dataclass
class SavedStats:
    """What `compact_saved` did: spike tensors packed (bytes before/after) and BN outputs recomputed."""

    tensors: int = 0
    float_bytes: int = 0
    packed_bytes: int = 0
    recomputed: int = 0
    recomputed_bytes: int = 0


@contextlib.contextmanager
def compact_saved(spikes: bool = True, norm_outputs: bool = True,
                  alloc: Callable = torch.empty_like) -> Iterator[SavedStats]:
    """Within this context, saved spikes are kept as uint8 and saved per-step BN outputs as recipes
    (only the outputs of accelerated BatchNorms carry one); ``alloc`` makes the packed tensors."""
    stats = SavedStats()

    def pack(t: torch.Tensor):
        recipe = recompute_recipe(t) if norm_outputs else None
        if recipe is not None:
            stats.recomputed += 1
            stats.recomputed_bytes += t.numel() * t.element_size()
            return recipe
        packed = _spikes.pack(t, alloc) if spikes else None
        if packed is not None:
            stats.tensors += 1
            stats.float_bytes += t.numel() * t.element_size()
            stats.packed_bytes += packed.data.numel()
            return packed
        return t

    def unpack(saved):
        return saved.restore() if isinstance(saved, (Recompute, _spikes.Packed)) else saved

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        yield stats

