"""Activation checkpointing for SVFormer: keep a block's (or stage's) input, recompute its forward in the
backward pass instead of keeping its activations (PyTorch's non-reentrant `torch.utils.checkpoint`).

Multi-step neurons make a block a function of its whole input sequence alone (every neuron starts the
clip from its reset value), which makes the recomputation exact when three things are kept as they were
in the first forward:

- neuron states: each run starts from reset neurons, as the first did;
- random masks (drop path): the RNG state is replayed (``preserve_rng_state``);
- BatchNorm running statistics: the recomputation normalises with the same batch statistics and must not
  update the running ones a second time, so they are saved before it and restored after.

Observers of the forward (`FiringRateMonitor`, operation counters) skip the recomputation
(`snn.recompute.recomputing`). Functions registered with `between_units` run between units, where the
memory of the unit that just ran is free (the lean allocator setting gives it back to the system there).
"""
from __future__ import annotations

from typing import Callable, List

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..snn import reset_states
from ..snn.recompute import discarding_pass, recompute_pass

MODES = ("none", "stage", "block")

# Called between checkpointed units: after each unit's first forward and before its recomputation, the
# moments when the memory of the unit that just ran is free (`between_units`).
_between_units: List[Callable[[], None]] = []


def between_units(fn: Callable[[], None]) -> None:
    """Have ``fn()`` called between checkpointed units (e.g. to give freed memory back to the system:
    `svformer.cpu.allocator.lean_allocator`). Registered once, it holds for the process."""
    if fn not in _between_units:
        _between_units.append(fn)


def _unit_boundary() -> None:
    for fn in _between_units:
        fn()


def _running_buffers(modules: List[nn.Module]) -> List[torch.Tensor]:
    return [b for m in modules for name, b in m.named_buffers(recurse=True)
            if name.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked")]


def checkpointed(fn: Callable, modules: List[nn.Module], *args):
    """``fn(*args)`` with its activations recomputed in the backward; ``modules``: the layers ``fn`` runs
    (their neurons are reset before each run, their running statistics kept from the first)."""
    first = [True]

    def run(*inputs):
        for m in modules:
            reset_states(m)
        try:
            if first[0]:
                first[0] = False
                try:
                    with discarding_pass():
                        return fn(*inputs)
                finally:
                    _unit_boundary()
            _unit_boundary()
            buffers = _running_buffers(modules)
            saved = [b.clone() for b in buffers]
            try:  # also when PyTorch stops the recomputation early (an exception once it has what it needs)
                with recompute_pass():
                    return fn(*inputs)
            finally:
                with torch.no_grad():
                    for b, s in zip(buffers, saved):
                        b.copy_(s)
        finally:
            # A neuron's final potential is part of the graph of the run that made it; kept on the module,
            # it would keep the recomputed activations alive after the backward.
            for m in modules:
                reset_states(m)

    return checkpoint(run, *args, use_reentrant=False, preserve_rng_state=True)
