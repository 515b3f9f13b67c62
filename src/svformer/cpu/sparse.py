"""Inference of the layers that read spikes, computed from the spikes that fired only (`spike_matmul.c`).

A convolution or linear layer right after a spiking neuron reads only 0s and 1s, often mostly 0s: a
trained model's neurons fire at a few to a few tens of percent. Its output is then its bias plus the sum
of the weight rows of the inputs that fired, so the work can be proportional to the spikes instead of
the inputs. `SparseKernel` computes `models.layers.SpikeInput` convolutions (one group, no dilation,
zero padding) and linear layers that way on the CPU, in float32, when autograd records nothing
(evaluation, streaming, `svformer predict`). It estimates the input's firing rate from a sample and runs
the layer's dense op instead when more than `MAX_DENSITY` of the inputs fired (where dense products are
faster), when the sample holds anything but 0 and 1, under torch.compile and autocast, and on other
devices and dtypes. A convolution's input is read channels-last (the accelerated model's layout; another
one is copied first).

In a torch.compile graph (the compiled streaming step, `export.compiled`) the same product is one op,
``torch.ops.svformer.spike_product`` (`GraphKernel` puts it there), which makes the sparse-or-dense choice
at run time.

The sums add the same numbers as the dense kernels in another order, so an output differs from the dense
one by float rounding (a spike downstream can flip where a potential lies within that rounding of the
threshold). The result does not depend on the number of threads (each output is summed by one thread,
in the order of the inputs) nor on the instruction set the C routines use (AVX-512, AVX2, AVX or plain
C, the best the CPU has; `instruction_set` caps it).
"""
from __future__ import annotations

import ctypes
import subprocess
import threading
import warnings
from typing import Callable, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from . import compiled
from .compact import _records

SOURCE = compiled.SOURCE.with_name("spike_matmul.c")
# Above this fraction of inputs firing, the dense products (matrix-multiply kernels at a few times the rate
# of sparse row additions) may be faster: the two break even at 0.4 for most of SVFormer's layers on an
# AVX2 CPU, beyond 0.6 for the last patch embedding.
MAX_DENSITY = 0.3
# The firing rate is estimated from one run of 64 inputs in this many (a pass over every input would cost as
# much as the product itself saves on a layer that then runs dense).
SAMPLE_EVERY = 16
# The name of an eager sparse product (`SparseKernel`) in the profiler's events. The compiled graph's op is an
# event of its own (``svformer::spike_product``): marking its calls as well would cost a stream's frame
# about as much as the op's own dispatch.
PROFILER_NAME = "svformer::spike_conv"
# Output channels per tile of the rearranged weights (MC in the C file).
TILE = 64
_lock = threading.Lock()
_state: dict = {}


def _library():
    """The loaded C library, or None where it cannot be built (warned once)."""
    with _lock:
        if "lib" not in _state:
            try:
                lib = compiled._load("float", SOURCE)
            except (OSError, subprocess.SubprocessError) as e:
                warnings.warn(f"svformer: could not build the sparse spike kernels ({e}); layers that read spikes "
                              "run their dense ops", stacklevel=3)
                lib = None
            else:
                p, i64 = ctypes.c_void_p, ctypes.c_int64
                lib.spike_count.argtypes = [p, i64, i64, p, p, ctypes.c_int]
                lib.spike_count.restype = i64
                lib.spike_conv.argtypes = [p, i64, i64, i64, i64, p, p, i64] + [i64] * 8 + [p, ctypes.c_int]
                lib.spike_conv.restype = ctypes.c_int
                lib.spike_isa.argtypes = [ctypes.c_int]
                lib.spike_isa.restype = ctypes.c_int
            _state["lib"] = lib
        return _state["lib"]


def available() -> bool:
    """True if the C library is built (or can be)."""
    return _library() is not None


ISA_LEVELS = ("plain C", "AVX", "AVX2", "AVX-512")


