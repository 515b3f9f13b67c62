"""The benchmarks' dense-time count (benchmarks/dense.py): which profiler events it adds up."""
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from dense import DENSE_OPS, dense_seconds, profile_dense  # noqa: E402


def _event(name, micros, parent=None):
    return SimpleNamespace(name=name, cpu_time_total=micros, cpu_parent=parent)


def test_counts_outermost_dense_ops_only():
    conv = _event("aten::convolution", 3000.0)
    inner = _event("aten::addmm", 2500.0, parent=_event("aten::_convolution", 2900.0, parent=conv))
    linear = _event("aten::linear", 1200.0)
    addmm = _event("aten::addmm", 1000.0, parent=linear)
    copy = _event("aten::copy_", 400.0, parent=linear)
    backward = _event("aten::mm", 700.0, parent=_event("AddmmBackward0", 900.0))
    neuron = _event("aten::mul", 50.0)
    seconds, by_op = dense_seconds([conv, inner, linear, addmm, copy, backward, neuron])
    assert by_op == {"aten::convolution": 3000e-6, "aten::addmm": 1000e-6, "aten::mm": 700e-6}
    assert abs(seconds - 4700e-6) < 1e-12


def test_profiled_training_step_finds_every_dense_op():
    """Convolution, linear and batched products, forward and backward, under the real profiler."""
    torch.manual_seed(0)
    conv, fc = nn.Conv2d(3, 8, 3, padding=1), nn.Linear(8, 8)
    x = torch.randn(2, 3, 8, 8)

    def step():
        y = fc(conv(x).relu().flatten(2).transpose(1, 2))  # (B, N, 8)
        (y @ y.transpose(1, 2)).square().sum().backward()

    result = profile_dense(step, runs=1)
    ops = set(result["dense_by_op"])
    assert {"aten::convolution", "aten::convolution_backward", "aten::bmm", "aten::mm"} <= ops, ops
    assert ops <= DENSE_OPS
    assert result["dense_seconds"] == sum(result["dense_by_op"].values()) > 0
