"""SVFormer (Yu et al., "SVFormer: A Direct Training Spiking Transformer for Efficient Video Action
Recognition", arXiv 2406.15034), as the authors built it in `Uniformer2d_psnn_try`.

Each frame is one SNN time step. Four stages (conv patch embedding, then blocks): two local spiking
conv blocks (CBlock) and two global spiking self-attention stages (SABlock); a local path from the
stage-3 embedding is concatenated with the stage-4 output (local-global fusion), and a Conv3d over
(T, H, W) classifies the spike map. Every variant the authors tried (neuron type, threshold,
surrogate, BN per step or shared, fusion, head, T) is a constructor argument. docs/architecture.md
has the layer-by-layer shapes.

Shape convention: clips come in as (B, C, T, H, W); `forward` permutes once to (T, B, C, H, W) and
every layer inside runs on (T, B, ...).
"""
from __future__ import annotations

import collections.abc
import typing
from functools import partial
from typing import Callable, Optional, Sequence, Union

import torch
from torch import nn

from ..snn import NEURONS, TimeBatchNorm, get_surrogate, reset_states
from ..snn.sync_norm import is_synced
from .checkpointing import MODES as CHECKPOINTING
from .checkpointing import checkpointed
from .layers import CBlock, LocalPath, PatchEmbed, SABlock, SpikeConv3d

HEADS = ("conv3d", "avgpool")
SMALL_BATCH_MESSAGE = ("training the Conv3d head needs at least 2 clips per device, got {batch}: its BatchNorm3d "
                       "normalises each channel over the batch of 1x1x1 maps; use a per-device batch of 2 or more, "
                       "SyncBatchNorm across devices, or head='avgpool'")
NORMS = ("per_step", "shared")


def check_arguments(arguments: dict, where: str = "SVFormer") -> None:
    """Raise ValueError, naming the argument, for a value whose type the constructor does not take
    (e.g. ``drop_path_rate: "0.1"`` or ``depth: 3`` from a config file). Names the constructor does
    not have are left to the call itself."""
    hints = typing.get_type_hints(SVFormer.__init__)
    for name, value in arguments.items():
        if name in hints and not _matches(value, hints[name]):
            raise ValueError(f"{where}: {name} expects {_describe(hints[name])}, got {value!r}")


def _matches(value, tp) -> bool:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Union:
        return any(_matches(value, a) for a in args)
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp in (int, float):
        return isinstance(value, (int, float) if tp is float else int) and not isinstance(value, bool)
    if origin is collections.abc.Sequence:
        return isinstance(value, (list, tuple)) and all(_matches(v, args[0]) for v in value)
    if origin is collections.abc.Callable:
        return callable(value)
    return isinstance(value, origin or tp)


def _describe(tp) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Union:
        return " or ".join(_describe(a) for a in args)
    if tp is type(None):
        return "null"
    if origin is collections.abc.Sequence:
        return f"a list of {_describe(args[0])}"
    if origin is collections.abc.Callable:
        return "a factory"
    return getattr(tp, "__name__", str(tp))


