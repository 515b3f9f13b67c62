"""The `svformer train` command under torchrun, two CPU ranks (gloo): it runs every epoch; a SIGTERM to
one rank stops both at the same batch with a checkpoint that `--resume auto` continues from to the same
bits as a run never stopped; a rank killed outright under ``--max-restarts`` makes the job restart and
end with those bits too."""
import os
import signal
import subprocess
import sys

import pytest
import torch

from svformer.engine.checkpoint import load_checkpoint

from .helpers import REPO, SIGNAL_AT_STEP, overrides

EPOCHS = 6


def torchrun(tmp, run, *launcher, signal_at=None):
    """Two ranks training the demo; with ``signal_at=(rank, step, signal)`` that rank sends itself the signal
    during its step (counted from 1) in the job's first attempt."""
    args = ["train", "demo", *overrides(tmp, run, **{"optim.epochs": EPOCHS, "threads": 1, "data.num_workers": 0}),
            "--no-test", "--resume", "auto"]
    program, env = ["-m", "svformer"], dict(os.environ)
    if signal_at is not None:
        rank, step, sig = signal_at
        program = [SIGNAL_AT_STEP]
        env.update(SIGNAL_RANK=str(rank), SIGNAL_AT=str(step), SIGNAL=sig.name)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", *launcher,
           *program, *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
                            start_new_session=True, env=env)


def finish(proc, timeout=180):
    try:
        return proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A 2-rank run never stopped, and its data folder (other runs share it)."""
    tmp = tmp_path_factory.mktemp("torchrun")
    ref = torchrun(tmp, "ref")
    out = finish(ref)
    assert ref.returncode == 0, out[-3000:]
    state = load_checkpoint(str(tmp / "ref" / "last.pt"))
    assert state["epoch"] == EPOCHS and out.count("epoch ") == EPOCHS  # one voice: rank 0's lines
    return tmp, state


def inside_epoch_3(reference):
    """A step of the first half of epoch 3 (each rank counts its own steps)."""
    per_epoch = reference["iteration"] // EPOCHS
    return 2 * per_epoch + max(1, per_epoch // 2)


def assert_same_run(last, reference):
    state = load_checkpoint(str(last))
    assert state["epoch"] == EPOCHS and state["iteration"] == reference["iteration"]
    for k, v in reference["model"].items():
        assert torch.equal(state["model"][k], v), k


def test_two_ranks_train_every_epoch_and_stop_together_on_sigterm(reference):
    tmp_path, reference = reference
    # one rank only: the other must learn of it and stop at the same batch
    proc = torchrun(tmp_path, "run", signal_at=(1, inside_epoch_3(reference), signal.SIGTERM))
    last = tmp_path / "run" / "last.pt"
    out = finish(proc)
    assert proc.returncode != 0 and "stopped by" in out, out[-3000:]
    stopped = load_checkpoint(str(last))  # rank 0's position: right after the step rank 1 was signalled in
    assert stopped["iteration"] == inside_epoch_3(reference) and stopped["epoch"] == 2

    resumed = torchrun(tmp_path, "run")
    out = finish(resumed)
    assert resumed.returncode == 0 and "resuming from" in out, out[-3000:]
    assert_same_run(last, reference)


def test_a_killed_rank_restarts_the_job_which_continues_from_its_checkpoint(reference):
    # torchrun --max-restarts: a rank killed outright (no checkpoint of its own) makes torchrun stop the
    # other and start both again; they resume from the last epoch's checkpoint and end as if never killed.
    tmp_path, reference = reference
    proc = torchrun(tmp_path, "elastic", "--max-restarts", "1", signal_at=(1, inside_epoch_3(reference), signal.SIGKILL))
    last = tmp_path / "elastic" / "last.pt"
    out = finish(proc)
    assert proc.returncode == 0 and "resuming from" in out, out[-3000:]
    assert_same_run(last, reference)


def test_one_clip_per_rank_needs_and_trains_with_sync_bn(tmp_path):
    def run(name, *extra):
        settings = {"optim.epochs": 1, "optim.batch_size": 2, "threads": 1, "data.num_workers": 0}
        args = ["train", "demo", *overrides(tmp_path, name, **settings), *extra, "--no-test"]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", "-m",
               "svformer", *args]
        return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=180)

    alone = run("alone")  # per-device BatchNorm: the Conv3d head cannot normalise one clip
    assert alone.returncode != 0 and "needs at least 2 clips per device, got 1" in alone.stderr + alone.stdout
    synced = run("synced", "sync_bn=true")
    assert synced.returncode == 0, (synced.stdout + synced.stderr)[-3000:]
    assert load_checkpoint(str(tmp_path / "synced" / "last.pt"))["epoch"] == 1
