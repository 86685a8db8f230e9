"""Run folders: one run at a time in a folder, and no run replaced by accident.

:func:`open_run_folder` holds a run folder for the duration of a run:

* an OS lock on ``<folder>/.lock`` (``flock`` on POSIX, ``msvcrt.locking`` on Windows) makes
  it exclusive: a second run started on the same folder stops at once with an error naming
  the folder and the process that holds it. The OS releases the lock when its process dies,
  so a killed run never blocks the next one;
* a folder that already holds a run (any of :data:`RUN_FILES`) is refused unless the run is
  resumed (``resume``) or replaced (``overwrite``: the caller deletes its files with
  :func:`remove_run` while holding the folder, so a concurrent run can never lose them);
* temporary files of writes killed before their ``os.replace`` are removed;
* a read-only or full disk (and a folder without write permission) is a
  :class:`RunFolderError` naming the folder and the file, not a traceback from deep inside
  the training loop.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..atomic import remove_partial_writes
from .trainer import CHECKPOINT

try:
    import fcntl
except ImportError:  # Windows: byte-range locks of msvcrt, also released when the process dies
    fcntl = None  # type: ignore[assignment]
    import msvcrt

__all__ = ["RUN_FILES", "LOCK_FILE", "RunFolderError", "RunLock", "open_run_folder", "remove_run", "disk_errors"]

log = logging.getLogger("mlrobust")

#: the files a run writes; any of them in a folder means it already holds a run
RUN_FILES = ("config.json", "env.json", "history.csv", "metrics.json", CHECKPOINT)
LOCK_FILE = ".lock"
# errors of the disk rather than of the program: reported as one line naming the folder
DISK_ERRORS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})
RESUME_OR_OVERWRITE = ("resume it (--resume, resume=True), choose another name, or replace it "
                       "(--overwrite, overwrite=True)")


class RunFolderError(OSError):
    """A run folder that cannot be used: held by another run, already holding a run, or on
    a disk that cannot be written. The message names the folder."""


def _try_lock(fd: int) -> bool:
    """Lock ``fd`` exclusively without waiting; False when another open file holds it."""
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except (BlockingIOError, PermissionError):  # flock: EWOULDBLOCK; msvcrt: EACCES
        return False
    return True


def _unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def _holder(fd: int) -> str:
    """The process id the lock holder wrote into the lock file ('?' when unreadable)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 32).decode(errors="replace").strip() or "?"
    except OSError:  # Windows refuses to read a locked byte range
        return "?"


class RunLock:
    """An exclusive lock on ``folder/.lock`` (see the module docstring). The file holds the
    holder's process id and is removed on :meth:`release`."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`RunFolderError` naming the folder and the holder."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)  # 0o666 less the umask
            if not _try_lock(fd):
                holder = _holder(fd)
                os.close(fd)
                raise RunFolderError(f"{self.path.parent} is in use by another run (process {holder}, lock "
                                     f"{self.path}): wait for it to end, or choose another name")
            if self._still_there(fd):
                break
            os.close(fd)  # the previous holder removed this file on release: lock the new one
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def _still_there(self, fd: int) -> bool:
        try:
            return os.path.samestat(os.fstat(fd), os.stat(self.path))
        except FileNotFoundError:
            return False

    def release(self) -> None:
        """Remove the lock file, then unlock: a run waiting on the removed file sees that it
        is gone and locks a new one (see :meth:`acquire`)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            self.path.unlink(missing_ok=True)
        except OSError:  # Windows cannot remove an open file: it stays, unlocked
            pass
        try:
            _unlock(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextmanager
def disk_errors(folder: Path) -> Iterator[None]:
    """Turn an OSError of the disk (read-only, full, no permission) raised while writing in
    ``folder`` into a one-line :class:`RunFolderError` naming the folder and the file."""
    try:
        yield
    except RunFolderError:
        raise
    except OSError as err:
        where = None if err.filename is None else Path(err.filename)
        inside = where is None or where == folder or folder in where.parents or where in folder.parents
        if err.errno not in DISK_ERRORS or not inside:
            raise
        detail = f" ({where})" if where is not None and where != folder else ""
        error = RunFolderError(f"cannot write the run folder {folder}: {err.strerror or os.strerror(err.errno)}"
                               f"{detail}")
        error.errno = err.errno  # not strerror nor filename: str() stays the message, one line
        raise error from err


def _present_run_files(folder: Path) -> list[str]:
    return [name for name in RUN_FILES if (folder / name).exists()]


def remove_run(folder: Path) -> list[str]:
    """Delete the run files in ``folder`` (``overwrite``) and return their names. Call it with
    the folder held (:func:`open_run_folder`), once the new run has been built and checked, so
    that neither a concurrent run nor a bad config can cost the old run its files."""
    found = _present_run_files(folder)
    for name in found:
        (folder / name).unlink()
    if found:
        log.info("overwrite: removed the previous run's %s from %s", ", ".join(found), folder)
    return found


def _prepare(folder: Path, resume: bool, overwrite: bool) -> None:
    """With the lock held: clear partial writes, then refuse a folder that holds a run."""
    for path in remove_partial_writes(folder):
        log.info("removed %s, left by a write that was killed", path)
    found = _present_run_files(folder)
    if found and not (resume or overwrite):
        raise RunFolderError(f"{folder} already holds a run ({', '.join(found)}): {RESUME_OR_OVERWRITE}")


@contextmanager
def open_run_folder(folder: str | Path, *, resume: bool = False, overwrite: bool = False) -> Iterator[Path]:
    """Hold ``folder`` for one run (see the module docstring). A folder this call created is
    removed again when the run fails before writing anything into it."""
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other: resume continues the run in the folder, "
                         "overwrite deletes it")
    folder = Path(folder)
    created = not folder.exists()
    lock = RunLock(folder)
    with disk_errors(folder):
        folder.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    try:
        with disk_errors(folder):
            _prepare(folder, resume, overwrite)
            yield folder
    finally:
        lock.release()
        if created and not any(folder.iterdir()):  # a run refused before its first file leaves nothing
            folder.rmdir()
