"""The one-command CPU demo: synthetic motion videos -> train svformer_tiny -> evaluate -> report.

Prints test accuracy, the frame-shuffled control (same test clips, frames in random order, same model:
much lower, because the classes live only in motion), a firing-rate summary and an energy estimate, and
writes ``summary.json`` to the run folder, whose path it prints last.
"""
from __future__ import annotations

import json
import os
import time
from typing import List, Optional

from ..config import load_config
from .trainer import Trainer


def run_demo(overrides: Optional[List[str]] = None, config: str = "demo") -> dict:
    start = time.perf_counter()
    cfg = load_config(config, overrides)
    print(f"svformer demo: {cfg.model.name} on synthetic motion videos ({cfg.data.root}), "
          f"up to {cfg.max_train_minutes} min of training on {cfg.threads or 'all'} threads", flush=True)
    trainer = Trainer(cfg)
    print(f"data: {len(trainer.data.train)} train / {len(trainer.data.val) if trainer.data.val else 0} val / "
          f"{len(trainer.data.test) // max(1, trainer.data.test.views_per_video)} test videos, "
          f"{len(trainer.data.class_names)} classes", flush=True)
    fit = trainer.fit()
    test = trainer.test()
    from .evaluate import shuffle_frames_fn

    shuffled = trainer.evaluate(trainer.data.test, "test (frames shuffled)", clip_fn=shuffle_frames_fn(cfg.seed),
                                monitor=False)
    energy = _energy(trainer)
    summary = {"test_top1": test.top1, "test_top5": test.top5, "test_top1_shuffled_frames": shuffled.top1,
               "train_seconds": fit["train_seconds"], "epochs_run": fit["epochs_run"],
               "total_seconds": time.perf_counter() - start, "num_test_videos": test.num_videos,
               "per_class": test.per_class, "firing_rates": test.firing_rates, "energy": energy,
               "run_dir": os.path.abspath(cfg.output_dir)}
    with open(os.path.join(cfg.output_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    _report(summary, cfg)
    return summary


def _energy(trainer) -> dict:
    from torch.utils.data import Subset

    from ..analysis.estimate import estimate_from_data
    from .data import make_loader

    subset = Subset(trainer.data.test, list(range(min(len(trainer.data.test), 32))))
    loader = make_loader(subset, 16, False, 0, trainer.cfg.seed)
    est = estimate_from_data(trainer.module, (b["clip"] for b in loader), trainer.device)
    s = est.summary()
    return {name: s[name] for name in ("paper", "full", "dense_ann")} | {
        "ann_to_snn_energy_ratio": s["ann_to_snn_energy_ratio"]}


def _report(s: dict, cfg) -> None:
    rates = s["firing_rates"]
    print("\nfiring rates (test set):")
    for name, r in rates.items():
        print(f"  {name:<32}{100 * r:6.2f}%")
    mean = sum(rates.values()) / max(len(rates), 1)
    print(f"  {'mean over layers':<32}{100 * mean:6.2f}%")
    e = s["energy"]
    print(f"\nenergy per clip ({cfg.data.num_frames}x{cfg.data.crop_size}x{cfg.data.crop_size}): "
          f"paper protocol {e['paper']['total_mJ'] * 1e3:.2f} uJ ({e['paper']['mac_G'] * 1e3:.1f} M MAC + "
          f"{e['paper']['ac_G'] * 1e3:.1f} M AC), full {e['full']['total_mJ'] * 1e3:.2f} uJ; the same network as an "
          f"ANN: {e['dense_ann']['total_mJ'] * 1e3:.2f} uJ ({e['ann_to_snn_energy_ratio']:.1f}x)")
    print(f"\ntest top-1 {100 * s['test_top1']:.1f}% (top-5 {100 * s['test_top5']:.1f}%) on {s['num_test_videos']} "
          f"videos; frame-shuffled control {100 * s['test_top1_shuffled_frames']:.1f}% (chance 10%)")
    print(f"training {s['train_seconds']:.0f} s, whole demo {s['total_seconds']:.0f} s")
    print(f"run folder (config, metrics, plots, checkpoints, summary.json):\n{s['run_dir']}")
