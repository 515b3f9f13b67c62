"""Multi-view evaluation: every (clip, crop) view of every test video through the model, raw logits
summed per video as the authors did (``DATA.ENSEMBLE_METHOD sum``), then top-1/top-5, per-class accuracy,
a confusion matrix and the firing rate of every spiking layer.

A video with any unreadable view is left out of the scores (a partial sum of views would be another
protocol) and counted: ``num_videos`` of ``total_videos`` were scored, ``skipped`` views unreadable."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
from torch import nn

from ..snn import FiringRateMonitor
from .amp import autocast
from .distributed import DistInfo, all_gather_objects
from .progress import progress


@dataclass
class EvalResult:
    top1: float
    top5: float
    num_videos: int
    per_class: Dict[str, float] = field(default_factory=dict)
    confusion: Optional[np.ndarray] = None
    firing_rates: Dict[str, float] = field(default_factory=dict)
    skipped: int = 0
    total_videos: int = 0

    def summary(self) -> dict:
        return {"top1": self.top1, "top5": self.top5, "num_videos": self.num_videos,
                "total_videos": self.total_videos, "skipped": self.skipped}

    def coverage(self) -> str:
        """'on N videos', or 'on N of M videos (K unreadable views left out)' when some were unreadable."""
        if self.num_videos == self.total_videos and not self.skipped:
            return f"on {self.num_videos} videos"
        return (f"on {self.num_videos} of {self.total_videos} videos "
                f"({self.skipped} unreadable views: their videos left out)")


@torch.no_grad()
def evaluate(model: nn.Module, loader, class_names: List[str], device: torch.device, amp: bool = False,
             info: DistInfo = DistInfo(), clip_fn: Optional[Callable] = None, monitor: bool = True,
             desc: str = "test") -> EvalResult:
    """``clip_fn`` transforms each batch of clips before the model (e.g. the frame-shuffled control)."""
    model.eval()
    views: Dict[tuple, np.ndarray] = {}
    labels: Dict[int, int] = {}
    skipped, lost = 0, set()
    mon = FiringRateMonitor(model) if monitor else contextlib.nullcontext()
    with mon:
        for batch in progress(loader, desc=desc, enabled=info.is_main):
            skipped += batch["skipped"]
            lost.update(batch.get("unreadable", []))
            if "clip" not in batch:
                continue
            clips = batch["clip"].to(device, non_blocking=True)
            if clip_fn is not None:
                clips = clip_fn(clips)
            with autocast(device, amp):
                logits = model(clips)
            logits = logits.float().cpu().numpy()
            for v, view, lab, row in zip(batch["index"].tolist(), batch["view"].tolist(), batch["label"].tolist(),
                                         logits):
                views[(v, view)] = row
                labels[v] = lab
    rates = mon.rates() if monitor else {}
    gathered = all_gather_objects((views, labels, skipped, lost, rates), info)
    views, labels, skipped, lost, all_rates = {}, {}, 0, set(), []
    for v, lab, s, gone, r in gathered:
        views.update(v)
        labels.update(lab)
        skipped += s
        lost |= gone
        all_rates.append(r)
    rates = {k: float(np.mean([r[k] for r in all_rates if k in r])) for k in all_rates[0]} if all_rates else {}
    views = {key: row for key, row in views.items() if key[0] not in lost}
    labels = {v: lab for v, lab in labels.items() if v not in lost}
    result = _metrics(views, labels, class_names, skipped, rates)
    result.total_videos = _num_videos(loader.dataset)
    return result


def _num_videos(dataset) -> int:
    """Videos in an evaluation dataset (a `VideoClipDataset` has several views per video)."""
    return len(dataset) // getattr(dataset, "views_per_video", 1)


def _metrics(views, labels, class_names, skipped, rates) -> EvalResult:
    num_classes = len(class_names)
    videos = sorted(labels)
    if not videos:
        return EvalResult(0.0, 0.0, 0, skipped=skipped, firing_rates=rates)
    sums = {v: np.zeros(num_classes) for v in videos}
    for (v, _), row in views.items():
        sums[v] += row
    scores = np.stack([sums[v] for v in videos])
    target = np.array([labels[v] for v in videos])
    order = np.argsort(-scores, axis=1)
    k = min(5, num_classes)
    top1 = float(np.mean(order[:, 0] == target))
    top5 = float(np.mean([t in o[:k] for t, o in zip(target, order)]))
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (target, order[:, 0]), 1)
    per_class = {}
    for c, name in enumerate(class_names):
        n = confusion[c].sum()
        if n:
            per_class[name] = float(confusion[c, c] / n)
    return EvalResult(top1, top5, len(videos), per_class, confusion, rates, skipped)


def shuffle_frames_fn(seed: int = 0) -> Callable[[torch.Tensor], torch.Tensor]:
    """The frame-shuffled control: each clip's frames in its own random order. Clips are (B, C, T, H, W)."""
    gen = torch.Generator().manual_seed(seed)

    def fn(clips: torch.Tensor) -> torch.Tensor:
        b, _, t = clips.shape[:3]
        perm = torch.stack([torch.randperm(t, generator=gen) for _ in range(b)]).to(clips.device)
        index = perm.view(b, 1, t, 1, 1).expand(-1, clips.shape[1], -1, clips.shape[3], clips.shape[4])
        return clips.gather(2, index)
    return fn
