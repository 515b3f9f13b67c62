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
