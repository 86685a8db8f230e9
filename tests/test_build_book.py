"""The book's build driver (tools/build_book.py) and macros tool (tools/book_macros.py), on a
tiny fake chapter: parameters checked before a kernel starts, a log line per cell, the
per-cell time limit, no run metadata in executed notebooks, and a cache that re-executes
only what changed; and papermill run "by hand" from any working directory."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from pathlib import Path
from types import ModuleType

import jupytext
import nbformat
import papermill as pm
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

TINY = '''# %% tags=["parameters"]
scale = "quick"
n = None
label = None

# %%
from mlrobust.notebook import resolve_parameters

P = resolve_parameters("tiny", scale, dict(n=n, label=label))

# %%
print(P["label"], P["n"] * 21)
'''
TINY_PARAMS = {"quick": {"n": 2, "label": "answer"}, "full": {"n": 4, "label": None},
               "smoke": {"n": 1, "label": "smoke"}}


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def bb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """build_book with its repository root moved to a fake one holding the tiny chapter."""
    module = _load("build_book")
    (tmp_path / "book" / "py").mkdir(parents=True)
    (tmp_path / "book" / "params").mkdir()
    (tmp_path / "book" / "py" / "tiny.py").write_text(TINY)
    (tmp_path / "book" / "params" / "tiny.yaml").write_text(yaml.safe_dump(TINY_PARAMS))
    (tmp_path / "book" / "intro.md").write_text("# Intro\n")
    monkeypatch.setattr(module, "ROOT", tmp_path)
    monkeypatch.setattr(module, "BUILD", tmp_path / "_build")
    monkeypatch.setattr(module, "STAGE", tmp_path / "_build" / "src")
    monkeypatch.setattr(module, "CACHE", tmp_path / "_build" / "cache")
    return module


def test_parameters_are_checked_before_a_kernel_starts(bb: ModuleType, tmp_path: Path) -> None:
    nb = tmp_path / "book" / "tiny.ipynb"
    assert bb.parameter_names(nb) == ["scale", "n", "label"]
    assert bb.check_parameters(nb, "quick", {"n": 3})["label"] == "answer"
    with pytest.raises(SystemExit, match=r"tiny: unknown parameter\(s\) \['epochs'\]; its parameters are "
                                         r"\['scale', 'n', 'label'\]"):
        bb.check_parameters(nb, "quick", {"epochs": 3})
    with pytest.raises(SystemExit, match=r"tiny: parameter 'n' must be int .*got 'three' of type str"):
        bb.check_parameters(nb, "quick", {"n": "three"})
    bb.check_parameters(nb, "full", {"scale": "full", "label": 7})  # a preset of None takes anything


def test_cache_key_follows_every_input(bb: ModuleType, tmp_path: Path) -> None:
    nb = tmp_path / "book" / "tiny.ipynb"
    (tmp_path / "mlrobust" / "__pycache__").mkdir(parents=True)
    (tmp_path / "mlrobust" / "weights").mkdir()
    (tmp_path / "mlrobust" / "a.py").write_text("x = 1\n")
    (tmp_path / "uv.lock").write_text("lock 1\n")
    key = bb.cache_key(nb, "quick", {})
    assert bb.cache_key(nb, "quick", {}) == key
    (tmp_path / "mlrobust" / "__pycache__" / "a.cpython.pyc").write_bytes(b"\0")
    (tmp_path / "book" / "intro.md").write_text("# Intro, edited\n")
    assert bb.cache_key(nb, "quick", {}) == key  # neither bytecode nor prose pages matter
    assert bb.cache_key(nb, "smoke", {}) != key and bb.cache_key(nb, "quick", {"n": 1}) != key
    changes = [lambda: (tmp_path / "book" / "py" / "tiny.py").write_text(TINY + "\n# %%\n1\n"),
               lambda: (tmp_path / "book" / "params" / "tiny.yaml").write_text("quick: {n: 5, label: x}\n"),
               lambda: (tmp_path / "book" / "params" / "other.yaml").write_text("quick: {}\n"),
               lambda: (tmp_path / "mlrobust" / "a.py").write_text("x = 2\n"),
               lambda: (tmp_path / "mlrobust" / "b.py").write_text(""),
               lambda: (tmp_path / "mlrobust" / "weights" / "w.safetensors").write_bytes(b"w1"),
               lambda: (tmp_path / "mlrobust" / "weights" / "w.safetensors").write_bytes(b"w2"),
               lambda: (tmp_path / "uv.lock").write_text("lock 2\n")]
    seen = {key}
    for change in changes:
        change()
        new = bb.cache_key(nb, "quick", {})
        assert new not in seen
        seen.add(new)


def test_code_key_ignores_prose_and_presentation(bb: ModuleType, tmp_path: Path) -> None:
    nb, py = tmp_path / "book" / "tiny.ipynb", tmp_path / "book" / "py" / "tiny.py"
    key = bb.code_key(nb, "quick", {})
    py.write_text(TINY.replace("# %%\nprint", "# %% [markdown]\n# Some prose.\n\n# %% tags=[\"hide-input\"]\nprint"))
    assert bb.code_key(nb, "quick", {}) == key and bb.cache_key(nb, "quick", {}) != key
    py.write_text(TINY.replace("* 21", "* 22"))
    assert bb.code_key(nb, "quick", {}) != key
    py.write_text(TINY.replace('# %%\nfrom', '# %% tags=["raises-exception"]\nfrom'))
    assert bb.code_key(nb, "quick", {}) != key  # a tag that changes how the cell runs


def test_stage_sources_rewrites_only_what_changed(bb: ModuleType, tmp_path: Path) -> None:
    for name in ("_config.yml", "_toc.yml"):
        (tmp_path / name).write_text("{}\n")
    (tmp_path / "book" / "runs" / "ch").mkdir(parents=True)
    (tmp_path / "book" / "runs" / "ch" / "big.pt").write_text("not staged")
    (tmp_path / "book" / "old.md").write_text("old\n")
    bb.stage_sources()
    stage = tmp_path / "_build" / "src"
    intro = stage / "book" / "intro.md"
    assert intro.is_file() and (stage / "book" / "params" / "tiny.yaml").is_file()
    assert not (stage / "book" / "py").exists() and not (stage / "book" / "runs").exists()
    (stage / "book" / "runs").mkdir()
    (stage / "book" / "runs" / "kept.txt").write_text("a chapter's run folder")
    past = time.time() - 100
    os.utime(intro, (past, past))
    (tmp_path / "book" / "old.md").unlink()
    (tmp_path / "book" / "params" / "tiny.yaml").write_text("quick: {n: 9, label: y}\n")
    bb.stage_sources()
    assert intro.stat().st_mtime == pytest.approx(past)  # unchanged: not rewritten, jupyter-book skips it
    assert not (stage / "book" / "old.md").exists() and (stage / "book" / "runs" / "kept.txt").is_file()
    assert "n: 9" in (stage / "book" / "params" / "tiny.yaml").read_text()


def test_clean_executed_drops_run_metadata_and_widget_state(bb: ModuleType, tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata.update(papermill={"duration": 1.0}, widgets={"application/vnd.jupyter.widget-state+json": {}},
                       kernelspec={"name": "mlrobust"})
    injected = nbformat.v4.new_code_cell("# Parameters\nn = 1\n", metadata={"tags": ["injected-parameters"]})
    timings = {"iopub.status.idle": "t"}
    code = nbformat.v4.new_code_cell("1", metadata={"papermill": {"duration": 0.1}, "execution": timings,
                                                    "tags": ["hide-input"]})
    nb.cells = [injected, code]
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, path)
    bb.clean_executed(path)
    clean = nbformat.read(path, as_version=4)
    assert set(clean.metadata) == {"kernelspec"}
    assert len(clean.cells) == 1 and clean.cells[0].metadata == {"tags": ["hide-input"]}


def test_a_chapter_runs_once_then_comes_from_the_cache(bb: ModuleType, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    nb = tmp_path / "book" / "tiny.ipynb"
    (tmp_path / "_config.yml").write_text("{}\n")
    (tmp_path / "_toc.yml").write_text("{}\n")
    bb.stage_sources()
    assert bb.stage_chapter(nb, "quick", {}, 120) is not None
    log = capsys.readouterr().out
    assert "tiny cell  1/3" in log and "tiny cell  3/3" in log and " s  print(P[\"label\"], P[\"n\"] * 21)" in log
    staged = tmp_path / "_build" / "src" / "book" / "tiny.ipynb"
    executed = nbformat.read(staged, as_version=4)
    assert executed.cells[-1].outputs[0]["text"] == "answer 42\n"
    assert "papermill" not in executed.metadata and all("papermill" not in c.metadata for c in executed.cells)
    from mlrobust.engine import numerics_fingerprint
    from mlrobust.notebook import BOOK_THREADS

    # the machine it ran on, with the book's thread count, for nbval's comparison (conftest.py)
    assert executed.metadata["mlrobust"]["executed_on"] == dict(numerics_fingerprint(), threads=BOOK_THREADS)
    first_mtime = staged.stat().st_mtime_ns
    start = time.perf_counter()
    bb.stage_sources(keep=lambda p: p == staged)
    assert bb.stage_chapter(nb, "quick", {}, 120) is None  # nothing changed: no kernel
    assert time.perf_counter() - start < 5
    assert staged.stat().st_mtime_ns == first_mtime and "from the cache" in capsys.readouterr().out
    (tmp_path / "book" / "params" / "tiny.yaml").write_text(yaml.safe_dump({**TINY_PARAMS, "quick": {
        "n": 3, "label": "again"}}))
    bb.stage_sources(keep=lambda p: p == staged)
    assert bb.stage_chapter(nb, "quick", {}, 120) is not None  # its parameters changed: executed again
    assert nbformat.read(staged, as_version=4).cells[-1].outputs[0]["text"] == "again 63\n"
    assert len(list((tmp_path / "_build" / "cache" / "tiny").iterdir())) == 2  # its two keys, no older entry
    py = tmp_path / "book" / "py" / "tiny.py"
    py.write_text(py.read_text() + '\n# %% [markdown]\n# A new closing remark.\n')
    assert bb.stage_chapter(nb, "quick", {}, 120) is None  # only prose changed: not executed
    merged = nbformat.read(staged, as_version=4)
    assert merged.cells[-1].source == "A new closing remark." and merged.cells[-2].outputs[0]["text"] == "again 63\n"
    assert merged.metadata["language_info"]["name"] == "python" and "from the cache" in capsys.readouterr().out
    # the outputs' machine and code key travel with them (a prose change keeps the code key)
    assert merged.metadata["mlrobust"] == {"executed_on": executed.metadata["mlrobust"]["executed_on"],
                                           "code_key": bb.code_key(nb, "quick", {})}


def test_a_cell_past_the_time_limit_stops_the_build_naming_it(bb: ModuleType, tmp_path: Path) -> None:
    src = tmp_path / "slow.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import time\ntime.sleep(60)")],
                                            metadata={"kernelspec": {"name": "mlrobust", "language": "python",
                                                                     "display_name": "mlrobust"}}), src)
    start = time.perf_counter()
    with pytest.raises(SystemExit, match=r"slow: a cell ran past 2 s .*--cell-timeout"):
        bb.execute(src, src, {}, tmp_path, 2)
    assert time.perf_counter() - start < 45


def test_the_scales_have_their_own_cell_limits() -> None:
    limits = _load("build_book").CELL_TIMEOUT
    assert limits["smoke"] < limits["quick"] and limits["full"] is None


def test_papermill_by_hand_from_the_repository_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's command: papermill from the root finds book/params; an unknown parameter
    is an error (papermill alone only warns), as is a value of the wrong type."""
    (tmp_path / "book" / "params").mkdir(parents=True)
    (tmp_path / "book" / "params" / "tiny.yaml").write_text(yaml.safe_dump(TINY_PARAMS))
    nb = jupytext.reads(TINY, fmt="py:percent")
    nb.metadata["kernelspec"] = {"name": "mlrobust", "language": "python", "display_name": "mlrobust"}
    jupytext.write(nb, tmp_path / "book" / "tiny.ipynb", fmt="ipynb")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out.ipynb"
    pm.execute_notebook("book/tiny.ipynb", str(out), parameters={"scale": "full", "label": "x"},
                        kernel_name="mlrobust", progress_bar=False)
    assert json.loads(out.read_text())["cells"][-1]["outputs"][0]["text"] == ["x 84\n"]
    with pytest.raises(pm.PapermillExecutionError, match=r"unknown parameter\(s\) \['epochs'\] passed to tiny"):
        pm.execute_notebook("book/tiny.ipynb", str(out), parameters={"epochs": 3}, kernel_name="mlrobust",
                            progress_bar=False)


