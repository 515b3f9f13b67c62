"""Loading the authors' SVFormer weights (`Uniformer2d_psnn_try` from the public yult0821/SVFormer).

Their checkpoints (`.pyth`) are `torch.save` dicts with the weights under ``model_state``. svformer keeps
their names for the stages and blocks; only the local path and the head, which they named ad hoc, are
renamed (table below). Per-time-step BatchNorm is stored t-major in both, so tensors load as they are.
"""
from __future__ import annotations

import os
from typing import Dict, Mapping, Tuple

import torch
from torch import nn

# (authors' prefix, svformer prefix)
_RENAMES = (
    ("lplif.", "local.lif."),
    ("lpDWConv.", "local.dwconv."),
    ("lpPWConv.", "local.pwconv."),
    ("lpBN.", "local.norm."),
    ("lif_bf_head.", "head_lif."),
    ("dwconv_bf_head.", "head_conv."),
    ("dwconv_bn.", "head_norm."),
)


def official_to_svformer_key(key: str) -> str:
    """Map one of the authors' state-dict keys to svformer's name."""
    for theirs, ours in _RENAMES:
        if key.startswith(theirs):
            return ours + key[len(theirs):]
    return key


def svformer_to_official_key(key: str) -> str:
    """Map an svformer state-dict key to the authors' name (inverse of `official_to_svformer_key`)."""
    for theirs, ours in _RENAMES:
        if key.startswith(ours):
            return theirs + key[len(ours):]
    return key


def _read(source) -> Tuple[Dict[str, torch.Tensor], str]:
    name = "state dict"
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        if not os.path.isfile(name):
            raise FileNotFoundError(f"official checkpoint not found: {name}")
        try:
            source = torch.load(name, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises several types for corrupt or unsafe files
            raise ValueError(f"cannot read official checkpoint {name}: {e}") from e
    if not isinstance(source, Mapping):
        raise ValueError(f"{name}: expected a checkpoint dict or a state dict, got {type(source).__name__}")
    if "model_state" in source:
        source = source["model_state"]
    state = {}
    for key, value in source.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{name}: entry {key!r} is a {type(value).__name__}, not a tensor; "
                             f"is this a state dict or a checkpoint with 'model_state'?")
        state[key[len("module."):] if key.startswith("module.") else key] = value
    return state, name


def load_official(model: nn.Module, source) -> nn.Module:
    """Load the authors' weights into ``model`` strictly and safely; returns ``model``.

    Args:
        source: a checkpoint path (``.pyth`` with ``model_state``, read with ``weights_only=True``) or a
            state dict with the authors' key names (a ``module.`` prefix from DDP is accepted).
    Raises:
        ValueError naming the first key that is missing, unexpected, or of the wrong shape.
    """
    theirs, name = _read(source)
    target = model.state_dict()
    mapped = {}
    for key, value in theirs.items():
        ours = official_to_svformer_key(key)
        if ours not in target:
            raise ValueError(f"{name}: key {key!r} (svformer name {ours!r}) has no place in {type(model).__name__}; "
                             f"was the model built with the checkpoint's settings (neuron, fusion, head, depth)?")
        if tuple(value.shape) != tuple(target[ours].shape):
            raise ValueError(f"{name}: shape mismatch for {key!r}: checkpoint {tuple(value.shape)}, model "
                             f"{tuple(target[ours].shape)} (check num_classes, num_frames, img_size, embed_dim)")
        mapped[ours] = value
    missing = [k for k in target if k not in mapped]
    if missing:
        raise ValueError(f"{name}: missing {len(missing)} key(s), first {svformer_to_official_key(missing[0])!r} "
                         f"(svformer name {missing[0]!r})")
    model.load_state_dict(mapped, strict=True)
    return model
