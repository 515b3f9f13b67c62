"""Values, lists, folders and files people get wrong: each one line naming what is wrong, or the right
behaviour; never a traceback."""
import os

import numpy as np
import pytest

from svformer.cli import main
from svformer.config import ConfigError, load_config
from svformer.data.build import video_samples
from svformer.data.lists import DatasetLayoutError
from svformer.data.video import VideoError, VideoReader, write_video
from svformer.engine.trainer import train

from ..data.conftest import gradient_video
from .helpers import overrides


def test_numbers_parse_as_people_type_them():
    cfg = load_config("demo", ["optim.lr=3e-3", "optim.min_lr=1e-6", "optim.weight_decay=5E-2"])
    assert (cfg.optim.lr, cfg.optim.min_lr, cfg.optim.weight_decay) == (0.003, 1e-6, 0.05)


@pytest.mark.parametrize("override,message", [
    ("eval_every=0", "'eval_every' must be at least 1"),
    ("checkpoint_every=0", "'checkpoint_every' must be at least 1"),
    ("optim.epochs=0", "'optim.epochs' must be at least 1"),
    ("data.test_crops=2", "'data.test_crops' must be 1 or 3"),
    ("optim.lr=fast", "'optim.lr' expects float"),
    ("data.on_error=ignore", "'data.on_error' must be 'skip' or 'raise'"),
])
def test_bad_values_are_one_line(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("demo", [override])
    with pytest.raises(SystemExit, match=rf"^svformer train: .*{message}"):
        main(["train", "demo", *overrides(tmp_path), override])


def test_model_kwargs_are_checked(tmp_path):
    with pytest.raises(SystemExit, match=r"^svformer train: model.kwargs for svformer_tiny: .*unexpected keyword "
                                         r"argument 'dpeth'"):
        main(["train", "demo", *overrides(tmp_path), "model.kwargs={dpeth: [1, 1, 1, 1]}"])
    with pytest.raises(SystemExit, match=r"model.kwargs may not set num_frames: it comes from data.num_frames"):
        main(["train", "demo", *overrides(tmp_path), "model.kwargs={num_frames: 4}"])
    for kwargs, message in [("{drop_path_rate: fast}", "drop_path_rate expects float, got 'fast'"),
                            ("{depth: 3}", "depth expects a list of int, got 3"),
                            ("{fusion: maybe}", "fusion expects bool, got 'maybe'")]:
        with pytest.raises(SystemExit, match=rf"^svformer train: model.kwargs for svformer_tiny: {message}$"):
            main(["train", "demo", *overrides(tmp_path), f"model.kwargs={kwargs}"])


def _csv_dataset(root, train_lines, test_lines=None):
    videos = root / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    for name in ("a b,c.mp4", "x  y.mp4", "plain.mp4"):
        write_video(videos / name, gradient_video(8))
    (root / "train.csv").write_bytes(train_lines if isinstance(train_lines, bytes) else train_lines.encode())
    (root / "test.csv").write_text(test_lines or "plain.mp4 0\n")
    return root


def test_csv_lists(tmp_path):
    root = _csv_dataset(tmp_path / "ok", "a b,c.mp4 0\nx  y.mp4,1\nplain.mp4\t1\n")
    samples, names = video_samples("csv", str(root), subset="train")
    assert [os.path.basename(s.path) for s in samples] == ["a b,c.mp4", "x  y.mp4", "plain.mp4"]
    assert [s.label for s in samples] == [0, 1, 1] and names == ["0", "1"]

    huge = _csv_dataset(tmp_path / "huge", "plain.mp4 0\nx  y.mp4 99999999\n")
    with pytest.raises(DatasetLayoutError, match=r"train.csv: labels go up to 99999999 but only 2 classes appear"):
        video_samples("csv", str(huge), subset="train")
    assert main(["data", "check", "--dataset", "csv", "--root", str(huge), "--no-decode"]) == 1

    outside = _csv_dataset(tmp_path / "outside", "plain.mp4 0\nx  y.mp4 1\n", "plain.mp4 0\nx  y.mp4 2\n")
    with pytest.raises(DatasetLayoutError, match=r"test.csv:2: label 2 is not one of the 2 classes"):
        video_samples("csv", str(outside), subset="test")

    latin = _csv_dataset(tmp_path / "latin", "plain.mp4 0\ncaf\xe9.mp4 1\n".encode("latin-1"))
    with pytest.raises(DatasetLayoutError, match=r"latin/train.csv:2: not UTF-8 text"):
        video_samples("csv", str(latin), subset="train")


def test_folder_datasets(tmp_path):
    flat = tmp_path / "flat"
    for c in ("jump", "run"):
        (flat / c).mkdir(parents=True)
        write_video(flat / c / "a.mp4", gradient_video(8))
    with pytest.raises(SystemExit, match=r"needs train/<class>/ and test/<class>/ subfolders"):
        main(["train", "demo", *overrides(tmp_path), "data.synthetic=null", "data.dataset=folder",
              f"data.root={flat}"])
    tree = tmp_path / "tree"
    for split in ("train", "test"):
        for c in ("jump", "run"):
            (tree / split / c).mkdir(parents=True)
            write_video(tree / split / c / "a.mp4", gradient_video(8))
    os.symlink(tree / "train", tree / "train" / "loop")  # a link back into the tree
    os.symlink(tree / "train" / "jump" / "a.mp4", tree / "train" / "jump" / "b.mp4")  # a linked video counts
    samples, names = video_samples("folder", str(tree), subset="train")
    assert names == ["jump", "run"] and len(samples) == 3


def test_predict_inputs(tmp_path, capsys):
    train(load_config("demo", overrides(tmp_path, "run", **{"optim.epochs": 1})), test=False)
    ckpt = str(tmp_path / "run" / "last.pt")
    with pytest.raises(SystemExit, match=r"^svformer predict: .*data is a folder; give one video file"):
        main(["predict", ckpt, str(tmp_path / "data")])
    from PIL import Image

    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "frame.png")
    with pytest.raises(SystemExit, match=r"^svformer predict: .*frame.png: this is an image \(PNG\), not a video"):
        main(["predict", ckpt, str(tmp_path / "frame.png")])
    with pytest.raises(VideoError, match="this is an image"):
        VideoReader(tmp_path / "frame.png")
    with pytest.raises(SystemExit) as e:
        main(["predict", ckpt, str(tmp_path / "frame.png"), "--topk", "0"])
    assert e.value.code == 2 and "--topk: must be at least 1" in capsys.readouterr().err


def test_unreadable_validation_and_test_videos_are_skipped_not_fatal(tmp_path):
    cfg = load_config("demo", overrides(tmp_path, "run", **{"optim.epochs": 1, "data.val_fraction": 0.5}))
    from svformer.engine.data import prepare_synthetic
    from svformer.data.lists import split_validation, ucf101

    prepare_synthetic(cfg)
    train_samples, _ = ucf101(cfg.data.root, 1, "train")
    _, val = split_validation(train_samples, 0.5, cfg.seed)
    test, _ = ucf101(cfg.data.root, 1, "test")
    for sample in (val[0], test[0]):
        with open(sample.path, "r+b") as f:
            f.truncate(600)
    with pytest.warns(RuntimeWarning, match="skipping unreadable sample"):
        summary = train(cfg)
    assert summary["test_num_videos"] == summary["test_total_videos"] - 1 and summary["test_skipped"] >= 1


def test_one_clip_per_device_is_refused_before_training(tmp_path):
    with pytest.raises(SystemExit, match=r"^svformer train: training the Conv3d head needs at least 2 clips per "
                                         r"device, got 1"):
        main(["train", "demo", *overrides(tmp_path), "optim.batch_size=1"])
