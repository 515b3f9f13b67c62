"""The `svformer` command: a thin shell over importable functions.

    svformer demo
    svformer train ucf101 data.root=/data/ucf101 [--resume runs/ucf101/last.pt]
    svformer test runs/ucf101/best.pt
    svformer predict runs/ucf101/best.pt video.avi          (or an exported model.onnx)
    svformer export runs/ucf101/best.pt --out model.onnx [--kind stream]
    svformer stream step.onnx video.avi [--every 4] [--json frames.json]
    svformer stream runs/ucf101/best.pt /dev/video0 --compile
    svformer list-models
    svformer info svformer_paper [--batch 1] [--set num_classes=51 ...]
    svformer memory ucf101 [--device-memory 24GB] [--devices 4]
    svformer energy --model svformer_paper --firing-rates authors-ucf101 --json out.json --plots plots/
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional

import yaml

from .cpu.allocator import ALLOCATORS, set_allocator


# The process-wide C allocator setting the command applies (docs/performance.md has the measurement).
DEFAULT_ALLOCATOR = "tuned"


def _parse_overrides(items: List[str]) -> dict:
    """``key=value`` pairs; values are parsed as YAML scalars/lists (``embed_dim=[16,32,48,64]``)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"svformer: --set expects key=value, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def cmd_list_models(args) -> int:
    from .models import list_models

    for name in list_models(args.pattern):
        print(name)
    return 0


def _gigabytes(value: str) -> float:
    text = value.strip().upper().removesuffix("B").removesuffix("G").strip()
    try:
        gb = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size like 24GB, got {value!r}") from None
    if gb <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value!r}")
    return gb


DEVICE_SIZES_GB = (16, 24, 32, 40, 80)


def cmd_memory(args) -> int:
    from .analysis.memory import plan, plan_table, to_json
    from .config import ConfigError, load_config
    from .models.svformer import check_arguments

    try:
        cfg = load_config(args.config, args.set)
        kwargs = dict(cfg.model.kwargs, num_frames=cfg.data.num_frames, img_size=cfg.data.crop_size)
        check_arguments(cfg.model.kwargs, where=f"model.kwargs for {cfg.model.name}")
    except (ConfigError, FileNotFoundError, ValueError) as e:
        raise SystemExit(f"svformer memory: {e}")
    modes = [m for m in ("none", "stage", "block") if args.checkpointing in ("all", m)]
    per_device = cfg.optim.batch_size * cfg.aug.repeats / args.devices
    where = "GPU (predicted)" if args.device == "cuda" else "this CPU process"
    print(f"{cfg.model.name}: T={cfg.data.num_frames}, {cfg.data.crop_size}x{cfg.data.crop_size}, "
          f"{'bfloat16/float16 autocast' if cfg.amp else 'float32'}; peak per {where}")
    try:
        plans = plan(cfg.model.name, kwargs, device=args.device, modes=modes, amp=cfg.amp,
                     allocator=getattr(args, "allocator", DEFAULT_ALLOCATOR),  # CPU probes run as training would
                     progress=lambda m: print(m, file=sys.stderr, flush=True), sync_bn=cfg.sync_bn and args.devices > 1)
    except (RuntimeError, ValueError) as e:
        raise SystemExit(f"svformer memory: {e}")
    sizes = [args.device_memory] if args.device_memory else list(DEVICE_SIZES_GB)
    table = plan_table(plans, sizes)
    header = f"{'checkpointing':<14}{'fixed GB':>9}{'GB/clip':>9}{f'GB at {per_device:g} clips':>18}"
    print(header + "".join(f"{'fits in ' + f'{g:g} GB':>15}" for g in sizes))
    for p in plans:
        row = f"{p.checkpointing:<14}{p.fixed_mb / 1024:>9.2f}{p.per_clip_mb / 1024:>9.3f}"
        row += f"{p.peak_mb(per_device) / 1024:>18.1f}"
        print(row + "".join(f"{table[p.checkpointing][f'{g:g} GB']:>15}" for g in sizes))
    print(f"('fits in': the largest per-device batch of clips; the config's {cfg.optim.batch_size} videos x "
          f"{cfg.aug.repeats} repeats over {args.devices} device(s) is {per_device:g} clips per device)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": cfg.model.name, "device": args.device, "plans": to_json(plans), "fits": table}, f,
                      indent=1)
    return 0


