"""Experiment configuration: nested dataclasses that round-trip through JSON and YAML.

An unknown key anywhere is an error that lists the valid keys of that section, so a typo in
a config file or a ``--set`` override never passes silently.

>>> cfg = ExperimentConfig.from_dict({"train": {"epochs": 2}})
>>> cfg = apply_overrides(cfg, ["train.lr=0.01", "data.protocol=partial"])
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

__all__ = ["DataConfig", "ModelConfig", "LossConfig", "TrainConfig", "ExperimentConfig",
           "ConfigError", "load_config", "apply_overrides"]

T = TypeVar("T")


class ConfigError(ValueError):
    """A config key or value that is not valid."""


@dataclass
class DataConfig:
    """Which data, at what size, with which label protocol on the training labels."""

    dataset: str = "shapescenes"  # see mlrobust.data.DATASETS (python -m mlrobust datasets)
    root: str | None = None  # folder of a real dataset on disk (never downloaded)
    dataset_args: dict[str, Any] = field(default_factory=dict)  # loader options, e.g. {"keep_empty": false}
    image_size: int = 32
    # benchmark sizes; on a real dataset a seeded subset of the split, 0 = the whole split
    n_train: int = 4000
    n_val: int = 0
    n_test: int = 2000
    seed: int = 0  # the dataset seed
    protocol: str = "full"  # see mlrobust.experiments.PROTOCOLS
    protocol_args: dict[str, Any] = field(default_factory=dict)
    protocol_seed: int = 0
    augment: str = "flip"  # "none", "flip", "weak" or "strong" (see mlrobust.data.augment)
    num_workers: int = 0  # DataLoader workers for datasets read from disk
    cache: bool | None = None  # keep rendered images in memory; None: when they fit in 1 GiB

    def __post_init__(self) -> None:
        _check(self.image_size >= 16, "data.image_size", self.image_size, ">= 16")
        for name in ("n_train", "n_val", "n_test", "num_workers"):
            _check(getattr(self, name) >= 0, f"data.{name}", getattr(self, name), ">= 0")
        _check(self.augment in ("none", "flip", "weak", "strong"), "data.augment", self.augment,
               "'none', 'flip', 'weak' or 'strong'")


@dataclass
class ModelConfig:
    """Backbone and head."""

    backbone: str = "cnn_s"  # a name in mlrobust.models.BACKBONES or any timm model
    weights: str | None = None  # local weights file for the backbone
    head: str = "gap"  # "gap" or "classmap"
    head_args: dict[str, Any] = field(default_factory=dict)  # e.g. {"pooling": "weldon", "dropout": 0.2}
    gnn_steps: int = 0  # > 0: the label GNN of Durand et al. 2019 on the logits (T = 3 in the paper)


@dataclass
class LossConfig:
    """A loss from mlrobust.losses.LOSSES and its keyword arguments."""

    name: str = "bce"
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    """Optimisation, schedule, precision and bookkeeping."""

    epochs: int = 8
    batch_size: int = 64
    optimizer: str = "sgd"  # "sgd", "adam" or "adamw"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    schedule: str = "onecycle"  # "onecycle", "cosine", "step" or "constant"
    lr_steps: list[int] = field(default_factory=list)  # "step": epochs at which lr is divided by 10
    warmup: float = 0.2  # "onecycle": share of steps spent warming up
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    channels_last: bool = True  # on CUDA only
    compile: bool = False
    grad_clip: float | None = None
    eval_every: int = 0  # evaluate on the validation set every n epochs (0: never)
    eval_batch_size: int = 256
    progress: bool | None = None  # None: on in an interactive session, off in CI / papermill
    checkpoint: bool = True  # write checkpoint.pt at the end of each epoch

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, "train.epochs", self.epochs, ">= 1")
        _check(self.batch_size >= 2, "train.batch_size", self.batch_size, ">= 2")
        _check(self.lr > 0, "train.lr", self.lr, "> 0")
        _check(self.optimizer in ("sgd", "adam", "adamw"), "train.optimizer", self.optimizer,
               "'sgd', 'adam' or 'adamw'")
        _check(self.schedule in ("onecycle", "cosine", "step", "constant"), "train.schedule",
               self.schedule, "'onecycle', 'cosine', 'step' or 'constant'")
        _check(0.0 <= self.warmup < 1.0, "train.warmup", self.warmup, "in [0, 1)")


@dataclass
class ExperimentConfig:
    """Everything one training run needs; ``output_dir/name`` receives its results."""

    name: str = "run"
    output_dir: str = "runs"
    method: str = "supervised"  # see mlrobust.experiments.METHODS
    method_args: dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ExperimentConfig":
        return _from_dict(cls, d, "")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, path: str | Path) -> None:
        from .engine.checkpoint import atomic_write_text

        atomic_write_text(json.dumps(self.to_dict(), indent=2) + "\n", path)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


def _check(ok: bool, key: str, value: object, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{key} must be {expected}, got {value!r}")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotated type ``tp`` (ints are accepted for floats)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{key}: {value!r} fits none of {tp}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key} must be None, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping of {tp.__name__} fields, got {value!r}")
        return _from_dict(tp, value, key + ".")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp is Any or (isinstance(tp, type) and isinstance(value, tp) and not (tp is int and isinstance(value, bool))):
        return value
    raise ConfigError(f"{key} must be of type {getattr(tp, '__name__', tp)}, got {value!r}")


def _from_dict(cls: type[T], d: dict[str, Any], prefix: str) -> T:
    if not isinstance(d, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {d!r}")
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(d) - set(valid))
    if unknown:
        section = prefix.rstrip(".") or "the top level"
        raise ConfigError(f"unknown config key(s) {', '.join(prefix + k for k in unknown)} in {section}; "
                          f"valid keys: {', '.join(valid)}")
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in d.items()}
    return cls(**kwargs)


def load_config(path: str | Path) -> ExperimentConfig:
    """Read an :class:`ExperimentConfig` from a ``.yaml``/``.yml`` or ``.json`` file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    text = path.read_text()
    try:
        d = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {err}") from err
    try:
        return ExperimentConfig.from_dict(d or {})
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err


def apply_overrides(cfg: ExperimentConfig, overrides: list[str]) -> ExperimentConfig:
    """Apply ``section.key=value`` overrides (values parsed as YAML) and re-validate."""
    d = cfg.to_dict()
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value, e.g. train.lr=0.01")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = d
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"override {key!r}: {'.'.join(parts[: i + 1])} is not a config section")
            node = node[part]
        node[parts[-1]] = yaml.safe_load(raw)
    return ExperimentConfig.from_dict(d)
