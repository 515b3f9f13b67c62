"""SVFormer's neuron loops compiled from C: each large tensor is read or written once per call.

The eager chunked loops (`chunked`) cut the sequence into cache-sized chunks, but still run about five
(forward) and twelve (backward) PyTorch operations per time step and chunk, each a call into PyTorch
and a pass over its chunk. Compiled, a block of positions runs the whole time loop in registers and L1:
the forward reads X and writes the spikes, the backward reads X and dL/dS and writes dL/dX, and
everything in between stays in a per-thread scratch block (`neuron_loops.c`). When the neuron's input
was a per-step BatchNorm's whole output (`recipes.NormRecipe`), the backward makes it again from the
BN's input in the same block loop, so that output never exists as a tensor in the backward.

The C file is built on first use with the system's C compiler (``$CC``, else ``cc``) into a cache folder
(``$SVFORMER_CACHE``, else ``~/.cache/svformer``), once per source and compiler; without a compiler,
`available()` is False (with one warning) and the neuron kernel uses the chunked loops. The threads are
PyTorch's thread count. Built with OpenMP (where the compiler has it), a call runs on the OpenMP runtime
PyTorch loaded, whose threads then stay busy between PyTorch's ops and ours; else each thread of a
pool of our own calls the library on its share of the blocks. A forked child uses the pool: GNU OpenMP
cannot start threads in a child of a process that used them.

Covered: the neurons SVFormer uses (`supports`): IF, LIF and PLIF with decayed input, hard reset to 0,
detached reset, the ATan surrogate, float32 or float64. The arithmetic is `chunked`'s, operation for
operation, so the spikes and potentials are the same bits; gradients agree to float rounding (the
eager ATan derivative's multiply-add may be fused differently), and dL/dk is summed in a fixed order
(per position over time in the tensors' dtype, then over positions in float64), the same for any number
of threads.
"""
from __future__ import annotations

import ctypes
import hashlib
import math
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional, Tuple

import numpy as np
import torch

from ..snn.dynamics import Dynamics
from ..snn.surrogate import ATan, Surrogate
from .layout import flat, like, time_major

SOURCE = Path(__file__).with_name("neuron_loops.c")
# Positions per block (BLOCK in the C file): a block's time loop keeps H and X - V for every step
# (2 x T x BLOCK values) in L2.
BLOCK = 2048
# How each kind charges (`dynamics.charge` for decayed input and v_reset = 0).
_MODES = {"plif": 0, "lif": 1, "if": 2}
_REALS = {torch.float32: ("float", ctypes.c_float), torch.float64: ("double", ctypes.c_double)}
_libraries: dict = {}
_lock = threading.Lock()
_pool: Optional[ThreadPoolExecutor] = None
_pool_workers = 0
_forked = False


def _after_fork() -> None:
    """A forked child has none of its parent's threads: it starts a pool of its own when it needs one."""
    global _pool, _pool_workers, _forked
    _pool, _pool_workers, _forked = None, 0, True


os.register_at_fork(after_in_child=_after_fork)


def _compiler() -> list:
    return shlex.split(os.environ.get("CC") or "cc")


def _build(real: str, openmp: bool, path: Path = SOURCE) -> Path:
    """The shared library of the C file ``path`` for ``real`` (float or double), built once per source,
    compiler, type and OpenMP."""
    source = path.read_bytes()
    compiler = _compiler()
    flags = ["-O3", "-std=c99", "-fPIC", "-shared", "-ffp-contract=off", f"-DREAL={real}"] + ["-fopenmp"] * openmp
    key = hashlib.sha256(source + repr((compiler, flags, sys.platform)).encode()).hexdigest()[:16]
    folder = Path(os.environ.get("SVFORMER_CACHE") or Path.home() / ".cache" / "svformer")
    target = folder / f"{path.stem}_{real}_{key}.so"
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    # Built under a temporary name and renamed: processes building at once (torchrun ranks) never load
    # a half-written library.
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        built = Path(tmp) / target.name
        subprocess.run([*compiler, *flags, str(path), "-o", str(built)], check=True, capture_output=True,
                       timeout=120)
        os.replace(built, target)
    return target


