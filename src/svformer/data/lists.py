"""Sample lists of the video datasets, read from the official archives as they unpack.

Each reader returns ``(samples, class_names)`` where a sample is a `VideoSample(path, label, group)`;
``group`` identifies clips that must stay on the same side of a train/validation split (UCF101's
actor/background group, NTU's performer), or None. Layouts: docs/data.md.

Every problem (missing folder, missing split file, malformed line, listed video absent) raises an error
naming the file and, for list files, the line number.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".mpg", ".mpeg", ".m4v")


class DatasetLayoutError(ValueError):
    """A dataset folder or list file that does not have the expected layout or content."""


@dataclass(frozen=True)
class VideoSample:
    path: str
    label: int
    group: Optional[str] = None


def _require_dir(path: str, what: str) -> str:
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def _require_file(path: str, what: str) -> str:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def text_lines(path: str):
    """(line number, stripped line) of every non-blank line of a UTF-8 text file (a BOM is allowed); a
    line that is not UTF-8 raises `DatasetLayoutError` naming the file and line."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8").strip()
            except UnicodeDecodeError as e:
                raise DatasetLayoutError(f"{path}:{number}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column "
                                         f"{e.start + 1}); save the list as UTF-8") from None
            if line:
                yield number, line




def _check_exists(samples: List[VideoSample], list_file: str, line_of: dict) -> None:
    for s in samples:
        if not os.path.isfile(s.path):
            raise DatasetLayoutError(f"{list_file}:{line_of[s.path]}: listed video {s.path} does not exist")


# ----------------------------------------------------------------------------------------------- UCF101

_UCF_GROUP = re.compile(r"_g(\d+)_c\d+", re.IGNORECASE)


def _find_subdir(root: str, names: Sequence[str], what: str) -> str:
    for name in names:
        if os.path.isdir(os.path.join(root, name)):
            return os.path.join(root, name)
    raise FileNotFoundError(f"{what} not found in {root} (looked for {', '.join(names)})")


def ucf101(root: str, split: int = 1, subset: str = "train", check_files: bool = True):
    """UCF101 from ``root`` holding ``UCF-101/`` (videos) and ``ucfTrainTestlist/`` (splits 1-3)."""
    _require_dir(root, "UCF101 root")
    if split not in (1, 2, 3) or subset not in ("train", "test"):
        raise ValueError(f"UCF101 has splits 1-3 and subsets train/test, got split={split}, subset={subset!r}")
    videos = _find_subdir(root, ["UCF-101", "UCF101"], "UCF101 video folder")
    lists = _find_subdir(root, ["ucfTrainTestlist", "UCF101TrainTestSplits-RecognitionTask/ucfTrainTestlist"],
                         "UCF101 split folder")
    class_file = _require_file(os.path.join(lists, "classInd.txt"), "UCF101 class index")
    classes = {}
    for number, line in text_lines(class_file):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise DatasetLayoutError(f"{class_file}:{number}: expected '<id> <ClassName>', got {line!r}")
        classes[parts[1]] = int(parts[0]) - 1
    names = [n for n, _ in sorted(classes.items(), key=lambda kv: kv[1])]
    list_file = _require_file(os.path.join(lists, f"{subset}list0{split}.txt"), f"UCF101 {subset} list")
    samples, line_of = [], {}
    for number, line in text_lines(list_file):
        rel = line.split()[0]
        cls = rel.split("/")[0]
        if cls not in classes:
            raise DatasetLayoutError(f"{list_file}:{number}: class {cls!r} is not in {class_file}")
        group = _UCF_GROUP.search(rel)
        path = os.path.join(videos, rel)
        samples.append(VideoSample(path, classes[cls], f"{cls}_g{group.group(1)}" if group else None))
        line_of[path] = number
    if check_files:
        _check_exists(samples, list_file, line_of)
    return samples, names


# ----------------------------------------------------------------------------------------------- HMDB51

