"""From a config to a finished run: data, label protocol, model, method, training, results.

``run_experiment(cfg)`` writes into ``cfg.output_dir/cfg.name``:

* ``config.json`` - the full config;
* ``env.json`` - versions, hardware, code revision;
* ``history.csv`` - one row per epoch (loss, learning rate, time, validation metrics);
* ``metrics.json`` - test metrics and timings;
* ``checkpoint.pt`` - the latest checkpoint (``resume=True`` continues from it).

The folder is locked for the duration of the run (a second run on it stops at once), and a
folder that already holds a run is refused unless it is resumed (``resume=True``) or replaced
(``overwrite=True``): see :mod:`mlrobust.engine.run_folder`.

The pieces are built from the config's sections (``build_data``, ``observed_labels``,
``build_model``; methods by :func:`mlrobust.methods.build_method`), each from its registry:
datasets, label protocols, backbones and heads, losses, methods.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from . import labels as label_protocols
from .config import ConfigError, DataConfig, ExperimentConfig, resume_conflicts
from .data import DATASETS, DataSplits, LabelledDataset, Subset, create_dataset, hold_out
from .data.preprocess import Preprocess
from .engine import Hook, Method, Trainer, environment_report, resolve_device
from .engine.checkpoint import atomic_write_text, load_checkpoint
from .engine.distributed import dist_info
from .engine.frozen_cache import augment_unservable, frozen_maps
from .engine.trainer import training_autocast
from .engine.run_folder import open_run_folder, remove_run
from .methods import MethodContext, build_method
from .models import MultiLabelNet, create_backbone, create_head, create_model, create_refine
from .parallel import map_in_workers
from .pretrained import resolve_weights
from .seeding import derive_seed

__all__ = ["build_data", "observed_labels", "build_model", "build_trainer", "frozen_backbone", "run_experiment",
           "RunResult", "Run", "RunOutcome", "run_many", "LrTuning", "tune_lr"]

log = logging.getLogger("mlrobust")

METHOD_STREAM = 7  # derive_seed(train.seed, METHOD_STREAM) seeds a method factory's random draws
# options every dataset factory receives from the data config itself
_COMMON_DATASET_ARGS = ("split", "root", "image_size", "n", "seed")


def _check_dataset_args(cfg: DataConfig) -> None:
    try:
        params = inspect.signature(DATASETS.lookup(cfg.dataset)).parameters
    except ValueError as err:
        raise ConfigError(f"data.dataset: {err}") from None
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    valid = [p for p in params if p not in _COMMON_DATASET_ARGS]
    unknown = sorted(set(cfg.dataset_args) - set(valid))
    if unknown:
        raise ConfigError(f"data.dataset_args {unknown} not accepted by dataset {cfg.dataset!r}; valid: {valid}")


def build_data(cfg: DataConfig) -> DataSplits:
    """The train / (val) / test splits named by a :class:`DataConfig`."""
    _check_dataset_args(cfg)
    common = {"root": cfg.root, "image_size": cfg.image_size, "seed": cfg.seed, **cfg.dataset_args}
    train = create_dataset(cfg.dataset, "train", n=cfg.n_train, **common)
    test = create_dataset(cfg.dataset, "test", n=cfg.n_test, **common)
    val = create_dataset(cfg.dataset, "val", n=cfg.n_val, **common) if cfg.n_val > 0 else None
    splits = DataSplits(train=train, test=test, val=val)
    empty = _empty_split(splits)
    if empty is not None:  # n = 0 keeps a whole split on disk, which may hold no image
        raise ConfigError(f"{cfg.dataset}: the {empty} split has no image (data.n_{empty}="
                          f"{getattr(cfg, 'n_' + empty)}, data.root={cfg.root!r})")
    for name, split in (("test", test), ("val", val)):
        if split is not None and list(split.classes) != list(train.classes):
            raise ConfigError(f"{cfg.dataset}: the {name} split's classes differ from the train split's")
    return splits


def _empty_split(splits: DataSplits) -> str | None:
    """The name of the first split without an image: evaluated, it would give mAP NaN."""
    return next((name for name in ("train", "test", "val")
                 if getattr(splits, name) is not None and len(getattr(splits, name)) == 0), None)


def observed_labels(y: Tensor, cfg: DataConfig) -> Tensor:
    """The config's label protocol applied to the training ground truth ``y``."""
    return label_protocols.create_protocol(cfg.protocol, **cfg.protocol_args)(y, cfg.protocol_seed)


