"""Event-camera recordings in the formats people record them in, read into one representation.

`read_recording(path)` returns an `EventRecording`: the events as a structured array (``t`` int64
microseconds, ``x``, ``y`` int16, ``p`` int8 polarity 0/1, sorted by time, image coordinates with the origin
in the top-left corner) and the sensor size (height, width) from the file's own header. The format is
chosen by the file's content, not its extension:

=============  ======================================  ==========================================
format         written by                              read with
=============  ======================================  ==========================================
AEDAT 2.0      jAER, v2e (DVS128 and DAVIS chips)      this module (big-endian address/timestamp)
AEDAT 3.1      cAER, DVS128 Gesture                    `events.read_aedat31`
AEDAT 4.0      DV, dv-processing                       the ``aedat`` package
EVT 2.0        Prophesee Metavision (``.raw``)         ``expelliarmus``; geometry from the header
EVT 3.0        Prophesee Metavision (``.raw``)         this module (vectorised numpy); geometry from the header
DAT            Prophesee (``.dat``, CD events)         ``expelliarmus``; geometry from the header
HDF5           ``events/{t,x,y,p}`` (e.g. DSEC)         ``h5py``
=============  ======================================  ==========================================

EVT 3.0 is decoded here because expelliarmus 1.1 misplaces events by 4096 us after some time-high words
(files from Metavision-compatible writers and ones written from the format description disagree with it).

A file of an unknown or damaged format raises `EventFileError` naming the file and what was expected.
Where a header holds no sensor size (HDF5 files without ``width``/``height`` attributes, AEDAT 2.0 from an
unknown chip), ``sensor_size`` must be given.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from .events import EVENT_DTYPE, AedatError, read_aedat31

FORMATS = ("aedat2", "aedat31", "aedat4", "evt2", "evt3", "dat", "hdf5")
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_TEXT = re.compile(rb"#[\t\x20-\x7e]*\r?\n")
# jAER chip classes of AEDAT 2.0 files: (height, width), address layout.
AEDAT2_CHIPS = {"dvs128": ((128, 128), "dvs128"), "davis240": ((180, 240), "davis"),
                "davis346": ((260, 346), "davis"), "davis640": ((480, 640), "davis")}


class EventFileError(AedatError):
    """An event file that cannot be read: unknown format, damaged, or without the information needed."""


@dataclass(frozen=True)
class EventRecording:
    """Events (`events.EVENT_DTYPE`, sorted by time) and the sensor's (height, width)."""

    events: np.ndarray
    sensor_size: Tuple[int, int]
    format: str
    path: str = ""


def detect_format(path: str) -> str:
    """The format of an event file from its first bytes (and, for Prophesee files, their header)."""
    with open(path, "rb") as f:
        head = f.read(4096)
    if head.startswith(b"#!AER-DAT2"):
        return "aedat2"
    if head.startswith(b"#!AER-DAT3"):
        return "aedat31"
    if head.startswith(b"#!AER-DAT4"):
        return "aedat4"
    if head.startswith(HDF5_MAGIC):
        return "hdf5"
    if head.startswith(b"%"):
        text = _prophesee_header(head).lower()
        if re.search(r"^(evt 3\.0|format evt3)", text, re.M):
            return "evt3"
        if re.search(r"^(evt 2\.0|format evt2)", text, re.M):
            return "evt2"
        if re.search(r"^(version|width|height|data file containing)", text, re.M):
            return "dat"
        raise EventFileError(f"{path}: a Prophesee header without 'evt 2.0'/'evt 3.0' or DAT fields; EVT 2.1 and "
                             f"other encodings are not supported")
    if head.startswith(b"#!AER-DAT1") or head.startswith(b"#"):
        raise EventFileError(f"{path}: an AEDAT file of an unsupported version ({head.splitlines()[0][:20]!r}); "
                             f"expected AEDAT 2.0, 3.1 or 4.0")
    raise EventFileError(f"{path}: not an event file svformer reads; expected AEDAT 2.0/3.1/4.0, Prophesee EVT 2.0/"
                         f"EVT 3.0 .raw or .dat, or HDF5 (first bytes {head[:12]!r})")


def _prophesee_header(data: bytes) -> str:
    """The '% ...' header lines of a Prophesee file, without the '% ' prefixes."""
    lines = []
    pos = 0
    while pos < len(data) and data[pos:pos + 1] == b"%":
        end = data.find(b"\n", pos)
        if end < 0:
            break
        lines.append(data[pos + 1:end].decode("latin-1").strip())
        pos = end + 1
    return "\n".join(lines)


