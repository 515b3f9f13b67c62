"""A synthetic motion-action dataset, written as real video files in the UCF101 layout.

Ten classes live only in the motion of one textured object: translate right/left/up/down/up-right/
down-left, zoom in/out, oscillate (move back and forth), still. Shape, colours, texture,
background, orientation, position and size at mid-clip, speed and pixel noise are drawn independently of
the class, and every motion is centred on the middle of the clip, so the middle frame has the same
distribution in every class and one frame alone carries no class information; a model must use time.
The object always contrasts with the background (opposite sides of mid-grey) and carries an off-centre
marker, so its motion, including a spin, is visible whatever its shape; without that contrast even a 3D
CNN learns nothing in minutes, because static appearance swamps the motion signal.

`write_ucf_layout` writes ``UCF-101/<Class>/v_<Class>_gGG_cCC.avi`` (MPEG-4 Part 2 in AVI, like
UCF101's XVID) and ``ucfTrainTestlist/`` (classInd, trainlist01, testlist01), so the real UCF101 loader
reads it unchanged. Groups 01-07 are the test groups, as in UCF101's split 1. Seeded and reproducible.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
import numpy as np

# No in-place changes with a random phase (spinning, pulsing): within the demo's CPU budget they stayed
# near chance (docs/data.md); `render` can still draw them for experiments (EXTRA_CLASSES).
CLASSES = ("TranslateRight", "TranslateLeft", "TranslateUp", "TranslateDown", "TranslateUpRight",
           "TranslateDownLeft", "ZoomIn", "ZoomOut", "Oscillate", "Still")
EXTRA_CLASSES = ("Spin", "Pulse")
# Bump when the renderer changes, so cached datasets are rewritten.
GENERATOR_VERSION = 7
MARKER = ".svformer_synthetic"  # {"signature": ..., "complete": bool}: this folder is a dataset svformer wrote


class SyntheticRootError(ValueError):
    """A folder the synthetic dataset may not be written into."""


def claim_root(root: str, signature: str) -> bool:
    """Decide whether the synthetic dataset ``signature`` may be written into ``root``.

    Returns True when ``root`` already holds it complete (nothing to write), False when it may be
    written (a new or empty folder, or one svformer left half-written). Raises `SyntheticRootError` for
    a folder holding anything else: files svformer did not write (a user's dataset), or a complete
    synthetic dataset of another configuration or seed, which a running job may be reading.
    """
    import json

    marker = os.path.join(root, MARKER)
    if os.path.isfile(marker):
        try:
            with open(marker) as f:
                mine = json.load(f)
        except (OSError, ValueError):
            mine = {}
        if mine.get("signature") == signature and mine.get("complete"):
            return True
        if mine.get("complete"):
            raise SyntheticRootError(f"{root} holds a synthetic dataset of another configuration or seed "
                                     f"({mine.get('signature')}); svformer does not rewrite it (a run may be "
                                     f"reading it): remove the folder or choose another data.root")
    elif os.path.isdir(root) and os.listdir(root):
        legacy = os.path.join(root, ".complete")  # datasets written before the marker existed
        if not (os.path.isfile(legacy) and _read(legacy) == signature):
            raise SyntheticRootError(f"{root} holds files svformer did not write; the synthetic dataset is only "
                                     f"written into a new or empty folder (choose another data.root)")
        return True
    os.makedirs(root, exist_ok=True)
    _write_marker(marker, signature, complete=False)
    return False


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def finish_root(root: str, signature: str) -> None:
    """Mark the synthetic dataset in ``root`` complete (after its last file)."""
    _write_marker(os.path.join(root, MARKER), signature, complete=True)


def _write_marker(path: str, signature: str, complete: bool) -> None:
    import json

    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump({"signature": signature, "complete": complete}, f)
    os.replace(tmp, path)
# Contrast of the background texture (0-255 scale); low, so that the object's motion dominates.
BG = 20.0
SHAPES = ("disc", "square", "triangle", "cross")


@dataclass(frozen=True)
class SynthConfig:
    size: int = 64            # frames are size x size
    num_frames: int = 32      # frames per video
    fps: int = 25
    train_groups: int = 6     # groups 08.. per class in the train list
    test_groups: int = 2      # groups 01.. per class in the test list
    clips_per_group: int = 4
    noise: float = 6.0        # pixel noise std (0-255)


def _texture(u, v, kind: int, freq: float, phase: float):
    if kind == 0:
        return 0.5 + 0.5 * np.sin(freq * u + phase)
    if kind == 1:
        return ((np.floor(freq * u / np.pi) + np.floor(freq * v / np.pi)) % 2).astype(np.float32)
    return 0.5 + 0.5 * np.sin(freq * u + phase) * np.cos(0.7 * freq * v)


def _mask(u, v, shape: str):
    if shape == "disc":
        return u * u + v * v <= 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.85
    if shape == "triangle":
        return (v >= -0.6) & (v <= 1.0 - 1.6 * np.abs(u) * 1.0) & (np.abs(u) <= 0.95)
    return (np.abs(u) <= 0.3) & (np.abs(v) <= 1.0) | (np.abs(v) <= 0.3) & (np.abs(u) <= 1.0)


def _wave(rng: np.random.Generator, t: np.ndarray, num_frames: int) -> np.ndarray:
    """A sine of random phase with 1.7-2.5 periods per video (over a clip of 3/4 of the video: 1.3-1.9)."""
    period = rng.uniform(0.4, 0.6) * num_frames
    return np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi)).astype(np.float32)


def render(label: int | str, rng: np.random.Generator, size: int = 64, num_frames: int = 32, noise: float = 6.0,
           return_mask: bool = False):
    """One video of class ``label`` (an index into `CLASSES` or a name from `CLASSES` or `EXTRA_CLASSES`) as
    uint8 (T, H, W, 3) (and the object's mask (T, H, W) if asked)."""
    t = np.arange(num_frames, dtype=np.float32) - (num_frames - 1) / 2  # centred time
    radius = rng.uniform(0.16, 0.26) * size
    centre = rng.uniform(0.35, 0.65, size=2) * size
    angle0 = rng.uniform(0, 2 * np.pi)
    speed = rng.uniform(0.5, 0.7) * size / num_frames  # pixels per frame: 50-70 % of the frame per video
    cx = np.full(num_frames, centre[0], np.float32)
    cy = np.full(num_frames, centre[1], np.float32)
    angle = np.full(num_frames, angle0, np.float32)
    scale = np.ones(num_frames, np.float32)
    name = label if isinstance(label, str) else CLASSES[label]
    if name not in CLASSES + EXTRA_CLASSES:
        raise ValueError(f"unknown synthetic motion class {name!r}; choose from {CLASSES + EXTRA_CLASSES}")
    if name == "TranslateRight":
        cx = cx + speed * t
    elif name == "TranslateLeft":
        cx = cx - speed * t
    elif name == "TranslateUp":
        cy = cy - speed * t
    elif name == "TranslateDown":
        cy = cy + speed * t
    elif name in ("TranslateUpRight", "TranslateDownLeft"):
        step = speed * t / np.sqrt(2) * (1 if name == "TranslateUpRight" else -1)
        cx, cy = cx + step, cy - step
    elif name == "Spin":
        # Spin in place (the centre stays put, unlike a translation); the marker circles the centre.
        omega = rng.uniform(4.0, 5.5) / num_frames * rng.choice((-1, 1))
        angle = angle0 + omega * t
    elif name in ("ZoomIn", "ZoomOut"):
        rate = rng.uniform(0.7, 1.1) / num_frames * (1 if name == "ZoomIn" else -1)
        scale = np.exp(rate * t)
    elif name == "Oscillate":
        direction = rng.uniform(0, 2 * np.pi)
        amplitude = rng.uniform(0.12, 0.18) * size
        offset = amplitude * _wave(rng, t, num_frames)
        cx, cy = cx + offset * np.cos(direction), cy + offset * np.sin(direction)
    elif name == "Pulse":
        scale = np.exp(rng.uniform(0.25, 0.35) * _wave(rng, t, num_frames))

    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    dx = xs[None] - cx[:, None, None]
    dy = ys[None] - cy[:, None, None]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    r = (radius * scale)[:, None, None]
    u = (cos * dx + sin * dy) / r  # object coordinates: rotate back and unscale
    v = (-sin * dx + cos * dy) / r
    mask = _mask(u, v, SHAPES[rng.integers(len(SHAPES))])
    tex = _texture(u, v, int(rng.integers(3)), rng.uniform(3, 6), rng.uniform(0, 2 * np.pi))
    # Every object carries an off-centre marker in the background's colour (on an axis, where every shape
    # has area), so that its orientation, and a rotation, is visible whatever the shape's symmetry. It is
    # part of the appearance of every class.
    marker_angle = rng.integers(4) * np.pi / 2 + rng.uniform(-0.2, 0.2)
    mu, mv = 0.5 * np.cos(marker_angle), 0.5 * np.sin(marker_angle)
    marker = mask & ((u - mu) ** 2 + (v - mv) ** 2 <= 0.28 ** 2)
    # Object and background on opposite sides of mid-grey, so the object is always visible; hues random.
    dark_bg = rng.uniform() < 0.5
    bg_base = rng.uniform(10, 100, 3) if dark_bg else rng.uniform(155, 245, 3)
    colour_a = rng.uniform(150, 255, 3) if dark_bg else rng.uniform(0, 105, 3)
    colour_b = colour_a + rng.uniform(-60, 60, 3)
    obj = colour_a + (colour_b - colour_a) * tex[..., None]
    bg_tex = _texture(xs / size * 6, ys / size * 6, int(rng.integers(3)), rng.uniform(1, 3), rng.uniform(0, 6))
    bg = bg_base + rng.uniform(-BG, BG, 3) * (bg_tex[..., None] - 0.5)
    frames = np.where(mask[..., None], obj, bg[None])
    frames = np.where(marker[..., None], bg_base, frames)
    frames = frames + rng.normal(0, noise, frames.shape)
    frames = np.clip(frames, 0, 255).astype(np.uint8)
    return (frames, mask) if return_mask else frames


def write_ucf_layout(root: str, config: SynthConfig = SynthConfig(), seed: int = 0, progress: bool = False) -> str:
    """Write the synthetic dataset under ``root`` in the UCF101 layout; returns ``root``.

    Skips work when ``root`` already holds this config and seed (a cache for the demo); never writes
    into a folder holding anything else (`claim_root`).
    """
    from .video import write_video

    signature = f"{config}|seed={seed}|v{GENERATOR_VERSION}"
    if claim_root(root, signature):
        return root
    videos = os.path.join(root, "UCF-101")
    lists = os.path.join(root, "ucfTrainTestlist")
    os.makedirs(lists, exist_ok=True)
    rng = np.random.default_rng(seed)
    train, test = [], []
    jobs = []
    for label, name in enumerate(CLASSES):
        os.makedirs(os.path.join(videos, name), exist_ok=True)
        for g in range(1, config.test_groups + config.train_groups + 1):
            group = g if g <= config.test_groups else 7 + g - config.test_groups
            for c in range(1, config.clips_per_group + 1):
                rel = f"{name}/v_{name}_g{group:02d}_c{c:02d}.avi"
                (test if g <= config.test_groups else train).append((rel, label))
                jobs.append((rel, label, int(rng.integers(2**63))))
    bar = _progress(len(jobs), "writing synthetic videos") if progress else None
    for rel, label, video_seed in jobs:
        frames = render(label, np.random.default_rng(video_seed), config.size, config.num_frames, config.noise)
        write_video(os.path.join(videos, rel), frames, fps=config.fps)
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    with open(os.path.join(lists, "classInd.txt"), "w") as f:
        f.writelines(f"{i + 1} {n}\r\n" for i, n in enumerate(CLASSES))
    with open(os.path.join(lists, "trainlist01.txt"), "w") as f:
        f.writelines(f"{rel} {label + 1}\r\n" for rel, label in train)
    with open(os.path.join(lists, "testlist01.txt"), "w") as f:
        f.writelines(f"{rel}\r\n" for rel, _ in test)
    finish_root(root, signature)
    return root


def _progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="video", dynamic_ncols=True)


def render_for_events(label: int, rng: np.random.Generator, size: int = 128, num_frames: int = 48,
                      noise: float = 2.0) -> np.ndarray:
    """A motion video at sensor resolution for the event-camera model (uint8 (T, H, W, 3))."""
    return render(label, rng, size, num_frames, noise)
