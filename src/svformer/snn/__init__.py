"""The spiking core: surrogate gradients, neuron dynamics (reference and fused paths), neuron layers,
per-time-step BatchNorm, a firing-rate monitor, 1-byte saved spikes and a pool of recycled buffers.
Everything runs in multi-step mode on (T, B, ...)."""
from .dynamics import Dynamics, charge, reference_multistep, reset, reset_values
from .fused import FusedMultiStep, fused_multistep
from .monitor import FiringRateMonitor
from .neuron import NEURONS, BaseNeuron, IFNode, LIFNode, ParametricLIFNode, is_neuron, reset_states
from .norm import TimeBatchNorm
from .spikes import SavedSpikeStats, compact_saved_spikes, is_spikes, mark_spikes
from .surrogate import SURROGATES, ATan, Sigmoid, Surrogate, get_surrogate, heaviside

__all__ = [
    "ATan", "BaseNeuron", "Dynamics", "FiringRateMonitor", "FusedMultiStep", "IFNode", "LIFNode", "NEURONS",
    "ParametricLIFNode", "SURROGATES", "SavedSpikeStats", "Sigmoid", "Surrogate", "TimeBatchNorm", "charge",
    "compact_saved_spikes", "fused_multistep", "get_surrogate", "heaviside", "is_neuron", "is_spikes",
    "mark_spikes", "reference_multistep", "reset", "reset_states", "reset_values",
]
