"""A look at event data: the T frames a model sees, the two polarities in two colours (`svformer data show`)."""
from __future__ import annotations

from typing import Optional

import numpy as np


def event_image(frame: np.ndarray) -> np.ndarray:
    """(2, H, W) counts -> (H, W, 3) RGB in [0, 1]: OFF events red, ON events blue (colour-blind safe
    against white), both where pixels saw both; brightness by count, scaled per image."""
    off, on = frame[0].astype(np.float64), frame[1].astype(np.float64)
    scale = max(np.percentile(np.concatenate([off[off > 0], on[on > 0]]), 99) if (off.any() or on.any()) else 1.0, 1.0)
    off, on = np.clip(off / scale, 0, 1), np.clip(on / scale, 0, 1)
    rgb = np.ones(frame.shape[1:] + (3,))
    rgb[..., 0] -= on * 0.9          # ON: towards blue (0.1, 0.1+, 1)
    rgb[..., 1] -= (on + off) * 0.6
    rgb[..., 2] -= off * 0.9         # OFF: towards red
    return np.clip(rgb, 0, 1)


def show_event_frames(frames: np.ndarray, path: str, title: str = "", columns: Optional[int] = None) -> str:
    """Write the (T, 2, H, W) count frames as a grid of T panels to ``path`` (PNG); returns ``path``."""
    from ..plotting import pyplot

    plt = pyplot()
    t = frames.shape[0]
    columns = columns or min(t, 8)
    rows = -(-t // columns)
    aspect = frames.shape[3] / frames.shape[2]
    fig, axes = plt.subplots(rows, columns, figsize=(1.9 * columns * aspect, 1.9 * rows + 0.6), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < t:
            ax.imshow(event_image(frames[i]), interpolation="nearest")
            ax.set_title(f"t={i}: {int(frames[i].sum())} ev", fontsize=7)
    fig.suptitle(title + ("\n" if title else "") + "ON events blue, OFF events red", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
