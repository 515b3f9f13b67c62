"""Event recordings in every supported format, written by other programs (faery, iniVation's
dv-processing, h5py) or byte by byte from the formats' descriptions (`event_bytes`), read back as the
known events with the sensor size from the file's header."""
import numpy as np
import pytest

from svformer.data.event_files import EventFileError, detect_format, read_recording
from svformer.data.events import EVENT_DTYPE, write_aedat31

from .event_bytes import aedat2_bytes, evt2_bytes, evt3_bytes

faery = pytest.importorskip("faery")


def random_events(n, width, height, duration_us, seed=0, t0=0):
    rng = np.random.default_rng(seed)
    ev = np.empty(n, EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(t0, t0 + duration_us, n))
    ev["x"], ev["y"] = rng.integers(0, width, n), rng.integers(0, height, n)
    ev["p"] = rng.integers(0, 2, n)
    return ev


def canonical(ev):
    """Events ordered by (t, y, x, p): writers may order events of one timestamp differently."""
    return ev[np.lexsort((ev["p"], ev["x"], ev["y"], ev["t"]))]


def assert_same_events(got, want):
    got, want = canonical(got), canonical(want)
    assert len(got) == len(want)
    for field in "txyp":
        np.testing.assert_array_equal(got[field].astype(np.int64), want[field].astype(np.int64), err_msg=field)


def faery_file(path, events, width, height, **kwargs):
    arr = np.zeros(len(events), faery.EVENTS_DTYPE)
    arr["t"], arr["x"], arr["y"], arr["on"] = events["t"], events["x"], events["y"], events["p"] > 0
    faery.events_stream_from_array(arr, (width, height)).to_file(str(path), **kwargs)
    return path


# 40 s of events: past EVT 3.0's 24-bit time counter (16.8 s) twice; a t0 that the files carry in headers.
@pytest.mark.parametrize("name,kwargs,fmt", [("rec.raw", {"version": "evt3"}, "evt3"),
                                            ("rec.raw", {"version": "evt2"}, "evt2"),
                                            ("rec.dat", {}, "dat"), ("rec.aedat4", {}, "aedat4")])
@pytest.mark.parametrize("width,height", [(346, 260), (1280, 720)])
def test_files_written_by_faery(tmp_path, name, kwargs, fmt, width, height):
    events = random_events(20000, width, height, 40_000_000, t0=3_000_000)
    path = faery_file(tmp_path / name, events, width, height, **kwargs)
    rec = read_recording(path)
    assert (rec.format, rec.sensor_size) == (fmt, (height, width))
    assert_same_events(rec.events, events)
    assert np.all(np.diff(rec.events["t"]) >= 0)


def test_aedat4_written_by_dv_processing(tmp_path):
    dv = pytest.importorskip("dv_processing")
    events = random_events(5000, 640, 480, 2_000_000, seed=1, t0=1_700_000_000_000_000)  # a Unix-time clock
    writer = dv.io.MonoCameraWriter(str(tmp_path / "dvx.aedat4"),
                                    dv.io.MonoCameraWriter.EventOnlyConfig("DVXplorer_test", (640, 480)))
    for part in np.array_split(events, 7):  # several packets
        store = dv.EventStore()
        for t, x, y, p in part:
            store.push_back(int(t), int(x), int(y), bool(p))
        writer.writeEvents(store)
    del writer
    rec = read_recording(tmp_path / "dvx.aedat4")
    assert (rec.format, rec.sensor_size) == ("aedat4", (480, 640))
    assert_same_events(rec.events, events)


def test_evt3_vectorised_words_and_time_wraparound(tmp_path):
    # Known events: a full 12-pixel vector, a sparse 8-pixel tail, lone x, both polarities, rows
    # changing, and times past two wrap-arounds of the 24-bit counter.
    groups = [(100, 5, 1, list(range(10, 22))), (100, 5, 0, [30, 32, 37]), (4200, 7, 1, [639]),
              (4200, 8, 0, list(range(0, 20)) + [25]), ((1 << 24) + 50, 479, 1, [0]),
              ((1 << 24) + 4097, 3, 0, [100, 101]), (2 * (1 << 24) + 7, 0, 1, [5, 9, 13, 17, 21])]
    (tmp_path / "v.raw").write_bytes(evt3_bytes(groups))
    want = np.array([(t, x, y, p) for t, y, p, xs in groups for x in xs], EVENT_DTYPE)
    rec = read_recording(tmp_path / "v.raw")
    assert (rec.format, rec.sensor_size) == ("evt3", (480, 640))
    assert_same_events(rec.events, want)


def test_evt2_written_from_the_description(tmp_path):
    events = random_events(3000, 640, 480, 30_000_000, seed=2)
    (tmp_path / "e.raw").write_bytes(evt2_bytes(events))
    rec = read_recording(tmp_path / "e.raw")
    assert (rec.format, rec.sensor_size) == ("evt2", (480, 640))
    assert_same_events(rec.events, events)


