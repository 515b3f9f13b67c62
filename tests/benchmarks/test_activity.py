"""The benchmark model's calibrated activity (benchmarks/activity.py): the neurons fire at the rate asked
for, on other clips too, and the model is left as it was otherwise (evaluation mode, BN momentum)."""
import sys
from pathlib import Path

import torch

from svformer import SVFormer
from svformer.snn.neuron import BaseNeuron

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from activity import calibrate, firing_rates, overall_rate  # noqa: E402

SMALL = dict(embed_dim=(16, 32, 48, 64), depth=(1, 1, 1, 1), head_dim=16, img_size=32, num_frames=4)


def test_calibrated_model_fires_at_the_rate_asked_for():
    torch.manual_seed(0)
    model = SVFormer(num_classes=5, **SMALL)
    clip = torch.randn(1, 3, 4, 32, 32)
    before = overall_rate(model, clip)
    momenta = [m.momentum for m in model.modules() if hasattr(m, "momentum")]
    for rate in (0.1, 0.25):
        reached = calibrate(model, rate)
        assert abs(reached - rate) < 0.02
        assert abs(overall_rate(model, clip) - rate) < 0.05  # another clip than the calibration's
    assert before < 0.05  # as initialised, the model barely fires: what calibration is for
    assert not model.training and [m.momentum for m in model.modules() if hasattr(m, "momentum")] == momenta
    layers = firing_rates(model, clip)
    assert set(layers) == {n for n, m in model.named_modules() if isinstance(m, BaseNeuron)}
    assert all(0.0 <= r <= 1.0 for r in layers.values()) and max(layers.values()) > min(layers.values())
