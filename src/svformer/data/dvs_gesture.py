"""DVS128 Gesture (Amir et al., CVPR 2017) from the unpacked ``DvsGesture/`` folder.

Samples are cut from each ``userNN_<lighting>.aedat`` by its ``_labels.csv`` (events with
start <= t < end; label = class - 1); the official ``trials_to_train.txt`` / ``trials_to_test.txt``
choose the files. Each item is a (T, 2, 128 / downsample, 128 / downsample) count tensor, built with
spikingjelly's frame rules (`events.events_to_frames`). Decoded samples are cached as .npz under
``cache_dir``, so after the first epoch no AEDAT file is read again.

`write_synthetic_gesture` writes an event dataset in exactly this layout from the synthetic motion
videos through a simple event-camera model.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from .events import AedatError, events_to_frames, read_aedat31, video_to_events, write_aedat31
from .lists import DatasetLayoutError, text_lines
from .video_dataset import unreadable

GESTURES = ("hand_clapping", "right_hand_wave", "left_hand_wave", "right_arm_clockwise",
            "right_arm_counter_clockwise", "left_arm_clockwise", "left_arm_counter_clockwise", "arm_roll",
            "air_drums", "air_guitar", "other_gestures")
LIGHTINGS = ("fluorescent", "fluorescent_led", "lab", "led", "natural")


@dataclass(frozen=True)
class GestureSample:
    aedat: str
    label: int
    start: int
    end: int


def read_labels(csv_path: str) -> List[tuple]:
    """(class - 1, start, end) rows of a DvsGesture labels CSV; bad rows raise naming file and line."""
    if not os.path.isfile(csv_path):
        raise FileNotFoundError(f"labels file not found: {csv_path}")
    rows = []
    for number, line in text_lines(csv_path):
        if number == 1 and line.startswith("class"):
            continue
        parts = line.split(",")
        try:
            cls, start, end = (int(p) for p in parts)
        except ValueError:
            raise DatasetLayoutError(f"{csv_path}:{number}: expected 'class,startTime_usec,endTime_usec' "
                                     f"integers, got {line!r}") from None
        if not 1 <= cls <= len(GESTURES) or end <= start:
            raise DatasetLayoutError(f"{csv_path}:{number}: class must be 1..{len(GESTURES)} and end > start, "
                                     f"got {line!r}")
        rows.append((cls - 1, start, end))
    return rows


def default_cache_dir(root: str) -> str:
    """``$XDG_CACHE_HOME/svformer/events/<hash of the dataset's path>`` (``~/.cache`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    key = hashlib.sha1(os.path.abspath(root).encode()).hexdigest()[:16]
    return os.path.join(base, "svformer", "events", key)


def cached_sample(cache_dir: str, path: str, tag: str,
                  load: Callable[[], Dict[str, np.ndarray]]) -> Dict[str, np.ndarray]:
    """The arrays ``load()`` cuts from the recording ``path`` for the sample ``tag``, from an ``.npz`` in
    ``cache_dir`` when one is there (keyed by the file's path, size and modification time, and ``tag``),
    else loaded and cached, written atomically. Used by every event dataset."""
    st = os.stat(path)
    key = f"{os.path.abspath(path)}|{st.st_size}|{int(st.st_mtime)}|{tag}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    cache = os.path.join(cache_dir, f"{os.path.basename(path)}_{tag}_{digest}.npz")
    if os.path.isfile(cache):
        with np.load(cache) as data:
            return {k: data[k] for k in data.files}
    arrays = load()
    os.makedirs(cache_dir, exist_ok=True)
    tmp = f"{cache}.{os.getpid()}.tmp.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, cache)
    return arrays


