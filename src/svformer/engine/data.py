"""Datasets and loaders from a config: train (augmented), validation (carved from the training list,
one centre view) and test (clips x crops views)."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Sampler, SequentialSampler, Subset

from ..config import TrainConfig
from ..data.build import video_samples
from ..data.lists import split_validation
from ..data.transforms import TrainTransform
from ..data.video_dataset import VideoClipDataset, collate_clips


@dataclass
class Datasets:
    train: Dataset
    val: Optional[Dataset]
    test: Dataset
    class_names: List[str]
    in_chans: int
    img_size: int


def prepare_synthetic(cfg: TrainConfig, progress: bool = False) -> None:
    d = cfg.data
    if d.synthetic == "video":
        from ..data.synthetic import SynthConfig, write_ucf_layout

        write_ucf_layout(d.root, SynthConfig(size=d.synthetic_size, num_frames=d.synthetic_frames,
                                             clips_per_group=d.synthetic_clips_per_group,
                                             train_groups=d.synthetic_train_groups), seed=cfg.seed, progress=progress)
    elif d.synthetic == "events":
        from ..data.dvs_gesture import write_synthetic_gesture

        write_synthetic_gesture(d.root, seed=cfg.seed)
    elif d.synthetic is not None:
        raise ValueError(f"data.synthetic must be 'video', 'events' or null, got {d.synthetic!r}")


def build_datasets(cfg: TrainConfig) -> Datasets:
    d, a = cfg.data, cfg.aug
    if d.dataset == "dvs128_gesture":
        return _gesture(cfg)
    if d.dataset in ("event_folder", "event_csv"):
        return _own_events(cfg)
    train_samples, names = video_samples(d.dataset, d.root, d.split, "train")
    test_samples, _ = video_samples(d.dataset, d.root, d.split, "test")
    val_samples = None
    if d.val_fraction > 0:
        train_samples, val_samples = split_validation(train_samples, d.val_fraction, cfg.seed)
    transform = TrainTransform(d.crop_size, a.rand_augment, a.erasing_p, tuple(a.scale), tuple(a.ratio), a.flip)
    common = dict(num_frames=d.num_frames, sampling_rate=d.sampling_rate, crop_size=d.crop_size)
    common = dict(common, on_error=d.on_error)
    train = VideoClipDataset(train_samples, names, train=True, num_repeats=a.repeats, transform=transform,
                             seed=cfg.seed, **common)
    val = VideoClipDataset(val_samples, names, train=False, **common) if val_samples else None
    test = VideoClipDataset(test_samples, names, train=False, num_clips=d.test_clips, num_crops=d.test_crops,
                            **common)
    return Datasets(train, val, test, names, 3, d.crop_size)


def _gesture(cfg: TrainConfig) -> Datasets:
    from ..data.dvs_gesture import DVSGesture

    d = cfg.data
    kw = dict(num_frames=d.num_frames, split_by=d.split_by, downsample=d.downsample, on_error=d.on_error,
              cache_dir=d.cache_dir)
    train = DVSGesture(d.root, "train", **kw)
    test = DVSGesture(d.root, "test", **kw)
    val = None
    if d.val_fraction > 0:
        users = sorted({re.match(r"user(\d+)", os.path.basename(s.aedat)).group(1) for s in train.samples})
        rng = np.random.default_rng(cfg.seed)
        k = max(1, int(round(len(users) * d.val_fraction))) if len(users) > 1 else 0
        val_users = set(rng.permutation(users)[:k].tolist())
        in_val = [re.match(r"user(\d+)", os.path.basename(s.aedat)).group(1) in val_users for s in train.samples]
        val = Subset(train, [i for i, v in enumerate(in_val) if v])
        train = Subset(train, [i for i, v in enumerate(in_val) if not v])
        train.class_names = val.class_names = test.class_names
    return Datasets(train, val, test, test.class_names, 2, 128 // d.downsample)


def _own_events(cfg: TrainConfig) -> Datasets:
    from ..data.event_dataset import EventFileDataset, event_samples

    d = cfg.data
    train_samples, names = event_samples(d.dataset, d.root, "train")
    test_samples, _ = event_samples(d.dataset, d.root, "test")
    kw = dict(root=d.root, num_frames=d.num_frames, size=d.crop_size, split_by=d.split_by, geometry=d.event_geometry,
              downsample=d.downsample, sensor_size=d.sensor_size, cache_dir=d.cache_dir, on_error=d.on_error)
    val = None
    if d.val_fraction > 0:
        train_samples, val_samples = split_validation(train_samples, d.val_fraction, cfg.seed)
        val = EventFileDataset(val_samples, names, **kw) if val_samples else None
    return Datasets(EventFileDataset(train_samples, names, **kw), val, EventFileDataset(test_samples, names, **kw),
                    names, 2, d.crop_size)


class _Skip(Sampler):
    """The indices of ``sampler`` after the first ``count`` (resuming inside an epoch)."""

    def __init__(self, sampler, count: int):
        self.sampler, self.count = sampler, count

    def __iter__(self):
        return iter(list(self.sampler)[self.count:])

    def __len__(self) -> int:
        return max(len(self.sampler) - self.count, 0)


def make_loader(dataset: Dataset, batch_size: int, train: bool, workers: int, seed: int, epoch: int = 0,
                rank: int = 0, world_size: int = 1, skip_batches: int = 0) -> DataLoader:
    """A loader whose order and augmentation depend only on (seed, epoch): resuming reproduces them.
    ``skip_batches``: start after that many batches of the epoch (a run stopped inside it)."""
    base = dataset.dataset if isinstance(dataset, Subset) else dataset
    if hasattr(base, "epoch"):
        base.epoch = epoch
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    if world_size > 1:
        sampler = DistributedSampler(dataset, world_size, rank, shuffle=train, seed=seed, drop_last=train)
        sampler.set_epoch(epoch)
    else:
        sampler = RandomSampler(dataset, generator=generator) if train else SequentialSampler(dataset)
    if skip_batches:
        sampler = _Skip(sampler, skip_batches * batch_size)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate_clips,
                      drop_last=train, generator=generator, persistent_workers=False, pin_memory=False)
