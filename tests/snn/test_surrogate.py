import math

import pytest
import torch

from svformer.snn import ATan, Sigmoid, get_surrogate, heaviside

sj_surrogate = pytest.importorskip("spikingjelly.activation_based.surrogate")


@pytest.mark.parametrize("ours,ref", [(ATan(2.0), "ATan"), (ATan(3.5), "ATan"), (Sigmoid(4.0), "Sigmoid")])
def test_forward_is_heaviside_and_backward_matches_spikingjelly(ours, ref):
    ref = getattr(sj_surrogate, ref)(ours.alpha)
    x = torch.cat([torch.linspace(-3, 3, 101), torch.zeros(1)])
    a = x.clone().requires_grad_(True)
    b = x.clone().requires_grad_(True)
    ya, yb = ours(a), ref(b)
    assert torch.equal(ya, yb)
    assert torch.equal(ya, (x >= 0).float())
    ya.sum().backward()
    yb.sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("surr", [ATan(2.0), Sigmoid(4.0), ATan(0.7)])
def test_derivative_is_derivative_of_primitive(surr):
    x = torch.linspace(-2, 2, 41, dtype=torch.float64).requires_grad_(True)
    (g,) = torch.autograd.grad(surr.primitive(x).sum(), x)
    torch.testing.assert_close(surr.derivative(x.detach()), g)
    # The primitive is a smooth step: 0 far below threshold, 1 far above, 1/2 at it.
    assert surr.primitive(torch.tensor(-50.0, dtype=torch.float64)) < 0.02
    assert surr.primitive(torch.tensor(50.0, dtype=torch.float64)) > 0.98
    assert float(surr.primitive(torch.tensor(0.0))) == pytest.approx(0.5)


def test_atan_peak_value():
    assert float(ATan(2.0).derivative(torch.tensor(0.0))) == pytest.approx(1.0)
    assert float(ATan(2.0).derivative(torch.tensor(1.0))) == pytest.approx(1 / (1 + math.pi**2))


def test_lookup_and_errors():
    assert get_surrogate("atan") == ATan(2.0)
    assert get_surrogate("Sigmoid").alpha == 4.0
    with pytest.raises(ValueError, match="unknown surrogate"):
        get_surrogate("relu")
    with pytest.raises(ValueError, match="alpha"):
        ATan(0.0)
    assert torch.equal(heaviside(torch.tensor([-1.0, 0.0, 2.0])), torch.tensor([0.0, 1.0, 1.0]))
