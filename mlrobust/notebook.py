"""Helpers for the chapters: parameters per scale, source display, result tables.

Chapters keep their parameters cell to plain scalars (papermill's rule: values derived from
parameters go in a later cell). ``None`` there means "the value of the chosen scale", read
from ``book/params/<chapter>.yaml`` by :func:`resolve_parameters`.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

__all__ = ["resolve_parameters", "show_source", "markdown_table", "mean_std", "fmt_mean_std"]


def resolve_parameters(chapter: str, scale: str, given: dict[str, Any], params_dir: str | Path = "params") -> dict[str, Any]:
    """Fill the ``None`` values of ``given`` from ``params_dir/<chapter>.yaml[scale]``.

    Values set explicitly (not None) win. Every key of ``given`` must exist in the file's
    scale section and vice versa, so a renamed parameter cannot be silently ignored.
    """
    path = Path(params_dir) / f"{chapter}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"parameter file not found: {path.resolve()}")
    presets = yaml.safe_load(path.read_text())
    if scale not in presets:
        raise ValueError(f"scale must be one of {sorted(presets)} (from {path}), got {scale!r}")
    preset = presets[scale]
    missing, extra = sorted(set(preset) - set(given)), sorted(set(given) - set(preset))
    if missing or extra:
        raise ValueError(f"{path} [{scale}] and the notebook's parameters disagree: "
                         f"only in the file {missing}, only in the notebook {extra}")
    return {k: preset[k] if v is None else v for k, v in given.items()}


def show_source(*objects: Any) -> Any:
    """Display the package's source of functions or classes (never a copy of it)."""
    from IPython.display import Code

    return Code("\n\n".join(inspect.getsource(o) for o in objects), language="python")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> Any:
    """A Markdown table for display in a notebook (and in the built book)."""
    from IPython.display import Markdown

    def cell(v: Any) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return Markdown("\n".join(lines))


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def fmt_mean_std(values: Sequence[float], digits: int = 1) -> str:
    m, s = mean_std(values)
    return f"{m:.{digits}f} ± {s:.{digits}f}"
