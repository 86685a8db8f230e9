"""``python -m mlrobust bench``: the project's performance record.

Speed targets live here, never in timed tests. Every number comes from one harness,
:func:`time_step`: a few untimed warm-up calls of a step closure (cuDNN autotuning,
compilation, allocator growth, DataLoader workers starting), then ``steps`` timed calls
between two device synchronisations; the result is seconds per call.

Three tables make the record, each headed by the device, torch version and settings:

* **training and inference** — images/s of a full training step (forward, loss, backward,
  optimiser step, through the project's :class:`~mlrobust.engine.Trainer`) and of an
  eval-mode forward, both on a fixed random uint8 batch already on the device, so data
  loading is excluded (normalisation is included, augmentation is not);
* **data loading** — images/s of producing batches on the device through the project's
  :class:`~mlrobust.engine.batches.BatchLoader` and :class:`~mlrobust.engine.batches.Preprocess`
  with an augmentation policy, no model (for the embedded benchmark: rendering);
* **methods** — each method's training step as a ratio to the plain BCE step on the same
  backbone, image size, batch and device (the design's target: at most 1.10), and the
  relabeling passes of Durand et al. per image relative to one BCE step per image.

With ``compile`` the compilation happens during the warm-up, so keep ``warmup`` >= 1 then.
On a shared CPU, torch's threads spin against the other process: ``--threads 1`` gives
steadier numbers, and every table records the load average before it started.
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from torch import Tensor

import inspect

from . import losses
from .data import DATASETS, POLICIES, Preprocess, TensorImages, create_dataset
from .data.shapescenes import ShapeScenes
from .engine import Batch, Method, TrainConfig, Trainer, resolve_device
from .engine.batches import BatchLoader, epoch_augmentation, epoch_order, split_batches
from .methods import BENCH_CASES, BenchCase, SupervisedMethod
from .models import create_model

__all__ = ["BenchResult", "BenchSettings", "BenchTable", "time_step",
           "bench_train_step", "bench_inference", "bench_frozen", "bench_loading", "bench_render", "bench_methods", "run_bench",
           "device_name", "format_table", "format_report"]

RATIO_TARGET = 1.10  # the project's target: every method's step at most 1.10x the BCE step


@dataclass
class BenchResult:
    """One measurement. ``images_per_s`` is the batch size divided by ``step_ms``, the mean
    wall time of one timed call; ``ratio_to_bce`` is this row's time per image over the BCE
    training step's time per image on the same settings (None for rows that are not compared,
    the baseline included)."""

    what: str
    backbone: str
    image_size: int
    batch_size: int
    device: str
    amp: bool
    channels_last: bool
    images_per_s: float
    step_ms: float
    compiled: bool = False
    ratio_to_bce: float | None = None


@dataclass(frozen=True)
class BenchSettings:
    """The knobs every model measurement shares, as in training: ``amp`` (bf16 autocast)
    applies on CUDA only, ``channels_last`` (NHWC tensors) on every device."""

    backbone: str = "cnn_s"
    image_size: int = 32
    batch_size: int = 64
    device: str = "auto"
    steps: int = 20
    warmup: int = 5
    amp: bool = True
    channels_last: bool = True
    compile: bool = False
    num_classes: int = 24

    def __post_init__(self) -> None:
        if self.steps < 1 or self.warmup < 0:
            raise ValueError(f"bench needs steps >= 1 and warmup >= 0, got steps={self.steps}, warmup={self.warmup}")
        if self.batch_size < 2:  # BatchNorm needs two samples in training mode
            raise ValueError(f"bench needs batch_size >= 2, got {self.batch_size}")

    @property
    def dev(self) -> torch.device:
        return resolve_device(self.device)

    @property
    def use_amp(self) -> bool:
        return self.amp and self.dev.type == "cuda"

    @property
    def use_channels_last(self) -> bool:
        return self.channels_last

    def row(self, what: str, seconds: float, *, batch_size: int | None = None, backbone: str | None = None,
            ratio: float | None = None) -> BenchResult:
        """A result row for a step of ``seconds`` on these settings."""
        b = self.batch_size if batch_size is None else batch_size
        return BenchResult(what, self.backbone if backbone is None else backbone, self.image_size, b,
                           str(self.dev), self.use_amp, self.use_channels_last, b / seconds, seconds * 1000,
                           self.compile, ratio)

    def describe(self) -> dict[str, Any]:
        """The settings as they took effect (amp and channels_last are off on the CPU)."""
        return {"backbone": self.backbone, "image_size": self.image_size, "batch_size": self.batch_size,
                "classes": self.num_classes, "steps": self.steps, "warmup": self.warmup,
                "bf16 autocast": self.use_amp, "channels_last": self.use_channels_last, "compile": self.compile}


@dataclass
class BenchTable:
    """A titled table of rows with the settings it was measured under."""

    title: str
    settings: dict[str, Any]
    rows: list[BenchResult]
    note: str = ""
    load_before: float | None = None  # 1-minute load average when the table started: a busy machine is slow


# --------------------------------------------------------------------------- the harness


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_step(step: Callable[[], object], device: torch.device, steps: int, warmup: int) -> float:
    """Seconds per call of ``step``: ``warmup`` untimed calls, then the mean of ``steps``
    calls timed between two synchronisations of ``device`` (CUDA runs asynchronously, so
    only a sync makes the wall clock see the work)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    for _ in range(warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return (time.perf_counter() - start) / steps


# --------------------------------------------------------------------------- model steps


def _random_batch(s: BenchSettings, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A fixed uint8 image batch (CPU) and labels in {-1, 0, 1} (a third unknown, as with
    partial labels; every loss sees the same matrix)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (s.batch_size, 3, s.image_size, s.image_size), dtype=torch.uint8, generator=g)
    labels = torch.randint(-1, 2, (s.batch_size, s.num_classes), generator=g).to(torch.int8)
    return images, labels


def _model(s: BenchSettings, model_args: dict[str, Any] | None = None) -> torch.nn.Module:
    """The same initial weights for every row, without touching the caller's RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return create_model(s.backbone, s.num_classes, **(model_args or {}))


def _trainer(s: BenchSettings, method: Method, model_args: dict[str, Any] | None = None,
             cache_frozen: bool = False) -> Trainer:
    """The project's Trainer on one random batch, built as a run builds it (device,
    channels_last, compile, optimiser), so a step costs what it costs in training."""
    images, labels = _random_batch(s)
    model = _model(s, model_args)
    # a small constant lr: random labels must not drive the weights to inf/NaN over the steps
    cfg = TrainConfig(epochs=1, batch_size=s.batch_size, lr=1e-3, schedule="constant", device=str(s.dev),
                      amp=s.amp, channels_last=s.channels_last, compile=s.compile, progress=False, checkpoint=False,
                      cache_frozen=cache_frozen)
    data = TensorImages(images, labels, [f"class{c}" for c in range(s.num_classes)])
    return Trainer(model, method, data, labels, cfg)


def _train_step(trainer: Trainer) -> Callable[[], None]:
    """One ``Trainer.train_step`` (the loop's own step: normalise, targets from the label
    store, method loss under autocast, backward, optimiser and schedule step, batch-end
    hooks) on the trainer's fixed batch, already on the device."""
    index = torch.arange(len(trainer.train_set))
    images = trainer.train_set.load_batch(index, trainer.device)
    device_index = index.to(trainer.device)

    def step() -> None:
        trainer.train_step(Batch(trainer.preprocess(images), trainer.train_labels[device_index], index, raw=images))

    return step


