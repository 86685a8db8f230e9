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

Only what changed is re-executed. An executed chapter is cached in _build/cache/ under two
keys, both made of the parameter files in book/params/ (a page may read them all), every .py
file of the package, uv.lock, this script, the Python version, the scale and the parameters,
plus either the chapter's whole source or its code cells only. A build with nothing changed
copies the cached notebook; after an edit of prose (markdown, captions, tags that only change
the page) the current cells get the cached outputs; only a change of code or of a dependency
re-executes. Staged files are rewritten only when their content changes, and jupyter-book
runs only when something staged changed (its incremental build then renders only the changed
pages).

Before a kernel starts, the parameters are checked against the chapter (an unknown name is an
error, not papermill's warning) and against book/params/<chapter>.yaml (a value of the wrong
type is an error naming it). While a chapter runs, the log shows one line per code cell with
its time; a cell that runs past the scale's limit (quick 900 s, smoke 300 s, full none;
--cell-timeout) stops the build, naming the cell.

Executed notebooks never carry papermill's run metadata, per-cell timings or widget state
(the HTML would load a widget manager for them): they are stripped before a notebook is
staged, cached or written back to book/.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

# jupytext, nbformat and papermill are imported where a chapter is converted or executed:
# importing papermill alone takes seconds, and a build with nothing changed needs none of them.

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
STAGE = BUILD / "src"
CACHE = BUILD / "cache"
KERNEL = "mlrobust"  # installed into the virtual environment by `make`
#: Per-cell time limit of each scale, in seconds (None: no limit; a full-scale epoch can take hours).
CELL_TIMEOUT = {"quick": 900, "smoke": 300, "full": None}
CACHE_VERSION = "mlrobust build cache 1"
STAGE_IGNORE = ("runs", "py", "*.ipynb", ".ipynb_checkpoints", "__pycache__")


# --------------------------------------------------------------------------- chapters


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
    import jupytext

    dst.parent.mkdir(parents=True, exist_ok=True)
    jupytext.write(jupytext.read(source_of(notebook)), dst, fmt="ipynb")


def parameter_names(notebook: Path) -> list[str]:
    """The names assigned in the chapter's cell tagged ``parameters``."""
    import jupytext

    cells = [c for c in jupytext.read(source_of(notebook)).cells if "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise SystemExit(f"{source_of(notebook)}: expected one cell tagged 'parameters', found {len(cells)}")
    return [t.id for node in ast.parse(cells[0].source).body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name)]


def check_parameters(notebook: Path, scale: str, params: dict[str, Any]) -> dict[str, Any]:
    """Refuse, before any kernel starts, a parameter the chapter does not have (papermill
    only warns) or a value of the wrong type for its preset; returns the scale's preset."""
    from mlrobust.notebook import check_parameters as check_against_presets

    names = parameter_names(notebook)
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise SystemExit(f"{notebook.stem}: unknown parameter(s) {unknown}; its parameters are {names}")
    try:
        return check_against_presets(notebook.stem, scale, {k: v for k, v in params.items() if k != "scale"},
                                     ROOT / "book" / "params")
    except (TypeError, ValueError) as err:
        raise SystemExit(f"{notebook.stem}: {err}") from None


# --------------------------------------------------------------------------- execution


def _first_line(source: str) -> str:
    line = next((s for s in source.splitlines() if s.strip() and not s.startswith("#")), "")
    return line[:70]


def _report_cells(nb_man: Any, label: str) -> None:
    """Print one line per code cell as it completes (its number, time and first line), so a
    slow or stuck cell shows in the build log; wraps this run's execution manager only."""
    code = [i for i, c in enumerate(nb_man.nb.cells) if c.cell_type == "code"]
    started: dict[int, float] = {}
    start, complete = nb_man.cell_start, nb_man.cell_complete

    def cell_start(cell: Any, cell_index: int | None = None, **kwargs: Any) -> Any:
        started[cell_index] = time.perf_counter()
        return start(cell, cell_index, **kwargs)

    def cell_complete(cell: Any, cell_index: int | None = None, **kwargs: Any) -> Any:
        if cell.cell_type == "code":
            seconds = time.perf_counter() - started.get(cell_index, time.perf_counter())
            print(f"  {label} cell {code.index(cell_index) + 1:>2}/{len(code)} {seconds:7.1f} s  "
                  f"{_first_line(cell.source)}", flush=True)
        return complete(cell, cell_index, **kwargs)

    nb_man.cell_start, nb_man.cell_complete = cell_start, cell_complete


