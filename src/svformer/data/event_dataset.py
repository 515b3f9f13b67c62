"""Your own event recordings as a dataset: any format `event_files` reads, any sensor size.

Two layouts, both with a training and a test part (testing on training recordings would report a lie):

- ``event_folder``: ``root/train/<class>/<file>`` and ``root/test/<class>/<file>``, classes sorted by name;
  each file is one sample (all its events);
- ``event_csv``: ``root/train.csv`` and ``root/test.csv``, lines ``path label [start_us end_us]`` (paths
  relative to ``root``; labels number the classes 0..K-1), so one recording can hold many samples.

Each item is (2, T, S, S) float event counts (the (C, T, H, W) convention of every clip): the sample's
events cut into T frames by spikingjelly's rules (``split_by``), at the sensor's own geometry, then brought
to S = ``data.crop_size`` by the configured rule (`events.fit_frames`). Cut samples are cached as for DVS128
Gesture (``data.cache_dir``, default ``~/.cache/svformer/events``); an unreadable file is skipped and counted
(``data.on_error``).
"""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from .dvs_gesture import cached_sample, default_cache_dir
from .event_files import EventFileError, read_recording
from .events import events_to_frames, fit_frames
from .lists import DatasetLayoutError, _require_dir, _require_file, class_folders, text_lines
from .video_dataset import unreadable

EVENT_EXTENSIONS = (".aedat", ".aedat4", ".raw", ".dat", ".h5", ".hdf5")
_LINE = re.compile(r"^(?P<path>.+?)[\s,]+(?P<label>-?\d+)(?:[\s,]+(?P<start>-?\d+)[\s,]+(?P<end>-?\d+))?$")


@dataclass(frozen=True)
class EventSample:
    path: str
    label: int
    start: Optional[int] = None  # microseconds, start <= t < end; None: the whole recording
    end: Optional[int] = None
    group: Optional[str] = None  # samples of one recording stay together in the validation split


def event_list(list_file: str, root: str, class_names: Optional[Sequence[str]] = None):
    """(samples, class names) of a ``path label [start_us end_us]`` list; bad lines name file and line."""
    _require_file(list_file, "event list")
    samples = []
    for number, line in text_lines(list_file):
        m = _LINE.match(line)
        if not m or int(m["label"]) < 0:
            raise DatasetLayoutError(f"{list_file}:{number}: expected '<path> <label> [<start_us> <end_us>]' with a "
                                     f"label >= 0, got {line!r}")
        start, end = (int(m["start"]), int(m["end"])) if m["start"] is not None else (None, None)
        if start is not None and end <= start:
            raise DatasetLayoutError(f"{list_file}:{number}: end must be after start, got {line!r}")
        label = int(m["label"])
        if class_names is not None and label >= len(class_names):
            raise DatasetLayoutError(f"{list_file}:{number}: label {label} is not one of the {len(class_names)} "
                                     f"classes of the training list")
        path = os.path.join(root, m["path"])
        if not os.path.isfile(path):
            raise DatasetLayoutError(f"{list_file}:{number}: listed file {path} does not exist")
        samples.append(EventSample(path, label, start, end, path))
    if not samples:
        raise DatasetLayoutError(f"{list_file}: the list is empty")
    if class_names is None:
        present = sorted({s.label for s in samples})
        if present != list(range(len(present))):
            raise DatasetLayoutError(f"{list_file}: labels must number the classes 0..K-1, found {present[:10]}")
        class_names = [str(i) for i in present]
    return samples, list(class_names)


def event_folder(root: str, class_names: Optional[Sequence[str]] = None):
    """(samples, class names) of ``root/<class>/<event file>`` (`lists.class_folders`)."""
    files, names = class_folders(root, EVENT_EXTENSIONS, "event files", class_names)
    return [EventSample(path, names.index(c)) for c, path in files], names


def event_samples(name: str, root: str, subset: str) -> Tuple[List[EventSample], List[str]]:
    """(samples, class names) of the ``subset`` ('train' or 'test') of an ``event_folder``/``event_csv`` root."""
    if name == "event_csv":
        names = None if subset == "train" else event_list(os.path.join(root, "train.csv"), root)[1]
        return event_list(os.path.join(root, f"{subset}.csv"), root, names)
    if not all(os.path.isdir(os.path.join(root, s)) for s in ("train", "test")):
        _require_dir(root, "event folder")
        raise DatasetLayoutError(f"{root}: an event folder dataset needs train/<class>/ and test/<class>/ subfolders")
    names = None if subset == "train" else event_folder(os.path.join(root, "train"))[1]
    return event_folder(os.path.join(root, subset), names)


class EventFileDataset(Dataset):
    """Items: dict ``clip`` (2, T, S, S) float counts, ``label``, ``index``, ``view`` (0)."""

    def __init__(self, samples: List[EventSample], class_names: List[str], root: str, num_frames: int = 16,
                 size: int = 128, split_by: str = "number", geometry: str = "resize", downsample: int = 1,
                 sensor_size: Optional[Tuple[int, int]] = None, cache_dir: Optional[str] = None,
                 on_error: str = "skip"):
        self.samples, self.class_names = samples, list(class_names)
        self.num_frames, self.size, self.split_by = num_frames, size, split_by
        self.geometry, self.downsample = geometry, downsample
        self.sensor_size = tuple(sensor_size) if sensor_size else None
        self.cache_dir = cache_dir or default_cache_dir(root)
        self.on_error = on_error

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.samples)

    def recording(self, index: int) -> Tuple[np.ndarray, Tuple[int, int]]:
        """(events of the sample, sensor (height, width)), from the cache or (first time) from its file."""
        sample = self.samples[index]

        def cut():
            rec = read_recording(sample.path, self.sensor_size)
            events = rec.events
            if sample.start is not None:
                events = events[(events["t"] >= sample.start) & (events["t"] < sample.end)]
            return {"events": events, "sensor_size": np.array(rec.sensor_size)}

        data = cached_sample(self.cache_dir, sample.path, f"{sample.start}_{sample.end}_{self.sensor_size}", cut)
        return data["events"], tuple(int(v) for v in data["sensor_size"])

    def __getitem__(self, index: int):
        try:
            events, sensor = self.recording(index)
            if len(events) < self.num_frames:
                raise EventFileError(f"{self.samples[index].path}: {len(events)} events, fewer than the "
                                     f"{self.num_frames} frames of a sample")
            frames = recording_frames(events, sensor, self.num_frames, self.size, self.split_by, self.geometry,
                                      self.downsample)
        except (EventFileError, OSError, ValueError) as e:
            if self.on_error == "raise":
                raise
            warnings.warn(f"skipping unreadable sample {self.samples[index].path}: {e}", RuntimeWarning, stacklevel=2)
            return unreadable(index)
        return {"clip": torch.from_numpy(frames).transpose(0, 1), "label": self.samples[index].label,
                "index": index, "view": 0}


def recording_frames(events: np.ndarray, sensor_size: Tuple[int, int], num_frames: int, size: int,
                     split_by: str = "number", geometry: str = "resize", downsample: int = 1) -> np.ndarray:
    """(T, 2, size, size) float32 counts of a recording's events: frames at the sensor's geometry, then
    `events.fit_frames`."""
    frames = events_to_frames(events, num_frames, sensor_size, split_by)
    return fit_frames(frames, (size, size), geometry, downsample)
