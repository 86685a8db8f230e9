"""Tests for mlrobust.metrics: scikit-learn and torchmetrics as independent references,
literal transcriptions, hand-worked examples and hypothesis properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import (accuracy_score, average_precision_score, f1_score,
                             precision_score, recall_score)
from torchmetrics.classification import MultilabelAveragePrecision

from mlrobust import metrics
from mlrobust._validate import looks_zero_one

KEYS = {"mAP", "CP", "CR", "CF1", "OP", "OR", "OF1", "macro_F1", "micro_F1", "exact_match",
        "skipped_classes"}


# ----------------------------------------------------------------------------- helpers

def random_problem(n: int, c: int, seed: int, *, unknown: float = 0.0, pos: float = 0.3,
                   ties: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Random float32 logits and int8 labels in {-1, 1} (or {-1, 0, 1} with `unknown` > 0)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g) * 2
    if ties:
        logits = torch.round(logits * 10) / 10  # scores on a 0.1 grid: many tied scores
    y = torch.where(torch.rand(n, c, generator=g) < pos, 1, -1).to(torch.int8)
    if unknown > 0:
        y[torch.rand(n, c, generator=g) < unknown] = 0
    return logits, y


def sklearn_ap_per_class(logits: torch.Tensor, y: torch.Tensor) -> list[float]:
    """sklearn AP (percent) of each class on its known entries, NaN without a known positive."""
    out = []
    for c in range(y.shape[1]):
        known = y[:, c] != 0
        truth = (y[known, c] == 1).numpy()
        if truth.sum() == 0:
            out.append(math.nan)
        else:
            out.append(100 * average_precision_score(truth, logits[known, c].double().numpy()))
    return out


def assert_ap_close(ours: torch.Tensor, expected: list[float]) -> None:
    torch.testing.assert_close(ours, torch.tensor(expected, dtype=torch.float64),
                               rtol=0, atol=1e-9, equal_nan=True)


def voc07_reference(scores: list[float], labels: list[int]) -> float:
    """Literal transcription of the VOC-07 11-point AP for one class (fraction, not percent).

    Precision and recall are measured at every distinct score s (an image is "retrieved"
    when its score >= s); for each recall level t = 0, 0.1, ..., 1 take the largest precision
    whose recall is >= t (0 if none), and average the 11 numbers.
    """
    num_pos = sum(1 for label in labels if label == 1)
    precisions, recalls = [], []
    for s in sorted(set(scores), reverse=True):
        tp = sum(1 for x, label in zip(scores, labels) if x >= s and label == 1)
        fp = sum(1 for x, label in zip(scores, labels) if x >= s and label == -1)
        precisions.append(tp / (tp + fp))
        recalls.append(tp / num_pos)
    ap = 0.0
    for k in range(11):
        t = k / 10
        candidates = [p for p, r in zip(precisions, recalls) if r >= t]
        ap += (max(candidates) if candidates else 0.0) / 11
    return ap


def sigmoid_predictions(logits: torch.Tensor, threshold: float) -> np.ndarray:
    """Independent prediction rule in numpy: predicted iff 1 / (1 + exp(-x)) >= threshold."""
    x = logits.double().numpy()
    return (1.0 / (1.0 + np.exp(-x)) >= threshold).astype(int)


# ----------------------------------------------------------------------------- AP vs sklearn

@pytest.mark.parametrize("n,c,seed", [(10, 3, 0), (57, 8, 1), (200, 20, 2), (3, 5, 3), (500, 4, 4)])
def test_ap_matches_sklearn_random(n: int, c: int, seed: int) -> None:
    logits, y = random_problem(n, c, seed)
    assert_ap_close(metrics.average_precision(logits, y), sklearn_ap_per_class(logits, y))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ap_matches_sklearn_with_heavy_ties(seed: int) -> None:
    logits, y = random_problem(300, 10, seed, ties=True)
    assert torch.unique(logits[:, 0]).numel() < 100  # the test really has ties
    assert_ap_close(metrics.average_precision(logits, y), sklearn_ap_per_class(logits, y))
    # Coarser still: only 3 distinct scores per class.
    coarse = torch.clamp(torch.round(logits), -1, 1)
    assert_ap_close(metrics.average_precision(coarse, y), sklearn_ap_per_class(coarse, y))


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True), (2, False), (3, True)])
def test_ap_matches_sklearn_on_known_subset(seed: int, ties: bool) -> None:
    logits, y = random_problem(150, 12, seed, unknown=0.5, ties=ties)
    ours = metrics.average_precision(logits, y)
    assert_ap_close(ours, sklearn_ap_per_class(logits, y))
    # Unknown entries must not matter at all, whatever their scores.
    moved = torch.where(y == 0, torch.full_like(logits, 50.0), logits)
    assert_ap_close(metrics.average_precision(moved, y), sklearn_ap_per_class(logits, y))


def test_ap_hand_worked_with_ties() -> None:
    # Ranking 0.9 | 0.5 0.5 | 0.1 with labels + | + - | +: three thresholds, each adding one
    # positive (recall steps of 1/3) at precisions 1/1, 2/3, 3/4.
    # AP = (1 + 2/3 + 3/4) / 3 = 29/36 = 80.555...%
    logits = torch.tensor([[0.9], [0.5], [0.5], [0.1]])
    y = torch.tensor([[1], [1], [-1], [1]], dtype=torch.int8)
    assert metrics.average_precision(logits, y).item() == pytest.approx(100 * 29 / 36, abs=1e-12)
    # The order of the tied pair must not matter.
    y_swapped = torch.tensor([[1], [-1], [1], [1]], dtype=torch.int8)
    assert metrics.average_precision(logits, y_swapped).item() == pytest.approx(100 * 29 / 36, abs=1e-12)


def test_class_without_positive_is_nan_and_skipped() -> None:
    logits, y = random_problem(40, 5, 7)
    y[:, 2] = -1
    ap = metrics.average_precision(logits, y)
    assert torch.isnan(ap[2]) and not torch.isnan(ap[[0, 1, 3, 4]]).any()
    m_ap, skipped = metrics.mean_average_precision(logits, y)
    assert skipped == 1
    assert m_ap == pytest.approx(float(ap[[0, 1, 3, 4]].mean()), abs=1e-12)
    result = metrics.evaluate(logits, y)
    assert result["skipped_classes"] == 1 and result["mAP"] == pytest.approx(m_ap, abs=1e-12)


def test_all_unknown_column_is_nan_and_skipped() -> None:
    logits, y = random_problem(30, 4, 8)
    y[:, 1] = 0
    ap = metrics.average_precision(logits, y)
    assert torch.isnan(ap[1])
    assert_ap_close(ap, sklearn_ap_per_class(logits, y))
    assert metrics.mean_average_precision(logits, y)[1] == 1
    # Positives hidden as unknown are also "no known positive".
    y2 = y.clone()
    y2[:, 3] = torch.where(y[:, 3] == 1, 0, y[:, 3]).to(torch.int8)
    assert metrics.mean_average_precision(logits, y2)[1] == 2


def test_single_image() -> None:
    logits = torch.tensor([[0.3, -1.0, 2.0]])
    y = torch.tensor([[1, -1, 0]], dtype=torch.int8)
    ap = metrics.average_precision(logits, y)
    assert ap[0].item() == 100.0 and torch.isnan(ap[1]) and torch.isnan(ap[2])
    assert metrics.mean_average_precision(logits, y) == (100.0, 2)
    result = metrics.evaluate(logits, y)
    # sigmoid(0.3) >= 0.5 predicted and positive; sigmoid(-1) < 0.5 not predicted and negative.
    assert result["exact_match"] == 100.0 and result["OF1"] == 100.0 and result["CP"] == pytest.approx(100 / 3)


def test_all_classes_skipped_gives_nan_map() -> None:
    logits = torch.randn(5, 3)
    y = -torch.ones(5, 3, dtype=torch.int8)
    m_ap, skipped = metrics.mean_average_precision(logits, y)
    assert math.isnan(m_ap) and skipped == 3
    assert metrics.evaluate(logits, y)["CR"] == 0.0


def test_ap_in_percent_and_returned_as_float64_cpu() -> None:
    logits, y = random_problem(20, 3, 9)
    ap = metrics.average_precision(logits, y)
    assert ap.shape == (3,) and ap.dtype == torch.float64 and ap.device.type == "cpu"
    assert ((ap >= 0) & (ap <= 100)).all() and ap.max() > 1  # percent, not a fraction


# ----------------------------------------------------------------------------- AP vs torchmetrics

@pytest.mark.parametrize("n,c,seed", [(64, 6, 0), (250, 15, 1)])
def test_ap_matches_torchmetrics(n: int, c: int, seed: int) -> None:
    logits, y = random_problem(n, c, seed, pos=0.4)
    assert (y == 1).any(dim=0).all()  # torchmetrics has no "skip": every class needs a positive
    reference = MultilabelAveragePrecision(num_labels=c, average=None, thresholds=None)
    expected = reference(torch.sigmoid(logits.double()), (y == 1).long())  # fractions in [0, 1]
    # torchmetrics accumulates in float32, hence a float32-sized tolerance (percent units).
    torch.testing.assert_close(metrics.average_precision(logits, y), 100 * expected.double(),
                               rtol=1e-6, atol=1e-4)


# ----------------------------------------------------------------------------- VOC-07

@pytest.mark.parametrize("seed,unknown,ties", [(0, 0.0, False), (1, 0.0, True), (2, 0.4, False),
                                               (3, 0.4, True), (4, 0.0, False)])
def test_voc07_matches_literal_transcription(seed: int, unknown: float, ties: bool) -> None:
    logits, y = random_problem(60, 6, seed, unknown=unknown, ties=ties)
    ours = metrics.average_precision(logits, y, voc07=True)
    expected = []
    for c in range(6):
        known = y[:, c] != 0
        labels = y[known, c].tolist()
        if 1 not in labels:
            expected.append(math.nan)
        else:
            expected.append(100 * voc07_reference(logits[known, c].double().tolist(), labels))
    assert_ap_close(ours, expected)


def test_voc07_hand_worked() -> None:
    # Ranked labels + - + - +  (P = 3). Precision / recall after each image:
    #   1/1, 1/3 | 1/2, 1/3 | 2/3, 2/3 | 2/4, 2/3 | 3/5, 3/3
    # t = 0, .1, .2, .3 : best precision with recall >= t is 1      -> 4 x 1   = 4
    # t = .4, .5, .6    : recall >= t at ranks 3-5, best 2/3         -> 3 x 2/3 = 2
    # t = .7, .8, .9, 1 : only rank 5 (recall 1), precision 3/5      -> 4 x 3/5 = 2.4
    # VOC-07 AP = 8.4 / 11 = 76.3636...%; the non-interpolated AP is (1 + 2/3 + 3/5)/3 = 34/45.
    logits = torch.tensor([[0.9], [0.8], [0.7], [0.6], [0.5]])
    y = torch.tensor([[1], [-1], [1], [-1], [1]], dtype=torch.int8)
    assert metrics.average_precision(logits, y, voc07=True).item() == pytest.approx(100 * 8.4 / 11, abs=1e-12)
    assert metrics.average_precision(logits, y).item() == pytest.approx(100 * 34 / 45, abs=1e-12)
    m_ap, skipped = metrics.mean_average_precision(logits, y, voc07=True)
    assert m_ap == pytest.approx(100 * 8.4 / 11, abs=1e-12) and skipped == 0
    assert metrics.evaluate(logits, y, voc07=True)["mAP"] == pytest.approx(100 * 8.4 / 11, abs=1e-12)


def test_voc07_recall_level_exactly_reached() -> None:
    # 10 positives; the 3rd positive reaches recall exactly 0.3 at precision 3/3 = 1, then a
    # run of negatives. Level t = 0.3 must count that point (recall 0.3 >= 0.3).
    labels = [1, 1, 1] + [-1] * 7 + [1] * 7
    logits = torch.tensor([[float(len(labels) - i)] for i in range(len(labels))])
    y = torch.tensor([[label] for label in labels], dtype=torch.int8)
    # levels 0..0.3 -> 1; levels 0.4..1 -> best precision at recall >= t: the k-th later
    # positive (k = 4..10) has precision k / (k + 7), non-decreasing, so the best is 10/17.
    expected = (4 * 1 + 7 * (10 / 17)) / 11
    assert metrics.average_precision(logits, y, voc07=True).item() == pytest.approx(100 * expected, abs=1e-12)
    assert voc07_reference(logits[:, 0].tolist(), labels) == pytest.approx(expected, abs=1e-12)


# ----------------------------------------------------------------------------- threshold metrics

@pytest.mark.parametrize("n,c,seed,threshold", [(80, 7, 0, 0.5), (200, 15, 1, 0.3),
                                                (30, 4, 2, 0.8), (120, 10, 3, 0.5)])
def test_threshold_metrics_match_sklearn_without_unknowns(n: int, c: int, seed: int, threshold: float) -> None:
    logits, y = random_problem(n, c, seed, pos=0.25)
    y[:, 0] = -1  # one class without positives: counted in CP / macro_F1, not in CR
    truth = (y == 1).numpy().astype(int)
    pred = sigmoid_predictions(logits, threshold)
    result = metrics.evaluate(logits, y, threshold=threshold)
    with_pos = [k for k in range(c) if truth[:, k].any()]
    cp = precision_score(truth, pred, average="macro", zero_division=0)
    cr = recall_score(truth, pred, average="macro", labels=with_pos, zero_division=0)
    expected = {
        "CP": cp, "CR": cr, "CF1": 2 * cp * cr / (cp + cr) if cp + cr else 0.0,
        "OP": precision_score(truth, pred, average="micro", zero_division=0),
        "OR": recall_score(truth, pred, average="micro", zero_division=0),
        "OF1": f1_score(truth, pred, average="micro", zero_division=0),
        "macro_F1": f1_score(truth, pred, average="macro", zero_division=0),
        "micro_F1": f1_score(truth, pred, average="micro", zero_division=0),
        "exact_match": accuracy_score(truth, pred),  # subset accuracy on indicator matrices
    }
    for key, value in expected.items():
        assert result[key] == pytest.approx(100 * value, abs=1e-9), key
    assert result["skipped_classes"] == 1


@pytest.mark.parametrize("seed,threshold,top_k", [(0, 0.5, None), (1, 0.4, None), (2, 0.5, 2),
                                                  (3, 0.5, 1), (4, 0.7, None)])
def test_threshold_metrics_match_sklearn_with_unknowns(seed: int, threshold: float, top_k: int | None) -> None:
    n, c = 90, 6
    logits, y = random_problem(n, c, seed, unknown=0.4, pos=0.3)
    y[:, 1] = torch.where(y[:, 1] == 1, -1, y[:, 1]).to(torch.int8)  # no known positive
    y[:3] = 0  # images with no known entry: skipped by exact_match
    if top_k is None:
        pred = sigmoid_predictions(logits, threshold)
    else:
        pred = np.zeros((n, c), dtype=int)
        np.put_along_axis(pred, torch.topk(logits, top_k, dim=1).indices.numpy(), 1, axis=1)
    result = metrics.evaluate(logits, y, threshold=threshold, top_k=top_k)

    yn = y.numpy()
    known, truth = yn != 0, (yn == 1).astype(int)
    p, r, f = [], [], []
    for k in range(c):  # per class, on its known entries only (binary sklearn scores)
        t_k, p_k = truth[known[:, k], k], pred[known[:, k], k]
        p.append(precision_score(t_k, p_k, zero_division=0))
        f.append(f1_score(t_k, p_k, zero_division=0))
        if t_k.any():
            r.append(recall_score(t_k, p_k, zero_division=0))
    cp, cr = np.mean(p), np.mean(r)
    flat_t, flat_p = truth[known], pred[known]  # micro = binary scores on all known entries
    match = [np.array_equal(truth[i, known[i]], pred[i, known[i]]) for i in range(n) if known[i].any()]
    expected = {
        "CP": cp, "CR": cr, "CF1": 2 * cp * cr / (cp + cr) if cp + cr else 0.0,
        "OP": precision_score(flat_t, flat_p, zero_division=0),
        "OR": recall_score(flat_t, flat_p, zero_division=0),
        "OF1": f1_score(flat_t, flat_p, zero_division=0),
        "micro_F1": f1_score(flat_t, flat_p, zero_division=0),
        "macro_F1": np.mean(f),
        "exact_match": np.mean(match),
    }
    for key, value in expected.items():
        assert result[key] == pytest.approx(100 * value, abs=1e-9), key
    assert result["skipped_classes"] == 1


def test_top_k_hand_worked() -> None:
    # 3 images, 5 classes, top_k = 2. Class 4 is negative everywhere and never predicted.
    logits = torch.tensor([[3.0, 1.0, 2.0, 0.0, -5.0],    # predicts {0, 2}
                           [0.0, 1.0, 5.0, 4.0, -5.0],    # predicts {2, 3}
                           [2.0, 3.0, -1.0, 1.0, -5.0]])  # predicts {1, 0}; class 1 is unknown
    y = torch.tensor([[1, -1, 1, -1, -1],
                      [-1, 1, 1, -1, -1],
                      [1, 0, -1, 1, -1]], dtype=torch.int8)
    # Per class (known entries only):   TP FP FN   precision  recall  F1
    #   class 0: img0 TP, img2 TP        2  0  0    1          1       1
    #   class 1: img1 FN (img2 unknown)  0  0  1    0 (none)   0       0
    #   class 2: img0 TP, img1 TP        2  0  0    1          1       1
    #   class 3: img1 FP, img2 FN        0  1  1    0          0       0
    #   class 4: nothing                 0  0  0    0 (none)   -       0
    # CP = 2/5 = 40 (all 5 classes); CR = 2/4 = 50 (4 classes with positives);
    # CF1 = 2*.4*.5/.9 = 4/9; OP = 4/5; OR = 4/6; OF1 = micro_F1 = 8/(8+1+2) = 8/11;
    # macro_F1 = 2/5; exact_match: image 0 right, images 1 and 2 wrong -> 1/3.
    result = metrics.evaluate(logits, y, top_k=2)
    expected = {"CP": 40.0, "CR": 50.0, "CF1": 400 / 9, "OP": 80.0, "OR": 400 / 6,
                "OF1": 800 / 11, "micro_F1": 800 / 11, "macro_F1": 40.0, "exact_match": 100 / 3,
                "skipped_classes": 1}
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-9), key
    # The threshold is ignored with top_k.
    assert metrics.evaluate(logits, y, threshold=0.99, top_k=2) == result


def test_evaluate_returns_plain_python_numbers_and_all_keys() -> None:
    logits, y = random_problem(40, 5, 11, unknown=0.2)
    result = metrics.evaluate(logits, y)
    assert set(result) == KEYS
    assert type(result["skipped_classes"]) is int
    assert all(type(v) is float for k, v in result.items() if k != "skipped_classes")
    assert all(0.0 <= v <= 100.0 for k, v in result.items() if k != "skipped_classes")


def test_threshold_is_inclusive() -> None:
    # sigmoid(0) = 0.5 exactly: predicted at threshold 0.5 ("iff sigmoid(logit) >= threshold").
    logits = torch.tensor([[0.0, -1.0]])
    y = torch.tensor([[1, -1]], dtype=torch.int8)
    assert metrics.evaluate(logits, y, threshold=0.5)["exact_match"] == 100.0


def test_dtype_and_inputs_untouched() -> None:
    logits, y = random_problem(50, 4, 12, unknown=0.3)
    half = logits.to(torch.bfloat16)
    logits_copy, y_copy = half.clone(), y.clone()
    result = metrics.evaluate(half, y)
    assert torch.equal(half, logits_copy) and torch.equal(y, y_copy)
    assert result == metrics.evaluate(half.double(), y)
    # Labels as a wider integer dtype give the same answer.
    assert metrics.evaluate(half, y.long()) == result


# ----------------------------------------------------------------------------- properties

@st.composite
def problems(draw: st.DrawFn, *, allow_unknown: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores on a coarse dyadic grid k/8 (exact in float64, many ties) and labels."""
    n = draw(st.integers(1, 12))
    c = draw(st.integers(1, 5))
    ks = draw(st.lists(st.integers(-40, 40), min_size=n * c, max_size=n * c))
    values = [-1, 0, 1] if allow_unknown else [-1, 1]
    labels = draw(st.lists(st.sampled_from(values), min_size=n * c, max_size=n * c))
    logits = torch.tensor(ks, dtype=torch.float64).reshape(n, c) / 8
    y = torch.tensor(labels, dtype=torch.int8).reshape(n, c)
    if looks_zero_one(y):  # refused by the metrics as a likely present/absent matrix
        y[0, 0] = -1
    return logits, y


