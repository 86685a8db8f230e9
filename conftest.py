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
"""

from __future__ import annotations

import json
from typing import Any

import pytest

#: nbval applies ``re.sub(pattern, replacement, output)`` for each of a notebook's patterns
_TABLE_ROWS = r"(?s).+"


class NumbersNotCompared(pytest.PytestWarning):
    """A chapter's table numbers were not compared: it was executed on another machine."""


def _executed_on(path: Any) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))["metadata"]["mlrobust"]["executed_on"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def pytest_configure(config: pytest.Config) -> None:
    # the thread count the chapters were executed with (tools/build_book.py does the same)
    from mlrobust.notebook import use_book_threads

    use_book_threads()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # the chapters first: each takes minutes on one worker, while the others share the tests
    items.sort(key=lambda item: item.path.suffix != ".ipynb")


def pytest_collectstart(collector: Any) -> None:
    if getattr(collector, "path", None) is None or collector.path.suffix != ".ipynb":
        return
    from mlrobust.engine import numerics_fingerprint
    from mlrobust.notebook import mask_table_numbers

    # Progress bars and warnings go to stderr and differ between runs: never compare them.
    collector.skip_compare += ("stderr", "text/html", "application/javascript",
                               "application/vnd.jupyter.widget-view+json")
    recorded, here = _executed_on(collector.path), numerics_fingerprint()
    if recorded != here:
        collector.sanitize_patterns[_TABLE_ROWS] = lambda text: mask_table_numbers(text.group(0))
        collector.warn(NumbersNotCompared(
            f"the numbers of its tables are not compared: executed on {recorded or 'an unrecorded machine'}, "
            f"checked on {here} (make refresh on this machine records it)"))
