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
