"""torch.distributed on the CPU: 2 processes with gloo against one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mlrobust.engine import epoch_order
from mlrobust.engine.distributed import gather_by_index

ROOT = Path(__file__).resolve().parents[1]
WORKER = str(Path(__file__).with_name("_ddp_worker.py"))
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "MLROBUST_PROGRESS": "0", "OMP_NUM_THREADS": "1"}


def launch(out: Path, batch: int, processes: int, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    if processes == 1:
        cmd = [sys.executable, WORKER]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}", WORKER]
    done = subprocess.run(cmd + ["--out", str(out), "--batch-size", str(batch), *extra], env=ENV,
                          capture_output=True, text=True, timeout=300)
    if check and done.returncode != 0:
        raise AssertionError(f"run failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return done


def result(out: Path) -> dict:
    return json.loads((out / "result.json").read_text())


def test_two_gloo_processes_match_one_process_and_resume_across_a_restart(tmp_path) -> None:
    launch(tmp_path / "single", 32, 1)
    launch(tmp_path / "ddp", 16, 2)
    single, ddp = result(tmp_path / "single"), result(tmp_path / "ddp")
    assert ddp["world"] == 2 and single["world"] == 1
    for key, value in single["metrics"].items():
        assert ddp["metrics"][key] == pytest.approx(value, abs=1e-3), key
    for key in single["state"]:
        np.testing.assert_allclose(ddp["state"][key], single["state"][key], atol=1e-5)
    # rank 0 alone wrote the results folder; all of it is there
    assert {p.name for p in (tmp_path / "ddp" / "ddp").iterdir()} >= {"config.json", "metrics.json", "history.csv",
                                                                      "checkpoint.pt"}
    # kill both ranks before epoch 3, restart with --resume: the same final model
    crashed = launch(tmp_path / "restart", 16, 2, "--crash-at", "2", check=False)
    assert crashed.returncode != 0 and not (tmp_path / "restart" / "result.json").exists()
    launch(tmp_path / "restart", 16, 2, "--resume")
    restarted = result(tmp_path / "restart")
    assert restarted["metrics"] == ddp["metrics"]
    for key in ddp["state"]:
        np.testing.assert_array_equal(restarted["state"][key], ddp["state"][key])


def test_gathering_removes_the_padding_duplicates() -> None:
    """Without a process group gather_by_index places rows by index; the shards of a padded
    order cover every index, duplicates writing the same row."""
    n, world = 7, 3
    shards = [epoch_order(n, 0, 0, shuffle=False, rank=r, world_size=world) for r in range(world)]
    assert sum(len(s) for s in shards) == 9  # padded to 3 x 3
    values = torch.arange(n, dtype=torch.float32)[:, None] * 10
    assert sorted(set(torch.cat(shards).tolist())) == list(range(n))
    for s in shards:  # each shard's rows land at their dataset indices
        torch.testing.assert_close(gather_by_index(values[s], s, n)[s], values[s])