def _papermill() -> ModuleType:
    """papermill, with an engine that logs each cell (papermill's nbclient engine plus
    :func:`_report_cells`) registered as "mlrobust-reporting"."""
    import papermill as pm
    from papermill.engines import NBClientEngine, papermill_engines

    class ReportingEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, **kwargs: Any) -> Any:
            _report_cells(nb_man, Path(str(kwargs.get("input_path", "notebook"))).stem)
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    papermill_engines.register("mlrobust-reporting", ReportingEngine)
    return pm


def clean_executed(path: Path, record: dict[str, Any] | None = None) -> None:
    """Drop what an execution adds besides outputs: papermill's run record (notebook and
    cells), nbclient's per-cell timings, the injected-parameters cell and widget state.
    ``record`` goes into the notebook's ``mlrobust`` metadata: the numerics fingerprint of
    the machine that just executed it (``executed_on``) and the chapter's :func:`code_key`
    (``code_key``), which tell nbval what a re-execution would reproduce (conftest.py)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for key in ("papermill", "widgets"):
        nb.metadata.pop(key, None)
    if record is not None:
        nb.metadata["mlrobust"] = record
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    for cell in nb.cells:
        for key in ("papermill", "execution", "ExecuteTime"):
            cell.metadata.pop(key, None)
    nbformat.write(nb, path)


def execute(src: Path, dst: Path, parameters: dict[str, Any], cwd: Path, cell_timeout: int | None, *,
            clean: bool = True, key: str | None = None) -> float:
    """Run ``src`` into ``dst`` with papermill from ``cwd`` and, with ``clean``, strip the run
    metadata (a full-scale run in _build/ keeps it: it records how the run was made);
    returns the seconds it took. A chapter executed for the book (``clean``) runs with the
    book's thread count, the one nbval checks it with, and records the machine and its
    code ``key``."""
    from nbclient.exceptions import CellTimeoutError

    if clean:
        from mlrobust.engine import numerics_fingerprint
        from mlrobust.notebook import use_book_threads

        use_book_threads()

    pm = _papermill()
    start = time.perf_counter()
    limit = f"{cell_timeout} s per cell" if cell_timeout else "no per-cell limit"
    print(f"executing {src.relative_to(ROOT)} ({limit})", flush=True)
    try:
        pm.execute_notebook(str(src), str(dst), parameters=parameters, kernel_name=KERNEL, cwd=str(cwd),
                            engine_name="mlrobust-reporting", progress_bar=False,
                            request_save_on_cell_execute=False, execution_timeout=cell_timeout)
    except CellTimeoutError:
        raise SystemExit(f"{src.stem}: a cell ran past {cell_timeout} s (the cell after the last one logged "
                         "above); raise the limit with --cell-timeout SECONDS (0 for none)") from None
    if clean:
        clean_executed(dst, {"executed_on": numerics_fingerprint(), **({"code_key": key} if key else {})})
    seconds = time.perf_counter() - start
    print(f"  {src.stem}: done in {seconds:.0f} s", flush=True)
    return seconds


# --------------------------------------------------------------------------- cache


def _hash_files(digest: Any, files: Iterable[Path], root: Path) -> None:
    for path in sorted(files):
        digest.update(f"{path.relative_to(root)}\0{path.stat().st_size}\0".encode())
        digest.update(path.read_bytes())


#: Tags that change how a cell runs (papermill's injection point; nbclient's "may fail");
#: every other tag or metadata (hide-input, captions) only changes how a page looks.
EXECUTION_TAGS = ("parameters", "raises-exception")


def _dependencies(scale: str, parameters: dict[str, Any], root: Path) -> Any:
    """A digest of what every chapter's execution depends on besides its own cells: the
    parameter files, the package's code and shipped weights, the locked environment, this
    script, Python, the scale and the parameters."""
    digest = hashlib.sha256(CACHE_VERSION.encode())
    digest.update(json.dumps({"scale": scale, "parameters": parameters, "python": sys.version},
                             sort_keys=True, default=str).encode())
    files = [root / "uv.lock", root / "tools" / "build_book.py", *(root / "book" / "params").glob("*.yaml"),
             *_files_under(root / "mlrobust", ("__pycache__",))]
    _hash_files(digest, [f for f in files if f.is_file() and f.suffix in (".py", ".yaml", ".lock", ".safetensors")], root)
    return digest


def cache_key(notebook: Path, scale: str, parameters: dict[str, Any], root: Path | None = None) -> str:
    """The key of the chapter's whole source (text and code) with its dependencies: a hit
    needs no conversion at all."""
    digest = _dependencies(scale, parameters, ROOT if root is None else root)
    digest.update(source_of(notebook).read_bytes())
    return "source-" + digest.hexdigest()[:32]


def code_key(notebook: Path, scale: str, parameters: dict[str, Any], root: Path | None = None) -> str:
    """The key of the chapter's code cells only (their source and execution tags) with its
    dependencies: a hit means only prose or presentation changed, so the outputs of the
    cached execution still hold."""
    import jupytext

    digest = _dependencies(scale, parameters, ROOT if root is None else root)
    cells = [(c.source, sorted(set(c.metadata.get("tags", [])) & set(EXECUTION_TAGS)))
             for c in jupytext.read(source_of(notebook)).cells if c.cell_type == "code"]
    digest.update(json.dumps(cells).encode())
    return "code-" + digest.hexdigest()[:32]


def cached(notebook: Path, key: str) -> Path | None:
    path = CACHE / notebook.stem / f"{key}.ipynb"
    return path if path.is_file() else None


def store(notebook: Path, keys: Iterable[str], executed: Path) -> None:
    """Keep ``executed`` as the chapter's cache entries under ``keys`` (older entries are
    removed), each written under a temporary name and renamed, so a killed build never
    leaves a half entry."""
    folder = CACHE / notebook.stem
    folder.mkdir(parents=True, exist_ok=True)
    names = {f"{key}.ipynb" for key in keys}
    for name in names:
        tmp = folder / f".{name}.{os.getpid()}.tmp"
        shutil.copyfile(executed, tmp)
        os.replace(tmp, folder / name)
    for old in folder.iterdir():
        if old.name not in names:
            old.unlink()


def merge_outputs(notebook: Path, executed: Path, dst: Path) -> None:
    """Write the chapter's current cells to ``dst`` with the outputs of ``executed``, an
    execution of the same code cells (in the same order); the kernel's language_info and
    the machine it ran on too."""
    import jupytext
    import nbformat

    nb = jupytext.read(source_of(notebook))
    done = nbformat.read(executed, as_version=4)
    ran = [c for c in done.cells if c.cell_type == "code"]
    for cell, old in zip([c for c in nb.cells if c.cell_type == "code"], ran, strict=True):
        cell.outputs, cell.execution_count = old.outputs, old.get("execution_count")
    for key in ("language_info", "mlrobust"):
        if key in done.metadata:
            nb.metadata[key] = done.metadata[key]
    dst.parent.mkdir(parents=True, exist_ok=True)
    jupytext.write(nb, dst, fmt="ipynb")


# --------------------------------------------------------------------------- staging


def sync_file(src: Path, dst: Path) -> bool:
    """Copy ``src`` to ``dst`` unless ``dst`` already has the same bytes (its time then stays,
    so jupyter-book's incremental build sees an unchanged page); returns whether it copied."""
    if dst.is_file() and dst.stat().st_size == src.stat().st_size and dst.read_bytes() == src.read_bytes():
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return True


def _files_under(folder: Path, skip: Iterable[str]) -> list[Path]:
    """The files below ``folder``, not descending into folders matching a pattern of ``skip``
    (a run folder can hold thousands of files) and leaving out files matching one."""
    ignore = shutil.ignore_patterns(*skip)
    found = []
    for here, dirs, names in os.walk(folder):
        skipped = ignore(here, dirs + names)
        dirs[:] = [d for d in dirs if d not in skipped]
        found += [Path(here) / n for n in names if n not in skipped]
    return found


def book_files(dest: Path, skip: Iterable[str] = STAGE_IGNORE) -> dict[Path, Path]:
    """What jupyter-book reads, each mapped to its place under ``dest``: _config.yml,
    _toc.yml and book/ less the files and folders matching a pattern of ``skip``."""
    wanted = {ROOT / "_config.yml": dest / "_config.yml", ROOT / "_toc.yml": dest / "_toc.yml"}
    wanted.update({f: dest / f.relative_to(ROOT) for f in _files_under(ROOT / "book", skip)})
    return wanted


def mirror(wanted: dict[Path, Path], folder: Path, keep: Callable[[Path], bool] = lambda p: False) -> None:
    """Copy each source of ``wanted`` to its destination under ``folder`` (only when changed)
    and remove the other files there, except run folders and those ``keep`` accepts."""
    for src, dst in wanted.items():
        sync_file(src, dst)
    targets = set(wanted.values())
    for path in _files_under(folder, ("runs",)) if folder.is_dir() else []:
        if path not in targets and not keep(path):
            path.unlink()


def stage_sources(keep: Callable[[Path], bool] = lambda p: False) -> None:
    """Mirror _config.yml, _toc.yml and book/ (less runs, sources, notebooks) into _build/src,
    rewriting only changed files and removing staged files gone from the tree, except the
    run folders and those ``keep`` accepts (the staged notebooks)."""
    mirror(book_files(STAGE), STAGE, keep)


def stage_chapter(nb: Path, scale: str, params: dict[str, Any], cell_timeout: int | None) -> float | None:
    """Put the executed chapter in _build/src: from the cache when its code and everything it
    depends on are unchanged (with the current prose when only that changed), else executed
    there; returns the seconds spent executing (None: nothing executed)."""
    dst = STAGE / nb.relative_to(ROOT)
    source = cache_key(nb, scale, params)
    hit = cached(nb, source)
    if hit is not None:
        print(f"{nb.stem}: unchanged, from the cache ({hit.relative_to(ROOT)})", flush=True)
        sync_file(hit, dst)
        return None
    code = code_key(nb, scale, params)
    work = BUILD / "work" / nb.name
    hit = cached(nb, code)
    if hit is not None:
        print(f"{nb.stem}: only text changed, outputs from the cache ({hit.relative_to(ROOT)})", flush=True)
        merge_outputs(nb, hit, work)
        store(nb, (code, source), work)
        sync_file(work, dst)
        return None
    preset = check_parameters(nb, scale, params)
    if preset.get("output_dir"):  # a fresh run folder, as when the stage was rebuilt from scratch
        shutil.rmtree(dst.parent / preset["output_dir"], ignore_errors=True)
    write_from_source(nb, work)
    seconds = execute(work, work, params, dst.parent, cell_timeout, key=code)
    store(nb, (code, source), work)  # cleaned of run metadata: the same bytes every build
    sync_file(work, dst)
    return seconds


def _stage_stamp() -> str:
    """A hash of everything jupyter-book reads: the staged tree (less run folders), the
    locked environment and this script."""
    digest = hashlib.sha256(CACHE_VERSION.encode())
    extra = [f for f in (ROOT / "uv.lock", ROOT / "tools" / "build_book.py") if f.is_file()]
    _hash_files(digest, [*_files_under(STAGE, ("runs",)), *extra], ROOT)
    return digest.hexdigest()


def jupyter_book(src: Path, out: Path) -> Path:
    """Render the book staged in ``src`` into ``out``/_build/html with the project's flags
    (warnings are errors, broken references too); returns that html folder."""
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(src), "--path-output", str(out),
           "--builder", "html", "-W", "-n", "--keep-going"]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    html = out / "_build" / "html"
    if not (html / "index.html").is_file():
        raise SystemExit(f"jupyter-book finished but {html / 'index.html'} is missing")
    return html


