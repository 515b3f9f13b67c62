"""The inference graph of a trained SVFormer: what ONNX export traces.

`inference_model(model)` returns a copy of a model for evaluation only, in ops every runtime has:

- neurons fire by a plain comparison ``H >= v_threshold`` and reset with a select (no autograd Function,
  no surrogate: there is no backward), `inference_multistep`;
- every BatchNorm is folded into constants. A shared-over-time BN is folded into the weights and bias of
  the convolution or linear layer in front of it; a per-time-step BN cannot be (the layer in front runs
  all time steps with one set of weights), so it becomes one multiply-add with per-(t, c) constants,
  `FoldedNorm`;
- the CPU accelerations are off (they are eager-mode kernels; the exported runtime has its own).

Two graphs run on it: `ClipGraph`, the whole-clip classifier (time loop unrolled), and `StepGraph`, one
frame per call with the neuron states, the step index and the head's accumulator as explicit inputs and
outputs, so a runtime carries them across frames with constant memory.
"""
from __future__ import annotations

import copy
from typing import List, Optional, Tuple

import torch
from torch import nn

from ..models.layers import CBlock, LocalPath, Mlp, PatchEmbed, SpikingSelfAttention
from ..models.streaming import head_step
from ..models.svformer import SVFormer
from ..snn import reset_states
from ..snn.dynamics import Dynamics, charge, reset_values
from ..snn.neuron import BaseNeuron
from ..snn.norm import TimeBatchNorm


def inference_multistep(dyn: Dynamics, surrogate, x_seq: torch.Tensor, v0: torch.Tensor, k: Optional[torch.Tensor],
                        store_v_seq: bool = False, charges: Optional[list] = None):
    """The neuron loop for inference, no autograd: the same spikes and potentials as `reference_multistep`.

    heaviside(H - v_th) is H >= v_th for floats. The reset is written in multiply-adds that give the
    reference's values exactly (H - H*S is H or 0, H - S*v_th is the soft reset itself) because runtimes
    run those far faster than a select (ONNX Where). ``charges``: a list that receives each step's H.
    """
    v, spikes = v0, []
    steps = x_seq.shape[0]
    for t in range(steps):
        # One step (streaming) as a squeeze: runtimes copy for an index (ONNX Gather), not for a squeeze.
        h = charge(dyn, v, x_seq.squeeze(0) if steps == 1 else x_seq[t], k)
        if charges is not None:
            charges.append(h)
        spike = (h >= dyn.v_threshold).to(h.dtype)
        if dyn.v_reset is None:
            v = h - spike * dyn.v_threshold
        elif dyn.v_reset == 0.0:
            v = h - h * spike
        else:
            v = reset_values(dyn, h)
        spikes.append(spike)
    return torch.stack(spikes), v, None


class RecordingKernel:
    """`inference_multistep` that also stores each call's spikes in ``log[name]`` (per-layer comparisons),
    and with ``margins`` each neuron's H - v_th in ``margins[name]``."""

    def __init__(self, log: dict, name: str, margins: Optional[dict] = None):
        self.log, self.name, self.margins = log, name, margins

    def __call__(self, dyn, surrogate, x_seq, v0, k, store_v_seq=False):
        charges = [] if self.margins is not None else None
        out = inference_multistep(dyn, surrogate, x_seq, v0, k, charges=charges)
        self.log[self.name] = out[0]
        if charges is not None:
            self.margins[self.name] = torch.stack(charges) - dyn.v_threshold
        return out


def _norm_constants(bn: nn.Module) -> Tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift), each (steps, C), with BN(x) = x * scale + shift in eval mode (a `TimeBatchNorm` or
    a torch BatchNorm)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    steps = bn.num_steps if getattr(bn, "per_step", False) else 1
    return scale.detach().view(steps, -1), shift.detach().view(steps, -1)


