"""Whether the forward running now is a recomputation (activation checkpointing's second forward, in the
backward pass). Observers of the forward - firing-rate monitors, operation counters - skip it, so every
forward is counted once; BatchNorms' running statistics are restored around it (`models.checkpointing`)."""
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
