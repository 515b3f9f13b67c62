"""Deployment: ONNX export of a trained SVFormer (whole clip and frame by frame) and ONNX Runtime
execution with the same interface as the PyTorch model (`runtime`)."""
from .graph import ClipGraph, StepGraph, inference_model
from .onnx import export_onnx, read_metadata

__all__ = ["ClipGraph", "StepGraph", "export_onnx", "inference_model", "read_metadata"]
