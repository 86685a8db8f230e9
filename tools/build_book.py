"""Execute the chapters with papermill and build the HTML book with jupyter-book.

    python tools/build_book.py                  # quick scale into _build/, then _build/html
    python tools/build_book.py --in-place       # refresh the committed outputs in book/
    python tools/build_book.py --scale full --chapter ch01_problem --dataset coco --data-root /data/coco

A chapter's source is the jupytext percent script book/py/<chapter>.py; the committed
book/<chapter>.ipynb holds the same cells with their quick-scale outputs (a test checks that
they agree). The default never writes inside book/: sources are converted and staged in
_build/src, chapters are executed there, and jupyter-book renders the staged copy (execution
is off in _config.yml because papermill has already run every cell). --in-place rewrites
book/<chapter>.ipynb from its source and re-executes it: the deliberate refresh of the
committed outputs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jupytext
import papermill as pm
import yaml

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
STAGE = BUILD / "src"
KERNEL = "mlrobust"  # installed into the virtual environment by `make`


def toc_chapters() -> list[Path]:
    """Notebook chapters (their .ipynb paths) in _toc.yml order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [c["file"] for c in part.get("chapters", [])]
    files += [c["file"] for c in toc.get("chapters", [])]
    return [ROOT / f"{f}.ipynb" for f in files if source_of(ROOT / f"{f}.ipynb").is_file()]


def source_of(notebook: Path) -> Path:
    """The jupytext source of a chapter notebook."""
    return notebook.parent / "py" / f"{notebook.stem}.py"


def write_from_source(notebook: Path, dst: Path) -> None:
    """Write the chapter's cells, converted from its .py source, to ``dst`` (no outputs)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    jupytext.write(jupytext.read(source_of(notebook)), dst, fmt="ipynb")


def stage_sources() -> None:
    if STAGE.exists():
        shutil.rmtree(STAGE)
    STAGE.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(ROOT / name, STAGE / name)
    shutil.copytree(ROOT / "book", STAGE / "book",
                    ignore=shutil.ignore_patterns("runs", "py", "*.ipynb", ".ipynb_checkpoints", "__pycache__"))


def execute(src: Path, dst: Path, parameters: dict, cwd: Path) -> float:
    start = time.perf_counter()
    print(f"executing {src.relative_to(ROOT)}", flush=True)
    pm.execute_notebook(str(src), str(dst), parameters=parameters, kernel_name=KERNEL, cwd=str(cwd),
                        progress_bar=False, request_save_on_cell_execute=False, execution_timeout=3600)
    seconds = time.perf_counter() - start
    print(f"  done in {seconds:.0f} s", flush=True)
    return seconds


def build_html() -> None:
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(STAGE), "--path-output", str(ROOT),
           "--builder", "html", "-W", "-n", "--keep-going"]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    index = BUILD / "html" / "index.html"
    if not index.is_file():
        raise SystemExit(f"jupyter-book finished but {index} is missing")
    print(f"book: {index}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--in-place", action="store_true", help="re-execute book/*.ipynb in place (refresh outputs)")
    p.add_argument("--scale", choices=("quick", "full", "smoke"), default="quick",
                   help="quick: the book; full: a chapter at the paper's scale; smoke: the full path in seconds")
    p.add_argument("--chapter", help="only this chapter (file name without .ipynb)")
    p.add_argument("--dataset")
    p.add_argument("--data-root")
    p.add_argument("--device")
    p.add_argument("--weights", help="local pretrained weights of the chapter's backbone")
    args = p.parse_args()
    os.environ.setdefault("MLROBUST_PROGRESS", "0")

    chapters = toc_chapters()
    if args.chapter:
        chapters = [c for c in chapters if c.stem == args.chapter]
        if not chapters:
            raise SystemExit(f"no chapter named {args.chapter!r}; chapters: {[c.stem for c in toc_chapters()]}")
    params: dict = {}
    if args.scale != "quick":
        params["scale"] = args.scale
        params.update({k: v for k, v in (("dataset", args.dataset), ("data_root", args.data_root),
                                          ("device", args.device), ("weights", args.weights)) if v})

    times = {}
    if args.in_place:
        for nb in chapters:
            # execute a fresh copy; the committed notebook is replaced only on success
            work = BUILD / "refresh" / nb.name
            write_from_source(nb, work)
            try:
                times[nb.stem] = execute(work, work, params, nb.parent)
            except pm.PapermillExecutionError:
                print(f"{nb.stem} failed; {nb.relative_to(ROOT)} is unchanged, the failed run is {work}")
                raise
            shutil.copyfile(work, nb)
    elif args.scale != "quick":
        out = BUILD / args.scale
        for nb in chapters:
            # run from the chapter's folder (it reads params/), write runs under _build/full
            write_from_source(nb, out / nb.name)
            chapter_params = {"output_dir": str(out / "runs" / nb.stem), **params}
            times[nb.stem] = execute(out / nb.name, out / nb.name, chapter_params, nb.parent)
    else:
        stage_sources()
        for nb in chapters:
            dst = STAGE / nb.relative_to(ROOT)
            write_from_source(nb, dst)
            times[nb.stem] = execute(dst, dst, params, dst.parent)
        build_html()
    for name, s in times.items():
        print(f"{name}: {s:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
