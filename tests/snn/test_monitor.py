import pytest
import torch
from torch import nn

from svformer.snn import FiringRateMonitor, IFNode


def test_rates_are_exact_means_over_calls_and_steps():
    net = nn.Sequential(IFNode(v_threshold=0.5))
    x1 = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.6, 0.6]])  # (T=3, 2): spikes 1,0 / 0,0 / 1,1 (after reset)
    with FiringRateMonitor(net) as mon:
        net[0].reset()
        s1 = net(x1)
        net[0].reset()
        s2 = net(torch.zeros(3, 2))
    assert mon.rates() == {"0": pytest.approx(float(torch.cat([s1, s2]).mean()))}
    per_step = mon.rates_per_step()["0"]
    torch.testing.assert_close(per_step, torch.cat([s1, s2], 1).mean(1))
    assert not net[0]._forward_hooks, "hooks must be removed on exit"


def test_requires_neurons():
    with pytest.raises(ValueError, match="no neuron"):
        with FiringRateMonitor(nn.Linear(2, 2)):
            pass
