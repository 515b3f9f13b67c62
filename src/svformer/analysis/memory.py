"""Training memory per device, predicted from measured probe steps: what fits before you start.

A training step's peak is a fixed part (on a CPU the Python process and its libraries; everywhere the
weights, their gradients and AdamW's two moments) plus the activations kept for the backward, which in
SVFormer grow in proportion to the clips in the batch and to the positions of every feature map
(T x H x W: every stage's map is the input size divided by 4, 8, 16 and 32). So the planner:

1. runs real training steps (forward, backward, AdamW, twice) of the configured model at a probe
   resolution and three batch sizes, each in its own process, reads that process's peak resident
   memory (VmHWM) and fits ``peak = fixed + per_clip x batch`` by least squares (a process peak is
   not quite linear in the batch, as the allocator reuses more of its kept memory in a larger step:
   three points spanning more clips steady the slope that step 2 multiplies);
2. scales ``per_clip`` by the ratio of positions between the target and the probe resolution, and
   swaps the probe's weights, gradients and optimizer state for the target's (the Conv3d head's kernel
   grows with the input size);
3. for a GPU (``device="cuda"``), runs the probes with what runs there: the plain neurons and
   BatchNorm (the CPU kernels step aside off the CPU) with the 1-byte saved spikes, and takes the fixed
   part as the weights, gradients and optimizer state plus `CUDA_CONTEXT_MB` for the CUDA context,
   since the host process is not device memory.

No GPU is needed: a GPU figure is a prediction from the CPU's measurement of the same saved tensors.
The Conv3d head normalises over the batch, so a batch below 2 clips per device cannot train it and is
never suggested.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence

MODES = ("none", "stage", "block")
# PyTorch's CUDA context and kernel images on the device, outside what the caching allocator counts:
# typically 0.3-0.8 GB depending on the GPU and CUDA version; the larger end, to err on the safe side.
CUDA_CONTEXT_MB = 800.0
# Plain neurons and BatchNorm, as on a GPU, with what works on every device (1-byte spikes, channels-last).
GPU_PATH = {"neurons": False, "norm": False, "recompute_norm": False, "pool": False}


@dataclass
class Probe:
    """One measured training run: ``batch`` clips of ``size`` x ``size``; peak and idle resident MB."""

    batch: int
    size: int
    peak_mb: float
    idle_mb: float
    weights_mb: float


@dataclass
class MemoryPlan:
    """The predicted training peak per device for one checkpointing setting: ``fixed_mb + per_clip_mb x
    batch``, from ``probes``."""

    checkpointing: str
    device: str
    fixed_mb: float
    per_clip_mb: float
    min_batch: int
    probes: List[Probe]

    def peak_mb(self, batch: int) -> float:
        return self.fixed_mb + self.per_clip_mb * batch

    def max_batch(self, device_mb: float) -> int:
        """The largest per-device batch whose predicted peak fits in ``device_mb`` (0: none that can train)."""
        batch = int(math.floor((device_mb - self.fixed_mb) / self.per_clip_mb)) if self.per_clip_mb > 0 else 0
        return batch if batch >= self.min_batch else 0


def state_mb(num_parameters: int, bytes_per_value: int = 4) -> float:
    """Weights, gradients and AdamW's two moments."""
    return 4 * num_parameters * bytes_per_value / 2 ** 20


def _num_parameters(name: str, kwargs: dict) -> int:
    from ..models import create_model

    return sum(p.numel() for p in create_model(name, **kwargs, accelerate=False).parameters())


def _probe_size(target: int) -> int:
    """The probe resolution: the target up to 128, else 128, large enough that every layer behaves as at
    full size and small enough to be quick. Between multiples of 32 the stage maps scale exactly."""
    return min(target, 128)