@settings(deadline=None, max_examples=50)
@given(problems(), st.sampled_from(["sigmoid", "cubic", "affine"]), st.booleans())
def test_ap_invariant_to_increasing_transforms(problem, transform: str, voc07: bool) -> None:
    logits, y = problem
    # Each transform is strictly increasing *in float64* on the k/8 grid (no new ties).
    moved = {"sigmoid": torch.sigmoid(logits), "cubic": logits ** 3 + 2 * logits,
             "affine": 3 * logits - 7}[transform]
    torch.testing.assert_close(metrics.average_precision(moved, y, voc07=voc07),
                               metrics.average_precision(logits, y, voc07=voc07),
                               rtol=0, atol=1e-9, equal_nan=True)


@settings(deadline=None, max_examples=50)
@given(problems(), st.randoms(use_true_random=False), st.booleans())
def test_ap_invariant_to_permuting_images(problem, rnd, voc07: bool) -> None:
    logits, y = problem
    perm = list(range(logits.shape[0]))
    rnd.shuffle(perm)
    torch.testing.assert_close(metrics.average_precision(logits[perm], y[perm], voc07=voc07),
                               metrics.average_precision(logits, y, voc07=voc07),
                               rtol=0, atol=1e-9, equal_nan=True)


@settings(deadline=None, max_examples=50)
@given(problems(), st.booleans())
def test_perfect_ranking_gives_100(problem, voc07: bool) -> None:
    noise, y = problem
    # Every known positive scores above every negative (noise in [-5, 5], shift by 20).
    logits = noise + 20.0 * (y == 1)
    ap = metrics.average_precision(logits, y, voc07=voc07)
    has_pos = (y == 1).any(dim=0)
    assert torch.equal(torch.isnan(ap), ~has_pos)
    torch.testing.assert_close(ap[has_pos], torch.full_like(ap[has_pos], 100.0), rtol=0, atol=1e-9)


