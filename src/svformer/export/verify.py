"""How closely an exported model follows PyTorch: logits, top-1 and every neuron layer's spikes.

`compare(model, clips)` exports a copy of the clip graph that also outputs every neuron layer's spikes,
runs it on ONNX Runtime and on PyTorch (the plain model), and reports:

- ``logits_rel_error``: sum |ORT - PyTorch| / sum |PyTorch| over all logits (the mean relative error),
  PyTorch being ``model`` as it is;
- ``clip_rel_error_median``, ``clip_rel_error_max`` and ``clips_within_1e-4``: the same error clip by
  clip (its median, its largest value, the fraction of clips at or under 1e-4): a spike flip that
  cascades moves one clip's logits, and the mean over all logits then shows that clip's share;
- ``top1_agreement``: the fraction of clips with the same top class;
- ``layers``: per neuron layer (call order), the fraction of equal spikes and the number that differ,
  against the same inference graph run in PyTorch.

Spikes are thresholds of sums, so a runtime that adds in another order (its own convolution kernels)
flips a spike wherever a membrane potential lies within rounding of the threshold, and the flip then
travels down the network (and along time: a flipped spike changes that neuron's reset). ``first_flip_margin``
is the largest |H - v_th| (in PyTorch) at the first differing step of each neuron that flips, in the first
layer that has any flips: the size of the rounding that started them.
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
def compare(model: SVFormer, clips: torch.Tensor, threads: int = 0, chunk: int = 8) -> dict:
    """Export ``model`` with its spikes as outputs, run ``clips`` (B, C, T, H, W) through ONNX Runtime and
    PyTorch, ``chunk`` clips at a time, and return the agreement report described in the module docstring."""
    import onnxruntime as ort

    model = model.eval()
    record, margins = {}, {}
    reference = ClipGraph(inference_model(model, record=record, margins=margins), record=record)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "spikes.onnx")
        names = _export_recording(model, clips, path)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    ours_all, theirs_all = [], []
    flips = np.zeros(len(names), dtype=np.int64)
    sizes = np.zeros(len(names), dtype=np.int64)
    margin = np.zeros(len(names))  # per layer: the largest |H - v_th| where a neuron's spikes first differ
    for start in range(0, clips.shape[0], chunk):
        part = clips[start:start + chunk].float()
        outputs = session.run(None, {"clip": part.numpy()})
        want = reference(part)
        ours_all.append(model(part).numpy())
        theirs_all.append(outputs[0])
        for i, (name, ours, theirs) in enumerate(zip(names, want[1:], outputs[1:])):
            differ = ours.numpy() != theirs
            flips[i] += int(differ.sum())
            sizes[i] += differ.size
            if differ.any():  # each neuron's first differing step: later ones follow from its reset
                flipped = differ.any(0)
                first = differ.argmax(0)[None]
                at_first = np.take_along_axis(margins[name].abs().numpy(), first, 0)[0]
                margin[i] = max(margin[i], float(at_first[flipped].max()))
    ref_logits, logits = np.concatenate(ours_all), np.concatenate(theirs_all)
    diff, size = np.abs(logits - ref_logits), np.abs(ref_logits)
    per_clip = diff.sum(-1) / np.maximum(size.sum(-1), np.finfo(np.float32).tiny)
    layers = [{"layer": n, "agreement": 1.0 - int(f) / int(z), "flips": int(f), "spikes": int(z)}
              for n, f, z in zip(names, flips, sizes)]
    return {
        "logits_rel_error": float(diff.sum() / size.sum()),
        "logits_max_abs_error": float(diff.max()),
        "clip_rel_error_median": float(np.median(per_clip)),
        "clip_rel_error_max": float(per_clip.max()),
        "clips_within_1e-4": float((per_clip <= 1e-4).mean()),
        "top1_agreement": float((logits.argmax(-1) == ref_logits.argmax(-1)).mean()),
        "clips": int(clips.shape[0]),
        "layers": layers,
        "total_flips": int(flips.sum()),
        "total_spikes": int(sizes.sum()),
        "first_flip_margin": float(margin[np.flatnonzero(flips)[0]]) if flips.any() else None,
    }


def verify_checkpoint(checkpoint: str, clips: int) -> dict:
    """`compare` on the first ``clips`` test views of a training checkpoint's own dataset."""
    from ..engine.data import build_datasets
    from ..engine.predict import load_trained

    model, cfg, _ = load_trained(checkpoint)
    test = build_datasets(cfg).test
    items = [test[i] for i in range(min(clips, len(test)))]
    batch = torch.stack([item["clip"] for item in items if "clip" in item])
    if len(batch) < 1:
        raise ValueError(f"no readable test clips in {cfg.data.root}")
    return compare(model, batch)
