"""The object-centric pretraining set, the softmax cross-entropy and the shipped backbone."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mlrobust import losses, pretrained
from mlrobust.data.objectscenes import PRETRAIN_CLASSES, ObjectScenes, object_centric
from mlrobust.data.shapescenes import ShapeScenes, sample_scenes


def test_object_scenes_hold_one_whole_object_of_30_classes() -> None:
    d = ObjectScenes(300, 32, seed=3, radius_range=(0.1, 0.3))
    present = d.scenes.obj_class >= 0
    assert present.sum(1).eq(1).all() and len(d.classes) == len(PRETRAIN_CLASSES) == 30
    assert torch.equal(d.scenes.obj_class[present], d.targets)
    assert torch.equal(d.labels.argmax(1), d.targets) and (d.labels == 1).sum(1).eq(1).all()
    r = d.scenes.obj_radius[present]
    centre = d.scenes.obj_center[present]
    assert ((r >= 0.1) & (r <= 0.3)).all()
    assert ((centre - r[:, None] >= 0) & (centre + r[:, None] <= 1)).all(), "an object is cut off"
    assert len(d.targets.unique()) == 30  # every class occurs, distractors included
    assert torch.equal(ObjectScenes(300, 32, seed=3, radius_range=(0.1, 0.3)).targets, d.targets)


def test_object_scenes_are_disjoint_from_the_chapters_scenes() -> None:
    pre = ObjectScenes(500, 32, seed=0)
    for split in ("train", "val", "test"):
        other = ShapeScenes(500, 32, seed=0, split=split)
        assert not set(pre.scenes.uid.tolist()) & set(other.scenes.uid.tolist()), split


def test_object_centric_rejects_bad_radius() -> None:
    with pytest.raises(ValueError, match=r"radius_range\[1\] must be in \[0.3, 0.5\], got 0.2"):
        object_centric(sample_scenes(4, 0), 0, (0.3, 0.2))


def test_softmax_ce_is_the_cross_entropy_of_the_positive_class() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([[1, -1, -1], [-1, 1, -1]], dtype=torch.int8)
    by_hand = (-(2.0 - torch.logsumexp(logits[0], 0)) - (0.5 - torch.logsumexp(logits[1], 0))) / 2
    assert losses.softmax_ce(logits, y).item() == pytest.approx(by_hand.item())
    assert losses.create_loss("softmax_ce")(logits, y, reduction="none").shape == (2,)
    assert torch.autograd.gradcheck(lambda z: losses.softmax_ce(z, y), (logits,))
    with pytest.raises(ValueError, match="row 1 has 2 ones and 0 unknowns"):
        losses.softmax_ce(logits, torch.tensor([[1, -1, -1], [1, 1, -1]], dtype=torch.int8))
    with pytest.raises(ValueError, match="row 0 has 1 ones and 1 unknowns"):
        losses.softmax_ce(logits, torch.tensor([[1, 0, -1], [1, -1, -1]], dtype=torch.int8))


TINY = pretrained.PretrainConfig(n=256, epochs=1, batch_size=64)


def test_pretraining_is_deterministic_and_round_trips(tmp_path: Path) -> None:
    a, record = pretrained.pretrain(TINY)
    b, _ = pretrained.pretrain(TINY)
    sha_a = pretrained.save_weights(a, tmp_path / "a.safetensors")
    assert sha_a == pretrained.save_weights(b, tmp_path / "b.safetensors")
    assert set(record) == {"seconds", "accuracy"} and 0 <= record["accuracy"] <= 100
    c, _ = pretrained.pretrain(replace(TINY, seed=1))
    assert pretrained.save_weights(c, tmp_path / "c.safetensors") != sha_a
    assert not list(tmp_path.glob(".*.tmp")), "a temporary file was left behind"


def test_load_shipped_checks_the_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    net, _ = pretrained.pretrain(TINY)
    sha = pretrained.save_weights(net, tmp_path / "tiny.safetensors")
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setitem(pretrained.SHIPPED, "tiny", pretrained.ShippedWeights("tiny.safetensors", sha, TINY, 0.0, 0.0))
    loaded = pretrained.load_shipped("tiny")
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in loaded.state_dict().items())
    (tmp_path / "tiny.safetensors").write_bytes(b"\0" + (tmp_path / "tiny.safetensors").read_bytes()[1:])
    with pytest.raises(ValueError, match=r"tiny.safetensors has SHA-256 [0-9a-f]{64}, expected " + sha):
        pretrained.load_shipped("tiny")
    with pytest.raises(ValueError, match=r"no shipped weights named 'nope'; shipped: \["):
        pretrained.load_shipped("nope")


def test_weights_by_name_path_or_random() -> None:
    assert pretrained.resolve_weights(None) is None and pretrained.resolve_weights("random") is None
    assert pretrained.resolve_weights("cnn_s-objects32") == pretrained.shipped_path("cnn_s-objects32")
    assert pretrained.resolve_weights("/data/resnet101.pth") == Path("/data/resnet101.pth")


def test_pretrain_config_refuses_bad_values() -> None:
    with pytest.raises(ValueError, match="pretrain.epochs"):
        pretrained.PretrainConfig(epochs=0)


def test_a_run_starts_from_the_same_weights_whether_it_names_its_weights_or_gives_the_path() -> None:
    # Checking the shipped file's hash must not draw random numbers inside the run's seeded
    # initialisation (it once built a whole backbone), or the head starts elsewhere.
    from mlrobust.config import ExperimentConfig
    from mlrobust.experiments import _initial_model, build_data

    def initial(weights: str) -> dict[str, torch.Tensor]:
        cfg = ExperimentConfig.from_dict({"data": {"n_train": 16, "n_test": 16}, "model": {"weights": weights}})
        return _initial_model(cfg, build_data(cfg.data)).state_dict()

    by_name, by_path = initial("cnn_s-objects32"), initial(str(pretrained.shipped_path("cnn_s-objects32")))
    assert by_name.keys() == by_path.keys()
    assert all(torch.equal(by_name[k], by_path[k]) for k in by_name)
