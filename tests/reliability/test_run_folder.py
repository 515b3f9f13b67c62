"""One run per run folder; a killed run leaves no stuck lock; metrics survive a cut-off write."""
import json
import signal
import time

import pytest

from svformer.cli import main
from svformer.config import load_config
from svformer.engine.checkpoint import load_checkpoint
from svformer.engine.logger import MetricsLogger
from svformer.engine.trainer import train

from .helpers import overrides, start


def test_a_second_run_into_a_folder_in_use_is_refused_and_a_killed_run_frees_it(tmp_path):
    first = start("train", "demo", *overrides(tmp_path, "run", **{"optim.epochs": 200}), "--no-test")
    try:
        deadline = time.time() + 120
        while not (tmp_path / "run" / "last.pt").exists() and time.time() < deadline:
            time.sleep(0.05)
        assert first.poll() is None
        with pytest.raises(SystemExit, match=rf"^svformer train: output_dir .*run is in use by process {first.pid} "):
            main(["train", "demo", *overrides(tmp_path, "run", seed=7, **{"optim.epochs": 1})])
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    done = load_checkpoint(str(tmp_path / "run" / "last.pt"))["epoch"]
    # The lock died with its process: resuming in the same folder works at once.
    train(load_config("demo", overrides(tmp_path, "run", **{"optim.epochs": done + 1})),
          resume=str(tmp_path / "run" / "last.pt"), test=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, done + 2))


def test_output_dir_that_is_a_file_or_read_only(tmp_path):
    (tmp_path / "file").write_text("x")
    args = [a for a in overrides(tmp_path, "run") if not a.startswith("output_dir=")]
    with pytest.raises(SystemExit, match=r"^svformer train: output_dir .*file is a file, not a folder$"):
        main(["train", "demo", *args, f"output_dir={tmp_path / 'file'}"])
    with pytest.raises(SystemExit, match=r"^svformer train: output_dir /proc/svformer_run: cannot write there"):
        main(["train", "demo", *args, "output_dir=/proc/svformer_run"])


def test_cut_off_metrics_line_does_not_block_a_resume(tmp_path):
    cfg = overrides(tmp_path, "run", **{"optim.epochs": 1})
    train(load_config("demo", cfg), test=False)
    metrics = tmp_path / "run" / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + '{"epoch": 2, "train_lo')  # the write a kill cut off
    with pytest.warns(RuntimeWarning, match=r"metrics.jsonl:2: dropping a cut-off last line"):
        train(load_config("demo", overrides(tmp_path, "run", **{"optim.epochs": 2})),
              resume=str(tmp_path / "run" / "last.pt"), test=False)
    assert [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()] == [1, 2]
    metrics.write_text('{"epoch": 1}\nnot json\n{"epoch": 2}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: not a JSON record"):
        MetricsLogger(str(tmp_path / "run")).read()
