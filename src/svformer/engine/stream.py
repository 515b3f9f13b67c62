"""Classify a video or a live source frame by frame (`svformer stream`).

The stream is cut into windows of ``num_frames x sampling_rate`` frames, the span of one training clip;
in each window the frames a test clip would take (the sampler's rule, `clip_indices`) go through the
model one at a time, each step giving the running top class of the frames so far. A window's last step
gives the clip's logits: on a video of exactly one window they equal `predict`'s single-view result
(``data.test_clips=1 data.test_crops=1``) on the same frames.

Frames are read in order and never sought, so any source FFmpeg reads works: a file, a V4L2 camera
(``/dev/video0``), a network stream (``rtsp://``, ``http://``, ``udp://``, ...), a named pipe, or standard
input (``-``). Memory stays flat however long the source runs: `run_stream` keeps one float per model
step (its latency, for the summary) and writes ``--json`` results to disk as they come. A live source
ends with Ctrl-C (or SIGTERM), which stops at the current frame and reports and writes everything up to
it.
"""
from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from array import array
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Iterator, List, Optional, Tuple

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


def _source_kind(source: str) -> str:
    """'stdin' (``-``), 'url' (``scheme://...``), 'camera' (``/dev/video*``) or 'file' (a path: a file or
    a named pipe)."""
    if source == "-":
        return "stdin"
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", source):
        return "url"
    return "camera" if source.startswith("/dev/video") else "file"


