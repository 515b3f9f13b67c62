"""Run an exported SVFormer on ONNX Runtime with the interface of the PyTorch model.

    model = OnnxSVFormer("clip.onnx")        # or a step model ("stream" kind)
    logits = model(clips)                    # (B, C, T, H, W) -> (B, classes), torch tensors
    stream = model.streamer()                # step models: one frame per call, constant memory
    logits = stream.step(frame)              # (B, C, H, W) -> logits of the frames since reset()

A step model also classifies whole clips (T calls); a clip model cannot stream.
"""
from __future__ import annotations

import os
from typing import List, Optional

import numpy as np
import torch

from .onnx import read_metadata


def _session(path: str, threads: Optional[int]):
    try:
        import onnxruntime as ort
    except ImportError:
        raise ImportError("running an .onnx model needs onnxruntime: pip install 'svformer[export]'") from None
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise ValueError(f"{path}: ONNX Runtime cannot load it ({str(e).splitlines()[0]})") from None


def check_frame(frame: torch.Tensor, in_chans: int, img_size, steps: int, num_frames: int, batch: Optional[int],
                owner: str = "this model") -> None:
    """The checks before a stream's step: ``frame`` is (B, C, H, W) at the model's size, the clip has room
    for it (``steps`` of ``num_frames`` done), and a started clip keeps its ``batch`` frames per step (the
    states belong to that batch: carrying on with another would start over silently)."""
    if frame.dim() != 4 or tuple(frame.shape[1:]) != (in_chans, *img_size):
        raise ValueError(f"{owner} takes frames of shape (B, {in_chans}, {img_size[0]}, {img_size[1]}), "
                         f"got {tuple(frame.shape)}")
    if steps >= num_frames:
        raise ValueError(f"this model classifies clips of {num_frames} frames; call reset() to start the next clip")
    if steps and frame.shape[0] != batch:
        raise ValueError(f"this clip started with {batch} frame(s) per step, got {frame.shape[0]}; "
                         "call reset() to start a clip of another batch size")


class OnnxSVFormer:
    """An exported svformer model on ONNX Runtime (CPU).

    Attributes from the file's metadata: ``kind`` ('clip' or 'stream'), ``class_names``, ``num_frames``,
    ``in_chans``, ``img_size`` (H, W), ``mean``/``std``, ``config`` (the training config as a dict)."""

    def __init__(self, path: str, threads: Optional[int] = None):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"ONNX file not found: {path}")
        meta = read_metadata(path)
        self.path = path
        self.kind = meta["kind"]
        self.class_names: List[str] = list(meta["class_names"])
        self.num_classes = len(self.class_names)
        self.num_frames = int(meta["num_frames"])
        self.in_chans = int(meta["in_chans"])
        self.img_size = tuple(meta["input_size"])
        self.mean, self.std = tuple(meta["mean"]), tuple(meta["std"])
        self.config = dict(meta.get("config") or {})
        self.states = meta.get("states", [])
        self.acc_shape = meta.get("acc_shape")
        self.session = _session(path, threads)

    def check_input(self, x: torch.Tensor) -> None:
        want = (self.in_chans, self.num_frames, *self.img_size)
        if x.dim() != 5 or tuple(x.shape[1:]) != want:
            raise ValueError(f"{self.path} classifies clips of shape (B, {', '.join(map(str, want))}), got "
                             f"{tuple(x.shape)}")

    def __call__(self, clips: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) normalised clips -> (B, classes) logits."""
        self.check_input(clips)
        if self.kind == "clip":
            out = self.session.run(["logits"], {"clip": clips.detach().float().cpu().numpy()})[0]
            return torch.from_numpy(out)
        stream = self.streamer()
        for t in range(self.num_frames):
            logits = stream.step(clips[:, :, t])
        return logits

    def streamer(self) -> "OnnxStream":
        if self.kind != "stream":
            raise ValueError(f"{self.path} is a whole-clip model; export a step model to stream "
                             f"(svformer export CHECKPOINT --kind stream)")
        return OnnxStream(self)


class OnnxStream:
    """Frame-by-frame classification with an exported step model; the states live here, as arrays.

    The states and the accumulator sit in two preallocated sets of buffers that ONNX Runtime reads from
    and writes into alternately, through two I/O bindings made once per batch size: a frame allocates
    nothing and binds nothing (fresh output arrays per frame would cost page faults on every call, and
    binding some eighty buffers costs about a millisecond of Python)."""

    def __init__(self, model: OnnxSVFormer):
        self.model = model
        self._batch = None
        self.reset()

    def reset(self) -> None:
        self.steps = 0
        if self._batch is not None:
            self._fill(self._buffers[0])

    def _fill(self, buffers) -> None:
        """Reset values into one set of (acc, states...) buffers."""
        buffers[0].fill(0.0)
        for s, v in zip(self.model.states, buffers[1:]):
            v.fill(s["reset"])

    def _prepare(self, b: int) -> None:
        """Buffers and the two bindings for batch size ``b``: binding i reads set i, writes set 1 - i."""
        m = self.model
        shapes = [[b, *m.acc_shape[1:]]] + [[b, *s["shape"][1:]] for s in m.states]
        self._buffers = [[np.empty(shape, np.float32) for shape in shapes] for _ in range(2)]
        self._fill(self._buffers[0])
        self._frame = np.empty((b, m.in_chans, *m.img_size), np.float32)
        self._step = np.zeros(1, np.int64)
        self._logits = np.empty((b, m.num_classes), np.float32)
        inputs = ["acc"] + [s["name"] for s in m.states]
        outputs = ["logits", "acc_out"] + [f"{s['name']}_out" for s in m.states]
        self._bindings = []
        for i in range(2):
            io = m.session.io_binding()
            io.bind_cpu_input("frame", self._frame)
            io.bind_cpu_input("step", self._step)
            for name, array in zip(inputs, self._buffers[i]):
                io.bind_cpu_input(name, array)
            for name, array in zip(outputs, [self._logits] + self._buffers[1 - i]):
                io.bind_output(name, "cpu", 0, np.float32, list(array.shape), array.ctypes.data)
            self._bindings.append(io)
        self._batch = b

    def step(self, frame: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) normalised frame -> (B, classes) logits of the frames seen since `reset`."""
        m = self.model
        check_frame(frame, m.in_chans, m.img_size, self.steps, m.num_frames, self._batch, owner=m.path)
        if self._batch != frame.shape[0]:  # a clip's first frame (check_frame refuses it later on)
            self._prepare(frame.shape[0])
        np.copyto(self._frame, frame.detach().float().cpu().numpy())
        self._step[0] = self.steps
        m.session.run_with_iobinding(self._bindings[self.steps % 2])
        self.steps += 1
        return torch.from_numpy(self._logits.copy())
