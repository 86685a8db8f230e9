"""From a config to a finished run: data, label protocol, model, method, training, results.

``run_experiment(cfg)`` writes into ``cfg.output_dir/cfg.name``:

* ``config.json`` - the full config;
* ``env.json`` - versions, hardware, code revision;
* ``history.csv`` - one row per epoch (loss, learning rate, time, validation metrics);
* ``metrics.json`` - test metrics and timings;
* ``checkpoint.pt`` - the latest checkpoint (``resume=True`` continues from it).

Label protocols and methods are looked up by name in :data:`PROTOCOLS` and :data:`METHODS`;
the paper chapters register theirs there.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from . import labels as label_protocols
from . import losses
from .config import ConfigError, DataConfig, ExperimentConfig, TrainConfig
from .data import DATASETS, DataSplits, build_dataset
from .engine import Method, SupervisedMethod, Trainer, environment_report
from .engine.checkpoint import atomic_save, atomic_write_text, load_checkpoint
from .models import MultiLabelNet, create_backbone, create_head, create_model, create_refine
from .registry import Registry

__all__ = ["PROTOCOLS", "METHODS", "register_protocol", "register_method", "build_data",
           "observed_labels", "build_model", "build_method", "pretrain_backbone", "pretrained_path",
           "frozen_backbone", "run_experiment", "RunResult"]

log = logging.getLogger("mlrobust")


def _first(fn: Callable[..., Any]) -> Callable[..., Tensor]:
    """Wrap a protocol that returns (labels, extra) to return the labels only."""

    def wrapped(y: Tensor, seed: int, **kwargs: Any) -> Tensor:
        return fn(y, seed=seed, **kwargs)[0]

    wrapped.__signature__ = inspect.signature(fn)  # type: ignore[attr-defined]
    return wrapped


PROTOCOLS: Registry[Callable[..., Tensor]] = Registry("data.protocol")
#: ``register_protocol(name, fn)`` adds a label protocol ``fn(y, seed=..., **args) -> observed labels``
register_protocol = PROTOCOLS.register
for _name, _fn in {
    "full": lambda y, seed: y.clone(),
    "partial": label_protocols.partial,
    "dense": label_protocols.dense,
    "noisy": label_protocols.noisy,
    "single_positive": label_protocols.single_positive,
    "symmetric_noise": _first(label_protocols.symmetric_noise),
    "frequency_corruption": label_protocols.frequency_corruption,
    "semi_supervised": label_protocols.semi_supervised,
}.items():
    register_protocol(_name, _fn)


MethodFactory = Callable[[ExperimentConfig, DataSplits], Method]


def _supervised(cfg: ExperimentConfig, splits: DataSplits) -> Method:
    if cfg.method_args:
        raise ConfigError(f"method 'supervised' takes no method_args, got {sorted(cfg.method_args)}")
    return SupervisedMethod(losses.get_loss(cfg.loss.name, **cfg.loss.args))


def _curriculum(cfg: ExperimentConfig, splits: DataSplits) -> Method:
    """Durand et al. 2019, Algorithm 1: the configured loss plus curriculum relabeling.
    method_args: strategy, theta, at (fractions of training, default 0.45 and 0.7),
    passes (MC-dropout passes), batch_size (the mini-batch of strategy [b])."""
    from .methods.durand import CurriculumRelabeling, relabel_epochs

    args = dict(cfg.method_args)
    valid = {"strategy", "theta", "at", "passes", "batch_size"}
    unknown = sorted(set(args) - valid)
    if unknown or "strategy" not in args or "theta" not in args:
        raise ConfigError(f"method 'curriculum' needs method_args strategy and theta; got {sorted(args)}, "
                          f"valid: {sorted(valid)}")
    hook = CurriculumRelabeling(args["strategy"], args["theta"], relabel_epochs(cfg.train.epochs, args.get("at", (0.45, 0.7))),
                                truth=splits.train.labels if (splits.train.labels != 0).all() else None,
                                passes=args.get("passes", 20), batch_size=args.get("batch_size", cfg.train.batch_size))
    return SupervisedMethod(losses.get_loss(cfg.loss.name, **cfg.loss.args), hooks=[hook])


METHODS: Registry[MethodFactory] = Registry("method")
#: ``register_method(name, factory)`` adds a method ``factory(cfg, splits) -> Method``
register_method = METHODS.register
register_method("supervised", _supervised)
register_method("curriculum", _curriculum)


def _check_dataset_args(cfg: DataConfig) -> None:
    try:
        params = inspect.signature(DATASETS.lookup(cfg.dataset)).parameters
    except ValueError as err:
        raise ConfigError(f"data.dataset: {err}") from None
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    valid = [p for p in params if p not in ("split", "root", "image_size", "n", "seed", "cache")]
    unknown = sorted(set(cfg.dataset_args) - set(valid))
    if unknown:
        raise ConfigError(f"data.dataset_args {unknown} not accepted by dataset {cfg.dataset!r}; valid: {valid}")


def build_data(cfg: DataConfig) -> DataSplits:
    """The train / (val) / test splits named by a :class:`DataConfig`."""
    _check_dataset_args(cfg)
    common = {"root": cfg.root, "image_size": cfg.image_size, "seed": cfg.seed, "cache": cfg.cache,
              **cfg.dataset_args}
    train = build_dataset(cfg.dataset, "train", n=cfg.n_train, **common)
    test = build_dataset(cfg.dataset, "test", n=cfg.n_test, **common)
    val = build_dataset(cfg.dataset, "val", n=cfg.n_val, **common) if cfg.n_val > 0 else None
    for name, split in (("test", test), ("val", val)):
        if split is not None and list(split.classes) != list(train.classes):
            raise ConfigError(f"{cfg.dataset}: the {name} split's classes differ from the train split's")
    return DataSplits(train=train, test=test, val=val)


def observed_labels(y: Tensor, cfg: DataConfig) -> Tensor:
    """Apply the config's label protocol to the training ground truth ``y``."""
    try:
        fn = PROTOCOLS.lookup(cfg.protocol)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    params = inspect.signature(fn).parameters
    valid = [p for p in params if p not in ("y", "seed")]
    unknown = sorted(set(cfg.protocol_args) - set(valid))
    if unknown:
        raise ConfigError(f"data.protocol_args {unknown} not accepted by protocol {cfg.protocol!r}; valid: {valid}")
    return fn(y, seed=cfg.protocol_seed, **cfg.protocol_args)


