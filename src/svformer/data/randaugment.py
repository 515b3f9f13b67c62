"""RandAugment for video clips, as the authors' training recipe runs it (PySlowFast's port of timm's
``rand_augment_transform``), in plain PyTorch on a whole clip at once.

The recipe ``rand-m{M}-n{N}-mstd{S}``: draw N operations from the 15 below (with replacement); each
is applied with probability 0.5, at a magnitude drawn from N(M, S) and clipped to [0, 10], with the same
operation and arguments on every frame of the clip. Each operation has the semantics of the Pillow
function timm calls on 8-bit images — per-frame histograms for AutoContrast and Equalize, per-frame
mean grey level for Contrast, results rounded back to 8-bit values — so the clip stays on the 0-255
grid between operations. Geometric operations map every output pixel through Pillow's affine
convention (output pixel centre -> input position), sample bicubically, and fill what falls outside the
frame with the mean colour (``fill``).

Magnitude to argument (level = magnitude / 10): Rotate 30*level degrees, ShearX/Y 0.3*level,
TranslateX/YRel 0.45*level of the width/height, each with a random sign; Color, Contrast, Brightness,
Sharpness factor 0.1 + 1.8*level; Posterize keeps int(4*level) bits; Solarize inverts values at or
above int(256*level); SolarizeAdd adds int(110*level) below 128.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

MAX_LEVEL = 10.0


# --- operations on an (C, T, H, W) float clip holding integers in [0, 255] ---------------------------

def _to8(x: torch.Tensor) -> torch.Tensor:
    """Pillow stores every result as uint8: truncate toward zero and saturate."""
    return x.clamp_(0, 255).floor_()


def _grey(x: torch.Tensor) -> torch.Tensor:
    """Pillow's RGB -> L conversion (ITU-R 601-2 weights in 16-bit fixed point), (1, T, H, W)."""
    if x.shape[0] == 1:
        return x
    return torch.floor((x[0] * 19595 + x[1] * 38470 + x[2] * 7471 + 32768) / 65536).unsqueeze(0)


def _blend(degenerate: torch.Tensor, x: torch.Tensor, factor: float) -> torch.Tensor:
    """Pillow's ``Image.blend``: degenerate + factor * (x - degenerate)."""
    return _to8(degenerate + factor * (x - degenerate))


