"""Classify a video or a live camera frame by frame (`svformer stream`).

The stream is cut into windows of ``num_frames x sampling_rate`` frames, the span of one training clip;
in each window the frames a test clip would take (the sampler's rule, `clip_indices`) go through the
model one at a time, each step giving the running top class of the frames so far. A window's last step
gives the clip's logits: on a video of exactly one window they equal `predict`'s single-view result
(``data.test_clips=1 data.test_crops=1``) on the same frames. Frames are read in order, so any source
FFmpeg reads works, a camera device (``/dev/video0``) included; memory stays constant.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterator, List, Optional, Tuple

import numpy as np
import torch

from ..data.build import EVENT_DATASETS
from ..data.sampling import clip_indices
from ..data.transforms import TestTransform, to_float_clip
from .predict import Classifier, top_classes


@dataclass
class FrameResult:
    """One model step: the source frame, its time step within the window's clip, the running top class."""

    frame: int
    window: int
    step: int
    label: str
    prob: float
    latency_ms: float


@dataclass
class WindowResult:
    """A window's complete clip: its source frames and top-k classes."""

    window: int
    frames: Tuple[int, ...]
    top: List[Tuple[str, float]]


def model_name(clf: Classifier) -> str:
    return getattr(clf.model, "path", None) or "this checkpoint"


def _is_device(source: str) -> bool:
    return source.startswith("/dev/video")


def read_frames(source: str) -> Iterator[np.ndarray]:
    """RGB frames (H, W, 3) uint8 of a video file or a V4L2 camera device, in order, decoded one at a time."""
    import av

    if os.path.isdir(source):
        raise ValueError(f"{source} is a folder; give a video file or a camera device")
    if not os.path.exists(source):
        raise FileNotFoundError(f"input not found: {source}" + (" (no such camera)" if _is_device(source) else ""))
    try:
        container = av.open(source, format="v4l2" if _is_device(source) else None)
    except av.FFmpegError as e:
        raise ValueError(f"{source}: cannot be opened as video ({e})") from None
    with container:
        if not container.streams.video:
            raise ValueError(f"{source}: has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
        except av.FFmpegError as e:
            raise ValueError(f"{source}: decoding failed ({e})") from None


def stream_source(clf: Classifier, source: str, topk: int = 5,
                  on_frame: Optional[Callable[[FrameResult], None]] = None,
                  on_window: Optional[Callable[[WindowResult], None]] = None,
                  max_frames: Optional[int] = None) -> List[WindowResult]:
    """Run ``clf`` frame by frame over ``source``; call ``on_frame`` after every model step and
    ``on_window`` after every complete clip; return the windows' results."""
    cfg = clf.cfg
    if cfg.data.dataset in EVENT_DATASETS:
        raise ValueError(f"{model_name(clf)} is an event model: event recordings are classified whole; use svformer predict")
    T, rate = cfg.data.num_frames, cfg.data.sampling_rate
    window = T * rate
    offsets = clip_indices(0, T, rate, window)  # the frames of a window a clip takes
    picks = {o: t for t, o in enumerate(offsets)}
    transform = TestTransform(cfg.data.crop_size)
    stream = clf.streamer()
    results, used = [], []
    for i, rgb in enumerate(read_frames(source)):
        if max_frames is not None and i >= max_frames:
            break
        w, offset = divmod(i, window)
        if offset not in picks:
            continue
        frame = transform(to_float_clip(rgb[None]))[:, 0].unsqueeze(0).to(clf.device)  # (1, C, H, W)
        start = time.perf_counter()
        with torch.no_grad():
            logits = stream.step(frame)
        latency = 1e3 * (time.perf_counter() - start)
        used.append(i)
        (label, prob), = top_classes(logits[0], clf.names, 1)
        if on_frame is not None:
            on_frame(FrameResult(i, w, picks[offset], label, prob, latency))
        if picks[offset] == T - 1:
            result = WindowResult(w, tuple(used), top_classes(logits[0], clf.names, topk))
            results.append(result)
            if on_window is not None:
                on_window(result)
            stream.reset()
            used = []
    return results


def run_stream(model_path: str, source: str, every: int = 1, topk: int = 5, json_path: Optional[str] = None,
               max_frames: Optional[int] = None, print_fn=print) -> List[WindowResult]:
    """`svformer stream`: print a line every ``every`` model steps and one per complete clip, then the
    latency summary and the last clip's top-k; ``json_path`` gets every frame's and clip's result."""
    from .predict import load_classifier

    clf = load_classifier(model_path)
    frames: List[FrameResult] = []

    def on_frame(r: FrameResult) -> None:
        frames.append(r)
        if len(frames) % every == 0:
            print_fn(f"frame {r.frame:6d}  step {r.step + 1:2d}/{clf.cfg.data.num_frames}  "
                     f"{100 * r.prob:6.2f}%  {r.label:<24s} {r.latency_ms:7.1f} ms")

    def on_window(r: WindowResult) -> None:
        name, p = r.top[0]
        print_fn(f"clip {r.window} (frames {r.frames[0]}-{r.frames[-1]}): {100 * p:.2f}%  {name}")

    windows = stream_source(clf, source, topk, on_frame, on_window, max_frames)
    if not frames:
        raise ValueError(f"{source}: no frames to classify")
    lat = np.array([f.latency_ms for f in frames])
    print_fn(f"latency per frame: median {np.median(lat):.1f} ms, 95th percentile {np.percentile(lat, 95):.1f} ms "
             f"over {len(lat)} frames")
    if windows:
        print_fn(f"last complete clip (frames {windows[-1].frames[0]}-{windows[-1].frames[-1]}):")
        for name, p in windows[-1].top:
            print_fn(f"{100 * p:6.2f}%  {name}")
    else:
        print_fn(f"no complete clip: the source ended within the first {clf.cfg.data.num_frames} steps")
    if json_path:
        tmp = f"{json_path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump({"model": model_path, "source": source, "frames": [asdict(r) for r in frames],
                       "clips": [asdict(w) for w in windows]}, f, indent=1)
        os.replace(tmp, json_path)
    return windows