@settings(deadline=None, max_examples=50)
@given(problems(), st.sampled_from([0.1, 0.3, 0.5, 0.7, 0.9]), st.integers(0, 5), st.booleans())
def test_evaluate_properties(problem, threshold: float, top_k: int, voc07: bool) -> None:
    logits, y = problem
    k = None if top_k == 0 or top_k > y.shape[1] else top_k
    result = metrics.evaluate(logits, y, threshold=threshold, top_k=k, voc07=voc07)
    # micro-F1 = 2ΣTP/(2ΣTP+ΣFP+ΣFN) and OF1 = F1 of (OP, OR) are the same number.
    assert result["OF1"] == pytest.approx(result["micro_F1"], abs=1e-9)
    has_pos = bool((y == 1).any())
    if has_pos:
        assert 0.0 <= result["mAP"] <= 100.0 + 1e-9
    else:
        assert math.isnan(result["mAP"]) and result["skipped_classes"] == y.shape[1]
    assert result["skipped_classes"] == int((~(y == 1).any(dim=0)).sum())
    assert all(0.0 <= result[key] <= 100.0 + 1e-9 for key in KEYS - {"mAP", "skipped_classes"})


# ----------------------------------------------------------------------------- errors

def test_error_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="logits and y must have the same shape"):
        metrics.evaluate(torch.randn(3, 4), torch.ones(3, 5, dtype=torch.int8))
    with pytest.raises(ValueError, match=r"y must have shape \(N, C\)"):
        metrics.average_precision(torch.randn(3), torch.ones(3, dtype=torch.int8))


