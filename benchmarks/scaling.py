"""Benchmark: data-parallel training on this machine, one process using every core against torchrun
ranks of one core each, on the demo config (the same data, model and global batch).

    python benchmarks/scaling.py [--epochs 5] [--ranks 2] [--json out.json]

Each run trains from the same synthetic dataset in its own run folder; the epoch time is the difference
of the metrics file's cumulative ``train_seconds`` (training only, without validation), and the first
epoch is dropped (warm-up). Prints both medians and ``ddp_throughput_ratio``: the single process's
epoch time over the ranks' (above 1: the ranks are faster; the goal on 2 cores is at least 0.9).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile


def epoch_seconds(run_dir: str) -> list:
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        total = [json.loads(line)["train_seconds"] for line in f if line.strip()]
    return [b - a for a, b in zip([0.0] + total[:-1], total)]


def train(cmd_prefix: list, root: str, run_dir: str, epochs: int, extra: list) -> list:
    cmd = cmd_prefix + ["-m", "svformer", "train", "demo", f"data.root={root}", f"output_dir={run_dir}",
                        f"optim.epochs={epochs}", f"eval_every={epochs}", *extra]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    return epoch_seconds(run_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix="svformer-scaling-") as tmp:
        root = os.path.join(tmp, "data")
        single = train([sys.executable], root, os.path.join(tmp, "single"), args.epochs, [f"threads={cores}"])
        ranks = train([sys.executable, "-m", "torch.distributed.run", "--standalone",
                       f"--nproc_per_node={args.ranks}"], root, os.path.join(tmp, "ranks"), args.epochs, [])
    result = {"cores": cores, "ranks": args.ranks, "epoch_seconds_single": single, "epoch_seconds_ranks": ranks,
              "single_median": statistics.median(single[1:]), "ranks_median": statistics.median(ranks[1:])}
    result["ddp_throughput_ratio"] = result["single_median"] / result["ranks_median"]
    print(f"1 process x {cores} threads: {result['single_median']:.2f} s per epoch")
    print(f"{args.ranks} ranks x {max(cores // args.ranks, 1)} thread(s): {result['ranks_median']:.2f} s per epoch")
    print(f"ddp_throughput_ratio {result['ddp_throughput_ratio']:.2f} (goal >= 0.9)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
