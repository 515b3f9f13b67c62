"""The memory planner against measured peaks: predictions at two batch sizes and two resolutions, from
probes at other batch sizes and another resolution, within 15 % of a real training run's peak."""
import json
import subprocess
import sys

import pytest

from svformer.analysis.memory import MemoryPlan, Probe, _fit, plan, run_probe

# The paper's widths at 4 frames: activations are most of the peak, as at full size.
KWARGS = dict(num_frames=4, num_classes=10)


@pytest.fixture(scope="module")
def cpu_plan():
    (none,) = plan("svformer_paper", {**KWARGS, "img_size": 224}, device="cpu", modes=["none"])
    return none


@pytest.mark.parametrize("batch, size", [(3, 160), (5, 224)])
def test_predicted_cpu_peaks_are_within_15_percent_of_measured(cpu_plan, batch, size):
    assert [p.size for p in cpu_plan.probes] == [128, 128, 128]
    scale = (size / 224) ** 2
    predicted = cpu_plan.fixed_mb + cpu_plan.per_clip_mb * scale * batch
    measured = run_probe("svformer_paper", KWARGS, batch, size, "none", "cpu", amp=False)
    activations = measured.peak_mb - measured.idle_mb
    assert activations > 0.5 * measured.idle_mb  # activations are a large part: an error would show
    assert abs(predicted - measured.peak_mb) <= 0.15 * measured.peak_mb, (predicted, measured)


def test_fit_is_least_squares_over_the_probes():
    assert _fit([2, 4, 6], [1200.0, 1600.0, 2000.0]) == (200.0, 800.0)
    slope, at_zero = _fit([2, 4, 6], [1000.0, 1500.0, 1800.0])  # concave, as a process peak often is
    assert slope == 200.0 and abs(at_zero - (1433.333 - 800.0)) < 1e-3
    assert _fit([2, 4], [1000.0, 900.0]) == (0.0, 950.0)  # never a negative cost per clip
    with pytest.raises(ValueError, match="two different batch sizes"):
        _fit([4, 4], [1.0, 2.0])


def test_max_batch_never_suggests_a_batch_the_head_cannot_train():
    probes = [Probe(2, 128, 3000.0, 500.0, 50.0), Probe(4, 128, 5000.0, 500.0, 50.0)]
    p = MemoryPlan("none", "cuda", fixed_mb=1000.0, per_clip_mb=1000.0, min_batch=2, probes=probes)
    assert p.max_batch(3500) == 2 and p.max_batch(3000) == 2 and p.max_batch(2999) == 0
    assert p.peak_mb(3) == 4000.0
    assert MemoryPlan("none", "cuda", 1000.0, 1000.0, 1, probes).max_batch(2500) == 1


def test_memory_command_prints_a_table_and_writes_json(tmp_path):
    out = tmp_path / "plan.json"
    r = subprocess.run([sys.executable, "-m", "svformer", "memory", "demo", "--checkpointing", "block",
                        "--device-memory", "8GB", "--json", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "fits in 8 GB" in r.stdout and "block" in r.stdout
    data = json.loads(out.read_text())
    assert data["fits"]["block"]["8 GB"] >= 2
    assert [p["batch"] for p in data["plans"][0]["probes"]] == [2, 4, 6]
    assert data["plans"][0]["min_batch"] == 2  # the Conv3d head's BatchNorm3d, per device


def test_with_sync_bn_across_devices_one_clip_per_device_can_train(tmp_path):
    out = tmp_path / "plan.json"
    r = subprocess.run([sys.executable, "-m", "svformer", "memory", "demo", "sync_bn=true", "--devices", "4",
                        "--checkpointing", "none", "--device-memory", "8GB", "--json", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["plans"][0]["min_batch"] == 1


def test_memory_command_errors_are_one_line():
    r = subprocess.run([sys.executable, "-m", "svformer", "memory", "demo", "model.kwargs={depth: 3}"],
                       capture_output=True, text=True)
    assert r.returncode != 0
    assert r.stderr.strip() == "svformer memory: model.kwargs for svformer_tiny: depth expects a list of int, got 3"
