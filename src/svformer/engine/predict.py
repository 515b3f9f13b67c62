"""Classify one video file (or AEDAT file, for event models) with a training checkpoint."""
from __future__ import annotations

import os
from typing import List, Tuple

import numpy as np
import torch

from ..config import from_dict
from .checkpoint import load_checkpoint
from .trainer import build_model


def load_trained(checkpoint: str, device: str = "cpu"):
    """(model in eval mode, config, class names) from an svformer training checkpoint."""
    state = load_checkpoint(checkpoint)
    cfg = from_dict(state["config"])
    names = state["class_names"]
    in_chans = 2 if cfg.data.dataset == "dvs128_gesture" else 3
    img = 128 // cfg.data.downsample if in_chans == 2 else cfg.data.crop_size
    model = build_model(cfg, len(names), in_chans, img)
    model.load_state_dict(state["model"])
    return model.to(device).eval(), cfg, names


@torch.no_grad()
def predict_file(checkpoint: str, path: str, topk: int = 5, device: str = "cpu") -> List[Tuple[str, float]]:
    """Top-k (class, probability) for one file: a video through the config's test views (logits summed),
    or an AEDAT 3.1 recording (all its events as one sample)."""
    if topk < 1:
        raise ValueError(f"topk must be at least 1, got {topk}")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder; give one video file (svformer test evaluates a dataset)")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"input file not found: {path}")
    model, cfg, names = load_trained(checkpoint, device)
    if path.lower().endswith(".aedat"):
        from ..data.events import events_to_frames, read_aedat31

        frames = events_to_frames(read_aedat31(path), cfg.data.num_frames, (128, 128), cfg.data.split_by,
                                  cfg.data.downsample)
        clips = torch.from_numpy(frames).transpose(0, 1).unsqueeze(0)
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
    logits = model(clips.to(device)).float().sum(0)
    probs = torch.softmax(logits, -1).cpu().numpy()
    order = np.argsort(-probs)[: min(topk, len(names))]
    return [(names[i], float(probs[i])) for i in order]