def _out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class SVFormer(nn.Module):
    """The SVFormer video classifier.

    Args:
        num_classes: output logits.
        in_chans: input channels (3 for RGB, 2 for event polarity frames).
        img_size: input height and width (int or (H, W)); sizes the Conv3d head.
        num_frames: T, the number of frames = time steps. Sizes per-step BN and the Conv3d head.
        embed_dim: channels of the four stages.
        depth: blocks per stage (CBlock, CBlock, SABlock, SABlock).
        head_dim: channels per attention head (stages 3-4).
        mlp_ratio: MLP hidden width / dim.
        neuron: 'plif' (paper), 'lif' or 'if'; or a zero-argument factory returning a multi-step
            neuron module (e.g. a spikingjelly node), which then overrides the neuron options below.
        v_threshold, v_reset, detach_reset, init_tau (PLIF, and tau for LIF), decay_input: neuron options.
        surrogate: 'atan' (paper) or 'sigmoid'; surrogate_alpha overrides its default (2 / 4).
        norm: 'per_step' (paper: BN statistics and affine per time step, fixes T) or 'shared'; or a factory
            ``norm(channels, channels_last) -> module`` over (T, B, C, ...) maps or (T, B, N, C) tokens
            (e.g. the authors' permute-and-copy BN, for benchmarking), counted as per-step.
        fusion: concatenate the local path with stage 4 (paper) or not.
        head: 'conv3d' (paper: PLIF -> Conv3d over (T, H, W) -> BN3d -> Linear; fixes T and size) or
            'avgpool' (mean over T, H, W -> Linear; with shared BN the model accepts any T and size).
        drop_path_rate: stochastic depth, linearly increasing over the blocks.
        checkpointing: activation checkpointing in training: 'none' (keep every activation), 'stage' or
            'block' (keep the input of each stage, or of each block - each residual step of the
            convolutional blocks -, patch embedding and the local path, and recompute its forward in the
            backward: less memory for more compute, the same losses, gradients and running statistics,
            bit for bit; `models.checkpointing`).
        accelerate: the CPU accelerations (`svformer.cpu.accelerate`): True (default) applies the ones
            measured to pay, False none (the plain model: every layer the readable PyTorch of
            `svformer.snn`), a dict changes single options (e.g. ``{"pool": False}``). Accelerated
            kernels run on CPU tensors in eager mode and fall back to the plain computation elsewhere.

    Shape: (B, in_chans, T, H, W) -> (B, num_classes).
    """

    def __init__(
        self,
        num_classes: int = 101,
        in_chans: int = 3,
        img_size: Union[int, Sequence[int]] = 224,
        num_frames: int = 16,
        embed_dim: Sequence[int] = (128, 256, 384, 512),
        depth: Sequence[int] = (1, 1, 3, 1),
        head_dim: int = 64,
        mlp_ratio: float = 2.0,
        neuron: Union[str, Callable[[], nn.Module]] = "plif",
        v_threshold: float = 1.0,
        v_reset: Optional[float] = 0.0,
        detach_reset: bool = True,
        init_tau: float = 2.0,
        decay_input: bool = True,
        surrogate: str = "atan",
        surrogate_alpha: Optional[float] = None,
        norm: Union[str, Callable[[int, bool], nn.Module]] = "per_step",
        fusion: bool = True,
        head: str = "conv3d",
        drop_path_rate: float = 0.0,
        checkpointing: str = "none",
        accelerate=True,
    ):
        super().__init__()
        if len(embed_dim) != 4 or len(depth) != 4:
            raise ValueError(f"embed_dim and depth need 4 stages, got {embed_dim} and {depth}")
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; choose one of {HEADS}")
        if not callable(norm) and norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; choose one of {NORMS}")
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        if checkpointing not in CHECKPOINTING:
            raise ValueError(f"unknown checkpointing {checkpointing!r}; choose one of {CHECKPOINTING}")
        self.checkpointing = checkpointing
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.num_frames = num_frames
        self.head_type = head
        self.norm_type = "per_step" if callable(norm) else norm
        self.fusion = fusion
        # Set by `svformer.cpu.accelerate`: how feature maps are stored ('contiguous' or 'channels_last',
        # the same function).
        self.memory_format = "contiguous"

        make_neuron = neuron if callable(neuron) else self._neuron_factory(
            neuron, v_threshold, v_reset, detach_reset, init_tau, decay_input, surrogate, surrogate_alpha,
        )
        make_norm = norm if callable(norm) else partial(self._make_norm, num_frames, norm == "per_step")

        dims = list(embed_dim)
        rates = torch.linspace(0, drop_path_rate, sum(depth)).tolist()
        rate = iter(rates)
        self.patch_embed1 = PatchEmbed(in_chans, dims[0], 6, 4, 1, make_norm, neuron=None)
        self.blocks1 = nn.ModuleList(
            CBlock(dims[0], mlp_ratio, make_neuron, make_norm, next(rate)) for _ in range(depth[0]))
        self.patch_embed2 = PatchEmbed(dims[0], dims[1], 4, 2, 1, make_norm, make_neuron)
        self.blocks2 = nn.ModuleList(
            CBlock(dims[1], mlp_ratio, make_neuron, make_norm, next(rate)) for _ in range(depth[1]))
        self.patch_embed3 = PatchEmbed(dims[1], dims[2], 4, 2, 1, make_norm, make_neuron)
        self.blocks3 = nn.ModuleList(
            SABlock(dims[2], head_dim, mlp_ratio, make_neuron, make_norm, next(rate)) for _ in range(depth[2]))
        self.patch_embed4 = PatchEmbed(dims[2], dims[3], 4, 2, 1, make_norm, make_neuron)
        self.blocks4 = nn.ModuleList(
            SABlock(dims[3], head_dim, mlp_ratio, make_neuron, make_norm, next(rate)) for _ in range(depth[3]))
        if fusion:
            stage3 = self._feature_size(self.img_size, stages=3)
            if any(s % 2 for s in stage3):
                raise ValueError(f"local-global fusion needs an even stage-3 map, but img_size {self.img_size} gives "
                                 f"{stage3}; use a multiple of 32 whose stage-3 size is even (e.g. 64, 128, 224) "
                                 f"or fusion=False")
            self.local = LocalPath(dims[2], dims[3], make_neuron, make_norm)

        self.num_features = dims[3] * (2 if fusion else 1)
        self.feature_size = self._feature_size(self.img_size)
        if head == "conv3d":
            if min(self.feature_size) < 1:
                raise ValueError(f"img_size {self.img_size} is too small for the four stride stages")
            self.head_lif = make_neuron()
            # groups = dims[3]: with fusion each group pairs channels (2g, 2g+1) as in the authors' code;
            # without fusion it is depthwise.
            self.head_conv = SpikeConv3d(self.num_features, self.num_features, (num_frames, *self.feature_size),
                                       groups=dims[3])
            self.head_norm = nn.BatchNorm3d(self.num_features)
        self.head = nn.Linear(self.num_features, num_classes)
        self.apply(self._init_weights)
        if accelerate is not False:
            from ..cpu import accelerate as apply_acceleration

            apply_acceleration(self, accelerate)

    @staticmethod
    def _neuron_factory(kind, v_threshold, v_reset, detach_reset, init_tau, decay_input, surrogate, alpha):
        if kind not in NEURONS:
            raise ValueError(f"unknown neuron {kind!r}; choose one of {sorted(NEURONS)} or pass a factory")
        surr = get_surrogate(surrogate, alpha)
        common = dict(v_threshold=v_threshold, v_reset=v_reset, surrogate=surr, detach_reset=detach_reset)
        if kind == "plif":
            return partial(NEURONS[kind], init_tau=init_tau, decay_input=decay_input, **common)
        if kind == "lif":
            return partial(NEURONS[kind], tau=init_tau, decay_input=decay_input, **common)
        return partial(NEURONS[kind], **common)

    @staticmethod
    def _make_norm(num_frames: int, per_step: bool, channels: int, channels_last: bool) -> nn.Module:
        return TimeBatchNorm(channels, num_frames, per_step=per_step, channels_last=channels_last)

    @staticmethod
    def _feature_size(img_size, stages: int = 4):
        """Spatial size after ``stages`` patch embeddings (the stem, then stride-2 convs)."""
        def down(s):
            s = _out_size(s, 6, 4, 1)
            for _ in range(stages - 1):
                s = _out_size(s, 4, 2, 1)
            return s
        return tuple(down(s) for s in img_size)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm3d, TimeBatchNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    @property
    def fixed_steps(self) -> bool:
        """True when T is fixed by the architecture (per-step BN or the Conv3d head)."""
        return self.norm_type == "per_step" or self.head_type == "conv3d"

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError naming the problem if ``x`` is not a (B, in_chans, T, H, W) clip this model takes."""
        if x.dim() != 5:
            raise ValueError(f"SVFormer expects clips of shape (B, C, T, H, W), got shape {tuple(x.shape)}")
        _, c, t, h, w = x.shape
        if c != self.in_chans:
            raise ValueError(f"SVFormer was built for in_chans={self.in_chans}, got C={c} (input shape "
                             f"{tuple(x.shape)}; clips are (B, C, T, H, W))")
        if self.fixed_steps and t != self.num_frames:
            raise ValueError(f"SVFormer was built for num_frames={self.num_frames} (T), got T={t} (input shape "
                             f"{tuple(x.shape)}); per-step BN and the Conv3d head fix T")
        if self.head_type == "conv3d" and self._feature_size((h, w)) != self.feature_size:
            raise ValueError(f"SVFormer with the Conv3d head was built for img_size={self.img_size}, got "
                             f"{h}x{w} (input shape {tuple(x.shape)})")
        if self.head_type == "conv3d" and self.training and x.shape[0] < 2 and not is_synced(self.head_norm):
            raise ValueError(SMALL_BATCH_MESSAGE.format(batch=x.shape[0]))

    def _stage(self, i: int, x: torch.Tensor, t: Optional[int] = None):
        """Stage ``i`` (1-4): its patch embedding and blocks; stage 3 also returns the local path's output."""
        x = self._unit(getattr(self, f"patch_embed{i}"), x, t)
        x_local = self._unit(self.local, x, t) if i == 3 and self.fusion else None
        for blk in getattr(self, f"blocks{i}"):
            x = self._unit(blk, x, t)
        return (x, x_local) if i == 3 else x

    def _unit(self, module: nn.Module, x: torch.Tensor, t: Optional[int]) -> torch.Tensor:
        """A patch embedding, block or the local path; recomputed in the backward with 'block' checkpointing
        (a convolutional block in its two residual steps)."""
        if self.checkpointing == "block" and self._recomputes(x, t):
            if isinstance(module, CBlock):
                # Its two residual steps one at a time: the first stage's recomputation (the largest
                # transient of a checkpointed step) holds half as much, for one more kept input.
                x = checkpointed(module.conv_branch, [module], x)
                return checkpointed(module.mlp_branch, [module], x)
            return checkpointed(module, [module], x)
        return module(x, t)

    def _recomputes(self, x: torch.Tensor, t: Optional[int]) -> bool:
        """Checkpointing applies to whole clips in training, where autograd records the forward."""
        return self.training and t is None and torch.is_grad_enabled()

    def forward_features(self, x: torch.Tensor, t: Optional[int] = None) -> torch.Tensor:
        """Shape: (T, B, C, H, W) -> (T, B, num_features, H/32, W/32), real-valued. ``t``: ``x`` is the
        single time step ``t`` of a clip (streaming, evaluation only; neuron states carry over)."""
        x_local = None
        for i in range(1, 5):
            if self.checkpointing == "stage" and self._recomputes(x, t):
                modules = [getattr(self, f"patch_embed{i}"), getattr(self, f"blocks{i}")]
                if i == 3 and self.fusion:
                    modules.append(self.local)
                out = checkpointed(self._stage, modules, i, x)
            else:
                out = self._stage(i, x, t)
            if i == 3:
                x, x_local = out
            else:
                x = out
        if x_local is not None:
            x = torch.cat((x_local, x), dim=2)  # local channels first, as in the authors' code
        return x

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """Shape: (T, B, num_features, h, w) -> (B, num_classes)."""
        if self.head_type == "conv3d":
            x = self.head_lif(x).permute(1, 2, 0, 3, 4)  # (B, C, T, h, w) spikes
            x = self.head_norm(self.head_conv(x)).flatten(1)  # (B, C)
        else:
            x = x.mean(dim=(0, 3, 4))
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shape: (B, in_chans, T, H, W) -> (B, num_classes). Neuron states are reset first."""
        self.check_input(x)
        reset_states(self)
        x = x.permute(2, 0, 1, 3, 4)  # (T, B, C, H, W)
        if self.memory_format == "channels_last":
            x = x.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)  # stored as (T, B, H, W, C)
        return self.forward_head(self.forward_features(x))
