"""Evaluation metrics for multi-label classification: mAP and the threshold / top-k metrics.

Every function takes ``logits`` (float tensor (N, C), pre-sigmoid scores, any dtype and device)
and labels ``y`` (tensor (N, C): 1 present, -1 absent, 0 unknown) and reports percent (0-100).
All arithmetic runs on the CPU in float64, so a result does not depend on the device or on the
precision the model was run in. Entries with ``y == 0`` (unknown) are left out of every count:
a metric only ever looks at the labels we know. The definitions are spelled out below.

Why spell the definitions out? Papers and repositories in this field report numbers under the
same names that are computed differently, and the differences are often larger than the gains
a paper claims:

* **Average precision (AP).** Rank the images by their score for one class; each time we pass a
  positive image, note the precision (share of positives among the images ranked so far); AP is
  the mean of those precisions over the positives. This is the *non-interpolated* AP, identical
  to scikit-learn's ``average_precision_score``; tied scores are one threshold (all tied images
  enter the ranking together), exactly as scikit-learn steps over distinct thresholds. The older
  PASCAL VOC-2007 protocol instead averages an *interpolated* precision at the 11 recall levels
  0, 0.1, ..., 1 (the "VOC-07 11-point AP", ``voc07=True``); it is usually a little higher, and
  several repositories report it without saying so.
* **Classes without a positive.** AP is undefined when a class has no positive image (there is
  nothing to find). Some code (e.g. the ASL and SPML repositories) counts such a class as AP 0,
  which lowers mAP for reasons unrelated to the model. We return NaN for that class, leave it
  out of mAP and report how many classes were skipped (``skipped_classes``).
* **CF1.** The per-class ("C") F1 used in the multi-label literature (CP, CR, CF1 tables) is the
  F1 of the *mean* precision and *mean* recall, ``2·CP·CR/(CP+CR)``, not the mean of per-class
  F1 scores. Both are useful, so we report both: ``CF1`` (F1 of means) and ``macro_F1`` (mean of
  per-class F1, as scikit-learn's ``f1_score(average="macro")``).

Threshold metrics predict a label when ``sigmoid(logit) >= threshold``, or, with ``top_k=k``,
predict the k highest-scoring labels of each image (the "top-3" tables of the literature).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from mlrobust._validate import check_labels, check_scores

__all__ = ["average_precision", "mean_average_precision", "evaluate", "f1_thresholds"]

#: The recall levels of the VOC-07 11-point AP: exactly k/10 for k = 0..10. (The VOC devkit
#: iterates over ``np.arange(0, 1.1, 0.1)``, whose 0.3, 0.6 and 0.7 are a hair above k/10, so a
#: recall of exactly 0.3 would not reach "0.3" there; we use the intended levels.)
_VOC07_RECALL_LEVELS = torch.arange(11, dtype=torch.float64) / 10


def _prepare(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Validate the inputs and return (scores float64 CPU, labels int8 CPU), never in place."""
    check_labels(y, "y")
    check_scores(logits, y, "logits", "y")
    scores = logits.detach().to(device="cpu", dtype=torch.float64)
    if not torch.isfinite(scores).all():
        bad = int((~torch.isfinite(scores)).sum())
        raise ValueError(f"logits must be finite; found {bad} NaN or inf value(s) "
                         f"(a diverged model? check the training loss)")
    labels = y.detach().to(device="cpu").to(torch.int8)
    return scores, labels


class _Ranking(NamedTuple):
    """Each class's entries sorted by score: (N, C) tensors in that order, except ``num_pos``
    (C,). ``precision`` and ``recall`` hold at the end of each entry's tie group; precision is
    0 at unknown entries."""

    sorted_scores: Tensor
    is_pos: Tensor
    is_known: Tensor
    precision: Tensor
    recall: Tensor
    num_pos: Tensor


