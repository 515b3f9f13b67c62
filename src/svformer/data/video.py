"""Video decoding with PyAV behind a small interface.

`VideoReader(path)` opens a file, reads its metadata without decoding frames (the frame count comes from
the container or, when the container does not store it, from counting packets), and `read(indices)`
returns exactly the frames with those 0-based indices, in the order asked, as a uint8 array
(len(indices), H, W, 3). Frames are identified by their presentation timestamps, so reading is
frame-accurate with B-frames and after a seek; far-away start indices seek to the keyframe before them
instead of decoding from the beginning.

Every failure to open or decode raises `VideoError` naming the file and the cause.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from typing import List, Sequence

import numpy as np


class VideoError(RuntimeError):
    """A video that cannot be opened, has no video stream, or cannot be decoded."""


@dataclass(frozen=True)
class VideoInfo:
    path: str
    num_frames: int
    fps: float
    width: int
    height: int


# Seeking costs a container-level seek plus decoding from the previous keyframe; below this many frames
# from the start, decoding straight through is as fast and simpler.
SEEK_THRESHOLD = 48


class VideoReader:
    """Random access to the frames of one video file (AVI, MP4, ... anything FFmpeg reads)."""

    def __init__(self, path: str | os.PathLike):
        import av

        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise VideoError(f"{self.path}: no such video file")
        try:
            self._container = av.open(self.path)
        except Exception as e:
            raise VideoError(f"{self.path}: cannot open video ({type(e).__name__}: {e})") from e
        if not self._container.streams.video:
            self._container.close()
            raise VideoError(f"{self.path}: the file has no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        rate = self._stream.average_rate or self._stream.guessed_rate or self._stream.base_rate
        if not rate:
            self.close()
            raise VideoError(f"{self.path}: the video stream has no frame rate")
        self._rate = Fraction(rate)
        self._time_base = self._stream.time_base
        self._start = self._stream.start_time or 0
        self.info = VideoInfo(self.path, self._count_frames(), float(self._rate),
                              self._stream.codec_context.width, self._stream.codec_context.height)

    def _count_frames(self) -> int:
        n = self._stream.frames
        if n and n > 0:
            return int(n)
        # The container does not store a count (common in AVI written by some tools): count packets.
        try:
            n = sum(1 for p in self._container.demux(self._stream) if p.size > 0)
            self._container.seek(0, stream=self._stream)
        except Exception as e:
            raise VideoError(f"{self.path}: cannot read packets ({type(e).__name__}: {e})") from e
        if n == 0:
            raise VideoError(f"{self.path}: the video stream has no frames")
        return n

    def __len__(self) -> int:
        return self.info.num_frames

    def _index_of(self, frame) -> int:
        if frame.pts is None:
            return -1
        return int(round(float((frame.pts - self._start) * self._time_base * self._rate)))

    def _pts_of(self, index: int) -> int:
        return int(self._start + round(Fraction(index) / self._rate / self._time_base))

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Frames at ``indices`` (any order, repeats allowed) as uint8 (len(indices), H, W, 3) RGB."""
        import av

        if len(indices) == 0:
            raise ValueError(f"{self.path}: no frame indices requested")
        wanted = sorted(set(int(i) for i in indices))
        if wanted[0] < 0 or wanted[-1] >= len(self):
            raise ValueError(f"{self.path}: frame indices must be in [0, {len(self)}), got {wanted[0]}..{wanted[-1]}")
        frames = {}
        try:
            frames = self._decode(wanted, seek=wanted[0] >= SEEK_THRESHOLD)
            if len(frames) < len(wanted):
                # A seek can land after a wanted frame or timestamps can be missing: decode from the start.
                frames = self._decode(wanted, seek=False)
        except av.error.FFmpegError as e:
            raise VideoError(f"{self.path}: cannot decode ({type(e).__name__}: {e})") from e
        missing = [i for i in wanted if i not in frames]
        if missing:
            raise VideoError(f"{self.path}: frames {missing[:5]} could not be decoded "
                             f"(the file stores {len(self)} frames; is it truncated?)")
        return np.stack([frames[int(i)] for i in indices])

    def _decode(self, wanted: List[int], seek: bool) -> dict:
        if seek:
            self._container.seek(self._pts_of(wanted[0]), stream=self._stream, backward=True, any_frame=False)
        else:
            self._container.seek(0, stream=self._stream)
        pending = set(wanted)
        frames = {}
        sequential = -1
        for frame in self._container.decode(self._stream):
            idx = self._index_of(frame)
            sequential += 1
            if idx < 0:
                if seek:
                    return frames  # no timestamps: only counting from the start is reliable
                idx = sequential
            if idx in pending:
                frames[idx] = frame.to_ndarray(format="rgb24")
                pending.discard(idx)
                if not pending:
                    break
            if idx > wanted[-1]:
                break
        return frames

    def read_all(self) -> np.ndarray:
        return self.read(range(len(self)))

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: int = 25, codec: str | None = None,
                quality: int = 4) -> None:
    """Write uint8 RGB frames (T, H, W, 3) to a real video file; the codec follows the extension
    (.avi: MPEG-4 Part 2 like UCF101's XVID, .mp4: H.264). Written atomically."""
    import av

    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    codec = codec or {".avi": "mpeg4", ".mp4": "libx264"}.get(ext, "mpeg4")
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{path}: frames must be (T, H, W, 3) uint8, got shape {frames.shape}")
    tmp = f"{path}.part{ext}"
    with av.open(tmp, "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        if codec == "mpeg4":
            stream.options = {"qscale": str(quality)}
            stream.codec_context.qscale = quality
        elif codec == "libx264":
            stream.options = {"crf": "18", "preset": "veryfast"}
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    os.replace(tmp, path)