def build_model(cfg: ExperimentConfig, splits: DataSplits) -> MultiLabelNet:
    """The network of a config. On precomputed feature maps (``model.backbone="features"``)
    the backbone is the identity and only the head (and GNN) are trained."""
    on_features = splits.train.kind == "features"
    if on_features != (cfg.model.backbone == "features"):
        raise ConfigError("model.backbone must be 'features' exactly when the data are precomputed feature maps; "
                          f"got backbone {cfg.model.backbone!r} with {'feature maps' if on_features else 'images'}")
    if on_features and cfg.model.freeze_at:
        raise ConfigError(f"model.freeze_at={cfg.model.freeze_at} needs a backbone to freeze; on precomputed feature "
                          "maps only the head is trained: set freeze_at=0")
    if not on_features:
        return create_model(cfg.model.backbone, len(splits.classes), head=cfg.model.head,
                            weights=resolve_weights(cfg.model.weights), gnn_steps=cfg.model.gnn_steps,
                            freeze_at=cfg.model.freeze_at, **cfg.model.head_args)
    head = create_head(cfg.model.head, splits.train.num_features, len(splits.classes), **cfg.model.head_args)
    return MultiLabelNet(nn.Identity(), head, create_refine(len(splits.classes), cfg.model.gnn_steps))


def _initial_model(cfg: ExperimentConfig, splits: DataSplits) -> MultiLabelNet:
    """The config's network with the initial weights of ``train.seed`` (the caller's RNG is
    left as it was)."""
    with torch.random.fork_rng():
        torch.manual_seed(cfg.train.seed)
        return build_model(cfg, splits)


def build_trainer(cfg: ExperimentConfig, model: nn.Module, method: Method, train: LabelledDataset,
                  labels: Tensor, *, val: LabelledDataset | None = None, run_dir: Path | None = None,
                  hooks: Sequence[Hook] = ()) -> Trainer:
    """The engine's trainer for a config's training settings, augmentation and workers."""
    return Trainer(model, method, train, labels, cfg.train, val_set=val, hooks=hooks, run_dir=run_dir,
                   augment=cfg.data.augment, num_workers=cfg.data.num_workers, run_config=cfg.to_dict())


def _fit_helper(cfg: ExperimentConfig, splits: DataSplits):
    """``fit(dataset, labels, method)`` for method factories: a fresh model of the config,
    trained with its settings, nothing written."""

    def fit(dataset: LabelledDataset, labels: Tensor, method: Method) -> Trainer:
        model = _initial_model(cfg, DataSplits(train=dataset, test=splits.test, val=splits.val))
        trainer = build_trainer(cfg, model, method, dataset, labels)
        trainer.fit()
        return trainer

    return fit


# --------------------------------------------------------------------------- pretrained weights


def frozen_backbone(backbone: str, weights: str | Path | None) -> tuple[nn.Module, str | None]:
    """The backbone of the frozen-feature experiments (eval mode) and the file its weights came
    from: ``weights`` is a shipped backbone's name (``"cnn_s-objects32"``, the quick scale's
    stand-in for ImageNet weights, hash-checked), a local file, or None (random weights)."""
    path = resolve_weights(weights)
    return create_backbone(backbone, weights=path).eval(), None if path is None else str(path)


# --------------------------------------------------------------------------- a run


@dataclass
class RunResult:
    """What a run produced: test metrics, per-epoch history, the trainer (model, label
    store, predictions) and the results folder (None when nothing was written)."""

    metrics: dict[str, float]
    history: list[dict[str, float]]
    trainer: Trainer
    run_dir: Path | None
    train_seconds: float


def _check_resume(cfg: ExperimentConfig, checkpoint: Path) -> None:
    """Refuse to resume a checkpoint written under a different config: the result would
    silently mix two runs."""
    diffs = resume_conflicts(load_checkpoint(checkpoint).get("run_config"), cfg)
    if diffs:
        raise ValueError(f"cannot resume {checkpoint}: it was written with a different config ("
                         + "; ".join(diffs[:6]) + "). Start a new run (another name or output_dir).")


def _results_folder(run_dir: Path | None, resume: bool, overwrite: bool) -> AbstractContextManager[object]:
    """The run folder, held for the whole run by the process that writes it (rank 0 under
    torchrun); nothing to hold when nothing is written."""
    if run_dir is None or dist_info().rank != 0:
        return nullcontext()
    return open_run_folder(run_dir, resume=resume, overwrite=overwrite)


