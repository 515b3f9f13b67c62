"""Atomic, resumable checkpoints.

A checkpoint holds the model and optimizer states, the GradScaler state, epoch and global iteration,
the resolved config, class names, best validation accuracy and every RNG state (torch CPU and CUDA,
numpy, Python), so ``--resume`` continues exactly where the run stopped.

`save_checkpoint` is the one place that decides whether a checkpoint may be written: never one whose
model or optimizer state holds a NaN or an infinity (`NonFiniteError`), and only whole: the file is
written under a temporary name of this process and renamed, so a crash or a full disk never leaves a
half-written checkpoint nor replaces a good one (`CheckpointWriteError`, the temporary file removed).
Everything is plain tensors and primitives: checkpoints load with ``weights_only=True``, so loading
one never runs code; `load_checkpoint` refuses one with non-finite weights.
"""
from __future__ import annotations

import errno
import os
import random
import shutil
from typing import Any, Dict, Iterator, List, Tuple

import numpy as np
import torch


def rng_state() -> Dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                                                        "has_gauss": has_gauss, "cached": cached},
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class NonFiniteError(ValueError):
    """A model or optimizer state with NaN or infinite values: never saved, never loaded."""


class CheckpointWriteError(OSError):
    """A checkpoint that could not be written (full disk, read-only folder, ...); nothing was replaced."""


def _tensors(tree, prefix: str = "") -> Iterator[Tuple[str, torch.Tensor]]:
    if torch.is_tensor(tree):
        yield prefix, tree
    elif isinstance(tree, dict):
        for k, v in tree.items():
            yield from _tensors(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            yield from _tensors(v, f"{prefix}.{i}")


def non_finite(state: Dict[str, Any]) -> List[Tuple[str, int]]:
    """(name, count) of every floating-point tensor in the model and optimizer states that holds a
    NaN or an infinity."""
    bad = []
    for part in ("model", "optimizer"):
        for name, t in _tensors(state.get(part, {}), part):
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                bad.append((name, int((~torch.isfinite(t)).sum())))
    return bad


def describe_non_finite(bad: List[Tuple[str, int]]) -> str:
    total = sum(n for _, n in bad)
    names = ", ".join(name for name, _ in bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
    return f"{total:,} non-finite values in {len(bad)} tensors ({names})"


def save_checkpoint(path: str, state: Dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically, or raise without touching ``path``."""
    bad = non_finite(state)
    if bad:
        raise NonFiniteError(f"not saving {path}: {describe_non_finite(bad)}")
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        os.makedirs(folder, exist_ok=True)
        torch.save(state, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0]
        if isinstance(e, OSError) and e.errno == errno.ENOSPC or _disk_full(folder):
            # torch.save reports a full disk as a RuntimeError of its zip writer ("unexpected pos ...")
            reason = "no space left on the device"
        raise CheckpointWriteError(f"cannot write checkpoint {path}: {reason}; the previous file is unchanged") from e
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _disk_full(folder: str) -> bool:
    try:
        return shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False


def load_checkpoint(path: str, map_location="cpu") -> Dict[str, Any]:
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder, not a checkpoint (did you mean {os.path.join(path, 'last.pt')}?)")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise ValueError(f"cannot read checkpoint {path}: {str(e).splitlines()[0]}") from e
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise ValueError(f"{path} is not an svformer training checkpoint (for the authors' .pyth files use "
                         f"svformer.load_official)")
    bad = non_finite({"model": state["model"]})
    if bad:
        raise NonFiniteError(f"{path} holds a diverged model: {describe_non_finite(bad)}")
    return state
