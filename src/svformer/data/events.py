"""Event-camera data: AEDAT 3.1 reading and writing, and events-to-frames conversion.

Events are a numpy structured array with fields ``t`` (int64, microseconds), ``x``, ``y`` (int16) and
``p`` (int8, polarity 0/1), sorted by time — tonic's representation.

AEDAT 3.1 (libcaer `events/common.h`, `events/polarity.h`; docs/data.md): an ASCII header of
'#' lines ending with ``#!END-HEADER\\r\\n``, then packets of a 28-byte little-endian header (int16 type,
int16 source, int32 eventSize, int32 tsOffset, int32 tsOverflow, int32 capacity, int32 number, int32
valid) followed by ``capacity`` events of ``eventSize`` bytes. Polarity events (type 1) are a uint32
(bit 0 valid, bit 1 polarity, bits 2-16 y, bits 17-31 x) and an int32 timestamp; the full time is
(tsOverflow << 31) | timestamp. The reader walks packet headers in Python and decodes each packet's
events with vectorised numpy.
"""
from __future__ import annotations

import os
from typing import Optional, Tuple

import numpy as np

EVENT_DTYPE = np.dtype([("t", np.int64), ("x", np.int16), ("y", np.int16), ("p", np.int8)])
HEADER_END = b"#!END-HEADER\r\n"
POLARITY_EVENT = 1
_PACKET_HEADER = np.dtype([("type", "<i2"), ("source", "<i2"), ("size", "<i4"), ("ts_offset", "<i4"),
                           ("ts_overflow", "<i4"), ("capacity", "<i4"), ("number", "<i4"), ("valid", "<i4")])


class AedatError(ValueError):
    """An AEDAT file that is not AEDAT 3.1 or is truncated/corrupt."""


