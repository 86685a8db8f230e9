"""Runs side by side in forked single-threaded workers: the same results as one after another."""

from __future__ import annotations

import pytest
import torch

import mlrobust.experiments as experiments
from mlrobust.config import DataConfig, ExperimentConfig, ModelConfig, TrainConfig
from mlrobust.data import DataSplits, ShapeScenes
from mlrobust.parallel import _can_fork, default_workers, map_in_workers

forks = pytest.mark.skipif(not _can_fork(), reason="this platform runs tasks in-process only")


def _square_plus(offset: int):
    return lambda x: x * x + offset  # a closure: tasks and functions are not pickled


@forks
def test_results_come_back_in_task_order_from_closures() -> None:
    assert map_in_workers(_square_plus(1), list(range(7)), workers=3) == [x * x + 1 for x in range(7)]


def test_one_worker_runs_here_and_bad_counts_are_refused() -> None:
    seen = []
    assert map_in_workers(seen.append, [1, 2], workers=1) == [None, None]
    assert seen == [1, 2], "with one worker the tasks run in this process"
    assert map_in_workers(len, [], workers=4) == []
    with pytest.raises(ValueError, match="workers must be at least 1"):
        map_in_workers(len, ["a"], workers=0)


def _fail_on_three(x: int) -> int:
    if x == 3:
        raise KeyError(f"task {x} failed")
    return x


@forks
def test_an_error_in_a_worker_is_raised_here() -> None:
    with pytest.raises(KeyError, match="task 3 failed"):
        map_in_workers(_fail_on_three, list(range(6)), workers=2)


@forks
def test_workers_compute_on_one_thread() -> None:
    assert map_in_workers(lambda _: torch.get_num_threads(), [0, 1], workers=2) == [1, 1]


def test_the_default_is_this_process_thread_budget(monkeypatch) -> None:
    monkeypatch.delenv("MLROBUST_WORKERS", raising=False)
    assert default_workers() == (min(torch.get_num_threads(), __import__("os").cpu_count()) if _can_fork() else 1)


def _config(seed: int, lr: float) -> ExperimentConfig:
    cfg = ExperimentConfig(name=f"run{seed}", output_dir="unused")
    cfg.data = DataConfig(n_train=64, n_test=32, protocol="partial", protocol_args={"known": 0.5},
                          protocol_seed=seed)
    cfg.model = ModelConfig(backbone="cnn_s", head="classmap", head_args={"pooling": "weldon", "dropout": 0.3})
    cfg.train = TrainConfig(epochs=1, batch_size=16, lr=lr, seed=seed, device="cpu", progress=False)
    return cfg


@forks
def test_run_many_gives_each_run_the_numbers_it_gives_alone() -> None:
    data = DataSplits(train=ShapeScenes(64, image_size=32, seed=3),
                      test=ShapeScenes(32, image_size=32, seed=3, split="test"))
    runs = {(seed, lr): experiments.Run(_config(seed, lr), data=data, write=False,
                                        collect=lambda r: r.trainer.predict(data.test))
            for seed in (0, 1) for lr in (0.05, 0.2)}
    side_by_side = experiments.run_many(runs, workers=2)
    assert list(side_by_side) == list(runs)
    for key, run in runs.items():
        alone = experiments.run_experiment(run.cfg, data=data, write=False)
        assert side_by_side[key].metrics == alone.metrics, key
        assert torch.equal(side_by_side[key].collected, alone.trainer.predict(data.test)), key
        assert [h["train_loss"] for h in side_by_side[key].history] == [h["train_loss"] for h in alone.history]


def test_the_workers_variable_wins_and_bad_values_are_named(monkeypatch) -> None:
    monkeypatch.setenv("MLROBUST_WORKERS", "3")
    assert default_workers() == (3 if _can_fork() else 1)
    if _can_fork():
        monkeypatch.setenv("MLROBUST_WORKERS", "two")
        with pytest.raises(ValueError, match="MLROBUST_WORKERS.*'two'"):
            default_workers()
