"""The authors' learning-rate schedule (PySlowFast): linear warm-up, then cosine, updated every iteration
with the fractional epoch."""
from __future__ import annotations

import math

from ..config import OptimConfig


def lr_at(epoch: float, cfg: OptimConfig) -> float:
    """Learning rate at fractional ``epoch``: linear from warmup_lr to lr over warmup_epochs, then
    min_lr + (lr - min_lr) (1 + cos(pi (epoch - warmup) / (epochs - warmup))) / 2."""
    if epoch < cfg.warmup_epochs:
        return cfg.warmup_lr + (cfg.lr - cfg.warmup_lr) * epoch / cfg.warmup_epochs
    span = max(cfg.epochs - cfg.warmup_epochs, 1e-8)
    progress = min((epoch - cfg.warmup_epochs) / span, 1.0)
    return cfg.min_lr + (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress)) / 2