def read_aedat31(path: str | os.PathLike) -> np.ndarray:
    """All valid polarity events of an AEDAT 3.1 file, sorted by time."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(b"#!AER-DAT3"):
        raise AedatError(f"{path}: not an AEDAT 3.x file (first line {data[:20]!r})")
    end = data.find(HEADER_END)
    if end < 0:
        raise AedatError(f"{path}: header has no '#!END-HEADER' line (truncated file?)")
    pos = end + len(HEADER_END)
    chunks = []
    while pos < len(data):
        if pos + 28 > len(data):
            raise AedatError(f"{path}: truncated packet header at byte {pos} ({len(data) - pos} of 28 bytes)")
        head = np.frombuffer(data, _PACKET_HEADER, 1, pos)[0]
        size, capacity = int(head["size"]), int(head["capacity"])
        body = pos + 28
        if size <= 0 or capacity < 0:
            raise AedatError(f"{path}: corrupt packet header at byte {pos} (eventSize {size}, capacity {capacity})")
        if body + size * capacity > len(data):
            raise AedatError(f"{path}: truncated packet at byte {pos}: {capacity} events of {size} bytes "
                             f"declared, {len(data) - body} bytes left")
        if int(head["type"]) == POLARITY_EVENT and capacity:
            if size != 8:
                raise AedatError(f"{path}: polarity packet at byte {pos} has eventSize {size}, expected 8")
            raw = np.frombuffer(data, np.dtype([("data", "<u4"), ("ts", "<i4")]), capacity, body)
            keep = (raw["data"] & 1).astype(bool)
            word, ts = raw["data"][keep], raw["ts"][keep]
            ev = np.empty(word.shape[0], EVENT_DTYPE)
            ev["t"] = (np.int64(int(head["ts_overflow"])) << 31) | ts.astype(np.int64)
            ev["x"] = (word >> 17) & 0x7FFF
            ev["y"] = (word >> 2) & 0x7FFF
            ev["p"] = (word >> 1) & 1
            chunks.append(ev)
        pos = body + size * capacity
    if not chunks:
        return np.empty(0, EVENT_DTYPE)
    events = np.concatenate(chunks)
    if np.any(np.diff(events["t"]) < 0):
        events = events[np.argsort(events["t"], kind="stable")]
    return events


def write_aedat31(path: str | os.PathLike, events: np.ndarray, packet_size: int = 4096,
                  source: str = "DVS128") -> None:
    """Write polarity events as AEDAT 3.1 (packets of ``packet_size`` events; timestamps beyond 2^31 µs
    go through the overflow field). Written atomically."""
    path = os.fspath(path)
    header = (b"#!AER-DAT3.1\r\n#Format: RAW\r\n" + f"#Source 1: {source}\r\n".encode()
              + b"#Start-Time: 2017-01-01 00:00:00 (TZ+0000)\r\n" + HEADER_END)
    tmp = f"{path}.part"
    with open(tmp, "wb") as f:
        f.write(header)
        for start in range(0, len(events), packet_size):
            ev = events[start:start + packet_size]
            t = ev["t"].astype(np.int64)
            for overflow in np.unique(t >> 31):
                part = ev[(t >> 31) == overflow]
                head = np.zeros(1, _PACKET_HEADER)
                head[0] = (POLARITY_EVENT, 1, 8, 4, int(overflow), len(part), len(part), len(part))
                body = np.empty(len(part), np.dtype([("data", "<u4"), ("ts", "<i4")]))
                body["data"] = (1 | (part["p"].astype(np.uint32) << 1) | (part["y"].astype(np.uint32) << 2)
                                | (part["x"].astype(np.uint32) << 17))
                body["ts"] = (part["t"] & 0x7FFFFFFF).astype(np.int32)
                f.write(head.tobytes())
                f.write(body.tobytes())
    os.replace(tmp, path)


def segment_bounds(t: np.ndarray, num_frames: int, split_by: str = "number") -> Tuple[np.ndarray, np.ndarray]:
    """[left, right) event index ranges of each frame, by spikingjelly's rules:
    'number': N // T events per frame, the remainder in the last; 'time': T equal durations from the
    first event, the last frame extended to the final event."""
    n = len(t)
    left, right = np.zeros(num_frames, np.int64), np.zeros(num_frames, np.int64)
    if split_by == "number":
        step = n // num_frames
        left = np.arange(num_frames) * step
        right = left + step
    elif split_by == "time":
        if n:
            dt = (int(t[-1]) - int(t[0])) // num_frames
            edges = np.arange(num_frames) * dt + int(t[0])
            left = np.searchsorted(t, edges)
            right = np.searchsorted(t, edges + dt)
    else:
        raise ValueError(f"split_by must be 'number' or 'time', got {split_by!r}")
    right[-1] = n
    return left, right


def events_to_frames(events: np.ndarray, num_frames: int, sensor_size=(128, 128), split_by: str = "number",
                     downsample: int = 1) -> np.ndarray:
    """Event counts per (frame, polarity, y, x): float32 (T, 2, H // downsample, W // downsample)."""
    h, w = sensor_size
    if h % downsample or w % downsample:
        raise ValueError(f"downsample {downsample} must divide the sensor size {sensor_size}")
    left, right = segment_bounds(events["t"], num_frames, split_by)
    oh, ow = h // downsample, w // downsample
    frame_of = np.zeros(len(events), np.int64)
    for i, (lo, hi) in enumerate(zip(left, right)):
        frame_of[lo:hi] = i
    inside = np.zeros(len(events), bool)
    for lo, hi in zip(left, right):
        inside[lo:hi] = True
    ev = events[inside]
    flat = (((frame_of[inside] * 2 + ev["p"].astype(np.int64)) * oh + ev["y"] // downsample) * ow
            + ev["x"] // downsample)
    counts = np.bincount(flat, minlength=num_frames * 2 * oh * ow)
    return counts.reshape(num_frames, 2, oh, ow).astype(np.float32)


GEOMETRY_RULES = ("downsample", "crop", "resize")


def _area_weights(out: int, n: int) -> np.ndarray:
    """(out, n): the share of input pixel k (the interval [k, k+1)) that falls into output pixel i (the
    interval [i n / out, (i + 1) n / out)); every column sums to 1, so counts are kept."""
    edges = np.arange(out + 1) * (n / out)
    lo, hi = edges[:-1, None], edges[1:, None]
    k = np.arange(n)[None, :]
    return np.clip(np.minimum(hi, k + 1) - np.maximum(lo, k), 0, None).astype(np.float32)


def fit_frames(frames: np.ndarray, size: Tuple[int, int], rule: str = "resize", downsample: int = 1) -> np.ndarray:
    """Event-count frames (T, 2, H, W) at the sensor's geometry brought to the model's ``size`` (h, w):

    - ``downsample``: sum the counts of ``downsample`` x ``downsample`` pixel blocks (the factor must divide
      the sensor size), then centre-crop (or zero-pad) to ``size``; DVS128 Gesture's rule;
    - ``crop``: centre-crop (or zero-pad) the full-resolution frames to ``size``;
    - ``resize``: area resampling to ``size``: an output pixel holds the events of the sensor area it
      covers (shared in proportion where a sensor pixel straddles two), so the total count is kept.
    """
    t, c, h, w = frames.shape
    if rule not in GEOMETRY_RULES:
        raise ValueError(f"unknown event geometry rule {rule!r}; choose one of {GEOMETRY_RULES}")
    if rule == "resize":
        ry, rx = _area_weights(size[0], h), _area_weights(size[1], w)
        return np.einsum("ih,tchw,jw->tcij", ry, frames.astype(np.float32), rx, optimize=True).astype(np.float32)
    if rule == "downsample":
        if h % downsample or w % downsample:
            raise ValueError(f"downsample {downsample} must divide the sensor size {w}x{h}")
        frames = frames.reshape(t, c, h // downsample, downsample, w // downsample, downsample).sum((3, 5))
        h, w = h // downsample, w // downsample
    out = np.zeros((t, c, *size), np.float32)
    src_y, dst_y = max((h - size[0]) // 2, 0), max((size[0] - h) // 2, 0)
    src_x, dst_x = max((w - size[1]) // 2, 0), max((size[1] - w) // 2, 0)
    ch, cw = min(h, size[0]), min(w, size[1])
    out[:, :, dst_y:dst_y + ch, dst_x:dst_x + cw] = frames[:, :, src_y:src_y + ch, src_x:src_x + cw]
    return out


def video_to_events(frames: np.ndarray, fps: float, threshold: float = 0.2, eps: float = 1e-3,
                    rng: Optional[np.random.Generator] = None, t0_us: int = 0) -> np.ndarray:
    """A simple event-camera model: per pixel, an ON (p=1) or OFF (p=0) event each time the log
    intensity moves by ``threshold`` from the pixel's reference, which then follows by that step;
    timestamps are interpolated linearly between frames. ``frames``: uint8 (T, H, W[, 3])."""
    rng = rng or np.random.default_rng(0)
    gray = frames.mean(-1) if frames.ndim == 4 else frames.astype(np.float64)
    log = np.log(gray.astype(np.float64) / 255.0 + eps)
    ref = log[0].copy()
    dt = 1e6 / fps
    out = []
    for k in range(1, len(log)):
        diff = log[k] - ref
        n = np.floor(np.abs(diff) / threshold).astype(np.int64)
        ys, xs = np.nonzero(n)
        if len(ys) == 0:
            continue
        counts = n[ys, xs]
        pol = (diff[ys, xs] > 0).astype(np.int8)
        rep_y, rep_x, rep_p = np.repeat(ys, counts), np.repeat(xs, counts), np.repeat(pol, counts)
        step = np.concatenate([np.arange(1, c + 1) for c in counts])
        frac = step / np.repeat(counts + 1, counts)
        t = t0_us + (k - 1 + frac) * dt + rng.uniform(0, 1, len(step))
        ev = np.empty(len(step), EVENT_DTYPE)
        ev["t"], ev["x"], ev["y"], ev["p"] = t.astype(np.int64), rep_x, rep_y, rep_p
        out.append(ev)
        ref[ys, xs] += np.sign(diff[ys, xs]) * counts * threshold
    if not out:
        return np.empty(0, EVENT_DTYPE)
    events = np.concatenate(out)
    return events[np.argsort(events["t"], kind="stable")]
