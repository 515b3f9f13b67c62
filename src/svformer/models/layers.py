"""SVFormer's building blocks, all in multi-step shape (T, B, ...).

Module and attribute names follow the authors' `Uniformer2d_psnn_try` (patch_embed*, blocks*, act1,
conv1, attn, norm2, mlp.fc1, ...), so most of their checkpoint keys load unchanged; see `official.py`.

Every residual branch starts with a spiking neuron and ends with a BatchNorm, so the residual stream
carries real values and every conv/linear directly after a neuron receives binary spikes
(docs/architecture.md). Neurons and norms come in through factories, so a variant (LIF
instead of PLIF, shared BN, a spikingjelly node for benchmarking) is an argument, not a copy.

Layers that read the spikes of the neuron right before them say so (``spike_input``; `SpikeInput`):
that is a fact of the wiring, which accelerations may use (saving those inputs as 1 byte).

Every block takes an optional ``t``: the input is then the single time step ``t`` (streaming), which
its BatchNorms need to pick that step's statistics (`TimeBatchNorm.forward_step`).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

NeuronFactory = Callable[[], nn.Module]
# norm(num_features, channels_last) -> module over (T, B, C, ...) maps or (T, B, N, C) tokens
NormFactory = Callable[[int, bool], nn.Module]


def _norm(norm: nn.Module, x: torch.Tensor, t: Optional[int]) -> torch.Tensor:
    """``norm(x)``, or for the single time step ``t`` ``norm(x, t)`` (norms that support streaming)."""
    return norm(x) if t is None else norm(x, t)


class SpikeInput:
    """A layer that may read spikes (only 0 and 1) from the neuron right before it: ``spike_input`` says
    whether this one does. ``kernel(layer, *inputs)``, which `svformer.cpu.accelerate` sets on the layers
    that read spikes, computes the layer's op relying on that (e.g. keeping its input for the backward as
    1 byte); None (the plain model) runs the layer's own op."""

    spike_input: bool = False
    kernel: Optional[Callable] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # before the layer's own forward in the MRO
        return super().forward(x) if self.kernel is None else self.kernel(self, x)


