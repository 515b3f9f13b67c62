"""Streaming in PyTorch with the step graph compiled: the fastest way to run a frame on a CPU here.

`CompiledStream(model)` runs the same one-frame graph as the exported step model (`graph.StepGraph`:
BatchNorms folded, spikes by comparison, states as explicit inputs and outputs) through
``torch.compile`` with TorchInductor and frozen weights. Inductor fuses each neuron's and BatchNorm's
element-wise operations into one loop and runs the convolutions with weights packed once, where eager
PyTorch makes one pass per operation and repacks the weights on every call; ONNX Runtime runs the
element-wise operations one at a time as well. The layers that read spikes are one op each,
``svformer::spike_product`` (`cpu.sparse`): at run time it adds up the weights of the inputs that fired
when few enough did and runs the dense product otherwise (``sparse=False``: inductor's dense products only).

    stream = CompiledStream(model)       # any training state; compiles on the first frame
    for frame in camera:                 # (B, C, H, W) normalised
        logits = stream.step(frame)      # logits of the frames seen since the last reset
        if stream.steps == model.num_frames:
            report(logits); stream.reset()

The first frame of each batch size compiles (a C++ compiler is needed; tens of seconds on a small
CPU). The logits follow the whole-clip forward to float rounding (fused loops and packed convolutions
add in another order; tests/export/test_compiled_stream.py).
"""
from __future__ import annotations

from typing import List, NamedTuple, Optional, Tuple

import torch
import torch._inductor.config as inductor_config

from ..cpu.sparse import GraphKernel, SparseKernel, covers
from ..models.layers import SABlock, SpikeInput
from ..models.svformer import SVFormer
from .graph import StepGraph, inference_model
from .onnx import state_shapes
from .runtime import check_frame


class _State(NamedTuple):
    """One neuron state the step graph carries: its shape without the batch, its reset value and layout."""

    shape: Tuple[int, ...]
    reset: float
    layout: torch.memory_format


def _state_templates(graph: StepGraph) -> List[_State]:
    """The neuron states in the order ``graph`` carries them (its ``layers``). Feature maps (every neuron outside the
    attention blocks: patch embeddings, convolutional blocks, local path, head) are channels-last, the
    layout of the convolutions' outputs that the fused loops add them to (a loop over two layouts reads
    one of them across the grain); the compiled graph returns them in that layout, so it holds from
    frame to frame. An attention block's tokens keep the default layout."""
    in_tokens = {id(m) for block in graph.model.modules() if isinstance(block, SABlock) for m in block.modules()}
    shapes = state_shapes(graph.model, batch=1)
    return [_State(tuple(shape[1:]), layer.dynamics.reset_value,
                   torch.contiguous_format if id(layer) in in_tokens else torch.channels_last)
            for layer, shape in zip(graph.layers, shapes)]


class CompiledStream:
    """Frame-by-frame classification with the compiled step graph; the states live here, as tensors.

    ``step(frame)``: (B, C, H, W) normalised frame -> (B, classes) logits of the frames since `reset`;
    ``steps`` counts them. The same interface as `models.streaming.StreamingSVFormer`. ``sparse``: the
    layers that read spikes as sparse products where few inputs fired (module docstring); None: where the
    model's own inference does (its ``sparse_spikes`` acceleration, on by default)."""

    def __init__(self, model: SVFormer, sparse: Optional[bool] = None):
        if not model.fixed_steps:
            raise ValueError("streaming needs a fixed T (per-step BN or the Conv3d head); this model has neither")
        if sparse is None:  # as the model's own inference: its ``sparse_spikes`` acceleration
            sparse = any(isinstance(m.kernel, SparseKernel) for m in model.modules() if isinstance(m, SpikeInput))
        graph_model = inference_model(model)
        if sparse:
            for m in graph_model.modules():
                if isinstance(m, SpikeInput) and m.spike_input and covers(m):
                    m.kernel = GraphKernel()
        self.num_frames, self.in_chans, self.img_size = model.num_frames, model.in_chans, model.img_size
        self._graph = StepGraph(graph_model).eval()
        self._compiled = torch.compile(self._graph, fullgraph=True)
        self._templates = _state_templates(self._graph)
        self._acc_shape = (model.num_features, 1, 1)
        self._device = next(graph_model.parameters()).device
        self.reset()

    def reset(self) -> None:
        """Start a new clip: neuron states at their reset values, head accumulator zero."""
        self.steps = 0
        self._states: List[torch.Tensor] = []  # [acc, v.0, ...], made at the clip's first frame

    def _initial(self, b: int) -> List[torch.Tensor]:
        acc = torch.zeros(b, *self._acc_shape, device=self._device)
        return [acc] + [torch.full((b, *t.shape), t.reset, device=self._device).contiguous(memory_format=t.layout)
                        for t in self._templates]

    @torch.no_grad()
    def step(self, frame: torch.Tensor) -> torch.Tensor:
        batch = self._states[0].shape[0] if self._states else None
        check_frame(frame, self.in_chans, self.img_size, self.steps, self.num_frames, batch)
        if not self._states:
            self._states = self._initial(frame.shape[0])
        step = torch.tensor([self.steps], dtype=torch.long, device=self._device)
        # Freezing (weights as constants: convolutions packed once) is inductor's switch for inference.
        with inductor_config.patch(freezing=True):
            try:
                logits, *states = self._compiled(frame.detach().float().to(self._device), step, *self._states)
            except Exception as e:  # inductor raises its own types (a missing compiler among them)
                first = (str(e).strip().splitlines() or [""])[0]
                raise RuntimeError(f"torch.compile could not compile the step model ({type(e).__name__}: {first})") \
                    from None
        self._states = states
        self.steps += 1
        return logits
