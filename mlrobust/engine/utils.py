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

__all__ = ["derive_seed", "resolve_device", "environment_report", "progress_enabled"]


def derive_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (e.g. run seed and epoch), via numpy's SeedSequence,
    so that nearby inputs give unrelated streams."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0]) >> 1


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


def progress_enabled(requested: bool | None = None) -> bool:
    """Whether to draw progress bars.

    An explicit True/False wins. Otherwise bars are off when ``MLROBUST_PROGRESS=0`` or
    ``CI`` is set (the Makefile sets the former for papermill and nbval, so executed
    notebooks carry no widget or stderr noise), and on when stderr is a terminal or the code
    runs in a Jupyter kernel.
    """
    if requested is not None:
        return bool(requested)
    flag = os.environ.get("MLROBUST_PROGRESS")
    if flag is not None:
        return flag.strip().lower() not in ("0", "false", "no", "off", "")
    if os.environ.get("CI"):
        return False
    if "ipykernel" in sys.modules:
        return True
    return sys.stderr.isatty()
