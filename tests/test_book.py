"""The chapters' structure: sources and notebooks agree, parameters, figures, citations."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import jupytext
import pytest
import yaml

from mlrobust.data import DATASETS

ROOT = Path(__file__).resolve().parents[1]


def chapters() -> list[Path]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [ROOT / f"{f}.ipynb" for f in files if (ROOT / f"{f}.ipynb").exists()]


CHAPTERS = chapters()


def test_every_toc_entry_exists() -> None:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    for f in files:
        assert any((ROOT / f"{f}{ext}").exists() for ext in (".md", ".ipynb")), f"_toc.yml names missing {f}"
    assert CHAPTERS, "no notebook chapter in _toc.yml"


def _cells(nb) -> list[tuple[str, str, list[str]]]:
    return [(c.cell_type, c.source.strip(), sorted(c.metadata.get("tags", []))) for c in nb.cells]


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem)
def test_notebook_matches_its_source(notebook: Path) -> None:
    source = notebook.parent / "py" / f"{notebook.stem}.py"
    assert source.is_file(), f"{notebook.name} has no source {source.relative_to(ROOT)}"
    expected = _cells(jupytext.read(source))
    actual = _cells(jupytext.read(notebook))
    assert actual == expected, (f"{notebook.name} is out of date with {source.name}: "
                                "run `make refresh` to rebuild and re-execute it")


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem)
def test_the_pair_is_byte_identical_as_text(notebook: Path) -> None:
    """JupyterLab (jupytext) refuses to open a chapter whose .ipynb is newer than its .py and
    reads as different text, even if only the order of a cell's metadata keys differs, as
    after a refresh (nbformat sorts them). The fix: ``jupytext --sync book/<chapter>.ipynb``."""
    source = notebook.parent / "py" / f"{notebook.stem}.py"
    assert jupytext.writes(jupytext.read(notebook), fmt="py:percent") == source.read_text(encoding="utf-8"), (
        f"{notebook.name} reads as other text than {source.relative_to(ROOT)}: JupyterLab would refuse to "
        f"open it; run `jupytext --sync {notebook.relative_to(ROOT)}`")


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem)
def test_parameters_cell_and_params_file(notebook: Path) -> None:
    nb = jupytext.read(notebook)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{notebook.name} needs exactly one cell tagged 'parameters'"
    names = []
    for node in ast.parse(tagged[0].source).body:
        assert isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant), (
            f"{notebook.name}: the parameters cell must hold plain scalar assignments only")
        names += [t.id for t in node.targets]
    assert "scale" in names
    presets = yaml.safe_load((ROOT / "book" / "params" / f"{notebook.stem}.yaml").read_text())
    per_dataset = presets.pop("datasets", None) or {}
    assert {"quick", "full", "smoke"} <= set(presets)
    for scale, values in presets.items():
        assert set(values) == set(names) - {"scale"}, f"params/{notebook.stem}.yaml [{scale}] disagrees"
    for dataset, overrides in per_dataset.items():
        assert dataset in DATASETS, f"params/{notebook.stem}.yaml [datasets] names unknown dataset {dataset!r}"
        assert set(overrides) <= set(names) - {"scale"}, f"params/{notebook.stem}.yaml [datasets][{dataset}]"


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem)
def test_committed_with_outputs_without_errors_and_captioned_figures(notebook: Path) -> None:
    nb = json.loads(notebook.read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
    assert outputs, f"{notebook.name} is committed without outputs (run `make refresh`)"
    assert not [o for o in outputs if o["output_type"] == "error"], f"{notebook.name} has an error output"
    for cell in nb["cells"]:
        images = [o for o in cell.get("outputs", []) if {"image/png", "image/jpeg"} & set(o.get("data", {}))]
        if images and "remove-output" not in cell["metadata"].get("tags", []):
            caption = cell["metadata"].get("mystnb", {}).get("figure", {}).get("caption")
            assert caption, f"{notebook.name}: a figure without a caption in cell:\n{''.join(cell['source'])[:200]}"


def test_citations_resolve() -> None:
    bib = (ROOT / "book" / "references.bib").read_text()
    keys = set(re.findall(r"@\w+\{([^,]+),", bib))
    texts = [p.read_text() for p in (ROOT / "book").rglob("*") if p.suffix in (".md", ".py")]
    cited = {k.strip() for t in texts for group in re.findall(r"\{cite:[pt]\}`([^`]+)`", t) for k in group.split(",")}
    assert cited, "no citation found"
    assert cited <= keys, f"cited but not in references.bib: {sorted(cited - keys)}"


@pytest.mark.parametrize("notebook", [c for c in CHAPTERS if c.stem != "full_scale"], ids=lambda p: p.stem)
def test_claims_tables_are_compared_on_re_execution(notebook: Path) -> None:
    """nbval re-executes every chapter; the cells that print its claims tables are tagged
    nbval-check-output, so a re-execution whose numbers differ from the committed notebook's
    fails (full_scale's table holds machine-dependent speeds and is left out)."""
    cells = [c for c in jupytext.read(notebook).cells if c.cell_type == "code" and "claims.table(" in c.source]
    assert cells, f"{notebook.name} prints no claims table"
    for cell in cells:
        assert "nbval-check-output" in cell.metadata.get("tags", []), (
            f"{notebook.name}: the cell `{cell.source.splitlines()[0]}` is not compared by nbval")