# --- the macros cell ----------------------------------------------------------------------------

def test_macros_cell_holds_every_config_macro() -> None:
    bm = _load("book_macros")
    macros = bm.config_macros()
    assert macros["ind"] == ("\\mathbb{1}_{[#1]}", 1) and macros["R"] == ("\\mathbb{R}", 0)
    cell = bm.macros_cell(macros)
    front = yaml.safe_load(cell.split("---")[1])
    assert front["math"] == {"\\" + name: body for name, (body, _) in macros.items()}
    assert "\\def\\ind#1{\\mathbb{1}_{[#1]}}" in cell and "\\def\\R{\\mathbb{R}}" in cell


def test_macros_cell_apply_is_idempotent_and_keeps_outputs(tmp_path: Path) -> None:
    bm = _load("book_macros")
    py, ipynb = tmp_path / "py" / "ch01_problem.py", tmp_path / "ch01_problem.ipynb"
    py.parent.mkdir()
    shutil.copyfile(ROOT / "book" / "py" / "ch01_problem.py", py)
    shutil.copyfile(ROOT / "book" / "ch01_problem.ipynb", ipynb)
    before, before_py = nbformat.read(ipynb, as_version=4), jupytext.read(py)
    # start from chapters without the cell, whatever the committed ones hold
    before.cells = [c for c in before.cells if not bm.is_macros_cell(c)]
    before_py.cells = [c for c in before_py.cells if not bm.is_macros_cell(c)]
    nbformat.write(before, ipynb)
    jupytext.write(before_py, py, fmt="py:percent")
    before_py = jupytext.read(py)
    source = bm.macros_cell(bm.config_macros())
    assert bm.stale(source, [(py, ipynb)]) == [py, ipynb]
    assert bm.apply(source, [(py, ipynb)]) == [py, ipynb]
    assert bm.apply(source, [(py, ipynb)]) == [] and bm.stale(source, [(py, ipynb)]) == []
    after = nbformat.read(ipynb, as_version=4)
    assert after.cells[1:] == before.cells and after.cells[0].metadata["tags"] == ["remove-cell"]
    after_py = jupytext.read(py)

    def cells(nb: nbformat.NotebookNode) -> list[tuple[str, str, dict]]:
        return [(c.cell_type, c.source, dict(c.metadata)) for c in nb.cells]  # ids are drawn at each read

    assert cells(after_py)[1:] == cells(before_py) and after_py.cells[0].source == after.cells[0].source
    assert after_py.cells[0].metadata["tags"] == ["remove-cell"]


