"""Input checks shared by the package: every bad input gets an error that names the
argument, what was expected and what was found."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["ZERO_MEANS", "check_labels", "looks_zero_one", "check_scores", "check_fraction", "make_generator"]


def _describe_values(values: Tensor, limit: int = 5) -> str:
    shown = ", ".join(str(v) for v in values[:limit].tolist())
    return shown + (", ..." if values.numel() > limit else "")


#: The values of ``check_labels(zero_means=...)``: ``None`` says nothing about the 0s, so a
#: matrix of 0s and 1s only is refused as ambiguous; ``"unknown"`` states they are unknown.
ZERO_MEANS = (None, "unknown")


def check_labels(y: Tensor, name: str = "y", *, allow_unknown: bool = True,
                 num_classes: int | None = None, values: bool | None = None,
                 zero_means: str | None = None) -> None:
    """Check a label matrix: a 2-D tensor (N, C) with values in {-1, 0, 1}
    (1 present, -1 absent, 0 unknown), or {-1, 1} when ``allow_unknown`` is False.

    The value check reads the tensor, which on a GPU means waiting for it (a host-device
    sync). By default (``values=None``) it runs for CPU tensors only; labels on a device
    were checked where they were made (the trainer checks its label store once).

    Two inputs are refused because they are almost always a {0, 1} "present/absent" matrix
    whose 0s would silently be read as *unknown* (``metrics.evaluate(x, y == 1)`` would score
    only the positives and report mAP 100):

    * a bool tensor (a TypeError: convert with ``y.to(torch.int8) * 2 - 1``);
    * an integer or float matrix holding both 0s and 1s but no -1, unless the caller states
      ``zero_means="unknown"`` (e.g. a positives-only partial matrix, or a mini-batch of a
      matrix already checked whole). An all-zero matrix (nothing known) passes.
    """
    if not isinstance(y, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, C), got {type(y).__name__}")
    if zero_means not in ZERO_MEANS:
        raise ValueError(f"zero_means must be one of {ZERO_MEANS}, got {zero_means!r}")
    if y.dtype == torch.bool:
        raise TypeError(f"{name} is a bool tensor; labels are int8 with 1 present, -1 absent, 0 unknown. "
                        f"A bool (or 0/1) 'present' matrix converts with {name}.to(torch.int8) * 2 - 1")
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
    if zero_means is None and allow_unknown:
        _refuse_zero_one(y, name)


def looks_zero_one(y: Tensor) -> bool:
    """Whether a label matrix holds 0s and 1s and no -1: most likely a "present/absent"
    matrix, whose 0s would be read as unknown."""
    return bool((y == 0).any() and (y == 1).any() and not (y == -1).any())


def _refuse_zero_one(y: Tensor, name: str) -> None:
    """Refuse a matrix of 0s and 1s only (see :func:`looks_zero_one`): reading its 0s as
    unknown gives silently wrong numbers."""
    if looks_zero_one(y):
        raise ValueError(
            f"{name} holds only 0s and 1s (no -1): here 0 means unknown, not absent. If 0 means absent, "
            f"convert with {name}.to(torch.int8) * 2 - 1; if the 0s really are unknown, "
            "pass zero_means='unknown' where this matrix is checked")


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
