"""Named SVFormer configurations."""
from __future__ import annotations

from .registry import register_model
from .svformer import SVFormer


def _build(defaults: dict, overrides: dict) -> SVFormer:
    return SVFormer(**{**defaults, **overrides})


@register_model
def svformer_paper(**overrides) -> SVFormer:
    """The paper's UCF101 model: 16 RGB frames of 224x224, 101 classes, 13,801,612 parameters."""
    return _build(dict(num_classes=101, in_chans=3, img_size=224, num_frames=16), overrides)


@register_model
def svformer_dvs(**overrides) -> SVFormer:
    """The paper's network on DVS128 Gesture event frames: 2 polarity channels, 128x128, 11 classes.
    The authors published no DVS settings; T=16 frames matches the RGB model."""
    return _build(dict(num_classes=11, in_chans=2, img_size=128, num_frames=16), overrides)


@register_model
def svformer_tiny(**overrides) -> SVFormer:
    """A narrow SVFormer (dims 16/32/48/64, depths 1/1/2/1, head_dim 16) on 8 frames of 64x64 that
    trains on a CPU; the same architecture as the paper's, at the size of the authors' golden fixture."""
    return _build(
        dict(num_classes=10, in_chans=3, img_size=64, num_frames=8, embed_dim=(16, 32, 48, 64),
             depth=(1, 1, 2, 1), head_dim=16, mlp_ratio=2.0),
        overrides,
    )
