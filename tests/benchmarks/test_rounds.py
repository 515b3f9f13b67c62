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


def test_a_streams_rounds_keep_their_percentiles_and_frames():
    rows = [{"seconds": s, "peak_mb": 1.0, "first_seconds": 9.0, "p50_ms": 1e3 * s, "p95_ms": 2e3 * s,
             "frames_ms": [1e3 * s, 2e3 * s]} for s in (0.02, 0.03, 0.025)]
    row = run.median_row(rows)
    assert row["p50_ms"] == 25.0 and row["round_p95_ms"] == [40.0, 60.0, 50.0]
    assert row["round_frames_ms"] == [[20.0, 40.0], [30.0, 60.0], [25.0, 50.0]] and "frames_ms" not in row
