"""Mixed precision: bfloat16 autocast on CPU, float16 on CUDA (with a GradScaler in the trainer)."""
import contextlib

import torch


def autocast(device: torch.device, enabled: bool):
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if device.type == "cpu" else torch.float16)
