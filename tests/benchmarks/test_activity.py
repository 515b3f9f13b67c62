"""The benchmark model's calibrated activity (benchmarks/activity.py): every calibrated neuron fires at
the rate asked for, on another clip too, and the model is left as it was otherwise (evaluation, momentum)."""
import sys
from pathlib import Path

import torch

from svformer import SVFormer
from svformer.snn.neuron import BaseNeuron

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from activity import calibrate, firing_rates  # noqa: E402

SMALL = dict(embed_dim=(16, 32, 48, 64), depth=(1, 1, 1, 1), head_dim=16, img_size=64, num_frames=4)


def test_calibrated_neurons_fire_at_the_rate_asked_for():
    torch.manual_seed(0)
    model = SVFormer(num_classes=5, **SMALL)
    clip = torch.randn(1, 3, 4, 64, 64)
    before = firing_rates(model, clip)
    momenta = [m.momentum for m in model.modules() if hasattr(m, "momentum")]
    reached = calibrate(model, 0.15)
    after = firing_rates(model, clip)  # another clip than the calibration's
    assert set(after) == {n for n, m in model.named_modules() if isinstance(m, BaseNeuron)}
    assert sorted(before.values())[len(before) // 2] < 0.05  # as initialised: barely firing
    assert len(reached) >= len(after) * 2 // 3 and all(abs(r - 0.15) < 0.03 for r in reached.values())
    assert all(abs(after[n] - 0.15) < 0.06 for n in reached)
    assert not model.training and [m.momentum for m in model.modules() if hasattr(m, "momentum")] == momenta
