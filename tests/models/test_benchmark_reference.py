"""The benchmarks' reference model (spikingjelly neurons, the authors' BN wrappers) is the authors' model:
with their weights it reproduces their golden logits, so a speed ratio compares equal work."""
import sys
from pathlib import Path

import pytest
import torch

from svformer import load_official

from ..golden import load_golden, model_from_config

pytest.importorskip("spikingjelly.activation_based.neuron")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from reference_model import authors_parts  # noqa: E402


def test_reference_model_reproduces_golden_logits():
    golden = load_golden("official_small.pt")
    model = load_official(model_from_config(golden["config"], **authors_parts(golden["config"]["T"])), golden["state_dict"])
    with torch.no_grad():
        eval_logits = model.eval()(golden["input"])
    train_logits = model.train()(golden["input"])
    for ours, ref in ((eval_logits, golden["logits_eval"]), (train_logits, golden["logits_train"])):
        assert float((ours.detach() - ref).norm() / ref.norm()) < 1e-4


def test_benchmark_harness_writes_every_key(tmp_path):
    """A tiny run of benchmarks/run.py end to end (its numbers mean nothing at this size)."""
    import json
    import math
    import subprocess

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "run.py"
    out = tmp_path / "bench.json"
    subprocess.run([sys.executable, str(script), "--frames", "2", "--size", "64", "--batch", "2", "--repeat", "1",
                    "--neuron-shape", "2", "2", "4", "4", "4", "--allocator", "default", "--bf16", "yes",
                    "--json", str(out),
                    "--plot", str(tmp_path / "bench.png")], check=True, capture_output=True)
    result = json.loads(out.read_text())
    for key in ("neuron_speedup", "train_step_speedup", "train_peak_memory_ratio", "inference_speedup",
                "inference_floor_fraction", "train_step_speedup_bf16", "train_first_step_speedup",
                "inference_first_speedup", "train_step_speedup_bound", "inference_speedup_bound",
                "inference_speedup_onnx", "inference_speedup_best", "streaming_latency_ms_p50",
                "streaming_latency_ms_p95", "streaming_latency_ms_p50_pytorch", "streaming_latency_ms_p95_onnx",
                "train_peak_memory_ratio_checkpointed", "train_step_slowdown_checkpointed"):
        assert math.isfinite(result[key]) and result[key] > 0, key
    for key in ("memory_planner_error_none", "memory_planner_error_block"):
        assert math.isfinite(result[key]) and abs(result[key]) < 1, key  # a relative error, either sign
    assert result["inference_speedup_best"] == max(result["inference_speedup"], result["inference_speedup_onnx"])
    assert result["streaming_latency_ms_p50"] == min(result[f"streaming_latency_ms_p50_{runtime}"]
                                                     for runtime in ("pytorch", "pytorch_compiled", "onnx"))
    # Rows profiled for dense time have some. (Not compared with the timed seconds: the profiled run is another
    # run, and a stall of this VM in it outweighs a tiny row's 20 ms; tests/benchmarks/test_dense.py checks
    # that only outermost dense ops are counted.)
    for name, row in result["rows"].items():
        if not any(kind in name for kind in ("onnx", "stream", "checkpoint")):
            assert math.isfinite(row["dense_seconds"]) and row["dense_seconds"] > 0, name
    assert (tmp_path / "bench.png").stat().st_size > 0
    # One row under the lean allocator (a pass of its own with --allocator all/lean).
    child = subprocess.run([sys.executable, str(script), "--child", "train", "checkpoint-block", "lean", "--frames", "2",
                            "--size", "64", "--batch", "2", "--repeat", "1"], capture_output=True, text=True)
    assert child.returncode == 0, child.stderr[-2000:]
    row = json.loads(child.stdout.strip().splitlines()[-1])
    assert row["peak_mb"] > 0 and row["seconds"] > 0
