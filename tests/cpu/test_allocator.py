import subprocess
import sys

import pytest

import svformer.cpu.allocator as allocator
from svformer.cli import main


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_tune_allocator_applies_on_glibc():
    # In a child process: the setting is process-wide and cannot be undone.
    out = subprocess.run([sys.executable, "-c", "from svformer.cpu.allocator import tune_allocator; "
                          "print(tune_allocator())"], capture_output=True, text=True)
    assert out.stdout.strip() == "True", out.stderr


def test_the_command_applies_it_only_when_asked(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "tune_allocator", lambda: calls.append(1) or True)
    assert main(["--allocator", "default", "list-models", "svformer_tiny"]) == 0 and calls == []
    assert main(["--allocator", "tuned", "list-models", "svformer_tiny"]) == 0 and calls == [1]
    monkeypatch.setattr(allocator, "lean_allocator", lambda: calls.append(2) or True)
    assert main(["--allocator", "lean", "list-models", "svformer_tiny"]) == 0 and calls == [1, 2]


KEPT_AFTER_FREE = """
import sys, torch
from svformer.analysis.memory import resident_mb
from svformer.cpu.allocator import set_allocator
assert set_allocator(sys.argv[1])
torch.ones(1 << 20, dtype=torch.uint8)  # PyTorch's threads and kernels started: only the blocks count below
before = resident_mb("VmRSS")
for _ in range(3):  # glibc raises its own threshold at the first large free: later blocks go to its heap
    block = torch.ones(16 << 20, dtype=torch.uint8)
    del block
print(resident_mb("VmRSS") - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_lean_allocator_returns_freed_large_blocks():
    def kept_mb(setting):
        out = subprocess.run([sys.executable, "-c", KEPT_AFTER_FREE, setting], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return float(out.stdout)

    assert kept_mb("default") >= 15 and kept_mb("tuned") >= 15  # a freed 16 MiB block stays resident
    assert kept_mb("lean") < 8  # returned (less than half a block: libraries may still page in a little)


LEAN_POOL = """
import torch
from svformer.cpu import pool
from svformer.cpu.allocator import set_allocator
x = torch.empty(4 << 20)
pool.empty_like(x)
assert pool.stats().blocks == 1
set_allocator("lean")
pool.empty_like(x)
print(pool.stats().blocks)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_the_lean_setting_turns_the_buffer_pool_off():
    out = subprocess.run([sys.executable, "-c", LEAN_POOL], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0"


def test_unknown_allocator_setting():
    with pytest.raises(ValueError, match="unknown allocator setting 'fast'"):
        allocator.set_allocator("fast")
