"""Clip sampling: which frames of a video make a clip, and which views a test video is seen through.

One mechanism, two samplers (PySlowFast's rules, used by the SVFormer authors):

- a clip covers a window of ``num_frames x sampling_rate`` frames; its ``num_frames`` indices are
  ``linspace(start, start + window - 1, num_frames)``, clamped to the video and truncated to integers;
- `RandomClipSampler` (training) draws the window start uniformly in [0, max(L - window, 0)];
- `UniformClipSampler` (testing) places K windows with the authors' offset rule: clip i starts at
  i * floor((L - window) / (K - 1)) (K = 1: the centre window), each seen through S spatial crops
  (S = 3: left/centre/right or top/centre/bottom after resizing the short side to the crop size;
  S = 1: the centre crop).

Samplers return `ClipSpec` records, so datasets and evaluation share one description of a view.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np


@dataclass(frozen=True)
class ClipSpec:
    """One view of a video: its frame indices, temporal clip index and spatial crop index."""

    indices: Tuple[int, ...]
    clip_index: int = 0
    spatial_index: int = 1  # 0 left/top, 1 centre, 2 right/bottom
    num_clips: int = 1
    num_crops: int = 1

    @property
    def view_index(self) -> int:
        return self.clip_index * self.num_crops + (self.spatial_index if self.num_crops > 1 else 0)


def clip_indices(start: float, num_frames: int, sampling_rate: int, video_frames: int) -> Tuple[int, ...]:
    """The authors' rule: num_frames indices by linspace over the window, clamped, truncated."""
    window = num_frames * sampling_rate
    idx = np.linspace(start, start + window - 1, num_frames)
    return tuple(int(i) for i in np.clip(idx, 0, video_frames - 1))


class RandomClipSampler:
    """Training: one clip at a uniformly random start."""

    def __init__(self, num_frames: int, sampling_rate: int):
        self.num_frames, self.sampling_rate = num_frames, sampling_rate

    def __call__(self, video_frames: int, rng: Optional[np.random.Generator] = None) -> List[ClipSpec]:
        rng = rng or np.random.default_rng()
        delta = max(video_frames - self.num_frames * self.sampling_rate, 0)
        start = rng.uniform(0, delta)
        return [ClipSpec(clip_indices(start, self.num_frames, self.sampling_rate, video_frames))]


class UniformClipSampler:
    """Testing: ``num_clips`` windows by the offset rule x ``num_crops`` spatial crops (1 or 3)."""

    def __init__(self, num_frames: int, sampling_rate: int, num_clips: int = 1, num_crops: int = 1):
        if num_crops not in (1, 3):
            raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
        if num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, got {num_clips}")
        self.num_frames, self.sampling_rate = num_frames, sampling_rate
        self.num_clips, self.num_crops = num_clips, num_crops

    @property
    def views_per_video(self) -> int:
        return self.num_clips * self.num_crops

    def start(self, video_frames: int, clip_index: int) -> float:
        delta = max(video_frames - self.num_frames * self.sampling_rate, 0)
        if self.num_clips == 1:
            return delta / 2
        return clip_index * (delta // (self.num_clips - 1))

    def __call__(self, video_frames: int, rng=None) -> List[ClipSpec]:
        views = []
        for c in range(self.num_clips):
            idx = clip_indices(self.start(video_frames, c), self.num_frames, self.sampling_rate, video_frames)
            crops = range(3) if self.num_crops == 3 else [1]
            views += [ClipSpec(idx, c, s, self.num_clips, self.num_crops) for s in crops]
        return views
