"""The frozen layers' maps computed once (train.cache_frozen): same training, fewer passes."""

from __future__ import annotations

import pytest
import torch

from mlrobust.config import ConfigError, DataConfig, ExperimentConfig, ModelConfig, TrainConfig
from mlrobust.data import DataSplits, Subset, extract_features
from mlrobust.data.preprocess import Preprocess
from mlrobust.engine import frozen_cache
from mlrobust.engine.frozen_cache import base_rows, frozen_maps, prefix_key
from mlrobust.experiments import Run, build_data, run_experiment, run_many
from mlrobust.models import create_model


@pytest.fixture(scope="module")
def data() -> DataSplits:
    return build_data(DataConfig(n_train=96, n_test=48, image_size=32))


def _cfg(cache: bool, augment: str = "flip", freeze_at: int = 2, method: str = "supervised",
         **method_args: object) -> ExperimentConfig:
    cfg = ExperimentConfig(name="cached" if cache else "plain", method=method, method_args=method_args)
    cfg.data = DataConfig(n_train=96, n_test=48, image_size=32, augment=augment, protocol="partial",
                          protocol_args={"known": 0.5})
    cfg.model = ModelConfig(backbone="cnn_s", freeze_at=freeze_at)
    cfg.train = TrainConfig(epochs=2, batch_size=16, lr=0.1, seed=3, device="cpu", progress=False,
                            cache_frozen=cache)
    return cfg


def _logits(cfg: ExperimentConfig, data: DataSplits) -> torch.Tensor:
    return run_experiment(cfg, data=data, write=False).trainer.predict(data.test)


def _fresh(data: DataSplits) -> DataSplits:
    """The same images in new dataset objects: no maps stored on them yet."""
    return build_data(DataConfig(n_train=len(data.train), n_test=len(data.test), image_size=32))


@pytest.mark.parametrize("augment", ["flip", "none"])
def test_training_on_stored_maps_is_training_through_the_frozen_layers(data: DataSplits, augment: str) -> None:
    data = _fresh(data)
    plain = _logits(_cfg(False, augment), data)
    cached = _logits(_cfg(True, augment), data)
    torch.testing.assert_close(cached, plain, rtol=0, atol=1e-5)
    assert len(data.train._frozen_maps) == 1


def test_extra_views_go_through_the_frozen_layers(data: DataSplits) -> None:
    """A method that draws its own weak and strong views (crops, colour) gets them computed
    through the frozen layers, not stored: the same training as without the cache."""
    data = _fresh(data)
    plain = _logits(_cfg(False, method="consistency", weak="weak", strong="strong"), data)
    cached = _logits(_cfg(True, method="consistency", weak="weak", strong="strong"), data)
    torch.testing.assert_close(cached, plain, rtol=0, atol=1e-5)


def test_maps_are_the_frozen_layers_of_each_image_and_its_mirror_image(data: DataSplits) -> None:
    data = _fresh(data)
    torch.manual_seed(0)
    prefix, _ = create_model("cnn_s", 4, freeze_at=2).split_frozen()
    prep = Preprocess("cpu")
    subset = Subset(Subset(data.train, torch.arange(10, 60)), torch.tensor([0, 7, 49]))
    maps, rows = frozen_maps(prefix, subset, prep, torch.device("cpu"))
    assert rows.tolist() == [10, 17, 59] and maps.shape[:2] == (2, len(data.train))
    images = data.train.load_batch(rows)
    with torch.no_grad():
        torch.testing.assert_close(maps[0, rows], prefix.eval()(prep(images)))
        torch.testing.assert_close(maps[1, rows], prefix(prep(images.flip(3))))
    again, _ = frozen_maps(prefix, data.train, prep, torch.device("cpu"))  # the base: the same store
    assert again.data_ptr() == maps.data_ptr()
    assert base_rows(subset)[0] is data.train


def test_the_key_follows_the_frozen_weights_and_the_input_layout() -> None:
    torch.manual_seed(0)
    prefix, _ = create_model("cnn_s", 4, freeze_at=2).split_frozen()
    key = prefix_key(prefix, Preprocess("cpu"))
    assert key == prefix_key(prefix, Preprocess("cpu"))
    assert key != prefix_key(prefix, Preprocess("cpu", channels_last=True))
    with torch.no_grad():
        prefix[0][0].weight[0, 0, 0, 0] += 1e-3
    assert key != prefix_key(prefix, Preprocess("cpu"))


def test_run_many_computes_the_maps_once_for_every_run(data: DataSplits) -> None:
    data = _fresh(data)
    runs = {lr: Run(_cfg(True), data=data, write=False) for lr in (0.05, 0.1)}
    for lr, run in runs.items():
        run.cfg.train.lr = lr
    outcomes = run_many(runs, workers=1)
    assert len(data.train._frozen_maps) == 1 and not hasattr(data.test, "_frozen_maps")
    assert outcomes[0.1].metrics == run_experiment(_cfg(False), data=_fresh(data), write=False).metrics


@pytest.mark.parametrize(("change", "reason"), [
    ({"augment": "weak"}, "changes the frozen layers' input"),
    ({"freeze_at": 0}, "model.freeze_at is 0"),
])
def test_where_maps_cannot_serve_the_run_it_trains_as_usual_and_says_why(
        data: DataSplits, change: dict, reason: str, caplog: pytest.LogCaptureFixture) -> None:
    data = _fresh(data)
    with caplog.at_level("INFO", logger="mlrobust"):
        cached = run_experiment(_cfg(True, **change), data=data, write=False)
    assert cached.trainer.prefix is None and not hasattr(data.train, "_frozen_maps")
    assert reason in caplog.text
    assert cached.metrics == run_experiment(_cfg(False, **change), data=data, write=False).metrics


def test_feature_maps_and_unsplittable_backbones_train_as_usual(data: DataSplits) -> None:
    torch.manual_seed(0)
    features = DataSplits(train=extract_features(create_model("cnn_s", 4).backbone, data.train, "cpu"),
                          test=extract_features(create_model("cnn_s", 4).backbone, data.test, "cpu"))
    cfg = _cfg(True, augment="none", freeze_at=0)
    cfg.model = ModelConfig(backbone="features")
    assert run_experiment(cfg, data=features, write=False).trainer.prefix is None
    net = create_model("cnn_s", 4, freeze_at=2)
    net.backbone = torch.nn.Sequential(net.backbone.body)  # no split_frozen()
    with pytest.raises(ValueError, match="cannot be split at its frozen layers"):
        net.split_frozen()


def test_maps_beyond_the_memory_limit_are_refused_and_nothing_is_stored(data: DataSplits,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    data = _fresh(data)
    monkeypatch.setattr(frozen_cache, "MAPS_LIMIT", 1000)
    with pytest.raises(ConfigError, match=r"GiB .*set train.cache_frozen false"):
        run_experiment(_cfg(True), data=data, write=False)
    assert not data.train._frozen_maps
