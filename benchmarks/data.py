"""Benchmark: training clips per second through decode + augment (0, 1, 2 DataLoader workers), and AEDAT
3.1 reading in events per second, each against a naive reference in the same run.

References: decoding every frame of a video and indexing the clip (what a loader without frame-accurate
seeking does) for clips; a per-event Python loop over the packets for AEDAT.

    python benchmarks/data.py [--videos 24] [--size 160] [--frames 96] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import struct
import tempfile
import time

import numpy as np
import torch
from torch.utils.data import DataLoader

from svformer.data import VideoClipDataset, collate_clips
from svformer.data.events import EVENT_DTYPE, HEADER_END, read_aedat31, write_aedat31
from svformer.data.lists import ucf101
from svformer.data.synthetic import SynthConfig, write_ucf_layout
from svformer.data.transforms import TrainTransform, to_float_clip
from svformer.data.video import VideoReader


def clips_per_second(dataset, workers, batches=None):
    loader = DataLoader(dataset, batch_size=4, shuffle=False, num_workers=workers, collate_fn=collate_clips,
                        persistent_workers=False)
    start, n = time.perf_counter(), 0
    for batch in loader:
        n += batch["clip"].shape[0]
    return n / (time.perf_counter() - start)


def naive_clips_per_second(samples, num_frames, rate, crop):
    transform, rng = TrainTransform(crop), np.random.default_rng(0)
    start = time.perf_counter()
    for s in samples:
        with VideoReader(s.path) as r:
            frames = r.read_all()
        first = rng.integers(0, max(len(frames) - num_frames * rate, 0) + 1)
        idx = np.clip(np.linspace(first, first + num_frames * rate - 1, num_frames).astype(int), 0, len(frames) - 1)
        transform(to_float_clip(frames[idx]), rng)
    return len(samples) / (time.perf_counter() - start)


def naive_aedat(path):
    data = open(path, "rb").read()
    pos = data.find(HEADER_END) + len(HEADER_END)
    out = []
    while pos < len(data):
        etype, _, size, _, overflow, capacity, _, _ = struct.unpack_from("<hhiiiiii", data, pos)
        pos += 28
        for i in range(capacity):
            word, ts = struct.unpack_from("<Ii", data, pos + i * size)
            if etype == 1 and word & 1:
                out.append(((overflow << 31) | ts, (word >> 17) & 0x7FFF, (word >> 2) & 0x7FFF, (word >> 1) & 1))
        pos += size * capacity
    return np.array(out, EVENT_DTYPE)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--frames", type=int, default=96)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        per_class = max(1, args.videos // 10)
        cfg = SynthConfig(size=args.size, num_frames=args.frames, train_groups=per_class, test_groups=1,
                          clips_per_group=1)
        write_ucf_layout(tmp, cfg)
        samples, names = ucf101(tmp, 1, "train")
        crop = args.size * 7 // 8
        dataset = VideoClipDataset(samples, names, train=True, num_frames=16, sampling_rate=4, crop_size=crop)
        naive = naive_clips_per_second(samples, 16, 4, crop)
        print(f"training clips ({len(samples)} videos of {args.frames} frames at {args.size}px, 16x4 -> {crop}px)")
        print(f"{'loader':<34}{'clips/s':>10}{'vs naive':>10}")
        print(f"{'naive (decode all, 0 workers)':<34}{naive:>10.1f}{1.0:>9.2f}x")
        for workers in (0, 1, 2):
            rate = clips_per_second(dataset, workers)
            result[f"clips_per_second_{workers}_workers"] = rate
            print(f"{f'svformer, {workers} workers':<34}{rate:>10.1f}{rate / naive:>9.2f}x")
        result["naive_clips_per_second"] = naive

        rng = np.random.default_rng(0)
        ev = np.empty(args.events, EVENT_DTYPE)
        ev["t"] = np.sort(rng.integers(0, 60_000_000, args.events))
        ev["x"], ev["y"], ev["p"] = rng.integers(0, 128, (3, args.events)) % [[128], [128], [2]]
        path = os.path.join(tmp, "bench.aedat")
        write_aedat31(path, ev)
        start = time.perf_counter()
        assert len(read_aedat31(path)) == args.events
        fast = args.events / (time.perf_counter() - start)
        sub = os.path.join(tmp, "small.aedat")
        write_aedat31(sub, ev[:200_000])
        start = time.perf_counter()
        naive_aedat(sub)
        slow = 200_000 / (time.perf_counter() - start)
        result.update(aedat_events_per_second=fast, naive_aedat_events_per_second=slow)
        print(f"\nAEDAT 3.1 reading: {fast / 1e6:.1f} M events/s (numpy) vs {slow / 1e6:.2f} M events/s "
              f"(per-event Python loop): {fast / slow:.0f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
