"""Learning-rate tuning on a validation split carved from the training images."""

from __future__ import annotations

import pytest
import torch

import mlrobust.experiments as experiments
from mlrobust.config import ConfigError, DataConfig, ExperimentConfig, ModelConfig, TrainConfig
from mlrobust.data import DataSplits, ShapeScenes


def _config(tmp_path, protocol: str = "partial", args: dict | None = None) -> ExperimentConfig:
    cfg = ExperimentConfig(name="tuned", output_dir=str(tmp_path))
    cfg.data = DataConfig(n_train=60, n_test=20, protocol=protocol,
                          protocol_args={"known": 0.3} if args is None else args, protocol_seed=5)
    cfg.model = ModelConfig(backbone="cnn_s")
    cfg.train = TrainConfig(epochs=1, batch_size=16, lr=0.1, device="cpu", progress=False)
    return cfg


def _data() -> DataSplits:
    return DataSplits(train=ShapeScenes(60, image_size=32, seed=2), test=ShapeScenes(20, image_size=32, seed=2,
                                                                                     split="test"))


class _Recorder:
    """Stands in for run_experiment: the validation score is a known function of the lr."""

    def __init__(self, score) -> None:
        self.score, self.calls = score, []

    def __call__(self, cfg, *, data, write, **_):
        self.calls.append((cfg, data, write))
        return experiments.RunResult({"mAP": self.score(cfg.train.lr)}, [], None, None, 0.0)


def test_the_best_validation_score_wins_and_the_test_set_is_never_seen(tmp_path, monkeypatch) -> None:
    fake = _Recorder(lambda lr: -abs(lr - 0.3))  # best at lr 0.3 = 0.1 x 3
    monkeypatch.setattr(experiments, "run_experiment", fake)
    cfg, data = _config(tmp_path), _data()
    tuned = experiments.tune_lr(cfg, [10, 1, 3], data, n_val=15, seed=4)
    assert (tuned.factor, tuned.lr) == (3, pytest.approx(0.3))
    assert list(tuned.scores) == [1, 3, 10]
    assert not tuned.at_grid_end
    assert cfg.train.lr == 0.1, "the caller's config was changed"
    for trial, split, write in fake.calls:
        assert write is False
        assert split.test is not data.test and split.train.base is data.train
        fit, val = split.train.index, split.test.index
        assert len(val) == 15 and len(fit) == 45 and not set(fit.tolist()) & set(val.tolist())
        # validation labels went through the protocol (30 % known), with a draw of their own
        truth = data.train.labels[val]
        known = split.test.labels != 0
        assert torch.equal(split.test.labels[known], truth[known])
        assert 0.1 < known.float().mean() < 0.5
        assert not torch.equal(known, experiments.observed_labels(truth, cfg.data) != 0)


def test_ties_go_to_the_smallest_factor_and_bad_factors_are_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(experiments, "run_experiment", _Recorder(lambda lr: 50.0))
    tied = experiments.tune_lr(_config(tmp_path), [4, 2, 8], _data(), n_val=10, seed=0)
    assert tied.factor == 2 and tied.at_grid_end  # the smallest factor tried: the grid's end
    assert not experiments.LrTuning(1, 0.1, {1: 50.0}).at_grid_end  # one factor: no grid
    for bad in ([], [1, -2]):
        with pytest.raises(ConfigError, match=r"tune_lr: factors must be positive numbers"):
            experiments.tune_lr(_config(tmp_path), bad, _data(), n_val=10, seed=0)


def test_tuning_runs_end_to_end_and_writes_nothing(tmp_path) -> None:
    tuned = experiments.tune_lr(_config(tmp_path, "full", {}), [1, 2], _data(), n_val=20, seed=1)
    assert set(tuned.scores) == {1, 2} and all(0 <= s <= 100 for s in tuned.scores.values())
    assert not any(tmp_path.iterdir())
