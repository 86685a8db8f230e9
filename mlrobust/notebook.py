"""Helpers for the chapters: parameters per scale, source display, result tables.

Chapters keep their parameters cell to plain scalars (papermill's rule: values derived from
parameters go in a later cell). ``None`` there means "the value of the chosen scale", read
from ``book/params/<chapter>.yaml`` by :func:`resolve_parameters`.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

__all__ = ["resolve_parameters", "check_parameters", "find_params_dir", "show_source", "without_docstrings",
           "markdown_table", "mean_std", "fmt_mean_std", "BOOK_THREADS", "use_book_threads",
           "mask_table_numbers", "claims_checked", "floats", "ints"]


PARAMS_FOLDER = Path("book") / "params"

#: torch threads of a chapter executed for the book (``make book``, ``make refresh``, nbval
#: in ``make test``): one, so that the committed numbers do not depend on the machine's core
#: count (a sum split over threads adds in another order) and chapters run side by side,
#: one per core. A chapter opened in JupyterLab uses every core and may differ in the last
#: digits.
BOOK_THREADS = 1


def use_book_threads() -> None:
    """Give this process, and the kernels it starts from now on, :data:`BOOK_THREADS` torch
    threads (the build script and the test session call it before any chapter runs)."""
    import torch

    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(BOOK_THREADS)
    torch.set_num_threads(BOOK_THREADS)


_NUMBER = re.compile(r"[-+\u2212]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")
_TABLE_ROW = re.compile(r"^\|.*$", re.MULTILINE)


def mask_table_numbers(text: str) -> str:
    """``text`` with every number in a markdown table row (a line starting with ``|``),
    with its sign, replaced by ``#``; the rest of the text, and the words of the rows, as they are. nbval
    compares a chapter's tables this way on a machine other than the one that executed it
    (see conftest.py): the measured numbers differ there, the rows and verdicts must not."""
    return _TABLE_ROW.sub(lambda row: _NUMBER.sub("#", row.group(0)), text)


def find_params_dir(chapter: str) -> Path:
    """The folder holding ``<chapter>.yaml``, whatever the working directory: ``params/``
    there (a chapter run from ``book/`` or from the build's staged ``_build/src/book``), else
    ``book/params`` in it or in a folder above it (papermill started from the repository
    root, as in the README), else ``book/params`` of the repository this package was
    installed from (editable install)."""
    cwd = Path.cwd()
    candidates = [cwd / "params", *(d / PARAMS_FOLDER for d in (cwd, *cwd.parents)),
                  Path(__file__).resolve().parents[1] / PARAMS_FOLDER]
    for folder in candidates:
        if (folder / f"{chapter}.yaml").is_file():
            return folder
    raise FileNotFoundError(f"no parameter file {chapter}.yaml in params/ or book/params/ of {cwd} or a folder "
                            f"above it, nor in {candidates[-1]}")


def _expected(preset_value: Any) -> tuple[type, ...] | None:
    """The types a parameter may take, from its preset value: None means any (an optional
    path, say); an int preset takes only ints, a float preset ints too (``-p lr 1``)."""
    if preset_value is None:
        return None
    if isinstance(preset_value, bool):
        return (bool,)
    if isinstance(preset_value, int):
        return (int,)
    if isinstance(preset_value, float):
        return (int, float)
    return (type(preset_value),)


def _check_types(path: Path, scale: str, preset: dict[str, Any], given: dict[str, Any]) -> None:
    """Every value set explicitly must have its preset's type, checked before anything runs
    (a string epoch count would otherwise fail deep in the training loop, or not at all)."""
    for name, value in given.items():
        kinds = _expected(preset.get(name))
        if value is None or kinds is None:
            continue
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise TypeError(f"parameter {name!r} must be {names} (its {scale!r} value in {path} is "
                            f"{preset[name]!r}), got {value!r} of type {type(value).__name__}")


def _injected_names() -> set[str]:
    """The names papermill injected into the running kernel: its cell starts with the line
    ``# Parameters`` and is the most recent such cell in IPython's input history. Empty
    outside IPython. (papermill only warns about a name the notebook does not know.)"""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython ships with the book extras
        return set()
    shell = get_ipython()
    history = shell.user_ns.get("In", []) if shell is not None else []
    for source in reversed(history):
        if source.splitlines()[:1] == ["# Parameters"]:
            try:
                tree = ast.parse(source)
            except SyntaxError:
                return set()
            return {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
                    if isinstance(t, ast.Name)}
    return set()


def _presets(path: Path, scale: str, dataset: Any) -> dict[str, Any]:
    """The values of ``scale`` in a parameter file, with the ``datasets`` overrides of the
    full scale applied for ``dataset``."""
    presets = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(presets, dict):
        raise ValueError(f"{path} must map each scale (quick, full, smoke) to its parameters")
    per_dataset = presets.pop("datasets", None) or {}
    if scale not in presets:
        raise ValueError(f"scale must be one of {sorted(presets)} (from {path}), got {scale!r}")
    preset = dict(presets[scale])
    if scale == "full":
        overrides = per_dataset.get(dataset or preset.get("dataset")) or {}
        unknown = sorted(set(overrides) - set(preset))
        if unknown:
            raise ValueError(f"{path} [datasets][{dataset or preset.get('dataset')}] sets unknown parameters "
                             f"{unknown}")
        preset.update(overrides)
    return preset


def _params_file(chapter: str, params_dir: str | Path | None) -> Path:
    folder = Path(params_dir) if params_dir is not None else find_params_dir(chapter)
    path = folder / f"{chapter}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"parameter file not found: {path.resolve()}")
    return path


def check_parameters(chapter: str, scale: str, given: dict[str, Any],
                     params_dir: str | Path | None = None) -> dict[str, Any]:
    """Check parameters about to be passed to a chapter against ``<chapter>.yaml``: every
    name of ``given`` must be one of the scale's, every value not None of its preset's type
    (see :func:`resolve_parameters`). Returns the scale's preset. ``tools/build_book.py``
    calls it before starting a kernel, so a typo fails in a second, not after a chapter."""
    path = _params_file(chapter, params_dir)
    preset = _presets(path, scale, given.get("dataset"))
    extra = sorted(set(given) - set(preset))
    if extra:
        raise ValueError(f"unknown parameter(s) {extra} for {chapter}; its parameters are "
                         f"{['scale', *sorted(preset)]} ({path})")
    _check_types(path, scale, preset, given)
    return preset


def resolve_parameters(chapter: str, scale: str, given: dict[str, Any],
                       params_dir: str | Path | None = None) -> dict[str, Any]:
    """Fill the ``None`` values of ``given`` from ``<chapter>.yaml`` (found by
    :func:`find_params_dir` unless ``params_dir`` is given).

    The file has one section per scale (``quick``, ``full``, ``smoke``) and, optionally, a
    ``datasets`` section of per-dataset overrides of the full scale (the papers' settings on
    COCO, VOC 2007, NUS-WIDE, ...), applied when ``scale="full"`` runs on that dataset.
    Values set explicitly (not None) win over both. Every key of ``given`` must exist in the
    scale's section and vice versa, so a renamed parameter cannot be silently ignored; a value
    set explicitly must have its preset's type (a preset of None takes anything, an int is
    accepted for a float); and a parameter papermill injected that the chapter does not take
    is an error (papermill itself only warns).
    """
    path = _params_file(chapter, params_dir)
    preset = _presets(path, scale, given.get("dataset"))
    missing, extra = sorted(set(preset) - set(given)), sorted(set(given) - set(preset))
    if missing or extra:
        raise ValueError(f"{path} [{scale}] and the notebook's parameters disagree: "
                         f"only in the file {missing}, only in the notebook {extra}")
    _check_types(path, scale, preset, given)
    unknown = sorted(_injected_names() - set(given) - {"scale"})
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} passed to {chapter} (papermill -p); its parameters are "
                         f"{['scale', *sorted(given)]}")
    return {k: preset[k] if v is None else v for k, v in given.items()}


#: the environment variable that turns strict claims into reported ones (see claims_checked)
CLAIMS_VARIABLE = "MLROBUST_CLAIMS"
#: parameters that change where a chapter writes, not what it measures
_OUTPUT_ONLY = frozenset({"output_dir"})


def claims_checked(chapter: str, scale: str, resolved: dict[str, Any],
                   params_dir: str | Path | None = None) -> bool:
    """Whether the chapter's claims are asserted (:class:`mlrobust.claims.Claims` with
    ``strict``): only at the quick scale with every parameter of ``resolved`` (the output of
    :func:`resolve_parameters`) at its preset, the setting the chapter's text was written
    for and CI executes. A reader who changes a parameter (an exercise) gets the claims
    tables, with the rows whose verdict departs from the text marked, instead of an error.

    ``MLROBUST_CLAIMS=report`` in the environment reports everywhere: after a change to the
    benchmark, one run of a chapter shows every verdict that moved instead of stopping at
    the first."""
    if os.environ.get(CLAIMS_VARIABLE, "") == "report":
        return False
    if scale != "quick":
        return False
    preset = _presets(_params_file(chapter, params_dir), scale, resolved.get("dataset"))
    return all(resolved.get(k) == v for k, v in preset.items() if k not in _OUTPUT_ONLY)


def without_docstrings(source: str) -> str:
    """``source`` (the code of a function, a class or a module) without its docstrings nor
    those of the functions and classes it defines. A docstring that is a body's only
    statement becomes ``...``; one that shares a line with other code stays."""
    dedented = textwrap.dedent(source)
    lines, flat = source.splitlines(keepends=True), dedented.splitlines()
    drop: set[int] = set()
    ellipsis: dict[int, str] = {}
    for node in ast.walk(ast.parse(dedented)):
        if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        doc = node.body[0]
        if not (isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant)
                and isinstance(doc.value.value, str)):
            continue
        first, last = doc.lineno - 1, doc.end_lineno - 1
        after = flat[last][doc.end_col_offset:].strip()
        if flat[first][:doc.col_offset].strip() or (after and not after.startswith("#")):
            continue
        drop.update(range(first, last + 1))
        if len(node.body) == 1:
            ellipsis[first] = lines[first][:len(lines[first]) - len(lines[first].lstrip())] + "...\n"
        elif last + 1 < len(lines) and not lines[last + 1].strip():
            drop.add(last + 1)  # the blank line that set the docstring apart
    return "".join(ellipsis.get(i, "") if i in drop else line for i, line in enumerate(lines))


def show_source(*objects: Any, docstrings: bool = False) -> Any:
    """Display the package's source of functions or classes (never a copy of it), by
    default without docstrings: the chapter's text explains the code, and the docstrings
    (references, options, departures from the paper) are one ``help()`` away."""
    from IPython.display import Code

    sources = [inspect.getsource(o) for o in objects]
    return Code("\n\n".join(s if docstrings else without_docstrings(s) for s in sources), language="python")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], caption: str = "") -> Any:
    """A Markdown table for display in a notebook (and in the built book), with an optional
    caption above it (it should say the dataset, the scale and the seeds). A ``|`` inside a
    cell is escaped, so "|C - Ĉ|" stays in its cell instead of splitting it."""
    from IPython.display import Markdown

    def cell(v: Any) -> str:
        text = f"{v:.2f}" if isinstance(v, float) else str(v)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [f"**{caption}**", ""] if caption else []
    lines += ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return Markdown("\n".join(lines))


def floats(text: Any, name: str = "parameter") -> list[float]:
    """A list parameter written as comma-separated numbers ("0.1,0.5,1") as floats; a bad
    entry is an error naming the parameter."""
    return [_number(v, name, float) for v in str(text).split(",")]


def ints(text: Any, name: str = "parameter") -> list[int]:
    """Comma-separated integers ("50,10") as ints; see :func:`floats`."""
    return [_number(v, name, int) for v in str(text).split(",")]


def _number(entry: str, name: str, kind: type) -> Any:
    try:
        return kind(entry.strip())
    except ValueError:
        raise ValueError(f"{name}: {entry.strip()!r} is not {'an integer' if kind is int else 'a number'} "
                         "(expected comma-separated values such as '0.1,0.5')") from None


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def fmt_mean_std(values: Sequence[float], digits: int = 1) -> str:
    m, s = mean_std(values)
    return f"{m:.{digits}f} ± {s:.{digits}f}"