def test_error_bad_label_values() -> None:
    y = torch.tensor([[1, 2], [-1, 0]], dtype=torch.int8)
    with pytest.raises(ValueError, match=r"y must hold values in \{-1, 0, 1\}.*found 2"):
        metrics.average_precision(torch.randn(2, 2), y)
    with pytest.raises(TypeError, match="y must be a torch.Tensor"):
        metrics.evaluate(torch.randn(2, 2), [[1, -1], [1, -1]])


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_error_non_finite_logits(bad: float) -> None:
    logits = torch.randn(4, 3)
    logits[1, 2] = bad
    y = torch.ones(4, 3, dtype=torch.int8)
    with pytest.raises(ValueError, match="logits must be finite; found 1 NaN or inf"):
        metrics.average_precision(logits, y)
    with pytest.raises(ValueError, match="logits must be finite"):
        metrics.evaluate(logits, y)


def test_error_integer_logits() -> None:
    with pytest.raises(TypeError, match="logits must be a floating-point tensor"):
        metrics.evaluate(torch.ones(2, 2, dtype=torch.long), torch.ones(2, 2, dtype=torch.int8))


@pytest.mark.parametrize("threshold,error", [(0.0, ValueError), (1.0, ValueError), (1.5, ValueError),
                                             (-0.2, ValueError), (True, TypeError), ("0.5", TypeError)])