def cmd_info(args) -> int:
    from .analysis import count_macs
    from .models import create_model

    try:
        model = create_model(args.model, **_parse_overrides(args.set))
    except (TypeError, ValueError) as e:
        raise SystemExit(f"svformer info: {e}")
    shape = (args.batch, model.in_chans, model.num_frames, *model.img_size)
    report = count_macs(model, shape)
    print(f"model {args.model}")
    print(report.table())
    return 0


def cmd_energy(args) -> int:
    from .analysis.estimate import estimate_from_rates, format_table, load_rates
    from .analysis.plots import save_energy_plots
    from .models import create_model, load_official

    try:
        if args.checkpoint:
            estimate, shape, source = _measured_energy(args)
        else:
            if not (args.model and args.firing_rates):
                raise ValueError("give --model and --firing-rates, or --checkpoint (measured on data)")
            model = create_model(args.model, **_parse_overrides(args.set))
            if args.official:
                load_official(model, args.official)
            rates = load_rates(args.firing_rates)
            shape = (1, model.in_chans, model.num_frames, *model.img_size)
            estimate = estimate_from_rates(model, shape, rates, origin=args.firing_rates)
            source = f"{args.model}, firing rates from {args.firing_rates}"
    except (FileNotFoundError, TypeError, ValueError) as e:
        raise SystemExit(f"svformer energy: {e}")
    print(f"{source}, input {shape}")
    print(format_table(estimate, args.protocol))
    if args.json:
        estimate.to_json(args.json)
        print(f"wrote {args.json}")
    if args.plots:
        for path in save_energy_plots(estimate.rates, estimate.reports[args.protocol], args.plots).values():
            print(f"wrote {path}")
    return 0


def _measured_energy(args):
    """Energy measured with a training checkpoint on its test set (centre view of each video)."""
    from torch.utils.data import Subset

    from .analysis.estimate import estimate_from_data
    from .engine.data import build_datasets, make_loader
    from .engine.predict import load_trained

    model, cfg, _ = load_trained(args.checkpoint)
    if args.data:
        cfg.data.root = args.data
    cfg.data.test_clips, cfg.data.test_crops, cfg.data.synthetic = 1, 1, None
    test = build_datasets(cfg).test
    subset = Subset(test, list(range(min(len(test), args.clips))))
    loader = make_loader(subset, 8, False, 0, cfg.seed)
    estimate = estimate_from_data(model, (b["clip"] for b in loader if "clip" in b))
    shape = (1, model.in_chans, model.num_frames, *model.img_size)
    return estimate, shape, f"{args.checkpoint}, measured on {len(subset)} test clips of {cfg.data.root}"


def cmd_data_check(args) -> int:
    from .data.doctor import check_dataset

    level = "lists" if args.no_decode else "decode" if args.decode else "index"
    report = check_dataset(args.dataset, args.root, args.split, level, progress=sys.stderr.isatty())
    print(report.text())
    return 0 if report.ok else 1


def cmd_data_show(args) -> int:
    from .data.event_files import read_recording
    from .data.events import events_to_frames, fit_frames
    from .data.show import show_event_frames

    if args.checkpoint:  # the frames exactly as that model sees them
        from .engine.predict import event_clip, load_classifier

        cfg = load_classifier(args.checkpoint).cfg
        rec = read_recording(args.input, cfg.data.sensor_size)
        frames = event_clip(cfg, args.input)[0].transpose(0, 1).numpy()
    else:
        rec = read_recording(args.input, tuple(args.sensor_size) if args.sensor_size else None)
        if len(rec.events) < args.frames:
            raise ValueError(f"{args.input}: {len(rec.events)} events, fewer than {args.frames} frames")
        frames = events_to_frames(rec.events, args.frames, rec.sensor_size, args.split_by)
        if args.size:
            frames = fit_frames(frames, (args.size, args.size), args.geometry, args.downsample)
    title = (f"{args.input}: {rec.format}, {rec.sensor_size[1]}x{rec.sensor_size[0]} sensor, {len(rec.events)} events"
             f" -> {frames.shape[0]} frames of {frames.shape[3]}x{frames.shape[2]}")
    print(f"wrote {show_event_frames(frames, args.out, title)}")
    print(title)
    return 0


