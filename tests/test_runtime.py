import sys

import pytest

from svformer.runtime import tune_allocator


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_tune_allocator_applies_on_glibc_and_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("SVFORMER_ALLOCATOR", "default")
    assert tune_allocator() is False
    monkeypatch.delenv("SVFORMER_ALLOCATOR")
    assert tune_allocator() is True
