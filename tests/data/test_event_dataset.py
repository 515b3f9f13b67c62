"""Your own event data: the geometry rules, a class-per-folder dataset of mixed formats and sensor sizes
that trains, predicts, is checked and shown; CSV lists with sample windows; DVS128 behaviour unchanged."""
import numpy as np
import pytest

from svformer.cli import main
from svformer.data.event_dataset import EventFileDataset, event_list, event_samples
from svformer.data.events import events_to_frames, fit_frames, video_to_events, write_aedat31
from svformer.data.synthetic import render_for_events
from svformer.data.lists import DatasetLayoutError

from .event_bytes import aedat2_bytes

faery = pytest.importorskip("faery")
h5py = pytest.importorskip("h5py")


def test_geometry_rules():
    rng = np.random.default_rng(0)
    frames = rng.poisson(2.0, (3, 2, 60, 80)).astype(np.float32)
    resized = fit_frames(frames, (32, 32), "resize")
    assert resized.shape == (3, 2, 32, 32)
    np.testing.assert_allclose(resized.sum((2, 3)), frames.sum((2, 3)), rtol=1e-5)  # counts kept
    cropped = fit_frames(frames, (32, 32), "crop")
    np.testing.assert_array_equal(cropped, frames[:, :, 14:46, 24:56])
    padded = fit_frames(frames, (64, 96), "crop")
    np.testing.assert_array_equal(padded[:, :, 2:62, 8:88], frames)
    assert padded.sum() == frames.sum()
    down = fit_frames(frames, (30, 40), "downsample", 2)
    np.testing.assert_array_equal(down, frames.reshape(3, 2, 30, 2, 40, 2).sum((3, 5)))
    with pytest.raises(ValueError, match="downsample 7 must divide the sensor size 80x60"):
        fit_frames(frames, (8, 8), "downsample", 7)
    # DVS128: downsampling the sensor's frames equals binning the events directly (the gesture loader's rule).
    events = video_to_events(render_for_events(3, rng, 128, 12), 100.0, rng=rng)
    direct = events_to_frames(events, 8, (128, 128), "number", 4)
    assert np.array_equal(fit_frames(events_to_frames(events, 8, (128, 128)), (32, 32), "downsample", 4), direct)


def _recording(label, size, seed):
    rng = np.random.default_rng(seed)
    frames = render_for_events(label, rng, max(size), 16)[:, :size[0], :size[1]]
    return video_to_events(frames, 200.0, rng=rng, t0_us=10_000)


def write_mixed_folder(root):
    """Two motion classes, each recording in another format and from another sensor size."""
    writers = [
        ("rec.aedat", lambda p, ev, h, w: write_aedat31(p, ev)),  # AEDAT 3.1 (DVS128)
        ("rec.raw", lambda p, ev, h, w: _faery(p, ev, h, w, version="evt3")),
        ("rec.dat", lambda p, ev, h, w: _faery(p, ev, h, w)),
        ("rec.aedat4", lambda p, ev, h, w: _faery(p, ev, h, w)),
        ("rec2.raw", lambda p, ev, h, w: _faery(p, ev, h, w, version="evt2")),
        ("rec.h5", _hdf5),
        ("rec2.aedat", lambda p, ev, h, w: p.write_bytes(aedat2_bytes(ev, "Davis240C", 180))),
    ]
    sizes = {"rec.aedat": (128, 128), "rec2.aedat": (180, 240)}
    classes = {"left": 0, "right": 1}  # synthetic motion labels: translate left / right
    for subset, seeds in (("train", range(3)), ("test", range(10, 12))):
        for name, label in classes.items():
            folder = root / subset / name
            folder.mkdir(parents=True)
            for i, seed in enumerate(seeds):
                for j, (file, write) in enumerate(writers):
                    if (i + j) % 2:  # every format in every class, not every seed
                        continue
                    h, w = sizes.get(file, (96, 120) if j % 2 else (72, 72))
                    write(folder / f"s{seed}_{file}", _recording(label, (h, w), seed * 10 + j), h, w)
    return root


def _faery(path, ev, h, w, **kwargs):
    arr = np.zeros(len(ev), faery.EVENTS_DTYPE)
    arr["t"], arr["x"], arr["y"], arr["on"] = ev["t"], ev["x"], ev["y"], ev["p"] > 0
    faery.events_stream_from_array(arr, (w, h)).to_file(str(path), **kwargs)


