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

__all__ = ["resolve_parameters", "Claims", "show_source", "markdown_table", "mean_std", "fmt_mean_std"]


def resolve_parameters(chapter: str, scale: str, given: dict[str, Any], params_dir: str | Path = "params") -> dict[str, Any]:
    """Fill the ``None`` values of ``given`` from ``params_dir/<chapter>.yaml``.

    The file has one section per scale (``quick``, ``full``, ``smoke``) and, optionally, a
    ``datasets`` section of per-dataset overrides of the full scale (the papers' settings on
    COCO, VOC 2007, NUS-WIDE, ...), applied when ``scale="full"`` runs on that dataset.
    Values set explicitly (not None) win over both. Every key of ``given`` must exist in the
    scale's section and vice versa, so a renamed parameter cannot be silently ignored.
    """
    path = Path(params_dir) / f"{chapter}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"parameter file not found: {path.resolve()}")
    presets = yaml.safe_load(path.read_text())
    per_dataset = presets.pop("datasets", None) or {}
    if scale not in presets:
        raise ValueError(f"scale must be one of {sorted(presets)} (from {path}), got {scale!r}")
    preset = dict(presets[scale])
    missing, extra = sorted(set(preset) - set(given)), sorted(set(given) - set(preset))
    if missing or extra:
        raise ValueError(f"{path} [{scale}] and the notebook's parameters disagree: "
                         f"only in the file {missing}, only in the notebook {extra}")
    if scale == "full":
        dataset = given.get("dataset") or preset.get("dataset")
        overrides = per_dataset.get(dataset) or {}
        unknown = sorted(set(overrides) - set(preset))
        if unknown:
            raise ValueError(f"{path} [datasets][{dataset}] sets unknown parameters {unknown}")
        preset.update(overrides)
    return {k: preset[k] if v is None else v for k, v in given.items()}


class Claims:
    """The claims a chapter makes, each checked on its own measurements.

    With ``strict`` (the quick scale, which CI runs) a claim that does not hold raises
    ``AssertionError``, so a broken method fails the build. Otherwise (the full scale on a
    real dataset, a smoke run) it is recorded, and :meth:`table` reports which claims held:
    a long run should end with its evidence, not with a traceback.
    """

    def __init__(self, strict: bool) -> None:
        self.strict = bool(strict)
        self.results: list[tuple[str, bool, str]] = []

    def check(self, holds: Any, claim: str, evidence: Any = None) -> bool:
        holds = bool(holds)
        self.results.append((claim, holds, "" if evidence is None else str(evidence)))
        if not holds and self.strict:
            raise AssertionError(f"claim does not hold: {claim}" + (f" ({evidence})" if evidence is not None else ""))
        return holds

    def table(self) -> Any:
        """A Markdown table of every claim checked so far and whether it held."""
        rows = [[claim, "yes" if ok else "**no**", evidence] for claim, ok, evidence in self.results]
        return markdown_table(["claim", "holds", "evidence"], rows)


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
