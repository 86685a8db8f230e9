"""pytest configuration shared by the tests and the notebook checks (nbval).

A chapter's measured numbers (training runs, minutes of SGD) are reproducible bit for bit on
one kind of machine only: another CPU model, vector unit or thread count changes the last
bits of a sum, and training amplifies them into differences within the seed spread. So
nbval compares the markdown tables of a chapter (claims, calibration) number for number only
where the machine's numerics fingerprint equals the one the chapter recorded when it was
executed (``tools/build_book.py``); elsewhere it masks the numbers of those tables
(:func:`mlrobust.notebook.mask_table_numbers`) and still compares their rows, wording and
verdicts, with a warning. Every other checked output (the hand-worked examples, the gradient
checks) is compared exactly everywhere, and the claims are asserted inside the chapters on
every machine.

A chapter whose recorded code key (its code cells, the parameter files, the package and its
shipped weights, the locked environment, the build script: ``tools/build_book.py``'s
``code_key``) equals this checkout's was executed by exactly this code: it is skipped, saying
so, unless ``MLROBUST_NBVAL=all``. On the machine kind that executed it a re-execution would
reproduce it bit for bit; on another kind it would differ only in the last digits, which are
masked there anyway, while costing the whole book's training time (over 20 minutes on two
cores). Any change to the package or the chapter re-executes it; ``MLROBUST_NBVAL=all`` also
checks that a new machine kind reaches every claim's verdict.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import pytest

#: nbval applies ``re.sub(pattern, replacement, output)`` for each of a notebook's patterns
_TABLE_ROWS = r"(?s).+"


class NumbersNotCompared(pytest.PytestWarning):
    """A chapter's table numbers were not compared: it was executed on another machine."""


_ROOT = Path(__file__).resolve().parent
_UNCHANGED: dict[Path, str] = {}  # chapter -> why its re-execution is skipped


def _recorded(path: Path) -> dict:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))["metadata"]["mlrobust"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return record if isinstance(record, dict) else {}


@functools.cache
def _build_book() -> Any:
    """tools/build_book.py, loaded once per session (a worker collects every chapter)."""
    spec = importlib.util.spec_from_file_location("_mlrobust_build_book", _ROOT / "tools" / "build_book.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _code_key(path: Path) -> str | None:
    """tools/build_book.py's key of a chapter of book/ at the quick scale (None elsewhere)."""
    if path.parent != _ROOT / "book" or not (_ROOT / "book" / "py" / f"{path.stem}.py").is_file():
        return None
    return _build_book().code_key(path, "quick", {})


def skip_reason(path: Path, record: dict, here: dict) -> str | None:
    """Why re-executing the chapter at ``path`` is pointless (None: it is not)."""
    key = record.get("code_key")
    if os.environ.get("MLROBUST_NBVAL") == "all" or key is None or key != _code_key(path):
        return None
    if record.get("executed_on") == here:
        return (f"executed by this code on this machine kind ({key}): a re-execution reproduces it bit for bit "
                "(MLROBUST_NBVAL=all runs it)")
    return (f"executed by this code ({key}) on another machine kind, whose last digits differ from this one's "
            "(MLROBUST_NBVAL=all re-executes it here)")


def pytest_configure(config: pytest.Config) -> None:
    # the thread count the chapters were executed with (tools/build_book.py does the same)
    from mlrobust.notebook import use_book_threads

    use_book_threads()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # the chapters first: each takes minutes on one worker, while the others share the tests
    items.sort(key=lambda item: item.path.suffix != ".ipynb")
    for item in items:
        if item.path in _UNCHANGED:
            item.add_marker(pytest.mark.skip(reason=_UNCHANGED[item.path]))


def pytest_collectstart(collector: Any) -> None:
    if getattr(collector, "path", None) is None or collector.path.suffix != ".ipynb":
        return
    from mlrobust.engine import numerics_fingerprint
    from mlrobust.notebook import mask_table_numbers

    # Progress bars and warnings go to stderr and differ between runs: never compare them.
    collector.skip_compare += ("stderr", "text/html", "application/javascript",
                               "application/vnd.jupyter.widget-view+json")
    record, here = _recorded(collector.path), numerics_fingerprint()
    recorded = record.get("executed_on")
    reason = skip_reason(collector.path, record, here)
    if reason is not None:
        _UNCHANGED[collector.path] = reason
    elif recorded != here:
        collector.sanitize_patterns[_TABLE_ROWS] = lambda text: mask_table_numbers(text.group(0))
        collector.warn(NumbersNotCompared(
            f"the numbers of its tables are not compared: executed on {recorded or 'an unrecorded machine'}, "
            f"checked on {here} (make refresh on this machine records it)"))
