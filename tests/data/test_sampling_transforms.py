import numpy as np
import pytest
import torch

from svformer.data.sampling import RandomClipSampler, UniformClipSampler, clip_indices
from svformer.data.transforms import (Mixup, RandAugment, TestTransform, TrainTransform, normalize,
                                      parse_rand_augment, random_erasing, random_resized_crop, spatial_crop)


def test_authors_index_rule():
    # linspace(start, start + 63, 16), truncated: a stride of 4.2
    assert clip_indices(0, 16, 4, 300) == tuple(int(i) for i in np.linspace(0, 63, 16))
    assert clip_indices(10, 4, 2, 12) == (10, 11, 11, 11)  # clamped to the video


def test_random_sampler_stays_in_the_video_and_covers_the_window():
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(200):
        (spec,) = RandomClipSampler(16, 4)(100, rng)
        assert len(spec.indices) == 16 and 0 <= min(spec.indices) and max(spec.indices) < 100
        assert spec.indices[-1] - spec.indices[0] == 63
        starts.add(spec.indices[0])
    assert min(starts) <= 2 and max(starts) >= 33  # uniform over [0, 100 - 64]


def test_uniform_sampler_offset_rule_and_crops():
    s = UniformClipSampler(16, 4, num_clips=5, num_crops=3)
    views = s(164)
    assert len(views) == 15 == s.views_per_video
    starts = sorted({v.indices[0] for v in views})
    assert starts == [i * ((164 - 64) // 4) for i in range(5)]  # clip i starts at i * floor((L - 64) / 4)
    assert [v.spatial_index for v in views[:3]] == [0, 1, 2]
    assert [v.view_index for v in views] == list(range(15))
    (centre,) = UniformClipSampler(16, 4)(164)
    assert centre.indices[0] == 50 and centre.spatial_index == 1


def test_spatial_crops():
    clip = torch.arange(4 * 6, dtype=torch.float32).view(1, 1, 4, 6)
    assert spatial_crop(clip, 4, 0)[0, 0, 0, 0] == 0
    assert spatial_crop(clip, 4, 2)[0, 0, 0, -1] == 5
    assert spatial_crop(clip, 4, 1)[0, 0, 0, 0] == 1
    tall = clip.transpose(-1, -2)  # 6 x 4: crops go top/centre/bottom
    assert spatial_crop(tall, 4, 2)[0, 0, -1, 0] == 5


def test_test_transform_resizes_short_side():
    out = TestTransform(32)(torch.rand(3, 4, 48, 64), spatial_index=0)
    assert out.shape == (3, 4, 32, 32)


def _same_across_frames(clip):
    return all(torch.allclose(clip[:, 0], clip[:, t], atol=1e-6) for t in range(clip.shape[1]))


@pytest.mark.parametrize("seed", range(10))
def test_train_transform_is_identical_across_frames(seed):
    frame = torch.rand(3, 1, 40, 56)
    clip = frame.repeat(1, 5, 1, 1)  # five identical frames
    out = TrainTransform(32, erasing_p=1.0)(clip, np.random.default_rng(seed))
    assert out.shape == (3, 5, 32, 32)
    # Erasing noise differs per frame but its box does not: where frames 0 and 1 agree (outside the
    # box), every frame agrees, and the box is a rectangle covering 2-33 % of the crop.
    box = ((out[:, 0] - out[:, 1]).abs() > 0).any(0)
    assert 0.02 * 32 * 32 * 0.5 <= box.sum() <= 32 * 32 / 3
    rows, cols = box.any(1).nonzero(), box.any(0).nonzero()
    assert box.sum() == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    assert all(torch.allclose(out[:, 0][:, ~box], out[:, t][:, ~box]) for t in range(5))


def test_rand_augment_same_ops_for_all_frames_and_reproducible():
    ra = RandAugment(n=2, m=9, mstd=0.5)
    clip = (torch.rand(3, 1, 32, 32) * 255).round().div(255).repeat(1, 6, 1, 1)  # 8-bit frames, as decoded
    changed = 0
    for seed in range(30):
        out = ra(clip, np.random.default_rng(seed))
        assert _same_across_frames(out)
        assert torch.equal(out, ra(clip, np.random.default_rng(seed)))
        changed += not torch.allclose(out, clip)
    assert 15 <= changed <= 28  # it augments, but skips both ops a quarter of the time (each fires at p 0.5)
    assert parse_rand_augment("rand-m5-n2-mstd0.25") == {"m": 5.0, "n": 2, "mstd": 0.25}
    with pytest.raises(ValueError):
        parse_rand_augment("auto-m5")


def test_random_resized_crop_and_normalize():
    rng = np.random.default_rng(0)
    out = random_resized_crop(torch.rand(3, 2, 50, 70), 24, rng)
    assert out.shape == (3, 2, 24, 24)
    x = torch.full((3, 1, 2, 2), 0.45)
    assert torch.allclose(normalize(x), torch.zeros_like(x))
    assert torch.allclose(normalize(torch.full((3, 1, 2, 2), 0.675)), torch.ones(3, 1, 2, 2))


def test_random_erasing_probability():
    clip = torch.zeros(3, 2, 20, 20)
    rng = np.random.default_rng(0)
    erased = sum(bool(random_erasing(clip, rng, p=0.25).abs().sum() > 0) for _ in range(400))
    assert 60 < erased < 140


def test_mixup_and_cutmix_soft_targets():
    clips = torch.stack([torch.full((3, 2, 8, 8), float(i)) for i in range(4)])
    labels = torch.tensor([0, 1, 2, 3])
    for seed in range(20):
        mixed, targets = Mixup(5, label_smoothing=0.1)(clips, labels, np.random.default_rng(seed))
        assert targets.shape == (4, 5)
        torch.testing.assert_close(targets.sum(1), torch.ones(4))
        # the mixed clip's mean equals the target's mixing weight of its own label
        lam = (targets[0, 0] - 0.02) / 0.9
        torch.testing.assert_close(mixed[0].mean(), lam * 0 + (1 - lam) * 3, atol=1e-5, rtol=0)
        # cutmix: the same box in every frame
        assert torch.equal(mixed[:, :, 0], mixed[:, :, 1])
    with pytest.raises(ValueError, match="even batch"):
        Mixup(5)(clips[:3], labels[:3])
