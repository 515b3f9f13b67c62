"""Video decoding with PyAV behind a small interface.

`VideoReader(path)` opens a file and builds its frame index from the container's packets, without
decoding: frame ``n`` is the n-th frame in presentation order, i.e. the n-th smallest packet timestamp.
This holds for every container and codec FFmpeg reads, B-frames, a non-zero start time and a variable
frame rate included, and the frame count is what the file holds, whatever its header says. Where a
stream has no usable timestamps (missing or repeated), frame ``n`` is the n-th frame the decoder puts
out from the start, and reads decode from the start.

`read(indices)` returns exactly the frames with those 0-based indices, in the order asked, as a uint8
array (len(indices), H, W, 3) RGB. A read that starts far into the file seeks to the keyframe before the
first wanted frame instead of decoding from the beginning.

Every failure to open or decode raises `VideoError` naming the file and the cause (and the frame).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

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


@dataclass(frozen=True)
class FrameIndex:
    """Where the frames of one video stream are, from its packets.

    ``pts``: the frames' presentation timestamps in presentation order (frame n has pts[n]), or None
    when the stream's timestamps cannot identify frames (then frames are counted in decoder output
    order). ``seek_points``: for each keyframe, (first frame index it can decode, timestamp to seek to),
    in increasing order; empty when seeking is not possible. ``empty``: packets without data (AVI's
    dropped-frame markers), which hold no frame but count in a container's header.
    """

    num_frames: int
    pts: Optional[np.ndarray]
    seek_points: tuple
    empty: int = 0

    def seek_target(self, first: int) -> Optional[int]:
        """The seek timestamp of the last keyframe whose frames start at or before frame ``first``."""
        target = None
        for frame, timestamp in self.seek_points:
            if frame > first:
                break
            target = timestamp
        return target


def build_index(packets) -> FrameIndex:
    """A `FrameIndex` from a stream's demuxed packets (anything with pts, dts, size, is_keyframe).

    Packets without data (the demuxer's final flush packet, dropped-frame markers) hold no frame.
    Keyframes are sought by their decode timestamp where they have one: most demuxers (AVI, MP4) index
    keyframes by it, and it is never later than the presentation timestamp, so a seek never lands
    after the keyframe wanted.
    """
    pts, keys, empty = [], [], 0
    for p in packets:
        if not p.size:
            empty += p.dts is not None  # the demuxer's final flush packet has no timestamp
            continue
        pts.append(p.pts)
        if p.is_keyframe and p.pts is not None:
            keys.append((p.pts, p.dts if p.dts is not None else p.pts))
    n = len(pts)
    if n == 0 or any(t is None for t in pts) or len(set(pts)) != n:
        return FrameIndex(n, None, (), empty)
    order = np.sort(np.asarray(pts, dtype=np.int64))
    seek_points = sorted((int(np.searchsorted(order, k)), int(min(k, d))) for k, d in keys)
    return FrameIndex(n, order, tuple(seek_points), empty)


# Seeking costs a container-level seek plus decoding from the previous keyframe; below this many frames
# from the start, decoding straight through is as fast and simpler.
SEEK_THRESHOLD = 48


class VideoReader:
    """Random access to the frames of one video file (AVI, MP4, MKV, ... anything FFmpeg reads)."""

    def __init__(self, path: str | os.PathLike, index: Optional[FrameIndex] = None):
        """``index``: a `FrameIndex` built earlier for this same file (skips reading the packets)."""
        import av

        self.path = os.fspath(path)
        if os.path.isdir(self.path):
            raise VideoError(f"{self.path}: is a directory, not a video file")
        if not os.path.isfile(self.path):
            raise VideoError(f"{self.path}: no such video file")
        try:
            self._container = av.open(self.path)
        except Exception as e:
            raise VideoError(f"{self.path}: cannot open video ({type(e).__name__}: {e})") from e
        if not self._container.streams.video:
            self._container.close()
            raise VideoError(f"{self.path}: the file has no video stream")
        fmt = self._container.format.name
        if fmt == "image2" or fmt.endswith("_pipe"):  # FFmpeg reads a PNG or JPEG as a one-frame stream
            self._container.close()
            raise VideoError(f"{self.path}: this is an image ({fmt.replace('_pipe', '').upper()}), not a video")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        try:
            self.index = index or self._read_index()
        except VideoError:
            self.close()
            raise
        if self.index.num_frames == 0:
            self.close()
            raise VideoError(f"{self.path}: the video stream has no frames")
        self._position: Dict[int, int] = ({} if self.index.pts is None else
                                          {int(t): i for i, t in enumerate(self.index.pts)})
        rate = self._stream.average_rate or self._stream.guessed_rate or self._stream.base_rate
        ctx = self._stream.codec_context
        self.info = VideoInfo(self.path, self.index.num_frames, float(rate) if rate else 0.0, ctx.width, ctx.height)
        # What the container's header claims (0: not stored). More than the index holds means a file
        # cut short; `svformer data check` reports it, reading uses the frames that are there.
        self.header_frames = int(self._stream.frames or 0)

    def _read_index(self) -> FrameIndex:
        try:
            index = build_index(self._container.demux(self._stream))
            self._container.seek(0, stream=self._stream)
        except Exception as e:
            raise VideoError(f"{self.path}: cannot read packets ({type(e).__name__}: {e})") from e
        return index

    def __len__(self) -> int:
        return self.info.num_frames

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Frames at ``indices`` (any order, repeats allowed) as uint8 (len(indices), H, W, 3) RGB."""
        if len(indices) == 0:
            raise ValueError(f"{self.path}: no frame indices requested")
        wanted = sorted(set(int(i) for i in indices))
        if wanted[0] < 0 or wanted[-1] >= len(self):
            raise ValueError(f"{self.path}: frame indices must be in [0, {len(self)}), got {wanted[0]}..{wanted[-1]}")
        target = self.index.seek_target(wanted[0]) if wanted[0] >= SEEK_THRESHOLD else None
        frames = self._decode(wanted, target) if target is not None else {}
        if len(frames) < len(wanted):
            # No seek, or it landed after a wanted frame: decode from the start.
            frames = self._decode(wanted, None)
        return np.stack([frames[i] for i in indices])

    def _indexed_frames(self, seek_to: Optional[int]):
        """(frame index, decoded frame) in the decoder's output order, from ``seek_to`` (a timestamp;
        None: the start). Frames whose timestamp is not in the index (decoder artefacts, not frames of
        the file) are left out."""
        self._container.seek(0 if seek_to is None else seek_to, stream=self._stream, backward=True, any_frame=False)
        for count, frame in enumerate(self._container.decode(self._stream)):
            idx = count if self.index.pts is None else self._position.get(frame.pts, -1)
            if idx >= 0:
                yield idx, frame

    def _decode(self, wanted: List[int], seek_to: Optional[int]) -> dict:
        """Decode from ``seek_to`` (a timestamp; None: the start) until every wanted frame is seen.

        After a seek, returns what it has as soon as it sees a frame later than a missing wanted one
        (the caller then decodes from the start). From the start, a wanted frame never seen is an error.
        """
        import av

        pending, frames = set(wanted), {}
        last_good = -1
        try:
            for idx, frame in self._indexed_frames(seek_to):
                if seek_to is not None and idx > min(pending):
                    return frames
                last_good = idx
                if idx in pending:
                    frames[idx] = frame.to_ndarray(format="rgb24")
                    pending.discard(idx)
                    if not pending:
                        return frames
        except (av.error.FFmpegError, ValueError, OSError) as e:
            if seek_to is not None:
                return frames
            raise VideoError(f"{self.path}: decoding failed after frame {last_good} "
                             f"(wanted frame {min(pending)}): {type(e).__name__}: {e}") from e
        if seek_to is None and pending:
            missing = min(pending)
            if missing < last_good:
                raise VideoError(f"{self.path}: frame {missing} of {len(self)} could not be decoded "
                                 f"(damaged data; the decoder went on at frame {last_good})")
            raise VideoError(f"{self.path}: frame {missing} could not be decoded: the decoder stopped after "
                             f"frame {last_good} of {len(self)} (damaged or cut short?)")
        return frames

    def verify(self) -> None:
        """Decode every frame (without converting it) and raise `VideoError` at the first one that does
        not decode or is missing."""
        import av

        expected = 0
        try:
            for idx, _ in self._indexed_frames(None):
                if idx != expected:
                    break
                expected += 1
        except (av.error.FFmpegError, ValueError, OSError) as e:
            raise VideoError(f"{self.path}: decoding failed at frame {expected} of {len(self)}: "
                             f"{type(e).__name__}: {e}") from e
        if expected < len(self):
            raise VideoError(f"{self.path}: frame {expected} of {len(self)} could not be decoded "
                             f"(damaged or cut short)")

    def read_all(self) -> np.ndarray:
        return self.read(range(len(self)))

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: int = 25, codec: str | None = None,
                quality: int = 4, b_frames: Optional[int] = None) -> None:
    """Write uint8 RGB frames (T, H, W, 3) to a real video file; the codec follows the extension
    (.avi: MPEG-4 Part 2 like UCF101's XVID, .mp4: H.264). ``b_frames``: at most that many consecutive
    B-frames (None: the encoder's default, none for MPEG-4, up to 3 for H.264). Written atomically."""
    import av

    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    codec = codec or {".avi": "mpeg4", ".mp4": "libx264"}.get(ext, "mpeg4")
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{path}: frames must be (T, H, W, 3) uint8, got shape {frames.shape}")
    tmp = f"{path}.part{os.getpid()}{ext}"
    try:
        with av.open(tmp, "w") as out:
            stream = out.add_stream(codec, rate=fps)
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            if b_frames is not None:
                stream.codec_context.max_b_frames = b_frames
            if codec == "mpeg4":
                stream.options = {"qscale": str(quality)}
                stream.codec_context.qscale = quality
            elif codec == "libx264":
                stream.options = {"crf": "18", "preset": "veryfast",
                                  **({} if b_frames is None else {"bf": str(b_frames)})}
            for image in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
