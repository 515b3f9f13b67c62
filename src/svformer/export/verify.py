"""How closely an exported model follows PyTorch: logits, top-1 and every neuron layer's spikes.

`compare(model, clips)` exports a copy of the clip graph that also outputs every neuron layer's spikes,
runs it on ONNX Runtime and on PyTorch (the plain model), and reports:

- ``logits_rel_error``: sum |ORT - PyTorch| / sum |PyTorch| over all logits (the mean relative error),
  PyTorch being ``model`` as it is;
- ``clip_rel_error_median``, ``clip_rel_error_max`` and ``clips_within_1e-4``: the same error clip by
  clip (its median, its largest value, the fraction of clips at or under 1e-4): a spike flip that
  cascades moves one clip's logits, and the mean over all logits then shows that clip's share;
- ``top1_agreement``: the fraction of clips with the same top class;
- ``pytorch_rel_error_vs_float64`` and ``onnx_rel_error_vs_float64``: each side's mean relative error
  against PyTorch's float64 logits (a float64 copy of the model): how far each runtime's rounding takes
  it from the exact model, beside how far the two runtimes are apart;
- ``layers``: per neuron layer (call order), the fraction of equal spikes and the number that differ,
  against the same inference graph run in PyTorch.

Spikes are thresholds of sums, so a runtime that adds in another order (its own convolution kernels)
flips a spike wherever a membrane potential lies within rounding of the threshold, and the flip then
travels down the network (and along time: a flipped spike changes that neuron's reset). ``first_flip_margin``
is the largest |H - v_th| (in PyTorch) at the first differing step of each neuron that flips, in the first
layer that has any flips: the size of the rounding that started them.

With ``dtype=torch.float64`` both sides run in float64: PyTorch on a float64 copy of the model, ONNX
Runtime on the same exported graph traced in float64 with its convolutions as matrix products (its CPU
Conv is float32 only; `svformer.export.lowering`). Rounding then is about 2^-53 instead of 2^-24, so a
spike flips only if a potential lies within about 1e-16 of the threshold, and what remains of the logits'
difference is the graph's own: a wrong folding or a missing op shows as an error far above 1e-12.
"""
from __future__ import annotations

import copy
import os
import tempfile
from typing import Optional, Tuple

import numpy as np
import torch

from ..engine.progress import progress
from ..models.svformer import SVFormer
from .graph import ClipGraph, inference_model
from .lowering import convs_as_matmuls
from .onnx import trace

DTYPES = (torch.float32, torch.float64)
# How much one copy of a comparison run's spikes may take: the runtime's outputs, PyTorch's spikes and its
# potentials are three such copies, each the size of every neuron layer's output for the chunk's clips.
SPIKE_BYTES = 2 ** 29


def _export_recording(model: SVFormer, clips: torch.Tensor, path: str, dtype: torch.dtype):
    record: dict = {}
    graph = ClipGraph(inference_model(model, record=record, dtype=dtype), record=record)
    example = clips[:2].to(dtype)
    with torch.no_grad():
        graph(example[:1])
    names = list(record)
    spikes_per_clip = sum(spikes.numel() for spikes in record.values())
    batch = torch.export.Dim("batch", min=1, max=1024)
    import onnx

    proto = trace(graph, (example,), {"clip": {0: batch}}, ["clip"], ["logits", *names])
    onnx.save_model(proto if dtype == torch.float32 else convs_as_matmuls(proto), path)
    return names, spikes_per_clip


def _rel_error(ours: np.ndarray, exact: np.ndarray) -> float:
    return float(np.abs(ours - exact).sum() / np.abs(exact).sum())


def compare(model: SVFormer, clips: torch.Tensor, threads: int = 0, chunk: Optional[int] = None,
            dtype: torch.dtype = torch.float32, show_progress: bool = False) -> dict:
    """Export ``model`` with its spikes as outputs, run ``clips`` (B, C, T, H, W) through ONNX Runtime and
    PyTorch, ``chunk`` clips at a time, both in ``dtype`` (float32, what is deployed, or float64), and
    return the agreement report described in the module docstring. ``chunk`` None: as many clips (at
    most 8) as keep one copy of a run's spikes within `SPIKE_BYTES` (each side holds a few).
    ``show_progress``: a progress bar on a terminal."""
    return _compare(model, clips, threads, chunk, dtype, show_progress)[0]


