"""A map-style dataset of video clips, for training (random clip, augmented) and testing (all views).

Items are dicts: ``clip`` (C, T, H, W) float, or (N, C, T, H, W) with N repeated augmentations;
``label`` int; ``index`` the video's position in the sample list; ``view`` the test view index.
Use `collate_clips` as the DataLoader's collate_fn: it stacks, flattens repeats, and drops (and counts)
unreadable samples.

An unreadable video is never silently replaced by zeros: with ``on_error='skip'`` (the default) the item
is `unreadable(video)`, which the collate function drops, counts in the batch's ``skipped`` and names in
its ``unreadable`` list (so evaluation can leave the whole video out); with 'raise' the error (naming
the file) propagates.
"""
from __future__ import annotations

import warnings
from typing import List, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .lists import VideoSample
from .sampling import RandomClipSampler, UniformClipSampler
from .transforms import TestTransform, TrainTransform, to_float_clip
from .video import VideoError, VideoReader


class VideoClipDataset(Dataset):
    """Clips of ``num_frames`` frames, ``sampling_rate`` apart, from a list of `VideoSample`s.

    Args:
        train: random clip + `TrainTransform` (repeated ``num_repeats`` times), else every test view.
        num_clips, num_crops: test views per video (the paper: 5 x 3).
        transform: overrides the default train/test transform; called as transform(clip, rng) in
            training and transform(clip, spatial_index) in testing.
    """

    def __init__(self, samples: Sequence[VideoSample], class_names: Sequence[str], train: bool, num_frames: int = 16,
                 sampling_rate: int = 4, crop_size: int = 224, num_clips: int = 1, num_crops: int = 1,
                 num_repeats: int = 1, transform=None, on_error: str = "skip", seed: Optional[int] = None):
        if on_error not in ("skip", "raise"):
            raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
        if not samples:
            raise ValueError("the dataset has no samples")
        self.samples: List[VideoSample] = list(samples)
        self.class_names = list(class_names)
        self.train, self.num_repeats, self.on_error, self.seed = train, num_repeats, on_error, seed
        if train:
            self.sampler = RandomClipSampler(num_frames, sampling_rate)
            self.transform = transform or TrainTransform(crop_size)
        else:
            self.sampler = UniformClipSampler(num_frames, sampling_rate, num_clips, num_crops)
            self.transform = transform or TestTransform(crop_size)
        self.epoch = 0  # set by the training loop: augmentation depends on (seed, epoch, index)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def views_per_video(self) -> int:
        return 1 if self.train else self.sampler.views_per_video

    def __len__(self) -> int:
        return len(self.samples) * self.views_per_video

    def _rng(self, index: int) -> np.random.Generator:
        if self.seed is not None:
            return np.random.default_rng((self.seed, self.epoch, index))
        # torch's RNG is seeded per DataLoader worker (and by a seeded DataLoader generator).
        return np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))

    def __getitem__(self, index: int):
        video, view = divmod(index, self.views_per_video)
        sample = self.samples[video]
        rng = self._rng(index)
        try:
            with VideoReader(sample.path) as reader:
                spec = self.sampler(len(reader), rng)[view]
                clip = to_float_clip(reader.read(spec.indices))
        except (VideoError, ValueError, OSError) as e:
            if self.on_error == "raise":
                raise
            warnings.warn(f"skipping unreadable sample {sample.path}: {e}", RuntimeWarning, stacklevel=2)
            return unreadable(video)
        if self.train:
            clips = [self.transform(clip, rng) for _ in range(self.num_repeats)]
            clip = clips[0] if self.num_repeats == 1 else torch.stack(clips)
        else:
            clip = self.transform(clip, spec.spatial_index)
        return {"clip": clip, "label": sample.label, "index": video, "view": view}


def unreadable(index: int) -> dict:
    """The item a dataset returns for a sample it could not read (``index``: the video's position)."""
    return {"unreadable": index}


def collate_clips(batch):
    """Stack items, flatten repeated augmentations into the batch, drop unreadable items (None or
    `unreadable`).

    Returns a dict with ``clip`` (B, C, T, H, W) stacked from the items' (C, T, H, W), ``label``,
    ``index``, ``view`` (B,), ``skipped`` (how many items of this batch were unreadable) and
    ``unreadable`` (the video indices of those that said which); only the last two when nothing in the
    batch could be read.
    """
    kept = [item for item in batch if item is not None and "unreadable" not in item]
    skipped = len(batch) - len(kept)
    lost = [item["unreadable"] for item in batch if item is not None and "unreadable" in item]
    if not kept:
        return {"skipped": skipped, "unreadable": lost}
    clips, labels, indices, views = [], [], [], []
    for item in kept:
        c = item["clip"]
        n = c.shape[0] if c.dim() == 5 else 1
        clips.append(c if c.dim() == 5 else c.unsqueeze(0))
        labels += [item["label"]] * n
        indices += [item["index"]] * n
        views += [item["view"]] * n
    return {"clip": torch.cat(clips),
            "label": torch.tensor(labels), "index": torch.tensor(indices), "view": torch.tensor(views),
            "skipped": skipped, "unreadable": lost}