def test_every_chapter_defines_the_book_macros() -> None:
    """JupyterLab does not read _config.yml: each chapter carries the macros (see tools/book_macros.py)."""
    bm = _load("book_macros")
    stale = bm.stale(bm.macros_cell(bm.config_macros()), bm.chapters())
    assert not stale, f"run `python tools/book_macros.py --apply`: out of date in {[str(p) for p in stale]}"


def _chapter_pairs() -> list[tuple[Path, Path]]:
    return [(ROOT / "book" / "py" / f"{nb.stem}.py", nb) for nb in sorted((ROOT / "book").glob("*.ipynb"))]


@pytest.mark.parametrize("py, ipynb", _chapter_pairs(), ids=lambda p: p.name)
def test_chapter_is_paired_with_its_source_in_py(py: Path, ipynb: Path) -> None:
    """Saving in JupyterLab must update book/py/<chapter>.py, not write a stray book/<chapter>.py."""
    formats = "ipynb,py//py:percent"
    assert nbformat.read(ipynb, as_version=4).metadata.get("jupytext", {}).get("formats") == formats, ipynb.name
    assert jupytext.read(py).metadata.get("jupytext", {}).get("formats") == formats, py.name


@pytest.mark.parametrize("ipynb", [nb for _, nb in _chapter_pairs()], ids=lambda p: p.name)
def test_committed_chapter_has_no_run_metadata_or_widget_state(ipynb: Path) -> None:
    """``tools/build_book.py --strip-metadata`` (and every refresh) removes them."""
    nb = nbformat.read(ipynb, as_version=4)
    assert not {"papermill", "widgets"} & set(nb.metadata), ipynb.name
    assert not [c for c in nb.cells if {"papermill", "execution"} & set(c.metadata)], ipynb.name


