"""All speed and memory benchmarks of svformer against the authors' setup, in one run.

Reference: the same SVFormer built on spikingjelly 0.0.0.0.14 ParametricLIFNode (torch backend, the
authors' CPU path) and the authors' permute-and-copy BN wrappers, through the model's factories
(`reference_model.py`). The model measurements run first, each in its own process, whose peak resident
memory (VmHWM, reset at its start) belongs to it alone; then the neuron benchmark in this process.

    python benchmarks/run.py [--json OUT.json] [--repeat 3] [--batch 2] [--frames 16] [--size 224]

Keys written (ratios reference/svformer, bigger is better, except memory: svformer/reference):
neuron_speedup, train_step_speedup, train_peak_memory_ratio, inference_speedup, inference_floor_fraction.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _model(kind: str, frames: int, size: int):
    if kind == "reference":
        from reference_model import reference_model

        return reference_model(frames, size)
    from svformer import create_model

    return create_model("svformer_paper", num_frames=frames, img_size=size, neuron_backend=kind)


def measure(task: str, kind: str, batch: int, frames: int, size: int, repeat: int) -> dict:
    """Runs in a child process: median seconds of ``task`` and this process's peak RSS in MB."""
    import torch

    torch.manual_seed(0)
    model = _model(kind, frames, size)
    x = torch.randn(batch, 3, frames, size, size)
    times = []
    if task == "train":
        opt = torch.optim.AdamW(model.parameters(), 1e-4)
        y = torch.randint(0, 101, (batch,))
        model.train()
        for _ in range(repeat + 1):
            start = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - start)
    else:
        model.eval()
        x = x[:1]
        with torch.inference_mode():
            for _ in range(repeat + 1):
                start = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times[1:]), "peak_mb": peak_mb()}


def reset_peak() -> None:
    """Forget the peak RSS this process inherited: a forked child starts with its parent's high-water mark."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_mb() -> float:
    """This process's peak resident memory in MB (VmHWM on Linux, else ru_maxrss)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(task, kind, args) -> dict:
    cmd = [sys.executable, __file__, "--child", task, kind, "--batch", str(args.batch), "--frames", str(args.frames),
           "--size", str(args.size), "--repeat", str(args.repeat)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def matmul_gflops() -> float:
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    start = time.perf_counter()
    for _ in range(5):
        a @ b
    return 5 * 2 * 2048 ** 3 / (time.perf_counter() - start) / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", nargs=2, metavar=("TASK", "KIND"), help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    sys.path.insert(0, HERE)
    if args.child:
        reset_peak()
        print(json.dumps(measure(*args.child, args.batch, args.frames, args.size, args.repeat)))
        return

    from neuron import run as neuron_run

    result = {}
    rows = {}
    for task in ("train", "infer"):
        for kind in ("reference", "fused"):
            rows[(task, kind)] = _child(task, kind, args)
            print(f"{task:<6}{kind:<10}{rows[(task, kind)]['seconds']:>9.3f} s{rows[(task, kind)]['peak_mb']:>9.0f} MB",
                  flush=True)
    result["neuron"] = neuron_run((16, 8, 128, 56, 56), args.repeat)
    from svformer import create_model
    from svformer.analysis import count_macs

    macs = count_macs(create_model("svformer_paper", num_frames=args.frames, img_size=args.size),
                      (1, 3, args.frames, args.size, args.size)).macs
    gflops = matmul_gflops()
    floor = 2 * macs / 1e9 / gflops
    result.update({
        "neuron_speedup": result["neuron"]["neuron_speedup"],
        "neuron_speedup_compiled": result["neuron"]["neuron_speedup_compiled"],
        "train_step_speedup": rows[("train", "reference")]["seconds"] / rows[("train", "fused")]["seconds"],
        "train_peak_memory_ratio": rows[("train", "fused")]["peak_mb"] / rows[("train", "reference")]["peak_mb"],
        "inference_speedup": rows[("infer", "reference")]["seconds"] / rows[("infer", "fused")]["seconds"],
        "inference_peak_memory_ratio": rows[("infer", "fused")]["peak_mb"] / rows[("infer", "reference")]["peak_mb"],
        "matmul_gflops": gflops, "dense_floor_seconds": floor,
        "inference_floor_fraction": floor / rows[("infer", "fused")]["seconds"],
        "rows": {f"{t}_{k}": v for (t, k), v in rows.items()},
    })
    print(f"\n{'metric':<28}{'value':>10}   target")
    for key, target in [("neuron_speedup", ">= 8"), ("neuron_speedup_compiled", ""), ("train_step_speedup", ">= 3"),
                        ("train_peak_memory_ratio", "<= 0.5"), ("inference_speedup", ">= 2.5"),
                        ("inference_floor_fraction", "")]:
        print(f"{key:<28}{result[key]:>10.2f}   {target}")
    print(f"dense floor {floor:.3f} s per clip at {gflops:.0f} GFLOP/s (measured matmul)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