def _prophesee_geometry(path: str) -> Tuple[Tuple[int, int], int]:
    """((height, width), t0 in µs) from a Prophesee header: 'geometry WxH', 'format ...;width=;height=', or
    DAT's 'Width'/'Height' lines; t0 from a 't0' line (0 if none)."""
    with open(path, "rb") as f:
        text = _prophesee_header(f.read(1 << 16))
    width = height = None
    m = re.search(r"^geometry\s+(\d+)x(\d+)", text, re.M | re.I)
    if m:
        width, height = int(m.group(1)), int(m.group(2))
    for key, value in re.findall(r"\b(width|height)\s*[=\s]\s*(\d+)", text, re.I):
        if key.lower() == "width" and width is None:
            width = int(value)
        elif key.lower() == "height" and height is None:
            height = int(value)
    m = re.search(r"^t0\s+(\d+)", text, re.M | re.I)
    if width is None or height is None:
        raise EventFileError(f"{path}: the header gives no sensor size (no 'geometry WxH' or width/height)")
    return (height, width), int(m.group(1)) if m else 0


def _require(module: str):
    """Import one of the readers' libraries, or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"reading this event format needs {module}: pip install 'svformer[events]'") from None


def _from_fields(t, x, y, p) -> np.ndarray:
    events = np.empty(len(t), EVENT_DTYPE)
    events["t"], events["x"], events["y"] = t, x, y
    events["p"] = (np.asarray(p) > 0).astype(np.int8)
    return events


def _read_aedat2(path: str, sensor_size: Optional[Tuple[int, int]]) -> EventRecording:
    with open(path, "rb") as f:
        data = f.read()
    pos, chip = 0, None
    # Header lines: '#' ... CRLF, printable text. The test matters: an event's address may start with '#'.
    while data.startswith(b"#", pos):
        end = data.find(b"\n", pos, pos + 4096)
        line = data[pos:end + 1] if end >= 0 else b""
        if not line or not _TEXT.fullmatch(line):
            break
        text = line.decode("ascii").strip()
        if "AEChip" in text:
            chip = text.split(":", 1)[-1].strip()
        pos = end + 1
    body = len(data) - pos
    if body % 8:
        raise EventFileError(f"{path}: truncated AEDAT 2.0 data: {body} bytes is not a whole number of 8-byte events")
    raw = np.frombuffer(data, np.dtype([("a", ">u4"), ("t", ">i4")]), body // 8, pos)
    known = next((v for k, v in AEDAT2_CHIPS.items() if chip and k in chip.lower()), None)
    if known is None and sensor_size is None:
        raise EventFileError(f"{path}: AEDAT 2.0 from chip {chip or '(no AEChip header line)'}, whose address layout "
                             f"and size svformer does not know; known: {', '.join(AEDAT2_CHIPS)}")
    size, layout = known if known else (tuple(sensor_size), "davis")
    a = raw["a"]
    if layout == "dvs128":  # bit 15 external event, y 14-8, x 7-1, polarity 0 (1 = ON)
        keep = (a & 0x8000) == 0
        x, y, p = (a >> 1) & 0x7F, (a >> 8) & 0x7F, a & 1
    else:  # DAVIS: bit 31 APS/IMU, y 30-22, x 21-12, polarity 11 (1 = ON), bit 10 special
        keep = ((a >> 31) == 0) & (((a >> 10) & 1) == 0)
        x, y, p = (a >> 12) & 0x3FF, (a >> 22) & 0x1FF, (a >> 11) & 1
    # jAER puts (0, 0) in the lower-left corner; images have it top-left.
    t = _unwrap(raw["t"][keep].astype(np.int64), 32)
    events = _from_fields(t, x[keep], size[0] - 1 - y[keep].astype(np.int64), p[keep])
    return EventRecording(events, size, "aedat2", path)


def _unwrap(t: np.ndarray, bits: int) -> np.ndarray:
    """Timestamps of a counter that wraps at 2**bits, made monotonic where it wrapped (a drop of more than
    half the range)."""
    if len(t) < 2:
        return t
    period = 1 << bits
    drops = np.diff(t) < -(period // 2)
    if not drops.any():
        return t
    return t + np.concatenate([[0], np.cumsum(drops)]) * period


def _read_aedat4(path: str) -> EventRecording:
    aedat = _require("aedat")

    try:
        decoder = aedat.Decoder(path)
        streams = decoder.id_to_stream()
        event_streams = {i: s for i, s in streams.items() if s.get("type") == "events"}
        if not event_streams:
            raise EventFileError(f"{path}: an AEDAT 4.0 file without an event stream")
        sid = min(event_streams)
        chunks = [packet["events"] for packet in decoder
                  if packet["stream_id"] == sid and "events" in packet]
    except EventFileError:
        raise
    except Exception as e:  # the Rust decoder raises plain exceptions for damaged files
        raise EventFileError(f"{path}: damaged AEDAT 4.0 file ({e})") from None
    size = (int(event_streams[sid]["height"]), int(event_streams[sid]["width"]))
    if not chunks:
        return EventRecording(np.empty(0, EVENT_DTYPE), size, "aedat4", path)
    ev = np.concatenate(chunks)
    return EventRecording(_from_fields(ev["t"].astype(np.int64), ev["x"], ev["y"], ev["on"]), size, "aedat4", path)


def _header_end(data: bytes) -> int:
    pos = 0
    while data[pos:pos + 1] == b"%":
        end = data.find(b"\n", pos)
        if end < 0:
            return len(data)
        pos = end + 1
    return pos


def decode_evt3(data: bytes) -> np.ndarray:
    """Events of an EVT 3.0 stream (the bytes after the header), vectorised.

    16-bit little-endian words, the type in the top 4 bits: EVT_ADDR_Y (0x0, y), EVT_ADDR_X (0x2, one event
    at x with polarity bit 11), VECT_BASE_X (0x3, x base and polarity for the vectors after it), VECT_12
    (0x4) and VECT_8 (0x5, a mask of events at base + bit, then base += 12 or 8), EVT_TIME_LOW (0x6, time
    bits 0-11), EVT_TIME_HIGH (0x8, time bits 12-23 of a counter that wraps every 2**24 us). Other words
    (triggers, continued, others) carry no CD events.
    """
    if len(data) % 2:
        data = data[:-1]
    words = np.frombuffer(data, "<u2")
    kind, value = (words >> 12).astype(np.uint8), (words & 0xFFF).astype(np.int32)
    index = np.arange(len(words), dtype=np.int32)
    single = np.flatnonzero(kind == 0x2)  # words carrying one event
    vector = np.flatnonzero((kind == 0x4) | (kind == 0x5))  # words carrying up to 12 or 8

    def latest(mask, positions):
        """For each of ``positions``, the index of the latest word before it where ``mask`` holds (-1: none)."""
        at = np.where(mask, index, -1)
        np.maximum.accumulate(at, out=at)
        return at[positions]

    def lookup(i, values, default=0):
        return np.where(i >= 0, values[np.maximum(i, 0)], default)

    # Time: the time-high words unwrapped (the 24-bit counter wraps every 2**24 us), then high << 12 | low.
    high_words = np.flatnonzero(kind == 0x8)
    high = np.zeros(len(words), np.int64)
    if len(high_words):
        hv = value[high_words].astype(np.int64)
        high[high_words] = hv + (np.concatenate([[0], np.cumsum(np.diff(hv) < 0)]) << 12)
    carriers = np.concatenate([single, vector])
    t = (lookup(latest(kind == 0x8, carriers), high) << 12) | lookup(latest(kind == 0x6, carriers), value)
    y = lookup(latest(kind == 0x0, carriers), value & 0x7FF)
    ns = len(single)
    # Vectors: a word's base is its VECT_BASE_X's x plus the widths of the vector words between them.
    width = np.where(kind[vector] == 0x4, 12, 8)
    base_at = latest(kind == 0x3, vector)
    done = np.cumsum(width) - width  # widths of the vector words before each, over the whole stream
    first = np.searchsorted(vector, np.maximum(base_at, 0))  # the first vector word after its base word
    base = lookup(base_at, value & 0x7FF) + done - done[np.minimum(first, max(len(vector) - 1, 0))] \
        if len(vector) else np.zeros(0, np.int32)
    vpol = lookup(base_at, value >> 11 & 1)
    bits = (value[vector, None] >> np.arange(12, dtype=np.int32)) & 1
    bits[width == 8, 8:] = 0
    rows, cols = np.nonzero(bits)
    events = np.empty(ns + len(rows), EVENT_DTYPE)
    events["t"] = np.concatenate([t[:ns], t[ns:][rows]])
    events["x"] = np.concatenate([value[single] & 0x7FF, base[rows] + cols])
    events["y"] = np.concatenate([y[:ns], y[ns:][rows]])
    events["p"] = np.concatenate([value[single] >> 11 & 1, vpol[rows]])
    order = np.argsort(np.concatenate([single, vector[rows]]), kind="stable")  # back to stream order
    return events[order]


def _read_prophesee(path: str, fmt: str) -> EventRecording:
    size, t0 = _prophesee_geometry(path)
    if fmt == "evt3":
        with open(path, "rb") as f:
            data = f.read()
        ev = decode_evt3(data[_header_end(data):])
    else:
        Wizard = _require("expelliarmus").Wizard
        try:
            ev = Wizard(encoding=fmt).read(path)
        except Exception as e:  # expelliarmus raises RuntimeError/ValueError with its own messages
            raise EventFileError(f"{path}: damaged {fmt.upper()} file ({e})") from None
    if len(ev) and (ev["x"].max() >= size[1] or ev["y"].max() >= size[0]):
        raise EventFileError(f"{path}: events outside the {size[1]}x{size[0]} sensor its header declares (damaged file?)")
    return EventRecording(_from_fields(ev["t"].astype(np.int64) + t0, ev["x"], ev["y"], ev["p"]), size, fmt, path)


def _read_hdf5(path: str, sensor_size: Optional[Tuple[int, int]]) -> EventRecording:
    h5py = _require("h5py")
    try:
        with h5py.File(path, "r") as f:
            group = f["events"] if "events" in f and isinstance(f["events"], h5py.Group) else f
            missing = [k for k in "txyp" if k not in group]
            if missing:
                raise EventFileError(f"{path}: HDF5 without event datasets {missing}; expected events/t, events/x, "
                                     f"events/y, events/p (or t, x, y, p at the root)")
            t, x, y, p = (group[k][()] for k in "txyp")
            offset = 0
            for holder in (f, group):
                if "t_offset" in holder:
                    offset = int(np.asarray(holder["t_offset"][()]).ravel()[0])
            size = None
            for holder in (group, f):
                attrs = holder.attrs
                if "height" in attrs and "width" in attrs:
                    size = (int(attrs["height"]), int(attrs["width"]))
                elif "sensor_size" in attrs:  # (width, height), tonic's order
                    w, h = (int(v) for v in np.ravel(attrs["sensor_size"])[:2])
                    size = (h, w)
                if size:
                    break
    except (OSError, KeyError) as e:
        raise EventFileError(f"{path}: unreadable HDF5 file ({e})") from None
    size = size or (tuple(sensor_size) if sensor_size else None)
    if size is None:
        raise EventFileError(f"{path}: HDF5 events without a sensor size (attributes height/width or sensor_size); "
                             f"give it explicitly (data.sensor_size=[H, W])")
    if not (len(t) == len(x) == len(y) == len(p)):
        raise EventFileError(f"{path}: event datasets of different lengths (t {len(t)}, x {len(x)}, y {len(y)}, "
                             f"p {len(p)})")
    return EventRecording(_from_fields(np.asarray(t, np.int64) + offset, x, y, p), size, "hdf5", path)


def read_recording(path: str | os.PathLike, sensor_size: Optional[Tuple[int, int]] = None) -> EventRecording:
    """Read any supported event file (see the module docstring). ``sensor_size`` (height, width) is used
    only where the file does not say."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise EventFileError(f"{path} is a folder, not an event file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"event file not found: {path}")
    fmt = detect_format(path)
    if fmt == "aedat31":
        rec = EventRecording(read_aedat31(path), (128, 128) if sensor_size is None else tuple(sensor_size),
                             fmt, path)
    elif fmt == "aedat2":
        rec = _read_aedat2(path, sensor_size)
    elif fmt == "aedat4":
        rec = _read_aedat4(path)
    elif fmt == "hdf5":
        rec = _read_hdf5(path, sensor_size)
    else:
        rec = _read_prophesee(path, fmt)
    events = rec.events
    if len(events) and np.any(np.diff(events["t"]) < 0):  # out-of-order packets
        events = events[np.argsort(events["t"], kind="stable")]
        rec = EventRecording(events, rec.sensor_size, rec.format, path)
    h, w = rec.sensor_size
    if len(events) and (events["x"].min() < 0 or events["y"].min() < 0 or events["x"].max() >= w
                        or events["y"].max() >= h):
        raise EventFileError(f"{path}: events outside the {w}x{h} sensor")
    return rec
