"""kill -9 anywhere, mid-checkpoint included: the run resumes from its last checkpoint to the same bits
as a run never interrupted, with no temporary file left and no epoch logged twice."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from svformer.config import load_config
from svformer.engine.checkpoint import load_checkpoint
from svformer.engine.data import prepare_synthetic
from svformer.engine.trainer import train

from .helpers import REPO, overrides, svformer

EPOCHS = 3


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(seconds the uninterrupted run trains, its last checkpoint, the synthetic data every run here reads)."""
    tmp = tmp_path_factory.mktemp("reference")
    cfg = load_config("demo", overrides(tmp, "ref", **{"optim.epochs": EPOCHS}))
    prepare_synthetic(cfg)  # written once: the timed run and the killed ones only read it
    start = time.perf_counter()
    train(cfg, test=False)
    return time.perf_counter() - start, load_checkpoint(str(tmp / "ref" / "last.pt")), cfg.data.root


def run_args(tmp, reference):
    return ["train", "demo", *overrides(tmp, "run", **{"optim.epochs": EPOCHS, "data.root": reference[2]}),
            "--no-test"]


def assert_same_run(run, reference_state):
    state = load_checkpoint(str(run / "last.pt"))
    assert state["epoch"] == EPOCHS and state["iteration"] == reference_state["iteration"]
    for k, v in reference_state["model"].items():
        assert torch.equal(state["model"][k], v), k
    torch.testing.assert_close(state["optimizer"]["state"], reference_state["optimizer"]["state"], rtol=0, atol=0)
    epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(1, EPOCHS + 1))  # each epoch once
    assert not [f for f in os.listdir(run) if f.endswith(".tmp")]


def resume(tmp, reference):
    run = tmp / "run"
    args = run_args(tmp, reference)
    if (run / "last.pt").is_file():
        args += ["--resume", str(run / "last.pt")]
    done = svformer(*args)
    assert done.returncode == 0, done.stderr[-2000:]


KILL_IN_SAVE = """
import os, signal, sys, torch
from svformer.cli import main
saves = []
original = torch.save
def save(obj, f, *a, **k):
    saves.append(str(f))
    if ".last.pt." in str(f) and sum(".last.pt." in s for s in saves) == 2:
        original(obj, f, *a, **k)
        size = os.path.getsize(f)
        with open(f, "r+b") as h:
            h.truncate(size // 2)  # half written ...
        os.kill(os.getpid(), signal.SIGKILL)  # ... when the machine dies
    return original(obj, f, *a, **k)
torch.save = save
sys.exit(main(sys.argv[1:]))
"""


def test_kill_mid_checkpoint_then_resume_is_exact(tmp_path, reference):
    ref_state = reference[1]
    died = subprocess.run([sys.executable, "-c", KILL_IN_SAVE, *run_args(tmp_path, reference)], capture_output=True,
                          text=True, cwd=REPO, timeout=300)
    assert died.returncode == -signal.SIGKILL
    run = tmp_path / "run"
    leftovers = [f for f in os.listdir(run) if f.endswith(".tmp")]
    assert leftovers, "the kill did not land inside a checkpoint write"
    assert load_checkpoint(str(run / "last.pt"))["epoch"] == 1  # the good file was never replaced
    resume(tmp_path, reference)
    assert_same_run(run, ref_state)


@pytest.mark.parametrize("fraction", [0.1, 0.4, 0.6])
def test_kill_at_a_random_moment_then_resume_is_exact(tmp_path, reference, fraction):
    duration, ref_state, _ = reference
    proc = subprocess.Popen([sys.executable, "-m", "svformer", *run_args(tmp_path, reference)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    # Wait until the run has started (its config is written), then a random share of the time the
    # uninterrupted run trained (the same work: the data is already written), jittered.
    deadline = time.time() + 120
    while not (tmp_path / "run" / "config.yaml").exists() and time.time() < deadline:
        time.sleep(0.02)
    jitter = np.random.default_rng().uniform(-0.05, 0.05)
    time.sleep(max(0.0, fraction + jitter) * duration)
    assert proc.poll() is None, "the run ended before the kill"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resume(tmp_path, reference)
    assert_same_run(tmp_path / "run", ref_state)