def instruction_set(limit: Optional[str] = None) -> str:
    """Set the kernel's instruction set for the whole process: the best this CPU has (``limit`` None) or the
    best at most ``limit`` (one of ``ISA_LEVELS``); returns the one in use. Every level gives the same bits;
    a lower one is for tests and measurements."""
    if limit is not None and limit not in ISA_LEVELS:
        raise ValueError(f"instruction set {limit!r}: one of {', '.join(ISA_LEVELS)}")
    cap = len(ISA_LEVELS) - 1 if limit is None else ISA_LEVELS.index(limit)
    return ISA_LEVELS[_library().spike_isa(cap)]


def _threads() -> int:
    # A forked child cannot start GNU OpenMP threads its parent used (`compiled`): one thread there.
    return 1 if compiled._forked else torch.get_num_threads()


def sparse_enough(x: torch.Tensor, max_density: float = MAX_DENSITY, every: int = SAMPLE_EVERY) -> bool:
    """True if a sample of the dense tensor ``x`` (one run of 64 elements in every ``every``; all of it for
    1) holds only 0 and 1, with at most ``max_density`` of it 1. A sample, because the decision is made
    for every call and must cost little next to the product; it is about speed only (`SparseKernel` needs
    spikes: its inputs come from svformer's neurons, whose outputs are 0 and 1)."""
    counted, other = ctypes.c_int64(0), ctypes.c_int64(0)
    nonzero = _library().spike_count(x.data_ptr(), x.numel(), every, ctypes.byref(counted), ctypes.byref(other),
                                     _threads())
    return other.value == 0 and nonzero <= max_density * counted.value


def spike_conv(x: torch.Tensor, wt: torch.Tensor, bias: Optional[torch.Tensor], m: int, stride, padding,
               alloc: Callable = torch.empty_like) -> torch.Tensor:
    """conv2d over spikes: ``x`` (N, H, W, C) contiguous (a channels-last map's memory), ``wt`` the weight of
    ``m`` output channels as `rearranged` makes it, ``bias`` (M,) or None -> (N, OH, OW, M) contiguous. Rows
    of a linear layer are the case N = rows, H = W = 1, kernel 1."""
    n, h, w, c = x.shape
    (kh, kw), (sh, sw), (ph, pw) = wt.shape[1:3], stride, padding
    oh, ow = _output_size(h, w, (kh, kw), stride, padding)
    y = alloc(torch.empty((), dtype=x.dtype).expand(n, oh, ow, m))  # contiguous, from the pool when large
    status = _library().spike_conv(x.data_ptr(), n, h, w, c, wt.data_ptr(), None if bias is None else bias.data_ptr(),
                                   m, kh, kw, sh, sw, ph, pw, oh, ow, y.data_ptr(), _threads())
    if status != 0:
        raise MemoryError("out of memory in the sparse spike kernel")
    return y


