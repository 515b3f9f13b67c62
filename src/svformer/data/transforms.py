"""Clip transforms on (C, T, H, W) float tensors, identical across the frames of a clip.

The training recipe is the authors' (PySlowFast): RandAugment ``rand-m5-n2-mstd0.25`` (`randaugment.py`)
-> normalise (mean 0.45, std 0.225) -> RandomResizedCrop (scale 0.08-1,
ratio 3/4-4/3) -> horizontal flip -> random erasing (p 0.25, per-pixel noise, the same box in every
frame); then, per batch, mixup 0.8 / cutmix 1.0 with label smoothing 0.1 (`Mixup`). Testing resizes the
short side to the crop size and takes the crop of the view's spatial index.

Random choices come from an explicit ``numpy.random.Generator`` so a clip's augmentation is
reproducible from a seed; the frames of a clip always share one set of parameters.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .randaugment import RandAugment

MEAN = (0.45, 0.45, 0.45)
STD = (0.225, 0.225, 0.225)


def to_float_clip(frames: np.ndarray) -> torch.Tensor:
    """uint8 frames (T, H, W, C) -> float (C, T, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float().div_(255.0)


def _resize(clip: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    frames = clip.transpose(0, 1)  # (T, C, H, W)
    if tuple(frames.shape[-2:]) == tuple(size):
        return clip
    out = F.interpolate(frames, size=size, mode="bilinear", align_corners=False, antialias=True)
    return out.transpose(0, 1)


def resize_short_side(clip: torch.Tensor, size: int) -> torch.Tensor:
    h, w = clip.shape[-2:]
    if h <= w:
        return _resize(clip, (size, max(size, round(w * size / h))))
    return _resize(clip, (max(size, round(h * size / w)), size))


def spatial_crop(clip: torch.Tensor, size: int, spatial_index: int = 1) -> torch.Tensor:
    """Square crop of ``size`` along the long side: 0 left/top, 1 centre, 2 right/bottom."""
    h, w = clip.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"clip of {h}x{w} is smaller than the crop {size}")
    y, x = (h - size) // 2, (w - size) // 2
    if spatial_index != 1:
        if w >= h:
            x = 0 if spatial_index == 0 else w - size
        else:
            y = 0 if spatial_index == 0 else h - size
    return clip[..., y:y + size, x:x + size]


def random_resized_crop(clip: torch.Tensor, size: int, rng: np.random.Generator,
                        scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> torch.Tensor:
    """Inception-style crop (area fraction in ``scale``, log-uniform aspect ``ratio``), resized to size^2."""
    h, w = clip.shape[-2:]
    area = h * w
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            return _resize(clip[..., y:y + ch, x:x + cw], (size, size))
    side = min(h, w)  # fallback: the central square
    return _resize(spatial_crop(clip, side, 1), (size, size))


def hflip(clip: torch.Tensor) -> torch.Tensor:
    return clip.flip(-1)


def normalize(clip: torch.Tensor, mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> torch.Tensor:
    m = torch.as_tensor(mean, dtype=clip.dtype).view(-1, 1, 1, 1)
    s = torch.as_tensor(std, dtype=clip.dtype).view(-1, 1, 1, 1)
    return (clip - m) / s


def random_erasing(clip: torch.Tensor, rng: np.random.Generator, p: float = 0.25, area=(0.02, 1 / 3),
                   log_ratio=(math.log(0.3), math.log(1 / 0.3))) -> torch.Tensor:
    """With probability p, fill one box (the same in every frame) with per-pixel N(0, 1) noise
    (timm's 'pixel' mode, on a normalised clip)."""
    if rng.uniform() >= p:
        return clip
    c, t, h, w = clip.shape
    for _ in range(10):
        target = h * w * rng.uniform(*area)
        aspect = math.exp(rng.uniform(*log_ratio))
        eh, ew = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if eh < h and ew < w:
            y, x = int(rng.integers(0, h - eh + 1)), int(rng.integers(0, w - ew + 1))
            clip = clip.clone()
            noise = torch.from_numpy(rng.standard_normal((c, t, eh, ew)).astype(np.float32))
            clip[..., y:y + eh, x:x + ew] = noise.to(clip.dtype)
            return clip
    return clip


class TrainTransform:
    """The authors' training augmentation for one clip: (C, T, H, W) in [0, 1] -> normalised crop."""

    def __init__(self, crop_size: int, rand_augment: Optional[str] = "rand-m5-n2-mstd0.25", erasing_p: float = 0.25,
                 scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), flip: bool = True, mean=MEAN, std=STD):
        self.crop_size, self.erasing_p, self.scale, self.ratio, self.flip = crop_size, erasing_p, scale, ratio, flip
        self.mean, self.std = mean, std
        fill = tuple(round(255 * m) for m in mean)  # the authors fill with the normalisation mean
        self.rand_augment = RandAugment(**parse_rand_augment(rand_augment), fill=fill) if rand_augment else None

    def __call__(self, clip: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        if self.rand_augment is not None:
            clip = self.rand_augment(clip, rng)
        clip = normalize(clip, self.mean, self.std)
        clip = random_resized_crop(clip, self.crop_size, rng, self.scale, self.ratio)
        if self.flip and rng.uniform() < 0.5:
            clip = hflip(clip)
        if self.erasing_p > 0:
            clip = random_erasing(clip, rng, self.erasing_p)
        return clip.contiguous()


class TestTransform:
    """Short side to ``crop_size``, the crop of the view's spatial index, normalise."""

    __test__ = False  # not a pytest test class

    def __init__(self, crop_size: int, mean=MEAN, std=STD):
        self.crop_size, self.mean, self.std = crop_size, mean, std

    def __call__(self, clip: torch.Tensor, spatial_index: int = 1) -> torch.Tensor:
        clip = spatial_crop(resize_short_side(clip, self.crop_size), self.crop_size, spatial_index)
        return normalize(clip, self.mean, self.std).contiguous()


def parse_rand_augment(spec: str) -> dict:
    """'rand-m5-n2-mstd0.25' -> {'m': 5.0, 'n': 2, 'mstd': 0.25} (timm's notation)."""
    parts = spec.split("-")
    if parts[0] != "rand":
        raise ValueError(f"RandAugment spec must start with 'rand-', got {spec!r}")
    out = {"n": 2, "m": 9.0, "mstd": 0.0}
    for part in parts[1:]:
        if part.startswith("mstd"):
            out["mstd"] = float(part[4:])
        elif part.startswith("m"):
            out["m"] = float(part[1:])
        elif part.startswith("n"):
            out["n"] = int(part[1:])
        else:
            raise ValueError(f"unknown RandAugment option {part!r} in {spec!r}")
    return out


def one_hot(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    off = smoothing / num_classes
    out = torch.full((labels.shape[0], num_classes), off, device=labels.device)
    return out.scatter_(1, labels.view(-1, 1), 1.0 - smoothing + off)


class Mixup:
    """Batch-level mixup / cutmix with label smoothing, producing soft targets (timm's 'batch' mode).

    Each batch is mixed with its reverse. With probability ``switch_prob`` cutmix (one box, the same in
    every frame, lambda corrected to the box's true area), otherwise mixup. Shape: clips (B, C, T, H, W),
    labels (B,) -> mixed clips, targets (B, num_classes).
    """

    def __init__(self, num_classes: int, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0, prob: float = 1.0,
                 switch_prob: float = 0.5, label_smoothing: float = 0.1):
        self.num_classes, self.mixup_alpha, self.cutmix_alpha = num_classes, mixup_alpha, cutmix_alpha
        self.prob, self.switch_prob, self.label_smoothing = prob, switch_prob, label_smoothing

    def __call__(self, clips: torch.Tensor, labels: torch.Tensor, rng: Optional[np.random.Generator] = None):
        rng = rng or np.random.default_rng()
        y1 = one_hot(labels, self.num_classes, self.label_smoothing)
        if clips.shape[0] % 2:
            raise ValueError(f"Mixup needs an even batch size, got {clips.shape[0]}")
        if rng.uniform() >= self.prob:
            return clips, y1
        use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha <= 0 or rng.uniform() < self.switch_prob)
        lam = float(rng.beta(self.cutmix_alpha, self.cutmix_alpha) if use_cutmix
                    else rng.beta(self.mixup_alpha, self.mixup_alpha))
        flipped = clips.flip(0)
        if use_cutmix:
            h, w = clips.shape[-2:]
            cut = math.sqrt(1 - lam)
            ch, cw = int(h * cut), int(w * cut)
            cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
            y0, y1b = max(cy - ch // 2, 0), min(cy + ch // 2, h)
            x0, x1b = max(cx - cw // 2, 0), min(cx + cw // 2, w)
            clips = clips.clone()
            clips[..., y0:y1b, x0:x1b] = flipped[..., y0:y1b, x0:x1b]
            lam = 1 - (y1b - y0) * (x1b - x0) / (h * w)
        else:
            clips = clips * lam + flipped * (1 - lam)
        return clips, y1 * lam + y1.flip(0) * (1 - lam)
