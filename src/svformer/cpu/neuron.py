"""The fused multi-step neuron: one autograd Function over the whole (T, ...) sequence.

The plain loop (`snn.dynamics.reference_multistep`) lets autograd record about ten tensors per time
step. Here the forward runs the same charge/fire/reset loop without a graph and keeps only the inputs X
for the backward, which recomputes what it needs block by block, in cache. The loops are compiled C
(`compiled`) for the neurons SVFormer uses where a C compiler is available, else eager PyTorch run
chunk by chunk (`chunked`). Only a two-op recurrence is sequential:

    dL/dH[t]   = dL/dS[t] * g'(H[t] - v_th) + dL/dV[t] * dV[t]/dH[t]
    dL/dV[t-1] = dL/dH[t] * dH[t]/dV[t-1]

with dV/dH from `snn.dynamics.reset_derivative` and dH/dV = 1 - k (1 for IF).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from ..snn.dynamics import Dynamics, reference_multistep, reset_values
from ..snn.surrogate import Surrogate
from . import chunked, compiled
from .layout import is_time_major, time_major
from .recipes import Found, NormRecipe, Outputs, as_view


class FusedMultiStep(torch.autograd.Function):
    """``FusedMultiStep.apply(x_seq, v0, k, dyn, surrogate, alloc, keep_h, recipe, loops)`` ->
    ``(spike_seq, v_last, h_seq)``.

    The first two carry gradients (``v_last`` so that a sequence split over several calls still
    backpropagates through the state); ``h_seq``, the pre-reset potentials, is a non-differentiable
    by-product for diagnostics, empty unless ``keep_h``. ``k`` is sigmoid(w) for PLIF, else None.
    ``recipe``: how the tensor ``x_seq`` is a view of was made (`recipes.Outputs.take`); the backward then
    recomputes the input from it instead of keeping it. ``loops``: the module that runs them, `compiled`
    (where `compiled.supports` the layer, without ``keep_h``) or `chunked`.
    """

    @staticmethod
    def forward(ctx, x_seq, v0, k, dyn: Dynamics, surrogate: Surrogate, alloc: Callable, keep_h: bool = False,
                recipe: Optional[Found] = None, loops=chunked):
        saved = time_major(x_seq, alloc)  # the attention's q, k and v are views of one tensor: copies
        spike_seq, v, h_seq = loops.forward(dyn, saved, v0, k, alloc, keep_h=keep_h)
        if h_seq is None:
            h_seq = x_seq.new_empty(0)
        ctx.dyn, ctx.surrogate, ctx.alloc, ctx.loops = dyn, surrogate, alloc, loops
        ctx.k_needs_grad = k is not None and ctx.needs_input_grad[2]
        ctx.recipe = None if recipe is None else (recipe[0], recipe[2])
        ctx.save_for_backward(v0, k, *((saved,) if recipe is None else recipe[1]))
        ctx.mark_non_differentiable(h_seq)
        return spike_seq, v, h_seq

    @staticmethod
    def backward(ctx, grad_spike, grad_v_last, _grad_h):
        v0, k, *kept = ctx.saved_tensors
        norm = None
        if ctx.recipe is None:
            saved = kept[0]
        elif ctx.loops is compiled and _whole_norm_output(*ctx.recipe, kept[0]):
            # A BN's whole output: the compiled loops make it again block by block, never as a tensor.
            saved, scale, shift = kept
            norm = (scale, shift, saved.dim() - 1 if ctx.recipe[0].channels_last else 2)
        else:  # the input again, as the forward's time-major copy of it
            made, view = ctx.recipe
            saved = time_major(as_view(made.rebuild(iter(kept), ctx.alloc), view))
        if grad_spike is None:
            grad_spike = torch.zeros_like(saved)
        if grad_v_last is None:
            grad_v_last = torch.zeros_like(v0)
        extra = {} if norm is None else {"norm": norm}
        grad_x, grad_v, grad_k = ctx.loops.backward(ctx.dyn, ctx.surrogate, saved, v0, k, grad_spike, grad_v_last,
                                                    ctx.k_needs_grad, ctx.alloc, **extra)
        return grad_x, grad_v, grad_k, None, None, None, None, None, None


def _whole_norm_output(made, view, x: torch.Tensor) -> bool:
    """True if the neuron read a per-step BN's whole output (made from the BN input ``x``): same shape,
    strides and start, and time-major, as the BN's output always is."""
    size, stride, offset = view
    return isinstance(made, NormRecipe) and offset == 0 and tuple(size) == tuple(x.shape) \
        and tuple(stride) == tuple(x.stride()) and is_time_major(x)


class NeuronKernel:
    """A neuron layer's kernel (see `snn.neuron`): the fused loops on CPU tensors outside torch.compile,
    the plain loop elsewhere; the same spikes either way.

    ``alloc(like)`` makes the large outputs; ``norm_outputs``: the recipes of the model's BN outputs and
    residual sums, for inputs that are one (recomputed in the backward instead of kept; None: always kept);
    ``compile``: run the compiled loops where they apply (`compiled.supports`), else the chunked ones.
    """

    def __init__(self, alloc: Callable = torch.empty_like, norm_outputs: Optional[Outputs] = None,
                 compile: bool = True):
        self.alloc, self.norm_outputs, self.compile = alloc, norm_outputs, compile

    def loops(self, dyn: Dynamics, surrogate: Surrogate, x_seq: torch.Tensor, keep_h: bool):
        """The module whose loops run this call: `compiled` or `chunked` (which alone keeps H)."""
        use = self.compile and not keep_h and compiled.supports(dyn, surrogate, x_seq)
        return compiled if use else chunked

    def __call__(self, dyn: Dynamics, surrogate: Surrogate, x_seq: torch.Tensor, v0: torch.Tensor,
                 k: Optional[torch.Tensor], store_v_seq: bool = False):
        if x_seq.device.type != "cpu" or torch.compiler.is_compiling():
            return reference_multistep(dyn, surrogate, x_seq, v0, k, store_v_seq)
        needs_graph = torch.is_grad_enabled() and (x_seq.requires_grad or v0.requires_grad
                                                   or (k is not None and k.requires_grad))
        loops = self.loops(dyn, surrogate, x_seq, store_v_seq)
        if needs_graph:
            recipe = None if self.norm_outputs is None else self.norm_outputs.take(x_seq)
            spikes, v, h_seq = FusedMultiStep.apply(x_seq, v0, k, dyn, surrogate, self.alloc, store_v_seq, recipe,
                                                    loops)
        else:  # inference: no autograd node, nothing kept for a backward
            with torch.no_grad():
                spikes, v, h_seq = loops.forward(dyn, x_seq, v0, k, self.alloc, keep_h=store_v_seq)
        v_seq = reset_values(dyn, h_seq) if store_v_seq else None
        return spikes, v, v_seq
