"""The benchmark model's spiking activity: random weights whose neurons fire as a trained model's do.

Dense layers cost the same whatever their inputs hold, but svformer's sparse inference (`svformer.cpu.sparse`)
does work in proportion to the spikes, so an inference benchmark is honest only at a realistic firing rate.
With random weights and fresh BatchNorms, the paper model's neurons barely fire (well under 1 % past the
first stage), which would flatter the sparse kernels. `calibrate` gives every neuron layer a target rate:
its BatchNorms' running statistics become a random clip's (as a trained model's hold its data's), and for
each neuron in call order, the shift (beta) of the last BatchNorm before it - the one that normalises its
input, or the last one added into the residual stream it reads - is set by bisection so that the neuron
fires at that rate. Neurons whose last BatchNorm is already another's (the attention's K and V after Q,
the attention output) keep the rate they get. `firing_rates` reports each layer's rate on another clip.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch

from svformer.snn.neuron import BaseNeuron
from svformer.snn.norm import TimeBatchNorm


class _Stop(Exception):
    """Raised by a hook to end a forward pass once the neuron being calibrated has fired."""


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


def _knobs(model, clip: torch.Tensor) -> List[Tuple[str, BaseNeuron, Optional[TimeBatchNorm]]]:
    """(name, neuron, its knob) in call order: the last BatchNorm called before the neuron, unless an
    earlier neuron has it already (then None)."""
    order: list = []
    hooks = [m.register_forward_hook(lambda m, i, o, name=name: order.append((name, m)))
             for name, m in model.named_modules() if isinstance(m, (BaseNeuron, TimeBatchNorm))]
    try:
        with torch.no_grad():
            model.eval()(clip)
    finally:
        for h in hooks:
            h.remove()
    knobs, last, taken, seen = [], None, set(), set()
    for name, m in order:
        if isinstance(m, TimeBatchNorm):
            last = m
        elif name not in seen:
            seen.add(name)
            free = last is not None and id(last) not in taken
            knobs.append((name, m, last if free else None))
            if free:
                taken.add(id(last))
    return knobs


@torch.no_grad()
def _rate_of(model, neuron: BaseNeuron, clip: torch.Tensor) -> float:
    """``neuron``'s rate on ``clip``, the BatchNorms normalising with the clip's statistics (the model's
    other modules in evaluation); the pass stops after the neuron."""
    seen: list = []

    def stop(m, i, out):
        seen.append(float(out.float().mean()))
        raise _Stop

    hook = neuron.register_forward_hook(stop)
    try:
        model(clip)
    except _Stop:
        pass
    finally:
        hook.remove()
    return seen[0]


@torch.no_grad()
def calibrate(model, rate: float = 0.15, seed: int = 1, steps: int = 7,
              span: Tuple[float, float] = (-2.0, 4.0)) -> dict:
    """Set ``model``'s BatchNorms (see the module docstring) so each neuron fires at ``rate`` on a random
    clip of seed ``seed`` (bisection over ``steps`` shifts in ``span``). Returns each calibrated neuron's
    rate reached on that clip. Leaves the model in evaluation mode."""
    g = torch.Generator().manual_seed(seed)
    clip = torch.randn(1, model.in_chans, model.num_frames, *model.img_size, generator=g)
    norms = [m for m in model.modules() if isinstance(m, TimeBatchNorm)]
    momenta = [m.momentum for m in norms]
    knobs = _knobs(model, clip)
    model.eval()
    for m in norms:
        m.train()  # batch statistics: the clip's
    reached = {}
    try:
        for name, neuron, knob in knobs:
            if knob is None:
                continue
            lo, hi = span
            for _ in range(steps):
                knob.bias.fill_((lo + hi) / 2)
                if _rate_of(model, neuron, clip) < rate:
                    lo = (lo + hi) / 2
                else:
                    hi = (lo + hi) / 2
            knob.bias.fill_((lo + hi) / 2)
            reached[name] = _rate_of(model, neuron, clip)
        for m in norms:
            m.momentum = 1.0  # the running statistics become the clip's
        model(clip)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.eval()
    return reached
