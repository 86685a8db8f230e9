"""Every parameter change an exercise asks for runs end to end (at the smoke scale, on the
embedded benchmark): a reader who edits the parameters cell gets the chapter's tables, with
the claims reported rather than asserted (:func:`mlrobust.notebook.claims_checked`), not a
crash. The list is checked against the chapters' exercise sections, so an exercise that
names a new parameter change must be added here."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: chapter -> the parameter changes its exercises ask for, as the text writes them
EXERCISES: dict[str, list[dict[str, object]]] = {
    "ch01_problem": [{"known": 0.3}, {"known": 0.5}, {"weights": "random"}],
    "ch02_durand": [{"frozen": False}],
    "ch04_cevikalp": [{"noise_levels": "0,0.2,0.4,0.6"}, {"lrs": "0.001,0.003,0.01"}],
    "ch05_huynh": [{"logistic_epochs": 9}, {"e2e_lr": 0.2}],
    "ch06_wang": [{"alpha": 1.0}, {"tau": 0.8}],
}


def _runs(changes: list[dict[str, object]]) -> list[dict[str, object]]:
    """The changes merged into as few runs as possible (changes of different parameters
    share a run; a smoke run of a chapter takes a minute of the test budget)."""
    runs: list[dict[str, object]] = []
    for change in changes:
        run = next((r for r in runs if not set(r) & set(change)), None)
        if run is None:
            runs.append(dict(change))
        else:
            run.update(change)
    return runs


CASES = [(chapter, run) for chapter, changes in EXERCISES.items() for run in _runs(changes)]

#: seconds a cell may take: the longest takes about 13 s at the smoke scale on 2 slow cores
CELL_LIMIT = 120

#: quick values an exercise's change is relative to, where the smoke scale's would make it
#: meaningless (9 epochs of Logistic leave IMCL one of the quick scale's 10, none of smoke's 2)
CONTEXT: dict[str, dict[str, object]] = {"ch05_huynh": {"epochs": 10}}


def _exercises(chapter: str) -> str:
    text = (ROOT / "book" / "py" / f"{chapter}.py").read_text(encoding="utf-8")
    return text[text.index("# ## Exercises"):]


def _changes_named(chapter: str) -> set[tuple[str, str]]:
    """(name, value) of every ``name = value`` / ``name=value`` in backticks of the
    exercises that sets one of the chapter's parameters to another value than its quick
    preset (a value quoted as the chapter's own setting is no change)."""
    import yaml

    quick = yaml.safe_load((ROOT / "book" / "params" / f"{chapter}.yaml").read_text())["quick"]
    found = re.findall(r"`(\w+) ?= ?([^`]+)`", _exercises(chapter))
    return {(name, value) for name, value in ((n, v.strip().strip('"')) for n, v in found)
            if name in quick and value != str(quick[name])}


@pytest.mark.parametrize("chapter", sorted({p.stem for p in (ROOT / "book" / "py").glob("ch0*.py")}))
def test_every_parameter_change_of_the_exercises_is_listed(chapter: str) -> None:
    listed = {(name, str(value)) for change in EXERCISES.get(chapter, []) for name, value in change.items()}
    assert _changes_named(chapter) == listed


@pytest.mark.parametrize("chapter, change", CASES, ids=[f"{c}-{'-'.join(f'{k}={v}' for k, v in x.items())}"
                                                          for c, x in CASES])
def test_an_exercise_parameter_change_runs(chapter: str, change: dict[str, object], tmp_path: Path) -> None:
    import jupytext
    import papermill as pm

    source = jupytext.read(ROOT / "book" / "py" / f"{chapter}.py")
    os.environ.setdefault("MLROBUST_PROGRESS", "0")
    for attempt in range(2):
        work = tmp_path / f"{chapter}-{attempt}.ipynb"
        jupytext.write(source, work)
        try:
            pm.execute_notebook(str(work), str(work), kernel_name="mlrobust", cwd=str(ROOT / "book"),
                                progress_bar=False, execution_timeout=CELL_LIMIT,
                                parameters={"scale": "smoke", "output_dir": str(tmp_path / f"runs-{attempt}"),
                                            **CONTEXT.get(chapter, {}), **change})
            return
        except TimeoutError:
            if attempt:
                raise
            # An idle kernel whose reply never arrives (seen once with ipykernel 7.4 in a cell that
            # runs in a second everywhere else) is the messaging's fault, not the chapter's: a
            # second kernel gets one more try; a chapter that truly hangs fails it too.
            warnings.warn(f"{chapter} {change}: a cell ran past {CELL_LIMIT} s; retrying in a new kernel",
                          stacklevel=1)
