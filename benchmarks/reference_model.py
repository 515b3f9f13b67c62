"""The authors' CPU setup, rebuilt from svformer's model through its factories, for benchmarks only.

Neurons: spikingjelly 0.0.0.0.14 ParametricLIFNode (torch backend: a Python loop of element-wise ops
per step). Norms: their `BatchNorm2d_eT` / `BatchNorm1d_eT`: permute (T, B, ...)
to (B, T, ...), copy into (B, T*C, ...), an ordinary BatchNorm over T*C channels, and back with another copy.
The state dict keys and layout (t-major T*C) equal svformer's, so the authors' weights load into both
and the two compute the same function (tests/models/test_benchmark_reference.py).
"""
from __future__ import annotations

from torch import nn

from svformer import create_model


class AuthorsBN2d(nn.BatchNorm2d):
    """`BatchNorm2d_eT`: (T, B, C, H, W) -> (B, T*C, H, W) copy -> BN over T*C -> copy back."""

    def __init__(self, channels: int, num_steps: int):
        super().__init__(channels * num_steps)

    def forward(self, x):
        T, B = x.shape[:2]
        y = super().forward(x.transpose(0, 1).contiguous().flatten(1, 2))
        return y.unflatten(1, (T, -1)).transpose(0, 1).contiguous()


class AuthorsBN1d(nn.BatchNorm1d):
    """`BatchNorm1d_eT` on tokens: (T, B, N, C) -> (B, T*C, N) copy -> BN over T*C -> copy back."""

    def __init__(self, channels: int, num_steps: int):
        super().__init__(channels * num_steps)

    def forward(self, x):
        T, B = x.shape[:2]
        y = super().forward(x.permute(1, 0, 3, 2).contiguous().flatten(1, 2))
        return y.unflatten(1, (T, -1)).permute(1, 0, 3, 2).contiguous()


def authors_parts(frames: int) -> dict:
    """``neuron`` and ``norm`` factories for `SVFormer` that rebuild the authors' setup."""
    from spikingjelly.activation_based import neuron, surrogate

    def make_neuron():
        return neuron.ParametricLIFNode(surrogate_function=surrogate.ATan(), detach_reset=True, step_mode="m")

    def make_norm(channels, channels_last):
        return (AuthorsBN1d if channels_last else AuthorsBN2d)(channels, frames)

    return {"neuron": make_neuron, "norm": make_norm}


def reference_model(frames: int, size: int, name: str = "svformer_paper", **kwargs) -> nn.Module:
    """The authors' setup: their neurons and BatchNorms in svformer's graph, none of svformer's CPU
    accelerations (contiguous maps, autograd's saved tensors as they are)."""
    return create_model(name, num_frames=frames, img_size=size, accelerate=False, **authors_parts(frames), **kwargs)