def test_error_bad_threshold(threshold, error) -> None:
    with pytest.raises(error, match=r"threshold must be .*\(0, 1\)"):
        metrics.evaluate(torch.randn(3, 4), torch.ones(3, 4, dtype=torch.int8), threshold=threshold)


@pytest.mark.parametrize("top_k,error", [(0, ValueError), (5, ValueError), (-1, ValueError),
                                         (2.0, TypeError), (True, TypeError)])
def test_error_bad_top_k(top_k, error) -> None:
    with pytest.raises(error, match=r"top_k must be .*\[1, 4\]"):
        metrics.evaluate(torch.randn(3, 4), torch.ones(3, 4, dtype=torch.int8), top_k=top_k)


def test_average_precision_is_the_same_when_classes_are_processed_in_chunks(monkeypatch) -> None:
    """Large inputs are split over classes to bound memory; the split must not change AP."""
    import mlrobust.metrics as m

    g = torch.Generator().manual_seed(3)
    logits = torch.randn(50, 7, generator=g)
    y = (torch.randint(0, 3, (50, 7), generator=g) - 1).to(torch.int8)
    whole = m.average_precision(logits, y)
    monkeypatch.setattr(m, "_AP_CHUNK_ELEMENTS", 50 * 2)  # two classes per chunk
    torch.testing.assert_close(m.average_precision(logits, y), whole, equal_nan=True)
    torch.testing.assert_close(m.average_precision(logits, y, voc07=True),
                               (monkeypatch.undo(), m.average_precision(logits, y, voc07=True))[1], equal_nan=True)


