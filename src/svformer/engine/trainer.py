"""The training loop: the paper's recipe as plain PyTorch, single-process or under torchrun.

    summary = train(load_config("ucf101", ["data.root=/data/ucf101"]))

Per iteration: learning rate from the warm-up + cosine schedule at the fractional epoch, mixup/cutmix
soft targets (or label-smoothed one-hot), soft cross-entropy, optional AMP (bfloat16 autocast on CPU,
float16 with a GradScaler on CUDA), gradient clipping by norm, AdamW. Per epoch: ``last.pt`` (atomic),
a numbered checkpoint every ``checkpoint_every`` epochs, validation on the held-out part of the training
list every ``eval_every`` epochs with ``best.pt`` kept on validation top-1, one metrics record. At the end:
multi-view test of the best (or last) weights, firing rates, plots. Only rank 0 writes files.

A training run holds its run folder's lock (`RunLock`) until `close()`; a run whose loss or weights stop
being finite ends with `TrainingDiverged`, naming the last good checkpoint, and never overwrites it.
A `Trainer(cfg, for_training=False)` (``svformer test``) writes nothing at all when built.
"""
from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from typing import Optional

import numpy as np
import torch
from torch import nn

from ..config import TrainConfig, from_dict, save_config, to_dict
from ..data.transforms import Mixup, one_hot
from ..models import create_model
from ..models.svformer import check_arguments
from ..snn.sync_norm import convert_sync_batchnorm
from .amp import autocast
from .checkpoint import describe_non_finite, load_checkpoint, non_finite, rng_state, save_checkpoint, set_rng_state
from .data import Datasets, build_datasets, make_loader, prepare_synthetic
from .distributed import (DistInfo, all_reduce_mean, barrier, broadcast_buffers, init_distributed, tag_warnings,
                          wrap_ddp)
from .evaluate import EvalResult, evaluate
from .logger import MetricsLogger, plot_confusion, plot_training
from .optim import build_optimizer, soft_cross_entropy
from .progress import interactive, progress
from .resources import plan_resources
from .runlock import RunLock
from .schedule import lr_at


class Stopped(RuntimeError):
    """Training stopped by a signal after writing a checkpoint it can resume from exactly."""


class TrainingDiverged(ValueError):
    """The loss or the weights became NaN or infinite; nothing after the last good checkpoint was saved."""


RESERVED_MODEL_KWARGS = {"num_classes": "the data's class count", "in_chans": "the data's channels",
                         "num_frames": "data.num_frames", "img_size": "data.crop_size"}


def pick_device(spec: str, info: DistInfo) -> torch.device:
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", info.local_rank)
        return torch.device("cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {spec!r} requested but CUDA is not available")
    return device


def build_model(cfg: TrainConfig, num_classes: int, in_chans: int, img_size: int) -> nn.Module:
    reserved = sorted(set(cfg.model.kwargs) & set(RESERVED_MODEL_KWARGS))
    if reserved:
        raise ValueError(f"model.kwargs may not set {', '.join(reserved)}: it comes from "
                         f"{', '.join(RESERVED_MODEL_KWARGS[k] for k in reserved)}")
    check_arguments(cfg.model.kwargs, where=f"model.kwargs for {cfg.model.name}")
    kwargs = dict(num_classes=num_classes, in_chans=in_chans, num_frames=cfg.data.num_frames, img_size=img_size)
    kwargs.update(cfg.model.kwargs)
    try:
        return create_model(cfg.model.name, **kwargs)
    except TypeError as e:  # an argument the model does not take
        raise ValueError(f"model.kwargs for {cfg.model.name}: {e}") from None


