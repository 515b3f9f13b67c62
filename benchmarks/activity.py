"""The benchmark model's spiking activity: random weights whose neurons fire as a trained model's do.

Dense layers cost the same whatever their inputs hold, but svformer's sparse inference (`svformer.cpu.sparse`)
does work in proportion to the spikes, so an inference benchmark is honest only at a realistic firing rate.
With random weights and fresh BatchNorms, the paper model's neurons barely fire (well under 1 % past the
first stage), which would flatter the sparse kernels. `calibrate` sets every BatchNorm's running
statistics from a clip (as a trained model's hold its data's) and one shift ``beta`` for all of them,
found by bisection so that the model's neurons fire at ``rate`` of their outputs in all (counted over
every neuron's output elements, so the large early stages weigh most, as they do in the work). Layers
then fire at different rates around it, as trained ones do; `firing_rates` reports them.
"""
from __future__ import annotations

from typing import Dict

import torch

from svformer.snn.neuron import BaseNeuron
from svformer.snn.norm import TimeBatchNorm


@torch.no_grad()
def firing_rates(model, clip: torch.Tensor) -> Dict[str, float]:
    """Each neuron layer's fraction of outputs that are spikes on ``clip``, in evaluation (call order)."""
    counts: Dict[str, list] = {}
    hooks = [m.register_forward_hook(lambda m, i, out, name=name: counts.setdefault(name, []).append(
        (float(out.sum()), out.numel()))) for name, m in model.named_modules() if isinstance(m, BaseNeuron)]
    try:
        model.eval()(clip)
    finally:
        for h in hooks:
            h.remove()
    return {name: sum(s for s, _ in c) / sum(n for _, n in c) for name, c in counts.items()}


def overall_rate(model, clip: torch.Tensor) -> float:
    """Spikes over outputs of all neuron layers together on ``clip``."""
    counts: list = []
    hooks = [m.register_forward_hook(lambda m, i, out: counts.append((float(out.sum()), out.numel())))
             for m in model.modules() if isinstance(m, BaseNeuron)]
    try:
        with torch.no_grad():
            model.eval()(clip)
    finally:
        for h in hooks:
            h.remove()
    return sum(s for s, _ in counts) / sum(n for _, n in counts)


@torch.no_grad()
def _set_norms(model, beta: float, clip: torch.Tensor) -> None:
    norms = [m for m in model.modules() if isinstance(m, TimeBatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.bias.fill_(beta)
        m.momentum = 1.0  # the running statistics become this clip's
    model.train()(clip)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()


def calibrate(model, rate: float = 0.15, seed: int = 1, steps: int = 8) -> float:
    """Set ``model``'s BatchNorms (see the module docstring) so its neurons fire at ``rate`` in all on a
    pair of random clips of seed ``seed``; returns the rate reached (bisection over ``steps`` shifts)."""
    g = torch.Generator().manual_seed(seed)
    clip = torch.randn(2, model.in_chans, model.num_frames, *model.img_size, generator=g)  # 2: the head BN trains
    lo, hi = -1.0, 2.0
    for _ in range(steps):
        beta = (lo + hi) / 2
        _set_norms(model, beta, clip)
        if overall_rate(model, clip) < rate:
            lo = beta
        else:
            hi = beta
    _set_norms(model, (lo + hi) / 2, clip)
    return overall_rate(model, clip)
