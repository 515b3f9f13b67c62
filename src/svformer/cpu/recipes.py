"""Outputs a neuron can recompute in its backward instead of keeping: how they were made ("recipes").

A neuron's backward needs its input. When that input is a per-step BatchNorm's output, or a residual sum
of such outputs, it can be made again, with the forward's bits, from tensors autograd keeps anyway (each
BN's input, for the BN's own backward) and a few per-channel constants, so the neuron keeps those instead
of a float copy of its input:

- `NormRecipe`: y = x * scale + shift per (t, c) (`norm._affine_into`), from the BN input x;
- `SumRecipe`: y = a + b, a residual connection (`models.layers.Residual`), from the recipes of its two
  terms. In a stage the residual stream is a chain of such sums that starts at the patch embedding's
  BN, so none of its sums is kept; in a checkpointed block the chain starts at the block's input
  (`KeptRecipe`), which the checkpoint keeps.

`Outputs` is the registry, one per model: the accelerated BNs and residual kernels put each output's
recipe there, and the neurons look their inputs up. A tensor is recognised when it is a registered
output or a view into one (PyTorch keeps one Python object per storage, which views share) that is
alive and not written in place since (autograd then gives it another ``grad_fn``). An entry keeps its
recipe's tensors while its output lives, except in the first forward of a checkpointed block, which
keeps nothing for the backward: its entries go when it ends, so its output does not keep the block's
BN inputs alive (and its neurons decide as the recomputation will, which saved-tensor checking needs).
A neuron saves the tensors of a recipe it takes through ``save_for_backward``, so autograd checks that
none of them was modified before the backward.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Tuple

import torch

from ..snn.recompute import discarding, recomputing, when_discarding_ends

View = Tuple[torch.Size, tuple, int]  # (size, stride, offset from the output's start)


def as_view(y: torch.Tensor, view: Optional[View]) -> torch.Tensor:
    if view is None:
        return y
    size, stride, offset = view
    return y.as_strided(size, stride, y.storage_offset() + offset)


@dataclass(frozen=True)
class NormRecipe:
    """A per-step BN's output from three tensors: its input x and the per-(t, c) scale and shift."""

    channels_last: bool

    def rebuild(self, tensors: Iterator[torch.Tensor], alloc: Callable) -> torch.Tensor:
        from .norm import _affine_into

        x, scale, shift = next(tensors), next(tensors), next(tensors)
        with torch.no_grad():
            return _affine_into(x, scale, shift, self.channels_last, alloc(x))


@dataclass(frozen=True)
class SumRecipe:
    """A residual sum a + b from the recipes of its terms (each with the view of its output it added)."""

    a: Tuple[object, Optional[View]]
    b: Tuple[object, Optional[View]]

    def rebuild(self, tensors: Iterator[torch.Tensor], alloc: Callable) -> torch.Tensor:
        # The terms in the forward's strides, so the sum has the forward's layout (and its bits).
        a = as_view(self.a[0].rebuild(tensors, alloc), self.a[1])
        b = as_view(self.b[0].rebuild(tensors, alloc), self.b[1])
        with torch.no_grad():
            return a + b


@dataclass(frozen=True)
class KeptRecipe:
    """A term kept as it is: in a checkpointed block, its input (which the checkpoint keeps anyway)."""

    def rebuild(self, tensors: Iterator[torch.Tensor], alloc: Callable) -> torch.Tensor:
        return next(tensors)


Found = Tuple[object, List[torch.Tensor], View]  # (recipe, its tensors, the view of the output)


class Outputs:
    """The recipes of the outputs one model's accelerated BNs and residual connections made in training."""

    def __init__(self):
        self._entries = {}
        self.recognised = 0  # neuron inputs taken as recipes (for tests and diagnostics)

    def put(self, y: torch.Tensor, recipe, tensors: List[torch.Tensor]) -> None:
        """Register ``y`` as made by ``recipe`` from ``tensors`` (kept while ``y`` lives, or in the first
        forward of a checkpointed block until that ends)."""
        storage, entries = y.untyped_storage(), self._entries
        key = id(storage)
        entries[key] = (weakref.ref(y, lambda _: entries.pop(key, None)), storage, y.grad_fn, recipe, tensors)
        if discarding():
            # The block's neurons decide as its recomputation will (which registers again); past the
            # block, its outputs must not keep its BN inputs, which that forward means to drop.
            when_discarding_ends(lambda: entries.pop(key, None))

    def find(self, x: torch.Tensor) -> Optional[Found]:
        """``(recipe, tensors, view)`` if ``x`` is a registered output as it was made, or a view into one."""
        storage = x.untyped_storage()
        entry = self._entries.get(id(storage))
        if entry is None or entry[1] is not storage:
            return None
        y = entry[0]()
        if y is None or y.grad_fn is not entry[2] or y.dtype != x.dtype:
            return None
        return entry[3], entry[4], (x.size(), x.stride(), x.storage_offset() - y.storage_offset())

    def take(self, x: torch.Tensor) -> Optional[Found]:
        """`find`, for a neuron that will keep the recipe instead of ``x`` (counted)."""
        found = self.find(x)
        self.recognised += found is not None
        return found


class ResidualKernel:
    """A `models.layers.Residual`'s kernel: ``x + y``, registering the sum's recipe when both terms have
    one (on CPU tensors, in training)."""

    def __init__(self, outputs: Outputs):
        self.outputs = outputs

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = x + y
        if out.requires_grad and out.device.type == "cpu" and not torch.compiler.is_compiling():
            a, b = self.outputs.find(x), self.outputs.find(y)
            if discarding() or recomputing():
                # In a checkpointed block: the block's input, the first term of its first sum, is kept by
                # the checkpoint, and the block's two forwards must decide alike.
                a = a or (KeptRecipe(), [x], None)
                b = b or (KeptRecipe(), [y], None)
            if a is not None and b is not None:
                self.outputs.put(out, SumRecipe((a[0], a[2]), (b[0], b[2])), a[1] + b[1])
        return out
