"""Typed experiment configuration: dataclasses, YAML files and ``key=value`` dotted overrides.

    cfg = load_config("configs/ucf101.yaml", ["optim.lr=0.003", "data.root=/data/ucf101"])
    cfg.optim.lr  -> 0.003

Unknown keys (in a file or an override) are errors that name the key and list the valid ones; values
are checked against the field's type and then against their range (`validate`). `to_dict` gives the
resolved config, which the engine saves in the run folder and in every checkpoint.
"""
from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import yaml

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "configs")


class ConfigError(ValueError):
    """A config file or override with an unknown key or a value of the wrong type."""


@dataclass
class ModelConfig:
    name: str = "svformer_paper"
    # Constructor overrides for the registered model (num_classes, in_chans, num_frames and img_size are
    # filled in from the data section).
    kwargs: Dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    dataset: str = "ucf101"           # ucf101, hmdb51, ntu60_xsub, ntu60_xview, csv, folder, dvs128_gesture,
                                      # event_folder, event_csv (your own event recordings, any format)
    root: str = ""
    split: int = 1
    num_frames: int = 16              # T: frames per clip = SNN time steps
    sampling_rate: int = 4
    crop_size: int = 224
    val_fraction: float = 0.1         # carved from the training list by group; 0 = no validation split
    test_clips: int = 5               # test views: clips x crops, logits summed per video
    test_crops: int = 3
    # Loader workers per process (None: 1 on a CPU; on a GPU the process's share of the cores less one, at
    # most 8).
    num_workers: Optional[int] = None
    on_error: str = "skip"            # an unreadable sample: 'skip' (warn and count, in every split) or 'raise'
    split_by: str = "number"          # DVS frames: 'number' or 'time'
    downsample: int = 1               # DVS: 128 / downsample pixels
    event_geometry: str = "resize"    # own event data to crop_size: 'resize' (area, counts kept), 'crop', 'downsample'
    sensor_size: Optional[Tuple[int, int]] = None  # events: (height, width) where a file does not say
    cache_dir: Optional[str] = None   # DVS: cut samples cached here (default ~/.cache/svformer/events/...)
    synthetic: Optional[str] = None   # 'video' or 'events': write the synthetic dataset to root first
    synthetic_size: int = 64
    synthetic_frames: int = 32
    synthetic_clips_per_group: int = 4
    synthetic_train_groups: int = 6


@dataclass
class AugConfig:
    rand_augment: Optional[str] = "rand-m5-n2-mstd0.25"
    erasing_p: float = 0.25
    scale: Tuple[float, float] = (0.08, 1.0)
    ratio: Tuple[float, float] = (0.75, 1.3333333333333333)
    flip: bool = True                 # must be off where left/right is the class (e.g. motion direction)
    mixup_alpha: float = 0.8
    cutmix_alpha: float = 1.0
    mixup_prob: float = 1.0           # 0 disables mixup/cutmix
    switch_prob: float = 0.5
    label_smoothing: float = 0.1
    repeats: int = 2                  # repeated augmentation: augmented copies of each clip per batch


