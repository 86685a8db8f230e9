"""Engine utilities: derived seeds, device resolution, the environment report, and the
policy for progress bars (:mod:`mlrobust.progress`)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..progress import progress_enabled
from ..seeding import derive_seed

__all__ = ["derive_seed", "resolve_device", "environment_report", "numerics_fingerprint", "progress_enabled"]


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
    from importlib.metadata import version  # not the packages: importing timm takes seconds

    from .._version import __version__

    report: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "mlrobust": __version__,
        "git_revision": _git_revision(),
        "torch": torch.__version__,
        "torchvision": version("torchvision"),
        "timm": version("timm"),
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


def _cpu_identity() -> str:
    """Vendor, family, model and stepping of the CPU (Linux), else what ``platform`` knows."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor is enough
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    parts = [fields.get(k, "") for k in ("vendor_id", "cpu family", "model", "stepping")]
    return " ".join(p for p in parts if p) or platform.processor() or platform.machine()


def numerics_fingerprint() -> dict[str, Any]:
    """What decides the last bits of a CPU computation besides the code and the seeds:
    torch's version, the CPU model, the vector instructions torch dispatches to and the
    number of threads (reductions split over threads add in another order). Two machines
    with the same fingerprint give the same numbers bit for bit; a chapter executed on one
    and checked on another differs in the last digits, which training then amplifies to
    differences within the seed spread."""
    return {
        "torch": torch.__version__,
        "cpu": _cpu_identity(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
    }
