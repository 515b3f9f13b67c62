"""ONNX export of a trained SVFormer: the whole-clip classifier and the frame-by-frame step model.

    from svformer.export import export_onnx
    export_onnx(model, "clip.onnx", kind="clip", class_names=names)      # (B, C, T, H, W) -> logits
    export_onnx(model, "step.onnx", kind="stream", class_names=names)    # one frame + states per call

Both trace the inference graph of `svformer.export.graph` with PyTorch's ONNX exporter (time loop
unrolled, BatchNorms folded, spikes by comparison); the batch size stays free. What a runtime needs to
use the file is in its metadata (``svformer.*`` keys; `read_metadata`): the kind, class names, T, input
size and channels, the normalisation, the training config, and for the step model the names, shapes and
reset values of its state inputs. `svformer.export.runtime` runs either kind on ONNX Runtime.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from typing import Dict, List, Optional, Sequence

import torch

from .. import __version__
from ..data.transforms import MEAN, STD
from ..models.svformer import SVFormer
from .graph import ClipGraph, StepGraph, inference_model, neurons

KINDS = ("clip", "stream")
OPSET = 18


def _require_onnx():
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ImportError("ONNX export needs the onnx and onnxscript packages: pip install 'svformer[export]'") \
            from None


@contextlib.contextmanager
def _quiet():
    """Silence the exporter's warnings about optional packages (torchvision ops) and deprecations."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def trace(graph: torch.nn.Module, args: tuple, dynamic_shapes: dict, input_names, output_names):
    """``graph`` as an ONNX ModelProto, traced by PyTorch's exporter with ``args`` as example inputs."""
    with torch.no_grad(), _quiet():
        program = torch.onnx.export(graph, args, dynamic_shapes=dynamic_shapes, input_names=list(input_names),
                                    output_names=list(output_names), opset_version=OPSET, dynamo=True,
                                    verbose=False)
    return program.model_proto


def state_shapes(graph_model: SVFormer, batch: int = 1) -> List[torch.Size]:
    """Shapes of the neuron states the step model of ``graph_model`` (an `inference_model`) carries, for
    ``batch`` frames per call: one probing step, after which its neurons are reset again."""
    from ..models.streaming import StreamingSVFormer

    stream = StreamingSVFormer(graph_model)
    stream.step(torch.zeros(batch, graph_model.in_chans, *graph_model.img_size))
    shapes = [layer.v.shape for layer in neurons(graph_model)]
    stream.reset()
    return shapes


def export_onnx(model: SVFormer, path: str, kind: str = "clip", class_names: Optional[Sequence[str]] = None,
                config: Optional[dict] = None, mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> str:
    """Write ``model`` (any training state: a copy is put in eval mode) as an ONNX file of ``kind``
    'clip' or 'stream' at ``path``, atomically, and return ``path``.

    ``class_names``, ``config`` (the training config as a dict) and the normalisation ``mean``/``std``
    go into the file's metadata; `svformer predict` and `svformer stream` read them from there.
    """
    _require_onnx()
    if kind not in KINDS:
        raise ValueError(f"unknown export kind {kind!r}; choose one of {KINDS}")
    if kind == "stream" and not model.fixed_steps:
        raise ValueError("the step model needs a fixed T (per-step BN or the Conv3d head); this model has neither")
    names = list(class_names) if class_names is not None else [str(i) for i in range(model.num_classes)]
    if len(names) != model.num_classes:
        raise ValueError(f"{len(names)} class names for a model with {model.num_classes} classes")
    graph_model = inference_model(model)
    T, (H, W), C = model.num_frames, model.img_size, model.in_chans
    batch = torch.export.Dim("batch", min=1, max=1024)
    meta: Dict[str, str] = {
        "svformer.version": __version__, "svformer.kind": kind, "svformer.class_names": json.dumps(names),
        "svformer.num_frames": str(T), "svformer.in_chans": str(C), "svformer.input_size": json.dumps([H, W]),
        "svformer.mean": json.dumps(list(mean)), "svformer.std": json.dumps(list(std)),
        "svformer.config": json.dumps(config or {}),
    }
    if kind == "clip":
        graph = ClipGraph(graph_model)
        args = (torch.zeros(2, C, T, H, W),)
        inputs, outputs = ["clip"], ["logits"]
        dynamic = {"clip": {0: batch}}
    else:
        shapes = state_shapes(graph_model, batch=2)
        graph = StepGraph(graph_model)
        states = [torch.full(s, layer.dynamics.reset_value) for s, layer in zip(shapes, graph.layers)]
        acc = torch.zeros(2, model.num_features, 1, 1)
        args = (torch.zeros(2, C, H, W), torch.zeros(1, dtype=torch.long), acc, *states)
        state_names = [f"v.{i}" for i in range(len(states))]
        inputs = ["frame", "step", "acc", *state_names]
        outputs = ["logits", "acc_out", *(f"{n}_out" for n in state_names)]
        dynamic = {"frame": {0: batch}, "step": None, "acc": {0: batch},
                   "states": tuple({0: batch} for _ in states)}
        meta["svformer.states"] = json.dumps([
            {"name": n, "shape": [None, *s[1:]], "reset": layer.dynamics.reset_value}
            for n, s, layer in zip(state_names, shapes, graph.layers)])
        meta["svformer.acc_shape"] = json.dumps([None, model.num_features, 1, 1])
    proto = trace(graph, args, dynamic, inputs, outputs)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        import onnx

        onnx.save_model(proto, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def read_metadata(path: str) -> Dict[str, object]:
    """The ``svformer.*`` metadata of an exported file, decoded (keys without the prefix)."""
    import onnx

    try:
        proto = onnx.load(path, load_external_data=False)
    except Exception as e:  # protobuf raises DecodeError and others
        raise ValueError(f"{path}: not a readable ONNX file ({type(e).__name__}: {e})") from None
    raw = {p.key[len("svformer."):]: p.value for p in proto.metadata_props if p.key.startswith("svformer.")}
    if "kind" not in raw:
        raise ValueError(f"{path}: an ONNX file without svformer metadata; export it with `svformer export`")
    out: Dict[str, object] = {}
    for key, value in raw.items():
        out[key] = value if key in ("version", "kind") else json.loads(value)
    return out
