"""Export a training checkpoint to a deployment format (`svformer export`)."""
from __future__ import annotations

import os

FORMATS = ("onnx", "nir")

# Why there is no NIR export (docs/deploy.md says more).
NIR_MESSAGE = (
    "NIR export is not possible for SVFormer: NIR describes networks of neurons (LIF, IF, CubaLIF) joined by "
    "affine, convolution and pooling edges, but SVFormer's spiking self-attention multiplies two spike tensors "
    "with each other (Q (K^T V): a product of activations, no NIR primitive), and its per-time-step BatchNorm "
    "gives every time step its own affine constants (NIR graphs are time-invariant); export to ONNX instead"
)


def export_checkpoint(checkpoint: str, out: str, fmt: str = "onnx", kind: str = "clip") -> str:
    """Write the model of a training ``checkpoint`` to ``out`` in ``fmt``; returns ``out``. The training
    config and class names go into the file, so `svformer predict` and `svformer stream` need nothing else."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {FORMATS}")
    if fmt == "nir":
        raise ValueError(NIR_MESSAGE)
    if os.path.isdir(out):
        raise ValueError(f"{out} is a folder; give the output file name (model.onnx)")
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"output folder does not exist: {folder}")
    from ..config import to_dict
    from ..engine.predict import load_trained
    from .onnx import export_onnx

    model, cfg, names = load_trained(checkpoint)
    return export_onnx(model, out, kind=kind, class_names=names, config=to_dict(cfg))
