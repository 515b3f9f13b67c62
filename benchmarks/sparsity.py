"""Clip inference against the firing rate: svformer with and without sparse inference over spikes.

Sparse inference (`svformer.cpu.sparse`) works in proportion to the spikes, so its gain depends on how
often the model's neurons fire, which depends on the trained model and its data. For each rate, the paper
model's BatchNorms are calibrated so every neuron layer fires at that rate (`activity.calibrate`), then
`run.py`'s inference row runs in fresh processes with sparse inference on and off (``--rounds`` times,
interleaved; medians). Prints a table and writes a JSON and a plot.

    python benchmarks/sparsity.py [--rates 0.05 0.1 0.15 0.2 0.25 0.3 0.4] [--rounds 2] [--repeat 3]
        [--frames 16] [--size 224] [--json OUT.json] [--plot OUT.png]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from types import SimpleNamespace

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run  # noqa: E402

KINDS = {"sparse": "svformer", "dense": "no-sparse_spikes"}


def measure(rate: float, args) -> dict:
    """Median clip seconds with sparse inference on and off, at ``rate``."""
    folder = tempfile.mkdtemp(prefix="svformer-sparsity-")
    try:
        activity = run.prepare_model(args.frames, args.size, folder, rate)
        child = SimpleNamespace(batch=1, frames=args.frames, size=args.size, repeat=args.repeat,
                                neuron_shape=[1], run_dir=folder)
        seconds = {name: [] for name in KINDS}
        for r in range(args.rounds):
            for name, kind in (list(KINDS.items()) if r % 2 == 0 else list(KINDS.items())[::-1]):
                seconds[name].append(run._child("infer", kind, "default", child)["seconds"])
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    row = {name: statistics.median(s) for name, s in seconds.items()}
    row.update(rate=rate, rounds=seconds, layers=activity["layers"], speedup=row["dense"] / row["sparse"])
    return row


def plot(rows: list, path: str) -> None:
    from svformer.plotting import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    rates = [100 * r["rate"] for r in rows]
    ax.plot(rates, [r["dense"] for r in rows], "o-", label="dense (sparse_spikes off)")
    ax.plot(rates, [r["sparse"] for r in rows], "o-", label="sparse inference (default)")
    ax.set_xlabel("firing rate of every neuron layer, %")
    ax.set_ylabel("seconds per clip")
    ax.set_ylim(bottom=0)
    ax.set_title("svformer_paper, one clip on the CPU")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--json")
    parser.add_argument("--plot")
    args = parser.parse_args()
    print(f"{'firing rate':>12}{'dense s':>10}{'sparse s':>10}{'dense / sparse':>16}", flush=True)
    rows = []
    for rate in args.rates:
        row = measure(rate, args)
        rows.append(row)
        print(f"{100 * rate:>11.0f}%{row['dense']:>10.3f}{row['sparse']:>10.3f}{row['speedup']:>16.2f}", flush=True)
    print(f"{run.cpu_name()} ({run.torch_capability()})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": run.cpu_name(), "cpu_capability": run.torch_capability(), "rows": rows}, f, indent=1)
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