class FoldedNorm(nn.Module):
    """An eval-mode per-time-step `TimeBatchNorm` as ``x * scale[t] + shift[t]``.

    Shape: as `TimeBatchNorm`. ``t`` (an int or an int64 tensor of one element) selects one step's
    constants for a single-step input (streaming), unless ``selected`` holds them already: the step
    graph selects every norm's constants at once (`StepConstants`)."""

    def __init__(self, bn: TimeBatchNorm):
        super().__init__()
        scale, shift = _norm_constants(bn)
        shape = (scale.shape[0], 1, 1, -1) if bn.channels_last else (scale.shape[0], 1, -1, 1, 1)
        self.register_buffer("scale", scale.reshape(shape).clone())
        self.register_buffer("shift", shift.reshape(shape).clone())
        self.channels_last = bn.channels_last
        self.selected: Optional[Tuple[torch.Tensor, torch.Tensor]] = None

    def forward(self, x: torch.Tensor, t=None) -> torch.Tensor:
        scale, shift = self.scale, self.shift
        if self.selected is not None:
            scale, shift = self.selected
        elif t is not None and scale.shape[0] > 1:
            index = torch.as_tensor(t, dtype=torch.long).reshape(1)
            scale, shift = scale.index_select(0, index), shift.index_select(0, index)
        if not self.channels_last:  # maps (T, B, C, H, W); the constants broadcast over H and W
            scale, shift = scale.reshape(scale.shape[:3] + (1,) * (x.dim() - 3)), \
                shift.reshape(shift.shape[:3] + (1,) * (x.dim() - 3))
        return x * scale + shift


@torch.no_grad()
def _fold_into(layer: nn.Module, bn: nn.Module) -> None:
    """Fold a shared-over-time eval BN into the conv/linear ``layer`` in front of it."""
    scale, shift = (c[0] for c in _norm_constants(bn))
    weight = layer.weight
    weight.mul_(scale.view(-1, *([1] * (weight.dim() - 1))))
    if layer.bias is None:
        layer.bias = nn.Parameter(torch.zeros_like(scale))
    layer.bias.mul_(scale).add_(shift)


# (container type, layer attribute, norm attribute) pairs where a norm directly follows a conv/linear.
_PAIRS = [
    (PatchEmbed, "proj", "norm"), (LocalPath, "pwconv", "norm"), (CBlock, "conv2", "norm2"),
    (Mlp, "fc1", "norm1"), (Mlp, "fc2", "norm2"), (SpikingSelfAttention, "qkv", "norm1"),
    (SpikingSelfAttention, "proj", "norm2"),
]


def inference_model(model: SVFormer, record: Optional[dict] = None, margins: Optional[dict] = None,
                    dtype: torch.dtype = torch.float32) -> SVFormer:
    """An evaluation-only copy of ``model`` in plain ops with its BatchNorms folded (see the module
    docstring), its parameters and buffers in ``dtype``. ``record``: a dict that collects each neuron
    layer's spikes by layer name, in call order; ``margins`` (with ``record``) each layer's H - v_th."""
    if not isinstance(model, SVFormer):
        raise TypeError(f"export takes an svformer SVFormer model, got {type(model).__name__}")
    from ..cpu import accelerate

    # The neurons' states from the model's last forward (tensors of autograd's graph after a training
    # step) are transient and cannot be deep-copied: forget them first.
    reset_states(model)
    model = copy.deepcopy(model).eval().to(dtype)
    accelerate(model, False)
    for name, m in model.named_modules():
        if isinstance(m, BaseNeuron):
            m.kernel = inference_multistep if record is None else RecordingKernel(record, name, margins)
            m.reset()
        elif not isinstance(m, (SVFormer, nn.BatchNorm3d, TimeBatchNorm)) and hasattr(m, "running_mean"):
            raise TypeError(f"cannot export a model with a {type(m).__name__}: only svformer's norms fold")
    for container, layer_name, norm_name in _PAIRS:
        for m in model.modules():
            if not isinstance(m, container):
                continue
            bn = getattr(m, norm_name)
            if not isinstance(bn, TimeBatchNorm):
                raise TypeError(f"cannot export a model whose norm factory builds {type(bn).__name__}")
            if bn.per_step:
                setattr(m, norm_name, FoldedNorm(bn))
            else:
                _fold_into(getattr(m, layer_name), bn)
                setattr(m, norm_name, _Identity())
    if model.head_type == "conv3d":
        _fold_into(model.head_conv, model.head_norm)
        model.head_norm = nn.Identity()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class _Identity(nn.Module):
    """A folded-away norm (takes the optional step index like the others)."""

    def forward(self, x: torch.Tensor, t=None) -> torch.Tensor:
        return x


