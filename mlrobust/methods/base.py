"""The method registry: a paper's module registers its method factory, its argument
dataclass and its benchmark cases here, beside their definitions (the way timm's
``register_model`` works), and the run, the command line and ``bench`` find them by name.

A factory ``factory(ctx, args) -> Method`` receives a :class:`MethodContext` (the run's
config, data, observed labels, and a way to train a helper model) and the method's
arguments as a dataclass parsed from ``method_args`` (unknown keys are an error that lists
the valid ones).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from ..config import ExperimentConfig
from ..data import DataSplits, LabelledDataset
from ..engine import Method, Trainer
from ..losses import create_loss
from ..options import ConfigError, Options, from_dict
from ..registry import Registry

__all__ = ["MethodContext", "MethodSpec", "NoArgs", "METHODS", "register_method", "build_method", "create_method",
           "BenchCase", "BENCH_CASES", "register_bench_case", "FitFn"]

#: trains a fresh model of the run's config on (dataset, observed labels) with a method
FitFn = Callable[[LabelledDataset, Tensor, Method], Trainer]


@dataclass
class MethodContext:
    """What a method factory may use: the run's ``config``, its data ``splits`` (the
    training set's ``labels`` are the ground truth, used only to measure), the ``observed``
    training labels after the label protocol, and ``fit`` to train a helper model from fresh
    weights with the run's training settings (a silver classifier, a warm start)."""

    config: ExperimentConfig
    splits: DataSplits
    observed: Tensor
    fit: FitFn | None = None

    def loss(self) -> Callable[[Tensor, Tensor], Tensor]:
        """The run's loss (``loss.name`` with ``loss.args``)."""
        return create_loss(self.config.loss.name, **self.config.loss.args)


@dataclass
class NoArgs(Options):
    """The arguments of a method that takes none."""

    section = "method_args"


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its factory and the dataclass of its ``method_args``."""

    name: str
    factory: Callable[[MethodContext, Any], Method]
    args: type = NoArgs


METHODS: Registry[MethodSpec] = Registry("method")


def register_method(name: str, *, args: type = NoArgs) -> Callable[[Callable[..., Method]], Callable[..., Method]]:
    """``@register_method("name", args=ArgsDataclass)`` on ``factory(ctx, args) -> Method``."""

    def add(factory: Callable[[MethodContext, Any], Method]) -> Callable[[MethodContext, Any], Method]:
        METHODS.register(name, MethodSpec(name, factory, args))
        return factory

    return add


def _spec(name: str) -> MethodSpec:
    try:
        return METHODS.lookup(name)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def create_method(name: str, ctx: MethodContext, **args: Any) -> Method:
    """The method ``name`` for the run described by ``ctx``, with keyword ``args``."""
    spec = _spec(name)
    return spec.factory(ctx, from_dict(spec.args, args, "method_args."))


def build_method(cfg: ExperimentConfig, ctx: MethodContext) -> Method:
    """The method of a config: ``cfg.method`` with ``cfg.method_args``."""
    return create_method(cfg.method, ctx, **cfg.method_args)


@dataclass(frozen=True)
class BenchCase:
    """A row of ``python -m mlrobust bench``'s method table: the step time of ``method``
    (built from the number of classes and the batch size) on a model made with
    ``model_args``, relative to a plain BCE step. ``step`` builds a timed closure from the
    trainer instead of a training step (e.g. a relabeling pass)."""

    name: str  # the key of ``bench --methods``
    label: str  # the row's text
    method: Callable[[int, int], Method]  # (num_classes, batch_size) -> Method
    model_args: dict[str, Any] = field(default_factory=dict)
    step: Callable[[Trainer], Callable[[], None]] | None = None


BENCH_CASES: Registry[BenchCase] = Registry("bench method")


def register_bench_case(case: BenchCase) -> BenchCase:
    """Add a row to the bench's method table (``bce``, the baseline, comes first)."""
    return BENCH_CASES.register(case.name, case)
