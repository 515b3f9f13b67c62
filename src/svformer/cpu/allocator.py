"""Process-level settings of the C allocator: faster CPU training, or a lower peak.

A training step of SVFormer allocates and frees activations of tens to hundreds of MB. glibc's malloc
serves blocks above its mmap threshold straight from the kernel and gives them back on free, so every
step the kernel maps and zeroes those pages again. Raising the mmap and trim thresholds keeps freed
blocks in the heap, where the next step reuses them. This is the same fix as running PyTorch under
jemalloc/tcmalloc (Intel's CPU tuning guide), without needing either installed.

The opposite trade, `lean_allocator`, lowers the peak instead: glibc serves blocks below its mmap
threshold from its heap, and that threshold rises with every large block freed (up to 32 MiB), so the
step's tensors of a few to 32 MiB end up in the heap, where free memory between live blocks stays
resident. A fixed 4 MiB threshold maps every large block on its own and returns it when freed, so the
resident peak is close to what the tensors hold; fresh pages then cost time, less when PyTorch maps
them as transparent huge pages (``THP_MEM_ALLOC_ENABLE``). The same setting turns svformer's own buffer
pool off (`pool.set_enabled`) and, with activation checkpointing, gives the heap's free memory back
between checkpointed units (`models.checkpointing.between_units`).

Settings are process-wide, so the library never applies one on import: the `svformer` command applies
the one ``--allocator`` names, scripts call `set_allocator` (or the functions) themselves, before their
first large tensor.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from functools import lru_cache
from typing import Optional

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

# Blocks up to 1 GiB come from the heap (the paper model's stage-1 tensors are hundreds of MB), and the heap
# is not trimmed below 2 GiB - 1 of free space (mallopt takes an int).
MMAP_THRESHOLD = 1 << 30
TRIM_THRESHOLD = (1 << 31) - 1
# Lean: every block of 4 MiB or more mapped on its own (the paper model's feature maps and their gradients
# are larger), kept out of the heap, whose free memory between live blocks would stay resident.
LEAN_MMAP_THRESHOLD = 4 << 20

ALLOCATORS = ("default", "tuned", "lean")


@lru_cache(maxsize=None)
def libc() -> Optional[ctypes.CDLL]:
    """The process's C library on Linux (errno kept for callers), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def tune_allocator() -> bool:
    """Keep freed large blocks in the process heap (glibc only). Returns whether the setting was applied.

    Peak memory is unchanged (the same blocks are live at the peak), but the process keeps its peak
    resident after a step instead of returning it to the system between steps.
    """
    mallopt = getattr(libc(), "mallopt", None)  # glibc only (not e.g. musl)
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def lean_allocator() -> bool:
    """Map large blocks on their own and return them to the system when freed (glibc only): the lowest
    peak resident memory, for a slower step (fresh pages every step). Returns whether it was applied.

    Also asks PyTorch for transparent huge pages on large tensors (``THP_MEM_ALLOC_ENABLE``, unless the
    environment sets it), which makes fresh pages cheaper where the kernel allows them; PyTorch reads it
    at its first large tensor, so call this before. Turns the process's buffer pool off (`pool`), and
    trims glibc's heap (``malloc_trim``) between checkpointed units. Process-wide and for good.
    """
    from ..models.checkpointing import between_units
    from . import pool

    mallopt = getattr(libc(), "mallopt", None)
    if mallopt is None:
        return False
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    # svformer's buffer pool keeps freed blocks for the next step: the opposite of this setting, and at the
    # peak most of what it holds is free (the blocks of the stages not running then).
    pool.set_enabled(False)
    # The heap's free memory between live small blocks, given back between checkpointed units: the
    # memory of the unit that just ran is free then.
    between_units(_trim_heap)
    return bool(mallopt(_M_MMAP_THRESHOLD, LEAN_MMAP_THRESHOLD))


def _trim_heap() -> None:
    libc().malloc_trim(0)


def set_allocator(name: str) -> bool:
    """Apply the setting ``name`` (one of `ALLOCATORS`; 'default' changes nothing). Returns whether the
    setting is in effect (False: not glibc)."""
    if name not in ALLOCATORS:
        raise ValueError(f"unknown allocator setting {name!r}; choose one of {ALLOCATORS}")
    return {"default": lambda: True, "tuned": tune_allocator, "lean": lean_allocator}[name]()