def neurons(model: nn.Module) -> List[BaseNeuron]:
    """The model's neuron layers in the order the step graph carries their states."""
    return [m for m in model.modules() if isinstance(m, BaseNeuron)]


class ClipGraph(nn.Module):
    """The whole-clip classifier. Shape: (B, C, T, H, W) normalised clips -> (B, num_classes) logits
    (then each neuron layer's spikes, in call order, when the model was prepared with ``record``)."""

    def __init__(self, model: SVFormer, record: Optional[dict] = None):
        super().__init__()
        self.model = model
        self.record = record

    def forward(self, clip: torch.Tensor):
        if self.record is not None:
            self.record.clear()
        logits = self.model(clip)
        return logits if self.record is None else (logits, *self.record.values())


class StepConstants(nn.Module):
    """Every per-step norm's constants in two tables (maps, tokens), selected for a step with one Gather
    and split with one Split each, instead of two Gathers per norm: per-node costs dominate such small
    tensors in a runtime. Each split part already has the shape its norm broadcasts with."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.norms = [m for m in model.modules() if isinstance(m, FoldedNorm) and m.scale.shape[0] > 1]
        self.groups = []
        for tokens in (False, True):
            members = [m for m in self.norms if m.channels_last == tokens]
            if not members:
                continue
            axis = 3 if tokens else 2  # the channel axis of (T, 1, 1, C) and (T, 1, C, 1, 1)
            parts = [c for m in members for c in (m.scale, m.shift)]
            self.register_buffer(f"table{len(self.groups)}", torch.cat(parts, dim=axis))
            self.groups.append((members, axis, [p.shape[axis] for p in parts]))

    def select(self, step: torch.Tensor) -> None:
        """Give every norm step ``step``'s constants (`FoldedNorm.selected`)."""
        for i, (members, axis, sizes) in enumerate(self.groups):
            parts = torch.split(getattr(self, f"table{i}").index_select(0, step), sizes, dim=axis)
            for j, m in enumerate(members):
                m.selected = (parts[2 * j], parts[2 * j + 1])

    def clear(self) -> None:
        for m in self.norms:
            m.selected = None


class StepGraph(nn.Module):
    """One frame of a stream.

    Inputs: ``frame`` (B, C, H, W) normalised, ``step`` int64 (1,) the frame's time step t in [0, T),
    ``acc`` (B, F, 1, 1) the head's accumulator, then one membrane potential per neuron layer.
    Outputs: logits (B, num_classes) of the frames 0..t, the new accumulator, the new potentials.
    Start a clip with step 0, zero accumulator and every potential at its reset value.
    """

    def __init__(self, model: SVFormer):
        super().__init__()
        self.model = model
        self.layers = neurons(model)
        self.constants = StepConstants(model)

    def forward(self, frame: torch.Tensor, step: torch.Tensor, acc: torch.Tensor, *states: torch.Tensor):
        for layer, v in zip(self.layers, states):
            layer.v = v
        self.constants.select(step)
        try:
            features = self.model.forward_features(frame.unsqueeze(0), t=step)
            logits, acc = head_step(self.model, features, step, acc)
            return (logits, acc, *(layer.v for layer in self.layers))
        finally:
            for layer in self.layers:
                layer.reset()
            self.constants.clear()
