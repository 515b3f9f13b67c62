"""`svformer data check`: validate an unpacked dataset against its expected layout.

Reads every split list and checks every listed file at one of three depths (``level``):

- ``'lists'``: the lists parse and every listed file exists;
- ``'index'`` (the default): also opens every video and builds its frame index from the packets (no
  decoding), and reports a file whose header claims more frames than it holds (a download cut short);
  AEDAT files are read whole;
- ``'decode'``: also decodes every frame of every video.

Reports classes and counts per split, or every problem found with its file (and line or frame).
Returns a `CheckReport`; the CLI exits non-zero when it has problems.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List

from .build import EVENT_DATASETS, video_samples
from .video import VideoError, VideoReader


@dataclass
class CheckReport:
    dataset: str
    root: str
    classes: int = 0
    counts: Dict[str, int] = field(default_factory=dict)
    problems: List[str] = field(default_factory=list)
    level: str = "index"

    def add(self, problem: str) -> None:
        if problem not in self.problems:
            self.problems.append(problem)

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self) -> str:
        lines = [f"dataset {self.dataset} at {self.root}: {self.classes} classes"]
        lines += [f"  {subset:<6}{n:>8} samples" for subset, n in self.counts.items()]
        if self.problems:
            lines.append(f"{len(self.problems)} problem(s):")
            lines += [f"  {p}" for p in self.problems[:50]]
            if len(self.problems) > 50:
                lines.append(f"  ... and {len(self.problems) - 50} more")
        else:
            lines.append("OK: every listed file is present" + {"lists": "", "index": " and indexed",
                                                                "decode": " and decodes"}[self.level])
        return "\n".join(lines)


def _progress(items, desc, show):
    if not show:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="file", dynamic_ncols=True)


LEVELS = ("lists", "index", "decode")


def check_video(path: str, level: str = "index") -> None:
    """Raise `VideoError` if the video at ``path`` fails the check of ``level`` ('index' or 'decode')."""
    with VideoReader(path) as r:
        if r.header_frames > len(r) + r.index.empty:
            raise VideoError(f"{path}: holds {len(r)} frames but its header says {r.header_frames} (cut short?)")
        if level == "decode":
            r.verify()


def check_dataset(name: str, root: str, split: int = 1, level: str = "index", progress: bool = True) -> CheckReport:
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    report = CheckReport(name, root, level=level)
    decode = level != "lists"
    if name == "dvs128_gesture":
        return _check_gesture(root, report, decode, progress)
    if name in EVENT_DATASETS:
        return _check_event_files(name, root, report, decode, progress)
    return _check_subsets(report, lambda subset: video_samples(name, root, split, subset),
                          "decoding" if level == "decode" else "indexing", lambda samples: [s.path for s in samples],
                          lambda path: check_video(path, level), VideoError, decode, progress)


def _check_subsets(report, samples_of, verb, paths_of, check, errors, decode, progress):
    """Fill ``report`` from the train and test lists (``samples_of(subset) -> (samples, classes)``) and, with
    ``decode``, from ``check(path)`` on each of ``paths_of(samples)``, recording its ``errors``."""
    for subset in ("train", "test"):
        try:
            samples, classes = samples_of(subset)
        except (OSError, ValueError) as e:
            report.add(str(e))
            continue
        report.classes = len(classes)
        report.counts[subset] = len(samples)
        if decode:
            for path in _progress(paths_of(samples), f"{verb} {subset}", progress):
                try:
                    check(path)
                except errors as e:
                    report.add(str(e))
    return report


def _check_event_files(name, root, report, decode, progress):
    from .event_dataset import event_samples
    from .event_files import EventFileError, read_recording

    def check(path):
        if len(read_recording(path).events) == 0:
            raise EventFileError(f"{path}: no events")

    return _check_subsets(report, lambda subset: event_samples(name, root, subset), "reading",
                          lambda samples: sorted({s.path for s in samples}), check, (EventFileError, OSError, ImportError),
                          decode, progress)


def _check_gesture(root, report, decode, progress):
    from .dvs_gesture import GESTURES, gesture_samples
    from .events import AedatError, read_aedat31

    report.classes = len(GESTURES)
    for subset in ("train", "test"):
        try:
            samples = gesture_samples(root, subset)
        except (OSError, ValueError) as e:
            report.add(str(e))
            continue
        report.counts[subset] = len(samples)
        if decode:
            for path in _progress(sorted({s.aedat for s in samples}), f"reading {subset}", progress):
                try:
                    if len(read_aedat31(path)) == 0:
                        report.add(f"{path}: no polarity events")
                except AedatError as e:
                    report.add(str(e))
    return report