def bench_train_step(backbone: str = "cnn_s", image_size: int = 32, batch_size: int = 64, device: str = "auto",
                     steps: int = 20, warmup: int = 5, amp: bool = True, channels_last: bool = True,
                     compile: bool = False, loss: str = "bce", num_classes: int = 24) -> BenchResult:
    """Images per second of a full training step with ``loss`` (default the class-normalised
    BCE) on a fixed batch already on the device: data loading and augmentation excluded."""
    s = BenchSettings(backbone, image_size, batch_size, device, steps, warmup, amp, channels_last, compile,
                      num_classes)
    trainer = _trainer(s, SupervisedMethod(losses.create_loss(loss)))
    return s.row(f"train step ({loss})", time_step(_train_step(trainer), s.dev, s.steps, s.warmup))


def bench_inference(backbone: str = "cnn_s", image_size: int = 32, batch_size: int = 64, device: str = "auto",
                    steps: int = 20, warmup: int = 5, amp: bool = True, channels_last: bool = True,
                    compile: bool = False, num_classes: int = 24) -> BenchResult:
    """Images per second of an eval-mode forward (normalisation and logits, no gradient; bf16
    autocast on CUDA, channels_last, ``torch.compile`` if asked) on a fixed batch already
    on the device."""
    s = BenchSettings(backbone, image_size, batch_size, device, steps, warmup, amp, channels_last, compile,
                      num_classes)
    dev = s.dev
    model = _model(s).to(dev).eval()
    if s.use_channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if s.compile else model
    pre = Preprocess(dev, channels_last=s.use_channels_last)
    images = _random_batch(s)[0].to(dev)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick kernels, as training does

    @torch.inference_mode()
    def step() -> None:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=s.use_amp):
            forward(pre(images))

    return s.row("inference (eval forward)", time_step(step, dev, s.steps, s.warmup))


