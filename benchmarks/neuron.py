"""Benchmark: PLIF forward+backward, svformer (accelerated and plain) against spikingjelly 0.0.0.0.14.

Prints a table of median times and the speedup (reference time / svformer time) measured in the same
process, and writes JSON with --json. The default input is the issue's [16, 8, 128, 56, 56] (stage-1
activations of 8 clips); --shape makes it smaller for a quick look.

    python benchmarks/neuron.py [--shape 16 8 128 56 56] [--repeat 5] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from svformer.cpu import accelerate
from svformer.snn import ParametricLIFNode


def _time_fwd_bwd(node, x, grad, repeat):
    times = []
    for _ in range(repeat + 1):  # the first run warms up allocators and is dropped
        xi = x.detach().clone().requires_grad_(True)
        node.reset()
        start = time.perf_counter()
        node(xi).backward(grad)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def run(shape, repeat):
    from spikingjelly.activation_based import neuron, surrogate

    torch.manual_seed(0)
    x = torch.randn(shape) + 0.5
    grad = torch.randn(shape)
    reference = neuron.ParametricLIFNode(surrogate_function=surrogate.ATan(), detach_reset=True, step_mode="m")
    rows = {"spikingjelly (torch backend)": _time_fwd_bwd(reference, x, grad, repeat)}
    for name in ("accelerated", "plain"):
        node = ParametricLIFNode(surrogate="atan", detach_reset=True)
        if name == "accelerated":
            accelerate(node)
        rows[f"svformer {name}"] = _time_fwd_bwd(node, x, grad, repeat)
    base = rows["spikingjelly (torch backend)"]
    return {"shape": list(shape), "threads": torch.get_num_threads(), "seconds": rows,
            "speedup": {k: base / v for k, v in rows.items()}, "neuron_speedup": base / rows["svformer accelerated"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", type=int, nargs="+", default=[16, 8, 128, 56, 56])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    result = run(tuple(args.shape), args.repeat)
    print(f"PLIF forward+backward on {tuple(args.shape)}, {result['threads']} threads, median of {args.repeat}")
    print(f"{'implementation':<32}{'seconds':>10}{'speedup':>10}")
    for name, sec in result["seconds"].items():
        print(f"{name:<32}{sec:>10.3f}{result['speedup'][name]:>9.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