def test_chapters_refresh_in_parallel_one_thread_each(tmp_path: Path) -> None:
    """--jobs 2: each chapter in its own process, on one thread, recording its machine and
    code key; a failing chapter fails the build by name and leaves its notebook unwritten."""
    import subprocess
    import sys

    (tmp_path / "tools").mkdir()
    shutil.copy(ROOT / "tools" / "build_book.py", tmp_path / "tools")
    (tmp_path / "book" / "py").mkdir(parents=True)
    (tmp_path / "book" / "params").mkdir()
    (tmp_path / "book" / "intro.md").write_text("# Intro\n")
    for name in ("tiny", "tiny2", "broken"):
        source = TINY.replace('"tiny"', repr(name)) + ("\n# %%\nraise ValueError('broken on purpose')\n"
                                                     if name == "broken" else "")
        (tmp_path / "book" / "py" / f"{name}.py").write_text(source)
        (tmp_path / "book" / "params" / f"{name}.yaml").write_text(yaml.safe_dump(TINY_PARAMS))
    (tmp_path / "_toc.yml").write_text(yaml.safe_dump({"root": "book/intro", "chapters": [
        {"file": "book/tiny"}, {"file": "book/tiny2"}, {"file": "book/broken"}]}))
    out = subprocess.run([sys.executable, str(tmp_path / "tools" / "build_book.py"), "--in-place", "--jobs", "2"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode != 0 and "failed: broken" in out.stderr, out.stdout[-2000:] + out.stderr[-2000:]
    assert "tiny cell  3/3" in out.stdout and "tiny2 cell  3/3" in out.stdout
    assert not (tmp_path / "book" / "broken.ipynb").exists()
    for name in ("tiny", "tiny2"):
        nb = nbformat.read(tmp_path / "book" / f"{name}.ipynb", as_version=4)
        assert nb.cells[-1].outputs[0]["text"] == "answer 42\n"
        record = nb.metadata["mlrobust"]
        assert record["executed_on"]["threads"] == 1 and record["code_key"].startswith("code-")