def _stored_maps_step(trainer: Trainer) -> Callable[[], None]:
    """One training step on the trainer's batch with ``cache_frozen``: the batch is built
    from the stored maps at every call (the gather is part of the step), as in training."""
    index = torch.arange(len(trainer.train_set))
    trainer.prepare_frozen_maps()  # once, outside the timing: a run computes them once too
    images = trainer.train_set.load_batch(index, trainer.device)  # on the device, as the other rows

    def step() -> None:
        trainer.train_step(trainer.training_batch(index, images=images))

    return step


def bench_frozen(settings: BenchSettings | None = None, freeze_at: int = 2, rounds: int = 3) -> list[BenchResult]:
    """The BCE training step with every layer trained, with ``model.freeze_at``, and with
    the frozen layers' maps stored (``train.cache_frozen``; only for backbones that can be
    split there, such as ``cnn_s``), as ratios to the first; timed in interleaved rounds
    as :func:`bench_methods` does."""
    s = settings or BenchSettings()
    bce = SupervisedMethod(losses.create_loss("bce"))
    cases = [("train step, every layer", _train_step(_trainer(s, bce))),
             (f"train step, freeze_at {freeze_at}", _train_step(_trainer(s, bce, {"freeze_at": freeze_at})))]
    stored = _trainer(s, bce, {"freeze_at": freeze_at}, cache_frozen=True)
    if stored.frozen_prefix is not None:
        cases.append((f"train step, freeze_at {freeze_at}, frozen maps stored", _stored_maps_step(stored)))
    best = [math.inf] * len(cases)
    for r in range(rounds):
        for i, (_, step) in enumerate(cases):
            best[i] = min(best[i], time_step(step, s.dev, s.steps, s.warmup if r == 0 else min(s.warmup, 1)))
    return [s.row(what, t, ratio=None if i == 0 else t / best[0]) for i, ((what, _), t) in enumerate(zip(cases, best))]


# --------------------------------------------------------------------------- method ratios
# The rows come from mlrobust.methods.BENCH_CASES: each paper's module registers its own.


def _check_methods(methods: Sequence[str] | None) -> list[str]:
    names = list(BENCH_CASES) if methods is None else list(dict.fromkeys(methods))
    unknown = [m for m in names if m not in BENCH_CASES]
    if unknown:
        raise ValueError(f"unknown bench method(s) {', '.join(unknown)}; valid: {', '.join(BENCH_CASES)}")
    return ["bce", *[m for m in names if m != "bce"]]  # the baseline is always measured


def bench_methods(settings: BenchSettings | None = None, methods: Sequence[str] | None = None,
                  rounds: int = 3) -> list[BenchResult]:
    """Every method's step as a ratio to the BCE step on the same settings.

    Each row's ``ratio_to_bce`` is its time per image over the BCE training step's time per
    image (same batch, so: time per call over time per call); the baseline row has none.
    All cases are built first, then timed in ``rounds`` interleaved rounds keeping each one's
    fastest round, so a slow drift of the machine (another process, clock changes) hits
    every row alike and noise, which only ever adds time, is filtered out.
    """
    s = settings or BenchSettings()
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    cases: list[BenchCase] = [BENCH_CASES[m] for m in _check_methods(methods)]
    closures = [(c.step or _train_step)(_trainer(s, c.method(s.num_classes, s.batch_size), c.model_args))
                for c in cases]
    best = [math.inf] * len(cases)
    for r in range(rounds):
        for i, step in enumerate(closures):
            # later rounds: one call to bring the case's weights back into the caches
            best[i] = min(best[i], time_step(step, s.dev, s.steps, s.warmup if r == 0 else min(s.warmup, 1)))
    baseline = best[0]
    return [s.row(c.label, t, ratio=None if c.name == "bce" else t / baseline) for c, t in zip(cases, best)]


