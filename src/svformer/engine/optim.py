"""AdamW with the authors' parameter groups: weight decay on conv/linear weights, none on biases and
normalisation parameters; the PLIF ``w`` is decayed unless ``decay_neuron_w`` is False (spec 9.7)."""
from __future__ import annotations

import torch
from torch import nn

from ..config import OptimConfig
from ..snn import TimeBatchNorm, is_neuron

NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, TimeBatchNorm)


def param_groups(model: nn.Module, weight_decay: float, decay_neuron_w: bool = True):
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            if isinstance(module, NORMS):
                no_decay.append(p)
            elif is_neuron(module):
                (decay if decay_neuron_w else no_decay).append(p)
            elif p.ndim <= 1:
                no_decay.append(p)
            else:
                decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay, "name": "decay"},
            {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"}]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(param_groups(model, cfg.weight_decay, cfg.decay_neuron_w), lr=cfg.lr,
                             betas=cfg.betas, eps=1e-8)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """-sum(y log softmax(logits)), averaged over the batch (the authors' soft_cross_entropy)."""
    return torch.sum(-targets * torch.log_softmax(logits.float(), dim=-1), dim=-1).mean()