@torch.no_grad()
def _compare(model: SVFormer, clips: torch.Tensor, threads: int, chunk: Optional[int], dtype: torch.dtype,
             show_progress: bool, exact_logits: Optional[np.ndarray] = None) -> Tuple[dict, np.ndarray]:
    """`compare`, and PyTorch's float64 logits of ``clips``. A float32 run given those (``exact_logits``,
    from a float64 run on the same clips) does not compute them again."""
    import onnxruntime as ort

    if dtype not in DTYPES:
        raise ValueError(f"compare runs in {' or '.join(map(str, DTYPES))}, not {dtype}")
    model = model.eval()
    record, margins = {}, {}
    reference = ClipGraph(inference_model(model, record=record, margins=margins, dtype=dtype), record=record)
    exact = copy.deepcopy(model).double() if dtype == torch.float64 or exact_logits is None else None
    plain = model if dtype == torch.float32 else exact
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "spikes.onnx")
        names, spikes_per_clip = _export_recording(model, clips, path, dtype)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    ours_all, theirs_all, exact_all = [], [], []
    flips = np.zeros(len(names), dtype=np.int64)
    sizes = np.zeros(len(names), dtype=np.int64)
    margin = np.zeros(len(names))  # per layer: the largest |H - v_th| where a neuron's spikes first differ
    if chunk is None:
        chunk = max(1, min(8, SPIKE_BYTES // (spikes_per_clip * dtype.itemsize)))
    runs = range(0, clips.shape[0], chunk)
    desc = f"comparing in {str(dtype)[len('torch.'):]}, {chunk} clip(s) a run"
    for start in progress(runs, desc=desc, enabled=show_progress):
        part = clips[start:start + chunk].to(dtype)
        outputs = session.run(None, {"clip": part.numpy()})
        want = reference(part)
        ours_all.append(plain(part).numpy())
        if exact is not None and exact is not plain:
            exact_all.append(exact(part.double()).numpy())
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
    if dtype == torch.float64:
        exact_logits = ref_logits
    elif exact_logits is None:
        exact_logits = np.concatenate(exact_all)
    diff, size = np.abs(logits - ref_logits), np.abs(ref_logits)
    per_clip = diff.sum(-1) / np.maximum(size.sum(-1), np.finfo(np.float32).tiny)
    layers = [{"layer": n, "agreement": 1.0 - int(f) / int(z), "flips": int(f), "spikes": int(z)}
              for n, f, z in zip(names, flips, sizes)]
    report = {
        "logits_rel_error": float(diff.sum() / size.sum()),
        "logits_max_abs_error": float(diff.max()),
        "clip_rel_error_median": float(np.median(per_clip)),
        "clip_rel_error_max": float(per_clip.max()),
        "clips_within_1e-4": float((per_clip <= 1e-4).mean()),
        "top1_agreement": float((logits.argmax(-1) == ref_logits.argmax(-1)).mean()),
        "pytorch_rel_error_vs_float64": _rel_error(ref_logits, exact_logits),
        "onnx_rel_error_vs_float64": _rel_error(logits, exact_logits),
        "clips": int(clips.shape[0]),
        "layers": layers,
        "total_flips": int(flips.sum()),
        "total_spikes": int(sizes.sum()),
        "first_flip_margin": float(margin[np.flatnonzero(flips)[0]]) if flips.any() else None,
    }
    return report, exact_logits


def verify_checkpoint(checkpoint: str, clips: int) -> dict:
    """`compare` on the first ``clips`` test views of a training checkpoint's own dataset: the float32
    report, with the float64 one under ``"float64"``."""
    from ..engine.data import build_datasets
    from ..engine.predict import load_trained

    model, cfg, _ = load_trained(checkpoint)
    test = build_datasets(cfg).test
    items = [test[i] for i in range(min(clips, len(test)))]
    batch = torch.stack([item["clip"] for item in items if "clip" in item])
    if len(batch) < 1:
        raise ValueError(f"no readable test clips in {cfg.data.root}")
    exact, exact_logits = _compare(model, batch, 0, None, torch.float64, True)
    report, _ = _compare(model, batch, 0, None, torch.float32, True, exact_logits=exact_logits)
    report["float64"] = exact
    return report
