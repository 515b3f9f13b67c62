"""Dataset lists on small folders the tests write in the official layouts, and the clip dataset."""
import os
import warnings

import pytest
import torch
from torch.utils.data import DataLoader

from svformer.data import DatasetLayoutError, VideoClipDataset, collate_clips, split_validation, video_samples
from svformer.data.lists import hmdb51, ntu60, ucf101
from svformer.data.video import write_video

from .conftest import gradient_video

UCF_CLASSES = ["ApplyEyeMakeup", "Archery", "Basketball"]


def _gradient_avi(path_stem, label, group, clip):
    write_video(f"{path_stem}.avi", gradient_video(12, 24, 32))
    return ".avi"


def make_ucf(root, groups=(1, 2, 8, 9, 10), clips=2, write=_gradient_avi):
    """A UCF101 layout of 3 classes (groups 1-7 test, 8+ train); ``write(path_stem, label, group, clip)``
    writes one video and returns its extension."""
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {c}\r\n" for i, c in enumerate(UCF_CLASSES)))
    train, test = [], []
    for label, c in enumerate(UCF_CLASSES):
        (root / "UCF-101" / c).mkdir(parents=True)
        for g in groups:
            for k in range(1, clips + 1):
                rel = f"{c}/v_{c}_g{g:02d}_c{k:02d}"
                rel += write(root / "UCF-101" / rel, label, g, k)
                (test if g <= 7 else train).append((rel, label))
    for split in (1, 2, 3):
        (lists / f"trainlist0{split}.txt").write_text("".join(f"{r} {l + 1}\r\n" for r, l in train))
        (lists / f"testlist0{split}.txt").write_text("".join(f"{r}\r\n" for r, _ in test))
    return root


def test_ucf101_layout(tmp_path):
    root = make_ucf(tmp_path / "ucf")
    train, names = ucf101(str(root), 1, "train")
    test, _ = ucf101(str(root), 1, "test")
    assert names == UCF_CLASSES
    assert len(train) == 3 * 3 * 2 and len(test) == 3 * 2 * 2
    assert {s.label for s in train} == {0, 1, 2}
    assert train[0].group == "ApplyEyeMakeup_g08"
    assert video_samples("ucf101", str(root), 2, "test")[0] == test


def test_ucf101_errors_name_file_and_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="UCF101 root not found"):
        ucf101(str(tmp_path / "nowhere"))
    root = make_ucf(tmp_path / "ucf")
    os.remove(root / "ucfTrainTestlist" / "testlist02.txt")
    with pytest.raises(FileNotFoundError, match="testlist02.txt"):
        ucf101(str(root), 2, "test")
    os.remove(root / "UCF-101" / "Archery" / "v_Archery_g09_c02.avi")
    with pytest.raises(DatasetLayoutError, match=r"trainlist01.txt:10: listed video .*v_Archery_g09_c02.avi"):
        ucf101(str(root), 1, "train")
    (root / "ucfTrainTestlist" / "classInd.txt").write_text("1 ApplyEyeMakeup\nArchery\n")
    with pytest.raises(DatasetLayoutError, match=r"classInd.txt:2"):
        ucf101(str(root), 1, "train")


def test_validation_split_by_group_never_from_test(tmp_path):
    root = make_ucf(tmp_path / "ucf", groups=(1, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17), clips=1)
    train, _ = ucf101(str(root), 1, "train")
    test, _ = ucf101(str(root), 1, "test")
    kept, val = split_validation(train, fraction=0.2, seed=3)
    assert len(kept) + len(val) == len(train) and val
    assert not {s.group for s in kept} & {s.group for s in val}
    assert not {s.path for s in val} & {s.path for s in test}
    assert {s.label for s in val} == {0, 1, 2}  # stratified
    assert split_validation(train, 0.2, seed=3) == (kept, val)


def test_hmdb51_layout(tmp_path):
    root = tmp_path / "hmdb"
    (root / "testTrainMulti_7030_splits").mkdir(parents=True)
    frames = gradient_video(8)
    for c in ["brush_hair", "cartwheel"]:
        (root / "hmdb51_org" / c).mkdir(parents=True)
        lines = []
        for i, role in enumerate([1, 1, 2, 0]):
            name = f"{c}_video_{i}.avi"
            write_video(root / "hmdb51_org" / c / name, frames)
            lines.append(f"{name} {role} \n")
        (root / "testTrainMulti_7030_splits" / f"{c}_test_split1.txt").write_text("".join(lines))
    train, names = hmdb51(str(root), 1, "train")
    test, _ = hmdb51(str(root), 1, "test")
    assert names == ["brush_hair", "cartwheel"] and len(train) == 4 and len(test) == 2
    with pytest.raises(FileNotFoundError, match="_test_split2.txt"):
        hmdb51(str(root), 2, "train")
    split_file = root / "testTrainMulti_7030_splits" / "cartwheel_test_split1.txt"
    split_file.write_text("cartwheel_video_0.avi 1\nbroken\n")
    with pytest.raises(DatasetLayoutError, match=r"cartwheel_test_split1.txt:2: expected"):
        hmdb51(str(root), 1, "train")
    split_file.write_text("cartwheel_video_0.avi 1\nmissing.avi 1\n")
    with pytest.raises(DatasetLayoutError, match=r"cartwheel_test_split1.txt:2: listed video .*missing.avi"):
        hmdb51(str(root), 1, "train")


