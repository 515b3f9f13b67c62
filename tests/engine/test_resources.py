"""Compute threads and loader workers per process: fair shares under torchrun, OMP_NUM_THREADS respected,
oversubscription warned with the numbers."""
import torch

import svformer.engine.resources as resources
from svformer.engine.resources import plan_resources


def _machine(monkeypatch, cores, ranks=None, omp=None):
    monkeypatch.setattr(resources, "usable_cores", lambda: cores)
    monkeypatch.setattr(torch, "get_num_threads", lambda: cores)
    for name, value in (("LOCAL_WORLD_SIZE", ranks), ("WORLD_SIZE", None), ("OMP_NUM_THREADS", omp)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, str(value))


def _plan(*args):
    r = plan_resources(*args)
    return r.threads, r.workers, r.warnings


def test_unset_threads_and_workers_share_the_cores(monkeypatch):
    _machine(monkeypatch, 8)
    assert _plan(None, None) == (8, 1, [])
    _machine(monkeypatch, 8, ranks=4)
    assert _plan(None, None) == (2, 1, [])
    _machine(monkeypatch, 2, ranks=2, omp=1)  # torchrun sets OMP_NUM_THREADS=1
    assert _plan(None, None) == (1, 1, [])
    # GPUs: the CPU feeds them; each rank's loader gets its share of the cores less the training process's
    _machine(monkeypatch, 32, ranks=4, omp=1)
    assert _plan(None, None, "cuda") == (1, 7, [])
    _machine(monkeypatch, 96, ranks=4, omp=1)
    assert _plan(None, None, "cuda") == (1, 8, [])
    _machine(monkeypatch, 8, ranks=8, omp=1)
    assert _plan(None, None, "cuda") == (1, 1, [])


def test_a_setting_that_oversubscribes_is_warned_with_the_numbers(monkeypatch):
    _machine(monkeypatch, 2, ranks=2, omp=1)
    threads, workers, warnings = _plan(2, 1)
    assert (threads, workers) == (2, 1)
    assert warnings == ["2 process(es) x 2 compute threads = 4 on 2 cores: oversubscribed, expect a slowdown; leave "
                        "threads unset (it would be 1)"]
    assert _plan(None, 1) == (1, 1, [])  # one worker per rank: loader workers mostly wait
    _, _, warnings = _plan(None, 8)
    assert warnings == ["2 process(es) x 8 loader workers = 16 on 2 cores: oversubscribed, expect a slowdown; leave "
                        "data.num_workers unset (it would be 1)"]
    _machine(monkeypatch, 2, ranks=2, omp=2)  # OMP_NUM_THREADS counts as a setting
    assert len(_plan(None, None)[2]) == 1
    _machine(monkeypatch, 2)
    assert _plan(2, 1) == (2, 1, [])
