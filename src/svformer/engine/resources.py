"""How many compute threads and loader workers a training process uses, so ranks do not fight over cores.

``cores`` are the cores this process may run on (its CPU affinity) and ``ranks`` the processes torchrun
starts on this node (``LOCAL_WORLD_SIZE``); each rank's share is ``cores // ranks`` (at least 1).

- Compute threads, unless ``threads`` is set: ``OMP_NUM_THREADS`` when torchrun or the user set it, else
  the rank's share of PyTorch's default thread count (at most the cores).
- Loader workers, unless ``data.num_workers`` is set: on a CPU, 1 per rank (decoding waits for the
  training step most of the time: 2 ranks x (1 thread + 1 worker) on 2 cores train the demo faster than
  one process with 2 threads); on a GPU, the rank's share of the cores less one for the training
  process, between 1 and 8.

A setting (``threads``, ``OMP_NUM_THREADS`` or ``data.num_workers``) that puts more compute threads, or
more loader workers, on the node than it has cores gets a one-line warning with the numbers.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional

MAX_GPU_WORKERS = 8


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def local_processes() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))


@dataclass
class Resources:
    threads: int
    workers: int
    warnings: List[str]


def plan_resources(threads: Optional[int], workers: Optional[int], device_type: str = "cpu") -> Resources:
    """Compute threads and loader workers for this process (None: derive it), and warnings."""
    import torch

    cores, ranks = usable_cores(), local_processes()
    share = max(1, cores // ranks)
    fair_threads = max(1, min(cores, torch.get_num_threads()) // ranks)
    fair_workers = 1 if device_type == "cpu" else max(1, min(MAX_GPU_WORKERS, share - 1))
    warnings = []
    if threads is None:
        omp = os.environ.get("OMP_NUM_THREADS", "")
        threads = int(omp) if omp.isdigit() and int(omp) > 0 else fair_threads
    if ranks * threads > cores:
        warnings.append(f"{ranks} process(es) x {threads} compute threads = {ranks * threads} on {cores} cores: "
                        f"oversubscribed, expect a slowdown; leave threads unset (it would be {fair_threads})")
    if workers is None:
        workers = fair_workers
    elif ranks * workers > cores:
        warnings.append(f"{ranks} process(es) x {workers} loader workers = {ranks * workers} on {cores} cores: "
                        f"oversubscribed, expect a slowdown; leave data.num_workers unset (it would be "
                        f"{fair_workers})")
    return Resources(threads, workers, warnings)