def cmd_data_synth(args) -> int:
    from .data.dvs_gesture import write_synthetic_gesture
    from .data.synthetic import SynthConfig, write_ucf_layout

    if args.kind == "video":
        write_ucf_layout(args.out, SynthConfig(size=args.size, num_frames=args.frames), seed=args.seed,
                         progress=sys.stderr.isatty())
    else:
        write_synthetic_gesture(args.out, seed=args.seed)
    print(f"wrote synthetic {args.kind} dataset to {args.out}")
    return 0


def _config(args):
    from .config import ConfigError, load_config

    try:
        return load_config(args.config, args.set)
    except (ConfigError, FileNotFoundError) as e:
        raise SystemExit(f"svformer {args.command}: {e}")


def cmd_train(args) -> int:
    import json
    import os

    from .engine.trainer import train

    cfg = _config(args)
    resume = args.resume
    if resume == "auto":  # the run folder's last checkpoint, if the run has one (preemptible jobs)
        last = os.path.join(cfg.output_dir, "last.pt")
        resume = last if os.path.isfile(last) else None
        if os.environ.get("RANK", "0") == "0":
            print(f"svformer train: {'resuming from ' + last if resume else 'no ' + last + ' yet, starting'}",
                  file=sys.stderr, flush=True)
    summary = train(cfg, resume=resume, test=not args.no_test)  # errors: one line, in `main`
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun only rank 0 reports
    print(json.dumps({k: v for k, v in summary.items() if k not in ("per_class", "firing_rates")}, indent=1))
    return 0


def cmd_test(args) -> int:
    import json
    import os

    from .config import load_config
    from .engine.checkpoint import load_checkpoint
    from .engine.trainer import Trainer

    # Bad checkpoints, configs and data end in one line, in `main`.
    state = load_checkpoint(args.checkpoint)
    cfg = load_config(None, args.set, base=state["config"])
    # Testing reads the data as it is: it never writes a dataset (synthetic or not) nor the run's config.
    cfg.data.synthetic = None
    cfg.output_dir = args.out or os.path.dirname(os.path.abspath(args.checkpoint))
    trainer = Trainer(cfg, for_training=False)
    trainer.load_weights(state, args.checkpoint)
    result = trainer.evaluate(trainer.data.test, "test")
    os.makedirs(cfg.output_dir, exist_ok=True)
    from .engine.logger import plot_confusion

    plot = plot_confusion(result.confusion, trainer.data.class_names,
                          os.path.join(cfg.output_dir, "plots", "confusion_test.png"))
    print(f"test: top-1 {100 * result.top1:.2f}%, top-5 {100 * result.top5:.2f}% {result.coverage()} "
          f"({cfg.data.test_clips} clips x {cfg.data.test_crops} crops, logits summed)")
    print("per-class accuracy:")
    for name, acc in result.per_class.items():
        print(f"  {name:<32}{100 * acc:6.1f}%")
    print("firing rates:")
    for name, r in result.firing_rates.items():
        print(f"  {name:<32}{100 * r:6.2f}%")
    print(f"confusion matrix: {plot}")
    with open(os.path.join(cfg.output_dir, "test_results.json"), "w") as f:
        json.dump({**result.summary(), "per_class": result.per_class, "firing_rates": result.firing_rates}, f,
                  indent=1)
    return 0


def cmd_predict(args) -> int:
    from .engine.predict import predict_file

    try:
        top = predict_file(args.checkpoint, args.input, args.topk)
    except (FileNotFoundError, ValueError, RuntimeError) as e:  # video and AEDAT errors name the file
        raise SystemExit(f"svformer predict: {e}")
    for name, p in top:
        print(f"{100 * p:6.2f}%  {name}")
    return 0