class SeqConv2d(SpikeInput, nn.Conv2d):
    """Conv2d applied to every time step at once. Shape: (T, B, C, H, W) -> (T, B, C', H', W')."""

    def __init__(self, *args, spike_input: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.spike_input = spike_input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B = x.shape[:2]
        return super().forward(x.flatten(0, 1)).unflatten(0, (T, B))  # SpikeInput's, then Conv2d's


class SpikeLinear(SpikeInput, nn.Linear):
    """nn.Linear over the spikes of the neuron before it (state-dict keys as nn.Linear's)."""

    spike_input = True


class SpikeConv3d(SpikeInput, nn.Conv3d):
    """nn.Conv3d over the spikes of the neuron before it (the Conv3d head)."""

    spike_input = True


class DropPath(nn.Module):
    """Stochastic depth on (T, B, ...): drops a residual branch per sample, the same in every time step."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop path probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((1, x.shape[1]) + (1,) * (x.dim() - 2)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Mlp(nn.Module):
    """neuron -> fc1 (C -> hidden) -> BN -> neuron -> fc2 (hidden -> C) -> BN.

    ``tokens=True``: Linear layers on (T, B, N, C) (SABlock); ``tokens=False``: 1x1 convs on
    (T, B, C, H, W) (the authors' CMlp in CBlock).
    """

    def __init__(self, dim: int, hidden: int, neuron: NeuronFactory, norm: NormFactory, tokens: bool):
        super().__init__()
        fc = (lambda i, o: SpikeLinear(i, o)) if tokens else (lambda i, o: SeqConv2d(i, o, 1, spike_input=True))
        self.act1 = neuron()
        self.fc1 = fc(dim, hidden)
        self.norm1 = norm(hidden, tokens)
        self.act2 = neuron()
        self.fc2 = fc(hidden, dim)
        self.norm2 = norm(dim, tokens)

    def forward(self, x: torch.Tensor, t: Optional[int] = None) -> torch.Tensor:
        # One expression per neuron, so that no local name keeps the hidden BatchNorm output alive while
        # fc2 runs: the neuron keeps what its backward needs, and the hidden maps are the largest.
        spikes = self.act2(_norm(self.norm1, self.fc1(self.act1(x)), t))
        return _norm(self.norm2, self.fc2(spikes), t)


class Residual(nn.Module):
    """``x + y``, a residual connection, as a module: `svformer.cpu.accelerate` gives it a kernel that
    notes how the sum was made, so the neuron reading it can recompute it instead of keeping it."""

    def __init__(self):
        super().__init__()
        self.kernel = None

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x + y if self.kernel is None else self.kernel(x, y)


class CBlock(nn.Module):
    """Local spiking conv block (stages 1-2). Shape: (T, B, C, H, W) -> same.

    x = x + BN(conv2(dwconv5x5(conv1(neuron(x)))))   -- no neuron between the three convs
    x = x + Mlp(x)
    """

    def __init__(self, dim: int, mlp_ratio: float, neuron: NeuronFactory, norm: NormFactory, drop_path: float = 0.0):
        super().__init__()
        self.act1 = neuron()
        self.conv1 = SeqConv2d(dim, dim, 1, spike_input=True)
        self.attn = SeqConv2d(dim, dim, 5, padding=2, groups=dim)
        self.conv2 = SeqConv2d(dim, dim, 1)
        self.norm2 = norm(dim, False)
        self.drop_path = DropPath(drop_path)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), neuron, norm, tokens=False)
        self.add1, self.add2 = Residual(), Residual()

    def forward(self, x: torch.Tensor, t: Optional[int] = None) -> torch.Tensor:
        return self.mlp_branch(self.conv_branch(x, t), t)

    def conv_branch(self, x: torch.Tensor, t: Optional[int] = None) -> torch.Tensor:
        """The first residual step (activation checkpointing recomputes the two steps one at a time)."""
        y = self.conv2(self.attn(self.conv1(self.act1(x))))
        return self.add1(x, _norm(self.norm2, self.drop_path(y), t))

    def mlp_branch(self, x: torch.Tensor, t: Optional[int] = None) -> torch.Tensor:
        return self.add2(x, self.drop_path(self.mlp(x, t)))


class MatMul(SpikeInput, nn.Module):
    """``a @ b`` as a module, so that analysis hooks see the attention products with their operands.
    ``spike_operands``: which of ``a`` and ``b`` are the spikes of a neuron."""

    def __init__(self, spike_operands: tuple = (False, False)):
        super().__init__()
        self.spike_operands = tuple(spike_operands)
        self.spike_input = any(self.spike_operands)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b if self.kernel is None else self.kernel(self, a, b)


class SpikingSelfAttention(nn.Module):
    """Spiking self-attention with linear cost in the number of tokens.

    Q, K and V are spike tensors from three neuron layers; the product is Q (K^T V) * d^-1/2 with no
    softmax (the counts K^T V are integers, so the result is exact in float32).
    Shape: (T, B, N, C) -> (T, B, N, C).
    """

    def __init__(self, dim: int, head_dim: int, neuron: NeuronFactory, norm: NormFactory):
        super().__init__()
        if dim % head_dim:
            raise ValueError(f"dim {dim} is not a multiple of head_dim {head_dim}")
        self.num_heads = dim // head_dim
        self.head_dim = head_dim
        self.scale = head_dim ** -0.5
        self.in_lif = neuron()
        self.qkv = SpikeLinear(dim, dim * 3)
        self.norm1 = norm(dim * 3, True)
        self.q_lif = neuron()
        self.k_lif = neuron()
        self.v_lif = neuron()
        self.kv_matmul = MatMul(spike_operands=(True, True))
        self.q_matmul = MatMul(spike_operands=(True, False))
        self.proj_lif = neuron()
        self.proj = SpikeLinear(dim, dim)
        self.norm2 = norm(dim, True)

    def forward(self, x: torch.Tensor, t: Optional[int] = None) -> torch.Tensor:
        T, B, N, C = x.shape
        qkv = _norm(self.norm1, self.qkv(self.in_lif(x)), t)  # (T, B, N, 3C), channels [q | k | v], each head-major
        qkv = qkv.reshape(T, B, N, 3, self.num_heads, self.head_dim).permute(3, 0, 1, 4, 2, 5)
        # unbind, not three indexings: the backward stacks the three gradients into one tensor instead of
        # making three full-size zero tensors and adding them.
        q, k, v = qkv.unbind(0)
        q = self.q_lif(q)  # (T, B, h, N, d) spikes
        k = self.k_lif(k)
        v = self.v_lif(v)
        context = self.kv_matmul(k.transpose(-2, -1), v)  # (T, B, h, d, d), integer counts
        out = self.q_matmul(q, context) * self.scale  # (T, B, h, N, d)
        out = out.transpose(2, 3).reshape(T, B, N, C)
        return _norm(self.norm2, self.proj(self.proj_lif(out)), t)


class SABlock(nn.Module):
    """Global spiking self-attention block (stages 3-4). Shape: (T, B, C, H, W) -> same."""

    def __init__(self, dim: int, head_dim: int, mlp_ratio: float, neuron: NeuronFactory, norm: NormFactory,
                 drop_path: float = 0.0):
        super().__init__()
        self.attn = SpikingSelfAttention(dim, head_dim, neuron, norm)
        self.drop_path = DropPath(drop_path)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), neuron, norm, tokens=True)
        self.add1, self.add2 = Residual(), Residual()

    def forward(self, x: torch.Tensor, t: Optional[int] = None) -> torch.Tensor:
        T, B, C, H, W = x.shape
        x = x.flatten(3).transpose(-1, -2)  # (T, B, N, C)
        x = self.add1(x, self.drop_path(self.attn(x, t)))
        x = self.add2(x, self.drop_path(self.mlp(x, t)))
        return x.transpose(-1, -2).reshape(T, B, C, H, W)


class PatchEmbed(nn.Module):
    """[neuron ->] strided conv -> BN. The first stage has no neuron: raw pixels (or event counts) feed
    the conv directly ("direct encoding"). Shape: (T, B, C, H, W) -> (T, B, C', H/s, W/s)."""

    def __init__(self, in_chans: int, dim: int, kernel: int, stride: int, padding: int, norm: NormFactory,
                 neuron: NeuronFactory | None):
        super().__init__()
        if neuron is not None:
            self.in_lif = neuron()
        self.proj = SeqConv2d(in_chans, dim, kernel, stride=stride, padding=padding, spike_input=neuron is not None)
        self.norm = norm(dim, False)

    def forward(self, x: torch.Tensor, t: Optional[int] = None) -> torch.Tensor:
        if hasattr(self, "in_lif"):
            x = self.in_lif(x)
        return _norm(self.norm, self.proj(x), t)


class LocalPath(nn.Module):
    """The local pathway from the stage-3 embedding to stage-4 resolution:
    neuron -> depthwise 3x3 stride 2 -> pointwise 1x1 -> BN. Shape: (T, B, C3, H, W) -> (T, B, C4, H/2, W/2)."""

    def __init__(self, in_dim: int, out_dim: int, neuron: NeuronFactory, norm: NormFactory):
        super().__init__()
        self.lif = neuron()
        self.dwconv = SeqConv2d(in_dim, in_dim, 3, stride=2, padding=1, groups=in_dim, spike_input=True)
        self.pwconv = SeqConv2d(in_dim, out_dim, 1)
        self.norm = norm(out_dim, False)

    def forward(self, x: torch.Tensor, t: Optional[int] = None) -> torch.Tensor:
        return _norm(self.norm, self.pwconv(self.dwconv(self.lif(x))), t)
