"""Which forward is running under activation checkpointing (`models.checkpointing`).

`recomputing`: the second forward, in the backward pass. Observers of the forward - firing-rate monitors,
operation counters - skip it, so every forward is counted once; BatchNorms' running statistics are
restored around it. `discarding`: the first forward, which keeps nothing for the backward, so what it
remembers for the backward (the CPU accelerations' recipes of outputs, `cpu.recipes`) is dropped when it
ends (`when_discarding_ends`)."""
from __future__ import annotations

import contextlib
import threading

_state = threading.local()


def recomputing() -> bool:
    return getattr(_state, "depth", 0) > 0


@contextlib.contextmanager
def recompute_pass():
    _state.depth = getattr(_state, "depth", 0) + 1
    try:
        yield
    finally:
        _state.depth -= 1


def discarding() -> bool:
    return bool(getattr(_state, "discard", None))


def when_discarding_ends(fn) -> None:
    """Call ``fn()`` when the discarding pass running now ends."""
    _state.discard[-1].append(fn)


@contextlib.contextmanager
def discarding_pass():
    if getattr(_state, "discard", None) is None:
        _state.discard = []
    _state.discard.append([])
    try:
        yield
    finally:
        for fn in _state.discard.pop():
            fn()
