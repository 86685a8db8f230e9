"""When to draw progress bars: on in a terminal or in JupyterLab, off in CI and in notebooks
executed by papermill, nbval or nbconvert (so executed notebooks carry no widget or stderr
noise)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["progress_enabled"]

_BATCH_RUNNERS = ("papermill", "nbclient", "nbconvert", "pytest", "jupyter-book", "jb ")


def _kernel_parent_is_batch_runner() -> bool:
    """Whether this Jupyter kernel was started by a batch runner (papermill, nbval under
    pytest, nbconvert) rather than by JupyterLab: read from the parent process's command
    line where the platform exposes it (Linux); elsewhere assume an interactive session."""
    try:
        cmdline = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="ignore")
    except OSError:
        return False
    return any(runner in cmdline for runner in _BATCH_RUNNERS)


def progress_enabled(requested: bool | None = None) -> bool:
    """Whether to draw progress bars.

    An explicit True/False wins, then ``MLROBUST_PROGRESS`` (0/1). Otherwise bars are off in
    CI (``CI`` set) and in notebooks executed by papermill, nbval or nbconvert (so executed
    notebooks carry no widget or stderr noise), and on in a terminal or in JupyterLab.
    """
    if requested is not None:
        return bool(requested)
    flag = os.environ.get("MLROBUST_PROGRESS")
    if flag is not None:
        return flag.strip().lower() not in ("0", "false", "no", "off", "")
    if os.environ.get("CI"):
        return False
    if "ipykernel" in sys.modules:
        return not _kernel_parent_is_batch_runner()
    return sys.stderr.isatty()
