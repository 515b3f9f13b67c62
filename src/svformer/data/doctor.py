"""`svformer data check`: validate an unpacked dataset against its expected layout.

Reads every split list, checks that every listed file exists and decodes (first and last frame of a
video; all packets of an AEDAT file), and reports classes and counts per split, or every problem found
with its file (and line). Returns a `CheckReport`; the CLI exits non-zero when it has problems.
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
            lines.append("OK: every listed file is present and decodes")
        return "\n".join(lines)


def _progress(items, desc, show):
    if not show:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="file", dynamic_ncols=True)


def check_dataset(name: str, root: str, split: int = 1, decode: bool = True, progress: bool = True) -> CheckReport:
    report = CheckReport(name, root)
    if name in EVENT_DATASETS:
        return _check_gesture(root, report, decode, progress)
    for subset in ("train", "test"):
        try:
            samples, classes = video_samples(name, root, split, subset)
        except (OSError, ValueError) as e:
            report.add(str(e))
            continue
        report.classes = len(classes)
        report.counts[subset] = len(samples)
        if decode:
            for s in _progress(samples, f"decoding {subset}", progress):
                try:
                    with VideoReader(s.path) as r:
                        r.read([0, len(r) - 1])
                except (VideoError, ValueError) as e:
                    report.add(str(e))
    return report


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
