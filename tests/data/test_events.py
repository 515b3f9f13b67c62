"""AEDAT 3.1, events-to-frames against the field's rule, DVS128 Gesture cutting and caching."""
import os
import struct

import numpy as np
import pytest

from svformer.data.dvs_gesture import DVSGesture, gesture_samples, read_labels, write_synthetic_gesture
from svformer.data.events import (EVENT_DTYPE, AedatError, events_to_frames, read_aedat31, video_to_events,
                                  write_aedat31)
from svformer.data.lists import DatasetLayoutError


def random_events(n, seed=0, t0=0, span=2_000_000):
    rng = np.random.default_rng(seed)
    ev = np.empty(n, EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(t0, t0 + span, n))
    ev["x"], ev["y"], ev["p"] = rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n)
    return ev


def _packet(etype, events_raw, overflow=0):
    n = len(events_raw)
    head = struct.pack("<hhiiiiii", etype, 1, 8, 4, overflow, n, n, n)
    return head + b"".join(struct.pack("<Ii", d, t) for d, t in events_raw)


def test_round_trip_with_overflow(tmp_path):
    ev = random_events(10_000, t0=(1 << 31) - 1_000_000)  # crosses the 2^31 us overflow
    path = str(tmp_path / "rt.aedat")
    write_aedat31(path, ev, packet_size=1000)
    assert np.array_equal(read_aedat31(path), ev)


def test_hand_written_packets_valid_bits_and_other_types(tmp_path):
    def word(x, y, p, valid=1):
        return valid | (p << 1) | (y << 2) | (x << 17)

    data = b"#!AER-DAT3.1\r\n#Format: RAW\r\n#!END-HEADER\r\n"
    data += _packet(1, [(word(3, 5, 1), 10), (word(7, 9, 0, valid=0), 11), (word(127, 0, 0), 12)])
    data += _packet(2, [(0xFFFFFFFF, 13)])  # a special-event packet: skipped
    data += _packet(1, [(word(1, 2, 1), 5)], overflow=2)  # time (2 << 31) | 5
    path = tmp_path / "hand.aedat"
    path.write_bytes(data)
    ev = read_aedat31(path)
    assert ev["t"].tolist() == [10, 12, (2 << 31) | 5]
    assert ev["x"].tolist() == [3, 127, 1] and ev["y"].tolist() == [5, 0, 2] and ev["p"].tolist() == [1, 0, 1]


def test_truncated_and_foreign_files(tmp_path):
    ev = random_events(3000)
    path = tmp_path / "a.aedat"
    write_aedat31(path, ev, packet_size=1000)
    data = path.read_bytes()
    (tmp_path / "cut.aedat").write_bytes(data[:-100])
    with pytest.raises(AedatError, match=r"cut.aedat: truncated packet at byte \d+"):
        read_aedat31(tmp_path / "cut.aedat")
    (tmp_path / "v2.aedat").write_bytes(b"#!AER-DAT2.0\r\n")
    with pytest.raises(AedatError, match="v2.aedat: not an AEDAT 3"):
        read_aedat31(tmp_path / "v2.aedat")
    (tmp_path / "nohead.aedat").write_bytes(b"#!AER-DAT3.1\r\n#Format: RAW\r\n")
    with pytest.raises(AedatError, match="END-HEADER"):
        read_aedat31(tmp_path / "nohead.aedat")


def naive_frames(events, T, split_by):
    """The rule of DATA_FORMATS.md / spikingjelly, written plainly, one event at a time."""
    n = len(events)
    if split_by == "number":
        step = n // T
        bounds = [(i * step, (i + 1) * step if i < T - 1 else n) for i in range(T)]
    else:
        t = events["t"]
        dt = (int(t[-1]) - int(t[0])) // T
        bounds = []
        for i in range(T):
            lo = int(np.searchsorted(t, t[0] + i * dt))
            hi = n if i == T - 1 else int(np.searchsorted(t, t[0] + i * dt + dt))
            bounds.append((lo, hi))
    frames = np.zeros((T, 2, 128, 128), np.float32)
    for i, (lo, hi) in enumerate(bounds):
        for e in events[lo:hi]:
            frames[i, e["p"], e["y"], e["x"]] += 1
    return frames


