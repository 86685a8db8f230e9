"""``bad_images="skip"``: find the missing, unreadable and truncated images of a dataset once,
with a progress bar, and remember the answer.

Decoding every image of COCO train takes minutes, so the list of bad files is cached in a
small JSON file under the cache folder (``$MLROBUST_CACHE_DIR``, else
``$XDG_CACHE_HOME/mlrobust``, else ``~/.cache/mlrobust``; ``MLROBUST_CACHE_DIR=""`` turns the
cache off), in ``bad-images/<key>.json``. The key is a SHA-256 of the sorted absolute paths
with each file's size and modification time (``stat``, no read) and of the version of the
check below, so adding, removing, replacing or touching any image, or changing the check,
gives a new key: a stale answer is never used. The file is written atomically (a temporary
file renamed over it), and one that cannot be read or does not match is ignored and rebuilt.
The dataset folder is never written to (it is often read-only or shared).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ...atomic import atomic_write_text
from ...progress import progress_enabled

__all__ = ["unreadable_images", "cache_dir", "readable"]

log = logging.getLogger(__name__)

#: Bumped whenever :func:`readable` changes what it accepts, which invalidates every cache entry.
CHECK_VERSION = "readable-v1: Pillow draft 32x32 + full load"


def readable(path: Path) -> bool:
    """Whether the file decodes to the end (a truncated JPEG passes Pillow's ``verify``, so
    it is decoded, at the smallest DCT scale, which costs a fraction of a full decode)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.draft("RGB", (32, 32))
            im.load()
        return True
    except (OSError, SyntaxError, ValueError):  # UnidentifiedImageError is an OSError
        return False


def cache_dir() -> Path | None:
    """The folder of the bad-image cache, or None when ``MLROBUST_CACHE_DIR`` is set empty."""
    configured = os.environ.get("MLROBUST_CACHE_DIR")
    if configured is not None:
        return Path(configured) if configured.strip() else None
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mlrobust"


def _file_list_key(absolute: Sequence[str]) -> str:
    """SHA-256 of the check's version and the sorted (path, size, mtime) of every file."""
    digest = hashlib.sha256(CHECK_VERSION.encode())
    for path in sorted(absolute):
        try:
            st = os.stat(path)
            stamp = f"{st.st_size} {st.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        digest.update(f"{path}\0{stamp}\n".encode())
    return digest.hexdigest()


def _load(entry: Path, n_files: int) -> list[str] | None:
    try:
        record = json.loads(entry.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("n_files") != n_files or record.get("check") != CHECK_VERSION \
            or not isinstance(record.get("skipped"), list):
        return None
    return [str(p) for p in record["skipped"]]


def _store(entry: Path, n_files: int, skipped: list[str]) -> None:
    record = {"check": CHECK_VERSION, "n_files": n_files, "skipped": skipped}
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(json.dumps(record, indent=0), entry)
    except OSError as err:  # a read-only home: the check still worked, only the cache is lost
        log.warning("could not write the bad-image cache %s: %s", entry, err)


def _scan(paths: Sequence[Path], absolute: Sequence[str], name: str) -> list[str]:
    """Decode every file (threads: Pillow releases the GIL while decoding) with a progress
    bar; returns the absolute paths of the bad ones."""
    from tqdm.auto import tqdm

    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        ok = list(tqdm(pool.map(lambda p: p.is_file() and readable(p), paths), total=len(paths),
                       desc=f"{name}: checking images", unit="img", disable=not progress_enabled()))
    return [a for a, good in zip(absolute, ok) if not good]


def unreadable_images(paths: Sequence[Path], name: str) -> list[Path]:
    """The files of ``paths`` that are missing or do not decode, from the cache when the same
    files (same sizes and times) were checked before; see the module docstring."""
    absolute = [os.path.abspath(p) for p in paths]
    folder = cache_dir()
    entry = folder / "bad-images" / f"{_file_list_key(absolute)}.json" if folder is not None else None
    bad = _load(entry, len(paths)) if entry is not None else None
    if bad is not None:
        log.info("%s: bad-image check of %d files read from %s", name, len(paths), entry)
    else:
        bad = _scan(paths, absolute, name)
        if entry is not None:
            _store(entry, len(paths), bad)
    found = set(bad)
    return [Path(p) for p, a in zip(paths, absolute) if a in found]