def build_model(cfg: ExperimentConfig, splits: DataSplits) -> MultiLabelNet:
    """The network of a config. On precomputed feature maps (``model.backbone="features"``)
    the backbone is the identity and only the head (and GNN) are trained."""
    on_features = getattr(splits.train, "kind", "images") == "features"
    if on_features != (cfg.model.backbone == "features"):
        raise ConfigError("model.backbone must be 'features' exactly when the data are precomputed feature maps; "
                          f"got backbone {cfg.model.backbone!r} with {'feature maps' if on_features else 'images'}")
    if not on_features:
        return create_model(cfg.model.backbone, len(splits.classes), head=cfg.model.head,
                            weights=cfg.model.weights, gnn_steps=cfg.model.gnn_steps, **cfg.model.head_args)
    head = create_head(cfg.model.head, splits.train.num_features, len(splits.classes), **cfg.model.head_args)
    return MultiLabelNet(nn.Identity(), head, create_refine(len(splits.classes), cfg.model.gnn_steps))


def pretrain_backbone(backbone: str = "cnn_s", *, image_size: int = 32, n: int = 6000, epochs: int = 6,
                      seed: int = 0, device: str = "auto", cache_dir: str | Path | None = None) -> nn.Module:
    """A backbone pretrained on the embedded benchmark's attribute task (colour, pattern
    tone, size, texture of the main object) on the disjoint "pretrain" split: the
    benchmark's stand-in for ImageNet pretraining, a different label set than the classes.

    With ``cache_dir`` the weights are saved there and reused (training is deterministic,
    so the cache holds exactly what a new run would produce).
    """
    from .data import ShapeScenes

    path = pretrained_path(cache_dir, backbone, image_size=image_size, n=n, epochs=epochs, seed=seed) \
        if cache_dir is not None else None
    if path is not None and path.is_file():
        net = create_backbone(backbone)
        net.load_state_dict(load_checkpoint(path))
        return net
    data = ShapeScenes(n, image_size=image_size, seed=seed, split="pretrain")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = create_model(backbone, data.attributes.shape[1])
    cfg = TrainConfig(epochs=epochs, seed=seed, device=device, progress=False, checkpoint=False)
    Trainer(model, SupervisedMethod(losses.bce), data, data.attributes, cfg).fit()
    net = model.backbone.cpu()
    if path is not None:
        atomic_save(net.state_dict(), path)
    return net


