"""Pene et al. 2021 (GALC-SLR) and GLC: corruption matrices, the data split, the corrected loss."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlrobust import labels, losses
from mlrobust.config import DataConfig, ExperimentConfig, LossConfig, ModelConfig, TrainConfig
from mlrobust.data import DataSplits, FeatureMaps, ShapeScenes, Subset
from mlrobust.experiments import run_experiment
from mlrobust.methods import SupervisedMethod
from mlrobust.methods.pene import (GoldCorrectedMethod, corrected_probabilities, galc_slr_corruption, glc_corruption,
                                   gold_correction, pene_split, single_label_regulators)


def algorithm1_literal(sig, y, soft, single_class, squash=True):
    """Algorithm 1 of Pene et al., line by line, with Python loops (the reference)."""
    k_classes = sig.shape[1]
    reg = torch.zeros(k_classes, k_classes, dtype=torch.float64)
    for k in range(k_classes):  # lines 7-15
        num = 0
        for i in range(soft.shape[0]):
            if single_class[i] == k:
                num += 1
                reg[k] += soft[i].double()
        if num:
            reg[k] /= num
    c = torch.zeros(k_classes, k_classes, dtype=torch.float64)
    for k in range(k_classes):  # lines 19-36
        num = 0
        for i in range(sig.shape[0]):
            if y[i, k] == 1:
                num += 1
                others = 0
                regulators = torch.zeros(k_classes, dtype=torch.float64)
                for p in range(k_classes):
                    if p != k and y[i, p] == 1:
                        others += 1
                        regulators += reg[p]
                c[k] += sig[i].double() - regulators
                c[k] += reg[k] * others
        if num:
            c[k] /= num
    return torch.sigmoid(c) if squash else c  # line 38


def random_inputs(seed: int, n: int = 12, m: int = 7, k: int = 5, negatives: int = -1):
    g = torch.Generator().manual_seed(seed)
    sig = torch.rand(n, k, generator=g)
    y = torch.where(torch.rand(n, k, generator=g) < 0.4, 1, negatives).to(torch.int8)
    soft = torch.softmax(torch.randn(m, k, generator=g), 1)
    single_class = torch.randint(0, k, (m,), generator=g)
    return sig, y, soft, single_class


@settings(deadline=None, max_examples=30)
@given(seed=st.integers(0, 10_000), squash=st.booleans(), negatives=st.sampled_from([0, -1]))
def test_galc_slr_matches_a_literal_transcription_of_algorithm_1(seed, squash, negatives) -> None:
    sig, y, soft, single_class = random_inputs(seed, negatives=negatives)
    expected = algorithm1_literal(sig, y, soft, single_class, squash)
    torch.testing.assert_close(galc_slr_corruption(sig, y, soft, single_class, squash=squash), expected)


def test_classes_without_examples_get_zero_rows_before_the_sigmoid() -> None:
    sig, y, soft, single_class = random_inputs(1)
    y[:, 2] = -1  # no silver image carries class 2
    single_class[single_class == 3] = 0  # no single-label image of class 3
    raw = galc_slr_corruption(sig, y, soft, single_class, squash=False)
    assert (raw[2] == 0).all()
    assert (single_label_regulators(soft, single_class, 5)[3] == 0).all()
    torch.testing.assert_close(raw, algorithm1_literal(sig, y, soft, single_class, squash=False))


def test_regulators_and_glc_against_loops() -> None:
    sig, y, soft, single_class = random_inputs(2)
    reg = single_label_regulators(soft, single_class, 5)
    for k in range(5):
        rows = soft[single_class == k]
        if len(rows):
            torch.testing.assert_close(reg[k], rows.double().mean(0))
        positives = sig[y[:, k] == 1]
        if len(positives):
            torch.testing.assert_close(glc_corruption(sig, y)[k], positives.double().mean(0))


def test_glc_recovers_a_known_corruption_from_an_oracle_classifier() -> None:
    """If f predicted exactly P(noisy label j | image), GLC's row i would be the mean of
    those probabilities over the images truly carrying label i: here, C[i]."""
    c = torch.tensor([[0.8, 0.2, 0.0], [0.1, 0.7, 0.2], [0.0, 0.3, 0.7]], dtype=torch.float64)
    y = torch.tensor([[1, -1, -1], [-1, 1, -1], [-1, -1, 1]] * 4, dtype=torch.int8)
    oracle = (y == 1).double() @ c  # single-label images: P(noisy j) = C[true, j]
    torch.testing.assert_close(glc_corruption(oracle, y), c)


def test_errors_name_the_inputs() -> None:
    sig, y, soft, single_class = random_inputs(3)
    with pytest.raises(ValueError, match="same shape"):
        galc_slr_corruption(sig[:, :4], y, soft, single_class)
    with pytest.raises(ValueError, match="single_labels must be"):
        galc_slr_corruption(sig, y, soft, single_class[:3])
    with pytest.raises(ValueError, match="single_softmax_probs must be"):
        single_label_regulators(soft[:, :3], single_class, 5)


# --------------------------------------------------------------------------- split

def test_pene_split_pools_and_fractions() -> None:
    y = ShapeScenes(3000, image_size=32).labels
    split = pene_split(y, 0.1, seed=0)
    positives = (y == 1).sum(1)
    assert (positives[split.single] == 1).all() and (positives[split.gold] >= 2).all()
    assert (positives[split.silver] >= 2).all()
    assert len(set(split.single.tolist()) | set(split.gold.tolist()) | set(split.silver.tolist())) == \
        len(split.single) + len(split.gold) + len(split.silver)
    n_multi = int((positives >= 2).sum())
    assert len(split.gold) == round(0.1 * n_multi) and len(split.gold) + len(split.silver) == n_multi
    assert torch.equal(split.single_class, (y[split.single] == 1).int().argmax(1))
    again = pene_split(y, 0.1, seed=0)
    assert torch.equal(again.gold, split.gold) and not torch.equal(pene_split(y, 0.1, seed=1).gold, split.gold)


def test_single_label_cap_per_class() -> None:
    y = ShapeScenes(3000, image_size=32).labels
    capped = pene_split(y, 0.1, seed=0, single_cap=10)
    counts = torch.bincount(capped.single_class, minlength=24)
    full = torch.bincount(pene_split(y, 0.1, seed=0).single_class, minlength=24)
    assert torch.equal(counts, full.clamp(max=10))
    assert set(capped.single.tolist()) <= set(pene_split(y, 0.1, seed=0).single.tolist())
    assert torch.equal(capped.gold, pene_split(y, 0.1, seed=0).gold)  # the cap changes the pool only
    with pytest.raises(ValueError, match="single_cap"):
        pene_split(y, 0.1, seed=0, single_cap=0)
    with pytest.raises(ValueError, match="gold_fraction"):
        pene_split(y, 1.5, seed=0)


# --------------------------------------------------------------------------- corrected loss

def test_true_symmetric_c_keeps_corrected_probabilities_in_range() -> None:
    y = ShapeScenes(200, image_size=32).labels
    _, c = labels.symmetric_noise(y, 0.4, seed=0)
    q = corrected_probabilities(torch.randn(50, 24) * 5, c)
    assert (q >= 0).all() and (q <= 1 + 1e-6).all()
    torch.testing.assert_close(c.sum(0), torch.ones(24, dtype=torch.float64))  # unit columns


class _Batch:
    def __init__(self, images, targets, index):
        self.images, self.targets, self.index = images, targets, index


class _Trainer:
    def __init__(self, model):
        self.model = model


def test_gold_rows_use_the_logits_and_silver_rows_the_corrected_probabilities() -> None:
    torch.manual_seed(0)
    logits = torch.randn(4, 3, requires_grad=True)
    targets = torch.tensor([[1, -1, -1], [-1, 1, 1], [1, 1, -1], [-1, -1, 1]], dtype=torch.int8)
    c = torch.tensor([[0.6, 0.2, 0.2], [0.2, 0.6, 0.2], [0.2, 0.2, 0.6]])
    method = GoldCorrectedMethod(c, torch.tensor([True, False, True, False]))
    loss, _ = method.training_loss(_Trainer(lambda x: x), _Batch(logits, targets, torch.arange(4)))
    gold, silver = torch.tensor([0, 2]), torch.tensor([1, 3])
    expected = losses.asl(logits[gold], targets[gold]) + losses.asl(
        torch.sigmoid(logits[silver]) @ c, targets[silver], from_logits=False)
    torch.testing.assert_close(loss, expected)
    assert method.clamped_share == 0.0


def test_corrected_probabilities_above_one_give_silver_rows_no_gradient() -> None:
    logits = torch.full((2, 3), 3.0, requires_grad=True)
    targets = torch.tensor([[1, -1, -1], [-1, 1, -1]], dtype=torch.int8)
    method = GoldCorrectedMethod(torch.full((3, 3), 0.7), torch.tensor([False, False]))  # q ~ 2 > 1
    loss, _ = method.training_loss(_Trainer(lambda x: x), _Batch(logits, targets, torch.arange(2)))
    loss.backward()
    assert (logits.grad == 0).all() and method.clamped_share == 1.0
    normalized = GoldCorrectedMethod(torch.full((3, 3), 0.7), torch.tensor([False, False]), correction="normalize")
    logits.grad = None
    normalized.training_loss(_Trainer(lambda x: x), _Batch(logits, targets, torch.arange(2)))[0].backward()
    assert (logits.grad != 0).any() and normalized.clamped_share == 0.0


# --------------------------------------------------------------------------- pipeline

def _feature_benchmark(n: int = 300) -> tuple[FeatureMaps, Subset]:
    scenes = ShapeScenes(n, image_size=32)
    train = FeatureMaps(torch.randn(n, 8, 2, 2, generator=torch.Generator().manual_seed(0)), scenes.labels,
                        scenes.classes)
    return train, Subset(train, torch.arange(60))


def _asl_features_config(tmp_path) -> ExperimentConfig:
    cfg = ExperimentConfig(name="galc", output_dir=str(tmp_path))
    cfg.data = DataConfig(augment="none")
    cfg.model = ModelConfig(backbone="features", head="classmap", head_args={"pooling": "weldon"})
    cfg.loss = LossConfig("asl")
    cfg.train = TrainConfig(epochs=2, batch_size=32, optimizer="adam", lr=1e-3, progress=False)
    return cfg


def test_the_three_steps_run_and_the_true_c_path(tmp_path) -> None:
    train, test = _feature_benchmark()
    split = pene_split(train.labels, 0.2, seed=0)
    noisy, c_true = labels.symmetric_noise(train.labels[split.silver], 0.4, seed=0)
    cfg = _asl_features_config(tmp_path)

    def fit_silver(dataset):
        return run_experiment(cfg, data=DataSplits(dataset, test), train_labels=dataset.labels, write=False).trainer

    silver = None
    for estimator in ("galc_slr", "glc", "true"):
        out = gold_correction(fit_silver, train, split, noisy, estimator=estimator, c_true=c_true, silver=silver)
        silver = out.silver  # one f serves every estimator
        assert out.estimate.c_hat.shape == (24, 24)
        gold = run_experiment(cfg, data=DataSplits(train, test), train_labels=train.labels, method=out.method,
                              write=False)
        assert set(gold.metrics) >= {"mAP", "CF1", "OF1"} and 0 <= out.method.clamped_share <= 1
        assert len(gold.trainer.train_set) == len(split.gold) + len(split.silver)
        assert torch.equal(gold.trainer.train_labels[: len(split.gold)].cpu(), train.labels[split.gold])
    with pytest.raises(ValueError, match="needs c_true"):
        gold_correction(fit_silver, train, split, noisy, estimator="true", silver=silver)


def test_gold_correction_runs_from_a_config(tmp_path) -> None:
    train, test = _feature_benchmark()
    cfg = _asl_features_config(tmp_path)
    cfg.data.protocol, cfg.data.protocol_args = "symmetric_noise", {"eta": 0.4}
    cfg.method, cfg.method_args = "gold_correction", {"estimator": "true", "gold_fraction": 0.2}
    result = run_experiment(cfg, data=DataSplits(train, test), write=False)
    method = result.trainer.method
    assert isinstance(method, GoldCorrectedMethod) and method.is_gold.sum() > 0
    torch.testing.assert_close(method.c_hat, labels.symmetric_noise_matrix(24, 0.4).float())
    gold_rows = method.train_index[method.is_gold]
    assert torch.equal(result.trainer.train_labels[method.is_gold].cpu(), train.labels[gold_rows])
    cfg.data.protocol, cfg.data.protocol_args = "noisy", {"clean": 0.8}
    with pytest.raises(ValueError, match="estimator 'true' needs data.protocol 'symmetric_noise'"):
        run_experiment(cfg, data=DataSplits(train, test), write=False)
