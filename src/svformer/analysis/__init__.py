"""Counting and measuring: parameters, dense MACs per clip, firing rates."""
from .complexity import ComplexityReport, count_macs, count_parameters

__all__ = ["ComplexityReport", "count_macs", "count_parameters"]
