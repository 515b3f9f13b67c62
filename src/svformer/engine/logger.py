"""Per-run metrics: JSON lines and CSV (plus TensorBoard when installed), and the end-of-run plots.

``metrics.jsonl`` holds one row per finished epoch. A run killed while appending may leave a cut-off
last line: reading drops it (with a warning); any other damaged line is an error naming the file and
line. A resumed run first drops the rows of epochs its checkpoint does not hold, so no epoch appears
twice."""
from __future__ import annotations

import csv
import json
import os
import warnings
from typing import Dict, List

import numpy as np

from ..plotting import pyplot


class MetricsLogger:
    def __init__(self, run_dir: str, enabled: bool = True):
        self.run_dir, self.enabled = run_dir, enabled
        self.jsonl = os.path.join(run_dir, "metrics.jsonl")
        self.csv = os.path.join(run_dir, "metrics.csv")
        self._tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(os.path.join(run_dir, "tensorboard"))
            except Exception:  # tensorboard is optional
                self._tb = None

    def log(self, record: Dict) -> None:
        if not self.enabled:
            return
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(record) + "\n")
        self._write_csv(self.read())
        if self._tb is not None:
            step = record.get("epoch", 0)
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "epoch":
                    self._tb.add_scalar(k, v, step)

    def _write_csv(self, rows: List[Dict]) -> None:
        keys = sorted({k for r in rows for k in r})
        tmp = f"{self.csv}.{os.getpid()}.tmp"
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.csv)

    def read(self) -> List[Dict]:
        if not os.path.isfile(self.jsonl):
            return []
        with open(self.jsonl, encoding="utf-8", errors="replace") as f:
            lines = f.read().split("\n")
        rows = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                if number == len(lines):  # no newline after it: a write the run did not finish
                    warnings.warn(f"{self.jsonl}:{number}: dropping a cut-off last line", RuntimeWarning, stacklevel=2)
                    continue
                raise ValueError(f"{self.jsonl}:{number}: not a JSON record: {line[:60]!r}") from None
        return rows

    def truncate(self, epoch: int) -> None:
        """Keep only the rows of epochs up to ``epoch`` (what a resumed checkpoint holds)."""
        if not self.enabled or not os.path.isfile(self.jsonl):
            return
        rows = [r for r in self.read() if r.get("epoch", 0) <= epoch]
        tmp = f"{self.jsonl}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        os.replace(tmp, self.jsonl)
        self._write_csv(rows)




def plot_training(rows: List[Dict], path: str) -> str:
    """Loss, accuracy and learning rate per epoch."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    epochs = [r["epoch"] for r in rows]
    axes[0].plot(epochs, [r.get("train_loss") for r in rows], "o-", label="train loss")
    axes[0].set_title("loss")
    for key, label in (("train_top1", "train top-1"), ("val_top1", "val top-1")):
        pts = [(r["epoch"], r[key]) for r in rows if r.get(key) is not None]
        if pts:
            axes[1].plot(*zip(*pts), "o-", label=label)
    axes[1].set_title("accuracy")
    axes[1].set_ylim(0, 1)
    axes[2].plot(epochs, [r.get("lr") for r in rows], "o-")
    axes[2].set_title("learning rate (end of epoch)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend()
    if axes[1].get_legend_handles_labels()[0]:
        axes[1].legend()
    else:  # no validation split: say so instead of an empty panel
        axes[1].text(0.5, 0.5, "no validation split", ha="center", va="center", transform=axes[1].transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_confusion(confusion: np.ndarray, class_names: List[str], path: str, title: str = "confusion (test)") -> str:
    plt = pyplot()
    n = len(class_names)
    size = max(4.5, 0.32 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    norm = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        ax.set_xticks(range(n), class_names, rotation=90, fontsize=7)
        ax.set_yticks(range(n), class_names, fontsize=7)
        for i in range(n):
            for j in range(n):
                if confusion[i, j]:
                    ax.text(j, i, int(confusion[i, j]), ha="center", va="center", fontsize=6,
                            color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
