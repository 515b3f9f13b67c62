"""Datasets by name: one place that maps a dataset name and root to sample lists and Dataset objects."""
from __future__ import annotations

import os
from typing import List, Tuple

from . import lists
from .lists import VideoSample

VIDEO_DATASETS = ("ucf101", "hmdb51", "ntu60_xsub", "ntu60_xview", "csv", "folder")
EVENT_DATASETS = ("dvs128_gesture", "event_folder", "event_csv")
DATASETS = VIDEO_DATASETS + EVENT_DATASETS


def video_samples(name: str, root: str, split: int = 1, subset: str = "train") -> Tuple[List[VideoSample], List[str]]:
    """(samples, class_names) of a video dataset.

    ``csv``: ``root`` is a folder with ``train.csv`` / ``test.csv`` (the authors' lists; paths relative
    to the folder's ``videos/`` if present, else to the folder); ``folder``: ``root/train/<class>/*`` and
    ``root/test/<class>/*``. Test labels are checked against the training list's classes. A folder
    without ``train/`` and ``test/`` is refused: testing on the training videos would report a lie.
    """
    if name == "ucf101":
        return lists.ucf101(root, split, subset)
    if name == "hmdb51":
        return lists.hmdb51(root, split, subset)
    if name in ("ntu60_xsub", "ntu60_xview"):
        return lists.ntu60(root, name.split("_")[1], subset)
    if name == "csv":
        prefix = os.path.join(root, "videos") if os.path.isdir(os.path.join(root, "videos")) else root
        names = None
        if subset != "train":
            names = lists.csv_list(os.path.join(root, "train.csv"), prefix, check_files=False)[1]
        return lists.csv_list(os.path.join(root, f"{subset}.csv"), prefix, names)
    if name == "folder":
        if not all(os.path.isdir(os.path.join(root, s)) for s in ("train", "test")):
            lists._require_dir(root, "video folder")
            raise lists.DatasetLayoutError(
                f"{root}: a folder dataset needs train/<class>/ and test/<class>/ subfolders (without them the "
                f"test would score the training videos); move some videos of each class into test/")
        names = None if subset == "train" else lists.folder(os.path.join(root, "train"))[1]
        return lists.folder(os.path.join(root, subset), names)
    raise ValueError(f"unknown video dataset {name!r}; choose one of {', '.join(VIDEO_DATASETS)}")
