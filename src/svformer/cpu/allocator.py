"""Process-level settings that make CPU training faster: the C allocator.

A training step of SVFormer allocates and frees activations of tens to hundreds of MB. glibc's malloc
serves blocks above its mmap threshold straight from the kernel and gives them back on free, so every
step the kernel maps and zeroes those pages again. Raising the mmap and trim thresholds keeps freed
blocks in the heap, where the next step reuses them. This is the same fix as running PyTorch under
jemalloc/tcmalloc (Intel's CPU tuning guide), without needing either installed.

The setting is process-wide, so the library never applies it on import: the `svformer` command does
when ``--allocator tuned`` is given, scripts call `tune_allocator` themselves.
"""
from __future__ import annotations

import ctypes
import ctypes.util
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