def cmd_export(args) -> int:
    from .export.formats import export_checkpoint

    print(f"svformer export: tracing the {args.kind} model from {args.checkpoint} (the paper model takes about "
          f"two minutes)", file=sys.stderr, flush=True)
    out = export_checkpoint(args.checkpoint, args.out, args.format, args.kind)
    print(f"wrote {out}")
    if args.verify:
        from .export.verify import verify_checkpoint

        print(f"svformer export: comparing ONNX Runtime with PyTorch on up to {args.verify} test clips, in float64 "
              f"and in float32 (each traces the model again)", file=sys.stderr, flush=True)
        report = verify_checkpoint(args.checkpoint, args.verify)
        print(f"ONNX Runtime vs PyTorch on {report['clips']} test clips: top-1 agreement "
              f"{100 * report['top1_agreement']:.2f} %, logits mean relative error {report['logits_rel_error']:.2e} "
              f"(clip by clip: median {report['clip_rel_error_median']:.1e}, "
              f"largest {report['clip_rel_error_max']:.1e}, "
              f"{100 * report['clips_within_1e-4']:.1f} % of clips within 1e-4), "
              f"{report['total_flips']} of {report['total_spikes']} spikes differ; from the float64 model: "
              f"PyTorch {report['pytorch_rel_error_vs_float64']:.1e}, ONNX Runtime "
              f"{report['onnx_rel_error_vs_float64']:.1e}")
        for layer in report["layers"]:
            if layer["flips"]:
                print(f"  {layer['layer']:<28} {layer['flips']:>9} flips  agreement {100 * layer['agreement']:.4f} %")
        exact = report["float64"]
        print(f"the same graph in float64 (convolutions as matrix products): top-1 agreement "
              f"{100 * exact['top1_agreement']:.2f} %, logits mean relative error {exact['logits_rel_error']:.2e} "
              f"(largest clip {exact['clip_rel_error_max']:.1e}), "
              f"{exact['total_flips']} of {exact['total_spikes']} spikes differ")
    return 0


def cmd_stream(args) -> int:
    from .engine.stream import run_stream

    run_stream(args.model, args.input, every=args.every, topk=args.topk, json_path=args.json,
               max_frames=args.max_frames, compile=args.compile)
    return 0


