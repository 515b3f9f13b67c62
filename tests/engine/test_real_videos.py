"""End to end on the codecs real datasets come in: a UCF101 layout of MPEG-4 AVIs with B-frames (what
UCF101 and HMDB51 ship) and H.264 MP4s with B-frames, written by FFmpeg's encoders, checked, trained,
tested and predicted with no sample skipped; then one test video cut short."""
import json
import warnings

import pytest

from svformer.cli import main
from svformer.data.doctor import check_dataset

from ..data.encode import encode
from ..data.test_lists_datasets import make_ucf

def write_ucf_codecs(root):
    """3 classes x (2 train groups + 1 test group) x 2 clips; clip 1 MPEG-4 AVI, clip 2 H.264 MP4."""
    def write(stem, label, group, clip):
        ext, codec = [(".avi", "mpeg4"), (".mp4", "libx264")][clip - 1]
        encode(f"{stem}{ext}", codec=codec, b_frames=2, num_frames=20 + 7 * group + label, size=(40, 56), gop=8)
        return ext
    return make_ucf(root, groups=(1, 8, 9), clips=2, write=write)


def overrides(tmp_path, root, run):
    return [f"output_dir={tmp_path / run}", f"data.root={root}", "data.synthetic=null", "data.num_frames=4",
            "data.sampling_rate=4", "data.crop_size=32", "data.num_workers=0", "data.val_fraction=0",
            "data.test_clips=2", "data.test_crops=3", "optim.batch_size=4", "optim.epochs=1",
            "optim.warmup_epochs=0", "threads=1", "max_train_minutes=null", "aug.rand_augment=rand-m5-n2-mstd0.25",
            "aug.repeats=1", "model.kwargs={embed_dim: [8, 16, 24, 32], depth: [1, 1, 1, 1], head_dim: 8}"]


def test_real_codecs_check_train_test_predict(tmp_path, capsys):
    root = write_ucf_codecs(tmp_path / "ucf")
    for level in ("index", "decode"):
        report = check_dataset("ucf101", str(root), level=level, progress=False)
        assert report.ok, report.text()
    assert main(["data", "check", "--dataset", "ucf101", "--root", str(root), "--decode"]) == 0

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a skipped sample warns: none may be skipped
        assert main(["train", "demo", *overrides(tmp_path, root, "run")]) == 0
    run = tmp_path / "run"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["skipped"] == 0 and rows[0]["steps"] == 3  # 12 training videos, batch 4
    assert main(["test", str(run / "last.pt")]) == 0
    result = json.loads((run / "test_results.json").read_text())
    assert result["skipped"] == 0 and result["num_videos"] == result["total_videos"] == 6
    capsys.readouterr()
    for video in ("Archery/v_Archery_g01_c01.avi", "Basketball/v_Basketball_g01_c02.mp4"):
        assert main(["predict", str(run / "last.pt"), str(root / "UCF-101" / video), "--topk", "3"]) == 0
        assert len(capsys.readouterr().out.strip().splitlines()) == 3

    # A test video cut short: check names it, test leaves it out and says so, predict gives one line.
    cut = root / "UCF-101" / "Archery" / "v_Archery_g01_c01.avi"
    data = cut.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.85)])
    report = check_dataset("ucf101", str(root), progress=False)
    assert len(report.problems) == 1 and "v_Archery_g01_c01.avi: holds" in report.problems[0]
    assert main(["data", "check", "--dataset", "ucf101", "--root", str(root)]) == 1
    capsys.readouterr()
    with pytest.warns(RuntimeWarning, match="v_Archery_g01_c01.avi"):
        assert main(["test", str(run / "last.pt"), "data.test_clips=2"]) == 0
    assert "on 5 of 6 videos" in capsys.readouterr().out
    result = json.loads((run / "test_results.json").read_text())
    assert result["num_videos"] == 5 and result["total_videos"] == 6 and result["skipped"] >= 1
    with pytest.raises(SystemExit, match=r"^svformer predict: .*v_Archery_g01_c01.avi: .*frame \d+"):
        main(["predict", str(run / "last.pt"), str(cut)])
