"""Compute threads per process: fair shares under torchrun, OMP_NUM_THREADS respected, oversubscription warned."""
import torch

import svformer.engine.resources as resources
from svformer.engine.resources import plan_threads


def _machine(monkeypatch, cores, ranks=None, omp=None):
    monkeypatch.setattr(resources, "usable_cores", lambda: cores)
    monkeypatch.setattr(torch, "get_num_threads", lambda: cores)
    for name, value in (("LOCAL_WORLD_SIZE", ranks), ("WORLD_SIZE", None), ("OMP_NUM_THREADS", omp)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, str(value))


def test_unset_threads_share_the_cores(monkeypatch):
    _machine(monkeypatch, 8)
    assert plan_threads(None, 2) == (8, None)
    _machine(monkeypatch, 8, ranks=4)
    assert plan_threads(None, 0) == (2, None)
    _machine(monkeypatch, 2, ranks=2, omp=1)  # torchrun sets OMP_NUM_THREADS=1
    assert plan_threads(None, 0) == (1, None)


def test_an_explicit_setting_that_oversubscribes_is_warned_with_the_numbers(monkeypatch):
    _machine(monkeypatch, 2, ranks=2, omp=1)
    threads, warning = plan_threads(2, 1)
    assert threads == 2
    assert warning.startswith("2 process(es) x 2 compute threads = 4 on 2 cores (plus 1 loader worker(s) each)")
    assert "leave threads unset (it would be 1)" in warning
    assert plan_threads(None, 1) == (1, None)  # the fair share: loader workers mostly wait, not counted
    _machine(monkeypatch, 2)
    assert plan_threads(2, 1) == (2, None)