def _load(real: str, path: Path = SOURCE):
    """The library of the C file ``path`` built with OpenMP where that builds and loads, else without."""
    try:
        return ctypes.CDLL(str(_build(real, openmp=True, path=path)))
    except (OSError, subprocess.SubprocessError):
        return ctypes.CDLL(str(_build(real, openmp=False, path=path)))


def _library(dtype: torch.dtype):
    """The loaded library for ``dtype``, or None where it cannot be built (warned once)."""
    with _lock:
        if dtype not in _libraries:
            real, ctype = _REALS[dtype]
            try:
                lib = _load(real)
            except (OSError, subprocess.SubprocessError) as e:
                detail = getattr(e, "stderr", b"") or str(e).encode()
                last = (detail.decode(errors="replace").strip().splitlines() or [""])[-1]
                warnings.warn(f"svformer: could not build the compiled neuron loops with {' '.join(_compiler())} "
                              f"({last}); the CPU neurons use the slower eager loops instead (building needs a C "
                              "compiler, $CC or cc, and a writable $SVFORMER_CACHE or ~/.cache/svformer)",
                              stacklevel=3)
                lib = None
            else:
                p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
                lib.neuron_forward.argtypes = [p, p, p, i64, i64, i64, i64, ctype, ctype, i32, i32]
                lib.neuron_backward.argtypes = [p, p, p, p, p, p, i64, p, p, p, i64, i64, i64, i64, ctype, ctype,
                                                i32, ctype, ctype, ctype, ctype, p, p, i64, i64, i32, i32]
                lib.neuron_forward.restype = lib.neuron_backward.restype = None
                lib.openmp = bool(lib.neuron_openmp())
            _libraries[dtype] = lib
        return _libraries[dtype]


def available(dtype: torch.dtype = torch.float32) -> bool:
    """True if the library for ``dtype`` is built (or can be)."""
    return dtype in _REALS and _library(dtype) is not None


def supports(dyn: Dynamics, surrogate: Surrogate, x: torch.Tensor) -> bool:
    """True if the compiled loops compute this layer (see the module docstring)."""
    return (x.dtype in _REALS and dyn.v_reset == 0.0 and dyn.detach_reset and (dyn.kind == "if" or dyn.decay_input)
            and type(surrogate) is ATan and available(x.dtype))


def _constants(dyn: Dynamics, k: Optional[torch.Tensor]):
    """(c, dH/dV, dH/dX): c is k for PLIF, tau for LIF (divided by, as `chunked`); rounded to the tensors'
    dtype by ctypes, as PyTorch rounds Python scalars."""
    if dyn.kind == "plif":
        c = k.item()
        return c, (1 - k).item(), c
    if dyn.kind == "lif":
        return dyn.tau, 1.0 - 1.0 / dyn.tau, 1.0 / dyn.tau
    return 1.0, 1.0, 1.0