def test_ntu60_protocols_from_file_names(tmp_path):
    root = tmp_path / "nturgb+d_rgb"
    root.mkdir()
    names = []
    for s, c, p, a in [(1, 1, 1, 1), (1, 2, 1, 2), (1, 3, 3, 60), (2, 1, 3, 5), (2, 2, 38, 7), (1, 1, 1, 61)]:
        name = f"S{s:03d}C{c:03d}P{p:03d}R001A{a:03d}_rgb.avi"
        (root / name).write_bytes(b"")
        names.append(name)
    xsub_train, classes = ntu60(str(tmp_path), "xsub", "train")
    xsub_test, _ = ntu60(str(tmp_path), "xsub", "test")
    xview_train, _ = ntu60(str(tmp_path), "xview", "train")
    assert len(classes) == 60
    assert {os.path.basename(s.path) for s in xsub_train} == {names[0], names[1], names[4]}  # P001, P038
    assert {s.label for s in xsub_test} == {59, 4}  # P003; A061 (NTU 120) is ignored
    assert {os.path.basename(s.path) for s in xview_train} == {names[1], names[2], names[4]}  # C002, C003
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLayoutError, match="no NTU RGB"):
        ntu60(str(tmp_path / "empty"), "xsub", "train")


def test_csv_and_folder(tmp_path):
    frames = gradient_video(8)
    for c in ["jump", "run"]:
        (tmp_path / "tree" / "train" / c).mkdir(parents=True)
        write_video(tmp_path / "tree" / "train" / c / "a.mp4", frames)
    (tmp_path / "tree" / "test" / "run").mkdir(parents=True)
    write_video(tmp_path / "tree" / "test" / "run" / "b.mp4", frames)
    samples, names = video_samples("folder", str(tmp_path / "tree"), subset="train")
    assert names == ["jump", "run"] and [s.label for s in samples] == [0, 1]
    samples, names = video_samples("folder", str(tmp_path / "tree"), subset="test")
    assert names == ["jump", "run"] and [s.label for s in samples] == [1]  # named by the training classes
    csv_root = tmp_path / "lists"
    csv_root.mkdir()
    (csv_root / "train.csv").write_text("../tree/train/jump/a.mp4 0\n../tree/train/run/a.mp4 1\n")
    samples, names = video_samples("csv", str(csv_root), subset="train")
    assert [s.label for s in samples] == [0, 1] and names == ["0", "1"]
    (csv_root / "test.csv").write_text("../tree/train/jump/a.mp4 0\n../tree/train/run/a.mp4 x\n")
    with pytest.raises(DatasetLayoutError, match=r"test.csv:2: expected '<path> <label>'"):
        video_samples("csv", str(csv_root), subset="test")


def test_clip_dataset_train_and_test_items(tmp_path):
    root = make_ucf(tmp_path / "ucf", groups=(1, 8), clips=1)
    samples, names = ucf101(str(root), 1, "train")
    train = VideoClipDataset(samples, names, train=True, num_frames=4, sampling_rate=2, crop_size=16,
                             num_repeats=2, seed=0)
    item = train[0]
    assert item["clip"].shape == (2, 3, 4, 16, 16) and item["label"] == 0
    batch = collate_clips([train[0], train[1]])
    assert batch["clip"].shape == (4, 3, 4, 16, 16) and batch["label"].tolist() == [0, 0, 1, 1]
    test = VideoClipDataset(samples, names, train=False, num_frames=4, sampling_rate=2, crop_size=16,
                            num_clips=2, num_crops=3)
    assert len(test) == 3 * 6
    views = [test[i]["view"] for i in range(6)]
    assert views == list(range(6)) and test[6]["index"] == 1
    loader = DataLoader(test, batch_size=5, collate_fn=collate_clips, num_workers=0)
    assert sum(b["clip"].shape[0] for b in loader) == 18


def test_unreadable_sample_is_skipped_and_counted_or_raises(tmp_path):
    root = make_ucf(tmp_path / "ucf", groups=(8,), clips=2)
    samples, names = ucf101(str(root), 1, "train")
    (root / "UCF-101" / "Archery" / "v_Archery_g08_c01.avi").write_bytes(b"corrupt" * 100)
    ds = VideoClipDataset(samples, names, train=True, num_frames=4, sampling_rate=1, crop_size=16, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batch = collate_clips([ds[i] for i in range(len(ds))])
    assert batch["skipped"] == 1 and batch["clip"].shape[0] == len(ds) - 1
    assert batch["unreadable"] == [2]  # the video's position, so evaluation can leave it out
    assert any("v_Archery_g08_c01.avi" in str(w.message) for w in caught)
    strict = VideoClipDataset(samples, names, train=True, num_frames=4, sampling_rate=1, crop_size=16,
                              on_error="raise")
    with pytest.raises(Exception, match="v_Archery_g08_c01.avi"):
        strict[2]
    assert collate_clips([None]) == {"skipped": 1, "unreadable": []}
    assert torch.is_tensor(batch["label"])
