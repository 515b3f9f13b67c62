"""Huge-page advice for large outputs: same tensors as torch.empty_like, advice only where it applies."""
import pytest
import torch

from svformer.snn import pages


def test_empty_like_keeps_shape_dtype_and_layout():
    x = torch.randn(3, 2, 8, 5, 5).permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)  # channels-last
    y = pages.empty_like(x)
    assert y.shape == x.shape and y.dtype == x.dtype and y.stride() == x.stride()
    assert pages.empty_like(x, dtype=torch.uint8).dtype == torch.uint8


def test_advice_only_for_large_cpu_tensors_and_can_be_switched_off(monkeypatch):
    pages._huge_page_size.cache_clear()
    if pages._huge_page_size() is None:
        pytest.skip("no transparent huge pages here")
    big = torch.empty(pages.MIN_BYTES // 4 + 1)
    assert pages.advise_huge_pages(big)
    assert not pages.advise_huge_pages(torch.empty(1000))
    monkeypatch.setenv("SVFORMER_HUGE_PAGES", "0")
    pages._huge_page_size.cache_clear()
    try:
        assert not pages.advise_huge_pages(big)
    finally:
        monkeypatch.undo()
        pages._huge_page_size.cache_clear()


def _resident_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def test_empty_like_faults_advised_memory_in_up_front():
    pages._huge_page_size.cache_clear()
    if pages._huge_page_size() is None:
        pytest.skip("no transparent huge pages here")
    before = _resident_mb()
    y = pages.empty_like(torch.empty(64 << 18))  # 64 MB, above glibc's mmap threshold: fresh pages
    assert _resident_mb() - before > 48
    del y


def test_populate_falls_back_to_zeroing_where_the_kernel_lacks_the_advice(monkeypatch):
    pages._huge_page_size.cache_clear()
    if pages._huge_page_size() is None:
        pytest.skip("no transparent huge pages here")
    calls = []

    def madvise(start, length, advice):
        calls.append(advice)
        return 0 if advice == pages._MADV_HUGEPAGE else -1

    monkeypatch.setattr(pages, "_madvise", lambda: madvise)
    t = torch.full((pages.MIN_BYTES // 4 + 1,), 7.0)
    assert pages.advise_huge_pages(t, populate=True)
    assert calls == [pages._MADV_HUGEPAGE, pages._MADV_POPULATE_WRITE]
    assert not t.any()