def train_step(model: nn.Module, optimizer, clips: torch.Tensor, targets: torch.Tensor, clip_grad: Optional[float],
               device: torch.device, amp: bool = False, scaler=None) -> float:
    """One optimisation step on soft ``targets`` (B, num_classes); returns the loss."""
    with autocast(device, amp):
        logits = model(clips)
    loss = soft_cross_entropy(logits, targets)
    # On the CPU the gradients stay where the first step put them (zeroed, not freed): made afresh in
    # every backward, they land between the step's freed activations in glibc's heap and keep that memory
    # from being reused or returned, which raises the process's peak. Elsewhere PyTorch's caching
    # allocator has no such trouble, and no gradients between steps is less memory.
    optimizer.zero_grad(set_to_none=device.type != "cpu")
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    if clip_grad:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    return float(loss.detach())


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: Optional[str] = None, for_training: bool = True):
        self.cfg = cfg
        probe = pick_device(cfg.device, DistInfo())
        resources = plan_resources(cfg.threads, cfg.data.num_workers, probe.type)
        torch.set_num_threads(resources.threads)
        self.workers = resources.workers
        if int(os.environ.get("LOCAL_RANK", "0")) == 0:
            for warning in resources.warnings:
                print(f"svformer: warning: {warning}", file=sys.stderr, flush=True)
        self.info = init_distributed(probe.type)
        if self.info.enabled:
            tag_warnings(self.info.rank)
        self.device = pick_device(cfg.device, self.info)
        self.run_dir = cfg.output_dir
        self.lock = None
        if self.info.is_main and for_training:
            if os.path.exists(self.run_dir) and not os.path.isdir(self.run_dir):
                raise ValueError(f"output_dir {self.run_dir} is a file, not a folder")
            try:
                self.lock = RunLock(self.run_dir).acquire()
                os.makedirs(os.path.join(self.run_dir, "plots"), exist_ok=True)
            except OSError as e:
                raise ValueError(f"output_dir {self.run_dir}: cannot write there ({e.strerror or e})") from None
            prepare_synthetic(cfg, progress=interactive())
            save_config(cfg, os.path.join(self.run_dir, "config.yaml"))
        barrier(self.info)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        self.data: Datasets = build_datasets(cfg)
        self.model = build_model(cfg, len(self.data.class_names), self.data.in_chans, self.data.img_size).to(self.device)
        self.module = self.model
        self.sync_bn = cfg.sync_bn and self.info.enabled
        if self.sync_bn:
            convert_sync_batchnorm(self.model)
        if self.info.enabled:
            self.model = wrap_ddp(self.model, self.device)
        if cfg.compile:
            if cfg.compile not in torch.compiler.list_backends(exclude_tags=()):
                raise ValueError(f"compile: {cfg.compile!r} is not a torch.compile backend; available: "
                                 f"{', '.join(torch.compiler.list_backends())}")
            # After the DDP wrap, as PyTorch recommends; self.module stays the plain model, so checkpoints
            # keep their keys and evaluation runs eagerly. Static shapes: a training run's never change
            # (the loader drops the last partial batch), and static kernels need no shape checks.
            self.model = torch.compile(self.model, backend=cfg.compile, dynamic=False)
        self.optimizer = build_optimizer(self.module, cfg.optim)
        self.scaler = torch.amp.GradScaler("cuda") if cfg.amp and self.device.type == "cuda" else None
        self.mixup = (Mixup(len(self.data.class_names), cfg.aug.mixup_alpha, cfg.aug.cutmix_alpha, cfg.aug.mixup_prob,
                            cfg.aug.switch_prob, cfg.aug.label_smoothing) if cfg.aug.mixup_prob > 0 else None)
        self.logger = MetricsLogger(self.run_dir, self.info.is_main and for_training)
        self.start_epoch, self.iteration, self.best_top1 = 0, 0, -1.0
        self.start_step, self.partial = 0, {"losses": [], "skipped": 0}
        self.stop_signal = None  # set by SIGTERM: save and stop after the current step
        self.train_seconds = 0.0
        self.last_good = None  # (path, epoch) of the newest checkpoint this run can go back to
        if resume:
            self._resume(resume)
            self.last_good = (resume, self.start_epoch)
            self.logger.truncate(self.start_epoch)  # rows of epochs the checkpoint does not hold
        if cfg.optim.batch_size % self.info.world_size:
            raise ValueError(f"optim.batch_size {cfg.optim.batch_size} is not divisible by the {self.info.world_size} "
                             f"processes")
        self.local_batch = cfg.optim.batch_size // self.info.world_size
        # The head's BatchNorm3d needs 2 clips per batch statistic: per device, or in all with sync_bn.
        clips = (cfg.optim.batch_size if self.sync_bn else self.local_batch) * cfg.aug.repeats
        if getattr(self.module, "head_type", None) == "conv3d" and clips < 2:
            from ..models.svformer import SMALL_BATCH_MESSAGE

            raise ValueError(SMALL_BATCH_MESSAGE.format(batch=clips))

    # ------------------------------------------------------------------------------------ checkpoints
    def _state(self, epoch: int, step: int = 0, partial: Optional[dict] = None) -> dict:
        # ``epoch`` epochs are complete, and ``step`` batches of the next (a run stopped inside an epoch,
        # with that epoch's ``partial`` losses so far).
        return {"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else None, "epoch": epoch, "step": step,
                "partial": partial or {"losses": [], "skipped": 0},
                "iteration": self.iteration, "best_top1": self.best_top1, "train_seconds": self.train_seconds,
                "config": to_dict(self.cfg), "class_names": list(self.data.class_names),
                "model_name": self.cfg.model.name, "rng": rng_state()}

    def save(self, name: str, epoch: int, step: int = 0, partial: Optional[dict] = None) -> None:
        if self.info.is_main:
            save_checkpoint(os.path.join(self.run_dir, name), self._state(epoch, step, partial))

    def close(self) -> None:
        """Release the run folder (the lock a training run holds)."""
        if getattr(self, "lock", None) is not None:  # None too when __init__ failed before taking it
            self.lock.release()
            self.lock = None

    def __del__(self):
        self.close()

    def load_weights(self, state: dict, path: str) -> None:
        """The model weights of a checkpoint ``state`` read from ``path``, checked against the data."""
        names = list(state.get("class_names", []))
        if names and names != list(self.data.class_names):
            raise ValueError(f"{path} was trained on {len(names)} classes ({', '.join(names[:3])}, ...) but the data at "
                             f"{self.cfg.data.root} has {len(self.data.class_names)} "
                             f"({', '.join(self.data.class_names[:3])}, ...)")
        self.module.load_state_dict(state["model"])

    def _diverged(self, what: str, epoch: int) -> TrainingDiverged:
        good = (f"the last good checkpoint is {self.last_good[0]} (epoch {self.last_good[1]})" if self.last_good
                else "no checkpoint was written yet")
        return TrainingDiverged(f"training diverged in epoch {epoch + 1}: {what}; nothing of it was saved, {good}; "
                                f"lower optim.lr or set optim.clip_grad")

    def _resume(self, path: str) -> None:
        state = load_checkpoint(path)
        saved = from_dict(state["config"])
        if to_dict(saved.model) != to_dict(self.cfg.model) or saved.data.num_frames != self.cfg.data.num_frames:
            raise ValueError(f"{path} was written by a run with another model ({saved.model.name}, "
                             f"{saved.model.kwargs}, T={saved.data.num_frames})")
        self.load_weights(state, path)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.start_epoch, self.iteration = state["epoch"], state["iteration"]
        self.start_step, self.partial = state.get("step", 0), state.get("partial") or {"losses": [], "skipped": 0}
        self.best_top1, self.train_seconds = state["best_top1"], state.get("train_seconds", 0.0)
        set_rng_state(state["rng"])

    # ---------------------------------------------------------------------------------------- training
    def train_one_epoch(self, epoch: int, start: int = 0, partial: Optional[dict] = None) -> dict:
        """One epoch from its batch ``start`` on (with ``partial``: the losses of the batches before it)."""
        cfg = self.cfg
        self.model.train()
        loader = make_loader(self.data.train, self.local_batch, True, self.workers, cfg.seed, epoch,
                             self.info.rank, self.info.world_size, skip_batches=start)
        steps = start + len(loader)
        if steps == 0:
            raise ValueError(f"the training set ({len(self.data.train)} videos) is smaller than one batch of "
                             f"{self.local_batch}")
        losses, skipped = list((partial or {}).get("losses", [])), int((partial or {}).get("skipped", 0))
        bar = progress(loader, desc=f"epoch {epoch + 1}/{cfg.optim.epochs}", total=steps, initial=start,
                       enabled=self.info.is_main)
        for i, batch in enumerate(bar, start):
            skipped += batch["skipped"]
            if "clip" not in batch:
                continue
            lr = lr_at(epoch + i / steps, cfg.optim)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            clips = batch["clip"].to(self.device, non_blocking=True)
            labels = batch["label"].to(self.device)
            if self.mixup is not None and clips.shape[0] % 2 == 0:
                rng = np.random.default_rng((cfg.seed, epoch, i, self.info.rank))
                clips, targets = self.mixup(clips, labels, rng)
            else:
                targets = one_hot(labels, len(self.data.class_names), cfg.aug.label_smoothing)
            loss = train_step(self.model, self.optimizer, clips, targets.to(self.device), cfg.optim.clip_grad,
                              self.device, cfg.amp, self.scaler)
            if not math.isfinite(loss):
                raise self._diverged(f"the loss is {loss} at iteration {i}", epoch)
            losses.append(loss)
            self.iteration += 1
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}")
            if self._stop_requested() and i + 1 < steps:
                self.save("last.pt", epoch, i + 1, {"losses": losses, "skipped": skipped})
                raise Stopped(f"stopped by {self.stop_signal} in epoch {epoch + 1} after batch {i + 1} of {steps}; "
                              f"{os.path.join(self.run_dir, 'last.pt')} holds the run up to there: continue with "
                              f"--resume auto")
        return {"train_loss": all_reduce_mean(float(np.mean(losses)) if losses else float("nan"), self.info,
                                              self.device),
                "lr": self.optimizer.param_groups[0]["lr"], "skipped": skipped, "steps": steps}

    def evaluate(self, dataset, desc: str, clip_fn=None, monitor: bool = True) -> EvalResult:
        broadcast_buffers(self.module, self.info)  # every rank evaluates with the statistics rank 0 saves
        loader = make_loader(dataset, self.local_batch, False, self.workers, self.cfg.seed, 0,
                             self.info.rank, self.info.world_size)
        return evaluate(self.module, loader, self.data.class_names, self.device, self.cfg.amp, self.info, clip_fn,
                        monitor, desc)

    def _stop_requested(self) -> bool:
        """Whether a stop signal arrived (on any rank: all ranks stop at the same batch)."""
        flag = self.stop_signal is not None
        if self.info.enabled:
            flag = all_reduce_mean(float(flag), self.info, self.device) > 0
            if flag and self.stop_signal is None:
                self.stop_signal = "a stop signal on another rank"
        return flag

    def fit(self) -> dict:
        """Train from the start (or the resumed position) to the last epoch. A SIGTERM (what schedulers send
        before preemption) finishes the current step, writes ``last.pt`` at that batch and raises `Stopped`."""
        previous = None
        if threading.current_thread() is threading.main_thread():
            def on_term(signum, frame):
                self.stop_signal = signal.Signals(signum).name

            previous = signal.signal(signal.SIGTERM, on_term)
        try:
            return self._fit()
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def _fit(self) -> dict:
        cfg = self.cfg
        budget = cfg.max_train_minutes * 60 if cfg.max_train_minutes is not None else None
        epoch = self.start_epoch
        for epoch in range(self.start_epoch, cfg.optim.epochs):
            start = time.perf_counter()
            resume_here = epoch == self.start_epoch and self.start_step
            record = {"epoch": epoch + 1, **self.train_one_epoch(epoch, self.start_step if resume_here else 0,
                                                                 self.partial if resume_here else None)}
            bad = non_finite({"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict()})
            if bad:  # a finite loss can hide exploded weights: check them before anything is saved
                raise self._diverged(describe_non_finite(bad), epoch)
            self.train_seconds += time.perf_counter() - start
            record["train_seconds"] = self.train_seconds
            last = epoch + 1 == cfg.optim.epochs or (budget is not None and self.train_seconds >= budget)
            if self.data.val is not None and ((epoch + 1) % cfg.eval_every == 0 or last):
                val = self.evaluate(self.data.val, "val", monitor=False)
                record["val_top1"], record["val_top5"] = val.top1, val.top5
                if val.top1 > self.best_top1:
                    self.best_top1 = val.top1
                    self.save("best.pt", epoch + 1)
            self.logger.log(record)
            if self.info.is_main:
                val_text = f", val top-1 {record['val_top1']:.3f}" if "val_top1" in record else ""
                print(f"epoch {epoch + 1}/{cfg.optim.epochs}: loss {record['train_loss']:.4f}, "
                      f"lr {record['lr']:.2e}{val_text}, {self.train_seconds:.0f}s"
                      + (f", {record['skipped']} unreadable samples skipped" if record["skipped"] else ""),
                      flush=True)
            self.save("last.pt", epoch + 1)
            self.last_good = (os.path.join(self.run_dir, "last.pt"), epoch + 1)
            if (epoch + 1) % cfg.checkpoint_every == 0:
                self.save(f"checkpoint_epoch_{epoch + 1:05d}.pt", epoch + 1)
            if last:
                break
            if self._stop_requested():
                raise Stopped(f"stopped by {self.stop_signal} after epoch {epoch + 1}; "
                              f"{os.path.join(self.run_dir, 'last.pt')} holds it: continue with --resume auto")
        barrier(self.info)
        return {"epochs_run": epoch + 1, "train_seconds": self.train_seconds}

    def test(self) -> EvalResult:
        """Multi-view test with the best validation checkpoint (else the last weights)."""
        best = os.path.join(self.run_dir, "best.pt")
        if self.data.val is not None and os.path.isfile(best):
            self.load_weights(load_checkpoint(best), best)
        result = self.evaluate(self.data.test, "test")
        if self.info.is_main:
            plot_confusion(result.confusion, self.data.class_names, os.path.join(self.run_dir, "plots",
                                                                                  "confusion_test.png"))
            rows = self.logger.read()
            if rows:
                plot_training(rows, os.path.join(self.run_dir, "plots", "training.png"))
        return result


def train(cfg: TrainConfig, resume: Optional[str] = None, test: bool = True) -> dict:
    """Train (and by default test) as the config says; returns a summary dict."""
    trainer = Trainer(cfg, resume)
    try:
        summary = trainer.fit()
        if test:
            result = trainer.test()
            summary.update({f"test_{k}": v for k, v in result.summary().items()})
            summary["per_class"] = result.per_class
            summary["firing_rates"] = result.firing_rates
    finally:
        trainer.close()
    summary["run_dir"] = cfg.output_dir
    return summary
