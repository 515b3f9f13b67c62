"""The benchmark's rounds (benchmarks/run.py --rounds): the order its processes run in and the medians."""
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import run  # noqa: E402


def test_rounds_interleave_every_other_one_reversed_and_rows_are_their_medians(monkeypatch, capsys):
    calls = []
    seconds = {("train", "reference"): [9.0, 12.0, 10.0], ("train", "svformer"): [3.0, 5.0, 4.0]}

    def child(task, kind, allocator, args):
        calls.append((task, kind))
        s = seconds[(task, kind)][sum(c == (task, kind) for c in calls) - 1]
        return {"seconds": s, "peak_mb": 100.0 * s, "first_seconds": 2 * s, "cpu": "x", "flag": True}

    monkeypatch.setattr(run, "_child", child)
    runs = [("train", "reference"), ("train", "svformer")]
    rows = run.measure_rows(runs, "default", SimpleNamespace(rounds=3))
    assert calls == runs + runs[::-1] + runs
    assert rows[("train", "reference")]["seconds"] == 10.0
    assert rows[("train", "svformer")]["peak_mb"] == 400.0
    assert rows[("train", "svformer")]["round_seconds"] == [3.0, 5.0, 4.0]
    assert rows[("train", "svformer")]["cpu"] == "x" and rows[("train", "svformer")]["flag"] is True
    assert capsys.readouterr().out.count("round ") == 6


def test_one_round_is_the_single_measurement():
    row = {"seconds": 1.5, "peak_mb": 10.0, "first_seconds": 2.0}
    assert run.median_row([row]) == row
