"""The markdown results table of docs/performance.md, from one `benchmarks/run.py --ab` JSON.

    python benchmarks/table.py benchmarks/results/2cpu-intel-xeon-2026-11-30.json
"""
from __future__ import annotations

import json
import sys

from run import key_suffix
from svformer.cpu.allocator import ALLOCATORS

KEYS = [
    ("neuron_speedup", "PLIF forward+backward, spikingjelly / svformer", ">= 8"),
    ("train_step_speedup", "training step (paper model, batch 2), reference / svformer", ">= 3"),
    ("train_peak_memory_ratio", "training peak memory, svformer / reference", "<= 0.5"),
    ("inference_speedup", "one clip, reference / svformer", ">= 2.5"),
    ("train_step_speedup_bound", "training step bound (reference / svformer's dense time)", ""),
    ("inference_speedup_bound", "clip bound (reference / svformer's dense time)", ""),
    ("train_peak_memory_ratio_checkpointed", "training peak with block checkpointing, svformer / reference", "<= 0.25"),
    ("train_step_slowdown_checkpointed", "training step with block checkpointing / without", "<= 1.35"),
]


def main(path: str) -> None:
    r = json.load(open(path))
    rows = r["rows"]
    print(f"{r['cpu']} ({r['cpu_capability']}), `{path}`:\n")
    allocators = [a for a in ALLOCATORS if f"train_svformer_{a}" in rows]
    print("| | " + " | ".join(f"{a} allocator" for a in allocators) + " | goal |\n|" + "---|" * (len(allocators) + 2))
    for key, what, goal in KEYS:
        values = [r.get(key + key_suffix(a)) for a in allocators]
        print(f"| {what} | " + " | ".join("-" if v is None else f"{v:.2f}" for v in values) + f" | {goal} |")
    print("\n| seconds (peak MB) | reference | svformer |\n|---|---|---|")
    for task, what in (("train", "training step"), ("infer", "clip")):
        for alloc in allocators:
            a, b = rows[f"{task}_reference_{alloc}"], rows[f"{task}_svformer_{alloc}"]
            print(f"| {what}, {alloc} allocator | {a['seconds']:.2f} ({a['peak_mb']:.0f}) | "
                  f"{b['seconds']:.2f} ({b['peak_mb']:.0f}) |")
    ab = {k[3:]: v for k, v in r.items() if k.startswith("ab_")}
    if ab:
        print("\nEach acceleration switched off in turn (default allocator), over svformer with all on "
              "(above 1: the option pays that much):\n")
        print("| switched off | training step | clip | training peak |\n|---|---|---|---|")
        for name, v in ab.items():
            label = "all (the plain model)" if name == "plain" else f"`{name[3:]}`"
            print(f"| {label} | {v['train_step']:.2f} | {v['inference']:.2f} | {v['train_peak']:.2f} |")


if __name__ == "__main__":
    main(sys.argv[1])
