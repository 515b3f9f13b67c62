"""Benchmark: the data pipeline, each figure against a naive reference in the same run.

1. UCF101's shape: 320x240, 25 fps, 7 s MPEG-4 AVIs with B-frames (as UCF101 ships). Training clips per
   second with the paper's recipe (16 frames at sampling rate 4, RandAugment rand-m5-n2-mstd0.25,
   RandomResizedCrop 224, flip, random erasing) in one process and per single-threaded DataLoader
   worker; test views per second (5 clips x 3 crops); where a clip's time goes (frame index, decoding,
   augmentation); `svformer data check` seconds per file at its default (index) and --decode depths.
2. Synthetic motion videos: training clips per second with 0, 1, 2 workers against decoding every frame.
3. AEDAT 3.1 reading in events per second against a per-event Python loop.
4. Every event format's reader (`svformer.data.event_files.read_recording`) in events per second, on the
   same 2 M events from a 346x260 sensor, written by faery (EVT 2.0, EVT 3.0, DAT, AEDAT 4), h5py (HDF5)
   and svformer (AEDAT 3.1, and AEDAT 2.0 in jAER's DAVIS layout).

    python benchmarks/data.py [--ucf-videos 8] [--videos 24] [--size 160] [--frames 96] [--json out.json]
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
from svformer.data.doctor import check_video
from svformer.data.lists import VideoSample
from svformer.data.sampling import RandomClipSampler
from svformer.data.events import EVENT_DTYPE, HEADER_END, read_aedat31, write_aedat31
from svformer.data.lists import ucf101
from svformer.data.synthetic import SynthConfig, write_ucf_layout
from svformer.data.transforms import TrainTransform, to_float_clip
from svformer.data.video import VideoReader, write_video

UCF_CLASSES = ["ApplyEyeMakeup", "Archery", "Basketball", "Biking"]


def write_ucf_shaped(folder, videos, frames=175, seed=0):
    """MPEG-4 AVIs with B-frames at UCF101's size and rate: a smooth textured background panning behind
    two moving blobs, so the encoder predicts motion as it does on real footage."""
    rng = np.random.default_rng(seed)
    samples = []
    for v in range(videos):
        coarse = rng.integers(40, 220, (3, 40 + frames // 4, 56 + frames // 4)).astype(np.float32)
        tex = torch.nn.functional.interpolate(torch.from_numpy(coarse)[None], scale_factor=8, mode="bicubic")[0]
        tex = tex.clamp(0, 255).permute(1, 2, 0).numpy().astype(np.uint8)
        clip = np.empty((frames, 240, 320, 3), np.uint8)
        dy, dx = rng.uniform(0.3, 1.5, 2)
        for t in range(frames):
            y, x = int(t * dy) % (tex.shape[0] - 240), int(t * dx) % (tex.shape[1] - 320)
            clip[t] = tex[y:y + 240, x:x + 320]
            for k in range(2):
                cy = int(120 + 80 * np.sin(0.05 * t * (k + 1) + v))
                cx = int(160 + 120 * np.cos(0.04 * t * (k + 2) + v))
                clip[t, max(cy - 20, 0):cy + 20, max(cx - 20, 0):cx + 20] = (230, 60 + 80 * k, 40)
        path = os.path.join(folder, f"v_{UCF_CLASSES[v % 4]}_g{v // 4 + 8:02d}_c01.avi")
        write_video(path, clip, fps=25, quality=5, b_frames=2)
        samples.append(VideoSample(path, v % 4))
    return samples


def _median_ms(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def ucf_shaped(tmp, videos, result):
    folder = os.path.join(tmp, "ucf_shaped")
    os.makedirs(folder)
    samples = write_ucf_shaped(folder, videos)
    size_mb = np.mean([os.path.getsize(s.path) for s in samples]) / 1e6
    common = dict(num_frames=16, sampling_rate=4, crop_size=224)
    train = VideoClipDataset(samples * 8, UCF_CLASSES, train=True, seed=0, **common)
    test = VideoClipDataset(samples, UCF_CLASSES, train=False, num_clips=5, num_crops=3, **common)
    print(f"UCF101's shape: {videos} MPEG-4 AVIs with B-frames, 320x240, 25 fps, 175 frames, {size_mb:.2f} MB each; "
          f"16 frames x rate 4 -> 224, the paper's augmentation")

    # Where one training clip's time goes (medians over the videos, one thread).
    rng = np.random.default_rng(0)
    sampler = RandomClipSampler(16, 4)
    path = samples[0].path
    with VideoReader(path) as r:
        index = r.index
    index_ms = _median_ms(lambda: VideoReader(path).close(), 20)
    open_ms = _median_ms(lambda: VideoReader(path, index=index).close(), 20)

    def decode():
        with VideoReader(path, index=index) as r:
            return r.read(sampler(len(r), rng)[0].indices)
    decode_ms = _median_ms(decode, 10)
    clip = to_float_clip(decode())
    augment_ms = _median_ms(lambda: train.transform(clip, rng), 30)
    naive_ms = _median_ms(lambda: VideoReader(path).read_all(), 5)

    one = clips_per_second(train, 0)
    per_worker = clips_per_second(train, 1)
    two = clips_per_second(train, 2)
    views = clips_per_second(test, 0)
    check_index = _median_ms(lambda: [check_video(s.path, "index") for s in samples], 3) / videos
    check_decode = _median_ms(lambda: [check_video(s.path, "decode") for s in samples], 2) / videos
    result.update(ucf_train_clips_per_second=one, ucf_train_clips_per_second_per_worker=per_worker,
                  ucf_train_clips_per_second_2_workers=two, ucf_test_views_per_second=views,
                  ucf_frame_index_ms=index_ms - open_ms, ucf_clip_decode_ms=decode_ms, ucf_augment_ms=augment_ms,
                  ucf_decode_all_ms=naive_ms, ucf_check_index_ms_per_file=check_index,
                  ucf_check_decode_ms_per_file=check_decode)
    print(f"  one clip: frame index {index_ms - open_ms:.1f} ms (built on open), decoding {decode_ms:.1f} ms "
          f"(decoding the whole video: {naive_ms:.0f} ms), augmentation {augment_ms:.1f} ms")
    print(f"  training clips/s: {one:.1f} in one single-threaded process, {per_worker:.1f} with one worker, "
          f"{two:.1f} with two")
    print(f"  test views/s (5 clips x 3 crops, one process): {views:.1f}")
    print(f"  data check per file: {check_index:.1f} ms (index), {check_decode:.0f} ms (--decode); "
          f"UCF101's 13,320 files: {13320 * check_index / 60e3:.1f} min / {13320 * check_decode / 60e3:.0f} min")


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
    parser.add_argument("--ucf-videos", type=int, default=8)
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--frames", type=int, default=96)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.ucf_videos:
            ucf_shaped(tmp, args.ucf_videos, result)
            print()
        per_class = max(1, args.videos // 10)
        cfg = SynthConfig(size=args.size, num_frames=args.frames, train_groups=per_class, test_groups=1,
                          clips_per_group=1)
        synth = os.path.join(tmp, "synthetic")  # a folder of its own: the UCF-shaped files are not its
        write_ucf_layout(synth, cfg)
        samples, names = ucf101(synth, 1, "train")
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
        result["event_readers"] = event_readers(tmp, ev)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


def event_readers(tmp: str, events: np.ndarray, repeats: int = 3) -> dict:
    """Events per second of each format's reader on the same events (x, y scaled to a 346x260 sensor)."""
    import faery
    import h5py

    from svformer.data.event_files import read_recording

    h, w = 260, 346
    ev = events.copy()
    ev["x"], ev["y"] = ev["x"].astype(np.int64) * w // 128, ev["y"].astype(np.int64) * h // 128
    arr = np.zeros(len(ev), faery.EVENTS_DTYPE)
    arr["t"], arr["x"], arr["y"], arr["on"] = ev["t"], ev["x"], ev["y"], ev["p"] > 0
    files = {}
    for name, kwargs in (("evt3.raw", {"version": "evt3"}), ("evt2.raw", {"version": "evt2"}), ("cd.dat", {}),
                         ("dv.aedat4", {})):
        files[name] = os.path.join(tmp, name)
        faery.events_stream_from_array(arr, (w, h)).to_file(files[name], **kwargs)
    files["cd.h5"] = os.path.join(tmp, "cd.h5")
    with h5py.File(files["cd.h5"], "w") as f:
        for k in "txyp":
            f.create_dataset(f"events/{k}", data=ev[k])
        f["events"].attrs["height"], f["events"].attrs["width"] = h, w
    files["davis.aedat"] = os.path.join(tmp, "davis.aedat")
    with open(files["davis.aedat"], "wb") as f:  # jAER: big-endian address (y 30-22, x 21-12, p 11), timestamp
        f.write(b"#!AER-DAT2.0\r\n# AEChip: eu.seebetter.ini.chips.davis.Davis346B\r\n")
        raw = np.empty(len(ev), np.dtype([("a", ">u4"), ("t", ">i4")]))
        raw["a"] = ((h - 1 - ev["y"].astype(np.int64)) << 22) | (ev["x"].astype(np.int64) << 12) | (ev["p"].astype(np.int64) << 11)
        raw["t"] = ev["t"]
        f.write(raw.tobytes())
    files["dvs128.aedat"] = os.path.join(tmp, "bench.aedat")  # AEDAT 3.1 from section 3
    out = {}
    print(f"\n{'event reader':<34}{'M events/s':>12}")
    for name, path in files.items():
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            rec = read_recording(path)
            times.append(time.perf_counter() - start)
        assert len(rec.events) == len(ev), name
        rate = len(ev) / float(np.median(times))
        out[f"{rec.format} ({name})"] = rate
        print(f"{rec.format + ' (' + name + ')':<34}{rate / 1e6:>12.1f}")
    return out


if __name__ == "__main__":
    main()