def _per_frame_lut(x: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Apply a lookup table per (channel, frame): ``lut`` is (C, T, 256)."""
    return torch.gather(lut, -1, x.flatten(2).long()).view_as(x)


def _histograms(x: torch.Tensor) -> torch.Tensor:
    """(C, T, 256) counts of each value in each frame's channel (one-wide bins centred on 0..255)."""
    c, t = x.shape[:2]
    flat = x.reshape(c * t, -1)
    return torch.stack([torch.histc(row, 256, -0.5, 255.5) for row in flat]).long().view(c, t, 256)


def auto_contrast(x, _level=None, _fill=None, _sign=1.0):
    """Stretch each frame's channel from its lowest to its highest value over 0-255."""
    flat = x.flatten(2)
    lo, hi = flat.amin(-1).double(), flat.amax(-1).double()
    # Pillow builds the table in double precision as value * scale + offset; so does this (a tensor
    # numerator: `255.0 / t` would be computed as 255 * (1 / t), another rounding)
    scale = torch.full_like(hi, 255.0) / (hi - lo).clamp_min(1)
    offset = -lo * scale
    lut = _to8(torch.arange(256, dtype=torch.float64) * scale[..., None] + offset[..., None]).float()
    out = _per_frame_lut(x, lut)
    keep = (hi <= lo)[..., None, None]  # a flat channel is left as it is
    return torch.where(keep, x, out)


def equalize(x, _level=None, _fill=None, _sign=1.0):
    """Pillow's histogram equalisation of each frame's channel."""
    hist = _histograms(x)
    last = torch.where(hist > 0, torch.arange(256), -1).amax(-1, keepdim=True)  # last non-empty bin
    step = (hist.sum(-1, keepdim=True) - hist.gather(-1, last.clamp_min(0))) // 255
    before = torch.cumsum(hist, -1) - hist
    lut = ((step // 2 + before) // step.clamp_min(1)).clamp_(0, 255)
    identity = torch.arange(256).expand_as(lut)
    lut = torch.where(step > 0, lut, identity).float()
    return _per_frame_lut(x, lut)


def invert(x, _level=None, _fill=None, _sign=1.0):
    return 255.0 - x


def posterize(x, level, _fill=None, _sign=1.0):
    bits = int(level * 4)
    if bits >= 8:
        return x
    step = float(2 ** (8 - bits))
    return torch.floor(x / step) * step


def solarize(x, level, _fill=None, _sign=1.0):
    threshold = int(level * 256)
    return torch.where(x >= threshold, 255.0 - x, x)


def solarize_add(x, level, _fill=None, _sign=1.0):
    add = int(level * 110)
    return torch.where(x < 128, (x + add).clamp_(max=255), x)


def _factor(level: float) -> float:
    return level * 1.8 + 0.1


def color(x, level, _fill=None, _sign=1.0):
    return _blend(_grey(x), x, _factor(level))


def contrast(x, level, _fill=None, _sign=1.0):
    mean = torch.floor(_grey(x).mean((0, 2, 3), keepdim=True) + 0.5)  # per frame, as Pillow's ImageStat
    return _blend(mean.expand_as(x), x, _factor(level))


def brightness(x, level, _fill=None, _sign=1.0):
    return _to8(x * _factor(level))


def sharpness(x, level, _fill=None, _sign=1.0):
    """Blend with Pillow's SMOOTH filter (3x3, centre 5, the rest 1, /13); the border is not filtered."""
    box = x[..., :-2, :] + x[..., 1:-1, :] + x[..., 2:, :]
    box = box[..., :-2] + box[..., 1:-1] + box[..., 2:]
    smooth = x.clone()
    smooth[..., 1:-1, 1:-1] = torch.floor((box + 4 * x[..., 1:-1, 1:-1]) / 13 + 0.5)
    return _blend(smooth, x, _factor(level))


def affine(x: torch.Tensor, matrix: Sequence[float], fill) -> torch.Tensor:
    """Pillow's ``Image.transform(AFFINE, (a, b, c, d, e, f))``: the output pixel centred at (u, v)
    takes the input at (a u + b v + c, d u + e v + f), sampled bicubically; outside the frame: ``fill``."""
    h, w = x.shape[-2:]
    a, b, c, d, e, f = matrix
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float32) + 0.5, torch.arange(w, dtype=torch.float32) + 0.5,
                          indexing="ij")
    src_x, src_y = a * u + b * v + c, d * u + e * v + f
    inside = (src_x >= 0) & (src_x < w) & (src_y >= 0) & (src_y < h)
    grid = torch.stack((src_x * (2.0 / w) - 1, src_y * (2.0 / h) - 1), -1)
    frames = x.transpose(0, 1)  # (T, C, H, W): frames as the batch
    out = F.grid_sample(frames, grid.expand(frames.shape[0], h, w, 2), mode="bicubic", padding_mode="border",
                        align_corners=False)
    out = torch.where(inside, out, torch.as_tensor(fill, dtype=out.dtype).reshape(-1, 1, 1))
    return out.transpose(0, 1).round_().clamp_(0, 255)


def rotate(x, level, fill, sign):
    """Counter-clockwise by 30*level degrees (times ``sign``) about the frame's centre."""
    h, w = x.shape[-2:]
    angle = -math.radians(sign * level * 30.0)
    cos, sin = math.cos(angle), math.sin(angle)
    cx, cy = w / 2.0, h / 2.0
    return affine(x, (cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy), fill)


def shear_x(x, level, fill, sign):
    return affine(x, (1, sign * level * 0.3, 0, 0, 1, 0), fill)


def shear_y(x, level, fill, sign):
    return affine(x, (1, 0, 0, sign * level * 0.3, 1, 0), fill)


def translate_x_rel(x, level, fill, sign):
    return affine(x, (1, 0, sign * level * 0.45 * x.shape[-1], 0, 1, 0), fill)


def translate_y_rel(x, level, fill, sign):
    return affine(x, (1, 0, 0, 0, 1, sign * level * 0.45 * x.shape[-2]), fill)


OPS: Dict[str, Callable] = {
    "AutoContrast": auto_contrast, "Equalize": equalize, "Invert": invert, "Rotate": rotate,
    "Posterize": posterize, "Solarize": solarize, "SolarizeAdd": solarize_add, "Color": color,
    "Contrast": contrast, "Brightness": brightness, "Sharpness": sharpness, "ShearX": shear_x,
    "ShearY": shear_y, "TranslateXRel": translate_x_rel, "TranslateYRel": translate_y_rel,
}
SIGNED = {"Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"}


class RandAugment:
    """``rand-m{m}-n{n}-mstd{mstd}`` on a (C, T, H, W) clip in [0, 1]; one draw for all its frames.

    ``fill``: the value (0-255, one or one per channel) geometric operations put where the frame moved
    away; the authors use the normalisation mean (0.45 -> 115). ``prob``: each drawn operation's chance
    to apply.
    """

    def __init__(self, n: int = 2, m: float = 5.0, mstd: float = 0.0, fill=115.0, prob: float = 0.5,
                 ops: Optional[Sequence[str]] = None):
        self.n, self.m, self.mstd, self.fill, self.prob = n, m, mstd, fill, prob
        self.ops = list(ops or OPS)
        unknown = [o for o in self.ops if o not in OPS]
        if unknown:
            raise ValueError(f"unknown RandAugment operation(s) {unknown}; known: {', '.join(OPS)}")

    def draw(self, rng: np.random.Generator) -> list:
        """The (operation, level, sign) triples one clip gets, in order (operations that did not fire
        are left out)."""
        chosen = []
        for name in rng.choice(self.ops, self.n, replace=True):
            if rng.uniform() >= self.prob:
                continue
            magnitude = rng.normal(self.m, self.mstd) if self.mstd > 0 else self.m
            level = float(np.clip(magnitude, 0, MAX_LEVEL)) / MAX_LEVEL
            sign = -1.0 if name in SIGNED and rng.uniform() < 0.5 else 1.0
            chosen.append((str(name), level, sign))
        return chosen

    def apply(self, clip: torch.Tensor, chosen: list) -> torch.Tensor:
        if not chosen:
            return clip
        x = (clip * 255).round_()
        for name, level, sign in chosen:
            x = OPS[name](x, level, self.fill, sign)
        return x.div_(255)

    def __call__(self, clip: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        return self.apply(clip, self.draw(rng))
