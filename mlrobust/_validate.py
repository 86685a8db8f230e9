"""Input checks shared by the package: every bad input gets an error that names the
argument, what was expected and what was found (design section 12)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["check_labels", "check_scores", "check_fraction", "make_generator"]


def _describe_values(values: Tensor, limit: int = 5) -> str:
    shown = ", ".join(str(v) for v in values[:limit].tolist())
    return shown + (", ..." if values.numel() > limit else "")


def check_labels(y: Tensor, name: str = "y", *, allow_unknown: bool = True,
                 num_classes: int | None = None, values: bool | None = None) -> None:
    """Check a label matrix: a 2-D tensor (N, C) with values in {-1, 0, 1}
    (1 present, -1 absent, 0 unknown), or {-1, 1} when ``allow_unknown`` is False.

    The value check reads the tensor, which on a GPU means waiting for it (a host-device
    sync). By default (``values=None``) it runs for CPU tensors only; labels on a device
    were checked where they were made (the trainer checks its label store once).
    """
    if not isinstance(y, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, C), got {type(y).__name__}")
    if y.dim() != 2:
        raise ValueError(f"{name} must have shape (N, C), got shape {tuple(y.shape)}")
    if num_classes is not None and y.shape[1] != num_classes:
        raise ValueError(f"{name} must have {num_classes} columns (classes), got shape {tuple(y.shape)}")
    if not (values if values is not None else y.device.type == "cpu"):
        return
    if y.is_floating_point() and not torch.isfinite(y).all():
        raise ValueError(f"{name} contains NaN or inf; labels must be in {{-1, 0, 1}}")
    bad = (y != 1) & (y != -1)
    if allow_unknown:
        bad &= y != 0
    if bad.any():
        values = torch.unique(y[bad]).cpu()
        expected = "{-1, 0, 1} (1 present, -1 absent, 0 unknown)" if allow_unknown else "{-1, 1}"
        raise ValueError(f"{name} must hold values in {expected}; found {_describe_values(values)}")


def check_scores(scores: Tensor, y: Tensor, name: str = "logits", y_name: str = "y") -> None:
    """Check that model scores are a finite float (N, C) tensor matching the labels."""
    if not isinstance(scores, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, C), got {type(scores).__name__}")
    if scores.shape != y.shape:
        raise ValueError(f"{name} and {y_name} must have the same shape (N, C); "
                         f"got {tuple(scores.shape)} and {tuple(y.shape)}")
    if not scores.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {scores.dtype}")


def check_fraction(value: float, name: str, *, low: float = 0.0, high: float = 1.0) -> None:
    """Check a probability-like scalar lies in [low, high]."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number in [{low}, {high}], got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")


def make_generator(seed: int | torch.Generator) -> torch.Generator:
    """A CPU ``torch.Generator`` from an int seed, or the generator itself."""
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int or a torch.Generator, got {seed!r}")
    return torch.Generator().manual_seed(seed)
