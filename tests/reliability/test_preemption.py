"""SIGTERM (what schedulers send before preemption) writes a checkpoint at the current batch and stops;
`--resume auto` continues from it to the same bits as a run never stopped, each epoch logged once with
the same loss."""
import json
import os
import signal
import subprocess
import sys

import pytest

from svformer.engine.checkpoint import load_checkpoint

from .helpers import REPO, SIGNAL_AT_STEP, svformer
from .test_kill import EPOCHS, assert_same_run, reference, run_args  # noqa: F401  (module fixture)


@pytest.mark.parametrize("at", [3, 4])  # inside epoch 2 (2 batches per epoch), and at its last batch
def test_sigterm_checkpoints_and_resume_auto_is_exact(tmp_path, reference, at):
    ref_state = reference[1]
    args = run_args(tmp_path, reference)
    stopped = subprocess.run([sys.executable, SIGNAL_AT_STEP, *args], capture_output=True, text=True, cwd=REPO,
                             timeout=300, env={**os.environ, "SIGNAL_AT": str(at)})
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-2000:]
    assert "stopped by SIGTERM" in stopped.stderr and "--resume auto" in stopped.stderr
    assert len(stopped.stderr.strip().splitlines()) == 1  # one line, no traceback
    state = load_checkpoint(str(tmp_path / "run" / "last.pt"))
    steps = ref_state["iteration"] // EPOCHS
    assert state["iteration"] == at
    assert (state["epoch"], state["step"]) == ((at // steps, at % steps))
    resumed = svformer(*args, "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from" in resumed.stderr
    assert_same_run(tmp_path / "run", ref_state)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    ref_rows = [json.loads(line) for line in (reference_run_dir(reference) / "metrics.jsonl").read_text().splitlines()]
    assert [r["train_loss"] for r in rows] == [r["train_loss"] for r in ref_rows]  # the stopped epoch's too


def reference_run_dir(reference):
    import pathlib

    return pathlib.Path(reference[2]).parent / "ref"


def test_resume_auto_without_a_checkpoint_starts(tmp_path, reference):
    done = svformer(*run_args(tmp_path, reference)[:-1], "optim.epochs=1", "--no-test", "--resume", "auto")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "no " in done.stderr and "yet, starting" in done.stderr
    assert load_checkpoint(str(tmp_path / "run" / "last.pt"))["epoch"] == 1