def _output_size(h: int, w: int, kernel, stride, padding) -> tuple:
    """A convolution's output height and width."""
    return ((h + 2 * padding[0] - kernel[0]) // stride[0] + 1, (w + 2 * padding[1] - kernel[1]) // stride[1] + 1)


def _product(x: torch.Tensor, wt: torch.Tensor, bias: Optional[torch.Tensor], m: int, conv: bool, stride=(1, 1),
             padding=(0, 0), alloc: Callable = torch.empty_like) -> torch.Tensor:
    """A layer's output by `spike_conv`. A convolution (``conv``): ``x`` (N, C, H, W) -> (N, M, OH, OW)
    channels-last, as a dense convolution of channels-last input returns it; a linear layer: contiguous
    ``x`` (..., K) -> (..., M) contiguous. ``wt``: the weight as `rearranged` makes it."""
    if conv:
        # The kernel reads (N, H, W, C): a channels-last map as it is, another one copied (streaming's frames).
        y = spike_conv(x.permute(0, 2, 3, 1).contiguous(), wt, bias, m, tuple(stride), tuple(padding), alloc)
        return y.permute(0, 3, 1, 2)
    y = spike_conv(x.reshape(-1, 1, 1, x.shape[-1]), wt, bias, m, (1, 1), (0, 0), alloc)
    return y.reshape(*x.shape[:-1], m)


def rearranged(weight: torch.Tensor) -> torch.Tensor:
    """A convolution's weight (M, C, kh, kw) (a linear layer's (M, K): kh = kw = 1) as the rows `spike_conv`
    adds: (tiles, kh, kw, C, TILE) contiguous, tile t holding output channels [t TILE, t TILE + TILE), zeros
    past M (each tile's rows are one block of memory)."""
    w = weight.reshape(*weight.shape, 1, 1) if weight.dim() == 2 else weight
    m = w.shape[0]
    tiles = -(-m // TILE)
    padded = F.pad(w, (0, 0, 0, 0, 0, 0, 0, tiles * TILE - m))  # (tiles TILE, C, kh, kw)
    return padded.reshape(tiles, TILE, *w.shape[1:]).permute(0, 3, 4, 2, 1).contiguous()


def spike_product(x: torch.Tensor, weight: torch.Tensor, wt: torch.Tensor, bias: Optional[torch.Tensor],
                  stride: List[int], padding: List[int], max_density: float) -> torch.Tensor:
    """``torch.ops.svformer.spike_product``: a `SpikeInput` convolution (``weight`` 4-d) or linear layer (2-d)
    as one op of a torch.compile graph: `spike_conv` where a sample of ``x`` says it is sparse enough
    (`sparse_enough`), else the dense op. ``wt`` is ``rearranged(weight)`` (a constant the frozen graph
    computes once). Outputs as `_product`'s in both cases: the compiled graph is planned for one layout.
    No autograd (inference graphs only)."""
    conv = weight.dim() == 4
    x = x if conv else x.contiguous()
    if (available() and x.device.type == "cpu" and x.dtype == wt.dtype == torch.float32 and x.numel() > 0
            and (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last))
            and sparse_enough(x, max_density)):
        return _product(x, wt, bias, weight.shape[0], conv, stride, padding)
    if not conv:
        return F.linear(x, weight, bias)
    y = F.conv2d(x, weight, bias, stride, padding)
    like = _product_like(x, weight, stride, padding)
    return y if y.stride() == like.stride() else like.copy_(y)


def _product_like(x: torch.Tensor, weight: torch.Tensor, stride, padding) -> torch.Tensor:
    """An empty (N, M, OH, OW) tensor with the strides of `_product`'s convolution output."""
    (n, _, h, w), (m, _, kh, kw) = x.shape, weight.shape
    return x.new_empty(n, *_output_size(h, w, (kh, kw), stride, padding), m).permute(0, 3, 1, 2)


# Registered with the dispatcher directly rather than by torch.library.custom_op, whose Python wrappers cost
# more per call than a small layer's product.
_ops = torch.library.Library("svformer", "DEF")
_ops.define("spike_product(Tensor x, Tensor weight, Tensor wt, Tensor? bias, int[] stride, int[] padding, "
            "float max_density) -> Tensor")
_ops.impl("spike_product", spike_product, "CompositeExplicitAutograd")


@torch.library.register_fake("svformer::spike_product", lib=_ops)
def _(x, weight, wt, bias, stride, padding, max_density):
    if weight.dim() == 4:
        return _product_like(x, weight, stride, padding)
    return x.new_empty(*x.shape[:-1], weight.shape[0])


def covers(layer: nn.Module) -> bool:
    """Whether `spike_conv` computes layers of ``layer``'s type and arguments (the first check of
    `SparseKernel`; the layers `GraphKernel` is given)."""
    if isinstance(layer, nn.Conv2d):
        return (layer.groups == 1 and tuple(layer.dilation) == (1, 1) and layer.padding_mode == "zeros"
                and not isinstance(layer.padding, str))
    return isinstance(layer, nn.Linear)


class GraphKernel:
    """The kernel of a `SpikeInput` layer in an inference graph for torch.compile (`export.compiled`): the
    layer as one `spike_product` op (sparse or dense, decided per call at run time). Only for layers
    `covers` takes, in graphs without autograd; the weights are the graph's constants."""

    def __init__(self, max_density: float = MAX_DENSITY):
        self.max_density = max_density

    def __call__(self, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        conv = isinstance(layer, nn.Conv2d)
        stride, padding = (list(layer.stride), list(layer.padding)) if conv else ([1, 1], [0, 0])
        # The dense op reads channels-last maps: a weight in that layout is not converted on every call.
        weight = layer.weight.contiguous(memory_format=torch.channels_last) if conv else layer.weight
        return torch.ops.svformer.spike_product(x, weight, rearranged(layer.weight), layer.bias, stride, padding,
                                                self.max_density)


def _plain(layer: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
    """The layer's own op (a `SpikeInput` layer without a kernel)."""
    if isinstance(layer, nn.Linear):
        return F.linear(inputs[0], layer.weight, layer.bias)
    if isinstance(layer, (nn.Conv2d, nn.Conv3d)):
        return layer._conv_forward(inputs[0], layer.weight, layer.bias)
    return inputs[0] @ inputs[1]


class SparseKernel:
    """The kernel of a `SpikeInput` layer: sparse inference where it applies (module docstring), else
    ``inner`` (another kernel, e.g. `compact.CompactKernel`), else the layer's own op. ``alloc(like)``
    makes the outputs. The weights rearranged for the C kernel are kept until they (or the layer) change."""

    def __init__(self, inner: Optional[Callable] = None, alloc: Callable = torch.empty_like,
                 max_density: float = MAX_DENSITY):
        self.inner, self.alloc, self.max_density = inner, alloc, max_density
        self._kept: Optional[tuple] = None  # (layer, weight memory, weight version), rearranged weight

    def __call__(self, layer: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
        y = self._sparse(layer, inputs[0]) if len(inputs) == 1 else None
        if y is not None:
            return y
        return self.inner(layer, *inputs) if self.inner is not None else _plain(layer, *inputs)

    def _applies(self, layer: nn.Module, x: torch.Tensor) -> bool:
        # A convolution's maps are (N, C, H, W); a linear layer's rows are read as they lie in memory.
        if not covers(layer) or not (x.dim() == 4 if isinstance(layer, nn.Conv2d) else x.is_contiguous()):
            return False
        weight, bias = layer.weight, layer.bias
        return (x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32
                and (bias is None or bias.dtype == torch.float32) and not torch.compiler.is_compiling()
                and not torch.is_autocast_enabled("cpu") and not _records(x, weight, bias) and available()
                and x.numel() > 0 and sparse_enough(x, self.max_density))

    def _rearranged(self, layer: nn.Module) -> torch.Tensor:
        """The layer's weight as `rearranged` makes it, made again when it changed."""
        weight = layer.weight
        key = (id(layer), weight.data_ptr(), weight._version)
        if self._kept is None or self._kept[0] != key:
            self._kept = (key, rearranged(weight.detach()))
        return self._kept[1]

    def _sparse(self, layer: nn.Module, x: torch.Tensor) -> Optional[torch.Tensor]:
        if not self._applies(layer, x):
            return None
        bias = None if layer.bias is None else layer.bias.detach().contiguous()
        m, wt = layer.weight.shape[0], self._rearranged(layer)
        with torch.profiler.record_function(PROFILER_NAME):
            if isinstance(layer, nn.Conv2d):
                return _product(x, wt, bias, m, True, layer.stride, layer.padding, alloc=self.alloc)
            return _product(x, wt, bias, m, False, alloc=self.alloc)