def _ranked_precision_recall(scores: Tensor, labels: Tensor) -> _Ranking:
    """Sort each class's entries by score and compute, at every rank, the precision and
    recall *at the end of that rank's tie group* (a group of equal scores is one threshold)."""
    known = labels != 0
    # Unknown entries stay in the ranking but are never counted: they add nothing to the
    # running counts of known images and positives, and their own precision is set to 0.
    sorted_scores, order = torch.sort(scores, dim=0, descending=True)
    is_pos = torch.gather(labels == 1, 0, order)
    is_known = torch.gather(known, 0, order)

    tp = torch.cumsum(is_pos, dim=0, dtype=torch.float64)        # positives ranked so far
    seen = torch.cumsum(is_known, dim=0, dtype=torch.float64)    # known images ranked so far
    num_pos = tp[-1] if tp.shape[0] > 0 else torch.zeros(scores.shape[1], dtype=torch.float64)

    # Index of the last element of each element's tie group: a group ends where the next score
    # differs (or at the end); a reverse running minimum spreads that index over the group.
    n = scores.shape[0]
    is_group_end = torch.ones_like(is_pos)
    is_group_end[:-1] = sorted_scores[:-1] != sorted_scores[1:]
    rows = torch.arange(n).unsqueeze(1).expand_as(is_pos)
    end_index = torch.where(is_group_end, rows, torch.full_like(rows, n))
    end_index = torch.flip(torch.cummin(torch.flip(end_index, [0]), dim=0).values, [0])

    tp_end = torch.gather(tp, 0, end_index)
    seen_end = torch.gather(seen, 0, end_index)
    precision = torch.where(is_known, tp_end / seen_end.clamp_min(1), torch.zeros_like(tp_end))
    recall = tp_end / num_pos  # NaN / inf columns (no positive) are turned into NaN AP by callers
    return _Ranking(sorted_scores, is_pos, is_known, precision, recall, num_pos)


def average_precision(logits: Tensor, y: Tensor, *, voc07: bool = False) -> Tensor:
    """Average precision of each class, in percent: a tensor of shape (C,).

    For one class, rank the images whose label for that class is known (``y != 0``) from the
    highest score to the lowest. Each positive image contributes the precision (share of
    positives among the images ranked at or above its score); AP is the mean of these
    contributions over the positives. Images with the same score enter the ranking together
    (a tie counts as one threshold). This is the non-interpolated AP and equals
    ``sklearn.metrics.average_precision_score`` on the known entries.

    With ``voc07=True`` the **VOC-07 11-point AP** is returned instead: for each recall level
    t in {0, 0.1, ..., 1}, take the best precision reached at any threshold whose recall is at
    least t (0 if no threshold reaches t), and average the 11 values. Precision and recall are
    measured at each distinct score (ties grouped, as above), over known entries only.

    A class without any known positive has no AP: its entry is NaN.

    Args:
        logits: float tensor (N, C) of pre-sigmoid scores. Only the ranking matters, so
            logits and probabilities give the same AP; we rank logits because a float32
            sigmoid saturates and would create ties that the logits do not have.
        y: tensor (N, C) with 1 present, -1 absent, 0 unknown.
        voc07: return the VOC-07 11-point interpolated AP instead of the non-interpolated AP.
    """
    scores, labels = _prepare(logits, y)
    # classes are independent: process them in chunks so the ~10 (N, chunk) temporaries stay
    # near 1 GB even for Open Images (N ~ 1e5 images, C ~ 5e3 classes)
    chunk = max(1, _AP_CHUNK_ELEMENTS // max(scores.shape[0], 1))
    parts = [_class_ap(s, l, voc07) for s, l in zip(scores.split(chunk, dim=1), labels.split(chunk, dim=1))]
    return torch.cat(parts) if parts else torch.empty(0, dtype=torch.float64)


_AP_CHUNK_ELEMENTS = 2**24


def _class_ap(scores: Tensor, labels: Tensor, voc07: bool) -> Tensor:
    _, is_pos, _, precision, recall, num_pos = _ranked_precision_recall(scores, labels)
    if voc07:
        ap = _voc07_from_curve(precision, recall, num_pos)
    else:
        # Each positive contributes the precision at the end of its tie group, so a group with
        # g positives adds g/P times its precision: sklearn's sum of (R_n - R_{n-1}) * P_n.
        ap = (precision * is_pos).sum(dim=0) / num_pos
    return torch.where(num_pos > 0, ap, torch.full_like(ap, math.nan)) * 100


def _voc07_from_curve(precision: Tensor, recall: Tensor, num_pos: Tensor) -> Tensor:
    """VOC-07 11-point AP (fraction) of each column from the ranked precision / recall."""
    n, c = precision.shape
    if n == 0:
        return torch.zeros(c, dtype=torch.float64)
    # Recall never decreases down the ranking, so "best precision at recall >= t" is the best
    # precision from the first rank reaching t onwards: a suffix maximum, looked up by search.
    best_after = torch.flip(torch.cummax(torch.flip(precision, [0]), dim=0).values, [0])
    recall = torch.nan_to_num(recall, nan=0.0, posinf=0.0)  # columns without positives
    levels = _VOC07_RECALL_LEVELS.expand(c, -1).contiguous()
    first = torch.searchsorted(recall.T.contiguous(), levels)  # (C, 11); n where never reached
    padded = torch.cat([best_after, torch.zeros(1, c, dtype=torch.float64)], dim=0)
    best = torch.gather(padded.T, 1, first)
    return torch.where(num_pos > 0, best.mean(dim=1), torch.zeros_like(num_pos))


def mean_average_precision(logits: Tensor, y: Tensor, *, voc07: bool = False) -> tuple[float, int]:
    """Mean average precision (mAP) in percent, and the number of classes skipped.

    mAP is the mean of :func:`average_precision` over the classes that have at least one known
    positive; a class with no positive has no AP and is left out rather than counted as 0 (some
    repositories count it as 0; see the module docstring). Returns
    ``(mAP, skipped_classes)``; mAP is NaN when every class is skipped.
    ``voc07=True`` averages the VOC-07 11-point AP instead.
    """
    ap = average_precision(logits, y, voc07=voc07)
    valid = ~torch.isnan(ap)
    skipped = int((~valid).sum())
    m_ap = float(ap[valid].mean()) if bool(valid.any()) else math.nan
    return m_ap, skipped


def _check_threshold(threshold: float | Tensor, num_classes: int) -> None:
    if isinstance(threshold, Tensor):
        if threshold.shape != (num_classes,) or not threshold.is_floating_point():
            raise ValueError(f"a per-class threshold must be a float tensor of shape (C,) = ({num_classes},), "
                             f"got {tuple(threshold.shape)} {threshold.dtype}")
        if not bool(((threshold > 0) & (threshold < 1)).all()):
            raise ValueError("every per-class threshold must be in the open interval (0, 1) (a probability "
                             f"cut on sigmoid(logit)), got min {threshold.min().item()}, max {threshold.max().item()}")
        return
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise TypeError(f"threshold must be a number in the open interval (0, 1), got {threshold!r}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in the open interval (0, 1) (a probability cut on "
                         f"sigmoid(logit)), got {threshold}")


def _check_top_k(top_k: int | None, num_classes: int) -> None:
    if top_k is None:
        return
    if isinstance(top_k, bool) or not isinstance(top_k, int):
        raise TypeError(f"top_k must be None or an int in [1, {num_classes}], got {top_k!r}")
    if not 1 <= top_k <= num_classes:
        raise ValueError(f"top_k must be in [1, C] = [1, {num_classes}] (C = number of classes), "
                         f"got {top_k}")


def _predict(scores: Tensor, threshold: float | Tensor, top_k: int | None) -> Tensor:
    """Boolean (N, C) predictions: sigmoid(score) >= threshold (one per class if a tensor),
    or the top_k scores per image."""
    if top_k is None:
        if isinstance(threshold, Tensor):
            threshold = threshold.detach().to(device="cpu", dtype=torch.float64)
        return torch.sigmoid(scores) >= threshold
    # Rank logits, not probabilities: a saturated sigmoid would create ties the logits lack.
    index = torch.topk(scores, top_k, dim=1).indices
    return torch.zeros_like(scores, dtype=torch.bool).scatter_(1, index, True)


def _ratio(num: Tensor, den: Tensor) -> Tensor:
    """num / den, 0 where den == 0 (scikit-learn's ``zero_division=0``)."""
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.zeros_like(num))