@pytest.mark.parametrize("chip,size", [("DVS128", (128, 128)), ("Davis346B", (260, 346))])
def test_aedat2_jaer_layouts(tmp_path, chip, size):
    events = random_events(2000, size[1], size[0], 5_000_000, seed=3)
    aps = [(1 << 31 | 5 << 22 | 7 << 12, 123)] if chip != "DVS128" else [(1 << 15 | 3, 123)]  # not DVS events
    (tmp_path / "r.aedat").write_bytes(aedat2_bytes(events, chip, size[0], aps))
    rec = read_recording(tmp_path / "r.aedat")
    assert (rec.format, rec.sensor_size) == ("aedat2", size)
    assert_same_events(rec.events, events)  # the APS/external sample is left out, y flipped to top-left


def test_hdf5_layouts(tmp_path):
    h5py = pytest.importorskip("h5py")
    events = random_events(1000, 640, 480, 1_000_000, seed=4)
    with h5py.File(tmp_path / "dsec.h5", "w") as f:  # DSEC: events/{t,x,y,p} relative to t_offset
        g = f.create_group("events")
        for k in "txyp":
            g.create_dataset(k, data=events[k] - (500 if k == "t" else 0))
        f.create_dataset("t_offset", data=np.int64(500))
        f.attrs["width"], f.attrs["height"] = 640, 480
    rec = read_recording(tmp_path / "dsec.h5")
    assert (rec.format, rec.sensor_size) == ("hdf5", (480, 640))
    assert_same_events(rec.events, events)
    with h5py.File(tmp_path / "bare.h5", "w") as f:  # flat datasets, unsorted, no size
        order = np.random.default_rng(0).permutation(len(events))
        for k in "txyp":
            f.create_dataset(k, data=events[k][order])
    with pytest.raises(EventFileError, match=r"bare.h5: HDF5 events without a sensor size"):
        read_recording(tmp_path / "bare.h5")
    rec = read_recording(tmp_path / "bare.h5", sensor_size=(480, 640))
    assert np.all(np.diff(rec.events["t"]) >= 0)  # sorted
    assert_same_events(rec.events, events)


def test_out_of_order_packets_and_empty_recordings(tmp_path):
    events = random_events(5000, 128, 128, 3_000_000, seed=5)
    shuffled = np.concatenate([events[2500:], events[:2500]])  # the later packet first
    write_aedat31(tmp_path / "ooo.aedat", shuffled, packet_size=500)
    rec = read_recording(tmp_path / "ooo.aedat")
    assert rec.format == "aedat31" and np.all(np.diff(rec.events["t"]) >= 0)
    assert_same_events(rec.events, events)
    (tmp_path / "empty.raw").write_bytes(evt3_bytes([]))
    (tmp_path / "empty.aedat").write_bytes(aedat2_bytes(events[:0], "DVS128", 128))
    write_aedat31(tmp_path / "empty31.aedat", events[:0])
    for name in ("empty.raw", "empty.aedat", "empty31.aedat"):
        rec = read_recording(tmp_path / name)
        assert len(rec.events) == 0 and rec.events.dtype == EVENT_DTYPE, name


def test_unknown_and_damaged_files(tmp_path):
    (tmp_path / "notes.raw").write_bytes(b"hello world, not events")
    with pytest.raises(EventFileError, match=r"notes.raw: not an event file svformer reads; expected AEDAT"):
        read_recording(tmp_path / "notes.raw")
    (tmp_path / "old.aedat").write_bytes(b"#!AER-DAT1.0\r\n" + b"\0" * 12)
    with pytest.raises(EventFileError, match=r"old.aedat: an AEDAT file of an unsupported version"):
        read_recording(tmp_path / "old.aedat")
    events = random_events(100, 128, 128, 1000)
    (tmp_path / "cut.aedat").write_bytes(aedat2_bytes(events, "DVS128", 128)[:-3])
    with pytest.raises(EventFileError, match=r"cut.aedat: truncated AEDAT 2.0 data"):
        read_recording(tmp_path / "cut.aedat")
    (tmp_path / "chip.aedat").write_bytes(aedat2_bytes(events, "DVS128", 128).replace(b"DVS128", b"Foo999"))
    with pytest.raises(EventFileError, match=r"chip.aedat: AEDAT 2.0 from chip .*Foo999"):
        read_recording(tmp_path / "chip.aedat")
    (tmp_path / "big.raw").write_bytes(evt3_bytes([(10, 5, 1, [700])], width=640))  # x beyond the sensor
    with pytest.raises(EventFileError, match=r"big.raw: events outside the 640x480 sensor"):
        read_recording(tmp_path / "big.raw")
    assert detect_format(faery_file(tmp_path / "x.dat", events, 128, 128)) == "dat"
