"""Parameters and dense multiply-accumulates (MACs) of a model on one input.

MACs are counted by `torch.utils.flop_counter.FlopCounterMode` over a real forward pass, so every conv,
linear and matmul the model actually runs is seen with its actual shapes (multi-step (T, B, ...) inputs
included), and no list of layer names has to be kept in sync with the model. FlopCounterMode counts
2 FLOPs per MAC and leaves out biases, BatchNorm and element-wise ops; this is the convention of the
SVFormer spec's 38.19 G (section 2.9). The pass runs on the 'meta' device by default: shapes only, no
arithmetic, so counting the paper model takes well under a second.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Dict, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@dataclass
class ComplexityReport:
    """Dense MACs of one forward pass, in total, per operator and per top-level module."""

    input_shape: tuple
    macs: int
    by_operator: Dict[str, int] = field(default_factory=dict)
    by_module: Dict[str, int] = field(default_factory=dict)
    params: int = 0

    def table(self) -> str:
        lines = [f"input {tuple(self.input_shape)}", f"parameters      {self.params:>16,}",
                 f"dense MACs      {self.macs:>16,}  ({self.macs / 1e9:.4f} G)", "", "by operator:"]
        lines += [f"  {op:<28}{n:>16,}" for op, n in sorted(self.by_operator.items(), key=lambda kv: -kv[1])]
        lines += ["", "by module:"]
        lines += [f"  {name:<28}{n:>16,}" for name, n in self.by_module.items()]
        return "\n".join(lines)


def count_macs(model: nn.Module, input_shape: Sequence[int], device: str | torch.device = "meta") -> ComplexityReport:
    """Count dense MACs of ``model`` on a zero input of ``input_shape`` (e.g. (1, 3, 16, 224, 224)).

    With ``device='meta'`` a copy of the model is moved to the meta device, so nothing is computed and
    the original model is untouched.
    """
    device = torch.device(device)
    counted = copy.deepcopy(model).to(device) if device.type == "meta" else model
    counted.eval()
    x = torch.zeros(tuple(input_shape), device=device)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        counted(x)
    flops = counter.get_flop_counts()
    by_operator = {}
    for op, n in flops.get("Global", {}).items():
        name = getattr(op, "__name__", str(op)).split(".")[0]
        by_operator[name] = by_operator.get(name, 0) + n // 2
    # Keys are "Root.child" for called children and "Root.child.i" inside containers that are not called
    # themselves (ModuleList); sum each top-level child once.
    by_module = {}
    for key, ops in flops.items():
        parts = key.split(".")
        if len(parts) == 2 or (len(parts) == 3 and ".".join(parts[:2]) not in flops):
            by_module[parts[1]] = by_module.get(parts[1], 0) + sum(ops.values()) // 2
    order = [name for name, _ in counted.named_children()]
    by_module = {name: by_module[name] for name in order if name in by_module}
    total = counter.get_total_flops() // 2
    return ComplexityReport(tuple(input_shape), total, by_operator, by_module, count_parameters(model))
