"""Streaming inference: classify a live video frame by frame with constant memory.

SVFormer's only operations across time are the neurons' membrane potentials and the Conv3d head; every
other layer works on one time step at a time. `StreamingSVFormer` therefore feeds one frame per call
through ``forward_features(frame, t)`` with the neuron states kept between calls (step t's BatchNorm
statistics for frame t), and accumulates the Conv3d head's contribution of each frame (its kernel's
slice t). After T frames the logits equal the whole-clip forward's (tests/models/test_streaming.py).
Memory is the neuron states and one (B, C) accumulator, whatever the video's length.

    stream = StreamingSVFormer(model)          # eval mode, no autograd
    for frame in camera:                       # (B, C, H, W)
        logits = stream.step(frame)            # logits of the frames seen so far
        if stream.steps == model.num_frames:
            report(logits); stream.reset()     # next clip
"""
from __future__ import annotations

from typing import Optional

import torch

from ..snn import reset_states
from .svformer import SVFormer


def head_step(model: SVFormer, features: torch.Tensor, t, acc: Optional[torch.Tensor]):
    """The head on one time step: add step ``t``'s part to the accumulator ``acc`` (None at t = 0) and
    classify the steps 0..t. ``features``: (1, B, F, h, w) from ``forward_features(frame, t)``; ``t`` an
    int or an int64 tensor of one element (exported step graphs). Returns (logits (B, classes), acc
    (B, F, 1, 1))."""
    if model.head_type == "conv3d":
        spikes = model.head_lif(features)[0]  # (B, F, h, w)
        conv = model.head_conv
        index = torch.as_tensor(t, dtype=torch.long, device=spikes.device).reshape(1)
        kernel = conv.weight.index_select(2, index).squeeze(2)  # step t's slice of the Conv3d kernel
        # The kernel covers the whole map, so each output is one dot product per group: written as a
        # multiply and sum, which compilers fuse into one loop, rather than a convolution with a kernel
        # made anew every step (which convolution libraries repack on every call).
        B, G = spikes.shape[0], conv.groups
        per_group = spikes.reshape(B, G, 1, -1) * kernel.reshape(G, kernel.shape[0] // G, -1)
        part = per_group.sum(-1).reshape(B, -1, 1, 1)  # (B, F, 1, 1)
        acc = part if acc is None else acc + part
        pooled = model.head_norm((acc + conv.bias.view(1, -1, 1, 1)).unsqueeze(2)).flatten(1)
    else:
        part = features[0].mean(dim=(2, 3), keepdim=True)
        acc = part if acc is None else acc + part
        pooled = (acc / (torch.as_tensor(t, dtype=acc.dtype) + 1)).flatten(1)
    return model.head(pooled), acc


class StreamingSVFormer:
    def __init__(self, model: SVFormer):
        self.model = model.eval()
        self.reset()

    def reset(self) -> None:
        """Start a new clip: forget neuron states and the head's accumulator."""
        reset_states(self.model)
        self.steps = 0
        self._acc: Optional[torch.Tensor] = None

    @torch.no_grad()
    def step(self, frame: torch.Tensor) -> torch.Tensor:
        """Shape: (B, C, H, W) -> logits (B, num_classes) of the frames seen since the last reset."""
        model = self.model
        if frame.dim() != 4:
            raise ValueError(f"a frame is (B, C, H, W), got shape {tuple(frame.shape)}")
        limit = model.num_frames if model.fixed_steps else None
        if limit is not None and self.steps >= limit:
            raise ValueError(f"this model classifies clips of {limit} frames; call reset() to start the next clip")
        x = model.forward_features(frame.unsqueeze(0), t=self.steps)  # (1, B, F, h, w)
        logits, self._acc = head_step(model, x, self.steps, self._acc)
        self.steps += 1
        return logits
