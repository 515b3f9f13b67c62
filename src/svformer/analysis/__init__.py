"""Counting and measuring: parameters, dense MACs, operations with spike rates, energy protocols."""
from .complexity import ComplexityReport, count_macs, count_parameters
from .energy import PROTOCOLS, EnergyReport, dense_ann, full, memory, neurobench_metrics, paper, with_rates
from .operations import OperationCounter, OpRecord, trace_operations

__all__ = ["ComplexityReport", "EnergyReport", "OpRecord", "OperationCounter", "PROTOCOLS", "count_macs",
           "count_parameters", "dense_ann", "full", "memory", "neurobench_metrics", "paper", "trace_operations",
           "with_rates"]