def build_html() -> None:
    """Render _build/src with jupyter-book, unless nothing staged changed since the last
    successful build (jupyter-book alone takes 10-15 s even when it has nothing to do)."""
    index, stamp_file = BUILD / "html" / "index.html", BUILD / "html" / ".mlrobust-stamp"
    stamp = _stage_stamp()
    if index.is_file() and stamp_file.is_file() and stamp_file.read_text() == stamp:
        print(f"book: {index} (up to date: nothing staged changed)")
        return
    jupyter_book(STAGE, ROOT)
    stamp_file.write_text(stamp)
    print(f"book: {index}")


# --------------------------------------------------------------------------- main


def _arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--in-place", action="store_true", help="re-execute book/*.ipynb in place (refresh outputs)")
    p.add_argument("--scale", choices=tuple(CELL_TIMEOUT), default="quick",
                   help="quick: the book; full: a chapter at the paper's scale; smoke: the full path in seconds")
    p.add_argument("--chapter", help="only this chapter (file name without .ipynb)")
    p.add_argument("--dataset")
    p.add_argument("--data-root")
    p.add_argument("--device")
    p.add_argument("--weights", help="local pretrained weights of the chapter's backbone")
    p.add_argument("--cell-timeout", type=int, default=None,
                   help="seconds a cell may run (default: quick 900, smoke 300, full no limit; 0: no limit)")
    p.add_argument("--no-cache", action="store_true", help="re-execute every chapter even if nothing changed")
    p.add_argument("--strip-metadata", action="store_true",
                   help="only remove run metadata and widget state from the committed book/*.ipynb (no execution)")
    p.add_argument("--jobs", type=int, default=None,
                   help="chapters executed at once for the book (default: one per core; each uses one thread)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # one chapter of a parallel build
    return p.parse_args()


def run_in_parallel(chapters: list[Path], jobs: int, args: argparse.Namespace) -> None:
    """Build each chapter of the quick scale in its own process (this script with
    ``--chapter``), ``jobs`` at a time: a chapter runs on one thread
    (:data:`mlrobust.notebook.BOOK_THREADS`), so one per core. Their logs interleave line by
    line, each line naming its chapter."""
    from concurrent.futures import ThreadPoolExecutor

    argv = ["--scale", "quick", *(["--in-place"] if args.in_place else []),
            *(["--cell-timeout", str(args.cell_timeout)] if args.cell_timeout is not None else [])]

    def one(nb: Path) -> int:
        return subprocess.run([sys.executable, str(Path(__file__).resolve()), *argv, "--chapter", nb.stem,
                               "--child"]).returncode

    with ThreadPoolExecutor(jobs) as pool:
        codes = dict(zip(chapters, pool.map(one, chapters)))
    failed = [nb.stem for nb, code in codes.items() if code != 0]
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)} (see the log above)")


def _chapters(name: str | None) -> list[Path]:
    chapters = toc_chapters()
    if name:
        chapters = [c for c in chapters if c.stem == name]
        if not chapters:
            raise SystemExit(f"no chapter named {name!r}; chapters: {[c.stem for c in toc_chapters()]}")
    return chapters


def sync_source(notebook: Path) -> None:
    """Rewrite the chapter's py source from its refreshed notebook (jupytext's pairing): the
    text is the same, but nbformat orders cell metadata keys its own way, and JupyterLab
    refuses a pair whose newer notebook reads as other text than its source."""
    subprocess.run([sys.executable, "-m", "jupytext", "--quiet", "--sync", str(notebook)], check=True)


def refresh_in_place(chapters: list[Path], scale: str, params: dict[str, Any],
                     cell_timeout: int | None) -> dict[str, float]:
    """Re-execute each chapter on a fresh copy; book/<chapter>.ipynb is replaced (cleaned of
    run metadata) only on success, and the result also fills the build cache."""
    times, pm = {}, _papermill()
    for nb in chapters:
        check_parameters(nb, scale, params)
        work = BUILD / "refresh" / nb.name
        write_from_source(nb, work)
        try:
            times[nb.stem] = execute(work, work, params, nb.parent, cell_timeout,
                                     key=code_key(nb, scale, params))
        except pm.PapermillExecutionError:
            print(f"{nb.stem} failed; {nb.relative_to(ROOT)} is unchanged, the failed run is {work}")
            raise
        shutil.copyfile(work, nb)
        sync_source(nb)
        store(nb, (code_key(nb, scale, params), cache_key(nb, scale, params)), work)
    return times


def main() -> int:
    args = _arguments()
    os.environ.setdefault("MLROBUST_PROGRESS", "0")
    cell_timeout = CELL_TIMEOUT[args.scale] if args.cell_timeout is None else (args.cell_timeout or None)
    chapters = _chapters(args.chapter)
    params: dict[str, Any] = {}
    if args.scale != "quick":
        params["scale"] = args.scale
        params.update({k: v for k, v in (("dataset", args.dataset), ("data_root", args.data_root),
                                          ("device", args.device), ("weights", args.weights)) if v})
    times: dict[str, float | None] = {}
    if args.strip_metadata:
        for nb in chapters:
            clean_executed(nb)
        return 0
    jobs = args.jobs or os.cpu_count() or 1
    parallel = not args.child and args.scale == "quick" and jobs > 1 and len(chapters) > 1
    if parallel and args.in_place:
        run_in_parallel(chapters, jobs, args)
    elif args.in_place:
        times.update(refresh_in_place(chapters, args.scale, params, cell_timeout))
    elif args.scale != "quick":
        out = BUILD / args.scale
        for nb in chapters:
            # run from the chapter's folder (it reads params/), write runs under _build/<scale>
            chapter_params = dict(params)
            if "output_dir" in parameter_names(nb):
                chapter_params["output_dir"] = str(out / "runs" / nb.stem)
            check_parameters(nb, args.scale, chapter_params)
            write_from_source(nb, out / nb.name)
            times[nb.stem] = execute(out / nb.name, out / nb.name, chapter_params, nb.parent, cell_timeout,
                                     clean=False)
    else:
        if args.no_cache:
            shutil.rmtree(CACHE, ignore_errors=True)
        staged = {STAGE / nb.relative_to(ROOT) for nb in toc_chapters()}
        if not args.child:  # a parallel build's chapters find the sources staged
            stage_sources(keep=lambda p: p in staged)
        if parallel:
            run_in_parallel(chapters, jobs, args)
        else:
            for nb in chapters:
                times[nb.stem] = stage_chapter(nb, args.scale, params, cell_timeout)
        if not args.child:
            build_html()
    for name, s in times.items():
        print(f"{name}: " + ("cached" if s is None else f"{s:.0f} s"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