def hmdb51(root: str, split: int = 1, subset: str = "train", check_files: bool = True):
    """HMDB51 from ``root`` holding ``hmdb51_org/<class>/*.avi`` and ``testTrainMulti_7030_splits/``."""
    _require_dir(root, "HMDB51 root")
    if split not in (1, 2, 3) or subset not in ("train", "test"):
        raise ValueError(f"HMDB51 has splits 1-3 and subsets train/test, got split={split}, subset={subset!r}")
    videos = _find_subdir(root, ["hmdb51_org", "hmdb51"], "HMDB51 video folder")
    lists = _find_subdir(root, ["testTrainMulti_7030_splits"], "HMDB51 split folder")
    suffix = f"_test_split{split}.txt"
    files = sorted(f for f in os.listdir(lists) if f.endswith(suffix))
    if not files:
        raise FileNotFoundError(f"HMDB51 split files *{suffix} not found in {lists}")
    names = [f[: -len(suffix)] for f in files]
    wanted = "1" if subset == "train" else "2"
    samples, line_of = [], {}
    for label, (name, f) in enumerate(zip(names, files)):
        list_file = os.path.join(lists, f)
        for number, line in text_lines(list_file):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise DatasetLayoutError(f"{list_file}:{number}: expected '<video>.avi 0|1|2', got {line!r}")
            if parts[1] == wanted:
                path = os.path.join(videos, name, parts[0])
                samples.append(VideoSample(path, label, None))
                line_of[path] = number
        if check_files:
            _check_exists([s for s in samples if s.label == label], list_file, line_of)
    return samples, names


# ------------------------------------------------------------------------------------------ NTU RGB+D 60

_NTU_NAME = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})(?:_rgb)?\.\w+$")
NTU_XSUB_TRAIN = {1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38}
NTU_XVIEW_TRAIN = {2, 3}
NTU60_CLASSES = 60


def ntu60(root: str, protocol: str = "xsub", subset: str = "train"):
    """NTU RGB+D 60 from the file names in ``root/nturgb+d_rgb`` (or ``root`` itself): cross-subject
    (train performers as in the paper) or cross-view (train cameras 2, 3). Any resolution and container
    is accepted, so a pre-resized copy works."""
    _require_dir(root, "NTU RGB+D root")
    if protocol not in ("xsub", "xview") or subset not in ("train", "test"):
        raise ValueError(f"NTU protocols are xsub/xview and subsets train/test, got {protocol!r}, {subset!r}")
    videos = os.path.join(root, "nturgb+d_rgb") if os.path.isdir(os.path.join(root, "nturgb+d_rgb")) else root
    samples = []
    for f in sorted(os.listdir(videos)):
        m = _NTU_NAME.search(f)
        if not m or not f.lower().endswith(VIDEO_EXTENSIONS):
            continue
        _, camera, performer, _, action = (int(g) for g in m.groups())
        if not 1 <= action <= NTU60_CLASSES:
            continue  # NTU 120's extra actions
        train = performer in NTU_XSUB_TRAIN if protocol == "xsub" else camera in NTU_XVIEW_TRAIN
        if train == (subset == "train"):
            samples.append(VideoSample(os.path.join(videos, f), action - 1, f"P{performer:03d}"))
    if not samples:
        raise DatasetLayoutError(f"no NTU RGB+D videos named SsssCcccPpppRrrrAaaa_rgb.* found in {videos}")
    return samples, [f"A{a:03d}" for a in range(1, NTU60_CLASSES + 1)]


# ---------------------------------------------------------------------------------- CSV list and folders

# A list line: the path (anything, spaces and commas included), then a space, tab or comma, then the label.
_LIST_LINE = re.compile(r"^(?P<path>.+?)[\s,]+(?P<label>-?\d+)$")


