"""Checkpoints: written atomically (:mod:`mlrobust.atomic`), read with
``weights_only=True`` so that no arbitrary object is ever unpickled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_save, atomic_write_text

__all__ = ["atomic_save", "atomic_write_text", "load_checkpoint"]


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no arbitrary objects are unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - report which file is broken
        raise ValueError(f"could not read checkpoint {path}: {err}") from err
