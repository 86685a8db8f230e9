"""The training loop: one readable loop that every method plugs into.

A *method* turns a batch into a loss (:class:`Method`; the default applies a loss function
to the model's logits and the observed labels). *Hooks* run at fixed points of the loop
(:class:`Hook`): before an epoch (curriculum relabeling, label propagation), after a batch,
after an epoch. Both may keep state, which is saved in every checkpoint.

The observed training labels live in a *label store* (``trainer.train_labels``, int8 (N, C)
on the device) that hooks may rewrite; batches read their targets from it by index.

Per epoch the loop: derives the epoch's order and augmentation from (seed, epoch); trains
under bf16 autocast on CUDA; stops with :class:`NonFiniteLossError` at the first NaN/inf
loss (before any checkpoint of that epoch is written); evaluates if asked; writes
``history.csv`` and an atomic ``checkpoint.pt``. ``fit(resume=True)`` continues from the
checkpoint and, on the CPU, ends with exactly the weights of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .. import metrics
from .._validate import check_labels
from ..config import TrainConfig
from ..data.augment import POLICIES
from .batches import Batch, BatchLoader, Preprocess, epoch_augmentation, epoch_order, split_batches
from .checkpoint import atomic_save, atomic_write_text, load_checkpoint
from .distributed import all_mean, dist_info, gather_by_index
from .utils import derive_seed, progress_enabled, resolve_device

__all__ = ["Trainer", "Method", "SupervisedMethod", "Hook", "NonFiniteLossError", "build_optimizer",
           "build_schedule"]

log = logging.getLogger("mlrobust")
CHECKPOINT = "checkpoint.pt"


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class Hook:
    """Callbacks into the loop; override what a method needs. State returned by
    :meth:`state_dict` is saved in checkpoints and restored on resume."""

    def on_fit_start(self, trainer: Trainer) -> None:
        """Once, before the first epoch that runs (also after a resume)."""

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Before epoch ``epoch`` (0-based) trains, e.g. to relabel the label store."""

    def on_batch_end(self, trainer: Trainer, batch: Batch, logits: Tensor, loss: Tensor) -> None:
        """After the optimiser step of each batch."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, record: dict[str, float]) -> None:
        """After epoch ``epoch``; may add entries to its history ``record``."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class Method(ABC):
    """How a batch becomes a loss. Subclasses implement :meth:`training_loss` and may
    contribute hooks; :class:`SupervisedMethod` is plain training with a criterion."""

    name = "method"

    def hooks(self) -> list[Hook]:
        return []

    @abstractmethod
    def training_loss(self, trainer: Trainer, batch: Batch) -> tuple[Tensor, Tensor]:
        """Return (scalar loss, logits of the batch)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class SupervisedMethod(Method):
    """``criterion(model(images), observed labels)``: BCE, partial-BCE, ASL, ..."""

    name = "supervised"

    def __init__(self, criterion: Callable[[Tensor, Tensor], Tensor], hooks: Sequence[Hook] = ()) -> None:
        self.criterion = criterion
        self._hooks = list(hooks)

    def hooks(self) -> list[Hook]:
        return self._hooks

    def training_loss(self, trainer: Trainer, batch: Batch) -> tuple[Tensor, Tensor]:
        logits = trainer.model(batch.images)
        return self.criterion(logits, batch.targets), logits


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD / Adam / AdamW; no weight decay on biases and normalisation parameters."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def build_schedule(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step learning-rate multiplier: one-cycle (linear warm-up, cosine decay), cosine,
    step (divide by 10 at ``lr_steps`` epochs) or constant."""
    total = max(1, cfg.epochs * steps_per_epoch)
    warm = int(cfg.warmup * total)
    steps = sorted(cfg.lr_steps)

    def factor(step: int) -> float:
        if cfg.schedule == "constant":
            return 1.0
        if cfg.schedule == "step":
            epoch = step // max(1, steps_per_epoch)
            return 0.1 ** sum(epoch >= s for s in steps)
        if cfg.schedule == "onecycle" and step < warm:
            return 0.04 + 0.96 * step / warm
        start = warm if cfg.schedule == "onecycle" else 0
        t = min(1.0, (step - start) / max(1, total - start))
        return 0.5 * (1 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class Trainer:
    """Trains ``model`` with ``method`` on ``train_set`` whose observed labels are
    ``train_labels`` (int8 (N, C)); see the module docstring for the loop."""

    def __init__(self, model: nn.Module, method: Method, train_set: torch.utils.data.Dataset,
                 train_labels: Tensor, config: TrainConfig, *, val_set: Any = None,
                 hooks: Sequence[Hook] = (), run_dir: str | Path | None = None, augment: str = "flip",
                 num_workers: int = 0, run_config: dict[str, Any] | None = None) -> None:
        check_labels(train_labels, "train_labels", values=True)  # once here, not in every loss call
        if train_labels.shape[0] != len(train_set):
            raise ValueError(f"train_labels has {train_labels.shape[0]} rows but the training set has "
                             f"{len(train_set)} images")
        self.config = config
        self.dist = dist_info()
        self.device = resolve_device(config.device)
        if self.device.type == "cuda" and self.dist.distributed and self.device.index is None:
            self.device = torch.device("cuda", self.dist.local_rank)  # one GPU per process
        self.module = model.to(self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick kernels
            if config.channels_last:
                self.module = self.module.to(memory_format=torch.channels_last)
        wrapped: nn.Module = self.module
        if self.dist.distributed:  # gradients averaged over the ranks
            wrapped = nn.parallel.DistributedDataParallel(
                self.module, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.model = torch.compile(wrapped) if config.compile else wrapped
        self.method = method
        self.hooks = [*method.hooks(), *hooks]
        self.train_set, self.val_set = train_set, val_set
        self.train_labels = train_labels.to(self.device, torch.int8).clone()
        self.run_dir = Path(run_dir) if run_dir is not None else None
        if augment != "none" and augment not in POLICIES:
            raise ValueError(f"augment must be 'none' or one of {sorted(POLICIES)}, got {augment!r}")
        self.augment = augment
        self.loader = BatchLoader(train_set, self.device, num_workers)
        if getattr(train_set, "kind", "images") == "features":
            # precomputed feature maps go to the head as they are
            self.preprocess = lambda x, augment=None: x
            self.augment = "none"
        else:
            self.preprocess = Preprocess(self.device, channels_last=self.device.type == "cuda" and config.channels_last)
        shard = -(-len(train_set) // self.dist.world_size)  # images per rank and epoch
        self.steps_per_epoch = len(split_batches(torch.arange(shard), config.batch_size, drop_last=True))
        self.optimizer = build_optimizer(self.module, config)
        self.scheduler = build_schedule(self.optimizer, config, self.steps_per_epoch)
        self.history: list[dict[str, float]] = []
        self.epoch = 0  # epochs completed
        self.global_step = 0
        # what must match for a resume to continue the same run (see _check_resumable)
        self.run_config = run_config

    # ---------------------------------------------------------------- autocast / RNG
    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA when ``amp`` is on; a no-op on the CPU."""
        if self.device.type == "cuda" and self.config.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _epoch_rng(self, epoch: int) -> contextlib.AbstractContextManager:
        """Seed torch's RNG (dropout, ...) from (seed, epoch) inside a fork, so epoch ``e``
        draws the same numbers after a resume and the caller's RNG is left untouched."""
        devices = [self.device] if self.device.type == "cuda" else []
        stack = contextlib.ExitStack()
        stack.enter_context(torch.random.fork_rng(devices=devices))
        torch.manual_seed(derive_seed(self.config.seed, epoch, 2))
        return stack

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": 1,
            "epoch": self.epoch,
            "global_step": self.global_step,
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "train_labels": self.train_labels.cpu(),
            "history": self.history,
            "method": self.method.state_dict(),
            "hooks": [h.state_dict() for h in self.hooks],
            "run_config": self.run_config,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._check_resumable(state.get("run_config"))
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.train_labels = state["train_labels"].to(self.device)
        self.history = list(state["history"])
        self.epoch, self.global_step = int(state["epoch"]), int(state["global_step"])
        self.method.load_state_dict(state["method"])
        if len(state["hooks"]) != len(self.hooks):
            raise ValueError(f"checkpoint has state for {len(state['hooks'])} hooks, this run has {len(self.hooks)}")
        for hook, hook_state in zip(self.hooks, state["hooks"]):
            hook.load_state_dict(hook_state)

    # settings that may differ between a run and its resumption
    _RESUME_FREE = {("train", "epochs"), ("train", "device"), ("train", "progress"), ("train", "checkpoint"),
                    ("train", "eval_batch_size"), ("data", "num_workers"), ("data", "cache")}

    def _check_resumable(self, saved: dict[str, Any] | None) -> None:
        """Refuse to resume a checkpoint written under a different config: the result would
        silently mix two runs."""
        if saved is None or self.run_config is None:
            return
        diffs = []
        for section in sorted(set(saved) | set(self.run_config)):
            a, b = saved.get(section), self.run_config.get(section)
            if isinstance(a, dict) and isinstance(b, dict):
                diffs += [f"{section}.{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
                          if a.get(k) != b.get(k) and (section, k) not in self._RESUME_FREE]
            elif a != b:
                diffs.append(f"{section}: {a!r} -> {b!r}")
        if diffs:
            raise ValueError(f"cannot resume {self.checkpoint_path}: it was written with a different config ("
                             + "; ".join(diffs[:6]) + "). Start a new run (another name or output_dir).")

    @property
    def checkpoint_path(self) -> Path | None:
        return self.run_dir / CHECKPOINT if self.run_dir is not None else None

    # ---------------------------------------------------------------- training
    def fit(self, resume: bool = False) -> list[dict[str, float]]:
        """Train for ``config.epochs`` epochs (the remaining ones when resuming)."""
        path = self.checkpoint_path
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(derive_seed(self.config.seed, 2**31 - 1))
            for hook in self.hooks:  # before restoring, so a resume restores over it
                hook.on_fit_start(self)
        if resume and path is not None and path.is_file():
            self.load_state_dict(load_checkpoint(path, map_location=self.device))
            log.info("resumed from %s after epoch %d", path, self.epoch)
        total = self.config.epochs * self.steps_per_epoch
        bar = tqdm(total=total, initial=self.epoch * self.steps_per_epoch, desc="train", leave=False,
                   disable=not progress_enabled(self.config.progress), dynamic_ncols=True)
        try:
            while self.epoch < self.config.epochs:
                self._run_epoch(self.epoch, bar)
        finally:
            bar.close()
        return self.history

    def _run_epoch(self, epoch: int, bar: tqdm) -> None:
        start = time.perf_counter()
        # everything an epoch does, hooks and evaluation included, draws from (seed, epoch)
        with self._epoch_rng(epoch):
            for hook in self.hooks:
                hook.on_epoch_start(self, epoch)
            mean_loss = self._train_steps(epoch, bar)
            seconds = time.perf_counter() - start
            record = {"epoch": epoch + 1, "step": self.global_step, "lr": self.optimizer.param_groups[0]["lr"],
                      "train_loss": mean_loss, "seconds": seconds,
                      "images_per_s": self.steps_per_epoch * self.config.batch_size / max(seconds, 1e-9)}
            every = self.config.eval_every
            if self.val_set is not None and every > 0 and (epoch + 1) % every == 0:
                record.update({f"val_{k}": v for k, v in self.evaluate(self.val_set).items()})
            for hook in self.hooks:
                hook.on_epoch_end(self, epoch, record)
        self.history.append(record)
        self.epoch = epoch + 1
        log.info("epoch %d/%d  loss %.4f  %.1fs", epoch + 1, self.config.epochs, mean_loss, seconds)
        if self.run_dir is not None and self.dist.rank == 0:  # rank 0 writes for everyone
            self._write_history()
            if self.config.checkpoint:
                first = not self.checkpoint_path.exists()
                atomic_save(self.state_dict(), self.checkpoint_path)
                if first:  # state that cannot be read back with weights_only=True fails now, not at resume
                    load_checkpoint(self.checkpoint_path)

    def _train_steps(self, epoch: int, bar: tqdm) -> float:
        cfg = self.config
        self.model.train()
        order = epoch_order(len(self.train_set), cfg.seed, epoch, rank=self.dist.rank,
                            world_size=self.dist.world_size)
        batches = split_batches(order, cfg.batch_size, drop_last=True)
        # one host-to-device copy per epoch for the indices and augmentations of all its batches
        sizes = [len(b) for b in batches]
        device_index = torch.cat(batches).to(self.device, non_blocking=True).split(sizes) if batches else []
        augmentations = epoch_augmentation(sizes, self.augment, cfg.seed, epoch, self.device, self.dist.rank)
        losses: list[Tensor] = []
        checked = 0  # losses[:checked] are known to be finite
        check_every = 1 if self.device.type == "cpu" else 50  # a sync per step is free on the CPU only
        for step, (images, index) in enumerate(self.loader(batches)):
            batch = Batch(self.preprocess(images, augmentations[step]), self.train_labels[device_index[step]], index)
            losses.append(self.train_step(batch))
            if len(losses) - checked >= check_every or step + 1 == len(batches):
                self._check_finite(losses, checked, epoch)
                checked = len(losses)
            bar.update(1)
        mean = torch.stack(losses).mean().item() if losses else float("nan")
        return all_mean(mean, self.device)

    def train_step(self, batch: Batch) -> Tensor:
        """One optimisation step on a prepared batch: the method's loss under autocast,
        backward, optional gradient clipping, optimiser and schedule step, batch-end hooks.
        Returns the detached loss (no device sync; the loop checks it in groups)."""
        with self.autocast():
            loss, logits = self.method.training_loss(self, batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.module.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.global_step += 1
        for hook in self.hooks:
            hook.on_batch_end(self, batch, logits, loss)
        return loss.detach().float()

    def _check_finite(self, losses: list[Tensor], start: int, epoch: int) -> None:
        """Raise at the first non-finite loss in ``losses[start:]`` (one device sync)."""
        recent = torch.stack(losses[start:])
        bad = (~torch.isfinite(recent)).nonzero()
        if len(bad):
            i = start + int(bad[0, 0])
            global_step = self.global_step - len(losses) + i + 1
            raise NonFiniteLossError(
                f"training loss is {losses[i].item()} at epoch {epoch + 1}, step {i + 1} of the epoch "
                f"(global step {global_step}); stopped before writing a checkpoint for this epoch")

    def _write_history(self) -> None:
        keys = list(dict.fromkeys(k for rec in self.history for k in rec))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        writer.writerows(self.history)
        atomic_write_text(buf.getvalue(), self.run_dir / "history.csv")

    # ---------------------------------------------------------------- inference
    @torch.inference_mode()
    def predict(self, dataset: torch.utils.data.Dataset, batch_size: int | None = None) -> Tensor:
        """Logits (N, C), float32 on the CPU, in dataset order, in eval mode. With several
        ranks each predicts its shard and the rows are gathered by dataset index."""
        was_training = self.module.training
        self.module.eval()
        bs = batch_size or self.config.eval_batch_size
        loader = BatchLoader(dataset, self.device) if dataset is not self.train_set else self.loader
        shard = epoch_order(len(dataset), 0, 0, shuffle=False, rank=self.dist.rank, world_size=self.dist.world_size)
        out = []
        for images, _ in loader(list(shard.split(bs))):
            with self.autocast():  # the unwrapped module: no DDP synchronisation at inference
                out.append(self.module(self.preprocess(images)).float())
        self.module.train(was_training)
        if not out:
            return torch.empty(0)
        return gather_by_index(torch.cat(out), shard, len(dataset)).cpu()

    def evaluate(self, dataset: Any, labels: Tensor | None = None, **kwargs: Any) -> dict[str, float]:
        """:func:`mlrobust.metrics.evaluate` of the model on ``dataset`` against ``labels``
        (default: the dataset's ground truth)."""
        truth = dataset.labels if labels is None else labels
        return metrics.evaluate(self.predict(dataset), truth.cpu(), **kwargs)