def csv_list(list_file: str, prefix: str = "", class_names: Optional[Sequence[str]] = None,
             check_files: bool = True):
    """PySlowFast / authors' list: lines ``path label`` (0-based), paths relative to ``prefix``.

    The path is everything before the last separator (space, tab or comma), so paths may hold spaces and
    commas. Without ``class_names`` (a training list) the labels must number the classes 0..K-1 with
    none missing; with them (a test list, named by its training list's classes) every label must be
    one of them.
    """
    _require_file(list_file, "video list")
    samples, line_of = [], {}
    for number, line in text_lines(list_file):
        m = _LIST_LINE.match(line)
        if not m or int(m["label"]) < 0:
            raise DatasetLayoutError(f"{list_file}:{number}: expected '<path> <label>' with a label >= 0, "
                                     f"got {line!r}")
        label = int(m["label"])
        if class_names is not None and label >= len(class_names):
            raise DatasetLayoutError(f"{list_file}:{number}: label {label} is not one of the {len(class_names)} "
                                     f"classes of the training list (0..{len(class_names) - 1})")
        path = os.path.join(prefix, m["path"])
        samples.append(VideoSample(path, label, None))
        line_of[path] = number
    if not samples:
        raise DatasetLayoutError(f"{list_file}: the list is empty")
    if class_names is None:
        present = {s.label for s in samples}
        n = max(present) + 1
        if len(present) != n:
            missing = next(k for k, label in enumerate(sorted(present)) if k != label)  # the first gap
            raise DatasetLayoutError(f"{list_file}: labels go up to {n - 1} but only {len(present)} classes appear "
                                     f"(no sample of class {missing}); labels must number the classes 0..K-1")
        class_names = [str(i) for i in range(n)]
    if check_files:
        _check_exists(samples, list_file, line_of)
    return samples, list(class_names)


def class_folders(root: str, extensions: Sequence[str], what: str, class_names: Optional[Sequence[str]] = None):
    """([(class name, file path)], class names) of a class-per-folder tree ``root/<class>/<file>`` whose
    files end with one of ``extensions``; classes sorted by name.

    A class is a folder holding at least one such file; a link back into the tree (a symlink loop) is not
    a class. With ``class_names`` (a test folder, named by its training folder's classes) every class
    folder must be one of them. ``what`` names the files in errors ("videos", "event files").
    """
    _require_dir(root, f"{what[:-1]} folder")
    top = os.path.realpath(root)
    found = {}
    for d in sorted(os.listdir(root)):
        path = os.path.join(root, d)
        real = os.path.realpath(path)
        if not os.path.isdir(path) or top == real or top.startswith(real + os.sep):
            continue
        files = sorted(f for f in os.listdir(path) if f.lower().endswith(tuple(extensions))
                       and os.path.isfile(os.path.join(path, f)))
        if files:
            found[d] = files
    if not found:
        raise DatasetLayoutError(f"no {what} ({', '.join(extensions)}) in class folders under {root}")
    names = list(class_names) if class_names is not None else sorted(found)
    unknown = sorted(set(found) - set(names))
    if unknown:
        raise DatasetLayoutError(f"{root}: class folder(s) {', '.join(unknown)} are not classes of the training "
                                 f"folder ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})")
    return [(c, os.path.join(root, c, f)) for c in sorted(found) for f in found[c]], names


def folder(root: str, class_names: Optional[Sequence[str]] = None):
    """A class-per-folder tree of videos: ``root/<class>/<video>`` (`class_folders`)."""
    files, names = class_folders(root, VIDEO_EXTENSIONS, "videos", class_names)
    return [VideoSample(path, names.index(c), None) for c, path in files], names


# ------------------------------------------------------------------------------------ validation split

def split_validation(samples: List[VideoSample], fraction: float = 0.1, seed: int = 0
                     ) -> Tuple[List[VideoSample], List[VideoSample]]:
    """Carve a validation set off a *training* list: whole groups where samples have groups (so no
    UCF101 actor/background or NTU performer is on both sides), else single samples; the split is
    stratified by class and reproducible from ``seed``. Returns (train, val)."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    val_keys = set()
    by_class = {}
    for i, s in enumerate(samples):
        by_class.setdefault(s.label, []).append(s.group if s.group is not None else f"#{i}")
    for label in sorted(by_class):
        keys = sorted(set(by_class[label]))
        k = max(1, int(round(len(keys) * fraction))) if len(keys) > 1 else 0
        val_keys.update((label, key) for key in rng.permutation(keys)[:k])
    train, val = [], []
    for i, s in enumerate(samples):
        key = (s.label, s.group if s.group is not None else f"#{i}")
        (val if key in val_keys else train).append(s)
    return train, val