def _hdf5(path, ev, h, w):
    with h5py.File(path, "w") as f:
        g = f.create_group("events")
        for k in "txyp":
            g.create_dataset(k, data=ev[k])
        g.attrs["height"], g.attrs["width"] = h, w


def test_mixed_format_folder_trains_predicts_checks_and_shows(tmp_path, capsys):
    from svformer.engine.trainer import train

    from ..engine.test_training import tiny_config

    root = write_mixed_folder(tmp_path / "events")
    samples, names = event_samples("event_folder", str(root), "train")
    formats = {p.path.rsplit("_", 1)[1] for p in samples}
    assert names == ["left", "right"] and len(formats) == 7
    ds = EventFileDataset(samples, names, str(root), num_frames=4, size=32)
    item = ds[0]
    assert item["clip"].shape == (2, 4, 32, 32) and item["clip"].sum() > 0

    assert main(["data", "check", "--dataset", "event_folder", "--root", str(root)]) == 0
    cfg = tiny_config(tmp_path, "run", **{"data.dataset": "event_folder", "data.root": str(root), "data.synthetic": "null",
                                          "data.val_fraction": 0.0, "optim.epochs": 1, "data.test_clips": 1})
    summary = train(cfg)
    assert summary["epochs_run"] == 1 and summary["test_num_videos"] == len(event_samples("event_folder", str(root),
                                                                                          "test")[0])
    ckpt = str(tmp_path / "run" / "last.pt")
    capsys.readouterr()
    for f in sorted((root / "test" / "left").iterdir()):
        assert main(["predict", ckpt, str(f), "--topk", "2"]) == 0
        lines = capsys.readouterr().out.strip().splitlines()
        assert len(lines) == 2 and {line.split()[-1] for line in lines} == {"left", "right"}, f
    png = tmp_path / "frames.png"
    one = next((root / "test" / "right").glob("*.raw"))
    assert main(["data", "show", str(one), "--out", str(png), "--frames", "6"]) == 0
    assert png.stat().st_size > 0 and "6 frames of" in capsys.readouterr().out
    assert main(["data", "show", str(one), "--out", str(png), "--checkpoint", ckpt]) == 0
    assert "4 frames of 32x32" in capsys.readouterr().out


def test_event_csv_windows_and_errors(tmp_path):
    ev = _recording(0, (64, 64), 0)
    ev2 = ev.copy()
    ev2["t"] += ev["t"][-1] + 1000
    write_aedat31(tmp_path / "long.aedat", np.concatenate([ev, ev2]))
    mid = int(ev2["t"][0])
    (tmp_path / "train.csv").write_text(f"long.aedat 0 0 {mid}\nlong.aedat 1 {mid} {int(ev2['t'][-1]) + 1}\n")
    (tmp_path / "test.csv").write_text("long.aedat 1\n")
    samples, names = event_samples("event_csv", str(tmp_path), "train")
    assert names == ["0", "1"] and samples[0].group == samples[1].group
    ds = EventFileDataset(samples, names, str(tmp_path), num_frames=4, size=128, geometry="crop")
    assert ds[0]["clip"].sum() == len(ev) and ds[1]["clip"].sum() == len(ev2)  # each window's events only
    test, _ = event_samples("event_csv", str(tmp_path), "test")
    assert EventFileDataset(test, names, str(tmp_path), num_frames=4, size=128, geometry="crop")[0]["clip"].sum() \
        == 2 * len(ev)
    (tmp_path / "bad.csv").write_text("long.aedat 0 500 100\n")
    with pytest.raises(DatasetLayoutError, match=r"bad.csv:1: end must be after start"):
        event_list(str(tmp_path / "bad.csv"), str(tmp_path))
    (tmp_path / "junk.raw").write_bytes(b"junk")
    with pytest.warns(RuntimeWarning, match=r"skipping unreadable sample .*junk.raw: not an event file"):
        from svformer.data.event_dataset import EventSample

        item = EventFileDataset([EventSample(str(tmp_path / "junk.raw"), 0)], ["a"], str(tmp_path))[0]
    assert "unreadable" in item
    with pytest.raises(SystemExit, match=r"^svformer data show: .*junk.raw: not an event file"):
        main(["data", "show", str(tmp_path / "junk.raw"), "--out", str(tmp_path / "x.png")])