@pytest.mark.parametrize("split_by", ["number", "time"])
@pytest.mark.parametrize("n,T", [(1003, 4), (5000, 16), (17, 16)])
def test_frames_match_the_rule_on_random_events(split_by, n, T):
    ev = random_events(n, seed=n + T)
    ours = events_to_frames(ev, T, split_by=split_by)
    assert ours.shape == (T, 2, 128, 128)
    assert np.array_equal(ours, naive_frames(ev, T, split_by))
    assert ours.sum() == n  # the last frame takes the remainder: no event is lost


def test_downsample_sums_blocks():
    ev = random_events(2000, seed=1)
    full = events_to_frames(ev, 4)
    small = events_to_frames(ev, 4, downsample=4)
    assert small.shape == (4, 2, 32, 32)
    assert np.array_equal(small, full.reshape(4, 2, 32, 4, 32, 4).sum((3, 5)))
    with pytest.raises(ValueError, match="divide"):
        events_to_frames(ev, 4, downsample=3)


def test_event_camera_model_polarity():
    frames = np.full((3, 8, 8), 50, np.uint8)
    frames[1, 2, 3] = 200  # brightens then darkens
    ev = video_to_events(frames, fps=100, threshold=0.2)
    assert set(zip(ev["x"].tolist(), ev["y"].tolist())) == {(3, 2)}
    assert ev["p"][0] == 1 and ev["p"][-1] == 0 and np.all(np.diff(ev["t"]) >= 0)
    assert 0 < ev["t"][0] < 10_000 < ev["t"][-1] < 20_000


def test_gesture_layout_cutting_cache_and_errors(tmp_path, monkeypatch):
    root = write_synthetic_gesture(str(tmp_path / "DvsGesture"), users_train=2, users_test=1,
                                   lightings=("lab",), num_classes=3, frames_per_sample=8)
    train, test = gesture_samples(root, "train"), gesture_samples(root, "test")
    assert len(train) == 6 and len(test) == 3 and [s.label for s in test] == [0, 1, 2]
    ds = DVSGesture(root, "train", num_frames=4, cache_dir=str(tmp_path / "cache"))
    item = ds[1]
    assert item["clip"].shape == (2, 4, 128, 128) and item["label"] == 1
    events = read_aedat31(train[1].aedat)
    inside = events[(events["t"] >= train[1].start) & (events["t"] < train[1].end)]
    assert item["clip"].sum() == len(inside) > 0
    # Second epoch: served from the cache without reading any AEDAT file.
    import svformer.data.dvs_gesture as module

    def no_reading(path):
        raise AssertionError(f"AEDAT file read again: {path}")

    monkeypatch.setattr(module, "read_aedat31", no_reading)
    assert np.array_equal(ds[1]["clip"].numpy(), item["clip"].numpy())
    monkeypatch.undo()
    labels = os.path.join(root, "user01_lab_labels.csv")
    with open(labels, "a") as f:
        f.write("12,5,6\n")
    with pytest.raises(DatasetLayoutError, match=r"user01_lab_labels.csv:5: class must be 1..11"):
        read_labels(labels)
    with open(labels, "w") as f:
        f.write("class,startTime_usec,endTime_usec\n1,abc,7\n")
    with pytest.raises(DatasetLayoutError, match=r"user01_lab_labels.csv:2: expected"):
        read_labels(labels)
    # The folder holding DvsGesture/ works as the root too; a folder holding neither is one clear error.
    assert gesture_samples(str(tmp_path), "test") == test
    assert DVSGesture(str(tmp_path), "test", num_frames=4, cache_dir=str(tmp_path / "cache")).root == root
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"neither .*empty nor .*empty/DvsGesture holds trials_to_train.txt"):
        gesture_samples(str(tmp_path / "empty"), "train")
