"""Video files written straight through FFmpeg's encoders and muxers (PyAV), not through svformer.

Every frame carries its own number as a pattern of black and white blocks that survives lossy coding
(`frame_number` reads it back), over a moving square so encoders predict motion and emit P- and
B-frames rather than all keyframes.
"""
from __future__ import annotations

import threading
import time
from fractions import Fraction
from typing import Optional, Sequence

import numpy as np

BITS = 8
BLOCK = 4


def numbered_frame(n: int, height: int, width: int) -> np.ndarray:
    img = np.full((height, width, 3), 96, np.uint8)
    y = (n * 3) % max(height - 8, 1)
    x = (n * 5) % max(width - 8, 1)
    img[y:y + 8, x:x + 8] = (200, 40, 40)
    for b in range(BITS):
        value = 255 if (n >> b) & 1 else 0
        img[height - BLOCK:, b * BLOCK:(b + 1) * BLOCK] = value
    return img


def frame_number(frame: np.ndarray) -> int:
    h = frame.shape[0]
    n = 0
    for b in range(BITS):
        block = frame[h - BLOCK + 1:h - 1, b * BLOCK + 1:(b + 1) * BLOCK - 1].astype(float)
        n |= int(block.mean() > 127) << b
    return n


def encode(path, codec: str = "mpeg4", num_frames: int = 60, size=(48, 64), rate: int = 25,
           b_frames: Optional[int] = None, gop: int = 12, pix_fmt: str = "yuv420p",
           pts: Optional[Sequence[int]] = None, time_base: Optional[Fraction] = None,
           audio_first: bool = False, container_format: Optional[str] = None, options: Optional[dict] = None,
           container_options: Optional[dict] = None, pace: float = 0.0, stop: Optional[threading.Event] = None):
    """Encode numbered frames 0..num_frames-1 to ``path``.

    ``pts``/``time_base``: explicit presentation timestamps (variable frame rate, a non-zero start).
    ``audio_first``: add an AAC stream before the video stream, with audio interleaved.
    ``pace``: seconds before each frame, as a live source delivers them (e.g. into a named pipe);
    ``stop``: an event that ends the writing early.
    """
    import av

    height, width = size
    with av.open(str(path), "w", format=container_format, options=container_options or {}) as out:
        audio = out.add_stream("aac", rate=16000) if audio_first else None
        video = out.add_stream(codec, rate=rate)
        video.height, video.width, video.pix_fmt = height, width, pix_fmt
        video.codec_context.gop_size = gop
        if b_frames is not None:
            video.codec_context.max_b_frames = b_frames
        opts = dict(options or {})
        if codec == "libx264":
            opts.setdefault("preset", "veryfast")
            opts.setdefault("sc_threshold", "0")
            if b_frames is not None:
                opts["bf"] = str(b_frames)
        elif codec == "mpeg4":
            opts.setdefault("qscale", "4")
            opts.setdefault("sc_threshold", "1000000000")
        video.options = opts
        if time_base is not None:
            video.time_base = time_base
            video.codec_context.time_base = time_base
        samples = 16000 // rate
        for i in range(num_frames):
            if stop is not None:
                if stop.wait(pace):
                    break
            elif pace:
                time.sleep(pace)
            frame = av.VideoFrame.from_ndarray(numbered_frame(i, height, width), format="rgb24")
            if pix_fmt != "yuv420p":
                frame = frame.reformat(format=pix_fmt)
            if pts is not None:
                frame.pts, frame.time_base = int(pts[i]), time_base
            for packet in video.encode(frame):
                out.mux(packet)
            if audio is not None:
                tone = (np.sin(np.arange(samples) * 0.2) * 0.1).astype(np.float32)[None]
                aframe = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
                aframe.sample_rate, aframe.pts = 16000, i * samples
                for packet in audio.encode(aframe):
                    out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        if audio is not None:
            for packet in audio.encode():
                out.mux(packet)


def decode_sequentially(path) -> list:
    """Every frame of the first video stream, as the decoder puts them out from the start."""
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]
