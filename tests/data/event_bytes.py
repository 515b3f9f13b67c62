"""Event files written byte by byte from the formats' public descriptions, for formats and features no
installed writer produces (EVT 3.0's vectorised words and 24-bit time wrap-around, EVT 2.0's time-high
words, jAER's AEDAT 2.0 chip layouts). Independent of svformer's readers and of the libraries they use."""
import numpy as np


def prophesee_header(kind: str, width: int, height: int) -> bytes:
    return (f"% camera_integrator_name Prophesee\n% date 2026-11-29 10:00:00\n% evt {kind}\n"
            f"% format EVT{kind[0]};height={height};width={width}\n% geometry {width}x{height}\n"
            f"% system_ID 49\n% end\n").encode()


def evt3_bytes(groups, width=640, height=480, wrap_words=True) -> bytes:
    """EVT 3.0 from ``groups`` of (t, y, p, xs): events at one time, row and polarity. Runs of x are
    written as VECT_BASE_X + VECT_12/VECT_8 masks, lone x as EVT_ADDR_X; time as TIME_HIGH/TIME_LOW words
    of the 24-bit counter, which wraps every 2**24 us."""
    words, high, low, row = [], None, None, None
    for t, y, p, xs in groups:
        t24 = t % (1 << 24)
        if t24 >> 12 != high:
            high = t24 >> 12
            words.append(0x8000 | high)
        if t24 & 0xFFF != low:
            low = t24 & 0xFFF
            words.append(0x6000 | low)
        if y != row:
            row = y
            words.append(0x0000 | y)
        xs = sorted(xs)
        if len(xs) == 1:
            words.append(0x2000 | (p << 11) | xs[0])
            continue
        base = xs[0]
        words.append(0x3000 | (p << 11) | base)
        remaining = set(xs)
        while remaining:
            width_bits = 12 if max(remaining) - base >= 8 else 8
            mask = sum(1 << (x - base) for x in remaining if x - base < width_bits)
            words.append((0x4000 if width_bits == 12 else 0x5000) | mask)
            remaining = {x for x in remaining if x - base >= width_bits}
            base += width_bits
    return prophesee_header("3.0", width, height) + np.array(words, "<u2").tobytes()


def evt2_bytes(events, width=640, height=480) -> bytes:
    """EVT 2.0: a TIME_HIGH word (timestamp bits 33..6) whenever it changes, then CD_ON/CD_OFF words with
    the low 6 bits, x and y."""
    words, high = [], None
    for t, x, y, p in zip(events["t"], events["x"], events["y"], events["p"]):
        if int(t) >> 6 != high:
            high = int(t) >> 6
            words.append((0x8 << 28) | high)
        words.append(((0x1 if p else 0x0) << 28) | ((int(t) & 0x3F) << 22) | (int(x) << 11) | int(y))
    return prophesee_header("2.0", width, height) + np.array(words, "<u4").tobytes()


def aedat2_bytes(events, chip: str, height: int, extra_addresses=()) -> bytes:
    """jAER AEDAT 2.0: big-endian int32 address and int32 timestamp per event, (0, 0) in the lower-left
    corner. DVS128: y bits 14-8, x 7-1, polarity 0; DAVIS: y 30-22, x 21-12, polarity 11, bit 31 set for
    APS/IMU samples. ``extra_addresses``: (address, t) pairs appended as they are (e.g. APS samples)."""
    y = height - 1 - events["y"].astype(np.int64)
    x, p = events["x"].astype(np.int64), events["p"].astype(np.int64)
    address = (y << 8) | (x << 1) | p if chip == "DVS128" else (y << 22) | (x << 12) | (p << 11)
    raw = np.empty(len(events) + len(extra_addresses), np.dtype([("a", ">u4"), ("t", ">i4")]))
    raw["a"][:len(events)], raw["t"][:len(events)] = address, events["t"]
    for i, (a, t) in enumerate(extra_addresses):
        raw[len(events) + i] = (a, t)
    header = ("#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n"
              "# Data format is int32 address, int32 timestamp (8 bytes total), repeated for each event\r\n"
              "# Timestamps tick is 1 us\r\n"
              f"# AEChip: {'ch.unizh.ini.jaer.chip.retina.DVS128' if chip == 'DVS128' else 'eu.seebetter.ini.chips.davis.' + chip}\r\n")
    return header.encode() + raw.tobytes()
