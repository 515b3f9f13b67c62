import numpy as np
import pytest

from svformer.cli import main
from svformer.data.doctor import check_dataset
from svformer.data.lists import ucf101
from svformer.data.synthetic import CLASSES, SynthConfig, render, write_ucf_layout
from svformer.data.video import VideoReader

SMALL = SynthConfig(size=32, num_frames=12, train_groups=2, test_groups=1, clips_per_group=1)


def test_synthetic_dataset_is_real_ucf_layout_and_reproducible(tmp_path):
    a = write_ucf_layout(str(tmp_path / "a"), SMALL, seed=1)
    b = write_ucf_layout(str(tmp_path / "b"), SMALL, seed=1)
    train, names = ucf101(a, 1, "train")
    test, _ = ucf101(a, 1, "test")
    assert names == list(CLASSES) and len(train) == 20 and len(test) == 10
    assert {s.group.split("_g")[1] for s in test} == {"01"}  # test groups 01-07 as in UCF101 split 1
    with VideoReader(train[3].path) as r, VideoReader(train[3].path.replace("/a/", "/b/")) as q:
        assert r.info.num_frames == 12 and (r.info.width, r.info.height) == (32, 32)
        assert np.array_equal(r.read_all(), q.read_all())
    assert check_dataset("ucf101", a, progress=False).ok
    assert write_ucf_layout(a, SMALL, seed=1) == a  # cached: nothing rewritten


def _centroid_track(frames):
    """Centre of mass of the pixels that differ from the median background."""
    diff = np.abs(frames.astype(float) - np.median(frames, axis=0)).sum(-1)
    ys, xs = np.mgrid[: frames.shape[1], : frames.shape[2]]
    w = diff.sum((1, 2)) + 1e-9
    return (diff * xs).sum((1, 2)) / w, (diff * ys).sum((1, 2)) / w


def test_class_is_in_the_motion():
    rng = np.random.default_rng(0)
    right = render(CLASSES.index("TranslateRight"), rng, 64, 32, noise=0)
    left = render(CLASSES.index("TranslateLeft"), rng, 64, 32, noise=0)
    still = render(CLASSES.index("Still"), rng, 64, 32, noise=0)
    assert np.polyfit(np.arange(32), _centroid_track(right)[0], 1)[0] > 0.2
    assert np.polyfit(np.arange(32), _centroid_track(left)[0], 1)[0] < -0.2
    assert np.array_equal(still[0], still[-1])
    # Size at mid-clip does not depend on the class (zoom in and out are centred on the middle frame),
    # while the first frames differ: only the motion tells the two apart.
    def areas(name):
        masks = [render(CLASSES.index(name), np.random.default_rng(s), 64, 33, return_mask=True)[1]
                 for s in range(40)]
        return np.mean([m[16].mean() for m in masks]), np.mean([m[0].mean() for m in masks])
    (mid_in, first_in), (mid_out, first_out) = areas("ZoomIn"), areas("ZoomOut")
    assert mid_in == pytest.approx(mid_out, rel=0.15)
    assert first_in < 0.6 * first_out


def test_cli_data_synth_and_check(tmp_path, capsys):
    out = str(tmp_path / "ev")
    assert main(["data", "synth", "--kind", "events", "--out", out]) == 0
    assert main(["data", "check", "--dataset", "dvs128_gesture", "--root", out]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["data", "check", "--dataset", "ucf101", "--root", str(tmp_path / "none")]) == 1
    assert "UCF101 root not found" in capsys.readouterr().out
