"""Huge-page advice for large outputs: same tensors as torch.empty_like, advice only where it applies."""
import mmap

import pytest
import torch

from svformer.cpu import pages


def test_empty_like_keeps_shape_dtype_and_layout():
    x = torch.randn(3, 2, 8, 5, 5).permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)  # channels-last
    y = pages.empty_like(x)
    assert y.shape == x.shape and y.dtype == x.dtype and y.stride() == x.stride()
    assert pages.empty_like(x, dtype=torch.uint8).dtype == torch.uint8


def _fresh_tensor(nbytes: int) -> torch.Tensor:
    """A float tensor on a new anonymous mapping: nothing of it is resident, whatever the allocator does."""
    return torch.frombuffer(mmap.mmap(-1, nbytes), dtype=torch.float32)


@pytest.fixture
def huge_pages():
    pages._huge_page_size.cache_clear()
    if pages._huge_page_size() is None:
        pytest.skip("no transparent huge pages here")
    yield
    pages._huge_page_size.cache_clear()


def test_advice_only_for_large_fresh_cpu_tensors(huge_pages):
    assert pages.advise_huge_pages(_fresh_tensor(pages.MIN_BYTES + 4096))
    assert not pages.advise_huge_pages(torch.empty(1000))
    assert not pages.advise_huge_pages(torch.ones(pages.MIN_BYTES // 4 + 1))  # resident already: no advice


def _resident_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def test_advice_with_populate_faults_the_memory_in_up_front(huge_pages):
    t = _fresh_tensor(64 << 20)
    before = _resident_mb()
    assert pages.advise_huge_pages(t, populate=True)
    assert _resident_mb() - before > 48


def test_populate_falls_back_to_zeroing_where_the_kernel_lacks_the_advice(huge_pages, monkeypatch):
    calls = []

    def madvise(start, length, advice):
        calls.append(advice)
        return 0 if advice == pages._MADV_HUGEPAGE else -1

    monkeypatch.setattr(pages, "_madvise", lambda: madvise)
    monkeypatch.setattr(pages, "_fresh", lambda start, length: True)
    t = torch.full((pages.MIN_BYTES // 4 + 1,), 7.0)
    assert pages.advise_huge_pages(t, populate=True)
    assert calls == [pages._MADV_HUGEPAGE, pages._MADV_POPULATE_WRITE]
    assert not t.any()
