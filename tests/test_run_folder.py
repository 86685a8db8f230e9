"""Run folders: never overwritten by accident, never shared by two runs, never left with
partial files, and a disk that cannot be written is one line naming the folder."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mlrobust import atomic
from mlrobust.cli import main
from mlrobust.config import DataConfig, ExperimentConfig, TrainConfig
from mlrobust.engine.run_folder import LOCK_FILE, RunFolderError, RunLock
from mlrobust.experiments import build_data, run_experiment


def tiny(tmp_path: Path, **train: object) -> ExperimentConfig:
    cfg = ExperimentConfig(name="tiny", output_dir=str(tmp_path))
    cfg.data = DataConfig(n_train=32, n_test=16, augment="none")
    cfg.train = TrainConfig(**{"epochs": 1, "batch_size": 16, "progress": False, **train})
    return cfg


@pytest.fixture(scope="module")
def data():
    return build_data(tiny(Path("unused")).data)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_finished_run_is_refused_unless_resumed_or_overwritten(tmp_path, data, capsys) -> None:
    run_experiment(tiny(tmp_path), data=data)
    folder = tmp_path / "tiny"
    before = snapshot(folder)
    assert set(before) == {"config.json", "env.json", "history.csv", "metrics.json", "checkpoint.pt"}
    with pytest.raises(RunFolderError, match=rf"{folder} already holds a run \(config.json, .*\): resume it "
                                             r"\(--resume, resume=True\), choose another name, or replace it "
                                             r"\(--overwrite, overwrite=True\)"):
        run_experiment(tiny(tmp_path, lr=0.5), data=data)
    assert snapshot(folder) == before
    # the same from the command line: one line, exit code 2, nothing touched
    args = ["run", "--set", f"output_dir={tmp_path}", "--set", "name=tiny"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {folder} already holds a run") and err.count("\n") == 1
    assert snapshot(folder) == before
    with pytest.raises(SystemExit):
        main([*args, "--resume", "--overwrite"])
    assert "argument --overwrite: not allowed with argument --resume" in capsys.readouterr().err


def test_overwrite_replaces_the_run_once_the_new_one_is_built(tmp_path, data) -> None:
    run_experiment(tiny(tmp_path), data=data)
    folder = tmp_path / "tiny"
    before = snapshot(folder)
    bad = tiny(tmp_path, lr=0.5)
    bad.loss.args = {"gamma": 2}  # refused while building: the old run must stay whole
    with pytest.raises(TypeError, match="gamma"):
        run_experiment(bad, data=data, overwrite=True)
    assert snapshot(folder) == before
    run_experiment(tiny(tmp_path, lr=0.5), data=data, overwrite=True)
    assert json.loads((folder / "config.json").read_text())["train"]["lr"] == 0.5
    assert {p.name for p in folder.iterdir()} == set(before), "the lock file or a temporary file was left"


def test_a_run_folder_in_use_is_refused_with_its_holder(tmp_path, data) -> None:
    folder = tmp_path / "tiny"
    with _held(folder):
        with pytest.raises(RunFolderError, match=rf"{folder} is in use by another run \(process {os.getpid()}, "
                                                 rf"lock {folder / LOCK_FILE}\)"):
            run_experiment(tiny(tmp_path), data=data)
        with pytest.raises(RunFolderError, match="is in use by another run"):
            run_experiment(tiny(tmp_path), data=data, overwrite=True)
        assert [p.name for p in folder.iterdir()] == [LOCK_FILE], "the refused run wrote into the folder"
    assert not folder.exists() or not any(folder.iterdir())
    run_experiment(tiny(tmp_path), data=data)  # released: the folder is free again


def _held(folder: Path) -> RunLock:
    folder.mkdir(parents=True, exist_ok=True)
    return RunLock(folder)


@pytest.mark.skipif(sys.platform == "win32", reason="flock and SIGKILL are POSIX")
def test_the_lock_of_a_killed_run_does_not_block_the_next_one(tmp_path, data) -> None:
    folder = tmp_path / "tiny"
    folder.mkdir()
    holder = ("import fcntl, os, sys, time\n"
              f"fd = os.open({str(folder / LOCK_FILE)!r}, os.O_RDWR | os.O_CREAT)\n"
              "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, str(os.getpid()).encode())\n"
              "print('held', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderError, match=rf"in use by another run \(process {proc.pid},"):
            run_experiment(tiny(tmp_path), data=data)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert (folder / LOCK_FILE).exists()  # left by the killed process, its lock gone with it
    run_experiment(tiny(tmp_path), data=data)
    assert (folder / "metrics.json").is_file() and not (folder / LOCK_FILE).exists()


def test_partial_writes_of_a_killed_run_are_removed_on_the_next_start(tmp_path, data) -> None:
    run_experiment(tiny(tmp_path), data=data)
    folder = tmp_path / "tiny"
    partial = [folder / ".checkpoint.pt.k1ll3d.tmp", folder / ".metrics.json.x7y8z9.tmp"]
    for path in partial:
        path.write_bytes(b"half a file")
    (folder / "notes.tmp").write_text("not ours")  # only the atomic writes' hidden pattern is removed
    run_experiment(tiny(tmp_path), data=data, resume=True)
    assert not any(p.exists() for p in partial)
    assert (folder / "notes.tmp").exists()


def _refuse(code: int, when: str):
    """A write that fails with ``code``: the first temporary file (config.json, before
    training) or torch.save of the first checkpoint (an OSError without a file name)."""

    def fail(*args, **kwargs):
        if when == "checkpoint":
            raise OSError(code, os.strerror(code))
        raise OSError(code, os.strerror(code), os.path.join(kwargs["dir"], kwargs["prefix"] + "x.tmp"))

    return fail


@pytest.mark.parametrize("code, when", [(errno.EROFS, "config"), (errno.EACCES, "config"),
                                        (errno.ENOSPC, "config"), (errno.ENOSPC, "checkpoint")])
def test_a_disk_that_cannot_be_written_names_the_folder(tmp_path, data, monkeypatch, code, when) -> None:
    if when == "checkpoint":
        monkeypatch.setattr(atomic.torch, "save", _refuse(code, when))
    else:
        monkeypatch.setattr(atomic.tempfile, "mkstemp", _refuse(code, when))
    folder = tmp_path / "tiny"
    with pytest.raises(RunFolderError, match=rf"^cannot write the run folder {folder}: {os.strerror(code)}") as err:
        run_experiment(tiny(tmp_path), data=data)
    assert err.value.errno == code and "\n" not in str(err.value)
    left = [p.name for p in folder.iterdir()] if folder.exists() else []  # removed when nothing was written
    assert not [name for name in left if name.endswith(".tmp") or name == LOCK_FILE]


def test_a_read_only_output_dir_is_one_line_on_the_command_line(tmp_path, monkeypatch, capsys) -> None:
    real_mkdir = Path.mkdir

    def read_only(self: Path, *args, **kwargs) -> None:
        if tmp_path / "ro" in (self, *self.parents):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    assert main(["run", "--set", f"output_dir={tmp_path / 'ro'}", "--set", "name=x"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: cannot write the run folder {tmp_path / 'ro' / 'x'}: Read-only file system\n"