def read_frames(source: str) -> Iterator[np.ndarray]:
    """RGB frames (H, W, 3) uint8 of ``source`` (a file, camera device, URL, named pipe, or ``-`` for
    standard input), in order, decoded one at a time."""
    import av

    kind = _source_kind(source)
    name = "standard input" if kind == "stdin" else source
    if kind == "stdin" and sys.stdin.isatty():
        raise ValueError("standard input is a terminal: pipe a video into it (e.g. ffmpeg ... -f nut - | svformer "
                         "stream MODEL -)")
    if kind in ("file", "camera"):
        if os.path.isdir(source):
            raise ValueError(f"{source} is a folder; give a video file, a camera device, a URL or - (standard input)")
        if not os.path.exists(source):
            raise FileNotFoundError(f"input not found: {source}" + (" (no such camera)" if kind == "camera" else ""))
    try:
        if kind == "stdin":
            container = av.open(sys.stdin.buffer)
        elif kind == "url":  # seconds to connect and between reads: a dead stream ends, it does not hang
            container = av.open(source, timeout=10.0)
        else:
            container = av.open(source, format="v4l2" if kind == "camera" else None)
    except av.FFmpegError as e:
        raise ValueError(f"{name}: cannot be opened as video ({e})") from None
    with container:
        if not container.streams.video:
            raise ValueError(f"{name}: has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
        except av.FFmpegError as e:
            raise ValueError(f"{name}: decoding failed ({e})") from None


def stream_frames(clf: Classifier, source: str, topk: int = 5,
                  max_frames: Optional[int] = None) -> Iterator[Tuple[FrameResult, Optional[WindowResult]]]:
    """Run ``clf`` frame by frame over ``source``, yielding every model step's result and, at a window's
    last step, the complete clip's result (else None). Holds one frame and the model's state."""
    cfg = clf.cfg
    if cfg.data.dataset in EVENT_DATASETS:
        raise ValueError(f"{model_name(clf)} is an event model: event recordings are classified whole; use svformer predict")
    T, rate = cfg.data.num_frames, cfg.data.sampling_rate
    window = T * rate
    offsets = clip_indices(0, T, rate, window)  # the frames of a window a clip takes
    picks = {o: t for t, o in enumerate(offsets)}
    transform = TestTransform(cfg.data.crop_size)
    stream = clf.streamer()
    used = []
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
        done = None
        if picks[offset] == T - 1:
            done = WindowResult(w, tuple(used), top_classes(logits[0], clf.names, topk))
            stream.reset()
            used = []
        yield FrameResult(i, w, picks[offset], label, prob, latency), done


class JsonResults:
    """``--json``: one JSON object {"model", "source", "frames": [...], "clips": [...]}, built on disk as
    results come (two temporary files of one line per result) and put in place atomically by `close`,
    so a run of any length holds none of it in memory."""

    def __init__(self, path: str, header: dict):
        self.path, self.header = path, header
        self.parts = {key: f"{path}.{os.getpid()}.{key}.tmp" for key in ("frames", "clips")}
        self.files = {key: open(p, "w") for key, p in self.parts.items()}

    def add(self, key: str, record: dict) -> None:
        self.files[key].write(json.dumps(record) + "\n")

    def close(self) -> None:
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "w") as out:
            out.write("{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in self.header.items()))
            for key, part in self.parts.items():
                self.files[key].close()
                with open(part) as f:
                    out.write(f', "{key}": [' + ",".join("\n " + line.rstrip("\n") for line in f) + "]")
            out.write("}\n")
        os.replace(tmp, self.path)
        self.discard()

    def discard(self) -> None:
        for key, p in self.parts.items():
            self.files[key].close()
            if os.path.exists(p):
                os.remove(p)


@contextmanager
def _stop_on_signals():
    """Ctrl-C (SIGINT) and SIGTERM (a service manager stopping a live stream) end the stream: each raises
    KeyboardInterrupt where the stream is, and also leaves a flag that the frame loop checks, so that the
    stream stops at the next frame even if C code it was in (the decoder) swallowed the exception.
    A SIGINT the process was started ignoring (a background job of a shell script) stays ignored.
    Yields the flag (a one-element list), or None where signals cannot be handled (not the main thread)."""
    requested = [False]

    def stop(signum, frame):
        requested[0] = True
        raise KeyboardInterrupt

    try:
        handled = [signal.SIGTERM] + ([signal.SIGINT] if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN else [])
        previous = {sig: signal.signal(sig, stop) for sig in handled}
    except ValueError:  # not the main thread: leave signals alone
        yield None
        return
    try:
        yield requested
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _print_now(line: str) -> None:
    print(line, flush=True)  # a live stream's lines go out as they come, also into a pipe


def run_stream(model_path: str, source: str, every: int = 1, topk: int = 5, json_path: Optional[str] = None,
               max_frames: Optional[int] = None, print_fn=_print_now, compile: bool = False) -> Optional[WindowResult]:
    """`svformer stream`: print a line every ``every`` model steps and one per complete clip, then the
    latency summary and the last clip's top-k; ``json_path`` gets every frame's and clip's result. Ctrl-C
    or SIGTERM stops the stream at the current frame with the same report. Returns the last complete clip.
    ``compile``: a checkpoint's frames run through its compiled step graph (`load_classifier`); the first
    frame's latency then includes the compilation."""
    from .predict import load_classifier

    clf = load_classifier(model_path, compile=compile)
    if compile:
        print_fn("compiling the step model at the first frame (tens of seconds) ...")
    latencies = array("d")
    last: Optional[WindowResult] = None
    results = JsonResults(json_path, {"model": model_path, "source": source}) if json_path else None
    stopped = False
    try:
        with _stop_on_signals() as requested:
            for r, clip in stream_frames(clf, source, topk, max_frames):
                if requested and requested[0]:
                    raise KeyboardInterrupt
                latencies.append(r.latency_ms)
                if results is not None:
                    results.add("frames", asdict(r))
                if len(latencies) % every == 0:
                    print_fn(f"frame {r.frame:6d}  step {r.step + 1:2d}/{clf.cfg.data.num_frames}  "
                             f"{100 * r.prob:6.2f}%  {r.label:<24s} {r.latency_ms:7.1f} ms")
                if clip is not None:
                    last = clip
                    if results is not None:
                        results.add("clips", asdict(clip))
                    name, p = clip.top[0]
                    print_fn(f"clip {clip.window} (frames {clip.frames[0]}-{clip.frames[-1]}): {100 * p:.2f}%  {name}")
    except KeyboardInterrupt:
        stopped = True
    except BaseException:
        if results is not None:
            results.discard()
        raise
    if not latencies:
        if results is not None:
            results.discard()
        if stopped:
            raise KeyboardInterrupt
        raise ValueError(f"{source}: no frames to classify")
    if stopped:
        print_fn(f"stopped after {len(latencies)} model steps")
    lat = np.frombuffer(latencies, dtype=np.float64)
    print_fn(f"latency per frame: median {np.median(lat):.1f} ms, 95th percentile {np.percentile(lat, 95):.1f} ms "
             f"over {len(lat)} frames")
    if last is not None:
        print_fn(f"last complete clip (frames {last.frames[0]}-{last.frames[-1]}):")
        for name, p in last.top:
            print_fn(f"{100 * p:6.2f}%  {name}")
    else:
        print_fn(f"no complete clip: the source ended within the first {clf.cfg.data.num_frames} steps")
    if results is not None:
        results.close()
    return last
