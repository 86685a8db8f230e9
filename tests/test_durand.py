"""Durand, Mehrasa & Mori 2019: WELDON pooling, the label GNN, curriculum relabeling."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from mlrobust import losses, pretrained
from mlrobust.config import DataConfig, ExperimentConfig, LossConfig, ModelConfig, TrainConfig
from mlrobust.data import DataSplits, FeatureMaps, ShapeScenes, extract_features
from mlrobust.experiments import frozen_backbone, run_experiment
from mlrobust.methods.durand import (CurriculumRelabeling, mc_dropout_logits, relabel_epochs,
                                     select_labels)
from mlrobust.models import ClassMapHead, LabelGNN, MultiLabelNet, WeldonPooling, create_backbone, create_model

from _hooks import Interrupt


# --------------------------------------------------------------------------- WELDON

def test_weldon_on_a_hand_worked_map() -> None:
    # one class, a 2 x 5 map = 10 regions; k = 0.2 -> 2 regions each side
    maps = torch.tensor([[[[9.0, 1.0, 2.0, -4.0, 0.5], [3.0, 7.0, -1.0, 0.0, -6.0]]]])
    # top-2: 9, 7 -> mean 8; bottom-2: -6, -4 -> mean -5; score 3
    assert WeldonPooling(0.2, 0.2)(maps).item() == pytest.approx(3.0)
    # k = 0.1 -> one region each side: 9 + (-6)
    assert WeldonPooling(0.1, 0.1)(maps).item() == pytest.approx(3.0)
    # k- = 0: top regions only; k given as a count
    assert WeldonPooling(3, 0)(maps).item() == pytest.approx((9 + 7 + 3) / 3)


def test_weldon_is_per_class_and_takes_at_least_one_region() -> None:
    maps = torch.randn(4, 6, 3, 3)
    out = WeldonPooling(0.1, 0.1)(maps)  # 0.1 * 9 rounds to 1
    flat = maps.flatten(2)
    torch.testing.assert_close(out, flat.max(-1).values + flat.min(-1).values)
    with pytest.raises(ValueError, match="k_pos"):
        WeldonPooling(0, 0.1)


def test_weldon_head_gradient_reaches_only_the_selected_regions() -> None:
    head = ClassMapHead(4, 2, pooling="weldon", k_pos=0.25, k_neg=0.25)
    maps = torch.randn(1, 2, 2, 2, requires_grad=True)
    head.pooling(maps).sum().backward()
    assert (maps.grad != 0).sum() == 4  # one top and one bottom region per class, 2 classes


# --------------------------------------------------------------------------- GNN

def test_gnn_shapes_and_the_message_excludes_the_node_itself() -> None:
    gnn = LabelGNN(5, steps=3)
    assert gnn(torch.randn(7, 5)).shape == (7, 5)
    # with one step and zero GRU weights except the input gate path, the node's own state
    # must not enter its message: check by comparing with an explicit loop
    x = torch.randn(2, 5)
    h0 = torch.diag_embed(x)
    f = torch.relu(gnn.message(h0))
    expected = torch.stack([torch.stack([(f[b].sum(0) - f[b, v]) / 4 for v in range(5)]) for b in range(2)])
    got = (f.sum(dim=1, keepdim=True) - f) / 4
    torch.testing.assert_close(got, expected)


def test_gnn_is_equivariant_to_a_joint_relabeling_of_the_classes() -> None:
    """Renaming the classes (permuting the inputs and every weight's class axes the same way)
    permutes the outputs: the graph has no preferred node order beyond its weights."""
    torch.manual_seed(0)
    c = 6
    gnn = LabelGNN(c, steps=3)
    perm = torch.randperm(c)
    twin = LabelGNN(c, steps=3)
    with torch.no_grad():
        twin.message.weight.copy_(gnn.message.weight[perm][:, perm])
        twin.message.bias.copy_(gnn.message.bias[perm])
        for name in ("weight_ih", "weight_hh"):
            w = getattr(gnn.update, name).reshape(3, c, c)  # the r, z, n gates
            getattr(twin.update, name).copy_(w[:, perm][:, :, perm].reshape(3 * c, c))
        for name in ("bias_ih", "bias_hh"):
            getattr(twin.update, name).copy_(getattr(gnn.update, name).reshape(3, c)[:, perm].reshape(-1))
    x = torch.randn(4, c)
    torch.testing.assert_close(twin(x[:, perm]), gnn(x)[:, perm])


def test_gnn_can_overfit_a_tiny_problem() -> None:
    """The GNN alone learns a label rule its input does not contain: class 1 is present
    exactly when class 0's logit is high (a correlation only messages can carry)."""
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    y = torch.where(x > 0, 1, -1).to(torch.int8)
    y[:, 1] = torch.where(x[:, 0] > 0, 1, -1)
    x[:, 1] = 0.0  # no direct evidence for class 1
    gnn = LabelGNN(4, steps=3)
    opt = torch.optim.Adam(gnn.parameters(), lr=0.03)
    for _ in range(300):
        loss = losses.bce(gnn(x), y)
        opt.zero_grad(), loss.backward(), opt.step()
    accuracy = ((gnn(x)[:, 1] > 0) == (y[:, 1] == 1)).float().mean()
    assert accuracy > 0.95


def test_model_with_gnn_and_weldon() -> None:
    m = create_model("cnn_s", 24, head="classmap", pooling="weldon", gnn_steps=3)
    assert isinstance(m.refine, LabelGNN) and m(torch.randn(2, 3, 32, 32)).shape == (2, 24)


# --------------------------------------------------------------------------- selection rules

SCORES = torch.tensor([[3.0, -2.5, 0.5, 1.9],
                       [-0.1, 2.0, -2.0, 5.0]])
ALL_MISSING = torch.ones(2, 4, dtype=torch.bool)


def test_threshold_rule_eq8() -> None:
    sel = select_labels("threshold", 2.0, ALL_MISSING, SCORES)
    # v = 1[x >= 2] + 1[x < -2]: 3.0, -2.5, 2.0, 5.0 are selected; -2.0 is not (strict <)
    assert sel.selected.tolist() == [[True, True, False, False], [False, True, False, True]]
    assert sel.labels.tolist() == [[1, -1, 1, 1], [-1, 1, -1, 1]]


def test_positive_rule_eq9_and_only_missing_pairs() -> None:
    missing = torch.tensor([[True, True, True, False], [True, True, True, True]])
    sel = select_labels("positive", 2.0, missing, SCORES)
    assert sel.selected.tolist() == [[True, False, False, False], [False, True, False, True]]
    assert (sel.labels[sel.selected] == 1).all()


def test_ensemble_rule_eq10_uses_the_mean_of_the_passes() -> None:
    samples = torch.stack([SCORES + 1.0, SCORES - 1.0, SCORES])  # mean = SCORES
    sel = select_labels("ensemble", 2.0, ALL_MISSING, samples=samples)
    assert sel.selected.tolist() == select_labels("threshold", 2.0, ALL_MISSING, SCORES).selected.tolist()


def test_uncertainty_rule_eq11_uses_the_variance() -> None:
    base = torch.zeros(2, 2)
    spread = torch.tensor([[0.1, 1.0], [0.0, 3.0]])
    samples = torch.stack([base + spread, base - spread])  # variance = spread**2, mean 0 -> label +1
    samples[:, 1, 0] = -4.0  # constant negative: variance 0, label -1
    sel = select_labels("uncertainty", 0.5, torch.ones(2, 2, dtype=torch.bool), samples=samples)
    assert sel.selected.tolist() == [[True, False], [True, False]]
    assert sel.labels[1, 0] == -1 and sel.labels[0, 0] == 1


def test_proportion_rule_labels_a_share_of_each_mini_batch() -> None:
    # 4 images, batches of 2; each batch has 2 x 3 = 6 missing pairs, share 0.5 -> 3 each
    scores = torch.tensor([[0.1, 5.0, -4.0], [0.2, -0.3, 3.0], [9.0, 0.0, 0.0], [-8.0, 7.0, 0.05]])
    sel = select_labels("proportion", 0.5, torch.ones(4, 3, dtype=torch.bool), scores, batch_size=2)
    assert sel.selected[:2].sum() == 3 and sel.selected[2:].sum() == 3
    assert sel.selected[0, 1] and sel.selected[0, 2] and sel.selected[1, 2]  # |5|, |-4|, |3|
    assert sel.selected[2, 0] and sel.selected[3, 0] and sel.selected[3, 1]  # |9|, |-8|, |7|


def test_all_strategy_and_errors() -> None:
    missing = torch.tensor([[True, False], [False, True]])
    sel = select_labels("all", 0.0, missing, torch.tensor([[1.0, -1.0], [-2.0, -3.0]]))
    assert sel.selected.tolist() == missing.tolist()
    with pytest.raises(ValueError, match="unknown relabeling strategy 'magic'"):
        select_labels("magic", 1.0, missing, missing.float())
    with pytest.raises(ValueError, match=r"needs samples of shape \(T, N, C\)"):
        select_labels("uncertainty", 1.0, missing, missing.float())
    with pytest.raises(ValueError, match="share in"):
        select_labels("proportion", 2.0, missing, missing.float())


def test_relabel_epochs_scale_the_papers_schedule() -> None:
    assert relabel_epochs(20) == [9, 14]  # before epochs 10 and 15 (1-based) of 20
    assert relabel_epochs(12) == [5, 8]
    assert relabel_epochs(2) == [1]


# --------------------------------------------------------------------------- MC dropout

def test_mc_dropout_runs_the_backbone_once_and_leaves_batchnorm_alone() -> None:
    calls = {"n": 0}

    class Counting(nn.Module):
        num_features = 8

        def __init__(self) -> None:
            super().__init__()
            self.bn = nn.BatchNorm2d(8)

        def forward(self, x):
            calls["n"] += 1
            return self.bn(x)

    model = MultiLabelNet(Counting(), ClassMapHead(8, 3, pooling="gap", dropout=0.5))
    stats = model.backbone.bn.running_mean.clone()
    model.train()
    out = mc_dropout_logits(model, torch.randn(4, 8, 2, 2), passes=7)
    assert out.shape == (7, 4, 3) and calls["n"] == 1
    assert out.var(0).sum() > 0  # the passes differ
    assert torch.equal(model.backbone.bn.running_mean, stats) and model.training
    with pytest.raises(ValueError, match="dropout > 0"):
        mc_dropout_logits(MultiLabelNet(Counting(), ClassMapHead(8, 3)), torch.randn(1, 8, 2, 2), 3)


# --------------------------------------------------------------------------- the hook, end to end

@pytest.fixture(scope="module")
def feature_splits() -> DataSplits:
    train = FeatureMaps(torch.randn(96, 8, 2, 2), ShapeScenes(96, image_size=32).labels, [f"c{i}" for i in range(24)])
    test = FeatureMaps(torch.randn(32, 8, 2, 2), ShapeScenes(32, image_size=32, split="test").labels,
                       train.classes)
    return DataSplits(train=train, test=test)


def curriculum_config(tmp_path, strategy: str, theta: float, epochs: int = 4) -> ExperimentConfig:
    cfg = ExperimentConfig(name=f"cur-{strategy}", output_dir=str(tmp_path), method="curriculum",
                           method_args={"strategy": strategy, "theta": theta, "passes": 4})
    cfg.data = DataConfig(protocol="partial", protocol_args={"known": 0.2}, augment="none")
    cfg.model = ModelConfig(backbone="features", head="classmap",
                            head_args={"pooling": "weldon", "dropout": 0.3}, gnn_steps=2)
    cfg.loss = LossConfig("partial_bce")
    cfg.train = TrainConfig(epochs=epochs, batch_size=32, lr=0.05, progress=False)
    return cfg


@pytest.mark.parametrize("strategy,theta", [("threshold", 0.5), ("proportion", 0.5), ("positive", 0.0),
                                            ("ensemble", 0.5), ("uncertainty", 0.05), ("all", 0.0)])
def test_curriculum_relabels_before_the_scheduled_epochs(tmp_path, feature_splits, strategy, theta) -> None:
    result = run_experiment(curriculum_config(tmp_path, strategy, theta), data=feature_splits)
    hook = result.trainer.hooks[0]
    assert [int(s["epoch"]) for s in hook.steps] == relabel_epochs(4) == [2, 3]
    store = result.trainer.train_labels.cpu()
    from mlrobust.experiments import observed_labels

    initial = observed_labels(feature_splits.train.labels, result.trainer.run_config and
                              ExperimentConfig.from_dict(result.trainer.run_config).data)
    known = initial != 0
    assert torch.equal(store[known], initial[known])  # clean labels never change
    assert (store != 0).sum() > known.sum()  # and some missing labels were added
    # the proportion recorded after the last step is the store's
    assert hook.steps[-1]["label_proportion"] == pytest.approx((store != 0).float().mean().item())
    if strategy == "all":
        assert (store != 0).all()
    if strategy == "positive":
        original = run_experiment(curriculum_config(tmp_path, "threshold", 1e9), data=feature_splits).trainer
        added = (store != 0) & (original.train_labels.cpu() == 0)
        assert (store[added] == 1).all()
    assert "relabel_label_proportion" in result.history[2]


def test_tp_and_tn_rates_are_measured_on_the_new_labels_only() -> None:
    truth = torch.tensor([[1, -1, -1, 1]], dtype=torch.int8)
    hook = CurriculumRelabeling("all", 0.0, [0], truth=truth)
    sel = select_labels("all", 0.0, torch.tensor([[True, True, True, False]]),
                        torch.tensor([[2.0, 1.0, -1.0, 0.0]]))
    new = torch.where(sel.selected, sel.labels, torch.tensor([[0, 0, 0, 1]], dtype=torch.int8))
    m = hook._measure(0, sel, new)
    # new labels: +1 (truly +), +1 (truly -), -1 (truly -): sensitivity 1/1, specificity 1/2
    assert m["tp_rate"] == 1.0 and m["tn_rate"] == 0.5
    assert m["positive_precision"] == 0.5 and m["accuracy"] == pytest.approx(2 / 3)
    assert m["label_proportion"] == 1.0 and m["added"] == 3


def test_curriculum_resume_restores_the_steps_and_the_store(tmp_path, feature_splits) -> None:
    straight = run_experiment(curriculum_config(tmp_path / "a", "threshold", 0.5), data=feature_splits,
                              hooks=(Interrupt(-1),))
    cfg = curriculum_config(tmp_path / "b", "threshold", 0.5)
    with pytest.raises(KeyboardInterrupt):  # crash after the first relabeling (before epoch 3)
        run_experiment(cfg, data=feature_splits, hooks=(Interrupt(3),))
    resumed = run_experiment(cfg, data=feature_splits, resume=True, hooks=(Interrupt(-1),))
    assert resumed.trainer.hooks[0].steps == straight.trainer.hooks[0].steps
    assert torch.equal(resumed.trainer.train_labels, straight.trainer.train_labels)
    assert resumed.metrics == straight.metrics


def test_curriculum_config_errors(feature_splits) -> None:
    cfg = curriculum_config("/tmp", "threshold", 0.5)
    cfg.method_args = {"strategy": "threshold", "thetta": 2.0}
    with pytest.raises(ValueError, match=r"unknown config key\(s\) method_args.thetta"):
        run_experiment(cfg, data=feature_splits, write=False)
    cfg.method_args = {"strategy": "threshold", "at": [0.5, 1.5]}
    with pytest.raises(ValueError, match=r"method_args.at must be fractions of training in \(0, 1\)"):
        run_experiment(cfg, data=feature_splits, write=False)


# --------------------------------------------------------------------------- frozen features

def test_feature_runs_need_the_features_backbone(feature_splits) -> None:
    cfg = ExperimentConfig()
    cfg.train = TrainConfig(epochs=1, batch_size=32, progress=False)
    with pytest.raises(ValueError, match="model.backbone must be 'features'"):
        run_experiment(cfg, data=feature_splits, write=False)


def test_frozen_backbone_from_a_file_a_shipped_name_or_random(tmp_path, monkeypatch) -> None:
    net = create_backbone("cnn_s")
    torch.nn.init.normal_(net.body[0][0].weight)
    sha = pretrained.save_weights(net, tmp_path / "w.safetensors")
    from_file, path = frozen_backbone("cnn_s", tmp_path / "w.safetensors")
    assert path == str(tmp_path / "w.safetensors") and not from_file.training
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), from_file.state_dict().values()))
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setitem(pretrained.SHIPPED, "tiny", pretrained.ShippedWeights(
        "w.safetensors", sha, pretrained.PretrainConfig(), 0.0, 0.0))
    by_name, same = frozen_backbone("cnn_s", "tiny")
    assert same == path and torch.equal(by_name.body[0][0].weight, net.body[0][0].weight)
    assert frozen_backbone("cnn_s", None)[1] is None  # random weights, no file
    images = ShapeScenes(10, image_size=32)
    fa, fb = extract_features(from_file, images), extract_features(by_name, images)
    assert fa.features.shape == (10, 192, 4, 4) and torch.equal(fa.features, fb.features)
    assert torch.equal(fa.labels, images.labels) and fa.source is images
    assert not math.isnan(fa.features.sum().item())


def test_dense_labels_on_the_labelled_subset(feature_splits) -> None:
    """Durand et al.'s dense setting read as training on the labelled images only."""
    cfg = ExperimentConfig(name="dense-subset", method="labelled_only")
    cfg.data = DataConfig(protocol="dense", protocol_args={"known": 0.25}, augment="none")
    cfg.model = ModelConfig(backbone="features", head="classmap", head_args={"pooling": "weldon"})
    cfg.train = TrainConfig(epochs=1, batch_size=8, progress=False, device="cpu")
    result = run_experiment(cfg, data=feature_splits, write=False)
    trainer = result.trainer
    assert len(trainer.train_set) == 24 and (trainer.train_labels != 0).all()
    method = trainer.method
    with pytest.raises(ValueError, match="labelled_only: no training image has a known label"):
        method.training_data(feature_splits.train, torch.zeros_like(feature_splits.train.labels))