# --------------------------------------------------------------------------- data loading


def _check_policy(augment: str) -> None:
    if augment != "none" and augment not in POLICIES:
        raise ValueError(f"unknown augmentation policy {augment!r}; valid: none, {', '.join(POLICIES)}")


def bench_loading(dataset: str = "shapescenes", batch_size: int = 64, num_workers: int = 0, device: str = "auto",
                  batches: int = 20, *, augment: str = "flip", warmup: int = 2, image_size: int = 32,
                  data_root: str | None = None, split: str = "train", channels_last: bool = True,
                  dataset_args: dict[str, Any] | None = None) -> BenchResult:
    """Images per second of producing augmented, normalised batches on the device from
    ``dataset`` (any registered name, built without an image cache so reading or rendering is
    timed) through the project's :class:`BatchLoader` (``num_workers`` DataLoader workers
    for datasets read from disk) and :class:`Preprocess` with the ``augment`` policy
    ("none", "flip", "weak", "strong"). No model. Batches follow a shuffled epoch order, as
    in training; the epoch's augmentation parameters are drawn once before the clock starts,
    as the trainer draws them once per epoch. With workers, batches they prefetch during the
    warm-up flatter a short run: time enough ``batches`` for the steady state."""
    _check_policy(augment)
    dev = resolve_device(device)
    n = batch_size * (warmup + batches)
    # a dataset that can keep its images in memory is asked not to: reading or rendering is timed
    no_cache = {"cache": False} if "cache" in inspect.signature(DATASETS.lookup(dataset)).parameters else {}
    ds = create_dataset(dataset, split, root=data_root, image_size=image_size, n=n, seed=0, **no_cache,
                       **(dataset_args or {}))
    if len(ds) == 0:
        raise ValueError(f"dataset {dataset!r} ({split}) has no images to load")
    order = epoch_order(len(ds), 0, 0)
    order = order.repeat(-(-n // len(order)))[:n]  # a small dataset is read more than once
    index = split_batches(order, batch_size, drop_last=False)
    params = epoch_augmentation([len(b) for b in index], augment, 0, 0, dev)
    pre = Preprocess(dev, channels_last=channels_last)
    loader = BatchLoader(ds, dev, num_workers)
    batches_and_params = zip(loader(index), params)

    def step() -> None:
        (images, _), p = next(batches_and_params)
        pre(images, p)

    seconds = time_step(step, dev, batches, warmup)
    return BenchResult(f"load {dataset}, augment {augment}, {num_workers} workers", "-", image_size,
                       batch_size, str(dev), False, channels_last, batch_size / seconds, seconds * 1000)


def bench_render(image_size: int = 32, batch_size: int = 256, device: str = "auto", batches: int = 5,
                 warmup: int = 1) -> BenchResult:
    """Images per second of rendering the embedded benchmark on ``device`` (uint8, no
    augmentation or normalisation)."""
    dev = resolve_device(device)
    ds = ShapeScenes(batch_size * (batches + warmup), image_size=image_size, seed=0, cache=False)
    index = iter(torch.arange(len(ds)).split(batch_size))
    seconds = time_step(lambda: ds.load_batch(next(index), dev), dev, batches, warmup)
    return BenchResult("render shapescenes", "-", image_size, batch_size, str(dev), False, False,
                       batch_size / seconds, seconds * 1000)


# --------------------------------------------------------------------------- the record


def _load_average() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def run_bench(settings: BenchSettings | None = None, *, loss: str = "bce", methods: Sequence[str] | None = None,
              rounds: int = 3, dataset: str = "shapescenes", data_root: str | None = None, workers: int = 0,
              augment: Sequence[str] = ("none", "flip", "weak", "strong"),
              dataset_args: dict[str, Any] | None = None, frozen: int = 2) -> list[BenchTable]:
    """The whole record: training and inference, the frozen layers' saving (``frozen``: the
    ``freeze_at`` compared; 0 skips the table), data loading (one row per policy in
    ``augment``; none skips the table; ``dataset_args`` are the loader's options), and the
    method ratios (``methods``: None for all, empty to skip the table)."""
    s = settings or BenchSettings()
    if methods:
        _check_methods(methods)  # bad input fails before anything is timed
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    for a in augment:
        _check_policy(a)
    knobs = {f.name: getattr(s, f.name) for f in fields(s)}
    load = _load_average()
    tables = [BenchTable("Training and inference", s.describe(),
                         [bench_train_step(**knobs, loss=loss), bench_inference(**knobs)],
                         "A fixed random batch already on the device: data loading and augmentation excluded.",
                         load)]
    if frozen:
        load = _load_average()
        tables.append(BenchTable(f"Frozen layers (model.freeze_at = {frozen})", {**s.describe(), "rounds": rounds},
                                 bench_frozen(s, frozen, rounds),
                                 "ratio_to_bce: time per image over that of the BCE step training every layer "
                                 "(the first row). Stored maps: the frozen layers' output read from "
                                 "train.cache_frozen's store, which a run computes once.", load))
    if augment:
        load = _load_average()
        rows = [bench_render(s.image_size, s.batch_size, s.device, s.steps, min(s.warmup, 1))] \
            if dataset == "shapescenes" else []
        rows += [bench_loading(dataset, s.batch_size, workers, s.device, s.steps, augment=a,
                               warmup=min(s.warmup, 2), image_size=s.image_size, data_root=data_root,
                               channels_last=s.channels_last, dataset_args=dataset_args) for a in augment]
        settings_used = {"dataset": dataset, "data_root": data_root or "-", **(dataset_args or {}), "workers": workers,
                         "batch_size": s.batch_size, "image_size": s.image_size, "batches": s.steps,
                         "channels_last": s.use_channels_last}
        tables.append(BenchTable("Data loading and augmentation", settings_used, rows,
                                 "uint8 batches produced on the device through BatchLoader, then augmented and "
                                 "normalised there by Preprocess; no model. Reading or rendering is timed "
                                 "(cache=False).", load))
    if methods is None or methods:
        load = _load_average()
        tables.append(BenchTable("Method step time relative to BCE", {**s.describe(), "rounds": rounds},
                                 bench_methods(s, methods, rounds),
                                 "ratio_to_bce: time per image over that of the plain BCE training step (gap "
                                 f"head). Design target for training steps: at most {RATIO_TARGET:.2f}. The "
                                 "relabeling rows run once before the relabeling epochs, not every step.", load))
    return tables


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(device: torch.device | str) -> str:
    """The GPU's name, or the CPU model with its core count and torch's thread count
    (on a shared machine the threads decide CPU throughput)."""
    dev = torch.device(device)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpu = f"{_cpu_model()}, {cores} cores"
    if dev.type == "cuda":
        return f"{torch.cuda.get_device_name(dev)} (host {cpu})"
    return f"{cpu}, {torch.get_num_threads()} torch threads"


def _cell(name: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.2f}" if name == "ratio_to_bce" or abs(value) < 10 else f"{value:.1f}"
    return str(value)


def format_table(results: list[BenchResult], columns: Sequence[str] | None = None) -> str:
    """A Markdown table of results, all fields or ``columns`` (empty cells where a row has
    no ratio)."""
    cols = list(columns) if columns is not None else [f.name for f in fields(BenchResult)]
    rows = [[_cell(c, asdict(r)[c]) for c in cols] for r in results]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(cols), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def format_report(tables: list[BenchTable], device: torch.device | str) -> str:
    """One Markdown document: each table under a heading with the device, the torch version
    and the settings it was measured under."""
    where = f"Device: {device_name(device)}; torch {torch.__version__}"
    parts = ["# mlrobust performance record", "",
             "Written by `python -m mlrobust bench`. images_per_s: images per second of one call; "
             "step_ms: the mean wall time of one call after the warm-up."]
    for t in tables:
        settings = ", ".join(f"{k}={'on' if v is True else 'off' if v is False else v}" for k, v in t.settings.items())
        load = "" if t.load_before is None else f"; load average {t.load_before:.2f} before the table"
        parts += ["", f"## {t.title}", "", where + load, "", f"Settings: {settings}", ""]
        if t.note:
            parts += [t.note, ""]
        # the other fields are the same on every row and stand in the settings line above
        ratios = any(r.ratio_to_bce is not None for r in t.rows)
        parts.append(format_table(t.rows, ["what", "images_per_s", "step_ms", *(["ratio_to_bce"] if ratios else [])]))
    return "\n".join(parts) + "\n"
