"""How many compute threads a training process uses, so that ranks do not fight over cores.

Unless ``threads`` is set in the config: ``OMP_NUM_THREADS`` when torchrun or the user set it, else
PyTorch's default thread count (at most the cores this process may run on, its CPU affinity) divided by
the processes on this node (``LOCAL_WORLD_SIZE``). A setting that puts more compute threads on the node than it has cores gets a
one-line warning with the numbers. Loader workers are not counted: they wait for the training step most
of the time (measured: 2 ranks x (1 thread + 1 worker) on 2 cores train the demo faster than one
process with 2 threads).
"""
from __future__ import annotations

import os
from typing import Optional, Tuple


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def local_processes() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))


def plan_threads(threads: Optional[int], workers: int) -> Tuple[int, Optional[str]]:
    """(compute threads for this process, a warning or None)."""
    import torch

    cores, ranks = usable_cores(), local_processes()
    fair = max(1, min(cores, torch.get_num_threads()) // ranks)
    if threads is None:
        omp = os.environ.get("OMP_NUM_THREADS", "")
        threads = int(omp) if omp.isdigit() and int(omp) > 0 else fair
    if ranks * threads > cores:
        return threads, (f"{ranks} process(es) x {threads} compute threads = {ranks * threads} on {cores} cores "
                         f"(plus {workers} loader worker(s) each): oversubscribed, expect a slowdown; leave threads "
                         f"unset (it would be {fair})")
    return threads, None
