"""Operation counting over real forward passes, for energy estimates.

Forward hooks on every conv, linear, attention product (`MatMul`), BatchNorm and neuron layer record,
per clip:

- ``dense``: multiply-accumulates from the actual input/output shapes (multi-step (T, B, ...) inputs
  included; a conv's count is output elements x C_in/groups x kernel volume), plus ``bias`` additions
  (one per output element when the layer has a bias);
- for each operand: whether it is a spike tensor and its firing rate. An operand is a spike tensor when
  it was produced by a neuron layer (directly or through a view such as a transpose or permute) and,
  when real values are available, holds only 0 and 1. The neuron's name is kept as the operand's
  ``source``, so rates from another run (e.g. the authors' logs) can be substituted later;
- ``coincident``: for a product of two spike tensors (K^T V), the exact number of products whose two
  factors are both 1, i.e. the accumulates an event-driven chip would perform;
- ``elements``: for BatchNorm and neurons, the number of elements they update.

Layers are found by type (conv/linear/MatMul/BatchNorm/neuron), never by name. Counts accumulate over
any number of batches and are reported per clip; firing rates are exact means over every element seen.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
from torch import nn

from ..models.layers import MatMul
from ..snn import TimeBatchNorm, is_neuron
from ..snn.recompute import recomputing

DENSE_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, MatMul)
NORM_TYPES = (nn.modules.batchnorm._BatchNorm, TimeBatchNorm)


@dataclass
class Operand:
    """One input of a dense op. ``rate`` is the mean value if it is a spike tensor, else 1."""

    source: Optional[str]
    spike: bool
    rate: float


@dataclass
class OpRecord:
    """Counts of one layer, per clip. ``kind`` is conv, linear, matmul, norm or neuron."""

    name: str
    kind: str
    dense: float = 0.0
    bias: float = 0.0
    elements: float = 0.0
    operands: List[Operand] = field(default_factory=list)
    coincident: Optional[float] = None

    @property
    def spike_input(self) -> bool:
        return any(op.spike for op in self.operands)


class _Accumulator:
    """Sums over batches; turned into per-clip OpRecords at the end."""

    def __init__(self, name: str, kind: str):
        self.name, self.kind = name, kind
        self.dense = self.bias = self.elements = 0
        self.coincident: Optional[float] = None
        self.operands: List[dict] = []

    def add_operand(self, i: int, source: Optional[str], spike: bool, total: float, count: int) -> None:
        if len(self.operands) <= i:
            self.operands.append(dict(source=source, spike=spike, total=0.0, count=0))
        op = self.operands[i]
        op["spike"] = op["spike"] and spike
        op["total"] += total
        op["count"] += count

    def record(self, clips: int) -> OpRecord:
        operands = [Operand(o["source"], o["spike"], (o["total"] / o["count"]) if o["spike"] and o["count"] else 1.0)
                    for o in self.operands]
        return OpRecord(self.name, self.kind, self.dense / clips, self.bias / clips, self.elements / clips, operands,
                        None if self.coincident is None else self.coincident / clips)


def _dense_macs(module: nn.Module, inputs, output: torch.Tensor) -> int:
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    if isinstance(module, MatMul):
        return output.numel() * inputs[0].shape[-1]
    per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
    return output.numel() * per_output


def _kind(module: nn.Module) -> str:
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, MatMul):
        return "matmul"
    return "conv"


class OperationCounter:
    """Context manager that counts the operations of every forward pass of ``model`` inside it.

        with OperationCounter(model) as counter:
            for clip, _ in loader:
                model(clip)
        records = counter.records()      # per clip, in execution order

    ``check_binary`` verifies that spike operands hold only 0/1 (skipped automatically on the meta device).
    """

    def __init__(self, model: nn.Module, check_binary: bool = True):
        self.model = model
        self.check_binary = check_binary
        self._acc: Dict[str, _Accumulator] = {}
        self._spike_sources: Dict[int, tuple] = {}
        self._clips = 0
        self._handles = []

    # Spike provenance: each neuron output's storage in the current forward -> (name, storage kept
    # alive). Views of the spikes share that storage (PyTorch keeps one Python object per storage).
    def _source_of(self, t: torch.Tensor) -> Optional[str]:
        storage = t.untyped_storage()
        hit = self._spike_sources.get(id(storage))
        return hit[0] if hit is not None and hit[1] is storage else None

    def _operand(self, acc: _Accumulator, i: int, t: torch.Tensor) -> None:
        source = self._source_of(t)
        spike = source is not None
        real = t.device.type != "meta"
        if spike and real and self.check_binary:
            spike = bool(((t == 0) | (t == 1)).all())
        total = float(t.detach().sum(dtype=torch.float64)) if spike and real else 0.0
        acc.add_operand(i, source, spike, total, t.numel())

    def _acc_for(self, name: str, kind: str) -> _Accumulator:
        if name not in self._acc:
            self._acc[name] = _Accumulator(name, kind)
        return self._acc[name]

    def _dense_hook(self, name: str):
        def hook(module, inputs, output):
            if recomputing():  # activation checkpointing's second forward: counted once already
                return
            acc = self._acc_for(name, _kind(module))
            acc.dense += _dense_macs(module, inputs, output)
            if getattr(module, "bias", None) is not None:
                acc.bias += output.numel()
            for i, t in enumerate(inputs[:2] if isinstance(module, MatMul) else inputs[:1]):
                self._operand(acc, i, t)
            if isinstance(module, MatMul) and all(o["spike"] for o in acc.operands) and output.device.type != "meta":
                # For spike x spike products, K^T V counts exactly the coinciding 1s: sum of the output.
                acc.coincident = (acc.coincident or 0.0) + float(output.detach().sum(dtype=torch.float64))
        return hook

    def _norm_hook(self, name: str):
        def hook(module, inputs, output):
            if recomputing():
                return
            self._acc_for(name, "norm").elements += output.numel()
        return hook

    def _neuron_hook(self, name: str):
        def hook(module, inputs, output):
            if recomputing():
                return
            self._acc_for(name, "neuron").elements += output.numel()
            storage = output.untyped_storage()
            self._spike_sources[id(storage)] = (name, storage)
        return hook

    def _model_pre_hook(self, module, args):
        self._spike_sources.clear()
        if args and isinstance(args[0], torch.Tensor):
            self._clips += args[0].shape[0]

    def __enter__(self) -> "OperationCounter":
        self._handles.append(self.model.register_forward_pre_hook(self._model_pre_hook))
        for name, module in self.model.named_modules():
            if isinstance(module, DENSE_TYPES):
                self._handles.append(module.register_forward_hook(self._dense_hook(name)))
            elif isinstance(module, NORM_TYPES):
                self._handles.append(module.register_forward_hook(self._norm_hook(name)))
            elif is_neuron(module):
                self._handles.append(module.register_forward_hook(self._neuron_hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._spike_sources.clear()

    def records(self) -> List[OpRecord]:
        """Per-clip counts of every layer that ran, in the order they first ran."""
        if not self._clips:
            raise ValueError("OperationCounter saw no forward pass of the model")
        return [acc.record(self._clips) for acc in self._acc.values()]


def trace_operations(model: nn.Module, input_shape, device: str | torch.device = "meta") -> List[OpRecord]:
    """Shapes and spike provenance of one forward pass of ``model`` on a zero input, without data.

    On the meta device nothing is computed (rates are unknown and left at 1 for spike operands: fill
    them in with `energy.with_rates`). The model is copied, so the original is untouched.
    """
    import copy

    device = torch.device(device)
    traced = copy.deepcopy(model).to(device).eval()
    with torch.no_grad(), OperationCounter(traced) as counter:
        traced(torch.zeros(tuple(input_shape), device=device))
    return counter.records()