def frozen_backbone(backbone: str, weights: str | Path | None = None, *, image_size: int = 32, pretrain_n: int = 6000,
                    pretrain_epochs: int = 6, device: str = "auto",
                    cache_dir: str | Path | None = None) -> tuple[nn.Module, str | None]:
    """The backbone of the frozen-feature experiments and the weights file it came from:
    ``weights`` (a local file) when given, else :func:`pretrain_backbone` on the benchmark's
    attribute task (cached in ``cache_dir``; the file is None without a cache)."""
    if weights is not None:
        return create_backbone(backbone, weights=str(weights)), str(weights)
    net = pretrain_backbone(backbone, image_size=image_size, n=pretrain_n, epochs=pretrain_epochs, device=device,
                            cache_dir=cache_dir)
    path = pretrained_path(cache_dir, backbone, image_size=image_size, n=pretrain_n, epochs=pretrain_epochs) \
        if cache_dir is not None else None
    return net, None if path is None else str(path)


def pretrained_path(cache_dir: str | Path, backbone: str = "cnn_s", *, image_size: int = 32, n: int = 6000,
                    epochs: int = 6, seed: int = 0) -> Path:
    """Where :func:`pretrain_backbone` keeps the weights of these settings (usable as
    ``model.weights`` to fine-tune from them)."""
    return Path(cache_dir) / f"pretrained-{backbone}-attributes-{image_size}px-{n}-{epochs}ep-seed{seed}.pt"


def build_method(cfg: ExperimentConfig, splits: DataSplits) -> Method:
    try:
        factory = METHODS.lookup(cfg.method)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return factory(cfg, splits)


@dataclass
class RunResult:
    """What a run produced: test metrics, per-epoch history, the trainer (model, label
    store, predictions) and the results folder (None when nothing was written)."""

    metrics: dict[str, float]
    history: list[dict[str, float]]
    trainer: Trainer
    run_dir: Path | None
    train_seconds: float


def run_experiment(cfg: ExperimentConfig, *, data: DataSplits | None = None, resume: bool = False,
                   write: bool = True, hooks: tuple = (), method: Method | None = None,
                   train_labels: Tensor | None = None) -> RunResult:
    """Run one experiment end to end. Pass ``data`` to reuse already built splits (a
    chapter building the benchmark once for many runs), ``method`` for a method built in
    Python from objects a config cannot hold (an estimated corruption matrix), and
    ``train_labels`` for observed labels made outside the config's protocol."""
    splits = data if data is not None else build_data(cfg.data)
    run_dir = cfg.run_dir if write else None
    # build and check everything before the run folder is touched: a bad config leaves nothing
    y_obs = observed_labels(splits.train.labels, cfg.data) if train_labels is None else train_labels
    with torch.random.fork_rng():
        torch.manual_seed(cfg.train.seed)  # model initialisation
        model = build_model(cfg, splits)
        method = build_method(cfg, splits) if method is None else method
    trainer = Trainer(model, method, splits.train, y_obs, cfg.train, val_set=splits.val, hooks=hooks,
                      run_dir=run_dir, augment=cfg.data.augment, num_workers=cfg.data.num_workers,
                      run_config=cfg.to_dict())
    if resume and run_dir is not None and trainer.checkpoint_path.is_file():  # refuse before overwriting
        trainer._check_resumable(load_checkpoint(trainer.checkpoint_path).get("run_config"))
    main = trainer.dist.rank == 0  # with torchrun, rank 0 writes the results folder
    if run_dir is not None and main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(json.dumps(cfg.to_dict(), indent=2) + "\n", run_dir / "config.json")
        atomic_write_text(json.dumps(environment_report(trainer.device), indent=2) + "\n", run_dir / "env.json")
    start = time.perf_counter()
    history = trainer.fit(resume=resume)
    seconds = time.perf_counter() - start
    result = trainer.evaluate(splits.test)
    if run_dir is not None and main:
        summary = {"test": result, "train_seconds": seconds, "epochs": trainer.epoch,
                   "observed_labels": label_protocols.summary(y_obs)}
        atomic_write_text(json.dumps(summary, indent=2) + "\n", run_dir / "metrics.json")
    return RunResult(result, history, trainer, run_dir, seconds)
