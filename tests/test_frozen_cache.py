"""The frozen layers' maps computed once (train.cache_frozen): same training, fewer passes."""

from __future__ import annotations

import pytest
import torch

from mlrobust.config import ConfigError, DataConfig, ExperimentConfig, ModelConfig, TrainConfig
from mlrobust.data import DataSplits, Subset, extract_features
from mlrobust.data.preprocess import Preprocess
from mlrobust.engine import Trainer, frozen_cache
from mlrobust.engine.frozen_cache import base_rows, frozen_maps, prefix_key
from mlrobust.experiments import Run, build_data, run_experiment, run_many
from mlrobust.losses import bce
from mlrobust.methods import SupervisedMethod
from mlrobust.models import create_model

from _hooks import Interrupt


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


def test_the_key_follows_the_frozen_weights_and_what_shapes_their_input() -> None:
    torch.manual_seed(0)
    prefix, _ = create_model("cnn_s", 4, freeze_at=2).split_frozen()
    key = prefix_key(prefix, repr(Preprocess("cpu")))
    assert key == prefix_key(prefix, repr(Preprocess("cpu")))
    assert key != prefix_key(prefix, repr(Preprocess("cpu", channels_last=True)))
    with torch.no_grad():
        prefix[0][0].weight[0, 0, 0, 0] += 1e-3
    assert key != prefix_key(prefix, repr(Preprocess("cpu")))
    with_counter = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))  # a 0-dim buffer
    assert len(prefix_key(with_counter, "")) == 64


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
    assert cached.trainer.frozen_prefix is None and not hasattr(data.train, "_frozen_maps")
    assert reason in caplog.text
    assert cached.metrics == run_experiment(_cfg(False, **change), data=data, write=False).metrics


def _trainer(model: torch.nn.Module, dataset, augment: str = "flip") -> Trainer:
    cfg = TrainConfig(epochs=1, batch_size=16, device="cpu", progress=False, cache_frozen=True)
    return Trainer(model, SupervisedMethod(bce), dataset, dataset.labels, cfg, augment=augment)


def test_feature_maps_and_unsplittable_or_mode_dependent_layers_train_as_usual(
        data: DataSplits, caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)
    features = extract_features(create_model("cnn_s", 4).backbone, data.train, "cpu")
    net = create_model("cnn_s", len(data.classes), freeze_at=2)
    plain_bn = create_model("cnn_s", len(data.classes), freeze_at=2)
    plain_bn.backbone.body[0][1] = torch.nn.BatchNorm2d(24).requires_grad_(False)  # frozen by hand, still moving
    unsplittable = create_model("cnn_s", len(data.classes), freeze_at=2)
    unsplittable.backbone = torch.nn.Sequential(unsplittable.backbone.body)  # no split_frozen()
    cases = [(net, features, "none", "precomputed feature maps already"),
             (plain_bn, data.train, "flip", "BatchNorm2d, whose output changes with the training mode"),
             (unsplittable, data.train, "flip", "cannot be split at its frozen layers")]
    for model, dataset, augment, reason in cases:
        with caplog.at_level("INFO", logger="mlrobust"):
            assert _trainer(model, dataset, augment).frozen_prefix is None
        assert reason in caplog.text, reason
    assert _trainer(net, data.train).frozen_prefix is not None


def test_a_resumed_run_reads_the_maps_of_the_weights_it_resumes_with(data: DataSplits, tmp_path) -> None:
    """Interrupted without the cache and resumed with it (the option is free across a resume),
    the run ends where a straight run does; loading a state forgets the fetched maps."""
    data = _fresh(data)
    straight = run_experiment(_cfg(False), data=data, write=False)
    cfg = _cfg(False)
    cfg.output_dir = str(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, data=data, hooks=[Interrupt(1)])
    cfg.train.cache_frozen = True
    resumed = run_experiment(cfg, data=data, resume=True, hooks=[Interrupt(-1)])
    assert resumed.trainer.frozen_prefix is not None and resumed.trainer._maps is not None
    torch.testing.assert_close(resumed.trainer.predict(data.test), straight.trainer.predict(data.test),
                               rtol=0, atol=1e-5)
    resumed.trainer.load_state_dict(resumed.trainer.state_dict())
    assert resumed.trainer._maps is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_under_cuda_autocast_the_maps_are_what_a_step_computes(data: DataSplits) -> None:
    data = _fresh(data)
    cfg_plain, cfg_cached = _cfg(False), _cfg(True)
    for cfg in (cfg_plain, cfg_cached):
        cfg.train.device = "cuda"
    plain = _logits(cfg_plain, data)
    cached = _logits(cfg_cached, data)
    (maps,) = data.train._frozen_maps.values()
    assert maps.dtype == torch.bfloat16
    torch.testing.assert_close(cached, plain, rtol=0, atol=2e-2)


def test_maps_beyond_the_memory_limit_are_refused_and_nothing_is_stored(data: DataSplits,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    data = _fresh(data)
    monkeypatch.setattr(frozen_cache, "MAPS_LIMIT", 1000)
    with pytest.raises(ConfigError, match=r"GiB .*set train.cache_frozen false"):
        run_experiment(_cfg(True), data=data, write=False)
    assert not data.train._frozen_maps
    # the limit holds for everything stored on a dataset: a second frozen part needs room too
    monkeypatch.undo()  # under the real limit the first frozen part's maps are stored
    run_experiment(_cfg(True), data=data, write=False)
    (size,) = [m.numel() * m.element_size() for m in data.train._frozen_maps.values()]
    monkeypatch.setattr(frozen_cache, "MAPS_LIMIT", 2 * size - 1)
    other = _cfg(True)
    other.train.seed = 4  # other random weights in the frozen layers: another key
    with pytest.raises(ConfigError, match="more are stored for this dataset"):
        run_experiment(other, data=data, write=False)
