"""Classify one file with a trained model: a training checkpoint (PyTorch) or an exported `.onnx` file
(ONNX Runtime). Both load as a `Classifier`, so `predict` and `stream` treat them alike."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, List, Tuple

import numpy as np
import torch

from ..config import TrainConfig, from_dict
from .checkpoint import load_checkpoint
from .trainer import build_model


def _model_geometry(cfg: TrainConfig) -> Tuple[int, int]:
    """(in_chans, img_size) of the model a config trains."""
    if cfg.data.dataset == "dvs128_gesture":
        return 2, 128 // cfg.data.downsample
    if cfg.data.dataset in ("event_folder", "event_csv"):
        return 2, cfg.data.crop_size
    return 3, cfg.data.crop_size


def event_clip(cfg: TrainConfig, path: str) -> torch.Tensor:
    """(1, 2, T, S, S) counts of a whole event recording (any format), as the config's dataset builds them."""
    from ..data.event_dataset import recording_frames
    from ..data.event_files import read_recording

    d = cfg.data
    rec = read_recording(path, d.sensor_size)
    if len(rec.events) < d.num_frames:
        raise ValueError(f"{path}: {len(rec.events)} events, fewer than the {d.num_frames} frames of a sample")
    _, size = _model_geometry(cfg)
    # DVS128 Gesture's rule: bin by the downsample factor (other sensors then centre-cropped or padded).
    geometry = "downsample" if d.dataset == "dvs128_gesture" else d.event_geometry
    frames = recording_frames(rec.events, rec.sensor_size, d.num_frames, size, d.split_by, geometry, d.downsample)
    return torch.from_numpy(frames).transpose(0, 1).unsqueeze(0)


def load_trained(checkpoint: str, device: str = "cpu"):
    """(model in eval mode, config, class names) from an svformer training checkpoint."""
    state = load_checkpoint(checkpoint)
    cfg = from_dict(state["config"])
    names = state["class_names"]
    in_chans, img = _model_geometry(cfg)
    model = build_model(cfg, len(names), in_chans, img)
    model.load_state_dict(state["model"])
    return model.to(device).eval(), cfg, names


@dataclass
class Classifier:
    """A trained model with what classifying a file needs: ``model(clips) -> logits`` on (B, C, T, H, W)
    normalised clips, ``streamer()`` for frame-by-frame use (``step(frame) -> logits``, ``reset()``), the
    training config (data settings: frames, sampling, crops) and the class names."""

    model: Callable[[torch.Tensor], torch.Tensor]
    streamer: Callable[[], object]
    cfg: TrainConfig
    names: List[str]
    device: str = "cpu"


def load_classifier(path: str, device: str = "cpu", compile: bool = False) -> Classifier:
    """A checkpoint (``.pt``) or an exported ONNX file (``.onnx``) as a `Classifier`. ``compile``: stream
    a checkpoint with its step graph compiled (`export.compiled.CompiledStream`, compiled once)."""
    if path.lower().endswith(".onnx"):
        if compile:
            raise ValueError(f"{path}: compiling applies to checkpoints; an ONNX file runs on ONNX Runtime")
        from ..export.runtime import OnnxSVFormer

        model = OnnxSVFormer(path)
        cfg = from_dict(model.config) if model.config else _config_for(model)
        return Classifier(model, model.streamer, cfg, model.class_names)
    model, cfg, names = load_trained(path, device)
    if compile:
        from ..export.compiled import CompiledStream

        compiled = CompiledStream(model)

        def streamer():
            compiled.reset()
            return compiled

        return Classifier(model, streamer, cfg, names, device)
    from ..models.streaming import StreamingSVFormer

    return Classifier(model, lambda: StreamingSVFormer(model), cfg, names, device)


def _config_for(model) -> TrainConfig:
    """Data settings for an ONNX file exported without a training config: its T and input size, the
    default sampling and views."""
    data = {"num_frames": model.num_frames, "crop_size": model.img_size[0]}
    if model.in_chans == 2:
        data.update(dataset="event_folder")
    return from_dict({"data": data})


def _check_input(path: str) -> None:
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder; give one video file (svformer test evaluates a dataset)")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"input file not found: {path}")


@torch.no_grad()
def predict_file(model_path: str, path: str, topk: int = 5, device: str = "cpu") -> List[Tuple[str, float]]:
    """Top-k (class, probability) for one file with a checkpoint or an exported ``.onnx`` model: a video
    through the config's test views (logits summed), or, for an event model, a recording in any format
    `event_files` reads (all its events as one sample)."""
    if topk < 1:
        raise ValueError(f"topk must be at least 1, got {topk}")
    _check_input(path)
    clf = load_classifier(model_path, device)
    cfg = clf.cfg
    if _model_geometry(cfg)[0] == 2:
        clips = event_clip(cfg, path)
    else:
        from ..data.sampling import UniformClipSampler
        from ..data.transforms import TestTransform, to_float_clip
        from ..data.video import VideoReader

        sampler = UniformClipSampler(cfg.data.num_frames, cfg.data.sampling_rate, cfg.data.test_clips,
                                     cfg.data.test_crops)
        transform = TestTransform(cfg.data.crop_size)
        with VideoReader(path) as reader:
            views = sampler(len(reader))
            clips = torch.stack([transform(to_float_clip(reader.read(v.indices)), v.spatial_index) for v in views])
    logits = clf.model(clips.to(device)).float().sum(0)
    return top_classes(logits, clf.names, topk)


def top_classes(logits: torch.Tensor, names: List[str], topk: int) -> List[Tuple[str, float]]:
    """The ``topk`` (class, probability) pairs of one sample's logits (classes,)."""
    probs = torch.softmax(logits.float(), -1).cpu().numpy()
    order = np.argsort(-probs, kind="stable")[: min(topk, len(names))]
    return [(names[i], float(probs[i])) for i in order]