# ----------------------------------------------------------------------- per-class thresholds

def _class_f1(scores: torch.Tensor, labels: torch.Tensor, cut: float) -> float:
    """A literal F1 of one class at the probability cut ``cut`` (known entries only)."""
    pred = [torch.sigmoid(s).item() >= cut for s in scores]
    tp = sum(p and l == 1 for p, l in zip(pred, labels.tolist()))
    fp = sum(p and l == -1 for p, l in zip(pred, labels.tolist()))
    fn = sum(not p and l == 1 for p, l in zip(pred, labels.tolist()))
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def test_f1_thresholds_hand_worked() -> None:
    # class 0, scores ranked 3 > 2 > 1 > 0 with labels + - + -: cut at 3 gives F1 2/3, at 1
    # gives 2·2 / (4 + 1) = 0.8 (best), at 0 gives 4/6; class 1 has no positive: 0.5
    logits = torch.tensor([[3.0, 1.0], [2.0, 0.0], [1.0, -1.0], [0.0, 2.0]], dtype=torch.float64)
    y = torch.tensor([[1, -1], [-1, -1], [1, -1], [-1, -1]], dtype=torch.int8)
    cuts = metrics.f1_thresholds(logits, y)
    assert cuts.dtype == torch.float64 and cuts.shape == (2,)
    assert cuts[0].item() == torch.sigmoid(torch.tensor(1.0, dtype=torch.float64)).item() and cuts[1].item() == 0.5
    r = metrics.evaluate(logits, y, threshold=cuts)
    # class 1 keeps 0.5, so its logits 1, 0 and 2 are three false positives: OP = 2 / 6
    assert abs(r["CR"] - 100.0) < 1e-9 and abs(r["OP"] - 100 * 2 / 6) < 1e-9


@settings(deadline=None, max_examples=60)
@given(problems())
def test_f1_thresholds_reach_the_best_f1_of_every_cut(problem) -> None:
    logits, y = problem
    cuts = metrics.f1_thresholds(logits, y)
    assert ((cuts > 0) & (cuts < 1)).all()
    for c in range(y.shape[1]):
        known = y[:, c] != 0
        scores, labels = logits[known, c], y[known, c]
        if not (labels == 1).any():
            assert cuts[c].item() == 0.5
            continue
        best = max(_class_f1(scores, labels, torch.sigmoid(s).item()) for s in scores)
        assert abs(_class_f1(scores, labels, cuts[c].item()) - best) < 1e-12


def test_bad_per_class_thresholds_are_refused() -> None:
    logits, y = torch.randn(3, 4), torch.ones(3, 4, dtype=torch.int8)
    with pytest.raises(ValueError, match=r"shape \(C,\) = \(4,\), got \(3,\)"):
        metrics.evaluate(logits, y, threshold=torch.full((3,), 0.5))
    with pytest.raises(ValueError, match=r"open interval \(0, 1\).*max 1.0"):
        metrics.evaluate(logits, y, threshold=torch.tensor([0.5, 0.5, 0.5, 1.0]))
