"""Experiment configuration: nested dataclasses that round-trip through JSON and YAML.

An unknown key anywhere is an error that lists the valid keys of that section, and every
value is type-checked, so a typo in a config file, a ``--set`` override or a config built in
Python never passes silently (see :mod:`mlrobust.options`).

>>> cfg = ExperimentConfig.from_dict({"train": {"epochs": 2}})
>>> cfg = apply_overrides(cfg, ["train.lr=0.01", "data.protocol=partial"])
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .data.augment import POLICIES
from .engine.train_config import TrainConfig
from .options import ConfigError, Options, check, from_dict

__all__ = ["DataConfig", "ModelConfig", "LossConfig", "TrainConfig", "ExperimentConfig", "ConfigError",
           "load_config", "apply_overrides", "resume_conflicts"]


@dataclass
class DataConfig(Options):
    """Which data, at what size, with which label protocol on the training labels."""

    section = "data"

    dataset: str = "shapescenes"  # see mlrobust.data.DATASETS (python -m mlrobust datasets)
    root: str | None = None  # folder of a real dataset on disk (never downloaded)
    dataset_args: dict[str, Any] = field(default_factory=dict)  # loader options, e.g. {"keep_empty": false}
    image_size: int = 32
    # benchmark sizes; on a real dataset a seeded subset of the split, 0 = the whole split
    n_train: int = 4000
    n_val: int = 0
    n_test: int = 2000
    seed: int = 0  # the dataset seed
    protocol: str = "full"  # see mlrobust.labels.PROTOCOLS
    protocol_args: dict[str, Any] = field(default_factory=dict)
    protocol_seed: int = 0
    augment: str = "flip"  # "none" or a policy of mlrobust.data.augment.POLICIES
    num_workers: int = 0  # DataLoader workers for datasets read from disk

    def validate(self) -> None:
        check(self.image_size >= 16, self.key("image_size"), self.image_size, ">= 16")
        for name in ("n_train", "n_val", "n_test", "num_workers"):
            check(getattr(self, name) >= 0, self.key(name), getattr(self, name), ">= 0")
        policies = ["none", *POLICIES]
        check(self.augment in policies, self.key("augment"), self.augment,
              ", ".join(map(repr, policies[:-1])) + f" or {policies[-1]!r}")


@dataclass
class ModelConfig(Options):
    """Backbone and head."""

    section = "model"

    backbone: str = "cnn_s"  # a name in mlrobust.models.BACKBONES or any timm model
    weights: str | None = None  # a shipped backbone (mlrobust.pretrained.SHIPPED), a local weights file, or None / "random"
    head: str = "gap"  # "gap" or "classmap"
    head_args: dict[str, Any] = field(default_factory=dict)  # e.g. {"pooling": "weldon", "dropout": 0.2}
    gnn_steps: int = 0  # > 0: the label GNN of Durand et al. 2019 on the logits (T = 3 in the paper)
    freeze_at: int = 0  # > 0: the backbone's stem and first freeze_at - 1 stages stay fixed (Detectron2's FREEZE_AT)

    def validate(self) -> None:
        check(self.gnn_steps >= 0, self.key("gnn_steps"), self.gnn_steps, ">= 0")
        check(self.freeze_at >= 0, self.key("freeze_at"), self.freeze_at, ">= 0")


@dataclass
class LossConfig(Options):
    """A loss from mlrobust.losses.LOSSES and its keyword arguments."""

    section = "loss"

    name: str = "bce"
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExperimentConfig(Options):
    """Everything one training run needs; ``output_dir/name`` receives its results."""

    name: str = "run"
    output_dir: str = "runs"
    method: str = "supervised"  # see mlrobust.methods.METHODS
    method_args: dict[str, Any] = field(default_factory=dict)  # checked by the method's argument dataclass
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ExperimentConfig":
        return from_dict(cls, d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def validate(self) -> None:
        _check_run_name(self.name)

    @property
    def run_dir(self) -> Path:
        """``output_dir/name`` (``name`` checked again: it may have been set after the config
        was built)."""
        _check_run_name(self.name)
        return Path(self.output_dir) / self.name


def _check_run_name(name: str) -> None:
    """A run's ``name`` is a folder inside ``output_dir``: an absolute path or a ``..`` would
    write the results (and ``overwrite`` delete them) elsewhere."""
    parts = Path(name).parts
    check(bool(parts) and not Path(name).is_absolute() and ".." not in parts, "name", name,
          "a relative folder inside output_dir (not empty, not absolute, no '..')")


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (plain YAML keeps the
    last one, so a repeated ``train:`` section would silently drop the first)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: key {key!r} appears twice "
                                  f"(first on line {seen[key] + 1})")
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _json_unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ConfigError(f"key(s) {repeated} appear twice")
    return dict(pairs)


def load_config(path: str | Path) -> ExperimentConfig:
    """Read an :class:`ExperimentConfig` from a ``.yaml``/``.yml`` or ``.json`` file. A key
    given twice, an empty file or a file that is not a mapping is an error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    text = path.read_text()
    try:
        d = (json.loads(text, object_pairs_hook=_json_unique) if path.suffix == ".json"
             else yaml.load(text, Loader=_UniqueKeyLoader))  # noqa: S506 - a SafeLoader subclass
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {err}") from err
    except ConfigError as err:
        raise ConfigError(f"{path}, {err}") from err
    if d is None:
        raise ConfigError(f"{path} is empty: write the settings that differ from the defaults "
                          "(`python -m mlrobust config` prints them all)")
    try:
        return ExperimentConfig.from_dict(d)
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
        try:
            node[parts[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ConfigError(f"override {item!r}: the value {raw!r} is not valid YAML ({problem}); quote "
                              "strings and write lists as [1, 2]") from None
    return ExperimentConfig.from_dict(d)


# settings that may differ between a run and its resumption: where and how fast it runs (not
# train.epochs: the one-cycle schedule is laid out over all epochs, so more epochs is another run)
RESUME_FREE = {("train", "device"), ("train", "progress"), ("train", "checkpoint"),
               ("train", "eval_batch_size"), ("train", "cache_frozen"), ("data", "num_workers")}


def resume_conflicts(saved: dict[str, Any] | None, current: ExperimentConfig) -> list[str]:
    """The settings in which ``current`` differs from the config ``saved`` in a checkpoint
    (``section.key: old -> new``), those of :data:`RESUME_FREE` aside: resuming across any
    of them would silently mix two runs."""
    if saved is None:
        return []
    now = current.to_dict()
    diffs = []
    for section in sorted(set(saved) | set(now)):
        a, b = saved.get(section), now.get(section)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += [f"{section}.{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
                      if a.get(k) != b.get(k) and (section, k) not in RESUME_FREE]
        elif a != b:
            diffs.append(f"{section}: {a!r} -> {b!r}")
    return diffs
