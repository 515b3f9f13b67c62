"""How closely an exported model follows PyTorch: logits, top-1 and every neuron layer's spikes.

`compare(model, clips)` exports a copy of the clip graph that also outputs every neuron layer's spikes,
runs it on ONNX Runtime and on PyTorch (the plain model), and reports:

- ``logits_rel_error``: sum |ORT - PyTorch| / sum |PyTorch| over all logits (the mean relative error);
- ``top1_agreement``: the fraction of clips with the same top class;
- ``layers``: per neuron layer (call order), the fraction of equal spikes and the number that differ.

Spikes are thresholds of sums, so a runtime that adds in another order (its own convolution kernels)
flips a spike wherever a membrane potential lies within rounding of the threshold, and the flip then
travels down the network; ``first_flip_margin`` is the largest |H - v_th| (in PyTorch) among the flips of
the first layer that has any: the size of the rounding that started them.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np
import torch

from ..models.svformer import SVFormer
from .graph import ClipGraph, inference_model
from .onnx import trace


def _export_recording(model: SVFormer, clips: torch.Tensor, path: str):
    record: dict = {}
    graph = ClipGraph(inference_model(model, record=record), record=record)
    with torch.no_grad():
        graph(clips[:1])
    names = list(record)
    batch = torch.export.Dim("batch", min=1, max=1024)
    import onnx

    onnx.save_model(trace(graph, (clips[:2],), {"clip": {0: batch}}, ["clip"], ["logits", *names]), path)
    return names


@torch.no_grad()
def compare(model: SVFormer, clips: torch.Tensor, threads: int = 0) -> dict:
    """Export ``model`` with its spikes as outputs, run ``clips`` (B, C, T, H, W) through ONNX Runtime and
    PyTorch, and return the agreement report described in the module docstring."""
    import onnxruntime as ort

    model = model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "spikes.onnx")
        names = _export_recording(model, clips, path)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        outputs = session.run(None, {"clip": clips.float().numpy()})
    record, margins = {}, {}
    reference = ClipGraph(inference_model(model, record=record, margins=margins), record=record)(clips)
    ref_logits, ref_spikes = reference[0].numpy(), [s.numpy() for s in reference[1:]]
    logits = outputs[0]
    layers, first_margin = [], None
    for name, ours, theirs in zip(names, ref_spikes, outputs[1:]):
        differ = ours != theirs
        n = int(differ.sum())
        layers.append({"layer": name, "agreement": 1.0 - n / differ.size, "flips": n, "spikes": int(differ.size)})
        if n and first_margin is None:
            first_margin = float(margins[name].abs().numpy()[differ].max())
    return {
        "logits_rel_error": float(np.abs(logits - ref_logits).sum() / np.abs(ref_logits).sum()),
        "logits_max_abs_error": float(np.abs(logits - ref_logits).max()),
        "top1_agreement": float((logits.argmax(-1) == ref_logits.argmax(-1)).mean()),
        "clips": int(clips.shape[0]),
        "layers": layers,
        "total_flips": sum(layer["flips"] for layer in layers),
        "total_spikes": sum(layer["spikes"] for layer in layers),
        "first_flip_margin": first_margin,
    }
