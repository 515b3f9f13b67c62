"""Layers whose input is spikes keep it for the backward as 1 byte per element instead of 4.

Every convolution, linear layer and attention product right after a spiking neuron needs its input
again for the weight gradient, and in float32 those inputs are about a third of what a training step
keeps. The model declares these layers (``spike_input``, `models.layers.SpikeInput`); because their input
holds only 0 and 1, the kernels here save it as uint8 in their own autograd Functions and turn it back
into floats when the backward reaches them. The gradients are computed by the same operations autograd
uses for the plain layer (`torch.ops.aten.convolution_backward`, the matrix products of the linear and
batched-matmul backward), so they are bit-identical. Nothing here depends on the device, and under
activation checkpointing the 1-byte copies are what a recomputed block keeps.

A kernel steps aside (the plain op) when no graph is recorded and under torch.compile, which has its own
memory planning for the backward.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn


def _records(*tensors: Optional[torch.Tensor]) -> bool:
    """Whether autograd will record this op: grad enabled, not compiling, some operand requiring grad."""
    return (torch.is_grad_enabled() and not torch.compiler.is_compiling()
            and any(t is not None and t.requires_grad for t in tensors))


def _pack(x: torch.Tensor, alloc: Callable) -> torch.Tensor:
    """Spikes as uint8, with ``x``'s strides (so that the restored tensor has the layout autograd saw)."""
    return alloc(x, dtype=torch.uint8).copy_(x)


def _unpack(packed: torch.Tensor, dtype: torch.dtype, alloc: Callable) -> torch.Tensor:
    return alloc(packed, dtype=dtype).copy_(packed)


class _SpikeLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, alloc: Callable):
        y = F.linear(x, weight, bias)
        ctx.save_for_backward(_pack(x, alloc), weight)  # after the output, in the order autograd saves
        ctx.dtype, ctx.alloc = x.dtype, alloc
        return y

    @staticmethod
    def backward(ctx, grad):
        packed, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_2d = grad.reshape(-1, grad.shape[-1])
        grad_w = None
        if need_w:  # the restored input lives only for this product, not beside grad_x (`_SpikeConv`)
            x = _unpack(packed, ctx.dtype, ctx.alloc)
            grad_w = grad_2d.t().mm(x.reshape(-1, x.shape[-1]))
            del x
        grad_b = grad_2d.sum(0) if need_b else None
        grad_x = grad.matmul(weight) if need_x else None
        return grad_x, grad_w, grad_b, None


def _conv(x, weight, bias, stride, padding, dilation, groups) -> torch.Tensor:
    return (F.conv2d if x.dim() == 4 else F.conv3d)(x, weight, bias, stride, padding, dilation, groups)


class _SpikeConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups, alloc: Callable):
        y = _conv(x, weight, bias, stride, padding, dilation, groups)
        ctx.save_for_backward(_pack(x, alloc), weight)
        ctx.args = (stride, padding, dilation, groups)
        ctx.bias_sizes = None if bias is None else list(bias.shape)
        ctx.dtype, ctx.alloc = x.dtype, alloc
        return y

    @staticmethod
    def backward(ctx, grad):
        packed, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.args
        need_x, need_w, need_b = ctx.needs_input_grad[:3]

        def backward(x, mask):
            return torch.ops.aten.convolution_backward(
                grad, x, weight, ctx.bias_sizes, list(stride), list(padding), list(dilation), False,
                [0] * len(stride), groups, mask)

        # Two calls instead of one, so that the restored input and grad_x, each as large as the input in
        # floats, are never alive together (the largest pair of a training step's backward). The input
        # gradient reads only the input's shape and layout: an untouched tensor of them occupies no memory.
        _, grad_w, grad_b = backward(_unpack(packed, ctx.dtype, ctx.alloc), [False, need_w, need_b]) \
            if need_w or need_b else (None, None, None)
        grad_x = backward(torch.empty_strided(packed.shape, packed.stride(), dtype=ctx.dtype, device=packed.device),
                          [True, False, False])[0] if need_x else None
        return grad_x, grad_w, grad_b, None, None, None, None, None


class _SpikeMatMul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, a_spikes: bool, b_spikes: bool, alloc: Callable):
        y = a @ b
        ctx.save_for_backward(_pack(a, alloc) if a_spikes else a, _pack(b, alloc) if b_spikes else b)
        ctx.dtype, ctx.alloc, ctx.spikes = a.dtype, alloc, (a_spikes, b_spikes)
        return y

    @staticmethod
    def backward(ctx, grad):
        (a, b), spikes = ctx.saved_tensors, ctx.spikes
        grad_a = grad_b = None
        # One restored operand at a time (`_SpikeConv`): each product reads only the other one.
        if ctx.needs_input_grad[0]:
            grad_a = grad @ (_unpack(b, ctx.dtype, ctx.alloc) if spikes[1] else b).transpose(-2, -1)
        if ctx.needs_input_grad[1]:
            grad_b = (_unpack(a, ctx.dtype, ctx.alloc) if spikes[0] else a).transpose(-2, -1) @ grad
        return grad_a, grad_b, None, None, None


class CompactKernel:
    """The kernel of a `SpikeInput` layer (a linear, a convolution or a `MatMul`): its plain op, with the
    spike operands saved as uint8 when autograd records it. ``alloc(like, dtype=)`` makes the packed
    and restored tensors."""

    def __init__(self, alloc: Callable = torch.empty_like):
        self.alloc = alloc

    def __call__(self, layer: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
        device = inputs[0].device.type
        if not (torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device)):
            return self._run(layer, inputs, None)
        # Autocast: cast the operands as autocast would for this op (outside the Function, so that
        # autograd differentiates the casts as it does under autocast), then run without it.
        with torch.autocast(device, enabled=False):
            return self._run(layer, inputs, torch.get_autocast_dtype(device))

    def _run(self, layer: nn.Module, inputs: tuple, dtype: Optional[torch.dtype]) -> torch.Tensor:
        def cast(t):
            return t if dtype is None or t is None or not t.is_floating_point() else t.to(dtype)

        if isinstance(layer, nn.Linear):
            x, weight, bias = cast(inputs[0]), cast(layer.weight), cast(layer.bias)
            if not _records(x, weight, bias):
                return F.linear(x, weight, bias)
            return _SpikeLinear.apply(x, weight, bias, self.alloc)
        if isinstance(layer, (nn.Conv2d, nn.Conv3d)):
            if layer.padding_mode != "zeros" or isinstance(layer.padding, str):
                raise ValueError(f"{type(layer).__name__}: compact spike inputs need numeric zero padding")
            x, weight, bias = cast(inputs[0]), cast(layer.weight), cast(layer.bias)
            args = (layer.stride, layer.padding, layer.dilation, layer.groups)
            if not _records(x, weight, bias):
                return _conv(x, weight, bias, *args)
            return _SpikeConv.apply(x, weight, bias, *args, self.alloc)
        a, b = (cast(t) for t in inputs)
        if not _records(a, b):
            return a @ b
        return _SpikeMatMul.apply(a, b, *layer.spike_operands, self.alloc)