def cmd_demo(args) -> int:
    from .engine.demo import run_demo

    try:
        run_demo(args.set)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"svformer demo: {e}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="svformer",
        description="SVFormer, a directly trained spiking video transformer (arXiv 2406.15034).",
    )
    parser.add_argument("--allocator", choices=ALLOCATORS, default=DEFAULT_ALLOCATOR,
                        help="C allocator setting for this process: 'tuned' keeps freed large blocks in the heap "
                             f"(the faster, default {DEFAULT_ALLOCATOR}), 'lean' returns them to the system at once "
                             "(the lowest peak, e.g. with activation checkpointing); svformer.cpu.allocator")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model as a config says (YAML + key=value overrides)",
                       description="Train with a shipped config (ucf101, hmdb51, ntu60_xsub, ntu60_xview, "
                                   "dvs128_gesture, demo) or a YAML file; override any key with key=value.")
    p.add_argument("config", help="config name or YAML path")
    p.add_argument("set", nargs="*", metavar="KEY=VALUE", help="overrides, e.g. data.root=/data/ucf101 optim.lr=3e-3")
    p.add_argument("--resume", metavar="CKPT", help="continue exactly from a checkpoint (e.g. RUN/last.pt); 'auto': "
                                                     "from the run folder's last.pt if there is one, else start")
    p.add_argument("--no-test", action="store_true", help="skip the final multi-view test")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("test", help="multi-view test of a checkpoint: top-1/5, per-class, confusion, firing rates")
    p.add_argument("checkpoint", help="an svformer training checkpoint (best.pt, last.pt, ...)")
    p.add_argument("set", nargs="*", metavar="KEY=VALUE", help="overrides, e.g. data.root=... data.test_clips=1")
    p.add_argument("--out", help="folder for results and plots (default: the checkpoint's folder)")
    p.set_defaults(func=cmd_test)

    p = sub.add_parser("predict", help="top-k classes of one video (or AEDAT file) with a checkpoint or .onnx file")
    p.add_argument("checkpoint", help="a training checkpoint (.pt) or an exported model (.onnx)")
    p.add_argument("input", help="a video file, or for event models a recording (AEDAT 2/3.1/4, EVT 2/3, DAT, HDF5)")
    p.add_argument("--topk", type=_positive_int, default=5, help="classes to print (default 5)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="export a checkpoint for deployment (ONNX: whole clip or frame by frame)",
                       description="Write a checkpoint's model as an ONNX file that ONNX Runtime (or any ONNX "
                                   "runtime) runs without PyTorch; see docs/deploy.md.")
    p.add_argument("checkpoint", help="an svformer training checkpoint")
    p.add_argument("--out", required=True, help="output file (model.onnx)")
    p.add_argument("--format", default="onnx", choices=("onnx", "nir"), help="onnx (default); nir explains why not")
    p.add_argument("--kind", default="clip", choices=("clip", "stream"),
                   help="clip: (B, C, T, H, W) -> logits (default); stream: one frame per call, states as inputs "
                        "and outputs (for svformer stream and live use)")
    p.add_argument("--verify", type=_positive_int, metavar="CLIPS",
                   help="then compare ONNX Runtime with PyTorch on this many test clips of the checkpoint's dataset: "
                        "top-1 agreement, logits error, spikes that differ per layer; in float32 (what runs) "
                        "and in float64 (the graph itself, rounding out of the way)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("stream", help="classify a video or camera frame by frame, with per-frame latency",
                       description="Feeds a video file or live source (camera device, URL, pipe) to the model one "
                                   "frame at a time in windows of one clip, printing the running top class and "
                                   "latency. Ctrl-C ends a live source with the report of the frames so far.")
    p.add_argument("model", help="a training checkpoint (.pt) or a step model exported with --kind stream (.onnx)")
    p.add_argument("input", help="a video file FFmpeg reads, a V4L2 camera device (/dev/video0), a stream URL "
                                 "(rtsp://, http://, udp://, ...), a named pipe, or - for standard input")
    p.add_argument("--every", type=_positive_int, default=1, help="print every k-th model step (default 1)")
    p.add_argument("--topk", type=_positive_int, default=5, help="classes of each clip's final result (default 5)")
    p.add_argument("--json", metavar="OUT.json", help="write every frame's and clip's result")
    p.add_argument("--max-frames", type=_positive_int, help="stop after this many source frames (cameras)")
    p.add_argument("--compile", action="store_true",
                   help="checkpoints: run each frame through the step graph compiled by torch.compile (the fastest "
                        "CPU runtime; needs a C++ compiler; compiling takes tens of seconds before the first frame)")
    p.set_defaults(func=cmd_stream)

    p = sub.add_parser("demo", help="train svformer_tiny on synthetic motion videos on the CPU and report",
                       description="Generates the synthetic motion dataset (cached), trains svformer_tiny on "
                                   "the CPU, evaluates it (with a frame-shuffled control), reports firing rates "
                                   "and energy, and prints the run folder.")
    p.add_argument("set", nargs="*", metavar="KEY=VALUE", help="overrides of the demo config")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("list-models", help="list the registered model names")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'svformer_*'")
    p.set_defaults(func=cmd_list_models)

    p = sub.add_parser("info", help="parameters and dense MACs per clip of a model")
    p.add_argument("model", help="a registered model name (see list-models)")
    p.add_argument("--batch", type=int, default=1, help="clips per forward pass (default 1)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="constructor overrides, e.g. num_classes=51 num_frames=8")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("memory", help="predict the training peak per device and the largest batch that fits",
                       description="Measures short training runs of the config's model at a small size and three "
                                   "batch sizes on this CPU and predicts the peak per device at the config's "
                                   "size for each activation-checkpointing setting (no GPU needed).")
    p.add_argument("config", help="config name or YAML path")
    p.add_argument("set", nargs="*", metavar="KEY=VALUE", help="overrides, e.g. data.crop_size=160 amp=true")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                   help="predict for a GPU (default) or for training on this CPU")
    p.add_argument("--device-memory", type=_gigabytes, metavar="SIZE",
                   help="memory per device, e.g. 24GB (default: a table for 16, 24, 32, 40 and 80 GB)")
    p.add_argument("--devices", type=_positive_int, default=1, help="devices the config's batch is split over")
    p.add_argument("--checkpointing", choices=("all", "none", "stage", "block"), default="all")
    p.add_argument("--json", metavar="OUT.json", help="write the plans (probes, fit, table)")
    p.set_defaults(func=cmd_memory)

    p = sub.add_parser("energy", help="energy per clip under several protocols, measured or from firing rates",
                       description="Energy per clip (paper, full, memory-aware and dense-ANN protocols), measured "
                                   "with a training checkpoint on its test data, or from a model's shapes and a "
                                   "firing-rates file; see docs/energy.md.")
    p.add_argument("--checkpoint", help="svformer training checkpoint: measure spikes on its test set")
    p.add_argument("--data", help="with --checkpoint: dataset root (default: the one in the checkpoint's config)")
    p.add_argument("--clips", type=int, default=64, help="with --checkpoint: test clips to measure (default 64)")
    p.add_argument("--model", help="a registered model name (with --firing-rates)")
    p.add_argument("--firing-rates", metavar="RATES.json",
                   help="JSON {layer: rate in [0,1]} with svformer or authors' layer names, or "
                        "'authors-ucf101' for the authors' logged UCF101 rates")
    p.add_argument("--official", help="with --model: the authors' checkpoint, checked to fit the model")
    p.add_argument("--protocol", default="paper", choices=["paper", "full", "memory", "dense_ann"],
                   help="protocol of the per-layer table and energy plot (default paper)")
    p.add_argument("--json", metavar="OUT.json", help="write every protocol's totals and per-layer rows")
    p.add_argument("--plots", metavar="DIR", help="write firing-rate and energy plots (PNG) here")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="model constructor overrides")
    p.set_defaults(func=cmd_energy)

    data = sub.add_parser("data", help="check a dataset, look at event recordings, or write a synthetic dataset")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    from .data.build import DATASETS

    p = data_sub.add_parser("check", help="validate a dataset folder against its expected layout")
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--root", required=True, help="the folder the archive was unpacked into")
    p.add_argument("--split", type=int, default=1, help="official split (UCF101/HMDB51: 1-3)")
    depth = p.add_mutually_exclusive_group()
    depth.add_argument("--no-decode", action="store_true", help="check the lists and that the files exist, open none")
    depth.add_argument("--decode", action="store_true",
                       help="also decode every frame of every video (default: index every video's frames "
                            "from its packets, decoding nothing)")
    p.set_defaults(func=cmd_data_check)

    p = data_sub.add_parser("show", help="render an event recording's frames (T panels, ON/OFF colours) as a PNG",
                            description="Reads any event file svformer reads and draws the frames a model sees: "
                                        "with --checkpoint exactly as that model's data settings make them.")
    p.add_argument("input", help="an event recording (AEDAT 2/3.1/4, EVT 2/3 .raw, .dat, HDF5)")
    p.add_argument("--out", required=True, help="output PNG")
    p.add_argument("--checkpoint", help="use this checkpoint's (or .onnx file's) frames, size and geometry rule")
    p.add_argument("--frames", type=_positive_int, default=16, help="T, frames to cut the recording into (default 16)")
    p.add_argument("--split-by", choices=("number", "time"), default="number",
                   help="equal event counts (default) or equal durations per frame")
    p.add_argument("--size", type=_positive_int, help="bring frames to SIZE x SIZE (default: the sensor's geometry)")
    p.add_argument("--geometry", choices=("resize", "crop", "downsample"), default="resize",
                   help="with --size: area resize of counts (default), centre crop, or integer downsample then crop")
    p.add_argument("--downsample", type=_positive_int, default=1, help="factor for --geometry downsample")
    p.add_argument("--sensor-size", type=_positive_int, nargs=2, metavar=("H", "W"),
                   help="sensor size for files that do not state it (HDF5 without attributes)")
    p.set_defaults(func=cmd_data_show)

    p = data_sub.add_parser("synth", help="write the synthetic motion dataset in a real layout")
    p.add_argument("--kind", choices=["video", "events"], default="video",
                   help="video: UCF101 layout (AVI); events: DvsGesture layout (AEDAT 3.1)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--size", type=int, default=64, help="frame size of the videos (default 64)")
    p.add_argument("--frames", type=int, default=32, help="frames per video (default 32)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_data_synth)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    set_allocator(args.allocator)
    name = " ".join(filter(None, [args.command, getattr(args, "data_command", None)]))
    try:
        return args.func(args)
    except KeyboardInterrupt:
        raise SystemExit(f"svformer {name}: interrupted") from None
    except (ValueError, OSError, RuntimeError) as e:
        # What users cause (bad files, values, folders, a diverged run, a full disk) ends in one line that
        # names the thing; these errors all say what went wrong and where. Other exceptions are bugs.
        from .data.video import VideoError
        from .engine.runlock import RunFolderInUse
        from .engine.trainer import Stopped

        if isinstance(e, Stopped):  # SIGTERM: the checkpoint is written; exit 128 + 15, as killed by it
            print(f"svformer {name}: {e}", file=sys.stderr, flush=True)
            return 143
        if isinstance(e, RuntimeError) and not isinstance(e, (VideoError, RunFolderInUse)):
            raise
        raise SystemExit(f"svformer {name}: {e}") from None


if __name__ == "__main__":
    sys.exit(main())
