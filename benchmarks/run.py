"""All speed and memory benchmarks of svformer against the authors' setup, in one run.

Reference: the same SVFormer built on spikingjelly 0.0.0.0.14 ParametricLIFNode (torch backend, the
authors' CPU path) and the authors' permute-and-copy BN wrappers, through the model's factories
(`reference_model.py`). Every measurement runs in its own process, whose peak resident memory (VmHWM,
reset at its start) belongs to it alone.

Each is taken twice: with glibc's default allocator (how the authors' code runs, and the basis of the
keys below) and with `svformer.cpu.allocator.tune_allocator` (``svformer --allocator tuned``), applied
to both sides alike - a large share of a step under the default allocator can be the kernel mapping and
zeroing freed memory again, which the tuned allocator removes for the reference too. ``--allocator all``
adds a third pass with `lean_allocator` (``svformer --allocator lean``: freed large blocks go back to
the system at once, the lowest peaks).

The paper model's weights are random, its BatchNorms calibrated first so that each neuron layer fires at
``--firing-rate`` (default 15 %; `activity.py`): svformer's sparse inference depends on it, dense work
does not.

Rows that form a ratio are measured one after the other. ``--rounds N`` measures every row N times, each
in a fresh process, the rounds interleaved (every other one in reverse order): on a machine whose speed
drifts during a run (a shared VM) the medians of the rounds make steadier ratios than one process per
row. The neuron rows stay one process per allocator, which times every neuron itself.

Deployment rows (unless ``--no-onnx``): the paper model exported to ONNX (`svformer.export`, once per
run) classifies a clip on ONNX Runtime, and three runtimes stream frame by frame (`StreamingSVFormer`,
the step graph compiled by torch.compile, `CompiledStream`, and the exported step model on ONNX Runtime),
batch 1, per-frame latency over several clips after a warm-up clip (which includes the compilation).

``--ab`` then measures, with the default allocator, svformer with each CPU acceleration switched off
in turn (`svformer.cpu.Acceleration`) and the plain model (all off): keys ``ab_<option>`` hold the
training step, clip and training peak of that variant over svformer's with everything on (above 1:
the option pays that much).

    python benchmarks/run.py [--json OUT.json] [--repeat 4] [--batch 2] [--frames 16] [--size 224]
        [--allocator both|all|default|tuned|lean] [--neuron-shape 16 8 128 56 56] [--plot OUT.png] [--bf16 auto|yes|no]
        [--ab] [--rounds 1]

Keys written (ratios reference/svformer, bigger is better, except memory: svformer/reference), all
with the default allocator: neuron_speedup, train_step_speedup, train_peak_memory_ratio,
inference_speedup, inference_floor_fraction; train_step_speedup_bf16 and train_peak_memory_ratio_bf16
for a step under bfloat16 autocast on both sides (the authors trained with mixed precision; measured
by default only on CPUs with bfloat16 arithmetic, AVX-512-BF16 or AMX: elsewhere autocast emulates it
and a step takes minutes);
train_first_step_speedup and inference_first_speedup for the first, cold run of a fresh process (page
faults and lazy initialisation included: what a user's first step costs); train_step_speedup_bound and
inference_speedup_bound, the reference's time over svformer's time in convolutions and matrix products
alone (`dense.py`: what the ratio would be if everything else took no time); the same with the suffix
``_tuned_allocator`` (and ``_lean_allocator``). Deployment keys: inference_speedup_onnx (reference over ONNX Runtime, one clip),
inference_speedup_best (the faster runtime's), streaming_latency_ms_p50 and streaming_latency_ms_p95 (the
runtime with the lower median), streaming_latency_ms_p50_pytorch / _compiled / _onnx and the p95 of each.
Activation checkpointing per block (`SVFormer(checkpointing="block")`): train_peak_memory_ratio_checkpointed
(its training peak over the reference's) and train_step_slowdown_checkpointed (its step over svformer's
without checkpointing).
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
# The run's calibrated paper model in its folder (`prepare_model`), which every row's process loads.
MODEL_FILE = "model.pt"


def _model(kind: str, frames: int, size: int, run_dir: str = ""):
    """'reference' (the authors' setup), 'svformer' (default accelerations), 'plain' (none),
    'no-<option>' (the defaults with one acceleration off) or 'checkpoint-<stage|block>' (the defaults with
    activation checkpointing). svformer's models get the run's calibrated weights (`prepare_model`) when
    ``run_dir`` holds them."""
    if kind == "reference":
        from reference_model import reference_model

        return reference_model(frames, size)
    from svformer import create_model

    if kind.startswith("checkpoint-"):
        model = create_model("svformer_paper", num_frames=frames, img_size=size, checkpointing=kind.split("-", 1)[1])
    else:
        accelerate = {"svformer": True, "plain": False}.get(kind) if not kind.startswith("no-") else {kind[3:]: False}
        model = create_model("svformer_paper", num_frames=frames, img_size=size, accelerate=accelerate)
    weights = os.path.join(run_dir, MODEL_FILE) if run_dir else ""
    if weights and os.path.exists(weights):
        import torch

        model.load_state_dict(torch.load(weights))
    return model


def prepare_model(frames: int, size: int, run_dir: str, rate: float) -> dict:
    """The benchmark's paper model (random weights, seed 0) with its BatchNorms set so that each neuron layer
    fires at ``rate`` (`activity.calibrate`; 0: left as initialised), saved in ``run_dir`` for every row's
    process; returns the rates reached on the calibration clip and each layer's rate on the benchmark's."""
    import torch

    from activity import calibrate, firing_rates

    torch.manual_seed(0)
    model = _model("svformer", frames, size)
    reached = calibrate(model, rate) if rate > 0 else None
    torch.save(model.state_dict(), os.path.join(run_dir, MODEL_FILE))
    torch.manual_seed(0)
    layers = firing_rates(model, torch.randn(1, 3, frames, size, size))
    return {"target": rate, "reached": reached, "layers": layers}


def stream_latency(kind: str, frames: int, size: int, run_dir: str, clips: int = 4) -> dict:
    """Per-frame latency of streaming (batch 1): PyTorch's `StreamingSVFormer` ('svformer'), the compiled
    step graph ('compiled') or the exported step model on ONNX Runtime ('onnx'). The first clip warms up
    (and compiles); the rest are measured."""
    import numpy as np
    import torch

    torch.manual_seed(0)
    if kind == "onnx":
        from svformer.export.runtime import OnnxSVFormer

        stream = OnnxSVFormer(os.path.join(run_dir, "step.onnx")).streamer()
    elif kind == "compiled":
        from svformer.export.compiled import CompiledStream

        stream = CompiledStream(_model("svformer", frames, size, run_dir))
    else:
        from svformer import StreamingSVFormer

        stream = StreamingSVFormer(_model(kind, frames, size, run_dir).eval())
    x = torch.randn(1, 3, frames, size, size)
    lat = []
    for _ in range(clips):
        stream.reset()
        for t in range(frames):
            start = time.perf_counter()
            stream.step(x[:, :, t])
            lat.append(time.perf_counter() - start)
    ms = 1e3 * np.array(lat[frames:])
    return {"seconds": float(np.median(ms)) / 1e3, "p50_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95)),
            "peak_mb": peak_mb(), "first_seconds": lat[0], "frames_ms": [round(float(v), 2) for v in ms]}


def export_onnx_models(frames: int, size: int, folder: str) -> None:
    """The run's paper model (`prepare_model`) as clip.onnx and step.onnx in ``folder``."""
    import torch

    from svformer.export import export_onnx

    torch.manual_seed(0)
    model = _model("svformer", frames, size, folder).eval()
    export_onnx(model, os.path.join(folder, "clip.onnx"))
    export_onnx(model, os.path.join(folder, "step.onnx"), kind="stream")


def measure(task: str, kind: str, batch: int, frames: int, size: int, repeat: int, dense: bool = True,
            run_dir: str = "") -> dict:
    """Runs in a child process: median seconds of ``task``, this process's peak RSS in MB, the first
    (cold) run's seconds and the seconds of its convolutions and matrix products (`dense.profile_dense`,
    two more runs under the profiler).

    The first two runs are dropped from the median: the allocator reaches its steady state (no more
    page faults) only after a step or two. The cold run is what a user's first step costs.
    """
    import torch

    if task == "stream":
        return stream_latency(kind, frames, size, run_dir)
    torch.manual_seed(0)
    if kind == "onnx":
        from svformer.export.runtime import OnnxSVFormer

        model = OnnxSVFormer(os.path.join(run_dir, "clip.onnx"))
    else:
        model = _model(kind, frames, size, run_dir)
    x = torch.randn(batch, 3, frames, size, size)
    if task in ("train", "train_bf16"):
        opt = torch.optim.AdamW(model.parameters(), 1e-4)
        y = torch.randint(0, 101, (batch,))
        model.train()

        def run():
            # train_bf16: mixed precision as the authors trained (autocast; bfloat16 is the CPU's half type)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=task == "train_bf16"):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=False)  # as svformer's training step does on the CPU (`engine.trainer`)
            loss.backward()
            opt.step()
    else:
        if kind != "onnx":
            model.eval()
        x = x[:1]

        def run():
            with torch.inference_mode():
                model(x)
    times = []
    for _ in range(repeat + 2):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    result = {"seconds": statistics.median(times[2:]), "peak_mb": peak_mb(), "first_seconds": times[0]}
    if dense:
        from dense import profile_dense

        result.update(profile_dense(run))  # after the timed runs: the profiler touches neither times nor peak
    return result


def reset_peak() -> None:
    """Forget the peak RSS this process inherited: a forked child starts with its parent's high-water mark."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_mb() -> float:
    """This process's peak resident memory in MB (VmHWM on Linux, else ru_maxrss)."""
    from svformer.analysis.memory import resident_mb

    try:
        return resident_mb("VmHWM")
    except (OSError, RuntimeError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(task, kind, allocator, args) -> dict:
    cmd = [sys.executable, __file__, "--child", task, kind, allocator, "--batch", str(args.batch),
           "--frames", str(args.frames), "--size", str(args.size), "--repeat", str(args.repeat),
           "--neuron-shape", *map(str, args.neuron_shape), "--run-dir", args.run_dir or ""]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"benchmark child {task}/{kind}/{allocator} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_rows(runs: list, allocator: str, args) -> dict:
    """Every (task, kind) of ``runs`` measured ``args.rounds`` times, each time in its own process. The
    rounds are interleaved, every other one in reverse order, so that a drift of the machine's speed
    during the run falls on all rows alike; a row holds the median of its rounds (and each round's
    seconds, ``round_seconds``)."""
    measured = {run: [] for run in runs}
    for r in range(args.rounds):
        for task, kind in runs if r % 2 == 0 else runs[::-1]:
            row = _child(task, kind, allocator, args)
            measured[(task, kind)].append(row)
            print_row(task, kind, allocator, row, f"round {r + 1}" if args.rounds > 1 else "")
    return {run: median_row(results) for run, results in measured.items()}


def median_row(results: list) -> dict:
    """The rounds of one row as one: the median of every number (the first round's other values). With
    several rounds, each round's seconds (``round_seconds``) and, for a stream, each round's percentiles
    and per-frame latencies (``round_p50_ms``, ``round_p95_ms``, ``round_frames_ms``: whether a slow round
    is slow on every frame or on a few)."""
    row = dict(results[0])
    for key, value in row.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            row[key] = statistics.median(r[key] for r in results)
    if len(results) > 1:
        row["round_seconds"] = [r["seconds"] for r in results]
        for key in ("p50_ms", "p95_ms", "frames_ms"):
            if key in row:
                row["round_" + key] = [r[key] for r in results]
        row.pop("frames_ms", None)
    return row


def print_row(task: str, kind: str, allocator: str, row: dict, note: str = "") -> None:
    print(f"{task:<12}{kind:<30}{allocator:<11}{row['seconds']:>9.3f}{row['peak_mb']:>9.0f}"
          f"{row['first_seconds']:>9.3f}{row.get('dense_seconds', float('nan')):>9.3f}"
          + (f"   p50 {row['p50_ms']:.1f} ms, p95 {row['p95_ms']:.1f} ms" if task == "stream" else "")
          + (f"   {note}" if note else ""), flush=True)


def key_suffix(allocator: str) -> str:
    """What the keys measured with ``allocator`` end with: nothing for the default one."""
    return "" if allocator == "default" else f"_{allocator}_allocator"


def _run_child(task, kind, allocator, args) -> dict:
    from svformer.cpu.allocator import set_allocator

    if not set_allocator(allocator):  # before the first large tensor (PyTorch reads THP_MEM_ALLOC_ENABLE then)
        raise SystemExit(f"the {allocator} allocator needs glibc")
    reset_peak()
    if task == "neuron":
        from neuron import run as neuron_run

        return neuron_run(tuple(args.neuron_shape), args.repeat)
    return measure(task, kind, args.batch, args.frames, args.size, args.repeat,
                   dense=not kind.startswith(("no-", "plain", "onnx", "checkpoint")) and task != "stream",
                   run_dir=args.run_dir)


def matmul_gflops() -> float:
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    start = time.perf_counter()
    for _ in range(5):
        a @ b
    return 5 * 2 * 2048 ** 3 / (time.perf_counter() - start) / 1e9


def native_bf16() -> bool:
    """Whether this CPU does bfloat16 arithmetic in hardware (AVX-512-BF16 or AMX)."""
    import torch

    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def cpu_name() -> str:
    """The CPU's model name (Linux), else the platform's processor string."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def torch_capability() -> str:
    import torch

    return torch.backends.cpu.get_cpu_capability()


def planner_check(rows: dict, allocator: str, args) -> dict:
    """`svformer memory`'s CPU prediction (probes at 128x128) against the measured training peaks of this
    run: relative error, per checkpointing setting ('none': the svformer row, 'block': checkpoint-block)."""
    from svformer.analysis.memory import plan

    suffix = key_suffix(allocator)
    plans = plan("svformer_paper", {"num_frames": args.frames, "img_size": args.size}, device="cpu",
                 modes=["none", "block"], allocator=allocator, probe_size=min(args.size, 128))
    keys = {}
    for p, kind in zip(plans, ("svformer", "checkpoint-block")):
        measured = rows[("train", kind)]["peak_mb"]
        keys[f"memory_planner_error_{p.checkpointing}{suffix}"] = (p.peak_mb(args.batch) - measured) / measured
        print(f"memory planner, {p.checkpointing} checkpointing, {allocator} allocator: predicted "
              f"{p.peak_mb(args.batch):.0f} MB, measured {measured:.0f} MB", flush=True)
    return keys


def _keys(rows: dict, neuron: dict, floor: float, suffix: str) -> dict:
    def ratio(task, a, b, key="seconds"):
        return rows[(task, a)][key] / rows[(task, b)][key]

    keys = {
        f"neuron_speedup{suffix}": neuron["neuron_speedup"],
        f"train_step_speedup{suffix}": ratio("train", "reference", "svformer"),
        f"train_peak_memory_ratio{suffix}": rows[("train", "svformer")]["peak_mb"] / rows[("train", "reference")]["peak_mb"],
        f"inference_speedup{suffix}": ratio("infer", "reference", "svformer"),
        f"inference_peak_memory_ratio{suffix}": rows[("infer", "svformer")]["peak_mb"] / rows[("infer", "reference")]["peak_mb"],
        f"inference_floor_fraction{suffix}": floor / rows[("infer", "svformer")]["seconds"],
        f"train_first_step_speedup{suffix}": ratio("train", "reference", "svformer", "first_seconds"),
        f"inference_first_speedup{suffix}": ratio("infer", "reference", "svformer", "first_seconds"),
        # The most any work outside the convolutions and matrix products could give (see dense.py).
        f"train_step_speedup_bound{suffix}": rows[("train", "reference")]["seconds"]
        / rows[("train", "svformer")]["dense_seconds"],
        f"inference_speedup_bound{suffix}": rows[("infer", "reference")]["seconds"]
        / rows[("infer", "svformer")]["dense_seconds"],
    }
    if ("train", "checkpoint-block") in rows:  # activation checkpointing per block
        keys[f"train_peak_memory_ratio_checkpointed{suffix}"] = \
            rows[("train", "checkpoint-block")]["peak_mb"] / rows[("train", "reference")]["peak_mb"]
        keys[f"train_step_slowdown_checkpointed{suffix}"] = ratio("train", "checkpoint-block", "svformer")
    if ("infer", "onnx") in rows:
        keys[f"inference_speedup_onnx{suffix}"] = ratio("infer", "reference", "onnx")
        keys[f"inference_speedup_best{suffix}"] = max(keys[f"inference_speedup{suffix}"],
                                                      keys[f"inference_speedup_onnx{suffix}"])
        streams = {"pytorch": rows[("stream", "svformer")], "onnx": rows[("stream", "onnx")]}
        if ("stream", "compiled") in rows:
            streams["pytorch_compiled"] = rows[("stream", "compiled")]
        for name, row in streams.items():
            keys[f"streaming_latency_ms_p50_{name}{suffix}"] = row["p50_ms"]
            keys[f"streaming_latency_ms_p95_{name}{suffix}"] = row["p95_ms"]
        best = min(streams.values(), key=lambda row: row["p50_ms"])
        keys[f"streaming_latency_ms_p50{suffix}"] = best["p50_ms"]
        keys[f"streaming_latency_ms_p95{suffix}"] = best["p95_ms"]
    if ("train_bf16", "svformer") in rows:
        keys[f"train_step_speedup_bf16{suffix}"] = ratio("train_bf16", "reference", "svformer")
        keys[f"train_peak_memory_ratio_bf16{suffix}"] = \
            rows[("train_bf16", "svformer")]["peak_mb"] / rows[("train_bf16", "reference")]["peak_mb"]
    return keys


TARGETS = {"neuron_speedup": ">= 8", "train_step_speedup": ">= 3", "train_step_speedup_bound": "",
           "train_peak_memory_ratio": "<= 0.5", "inference_speedup": ">= 2.5", "inference_speedup_bound": "",
           "train_step_speedup_bf16": "",
           "train_peak_memory_ratio_bf16": "", "inference_floor_fraction": "",
           "train_first_step_speedup": "", "inference_first_speedup": "",
           "inference_speedup_onnx": "", "inference_speedup_best": ">= 1.8",
           "train_peak_memory_ratio_checkpointed": "<= 0.25", "train_step_slowdown_checkpointed": "<= 1.35"}
# Printed with the ratios, not drawn on their axis: latencies in milliseconds, the planner's relative errors.
LATENCY_TARGETS = {"memory_planner_error_none": "within +-0.15", "memory_planner_error_block": "within +-0.15",
                   "streaming_latency_ms_p50": "<= 40", "streaming_latency_ms_p95": "<= 40",
                   "streaming_latency_ms_p50_pytorch": "", "streaming_latency_ms_p95_pytorch": "",
                   "streaming_latency_ms_p50_pytorch_compiled": "", "streaming_latency_ms_p95_pytorch_compiled": "",
                   "streaming_latency_ms_p50_onnx": "", "streaming_latency_ms_p95_onnx": ""}


def plot(result: dict, allocators, path: str) -> None:
    """Bar chart of the ratios per allocator, with the targets as marks."""
    from svformer.plotting import pyplot

    plt = pyplot()
    keys = [k for k in TARGETS if k in result]
    fig, ax = plt.subplots(figsize=(max(10, 0.8 * len(keys) * len(allocators)), 5))
    width = 0.8 / len(allocators)
    for i, allocator in enumerate(allocators):
        values = [result[k + key_suffix(allocator)] for k in keys]
        bars = ax.bar([j + i * width for j in range(len(keys))], values, width, label=f"{allocator} allocator")
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    for j, key in enumerate(keys):
        if TARGETS[key]:
            level = float(TARGETS[key].split()[-1])
            ax.hlines(level, j - width / 2, j + width * (len(allocators) - 0.5), colors="k", linestyles="--")
    ax.set_xticks([j + width * (len(allocators) - 1) / 2 for j in range(len(keys))])
    ax.set_xticklabels([k.replace("_", " ") for k in keys], fontsize=8, rotation=30, ha="right")
    ax.set_ylabel("reference / svformer (memory: svformer / reference)")
    ax.set_title("svformer vs the authors' setup (dashed: issue targets)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def ab_table(result: dict, args) -> dict:
    """Each acceleration off in turn (and all off), default allocator: that variant over svformer."""
    from dataclasses import fields

    from svformer.cpu import Acceleration

    base = {task: result["rows"][f"{task}_svformer_default"] for task in ("train", "infer")}
    table = {}
    print(f"\n{'switched off':<18}{'train step':>12}{'clip':>10}{'train peak':>12}   (variant / all on; > 1: it pays)")
    for kind in [f"no-{f.name}" for f in fields(Acceleration)] + ["plain"]:
        measured = measure_rows([("train", kind), ("infer", kind)], "default", args)
        rows = {task: row for (task, _), row in measured.items()}
        ratios = {"train_step": rows["train"]["seconds"] / base["train"]["seconds"],
                  "inference": rows["infer"]["seconds"] / base["infer"]["seconds"],
                  "train_peak": rows["train"]["peak_mb"] / base["train"]["peak_mb"],
                  "rows": rows}
        table[kind] = ratios
        result[f"ab_{kind.replace('-', '_')}"] = {k: v for k, v in ratios.items() if k != "rows"}
        print(f"{kind:<18}{ratios['train_step']:>12.2f}{ratios['inference']:>10.2f}{ratios['train_peak']:>12.2f}",
              flush=True)
    return table


def main():
    from svformer.cpu.allocator import ALLOCATORS

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", nargs=3, metavar=("TASK", "KIND", "ALLOCATOR"), help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every row (but the neuron's) this many times, each in its own process "
                             "(interleaved); rows are the medians")
    parser.add_argument("--neuron-shape", type=int, nargs="+", default=[16, 8, 128, 56, 56])
    parser.add_argument("--allocator", choices=("both", "all", *ALLOCATORS), default="both",
                        help="both: default and tuned; all: default, tuned and lean")
    parser.add_argument("--bf16", choices=("auto", "yes", "no"), default="auto",
                        help="measure the bfloat16 autocast step (auto: only on CPUs with bfloat16 arithmetic)")
    parser.add_argument("--ab", action="store_true", help="also measure each CPU acceleration switched off")
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime and streaming rows")
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)
    parser.add_argument("--firing-rate", type=float, default=0.15,
                        help="calibrate the paper model's BatchNorms so each neuron layer fires at this rate "
                             "(sparse inference depends on it; 0: random weights as initialised)")
    parser.add_argument("--json")
    parser.add_argument("--plot", help="write a bar chart of the ratios (PNG)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    sys.path.insert(0, HERE)
    if args.child:
        print(json.dumps(_run_child(*args.child, args)))
        return

    from svformer import create_model
    from svformer.analysis import count_macs

    macs = count_macs(create_model("svformer_paper", num_frames=args.frames, img_size=args.size),
                      (1, 3, args.frames, args.size, args.size)).macs
    gflops = matmul_gflops()
    floor = 2 * macs / 1e9 / gflops
    allocators = {"both": ("default", "tuned"), "all": ALLOCATORS}.get(args.allocator, (args.allocator,))
    bf16 = args.bf16 == "yes" or (args.bf16 == "auto" and native_bf16())
    tasks = ("train", "train_bf16", "infer") if bf16 else ("train", "infer")
    result = {"matmul_gflops": gflops, "dense_floor_seconds": floor, "cpu": cpu_name(),
              "cpu_capability": torch_capability(), "rows": {}, "neuron": {}}
    # Each ratio's two rows next to each other, so that the machine's speed changes little between them.
    runs = [(task, kind) for task in tasks for kind in ("reference", "svformer")]
    runs.insert(runs.index(("train", "svformer")) + 1, ("train", "checkpoint-block"))
    import tempfile

    args.run_dir = tempfile.mkdtemp(prefix="svformer-bench-")
    print(f"calibrating the paper model to fire at {args.firing_rate:.0%} ...", flush=True)
    activity = result["firing_rates"] = prepare_model(args.frames, args.size, args.run_dir, args.firing_rate)
    rates = sorted(activity["layers"].values())
    print(f"neuron layers fire at {100 * rates[0]:.1f}-{100 * rates[-1]:.1f} % (median "
          f"{100 * statistics.median(rates):.1f} %) on the benchmark clip", flush=True)
    if not args.no_onnx:
        print(f"exporting the paper model to ONNX in {args.run_dir} ...", flush=True)
        export_onnx_models(args.frames, args.size, args.run_dir)
        runs += [("infer", "onnx"), ("stream", "svformer"), ("stream", "compiled"), ("stream", "onnx")]
    print(f"{'task':<12}{'implementation':<30}{'allocator':<11}{'seconds':>9}{'peak MB':>9}{'cold s':>9}"
          f"{'dense s':>9}")
    for allocator in allocators:
        rows = measure_rows(runs, allocator, args)
        if args.rounds > 1:
            print(f"median of {args.rounds} rounds:")
            for (task, kind), row in rows.items():
                print_row(task, kind, allocator, row)
        for (task, kind), row in rows.items():
            result["rows"][f"{task}_{kind}_{allocator}"] = row
        neuron = result["neuron"][allocator] = _child("neuron", "-", allocator, args)
        for name, sec in neuron["seconds"].items():
            print(f"{'neuron':<12}{name:<30}{allocator:<11}{sec:>9.3f}", flush=True)
        result.update(_keys(rows, neuron, floor, key_suffix(allocator)))
        result.update(planner_check(rows, allocator, args))
    print(f"\n{'metric':<28}" + "".join(f"{a + ' alloc.':>16}" for a in allocators) + "   target")
    for key, target in {**TARGETS, **LATENCY_TARGETS}.items():
        values = [result.get(key + key_suffix(a)) for a in allocators]
        print(f"{key:<28}" + "".join(f"{v:>16.2f}" if v is not None else f"{'not run':>16}" for v in values)
              + f"   {target}")
    if args.ab:
        result["ab"] = ab_table(result, args)
    if not bf16 and args.bf16 == "no":
        print("(bfloat16 step not run: --bf16 no)")
    elif not bf16:
        print("(bfloat16 step not run: this CPU has no bfloat16 arithmetic; --bf16 yes runs it anyway)")
    print(f"{result['cpu']} ({result['cpu_capability']})")
    print(f"dense floor {floor:.3f} s per clip at {gflops:.0f} GFLOP/s (measured matmul)")
    print("dense s: seconds in convolutions and matrix products (profiled); *_bound: reference seconds / "
          "svformer's dense seconds, the most any other work could give")
    import shutil

    shutil.rmtree(args.run_dir, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if args.plot:
        plot(result, allocators, args.plot)


if __name__ == "__main__":
    main()
