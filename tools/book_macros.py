"""The book's shared LaTeX macros for JupyterLab, generated from _config.yml.

The HTML book defines its notation (\\R, \\ind{...}, \\mAP, ...) once, in _config.yml
(``sphinx.config.mathjax3_config.tex.macros``). JupyterLab does not read that file, so each
chapter starts with a hidden markdown cell (tag ``remove-cell``: the HTML book drops it) that
defines the same macros twice over:

* as MyST front matter (``math:``), which jupyterlab-myst reads from a notebook's first
  markdown cell and applies to every cell;
* as ``\\def`` commands in an inline-math span, for JupyterLab without jupyterlab-myst
  (MathJax keeps them for the whole page). ``\\def``, not ``\\newcommand``: the MyST
  renderer would report a \\newcommand of a macro its front matter already defines; inline,
  not display math, which MyST would number as equation (1).

    python tools/book_macros.py            # print the cell's markdown
    python tools/book_macros.py --check    # exit 1 if a chapter lacks the current cell
    python tools/book_macros.py --apply    # insert or update the cell in book/py/*.py and book/*.ipynb

Edit the macros in _config.yml only, then run --apply (it changes no output).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jupytext
import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
TAG = "remove-cell"
MARKER = "math:"  # the cell is recognised by its front matter


def config_macros(config: Path = ROOT / "_config.yml") -> dict[str, tuple[str, int]]:
    """``name -> (definition, number of arguments)`` from the MathJax section of _config.yml
    (a macro is a string, or a list ``[definition, n_args]`` as MathJax takes it)."""
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    try:
        macros = data["sphinx"]["config"]["mathjax3_config"]["tex"]["macros"]
    except (KeyError, TypeError):
        raise SystemExit(f"{config}: no sphinx.config.mathjax3_config.tex.macros section") from None
    out = {}
    for name, value in macros.items():
        body, n_args = (value, 0) if isinstance(value, str) else (value[0], int(value[1]))
        out[str(name)] = (body, n_args)
    return out


def _quoted(text: str) -> str:
    """A single-quoted YAML scalar: backslashes stay as they are, quotes are doubled."""
    return "'" + text.replace("'", "''") + "'"


def macros_cell(macros: dict[str, tuple[str, int]]) -> str:
    """The markdown source of the hidden macros cell."""
    front = [f"  {_quoted(chr(92) + name)}: {_quoted(body)}" for name, (body, _) in macros.items()]
    defs = [f"\\def\\{name}{''.join(f'#{i}' for i in range(1, n + 1))}{{{body}}}" for name, (body, n) in macros.items()]
    return "\n".join(["---", MARKER, *front, "---", "$" + "".join(defs) + "$"])


def is_macros_cell(cell: nbformat.NotebookNode) -> bool:
    lines = cell.source.splitlines()
    return cell.cell_type == "markdown" and lines[:2] == ["---", MARKER]


def _with_cell(nb: nbformat.NotebookNode, source: str) -> bool:
    """Put the macros cell first in ``nb`` (replacing an older one); returns whether it changed."""
    cell = nbformat.v4.new_markdown_cell(source, metadata={"tags": [TAG]})
    old = [i for i, c in enumerate(nb.cells) if is_macros_cell(c)]
    if old == [0] and nb.cells[0].source == source and TAG in nb.cells[0].metadata.get("tags", []):
        return False
    nb.cells = [cell] + [c for i, c in enumerate(nb.cells) if i not in old]
    return True


def chapters() -> list[tuple[Path, Path]]:
    """(source .py, notebook .ipynb) of every chapter."""
    return [(py, ROOT / "book" / f"{py.stem}.ipynb") for py in sorted((ROOT / "book" / "py").glob("*.py"))]


def apply(source: str, pairs: list[tuple[Path, Path]]) -> list[Path]:
    """Insert or update the cell in each source and notebook (outputs untouched); returns the
    files it changed."""
    changed = []
    for py, ipynb in pairs:
        nb = jupytext.read(py)
        if _with_cell(nb, source):
            jupytext.write(nb, py, fmt="py:percent")
            changed.append(py)
        if ipynb.is_file():
            nb = nbformat.read(ipynb, as_version=4)
            if _with_cell(nb, source):
                nbformat.write(nb, ipynb)
                changed.append(ipynb)
    return changed


def stale(source: str, pairs: list[tuple[Path, Path]]) -> list[Path]:
    """The sources and notebooks whose first cell is not the current macros cell."""
    out = []
    for py, ipynb in pairs:
        for path, nb in ((py, jupytext.read(py)), (ipynb, nbformat.read(ipynb, as_version=4) if ipynb.is_file()
                                                 else None)):
            if nb is not None and (not nb.cells or nb.cells[0].source != source
                                   or TAG not in nb.cells[0].metadata.get("tags", [])):
                out.append(path)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    action = p.add_mutually_exclusive_group()
    action.add_argument("--check", action="store_true", help="exit 1 if a chapter lacks the current cell")
    action.add_argument("--apply", action="store_true", help="insert or update the cell in every chapter")
    args = p.parse_args()
    source = macros_cell(config_macros())
    if args.apply:
        for path in apply(source, chapters()):
            print(f"updated {path.relative_to(ROOT)}")
    elif args.check:
        missing = stale(source, chapters())
        if missing:
            names = ", ".join(str(m.relative_to(ROOT)) for m in missing)
            print(f"the macros cell is missing or out of date in: {names}\nrun: python tools/book_macros.py --apply")
            return 1
    else:
        print(source)
    return 0


if __name__ == "__main__":
    sys.exit(main())
