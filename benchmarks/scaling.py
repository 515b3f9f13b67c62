"""Benchmark: data-parallel training on this machine, one process using every core against torchrun
ranks sharing the cores, with the same data, model and global batch.

    python benchmarks/scaling.py [--epochs 5] [--ranks 2] [--json out.json]           # the demo config
    python benchmarks/scaling.py --model paper [--steps 6] [--batch 4] [--json out.json]

The demo: each run trains the demo config from the same synthetic dataset in its own run folder; the
epoch time is the difference of the metrics file's cumulative ``train_seconds`` (training only, without
validation), and the first epoch is dropped (warm-up). The paper model: ``--steps`` training steps of
``svformer_paper`` (T=16, 224x224, AdamW) on random clips of a global batch of ``--batch`` (each rank
its share), the first two steps dropped. Prints both medians and ``ddp_throughput_ratio``: the single
process's time over the ranks' (above 1: the ranks are faster; the goal on 2 cores is at least 0.9).
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


def paper_steps(steps: int, batch: int) -> None:
    """(Child, one per rank.) ``steps`` training steps of the paper model; rank 0 prints their seconds."""
    import time

    import torch

    from svformer import create_model
    from svformer.config import OptimConfig
    from svformer.cpu.allocator import tune_allocator
    from svformer.engine.distributed import init_distributed, wrap_ddp
    from svformer.engine.optim import build_optimizer
    from svformer.engine.resources import plan_resources
    from svformer.engine.trainer import train_step

    tune_allocator()  # as the svformer command does by default
    torch.set_num_threads(plan_resources(None, 0).threads)
    info = init_distributed("cpu")
    torch.manual_seed(0)
    model = create_model("svformer_paper", num_classes=101)
    optimizer = build_optimizer(model, OptimConfig())
    net = wrap_ddp(model, torch.device("cpu")) if info.enabled else model
    local = batch // info.world_size
    gen = torch.Generator().manual_seed(info.rank)
    clips = torch.randn(local, 3, 16, 224, 224, generator=gen)
    targets = torch.nn.functional.one_hot(torch.randint(0, 101, (local,), generator=gen), 101).float()
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        train_step(net, optimizer, clips, targets, 5.0, torch.device("cpu"))
        seconds.append(time.perf_counter() - start)
    if info.is_main:
        print(json.dumps(seconds))


def paper(cmd_prefix: list, steps: int, batch: int, threads: list) -> list:
    cmd = cmd_prefix + [os.path.abspath(__file__), "--child", "--steps", str(steps), "--batch", str(batch)]
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads[0])} if threads else {})}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("demo", "paper"), default="demo")
    parser.add_argument("--epochs", type=int, default=5, help="demo: epochs per run")
    parser.add_argument("--steps", type=int, default=6, help="paper: training steps per run")
    parser.add_argument("--batch", type=int, default=4, help="paper: global batch")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return paper_steps(args.steps, args.batch)
    cores = len(os.sched_getaffinity(0))
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.ranks}"]
    if args.model == "paper":
        unit, warm = "step", 2  # the heap grows over the first two steps
        if args.steps <= warm:
            raise SystemExit(f"--steps must be more than {warm}")
        single = paper([sys.executable], args.steps, args.batch, [cores])
        ranks = paper(launch, args.steps, args.batch, [])
    else:
        unit, warm = "epoch", 1
        with tempfile.TemporaryDirectory(prefix="svformer-scaling-") as tmp:
            root = os.path.join(tmp, "data")
            single = train([sys.executable], root, os.path.join(tmp, "single"), args.epochs, [f"threads={cores}"])
            ranks = train(launch, root, os.path.join(tmp, "ranks"), args.epochs, [])
    result = {"model": args.model, "cores": cores, "ranks": args.ranks, f"{unit}_seconds_single": single,
              f"{unit}_seconds_ranks": ranks, "single_median": statistics.median(single[warm:]),
              "ranks_median": statistics.median(ranks[warm:])}
    if args.model == "paper":
        result["global_batch"] = args.batch
    result["ddp_throughput_ratio"] = result["single_median"] / result["ranks_median"]
    print(f"{args.model}: 1 process x {cores} threads: {result['single_median']:.2f} s per {unit}")
    print(f"{args.model}: {args.ranks} ranks x {max(cores // args.ranks, 1)} thread(s): {result['ranks_median']:.2f} "
          f"s per {unit}")
    print(f"ddp_throughput_ratio {result['ddp_throughput_ratio']:.2f} (goal >= 0.9)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