def gesture_root(root: str) -> str:
    """The unpacked ``DvsGesture/`` folder: ``root`` itself, or ``root/DvsGesture`` when ``root`` holds it."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"DvsGesture folder not found: {root}")
    for candidate in (root, os.path.join(root, "DvsGesture")):
        if os.path.isfile(os.path.join(candidate, "trials_to_train.txt")):
            return candidate
    raise FileNotFoundError(f"DvsGesture trial lists not found: neither {root} nor {os.path.join(root, 'DvsGesture')} "
                            f"holds trials_to_train.txt")


def gesture_samples(root: str, subset: str = "train") -> List[GestureSample]:
    """The samples of one subset; ``root`` is the unpacked ``DvsGesture/`` folder or the folder holding it."""
    if subset not in ("train", "test"):
        raise ValueError(f"subset must be 'train' or 'test', got {subset!r}")
    root = gesture_root(root)
    trials = os.path.join(root, f"trials_to_{subset}.txt")
    if not os.path.isfile(trials):
        raise FileNotFoundError(f"DvsGesture trial list not found: {trials}")
    samples = []
    with open(trials) as f:
        for number, line in enumerate(f, 1):
            name = line.strip()
            if not name:
                continue
            aedat = os.path.join(root, name)
            if not os.path.isfile(aedat):
                raise DatasetLayoutError(f"{trials}:{number}: listed file {aedat} does not exist")
            labels = aedat[: -len(".aedat")] + "_labels.csv"
            samples += [GestureSample(aedat, c, s, e) for c, s, e in read_labels(labels)]
    if not samples:
        raise DatasetLayoutError(f"{trials}: no samples")
    return samples


class DVSGesture(Dataset):
    """Items: dict ``clip`` (2, T, H, W) float counts — the (C, T, H, W) convention of every clip —,
    ``label``, ``index``, ``view`` (0)."""

    def __init__(self, root: str, subset: str = "train", num_frames: int = 16, split_by: str = "number",
                 downsample: int = 1, cache_dir: Optional[str] = None, on_error: str = "skip"):
        root = gesture_root(root)
        self.root, self.num_frames, self.split_by, self.downsample = root, num_frames, split_by, downsample
        self.samples = gesture_samples(root, subset)
        self.class_names = list(GESTURES)
        # Never inside the dataset: a data root is the user's, and may be read-only or shared.
        self.cache_dir = cache_dir or default_cache_dir(root)
        self.on_error = on_error
        self.train = subset == "train"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.samples)

    def events(self, index: int) -> np.ndarray:
        """The events of one sample, from the cache or (first time) from its AEDAT file."""
        sample = self.samples[index]

        def cut():
            events = read_aedat31(sample.aedat)
            return {"events": events[(events["t"] >= sample.start) & (events["t"] < sample.end)]}

        return cached_sample(self.cache_dir, sample.aedat, f"{sample.start}_{sample.end}", cut)["events"]

    def __getitem__(self, index: int):
        try:
            events = self.events(index)
        except (AedatError, OSError) as e:
            if self.on_error == "raise":
                raise
            warnings.warn(f"skipping unreadable sample {self.samples[index].aedat}: {e}", RuntimeWarning,
                          stacklevel=2)
            return unreadable(index)
        frames = events_to_frames(events, self.num_frames, (128, 128), self.split_by, self.downsample)
        return {"clip": torch.from_numpy(frames).transpose(0, 1), "label": self.samples[index].label,
                "index": index, "view": 0}


def write_synthetic_gesture(root: str, users_train: int = 3, users_test: int = 1, lightings=("lab", "led"),
                            samples_per_class: int = 1, num_classes: int = 10, seed: int = 0,
                            frames_per_sample: int = 24, fps: float = 100.0) -> str:
    """Write an event dataset in the DvsGesture layout: each ``userNN_<lighting>.aedat`` holds one
    synthetic motion clip per class (the motion classes of `synthetic.CLASSES`, mapped to labels
    0..num_classes-1), rendered at 128x128 and turned into events by `events.video_to_events`, with
    its ``_labels.csv`` and the trial lists. Skips work when ``root`` already holds this dataset; never
    writes into a folder holding anything else (`synthetic.claim_root`)."""
    from .synthetic import claim_root, finish_root, render_for_events

    signature = (f"events|users={users_train}+{users_test}|{','.join(lightings)}|x{samples_per_class}|"
                 f"classes={num_classes}|frames={frames_per_sample}@{fps}|seed={seed}")
    if claim_root(root, signature):
        return root
    rng = np.random.default_rng(seed)
    lists = {"train": [], "test": []}
    for user in range(1, users_train + users_test + 1):
        subset = "train" if user <= users_train else "test"
        for lighting in lightings:
            name = f"user{user:02d}_{lighting}"
            t0, chunks, rows = 1_000_000, [], []
            for label in list(range(num_classes)) * samples_per_class:
                frames = render_for_events(label, rng, 128, frames_per_sample)
                ev = video_to_events(frames, fps, rng=rng, t0_us=t0)
                end = t0 + int(len(frames) * 1e6 / fps)
                rows.append((label + 1, t0, end))
                chunks.append(ev)
                t0 = end + 200_000
            write_aedat31(os.path.join(root, f"{name}.aedat"), np.concatenate(chunks))
            with open(os.path.join(root, f"{name}_labels.csv"), "w") as f:
                f.write("class,startTime_usec,endTime_usec\n")
                f.writelines(f"{c},{s},{e}\n" for c, s, e in rows)
            lists[subset].append(f"{name}.aedat")
    for subset, names in lists.items():
        with open(os.path.join(root, f"trials_to_{subset}.txt"), "w") as f:
            f.writelines(n + "\n" for n in names)
    finish_root(root, signature)
    return root
