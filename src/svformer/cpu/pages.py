"""Large CPU outputs on transparent huge pages.

A neuron layer writes 200 MB outputs (stage 1 of the paper model at batch 8) into freshly allocated
memory; on Linux every 4 KB page of it is faulted in and zeroed by the kernel on first touch, which
costs as much as the neuron's arithmetic. Advising the kernel to back the allocation with 2 MB pages
(``madvise(MADV_HUGEPAGE)``, the same advice PyTorch gives its own allocations under
``THP_MEM_ALLOC_ENABLE=1``) turns 512 faults into one. It is only advice: without Linux, without THP
("never") or for small or non-CPU tensors, `empty_like` is `torch.empty_like`.

Advised memory is also faulted in at once (``MADV_POPULATE_WRITE``, Linux 5.14+; else by zeroing it)
before the caller writes it. Left to first touch, the kernel zeroes each 2 MB page when the neurons'
chunk loop first writes into it, 16 time steps at a time, which flushes the very cache the chunks are
sized for: on a 2-core AMD EPYC the neuron's forward+backward took 0.72 s with huge pages faulted lazily,
0.49 s with small pages and 0.36 s with huge pages faulted in up front (docs/performance.md).

Memory that is already resident (a block the allocator reuses, e.g. under `runtime.tune_allocator`)
gets no advice: it costs no faults, and advising it made the same neuron's forward 3.5x slower there.
"""
from __future__ import annotations

import ctypes
import os
import sys
from functools import lru_cache
from typing import Optional

import torch

from .allocator import libc

_MADV_HUGEPAGE = 14
_MADV_POPULATE_WRITE = 23
# Below this, the unaligned head and tail of the allocation would be most of it.
MIN_BYTES = 8 << 20


@lru_cache(maxsize=None)
def _huge_page_size() -> Optional[int]:
    """The THP size if the kernel uses huge pages on advice, else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            if "[never]" in f.read():
                return None
        with open("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def _address_call(name: str, third) -> Optional[ctypes._CFuncPtr]:
    """libc's ``int name(void *addr, size_t length, <third>)``, typed for ctypes; None without it."""
    fn = getattr(libc(), name, None)
    if fn is not None:
        fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, third]
        fn.restype = ctypes.c_int
    return fn


@lru_cache(maxsize=None)
def _madvise():
    return _address_call("madvise", ctypes.c_int)


@lru_cache(maxsize=None)
def _mincore():
    return _address_call("mincore", ctypes.c_char_p)


def _fresh(start: int, length: int) -> bool:
    """Whether no page of [start, start + length) (page-aligned) has been faulted in yet."""
    mincore = _mincore()
    vec = ctypes.create_string_buffer(length // os.sysconf("SC_PAGE_SIZE"))  # one byte per page
    return mincore is not None and mincore(start, length, vec) == 0 and not any(vec.raw)


def advise_huge_pages(t: torch.Tensor, populate: bool = False) -> bool:
    """Ask for huge pages under the 2 MB-aligned part of ``t``'s memory; True if the kernel accepted.

    Call it before the memory is first written: pages already faulted in stay small. ``populate``
    then faults the advised pages in (their contents are unspecified afterwards, as for any empty tensor).
    """
    if torch.compiler.is_compiling():
        return False
    page = _huge_page_size()
    nbytes = t.untyped_storage().nbytes()
    if page is None or t.device.type != "cpu" or nbytes < MIN_BYTES:
        return False
    madvise = _madvise()
    if madvise is None:
        return False
    start = t.untyped_storage().data_ptr()
    first, last = -(-start // page) * page, (start + nbytes) // page * page
    # The first huge page tells: a fresh mapping has nothing resident, a reused block all of it.
    if last <= first or not _fresh(first, page) or madvise(first, last - first, _MADV_HUGEPAGE) != 0:
        return False
    if populate and madvise(first, last - first, _MADV_POPULATE_WRITE) != 0:
        t.zero_()  # kernels before 5.14 lack the advice: fault the pages in by writing them
    return True


def empty_like(t: torch.Tensor, **kwargs) -> torch.Tensor:
    """`torch.empty_like` (same layout for dense tensors), on huge pages faulted in up front when large."""
    out = torch.empty_like(t, **kwargs)
    advise_huge_pages(out, populate=True)
    return out
