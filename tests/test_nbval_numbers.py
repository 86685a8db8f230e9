"""nbval compares a chapter's table numbers exactly only on the machine kind that executed
it (conftest.py): checked here on small notebooks through nbval itself, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from mlrobust.engine import numerics_fingerprint
from mlrobust.notebook import BOOK_THREADS, mask_table_numbers

ROOT = Path(__file__).resolve().parents[1]
TABLE = "| claim | {} | {} |"


def test_mask_table_numbers_masks_table_rows_only() -> None:
    text = "**Caption: 3 seeds, 32 px**\n\n| a | b |\n|---|---|\n| 10% known | +0.48, −0.95 ± 1.2e-3 (n=3) | yes |\nAP 80.56 %"
    assert mask_table_numbers(text) == ("**Caption: 3 seeds, 32 px**\n\n| a | b |\n|---|---|\n"
                                        "| #% known | #, # ± # (n=#) | yes |\nAP 80.56 %")


def _notebook(path: Path, executed_on: dict, measured: str, verdict: str, printed: str) -> None:
    """One checked cell showing a claims-like table, one printing a hand-worked number; the
    stored outputs say "+1.23 ± 0.45 | yes" and "AP 80.56 %"."""
    table = nbformat.v4.new_code_cell(
        f"from IPython.display import Markdown, display\ndisplay(Markdown({TABLE.format(measured, verdict)!r}))",
        metadata={"tags": ["nbval-check-output"]},
        outputs=[nbformat.v4.new_output("display_data", data={"text/markdown": TABLE.format("+1.23 ± 0.45", "yes"),
                                                               "text/plain": "<IPython.core.display.Markdown object>"})])
    plain = nbformat.v4.new_code_cell(f"print({printed!r})", metadata={"tags": ["nbval-check-output"]},
                                      outputs=[nbformat.v4.new_output("stream", name="stdout", text="AP 80.56 %\n")])
    table.execution_count, plain.execution_count = 1, 2
    nb = nbformat.v4.new_notebook(cells=[table, plain], metadata={"mlrobust": {"executed_on": executed_on}})
    nbformat.write(nb, path)


def test_table_numbers_are_compared_only_on_the_machine_that_executed_the_chapter(tmp_path: Path) -> None:
    here = dict(numerics_fingerprint(), threads=BOOK_THREADS)  # what the nbval session will see
    elsewhere = dict(here, cpu="GenuineIntel 6 143 8")
    cases = {  # name: (fingerprint, measured, verdict, printed, passes)
        "other_machine_other_numbers": (elsewhere, "-0.24 ± 1.03", "yes", "AP 80.56 %", True),
        "other_machine_other_verdict": (elsewhere, "+1.23 ± 0.45", "**no**", "AP 80.56 %", False),
        "other_machine_other_printed": (elsewhere, "+1.23 ± 0.45", "yes", "AP 80.57 %", False),
        "same_machine_other_numbers": (here, "+1.23 ± 0.46", "yes", "AP 80.56 %", False),
        "same_machine_same_numbers": (here, "+1.23 ± 0.45", "yes", "AP 80.56 %", True),
    }
    for name, (fingerprint, measured, verdict, printed, _) in cases.items():
        _notebook(tmp_path / f"{name}.ipynb", fingerprint, measured, verdict, printed)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-o", "addopts=", "-n", "0",
         "--nbval-lax", "--nbval-current-env", "-rA", "--rootdir", str(tmp_path), str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    report = out.stdout + out.stderr
    for name, (*_, passes) in cases.items():
        failed = f"FAILED {name}.ipynb" in report
        assert failed != passes, f"{name}: expected {'a pass' if passes else 'a failure'}\n{report[-3000:]}"
    assert report.count("NumbersNotCompared") >= 3, report[-3000:]  # the three other-machine notebooks


@pytest.mark.parametrize("text", ["| a | 1 |", "no table here 1.5"])
def test_mask_is_idempotent(text: str) -> None:
    assert mask_table_numbers(mask_table_numbers(text)) == mask_table_numbers(text)


def test_a_chapter_is_skipped_only_if_this_code_executed_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import conftest

    chapter = ROOT / "book" / "ch01_problem.ipynb"
    key, here = conftest._code_key(chapter), numerics_fingerprint()
    assert key is not None and key.startswith("code-")
    assert "reproduces it bit for bit" in conftest.skip_reason(chapter, {"executed_on": here, "code_key": key}, here)
    assert conftest.skip_reason(chapter, {"executed_on": here, "code_key": "code-0"}, here) is None  # other code
    elsewhere = conftest.skip_reason(chapter, {"executed_on": dict(here, cpu="x"), "code_key": key}, here)
    assert "another machine kind" in elsewhere
    assert conftest.skip_reason(chapter, {"executed_on": here}, here) is None  # no key recorded
    monkeypatch.setenv("MLROBUST_NBVAL", "all")
    assert conftest.skip_reason(chapter, {"executed_on": here, "code_key": key}, here) is None
    assert conftest.skip_reason(chapter, {"executed_on": dict(here, cpu="x"), "code_key": key}, here) is None
