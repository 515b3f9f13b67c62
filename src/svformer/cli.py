"""The `svformer` command: a thin shell over importable functions.

    svformer list-models
    svformer info svformer_paper [--batch 1] [--set num_classes=51 ...]
    svformer energy --model svformer_paper --firing-rates authors-ucf101 --json out.json --plots plots/
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

import yaml


def _parse_overrides(items: List[str]) -> dict:
    """``key=value`` pairs; values are parsed as YAML scalars/lists (``embed_dim=[16,32,48,64]``)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"svformer: --set expects key=value, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


def cmd_list_models(args) -> int:
    from .models import list_models

    for name in list_models(args.pattern):
        print(name)
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
        model = create_model(args.model, **_parse_overrides(args.set))
        if args.checkpoint:
            load_official(model, args.checkpoint)
        rates = load_rates(args.firing_rates)
        shape = (1, model.in_chans, model.num_frames, *model.img_size)
        estimate = estimate_from_rates(model, shape, rates, origin=args.firing_rates)
    except (FileNotFoundError, TypeError, ValueError) as e:
        raise SystemExit(f"svformer energy: {e}")
    print(f"model {args.model}, input {shape}, firing rates from {args.firing_rates}")
    print(format_table(estimate, args.protocol))
    if args.json:
        estimate.to_json(args.json)
        print(f"wrote {args.json}")
    if args.plots:
        for what, path in save_energy_plots(estimate.rates, estimate.reports[args.protocol], args.plots).items():
            print(f"wrote {path}")
    return 0


def cmd_data_check(args) -> int:
    from .data.doctor import check_dataset

    report = check_dataset(args.dataset, args.root, args.split, decode=not args.no_decode,
                           progress=sys.stderr.isatty())
    print(report.text())
    return 0 if report.ok else 1


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="svformer",
        description="SVFormer, a directly trained spiking video transformer (arXiv 2406.15034).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list-models", help="list the registered model names")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'svformer_*'")
    p.set_defaults(func=cmd_list_models)

    p = sub.add_parser("info", help="parameters and dense MACs per clip of a model")
    p.add_argument("model", help="a registered model name (see list-models)")
    p.add_argument("--batch", type=int, default=1, help="clips per forward pass (default 1)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="constructor overrides, e.g. num_classes=51 num_frames=8")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("energy", help="energy per clip under several protocols, from a firing-rates file",
                       description="Energy per clip (paper, full, memory-aware and dense-ANN protocols) from "
                                   "the model's shapes and per-layer firing rates; see docs/energy.md.")
    p.add_argument("--model", required=True, help="a registered model name")
    p.add_argument("--firing-rates", required=True, metavar="RATES.json",
                   help="JSON {layer: rate in [0,1]} with svformer or authors' layer names, or "
                        "'authors-ucf101' for the authors' logged UCF101 rates")
    p.add_argument("--checkpoint", help="authors' checkpoint to load (checks that it fits the model)")
    p.add_argument("--protocol", default="paper", choices=["paper", "full", "memory", "dense_ann"],
                   help="protocol of the per-layer table and energy plot (default paper)")
    p.add_argument("--json", metavar="OUT.json", help="write every protocol's totals and per-layer rows")
    p.add_argument("--plots", metavar="DIR", help="write firing-rate and energy plots (PNG) here")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="model constructor overrides")
    p.set_defaults(func=cmd_energy)

    data = sub.add_parser("data", help="check an unpacked dataset or write a synthetic one")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    from .data.build import DATASETS

    p = data_sub.add_parser("check", help="validate a dataset folder against its expected layout")
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--root", required=True, help="the folder the archive was unpacked into")
    p.add_argument("--split", type=int, default=1, help="official split (UCF101/HMDB51: 1-3)")
    p.add_argument("--no-decode", action="store_true", help="check lists and files only, decode nothing")
    p.set_defaults(func=cmd_data_check)

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
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