def run_probe(name: str, kwargs: dict, batch: int, size: int, checkpointing: str, device: str, amp: bool,
              allocator: str = "tuned", steps: int = 2) -> Probe:
    """Measure one training run in a fresh process (its VmHWM is its own); ``allocator``: the C
    allocator setting of a CPU run ('tuned', as the `svformer` command, or 'default')."""
    env = dict(os.environ)
    if device == "cuda":
        # Live memory, not a heap's extent: every block above 64 KB is mapped on its own and returned
        # when freed, so the process peak follows the tensors alive at once, as a GPU's allocator does.
        allocator, env["MALLOC_MMAP_THRESHOLD_"] = "default", "65536"
    spec = dict(name=name, kwargs={**kwargs, "img_size": size, "checkpointing": checkpointing},
                batch=batch, device=device, amp=amp, allocator=allocator, steps=steps)
    out = subprocess.run([sys.executable, "-m", "svformer.analysis.memory", json.dumps(spec)],
                         capture_output=True, text=True, env=env)
    if out.returncode:
        lines = out.stderr.strip().splitlines()
        raise RuntimeError(f"memory probe (batch {batch}, {size}x{size}, {checkpointing}) failed: "
                           f"{lines[-1] if lines else 'no output'}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return Probe(batch, size, result["peak_mb"], result["idle_mb"], result["weights_mb"])


def plan(name: str, kwargs: dict, device: str = "cuda", modes: Sequence[str] = MODES, amp: bool = False,
         probe_size: Optional[int] = None, probe_batches: Sequence[int] = (2, 4, 6), allocator: str = "tuned",
         progress=None, sync_bn: bool = False) -> List[MemoryPlan]:
    """Predict the training peak per device of ``create_model(name, **kwargs)`` (``kwargs`` with
    ``num_frames`` and ``img_size``) for each checkpointing setting in ``modes``.

    ``device``: 'cuda' (any GPU: the plain path plus `CUDA_CONTEXT_MB`) or 'cpu' (the accelerated path,
    the whole process). ``progress(message)`` is told about each probe. ``sync_bn``: BatchNorm statistics
    span the devices (`snn.sync_norm`), so the Conv3d head trains with one clip per device; otherwise it
    needs two, and no plan names a smaller batch.
    """
    if device not in ("cuda", "cpu"):
        raise ValueError(f"device must be 'cuda' or 'cpu', got {device!r}")
    size = kwargs.get("img_size", 224)
    if not isinstance(size, int):
        if len(set(size)) != 1:
            raise ValueError(f"the planner takes square inputs, got img_size {size}")
        size = size[0]
    probe_size = probe_size or _probe_size(size)
    scale = (size / probe_size) ** 2
    target_state = state_mb(_num_parameters(name, {**kwargs, "img_size": size}))
    min_batch = 2 if kwargs.get("head", "conv3d") == "conv3d" and not sync_bn else 1
    plans = []
    for mode in modes:
        probes = []
        for batch in probe_batches:
            if progress:
                progress(f"probe: {mode} checkpointing, {batch} clips of {probe_size}x{probe_size}")
            probes.append(run_probe(name, kwargs, batch, probe_size, mode, device, amp, allocator))
        per_clip, at_zero = _fit([p.batch for p in probes], [p.peak_mb for p in probes])
        if device == "cpu":
            fixed = at_zero - probes[0].weights_mb + target_state
        else:
            fixed = target_state + CUDA_CONTEXT_MB
        plans.append(MemoryPlan(mode, device, fixed, per_clip * scale, min_batch, probes))
    return plans


def _fit(batches: Sequence[int], peaks: Sequence[float]):
    """Least-squares ``peak = at_zero + slope x batch`` (slope at least 0): ``(slope, at_zero)``."""
    mean_b, mean_p = sum(batches) / len(batches), sum(peaks) / len(peaks)
    spread = sum((b - mean_b) ** 2 for b in batches)
    if spread == 0:
        raise ValueError(f"the probes need at least two different batch sizes, got {list(batches)}")
    slope = max(sum((b - mean_b) * (p - mean_p) for b, p in zip(batches, peaks)) / spread, 0.0)
    return slope, mean_p - slope * mean_b


def plan_table(plans: List[MemoryPlan], device_gb: Sequence[float]) -> Dict[str, Dict[str, int]]:
    """{checkpointing: {"16 GB": largest batch, ...}}."""
    return {p.checkpointing: {f"{g:g} GB": p.max_batch(g * 1024) for g in device_gb} for p in plans}


def _probe_main(spec: dict) -> None:
    """The probe process: build the model, train ``steps`` steps on random clips, print peak and idle MB."""
    import torch

    from ..cpu.allocator import set_allocator

    set_allocator(spec["allocator"])
    from ..data.transforms import one_hot
    from ..engine.trainer import train_step
    from ..models import create_model

    torch.manual_seed(0)
    kwargs = dict(spec["kwargs"])
    if spec["device"] == "cuda":
        kwargs["accelerate"] = GPU_PATH
    model = create_model(spec["name"], **kwargs).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    idle = resident_mb("VmRSS")
    clips = torch.randn(spec["batch"], model.in_chans, model.num_frames, *model.img_size)
    targets = one_hot(torch.randint(0, model.num_classes, (spec["batch"],)), model.num_classes)
    for _ in range(spec["steps"]):  # the training command's step (autocast as `amp`: bfloat16 on the CPU)
        train_step(model, optimizer, clips, targets, None, torch.device("cpu"), amp=spec["amp"])
    weights = state_mb(sum(p.numel() for p in model.parameters()))
    print(json.dumps({"peak_mb": resident_mb("VmHWM"), "idle_mb": idle, "weights_mb": weights}))


def resident_mb(field: str) -> float:
    """This process's resident memory now (VmRSS) or at its peak (VmHWM), in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}: resident memory is read on Linux")


def to_json(plans: List[MemoryPlan]) -> list:
    return [asdict(p) for p in plans]


if __name__ == "__main__":
    _probe_main(json.loads(sys.argv[1]))