def _workers(n: int) -> int:
    """How many threads run a call over ``n`` positions: PyTorch's thread count, at most one per block."""
    return max(1, min(torch.get_num_threads(), (n + BLOCK - 1) // BLOCK))


def _in_parallel(lib, call: Callable, n: int) -> None:
    """``call(worker, lo, hi, threads)`` over the positions [0, n) with `_workers` (n) threads: one call
    on OpenMP's threads, or one call per worker (threads = 1) on a run of whole blocks from our pool."""
    global _pool, _pool_workers
    workers = _workers(n)
    if workers == 1 or (lib.openmp and not _forked):
        call(0, 0, n, workers)
        return
    blocks = (n + BLOCK - 1) // BLOCK
    bounds = [min(n, blocks * w // workers * BLOCK) for w in range(workers + 1)]
    with _lock:
        if _pool_workers < workers:
            _pool, _pool_workers = ThreadPoolExecutor(workers, thread_name_prefix="svformer-neuron"), workers
        pool = _pool
    for f in [pool.submit(call, w, bounds[w], bounds[w + 1], 1) for w in range(workers)]:
        f.result()


def forward(dyn: Dynamics, x_seq: torch.Tensor, v0: torch.Tensor, k: Optional[torch.Tensor],
            alloc: Callable = torch.empty_like, keep_h: bool = False):
    """Run the neuron over ``x_seq`` (T, ...) from ``v0``: ``(spike_seq, v_last, None)``, as
    `chunked.forward`, which alone keeps the potentials (``keep_h``)."""
    if keep_h:
        raise ValueError("the compiled loops keep no potentials: use chunked.forward for keep_h")
    x_seq = time_major(x_seq, alloc)
    spike_seq = alloc(x_seq)
    v_last = torch.empty_like(x_seq[0])
    v_last.copy_(like(v0, v_last))
    lib, (T, n) = _library(x_seq.dtype), flat(x_seq).shape
    c, _, _ = _constants(dyn, k)
    x, v, s = flat(x_seq).data_ptr(), v_last.data_ptr(), spike_seq.data_ptr()
    _in_parallel(lib, lambda w, lo, hi, threads: lib.neuron_forward(x, v, s, T, n, lo, hi, c, dyn.v_threshold,
                                                                    _MODES[dyn.kind], threads), n)
    return spike_seq, v_last, None


def backward(dyn: Dynamics, surrogate: ATan, x_seq: torch.Tensor, v0: torch.Tensor, k, grad_spike, grad_v_last,
             need_k: bool, alloc: Callable = torch.empty_like, norm: Optional[Tuple[torch.Tensor, ...]] = None):
    """Gradients of `forward` from its (time-major) inputs: ``(grad_x_seq, grad_v0, grad_k or None)``.

    ``norm``: the input was a per-step BatchNorm's output, made again here block by block instead of as a
    whole tensor; ``x_seq`` is then the BN's input and ``norm`` = (scale, shift, channel dim) as
    `recipes.NormRecipe` keeps them: X[t] = x_seq[t] * scale[t, c] + shift[t, c] (per-(t, c) (T*C,))."""
    lib, (T, n) = _library(x_seq.dtype), flat(x_seq).shape
    grad_x_seq = alloc(x_seq)
    grad_v0 = torch.empty_like(x_seq[0])
    grad_v0.copy_(like(grad_v_last, grad_v0))
    v0 = like(v0, x_seq[0])
    grad_spike = like(grad_spike, x_seq)
    partial = np.zeros((n + BLOCK - 1) // BLOCK, np.float64)
    scratch = torch.empty(_workers(n), 2 * T * BLOCK, dtype=x_seq.dtype)  # per thread: H and X - V per step
    state = torch.empty(_workers(n), 4 * BLOCK, dtype=x_seq.dtype)
    channel = torch.empty(_workers(n), BLOCK, dtype=torch.int64)
    c, dh_dv, dh_dx = _constants(dyn, k)
    slope = math.pi / 2 * surrogate.alpha  # g'(u) = (alpha / 2) / (1 + (slope u)^2), as `chunked.grad_into`
    ptrs = (flat(x_seq).data_ptr(), v0.data_ptr(), grad_spike.data_ptr(), grad_x_seq.data_ptr(),
            grad_v0.data_ptr())
    affine = (None, None, 1, 1)
    if norm is not None:  # the channel of a step's i-th element in memory: (i / stride) % C
        scale, shift, dim = norm
        affine = (scale.data_ptr(), shift.data_ptr(), x_seq.shape[dim], x_seq.stride(dim))
    work = (scratch.data_ptr(), 2 * T * BLOCK, state.data_ptr(), channel.data_ptr(), partial.ctypes.data)

    def call(w, lo, hi, threads):
        lib.neuron_backward(*ptrs, *work, T, n, lo, hi, c, dyn.v_threshold, _MODES[dyn.kind], slope * slope,
                            surrogate.alpha / 2, dh_dv, dh_dx, *affine, w, threads)

    _in_parallel(lib, call, n)
    grad_k = torch.tensor(partial.sum(), dtype=k.dtype).reshape(k.shape) if need_k else None
    return grad_x_seq, grad_v0, grad_k