def run_experiment(cfg: ExperimentConfig, *, data: DataSplits | None = None, resume: bool = False,
                   overwrite: bool = False, write: bool = True, hooks: Sequence[Hook] = (),
                   method: Method | None = None, train_labels: Tensor | None = None) -> RunResult:
    """Run one experiment end to end. Pass ``data`` to reuse already built splits (a
    chapter building the benchmark once for many runs), ``method`` for a method built in
    Python from objects a config cannot hold (an estimated corruption matrix), and
    ``train_labels`` for observed labels made outside the config's protocol.

    A results folder that already holds a run is an error unless ``resume`` continues it or
    ``overwrite`` replaces it; a second run on a folder in use stops at once
    (:class:`~mlrobust.engine.run_folder.RunFolderError`, also for a read-only or full disk)."""
    run_dir = cfg.run_dir if write else None
    with _results_folder(run_dir, resume, overwrite):
        return _run(cfg, data, resume, overwrite, run_dir, hooks, method, train_labels)


def _run(cfg: ExperimentConfig, data: DataSplits | None, resume: bool, overwrite: bool, run_dir: Path | None,
         hooks: Sequence[Hook], method: Method | None, train_labels: Tensor | None) -> RunResult:
    """:func:`run_experiment` once its results folder is held."""
    splits = data if data is not None else build_data(cfg.data)
    if data is not None and _empty_split(data) is not None:
        raise ConfigError(f"the {_empty_split(data)} split passed as data has no image")
    # build and check everything before the run folder is written: a bad config leaves nothing
    y_obs = observed_labels(splits.train.labels, cfg.data) if train_labels is None else train_labels
    if not bool((y_obs != 0).any()):  # every loss would be 0 at every step: an empty run, not a result
        raise ConfigError(f"no training label is known after the protocol {cfg.data.protocol!r} "
                          f"{cfg.data.protocol_args}: nothing to learn from")
    model = _initial_model(cfg, splits)
    if method is None:
        with torch.random.fork_rng():  # a factory that draws random numbers draws its own stream
            torch.manual_seed(derive_seed(cfg.train.seed, METHOD_STREAM))
            method = build_method(cfg, MethodContext(cfg, splits, y_obs, _fit_helper(cfg, splits)))
    train_set, y_train = method.training_data(splits.train, y_obs)
    trainer = build_trainer(cfg, model, method, train_set, y_train, val=splits.val, run_dir=run_dir, hooks=hooks)
    if resume and run_dir is not None and trainer.checkpoint_path.is_file():  # refuse before overwriting
        _check_resume(cfg, trainer.checkpoint_path)
    main = trainer.dist.rank == 0  # with torchrun, rank 0 writes the results folder
    if run_dir is not None and main:
        if overwrite:  # only now, so that a refused config leaves the old run whole
            remove_run(run_dir)
        atomic_write_text(json.dumps(cfg.to_dict(), indent=2) + "\n", run_dir / "config.json")
        atomic_write_text(json.dumps(environment_report(trainer.device), indent=2) + "\n", run_dir / "env.json")
    start = time.perf_counter()
    history = trainer.fit(resume=resume)
    seconds = time.perf_counter() - start
    result = trainer.evaluate(splits.test)
    if run_dir is not None and main:
        summary = {"test": result, "train_seconds": seconds, "epochs": trainer.epoch,
                   "observed_labels": label_protocols.summary(y_train)}
        atomic_write_text(json.dumps(summary, indent=2) + "\n", run_dir / "metrics.json")
    return RunResult(result, history, trainer, run_dir, seconds)


# --------------------------------------------------------------------------- many runs

K = TypeVar("K", bound=Hashable)


@dataclass
class Run:
    """One run of :func:`run_many`: :func:`run_experiment`'s arguments, and ``collect``, a
    function of the finished :class:`RunResult` that picks what to keep beyond the metrics
    (predictions, a hook's statistics; it must return something picklable). In a worker
    process the run trains a copy of ``method`` and ``hooks``: what they record after
    training is read through ``collect``, not from the objects passed here."""

    cfg: ExperimentConfig
    data: DataSplits | None = None
    train_labels: Tensor | None = None
    method: Method | None = None
    hooks: Sequence[Hook] = ()
    write: bool = True
    resume: bool = False
    overwrite: bool = False
    collect: Callable[[RunResult], Any] | None = None


@dataclass
class RunOutcome:
    """What :func:`run_many` returns of a run: its test metrics, per-epoch history, training
    time, results folder and whatever its ``collect`` picked (None without one)."""

    metrics: dict[str, float]
    history: list[dict[str, float]]
    train_seconds: float
    run_dir: Path | None
    collected: Any = field(default=None)