@dataclass
class OptimConfig:
    lr: float = 6e-3
    min_lr: float = 1e-6
    warmup_lr: float = 1e-6
    warmup_epochs: float = 30
    epochs: int = 600
    weight_decay: float = 0.05
    betas: Tuple[float, float] = (0.9, 0.999)
    clip_grad: Optional[float] = 20.0
    batch_size: int = 64              # videos per step over all processes (x repeats clips)
    # The authors' PLIF w is a 0-dim parameter that their optimizer decays; keep for
    # fidelity, set False to exempt it like norms and biases.
    decay_neuron_w: bool = True


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    aug: AugConfig = field(default_factory=AugConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    output_dir: str = "runs/experiment"
    seed: int = 6666
    amp: bool = False                 # bfloat16 autocast on CPU, float16 + GradScaler on CUDA
    # torch.compile backend for the training forward+backward ("inductor" for speed; None: eager). The
    # first step pays the compile time (over 25 min for the paper model on a 2-core CPU; meant for GPUs);
    # evaluation stays eager.
    compile: Optional[str] = None
    device: str = "auto"              # auto, cpu, cuda, cuda:N
    eval_every: int = 5               # epochs between validation passes
    checkpoint_every: int = 50        # epochs between numbered checkpoints (last.pt is written every epoch)
    max_train_minutes: Optional[float] = None  # stop training early (the demo's time budget)
    threads: Optional[int] = None     # compute threads per process (None: OMP_NUM_THREADS, else cores / local processes)
    # BatchNorm statistics over the global batch under torchrun (lets the Conv3d head train with one clip
    # per device); false: each process normalises its own part, as the paper's recipe does.
    sync_bn: bool = False


def _type_ok(value, tp) -> Tuple[bool, Any]:
    origin = typing.get_origin(tp)
    if tp is Any:
        return True, value
    if origin is typing.Union:
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return True, None
        for a in args:
            if a is type(None):
                continue
            ok, v = _type_ok(value, a)
            if ok:
                return True, v
        return False, value
    if origin in (tuple, Tuple):
        args = typing.get_args(tp)
        if isinstance(value, (list, tuple)) and len(value) == len(args):
            converted = [_type_ok(v, a) for v, a in zip(value, args)]
            if all(ok for ok, _ in converted):
                return True, tuple(v for _, v in converted)
        return False, value
    if origin in (dict, Dict):
        return isinstance(value, dict), value
    if origin in (list, List):
        return isinstance(value, list), value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return True, float(value)
    if tp is float and isinstance(value, str):
        # YAML 1.1 reads 3e-3 (no dot, unsigned exponent) as a string; people type it as a number
        try:
            return True, float(value)
        except ValueError:
            return False, value
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return True, value
    if tp in (str, bool):
        return isinstance(value, tp), value
    return isinstance(value, tp), value


def _build(cls, data: dict, path: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        full = f"{path}.{key}" if path else key
        if key not in names:
            raise ConfigError(f"unknown config key {full!r}; valid keys here: {', '.join(sorted(names))}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value, full)
            continue
        ok, converted = _type_ok(value, tp)
        if not ok:
            raise ConfigError(f"config key {full!r} expects {_type_name(tp)}, got {value!r}")
        kwargs[key] = converted
    return cls(**kwargs)


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _set_dotted(data: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted!r}: {k!r} is not a section")
    node[keys[-1]] = value


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "kwargs" else v
    return out


def resolve_config_path(name_or_path: str) -> str:
    """A YAML path, or the name of a shipped config (``ucf101``, ``demo``, ...)."""
    if os.path.isfile(name_or_path):
        return name_or_path
    shipped = os.path.join(CONFIG_DIR, f"{name_or_path}.yaml")
    if os.path.isfile(shipped):
        return shipped
    raise FileNotFoundError(f"config {name_or_path!r} not found (not a file, and not one of: "
                            f"{', '.join(list_configs())})")


def list_configs() -> List[str]:
    return sorted(f[:-5] for f in os.listdir(CONFIG_DIR) if f.endswith(".yaml"))


def load_config(source: Optional[str] = None, overrides: Optional[List[str]] = None,
                base: Optional[dict] = None) -> TrainConfig:
    """Defaults <- YAML file (path or shipped name) or ``base`` dict <- ``key=value`` overrides (values
    parsed as YAML)."""
    data: dict = dict(base or {})
    if source:
        path = resolve_config_path(source)
        with open(path) as f:
            try:
                data = yaml.safe_load(f) or {}
            except yaml.YAMLError as e:
                raise ConfigError(f"{path}: invalid YAML ({e})") from None
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        patch: dict = {}
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: invalid value ({str(e).splitlines()[0]})") from None
        _set_dotted(patch, key.strip(), parsed)
        data = _merge(data, patch)
    return validate(_build(TrainConfig, data, ""))


# (dotted key, test, what it must be)
_RULES = [
    ("optim.epochs", lambda v: v >= 1, "at least 1"),
    ("optim.batch_size", lambda v: v >= 1, "at least 1"),
    ("optim.lr", lambda v: v > 0, "positive"),
    ("optim.warmup_epochs", lambda v: v >= 0, "0 or more"),
    ("optim.weight_decay", lambda v: v >= 0, "0 or more"),
    ("optim.clip_grad", lambda v: v is None or v > 0, "positive or null"),
    ("eval_every", lambda v: v >= 1, "at least 1 (epochs between validation passes)"),
    ("checkpoint_every", lambda v: v >= 1, "at least 1 (epochs between numbered checkpoints)"),
    ("threads", lambda v: v is None or v >= 1, "at least 1 or null"),
    ("max_train_minutes", lambda v: v is None or v >= 0, "0 or more, or null"),
    ("data.num_frames", lambda v: v >= 1, "at least 1"),
    ("data.sampling_rate", lambda v: v >= 1, "at least 1"),
    ("data.crop_size", lambda v: v >= 1, "at least 1"),
    ("data.split", lambda v: v >= 1, "at least 1"),
    ("data.val_fraction", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("data.test_clips", lambda v: v >= 1, "at least 1"),
    ("data.test_crops", lambda v: v in (1, 3), "1 or 3"),
    ("data.num_workers", lambda v: v is None or v >= 0, "0 or more, or null"),
    ("data.downsample", lambda v: v >= 1, "at least 1"),
    ("data.on_error", lambda v: v in ("skip", "raise"), "'skip' or 'raise'"),
    ("data.split_by", lambda v: v in ("number", "time"), "'number' or 'time'"),
    ("data.event_geometry", lambda v: v in ("resize", "crop", "downsample"), "'resize', 'crop' or 'downsample'"),
    ("data.sensor_size", lambda v: v is None or (len(v) == 2 and all(int(x) >= 1 for x in v)),
     "null or [height, width]"),
    ("aug.erasing_p", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("aug.mixup_prob", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("aug.repeats", lambda v: v >= 1, "at least 1"),
    ("aug.label_smoothing", lambda v: 0 <= v < 1, "in [0, 1)"),
]


def validate(cfg: TrainConfig) -> TrainConfig:
    """Check every value against its range; raise `ConfigError` naming the first key out of range."""
    for dotted, ok, what in _RULES:
        node = cfg
        for part in dotted.split("."):
            node = getattr(node, part)
        if not ok(node):
            raise ConfigError(f"config key {dotted!r} must be {what}, got {node!r}")
    if cfg.aug.rand_augment:
        from .data.transforms import parse_rand_augment

        try:
            parse_rand_augment(cfg.aug.rand_augment)
        except ValueError as e:
            raise ConfigError(f"config key 'aug.rand_augment': {e}") from None
    return cfg


def to_dict(cfg) -> dict:
    """The resolved config as plain data (tuples become lists), for YAML/JSON and checkpoints."""
    def plain(v):
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, list):
            return [plain(x) for x in v]
        return v
    return plain(dataclasses.asdict(cfg))


def from_dict(data: dict) -> TrainConfig:
    return validate(_build(TrainConfig, data, ""))


def save_config(cfg: TrainConfig, path: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        yaml.safe_dump(to_dict(cfg), f, sort_keys=False)
    os.replace(tmp, path)