def _f1(p: Tensor, r: Tensor) -> Tensor:
    return _ratio(2 * p * r, p + r)


def evaluate(logits: Tensor, y: Tensor, threshold: float | Tensor = 0.5, top_k: int | None = None,
             *, voc07: bool = False) -> dict[str, float]:
    """All evaluation metrics of a multi-label classifier, in percent.

    Labels are predicted when ``sigmoid(logit) >= threshold``; with ``top_k=k`` the k
    highest-scoring labels of each image are predicted instead (ties broken by ``torch.topk``).
    Entries with ``y == 0`` (unknown) are excluded from every count. Per class c, TP, FP and FN
    count the known entries that are predicted and positive, predicted and negative, and missed
    positives. A ratio whose denominator is 0 counts as 0 (scikit-learn's ``zero_division=0``).

    Returns a dict of plain Python numbers:

    * ``mAP``: mean over classes with a known positive of the non-interpolated AP (or the
      VOC-07 11-point AP with ``voc07=True``); see :func:`mean_average_precision`.
    * ``skipped_classes`` (int): classes left out of mAP because they have no known positive.
    * ``CP``: per-class precision TP/(TP+FP), averaged over *all* classes (0 for a class with
      nothing predicted). ``CR``: per-class recall TP/(TP+FN), averaged over the classes *with*
      a known positive (0 if there is none). ``CF1 = 2·CP·CR/(CP+CR)``, the F1 of these means.
    * ``OP``, ``OR``: overall precision ΣTP/Σ(TP+FP) and recall ΣTP/Σ(TP+FN), pooling every
      known entry; ``OF1 = 2·OP·OR/(OP+OR)``.
    * ``macro_F1``: the mean over *all* classes of per-class F1 = 2TP/(2TP+FP+FN), 0 where
      undefined (a class with no positive and nothing predicted counts as 0), exactly
      scikit-learn's ``f1_score(average="macro", zero_division=0)``. Unlike CF1 this is a mean
      of F1 scores, not the F1 of means.
    * ``micro_F1``: 2ΣTP/(2ΣTP+ΣFP+ΣFN) over all known entries. It is mathematically equal to
      OF1 (the F1 of the pooled precision and recall); both keys are kept because the two names
      are both in use, and the tests check the identity.
    * ``exact_match``: share of images whose predicted label set equals the truth on their known
      entries (subset accuracy); images with no known entry are skipped (0 if none is left).

    Args:
        logits: float tensor (N, C) of pre-sigmoid scores, finite.
        y: tensor (N, C) with 1 present, -1 absent, 0 unknown.
        threshold: probability cut in the open interval (0, 1), or a tensor (C,) of one cut
            per class (e.g. :func:`f1_thresholds` on a validation split); ignored when
            ``top_k`` is set.
        top_k: predict the ``top_k`` best labels of each image instead; an int in [1, C].
        voc07: compute mAP with the VOC-07 11-point AP.
    """
    scores, labels = _prepare(logits, y)
    _check_threshold(threshold, scores.shape[1])
    _check_top_k(top_k, scores.shape[1])
    m_ap, skipped = mean_average_precision(scores, labels, voc07=voc07)

    pred = _predict(scores, threshold, top_k)
    pos, neg = labels == 1, labels == -1
    tp = (pred & pos).sum(dim=0, dtype=torch.float64)
    fp = (pred & neg).sum(dim=0, dtype=torch.float64)
    fn = (~pred & pos).sum(dim=0, dtype=torch.float64)

    has_pos = (tp + fn) > 0
    cp = _ratio(tp, tp + fp).mean() if tp.numel() else torch.tensor(0.0, dtype=torch.float64)
    cr = _ratio(tp, tp + fn)[has_pos].mean() if bool(has_pos.any()) else torch.tensor(0.0, dtype=torch.float64)
    op = _ratio(tp.sum(), tp.sum() + fp.sum())
    or_ = _ratio(tp.sum(), tp.sum() + fn.sum())
    macro_f1 = _ratio(2 * tp, 2 * tp + fp + fn).mean() if tp.numel() else torch.tensor(0.0, dtype=torch.float64)
    micro_f1 = _ratio(2 * tp.sum(), 2 * tp.sum() + fp.sum() + fn.sum())

    known = labels != 0
    wrong = ((pred != pos) & known).any(dim=1)
    scored_images = known.any(dim=1)
    exact = _ratio((scored_images & ~wrong).sum(dtype=torch.float64),
                   scored_images.sum(dtype=torch.float64))

    percent = {"CP": cp, "CR": cr, "CF1": _f1(cp, cr), "OP": op, "OR": or_, "OF1": _f1(op, or_),
               "macro_F1": macro_f1, "micro_F1": micro_f1, "exact_match": exact}
    result: dict[str, float] = {"mAP": m_ap}
    result.update({key: float(value) * 100 for key, value in percent.items()})
    result["skipped_classes"] = skipped
    return result


