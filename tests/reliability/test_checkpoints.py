"""Checkpoints: never non-finite, never half-written, never code; a diverged run names its last good one."""
import errno
import os
import subprocess

import pytest
import torch

import svformer.engine.trainer as trainer_module
from svformer.cli import main
from svformer.config import load_config
from svformer.engine.checkpoint import (CheckpointWriteError, NonFiniteError, load_checkpoint, save_checkpoint)
from svformer.engine.trainer import TrainingDiverged, train

from .helpers import overrides


def poison_after(monkeypatch, epoch_to_poison):
    """Make the weights explode in one epoch while its loss stays finite."""
    original = trainer_module.Trainer.train_one_epoch

    def train_one_epoch(self, epoch, *args):
        out = original(self, epoch, *args)
        if epoch + 1 == epoch_to_poison:
            with torch.no_grad():
                next(self.module.parameters()).view(-1)[:5] = float("inf")
        return out
    monkeypatch.setattr(trainer_module.Trainer, "train_one_epoch", train_one_epoch)


def test_non_finite_weights_never_replace_a_good_checkpoint(tmp_path, monkeypatch):
    poison_after(monkeypatch, 2)
    with pytest.raises(TrainingDiverged, match=r"epoch 2: 5 non-finite values .* last good checkpoint is "
                                               r".*run/last.pt \(epoch 1\)"):
        train(load_config("demo", overrides(tmp_path, "run", **{"optim.epochs": 3})), test=False)
    run = tmp_path / "run"
    assert load_checkpoint(str(run / "last.pt"))["epoch"] == 1
    assert load_checkpoint(str(run / "best.pt"))["epoch"] == 1
    assert not (run / "checkpoint_epoch_00002.pt").exists()
    assert [r for r in (run / "metrics.jsonl").read_text().splitlines()] and \
        '"epoch": 2' not in (run / "metrics.jsonl").read_text()
    # The same through the command: one line, non-zero exit.
    poison_after(monkeypatch, 1)
    with pytest.raises(SystemExit, match=r"^svformer train: training diverged in epoch 1: .*no checkpoint was "
                                         r"written yet"):
        main(["train", "demo", *overrides(tmp_path, "run2", **{"optim.epochs": 2})])


def test_a_non_finite_loss_stops_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_module, "train_step", lambda *a, **k: float("nan"))
    with pytest.raises(SystemExit, match=r"^svformer train: training diverged in epoch 1: the loss is nan"):
        main(["train", "demo", *overrides(tmp_path, "run", **{"optim.epochs": 1})])


def test_poisoned_and_malicious_checkpoints_are_refused(tmp_path):
    train(load_config("demo", overrides(tmp_path, "run", **{"optim.epochs": 1})), test=False)
    state = load_checkpoint(str(tmp_path / "run" / "last.pt"))
    with pytest.raises(NonFiniteError, match="not saving"):
        bad = dict(state, model={k: v.clone() for k, v in state["model"].items()})
        next(v for v in bad["model"].values() if v.is_floating_point()).view(-1)[0] = float("nan")
        save_checkpoint(str(tmp_path / "bad.pt"), bad)
    assert not (tmp_path / "bad.pt").exists() and not os.listdir(tmp_path / "run") == []
    torch.save(bad, tmp_path / "bad.pt")  # written by something else
    video = next((tmp_path / "data" / "UCF-101" / "Still").iterdir())
    with pytest.raises(SystemExit, match=r"^svformer predict: .*bad.pt holds a diverged model: 1 non-finite"):
        main(["predict", str(tmp_path / "bad.pt"), str(video)])
    with pytest.raises(SystemExit, match=r"^svformer test: .*bad.pt holds a diverged model"):
        main(["test", str(tmp_path / "bad.pt")])

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    torch.save({"model": Evil(), "config": {}}, tmp_path / "evil.pt", _use_new_zipfile_serialization=True)
    with pytest.raises(SystemExit, match=r"^svformer predict: cannot read checkpoint .*evil.pt"):
        main(["predict", str(tmp_path / "evil.pt"), str(video)])
    assert not marker.exists()  # the pickle's code never ran
    with pytest.raises(SystemExit, match="is a folder, not a checkpoint"):
        main(["test", str(tmp_path / "run")])


@pytest.fixture
def small_disk(tmp_path):
    """A 1.5 MB tmpfs where this machine lets us mount one, else None."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1500k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        yield None
        return
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _big_state(mb):
    return {"model": {"w": torch.zeros(mb * 256 * 1024)}, "config": {}}


def test_full_disk_keeps_the_old_checkpoint_and_no_temporary_file(tmp_path, small_disk, monkeypatch):
    folder = small_disk or tmp_path
    save_checkpoint(str(folder / "last.pt"), _big_state(1))  # 1 MB of 1.5
    before = (folder / "last.pt").read_bytes()
    if small_disk is None:  # no tmpfs here: the disk fills as the writer goes
        original = torch.save

        def full(obj, f, *a, **k):
            with open(f, "wb") as h:
                h.write(b"x" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr(torch, "save", full)
    with pytest.raises(CheckpointWriteError, match=r"cannot write checkpoint .*last.pt: no space left on the device; "
                                                   r"the previous file is unchanged"):
        save_checkpoint(str(folder / "last.pt"), _big_state(1))
    assert (folder / "last.pt").read_bytes() == before
    assert sorted(os.listdir(folder)) == ["last.pt"]


def test_full_disk_during_training_is_one_line(tmp_path, small_disk, monkeypatch):
    if small_disk is None:
        def full(*a, **k):
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr(torch, "save", full)
        out = tmp_path / "run"
    else:
        out = small_disk / "run"
        (small_disk / "filler").write_bytes(b"\0" * 1_300_000)  # leaves room for the config, not a checkpoint
    args = [a for a in overrides(tmp_path, "run", **{"optim.epochs": 1}) if not a.startswith("output_dir=")]
    with pytest.raises(SystemExit, match=r"^svformer train: .*(no space left on the device|No space left)"):
        main(["train", "demo", *args, f"output_dir={out}"])
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]
