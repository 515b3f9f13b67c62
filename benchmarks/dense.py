"""Seconds a callable spends in dense arithmetic (convolutions and matrix products), from the profiler.

A model cannot run faster than its own convolutions and matrix products as this machine's libraries
(oneDNN, BLAS) compute them, so reference time / svformer's dense time bounds the speedup that any
amount of work on the neurons, BatchNorm and layout could reach. The run harness reports that bound
next to each measured ratio.

Counted: the outermost profiler events among `DENSE_OPS` (with svformer's sparse products over spikes,
the same layers' work done another way), forward and backward (a dense op called
inside another one, e.g. `addmm` inside a convolution's fallback, is not counted twice). Not counted:
the copies `matmul` makes of non-contiguous operands, bias-gradient reductions, the optimizer.
The profiler adds a few microseconds per op, which is negligible against these ops (milliseconds) but
not against the neurons' many small ops, so only the dense time of a profiled run is used.
"""
from __future__ import annotations

from typing import Callable, Iterable

DENSE_OPS = frozenset({
    "aten::convolution", "aten::convolution_backward",
    "aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm", "aten::addbmm",
    "svformer::spike_conv",  # a convolution or linear layer over spikes computed sparsely (svformer.cpu.sparse)
})


def dense_seconds(events: Iterable) -> tuple[float, dict]:
    """Total seconds in outermost dense ops of profiler ``events``, and the seconds per op name."""
    by_op: dict = {}
    for event in events:
        if event.name not in DENSE_OPS:
            continue
        parent = event.cpu_parent
        while parent is not None and parent.name not in DENSE_OPS:
            parent = parent.cpu_parent
        if parent is None:
            by_op[event.name] = by_op.get(event.name, 0.0) + event.cpu_time_total / 1e6
    return sum(by_op.values()), by_op


def profile_dense(fn: Callable[[], object], runs: int = 2) -> dict:
    """Call ``fn`` ``runs`` times under the CPU profiler; the run with the least dense time.

    Returns ``{"dense_seconds": s, "dense_by_op": {op: s}}`` (the least, hence most favourable to the
    bound, of the runs: the spread is this machine's noise, not the model's).
    """
    from torch.profiler import ProfilerActivity, profile

    best = None
    for _ in range(runs):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
        seconds, by_op = dense_seconds(prof.events())
        if best is None or seconds < best[0]:
            best = (seconds, by_op)
    return {"dense_seconds": best[0], "dense_by_op": best[1]}
