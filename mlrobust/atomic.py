"""Files written atomically: a process killed mid-write never leaves a truncated file, and
the previous version stays valid until the new one has fully landed (temporary file in the
same folder, then ``os.replace``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["atomic_save", "atomic_write_text", "default_file_mode", "remove_partial_writes"]

# a temporary file is ".<name>.<random>.tmp" beside its target: hidden, and found again by
# remove_partial_writes when a killed process left it behind
_TEMP_PREFIX, _TEMP_SUFFIX = ".", ".tmp"


def default_file_mode() -> int:
    """The permissions a plain ``open(path, "w")`` would give a new file (0o666 less the
    umask): temporary files are created 0600, which results must not keep."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _atomic_replace(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{_TEMP_PREFIX}{path.name}.", suffix=_TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)  # atomic on POSIX and Windows within one filesystem
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_partial_writes(folder: str | Path) -> list[Path]:
    """Delete the temporary files that writes killed before their ``os.replace`` left in
    ``folder`` and return them. Only safe while no other process writes there (a run
    folder under its lock)."""
    partial = sorted(p for p in Path(folder).glob(f"{_TEMP_PREFIX}*{_TEMP_SUFFIX}") if p.is_file())
    for path in partial:
        path.unlink(missing_ok=True)
    return partial


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace``."""
    _atomic_replace(Path(path), lambda f: torch.save(obj, f))


def atomic_write_text(text: str, path: str | Path) -> None:
    """Write a text file atomically (results files: history, metrics)."""
    _atomic_replace(Path(path), lambda f: f.write(text.encode()))
