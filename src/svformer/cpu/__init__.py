"""CPU accelerations of the plain spiking core, in one place, behind one switch.

The core (`svformer.snn`, `svformer.models`) is plain PyTorch that autograd differentiates: the path on
every device and under torch.compile. On the CPU, eager PyTorch spends most of a step outside the
convolutions and matrix products, in element-wise passes over memory; `accelerate(model, options)`
swaps in kernels that compute the same function with fewer passes and less memory:

====================  ==========================================================================
option                what it does
====================  ==========================================================================
``neurons``           fused neuron loops, block by block in cache, one autograd node per layer
                      (`neuron`, `chunked`): the same spikes as the plain loop
``compiled_neurons``  those loops in C for SVFormer's neurons (`compiled`, built on first use with the
                      system's C compiler): each large tensor read or written once; needs
                      ``neurons`` (without a compiler: the eager loops, with a warning)
``norm``              per-step BatchNorm in place, without the permute copies (`norm`)
``channels_last``     feature maps stored (T, B, H, W, C): PyTorch's fast CPU convolution layout
``compact_spikes``    layers that read spikes keep them for the backward as 1 byte instead of 4,
                      exactly (`compact`; on every device)
``recompute_norm``    a BatchNorm output, or a residual sum of them, that a neuron reads is
                      recomputed in that neuron's backward instead of kept (`recipes`; needs
                      ``neurons`` and ``norm``)
``pool``              large outputs recycled between steps instead of faulted in afresh (`pool`;
                      the lean allocator setting turns it off for the process)
``sparse_spikes``     without autograd (inference), layers that read spikes add up the weights of the
                      spikes that fired instead of multiplying every input (`sparse`, C built on first
                      use), when few enough fired; equal to the dense op up to float rounding
====================  ==========================================================================

Every CPU kernel checks where it runs: on other devices and under torch.compile it falls back to the
plain computation, so an accelerated model still runs anywhere. ``SVFormer(accelerate=...)`` applies
this at construction (True: the default options, which are the ones measured to pay on the CPUs here;
docs/performance.md has the A/B table). The process-wide C allocator setting is separate
(`allocator.tune_allocator`, the ``svformer --allocator`` option).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, Union

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Acceleration:
    """Which CPU accelerations a model uses (see the module docstring)."""

    neurons: bool = True
    compiled_neurons: bool = True
    norm: bool = True
    channels_last: bool = True
    compact_spikes: bool = True
    recompute_norm: bool = True
    pool: bool = True
    sparse_spikes: bool = True

    @classmethod
    def none(cls) -> "Acceleration":
        return cls(**{f.name: False for f in fields(cls)})

    @classmethod
    def resolve(cls, spec: Union[bool, "Acceleration", dict]) -> "Acceleration":
        """True: the defaults; False: none; a dict: the defaults with those options changed."""
        if isinstance(spec, Acceleration):
            return spec
        if isinstance(spec, dict):
            unknown = set(spec) - {f.name for f in fields(cls)}
            if unknown:
                raise ValueError(f"unknown acceleration option(s) {sorted(unknown)}; known: "
                                 f"{', '.join(f.name for f in fields(cls))}")
            return cls(**spec)
        if isinstance(spec, bool):
            return cls() if spec else cls.none()
        raise ValueError(f"accelerate must be True, False, a dict of options or an Acceleration, got {spec!r}")

    def allocator(self) -> Callable:
        """``alloc(like, dtype=None)`` for the large outputs of the accelerated kernels."""
        if self.pool:
            from . import pool

            return pool.empty_like
        return torch.empty_like


def accelerate(model: nn.Module, options: Union[bool, Acceleration, dict] = True) -> Acceleration:
    """Give ``model``'s neurons, per-step BatchNorms and spike-reading layers the kernels ``options``
    select, and the model its memory format. Returns the resolved options.

    Works on any module holding svformer neurons, BatchNorms and `models.layers.SpikeInput` layers; a
    model's own ``memory_format`` is set where it has one. Layers that read spikes keep them as 1 byte
    only when every neuron of the model is an svformer neuron (whose spikes are exactly 0 and 1).
    """
    from ..models.layers import SpikeInput
    from ..snn.dynamics import reference_multistep
    from ..snn.neuron import BaseNeuron, is_neuron
    from ..snn.norm import TimeBatchNorm, per_step_batch_norm
    from .compact import CompactKernel
    from .neuron import NeuronKernel
    from ..models.layers import Residual
    from .norm import PerStepNormKernel
    from .recipes import Outputs, ResidualKernel
    from .sparse import SparseKernel

    opts = Acceleration.resolve(options)
    alloc = opts.allocator()
    outputs = Outputs() if opts.recompute_norm and opts.norm and opts.neurons else None
    binary = all(isinstance(m, BaseNeuron) for m in model.modules() if is_neuron(m))
    compact = CompactKernel(alloc) if opts.compact_spikes and binary else None
    for m in model.modules():
        if isinstance(m, BaseNeuron):
            m.kernel = NeuronKernel(alloc, outputs, opts.compiled_neurons) if opts.neurons else reference_multistep
        elif isinstance(m, TimeBatchNorm):
            # A BatchNorm synchronised across processes keeps its plain kernel (which calls its batch_norm).
            fast = opts.norm and m.batch_norm is F.batch_norm
            m.kernel = PerStepNormKernel(alloc, outputs) if fast else per_step_batch_norm
        elif isinstance(m, SpikeInput) and m.spike_input:
            m.kernel = SparseKernel(compact, alloc) if opts.sparse_spikes and binary else compact
        elif isinstance(m, Residual):
            m.kernel = None if outputs is None else ResidualKernel(outputs)
    if hasattr(model, "memory_format"):
        model.memory_format = "channels_last" if opts.channels_last else "contiguous"
    return opts


__all__ = ["Acceleration", "accelerate"]
