"""Engine utilities: derived seeds, device resolution, the environment report, and the
policy for progress bars."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..seeding import derive_seed

__all__ = ["derive_seed", "resolve_device", "environment_report", "progress_enabled"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else the CPU; anything else is checked."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was requested but CUDA is not available; use 'auto' or 'cpu'")
    return dev


def _git_revision() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment_report(device: torch.device | None = None) -> dict[str, Any]:
    """Versions, hardware and code revision, written to ``env.json`` beside every run."""
    import timm
    import torchvision

    import mlrobust

    report: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "mlrobust": mlrobust.__version__,
        "git_revision": _git_revision(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "numpy": np.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
    }
    if device is not None:
        report["device"] = str(device)
        if device.type == "cuda":
            report["gpu"] = torch.cuda.get_device_name(device)
            report["cuda"] = torch.version.cuda
    return report


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
