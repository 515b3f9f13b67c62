"""The spiking core in plain PyTorch: surrogate gradients, neuron dynamics, neuron layers, per-time-step
BatchNorm and a firing-rate monitor. Everything runs in multi-step mode on (T, B, ...); autograd
differentiates it on any device. The CPU accelerations live apart, in `svformer.cpu`."""
from .dynamics import Dynamics, charge, reference_multistep, reset, reset_derivative, reset_values
from .monitor import FiringRateMonitor
from .neuron import NEURONS, BaseNeuron, IFNode, LIFNode, ParametricLIFNode, is_neuron, reset_states
from .norm import TimeBatchNorm, per_step_batch_norm
from .surrogate import SURROGATES, ATan, Sigmoid, SpikeFunction, Surrogate, get_surrogate, heaviside

__all__ = [
    "ATan", "BaseNeuron", "Dynamics", "FiringRateMonitor", "IFNode", "LIFNode", "NEURONS", "ParametricLIFNode",
    "SURROGATES", "Sigmoid", "SpikeFunction", "Surrogate", "TimeBatchNorm", "charge", "get_surrogate", "heaviside",
    "is_neuron", "per_step_batch_norm", "reference_multistep", "reset", "reset_derivative", "reset_states",
    "reset_values",
]
