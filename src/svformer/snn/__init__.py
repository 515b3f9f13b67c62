"""The spiking core: surrogate gradients, neuron dynamics (reference and fused paths), neuron layers,
per-time-step BatchNorm, a firing-rate monitor, smaller saved activations (1-byte spikes, recomputed
BatchNorm outputs) and a pool of recycled buffers.
Everything runs in multi-step mode on (T, B, ...)."""
from .dynamics import Dynamics, charge, reference_multistep, reset, reset_values
from .fused import FusedMultiStep, fused_multistep
from .monitor import FiringRateMonitor
from .neuron import NEURONS, BaseNeuron, IFNode, LIFNode, ParametricLIFNode, is_neuron, reset_states
from .norm import TimeBatchNorm
from .saved import SavedStats, compact_saved, compact_saved_spikes
from .spikes import is_spikes, mark_spikes
from .surrogate import SURROGATES, ATan, Sigmoid, Surrogate, get_surrogate, heaviside

__all__ = [
    "ATan", "BaseNeuron", "Dynamics", "FiringRateMonitor", "FusedMultiStep", "IFNode", "LIFNode", "NEURONS",
    "ParametricLIFNode", "SURROGATES", "SavedStats", "Sigmoid", "Surrogate", "TimeBatchNorm", "charge",
    "compact_saved", "compact_saved_spikes", "fused_multistep", "get_surrogate", "heaviside", "is_neuron", "is_spikes",
    "mark_spikes", "reference_multistep", "reset", "reset_states", "reset_values",
]
