"""Independent runs side by side on the CPU cores, each on one thread.

A chapter's runs (seeds, settings, learning rates) are independent, and each is small: a
quick-scale run gains little from a second thread (its convolutions are small, and its
Python overhead does not parallelise) but nearly everything from a second process. So
:func:`map_in_workers` forks one single-threaded worker per core and deals the tasks out.

Why one thread per worker: a sum split over threads adds in another order, so a run's last
digits would depend on the core count; on one thread a run gives the same numbers in a worker
as in the book (executed on one thread, :data:`mlrobust.notebook.BOOK_THREADS`).

Why ``fork``: the tasks (configs, datasets, closures defined in a notebook) reach the
workers without being pickled; only results travel back. Where ``fork`` is missing
(Windows) or unsafe (CUDA initialised or present: a GPU runs one job at a time anyway), the
tasks run one after another in this process, with the same results.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch

__all__ = ["default_workers", "map_in_workers"]

T = TypeVar("T")
R = TypeVar("R")

# the task list of the pool being forked: a worker reads it from its copy of this process's
# memory (set just before the fork, cleared right after; never read by the parent)
_TASKS: tuple[Callable[[Any], Any], Sequence[Any]] | None = None


def default_workers() -> int:
    """Workers for this process: ``MLROBUST_WORKERS`` when set, else its torch thread budget
    (1 when the book executes a chapter, every core in JupyterLab) at most the core count;
    1 when runs cannot fork."""
    if not _can_fork():
        return 1
    setting = os.environ.get("MLROBUST_WORKERS", "").strip()
    if setting:
        if not setting.isdigit() or int(setting) < 1:
            raise ValueError(f"MLROBUST_WORKERS must be a positive whole number, got {setting!r}")
        return int(setting)
    return max(1, min(torch.get_num_threads(), os.cpu_count() or 1))


def _can_fork() -> bool:
    if "fork" not in multiprocessing.get_all_start_methods():
        return False
    # a forked child cannot use a CUDA context its parent created, and MPS likewise
    return not (torch.cuda.is_available() or torch.backends.mps.is_available())


def _start_worker() -> None:
    torch.set_num_threads(1)
    os.environ["MLROBUST_PROGRESS"] = "0"  # bars from several processes would interleave


def _run_task(i: int) -> tuple[int, Any]:
    assert _TASKS is not None, "map_in_workers: a worker started without its tasks"
    fn, tasks = _TASKS
    return i, fn(tasks[i])


def map_in_workers(fn: Callable[[T], R], tasks: Sequence[T], workers: int | None = None) -> list[R]:
    """``[fn(t) for t in tasks]``, computed by ``workers`` forked single-threaded processes
    (default :func:`default_workers`), in the order of ``tasks``.

    ``fn`` and the tasks may be anything, closures included (they are not pickled); the
    results must pickle. With one worker, or where forking is unsafe, the tasks run here, one
    after another. An exception in a task is raised here once the running tasks stop."""
    global _TASKS
    n = len(tasks)
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise ValueError(f"map_in_workers: workers must be at least 1, got {workers}")
    workers = min(workers, n)
    if workers <= 1 or not _can_fork():
        return [fn(t) for t in tasks]
    results: list[Any] = [None] * n
    _TASKS = (fn, tasks)
    try:
        pool = multiprocessing.get_context("fork").Pool(workers, initializer=_start_worker)
    finally:
        _TASKS = None
    with pool:  # leaving early (an error, an interrupt) terminates the workers
        for i, result in pool.imap_unordered(_run_task, range(n)):
            results[i] = result
    return results
