"""The training loop: one readable loop that every method plugs into.

A *method* turns a batch into a loss (:class:`~mlrobust.engine.method.Method`); *hooks* run
at fixed points of the loop (:class:`~mlrobust.engine.method.Hook`): before an epoch
(curriculum relabeling, label propagation), after a batch, after an epoch. Both may keep
state, which is saved in every checkpoint.

The observed training labels live in a *label store* (:attr:`Trainer.train_labels`, int8
(N, C) on the device) that hooks may replace with :meth:`Trainer.set_train_labels`; batches
read their targets from it by index.

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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .. import metrics
from .._validate import check_labels
from ..data.augment import POLICIES, AugmentParams
from ..data.dataset import LabelledDataset, check_dataset
from ..data.preprocess import Preprocess
from .batches import (AUGMENT_STREAM, DROPOUT_STREAM, Batch, BatchLoader, FeatureViewMaker, ViewMaker,
                      epoch_augmentation, epoch_order, split_batches)
from .checkpoint import atomic_save, atomic_write_text, load_checkpoint
from .distributed import all_mean, dist_info, gather_by_index
from .frozen_cache import augment_unservable, frozen_maps
from .method import Hook, Method
from .train_config import TrainConfig
from .utils import derive_seed, progress_enabled, resolve_device

__all__ = ["Trainer", "NonFiniteLossError", "build_optimizer", "build_schedule", "CHECKPOINT"]

log = logging.getLogger("mlrobust")
CHECKPOINT = "checkpoint.pt"


#: The largest |logit| the loop accepts: beyond it a model has diverged even if its loss is
#: still finite (a sigmoid is 1 - 1e-17 at 40).
LOGIT_LIMIT = 1e6


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


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


def training_autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    """The training step's precision context: bf16 autocast on CUDA when ``amp`` is on, a
    no-op elsewhere."""
    if device.type == "cuda" and amp:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Trainer:
    """Trains ``model`` with ``method`` on ``train_set`` whose observed labels are
    ``train_labels`` (int8 (N, C)); see the module docstring for the loop.

    ``run_config`` is saved in every checkpoint as it is (the experiment's config), so that
    whoever resumes can check that the run is the same; the trainer itself does not read it.
    """

    def __init__(self, model: nn.Module, method: Method, train_set: LabelledDataset,
                 train_labels: Tensor, config: TrainConfig, *, val_set: LabelledDataset | None = None,
                 hooks: Sequence[Hook] = (), run_dir: str | Path | None = None, augment: str = "flip",
                 num_workers: int = 0, run_config: dict[str, Any] | None = None) -> None:
        check_dataset(train_set, "train_set")
        if val_set is not None:
            check_dataset(val_set, "val_set")
        if augment != "none" and augment not in POLICIES:
            raise ValueError(f"augment must be 'none' or one of {sorted(POLICIES)}, got {augment!r}")
        self.config = config
        self.dist = dist_info()
        self.device = resolve_device(config.device)
        if self.device.type == "cuda" and self.dist.distributed and self.device.index is None:
            self.device = torch.device("cuda", self.dist.local_rank)  # one GPU per process
        self.module = model.to(self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick kernels
        self.features_only = train_set.kind == "features"
        if config.channels_last and not self.features_only:
            # NHWC convolutions are faster on CUDA and on oneDNN CPUs alike (a head on stored
            # NCHW feature maps is not: it stays as it is)
            self.module = self.module.to(memory_format=torch.channels_last)
        # train.cache_frozen: the frozen layers run once per image (frozen_cache), steps run the rest
        self.frozen_prefix, trained = self._split_frozen(augment) if config.cache_frozen else (None, self.module)
        self._maps: tuple[Tensor, Tensor] | None = None  # (maps, rows of the training set in them)
        wrapped: nn.Module = trained
        if self.dist.distributed:  # gradients averaged over the ranks
            wrapped = nn.parallel.DistributedDataParallel(
                trained, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.model = torch.compile(wrapped) if config.compile else wrapped
        self.method = method
        self.hooks = [*method.hooks(), *hooks]
        self.train_set, self.val_set = train_set, val_set
        self._watch: list[Tensor] = []  # per step of the current epoch: loss, largest |logit|, gradient norm
        self._train_labels = self._checked_labels(train_labels)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.loader = BatchLoader(train_set, self.device, num_workers)
        # precomputed feature maps go to the head as they are: no normalisation, no augmentation,
        # except that a dataset storing augmented copies for the policy serves one of them
        self.feature_views = getattr(train_set, "view_draws", {}) if self.features_only else {}
        self.feature_augment = augment if augment in self.feature_views else "none"
        self.augment = "none" if self.features_only else augment
        self.preprocess: Callable[..., Tensor] = (
            (lambda x, augment=None: x) if self.features_only else
            Preprocess(self.device, channels_last=config.channels_last))
        shard = -(-len(train_set) // self.dist.world_size)  # images per rank and epoch
        self.steps_per_epoch = len(split_batches(torch.arange(shard), config.batch_size, drop_last=True))
        self.optimizer = build_optimizer(self.module, config)
        self.scheduler = build_schedule(self.optimizer, config, self.steps_per_epoch)
        self.history: list[dict[str, float]] = []
        self.epoch = 0  # epochs completed
        self.global_step = 0
        self.run_config = run_config

    def _split_frozen(self, augment: str) -> tuple[nn.Module | None, nn.Module]:
        """(the model's frozen leading layers, the network after them) for ``cache_frozen``,
        or (None, the model) where stored maps cannot serve the run (the reason is logged):
        the option changes the speed, never the result."""
        split = getattr(self.module, "split_frozen", None)
        if self.features_only:
            reason = "the training set holds precomputed feature maps already"
        elif augment_unservable(augment):
            reason = augment_unservable(augment)
        elif split is None:
            reason = f"{type(self.module).__name__} cannot be split at its frozen layers (no split_frozen())"
        else:
            try:
                return split()
            except ValueError as err:
                reason = str(err)
        log.info("train.cache_frozen does not apply, the frozen layers run at every step: %s", reason)
        return None, self.module

    # ---------------------------------------------------------------- the label store
    @property
    def train_labels(self) -> Tensor:
        """The observed training labels, int8 (N, C) on the device; batches read their
        targets from here. Replace them with :meth:`set_train_labels`, never in place."""
        return self._train_labels

    def set_train_labels(self, labels: Tensor) -> None:
        """Replace the label store (a relabeling or propagation step): checked once here
        (shape, values in {-1, 0, 1}), then moved to the device as int8."""
        self._train_labels = self._checked_labels(labels)

    def _checked_labels(self, labels: Tensor) -> Tensor:
        check_labels(labels, "train_labels", values=True, zero_means="unknown")  # once here, not in every loss call
        if labels.shape[0] != len(self.train_set):
            raise ValueError(f"train_labels has {labels.shape[0]} rows but the training set has "
                             f"{len(self.train_set)} images")
        return labels.to(self.device, torch.int8).clone()

    # ---------------------------------------------------------------- autocast / RNG
    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA when ``amp`` is on; a no-op on the CPU."""
        return training_autocast(self.device, self.config.amp)

    def _epoch_rng(self, epoch: int) -> contextlib.AbstractContextManager:
        """Seed torch's RNG (dropout, ...) from (seed, epoch) inside a fork, so epoch ``e``
        draws the same numbers after a resume and the caller's RNG is left untouched."""
        devices = [self.device] if self.device.type == "cuda" else []
        stack = contextlib.ExitStack()
        stack.enter_context(torch.random.fork_rng(devices=devices))
        torch.manual_seed(derive_seed(self.config.seed, epoch, DROPOUT_STREAM))
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
        if len(state["hooks"]) != len(self.hooks):
            raise ValueError(f"checkpoint has state for {len(state['hooks'])} hooks, this run has {len(self.hooks)}")
        self.module.load_state_dict(state["model"])
        self._maps = None  # fetched again under the loaded weights' key
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.set_train_labels(state["train_labels"])
        self.history = list(state["history"])
        self.epoch, self.global_step = int(state["epoch"]), int(state["global_step"])
        self.method.load_state_dict(state["method"])
        for hook, hook_state in zip(self.hooks, state["hooks"]):
            hook.load_state_dict(hook_state)

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
        self.prepare_frozen_maps()  # after hooks and resume: from the weights training starts with
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
        self._watch = []
        checked = 0  # losses[:checked] are known to be finite
        check_every = 1 if self.device.type == "cpu" else 50  # a sync per step is free on the CPU only
        for step, (images, index) in enumerate(self.loader(batches)):
            losses.append(self.train_step(self._batch(images, index, device_index[step], augmentations[step],
                                                      epoch, step)))
            if len(losses) - checked >= check_every or step + 1 == len(batches):
                self._check_finite(losses, checked, epoch)
                checked = len(losses)
            bar.update(1)
        mean = torch.stack(losses).mean().item() if losses else float("nan")
        return all_mean(mean, self.device)

    def prepare_frozen_maps(self) -> None:
        """With ``cache_frozen`` in effect, fetch (or compute once) the frozen layers' maps
        of the training set (:func:`~mlrobust.engine.frozen_cache.frozen_maps`); :meth:`fit`
        calls it first. Without, nothing to do."""
        if self.frozen_prefix is not None and self._maps is None:
            self._maps = frozen_maps(self.frozen_prefix, self.train_set, self.preprocess, self.device,
                                     self.config.eval_batch_size, self.autocast)

    def training_batch(self, index: Tensor, augment: AugmentParams | None = None, epoch: int = 0,
                       step: int = 0, images: Tensor | None = None) -> Batch:
        """The batch a training step sees for the training images ``index`` (dataset rows):
        its default view under ``augment``, targets from the label store; for benchmarks and
        inspection (the loop builds its batches the same way). ``images``: the uint8 images
        of ``index`` already on the device (loaded here otherwise)."""
        self.prepare_frozen_maps()
        if images is None:
            images, index = next(self.loader([index]))
        return self._batch(images, index, index.to(self.device), augment, epoch, step)

    def _batch(self, images: Tensor, index: Tensor, device_index: Tensor, augment: Any, epoch: int,
               step: int) -> Batch:
        """The batch a method sees: the default view, its targets from the label store, and
        (for images) the raw images with a maker of further views."""
        targets = self.train_labels[device_index]
        if self.features_only:
            args = (self.train_set, self.config.seed, epoch, step, self.dist.rank)
            batch = Batch(images, targets, index, views=FeatureViewMaker(*args) if self.feature_views else None)
            if self.feature_augment != "none":  # the default view: a stored copy, from the augmentation stream
                batch.images = FeatureViewMaker(*args, stream=AUGMENT_STREAM)(batch, self.feature_augment)
            return batch
        if self.frozen_prefix is not None:
            views = ViewMaker(self._through_prefix, self.config.seed, epoch, step, self.dist.rank)
            return Batch(self._stored_maps(device_index, augment), targets, index, raw=images, views=views)
        views = ViewMaker(self.preprocess, self.config.seed, epoch, step, self.dist.rank)
        return Batch(self.preprocess(images, augment), targets, index, raw=images, views=views)

    def _stored_maps(self, device_index: Tensor, augment: AugmentParams | None) -> Tensor:
        """The frozen layers' stored maps of a batch, mirrored where its augmentation flips."""
        maps, rows = self._maps
        flip = (augment.flip.long() if augment is not None and augment.policy.flip
                else torch.zeros_like(device_index))
        x = maps[flip, rows[device_index]]
        return x.contiguous(memory_format=torch.channels_last) if self.config.channels_last else x

    def _through_prefix(self, images: Tensor, augment: AugmentParams | None = None) -> Tensor:
        """A method's extra view with ``cache_frozen``: preprocessed, then through the frozen
        layers (crops and colour change their input, so views are computed, not stored)."""
        with torch.no_grad():
            return self.frozen_prefix(self.preprocess(images, augment))

    def train_step(self, batch: Batch) -> Tensor:
        """One optimisation step on a prepared batch: the method's loss under autocast,
        backward, optional gradient clipping, optimiser and schedule step, batch-end hooks.
        Returns the detached loss (no device sync; the loop checks it in groups)."""
        with self.autocast():
            loss, logits = self.method.training_loss(self, batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip is not None:  # returns the norm before clipping: computed once
            grad_norm = nn.utils.clip_grad_norm_(self.module.parameters(), self.config.grad_clip)
        else:
            grads = [p.grad for p in self.module.parameters() if p.grad is not None]
            grad_norm = (torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads
                         else loss.new_zeros(()))
        # watched with the loss: a diverging model can keep a finite loss for a while
        self._watch.append(torch.stack([loss.detach().float(), logits.detach().abs().amax().float(),
                                        grad_norm.detach().float()]))
        self.optimizer.step()
        self.scheduler.step()
        self.global_step += 1
        for hook in self.hooks:
            hook.on_batch_end(self, batch, logits, loss)
        return loss.detach().float()

    def _check_finite(self, losses: list[Tensor], start: int, epoch: int) -> None:
        """Raise at the first step in ``losses[start:]`` whose loss, largest |logit| or gradient
        norm is NaN or infinite, or whose largest |logit| exceeds :data:`LOGIT_LIMIT` (a
        diverged model; sigmoids saturate long before). One device sync."""
        watch = torch.stack(self._watch[start:len(losses)])
        bad = ~torch.isfinite(watch)
        bad[:, 1] |= watch[:, 1] > LOGIT_LIMIT
        rows = bad.any(dim=1).nonzero()
        if len(rows):
            i = start + int(rows[0, 0])
            global_step = self.global_step - len(losses) + i + 1
            loss, logit, grad = (float(v) for v in self._watch[i])
            raise NonFiniteLossError(
                f"training diverged at epoch {epoch + 1}, step {i + 1} of the epoch (global step {global_step}): "
                f"loss {loss}, largest |logit| {logit}, gradient norm {grad}; stopped before writing a checkpoint "
                "for this epoch (lower train.lr, or set train.grad_clip)")

    def _write_history(self) -> None:
        keys = list(dict.fromkeys(k for rec in self.history for k in rec))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        writer.writerows(self.history)
        atomic_write_text(buf.getvalue(), self.run_dir / "history.csv")

    # ---------------------------------------------------------------- inference
    @torch.inference_mode()
    def infer(self, dataset: LabelledDataset, fn: Callable[[Tensor], Tensor],
              batch_size: int | None = None) -> Tensor:
        """``fn`` (normalised images (B, ...) -> rows (B, ...)) over a whole dataset, in eval
        mode, without gradients, under the run's autocast: float32 rows on the CPU in dataset
        order. With several ranks each computes its shard and the rows are gathered by index.
        The model's train/eval mode is restored afterwards."""
        was_training = self.module.training
        self.module.eval()
        bs = batch_size or self.config.eval_batch_size
        loader = self.loader if dataset is self.train_set else BatchLoader(dataset, self.device)
        shard = epoch_order(len(dataset), 0, 0, shuffle=False, rank=self.dist.rank, world_size=self.dist.world_size)
        out = []
        try:
            for images, _ in loader(list(shard.split(bs))):
                with self.autocast():
                    out.append(fn(self.preprocess(images)).float())
        finally:
            self.module.train(was_training)
        if not out:
            return torch.empty(0)
        return gather_by_index(torch.cat(out), shard, len(dataset)).cpu()

    def predict(self, dataset: LabelledDataset, batch_size: int | None = None) -> Tensor:
        """Logits (N, C), float32 on the CPU, in dataset order, in eval mode (the unwrapped
        module: no DDP synchronisation at inference)."""
        return self.infer(dataset, self.module, batch_size)

    def features(self, dataset: LabelledDataset, batch_size: int | None = None) -> Tensor:
        """The backbone's feature maps averaged over positions, (N, D) float32 on the CPU:
        what nearest-neighbour label propagation and similarity learning compare."""
        return self.infer(dataset, lambda x: self.module.features(x).float().mean(dim=(2, 3)), batch_size)

    def evaluate(self, dataset: LabelledDataset, labels: Tensor | None = None, **kwargs: Any) -> dict[str, float]:
        """:func:`mlrobust.metrics.evaluate` of the model on ``dataset`` against ``labels``
        (default: the dataset's ground truth)."""
        truth = dataset.labels if labels is None else labels
        return metrics.evaluate(self.predict(dataset), truth.cpu(), **kwargs)
