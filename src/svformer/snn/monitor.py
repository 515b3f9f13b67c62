"""Firing-rate monitor: the mean spike output of every neuron layer, overall and per time step.

Attach it as a context manager around any number of forward passes; it accumulates sums and counts in
float64 so rates over a whole dataset are exact means over every element seen. With no monitor
attached there are no hooks and no overhead.

    with FiringRateMonitor(model) as mon:
        for clip, _ in loader:
            model(clip)
    mon.rates()           # {layer name: rate in [0, 1]}
    mon.rates_per_step()  # {layer name: tensor (T,)}
"""
from __future__ import annotations

from typing import Dict

import torch
from torch import nn

from .neuron import is_neuron
from .recompute import recomputing


class FiringRateMonitor:
    def __init__(self, model: nn.Module):
        self.model = model
        self._handles = []
        self._sum: Dict[str, torch.Tensor] = {}
        self._count: Dict[str, int] = {}
        self._step_sum: Dict[str, torch.Tensor] = {}
        self._step_count: Dict[str, int] = {}

    def _hook(self, name: str):
        def record(_module, _inputs, spikes: torch.Tensor):
            if recomputing():  # activation checkpointing's second forward: counted once already
                return
            s = spikes.detach()
            per_step = s.reshape(s.shape[0], -1).sum(1, dtype=torch.float64).cpu()
            if name in self._step_sum and self._step_sum[name].shape != per_step.shape:
                raise ValueError(f"FiringRateMonitor: layer {name} saw T={per_step.numel()} after "
                                 f"T={self._step_sum[name].numel()}; use one monitor per sequence length")
            self._sum[name] = self._sum.get(name, 0.0) + per_step.sum()
            self._count[name] = self._count.get(name, 0) + s.numel()
            self._step_sum[name] = self._step_sum.get(name, 0.0) + per_step
            self._step_count[name] = self._step_count.get(name, 0) + s[0].numel()
        return record

    def __enter__(self) -> "FiringRateMonitor":
        for name, module in self.model.named_modules():
            if is_neuron(module):
                self._handles.append(module.register_forward_hook(self._hook(name)))
        if not self._handles:
            raise ValueError("FiringRateMonitor: the model has no neuron layers")
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def rates(self) -> Dict[str, float]:
        """Mean output of each neuron layer over every element seen, in module order."""
        return {name: float(self._sum[name] / self._count[name]) for name in self._sum}

    def rates_per_step(self) -> Dict[str, torch.Tensor]:
        """Mean output per time step, shape (T,), for each layer."""
        return {name: (self._step_sum[name] / self._step_count[name]).float() for name in self._step_sum}