def f1_thresholds(logits: Tensor, y: Tensor) -> Tensor:
    """Per-class probability cuts that maximise each class's F1 on ``(logits, y)`` — chosen on
    a validation split, they make the threshold metrics of :func:`evaluate` compare
    classifiers at their best operating points rather than at 0.5, which a loss that shifts
    the logits (ASL's focusing, a corruption correction) moves arbitrarily.

    For class c the candidates are the class's known scores (a tie group is one cut); the cut
    predicts every score at or above it, F1 = 2·TP / (2·TP + FP + FN), and the largest F1
    wins (the highest cut among equals). A class without a known positive keeps 0.5. Returns
    a float64 tensor (C,) of probabilities, kept inside the open interval (0, 1).
    """
    scores, labels = _prepare(logits, y)
    sorted_scores, _, is_known, precision, recall, num_pos = _ranked_precision_recall(scores, labels)
    f1 = torch.where(is_known & (num_pos > 0), _f1(precision, torch.nan_to_num(recall)),
                     torch.full_like(precision, -1.0))
    best = f1.argmax(dim=0)  # the first (highest) cut reaching the maximum
    cut = torch.sigmoid(sorted_scores.gather(0, best[None])[0]) if scores.shape[0] else torch.zeros(scores.shape[1])
    tiny = torch.finfo(torch.float64).eps
    cut = cut.clamp(tiny, 1 - tiny)
    return torch.where(num_pos > 0, cut, torch.full_like(cut, 0.5))