def _run_one(run: Run) -> RunOutcome:
    result = run_experiment(run.cfg, data=run.data, train_labels=run.train_labels, method=run.method,
                            hooks=run.hooks, write=run.write, resume=run.resume, overwrite=run.overwrite)
    collected = run.collect(result) if run.collect is not None else None
    return RunOutcome(result.metrics, result.history, result.train_seconds, result.run_dir, collected)


def run_many(runs: Mapping[K, Run], workers: int | None = None) -> dict[K, RunOutcome]:
    """Run independent experiments side by side: one single-threaded worker process per core
    (:func:`mlrobust.parallel.map_in_workers`; ``workers`` overrides the count, 1 runs them
    here one after another). Each run gives the numbers it gives alone on one thread,
    whatever the number of workers, so a chapter computes the same table on one core or
    on many. Returns the outcomes under the keys of ``runs``, in their order."""
    for run in runs.values():  # render once here rather than once per worker
        for dataset in (run.data.train, run.data.test, run.data.val) if run.data is not None else ():
            _fill_image_cache(dataset)
        _fill_frozen_maps(run)
    outcomes = map_in_workers(_run_one, list(runs.values()), workers)
    return dict(zip(runs, outcomes))


def _fill_image_cache(dataset: LabelledDataset | None) -> None:
    """Render a dataset's cached images now (a no-op for datasets without a cache), so that
    forked workers share them instead of each rendering its own copy."""
    while isinstance(dataset, Subset):
        dataset = dataset.base
    if getattr(dataset, "cache", False) and hasattr(dataset, "images"):
        dataset.images()


def _fill_frozen_maps(run: Run) -> None:
    """Compute the frozen layers' maps of a run with ``train.cache_frozen`` now, so forked
    workers share one copy (the trainer prepares its network and input the same way and
    finds them under the same key)."""
    cfg = run.cfg
    if (not cfg.train.cache_frozen or run.data is None or run.data.train.kind == "features"
            or augment_unservable(cfg.data.augment)):
        return
    device = resolve_device(cfg.train.device)
    model = _initial_model(cfg, run.data).to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    try:
        prefix, _ = model.split_frozen()
    except ValueError:
        return  # the run's trainer says why, with the run's name
    frozen_maps(prefix, run.data.train, Preprocess(device, cfg.train.channels_last), device,
                cfg.train.eval_batch_size, lambda: training_autocast(device, cfg.train.amp))


@dataclass(frozen=True)
class LrTuning:
    """The outcome of :func:`tune_lr`: the chosen factor, the learning rate it gives, and the
    validation metric of every factor tried."""

    factor: float
    lr: float
    scores: dict[float, float]

    @property
    def at_grid_end(self) -> bool:
        """Whether the chosen factor is the smallest or the largest tried: a wider grid
        might have done better, so a chapter says so."""
        return len(self.scores) > 1 and self.factor in (min(self.scores), max(self.scores))


def tune_lr(cfg: ExperimentConfig, factors: Sequence[float], data: DataSplits, n_val: int, seed: int,
            metric: str = "mAP", workers: int | None = None) -> LrTuning:
    """Choose ``cfg.train.lr`` times one of ``factors`` on a validation split, never the test set.

    ``n_val`` of ``data.train``'s images are held out (:func:`~mlrobust.data.hold_out` with
    ``seed``); their labels go through the config's own protocol, with a draw of their own
    (a user with 10 % of the labels validates on 10 % of them too). ``cfg`` is trained on the
    other images once per factor, nothing written; the factor with the highest validation
    ``metric`` wins (the smallest of tied ones). The trials run side by side
    (:func:`run_many`; ``workers`` as there)."""
    if not factors or any(f <= 0 for f in factors):
        raise ConfigError(f"tune_lr: factors must be positive numbers, got {list(factors)}")
    fit_part, val_part = hold_out(data.train, n_val, seed=seed)
    hidden = replace(cfg.data, protocol_seed=derive_seed(seed, cfg.data.protocol_seed))
    validation = Subset(data.train, val_part.index, observed_labels(val_part.labels, hidden))
    split = DataSplits(train=fit_part, test=validation)
    trials = {}
    for f in sorted(set(factors)):
        trials[f] = Run(ExperimentConfig.from_dict(cfg.to_dict()), data=split, write=False)
        trials[f].cfg.train.lr = cfg.train.lr * f
    scores = {f: outcome.metrics[metric] for f, outcome in run_many(trials, workers).items()}
    best = max(scores, key=lambda f: (scores[f], -f))
    return LrTuning(best, cfg.train.lr * best, scores)
