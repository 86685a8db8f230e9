"""Wang, Wan, Xiang, Zeng, "Saliency Regularization for Self-Training with Partial
Annotations", ICCV 2023.

Three parts, each where it belongs:

* **BN-BCE** (Eq. 9-10, §4.3) is a loss: :func:`mlrobust.losses.bn_bce`, with both readings
  of its normalisation (per batch, the text; per image, the equation).
* **Saliency regularisation (SR)** (Eq. 1-5) is a pooling of class maps: the ``classmap``
  head with ``pooling: saliency`` (:class:`mlrobust.models.SaliencyPooling`), whose logit is
  a_c + alpha s_c. Training with BN-BCE on those logits is the paper's supervised loss L_s.
* **Consistency regularisation (CR)** (Eq. 7-8, 11-12) is this module's method
  ``consistency``: the unknown labels of each image take pseudo-labels from its weak view at
  threshold tau, and the strong view is trained on them. With the saliency head the
  pseudo-labels come from p-hat (Eq. 8, "CR with SR"); with a plain head from p (Eq. 7,
  "CR without SR").

The paper publishes no code; where it is silent we say what we chose (:class:`ConsistencyMethod`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..data.augment import POLICIES
from ..engine import Batch, Hook, Method, Trainer
from ..losses import create_loss
from ..options import Options, check
from .base import BenchCase, MethodContext, register_bench_case, register_method
from .supervised import SupervisedMethod

__all__ = ["pseudo_labels", "PseudoLabelStats", "ConsistencyArgs", "ConsistencyMethod", "top_k_hits"]


def pseudo_labels(logits: Tensor, observed: Tensor, tau: float = 0.6) -> Tensor:
    """Hard pseudo-labels for the unknown labels (Wang et al. 2023, Eq. 7-8):
    y-hat_c = 1[p_c >= tau] - 1[1 - p_c >= tau] where y_c = 0, and 0 where y_c is known.

    Args:
        logits: (N, C) logits of the weak view (a_c, or a_c + alpha s_c with SR).
        observed: (N, C) observed labels in {-1, 0, 1}.
        tau: the confidence threshold, in [0.5, 1] (below 0.5 a label would be both).

    Returns:
        int8 (N, C) in {-1, 0, 1}: +1 confident present, -1 confident absent, 0 otherwise and
        on every known entry.
    """
    if not 0.5 <= tau <= 1:
        raise ValueError(f"pseudo_labels: tau must be in [0.5, 1], got {tau!r}")
    if logits.shape != observed.shape:
        raise ValueError(f"pseudo_labels: logits {tuple(logits.shape)} and observed labels "
                         f"{tuple(observed.shape)} differ in shape")
    p = torch.sigmoid(logits.detach().float())
    y_hat = (p >= tau).to(torch.int8) - (1 - p >= tau).to(torch.int8)
    return torch.where(observed == 0, y_hat, torch.zeros_like(y_hat))


class PseudoLabelStats:
    """Counts of one epoch's pseudo-labels against the hidden truth (measurement only): for
    the unknown entries, how many were labelled present / absent and how many of those were
    right. Kept on the device, read once per epoch."""

    KEYS = ("pos_pred", "pos_right", "pos_true", "neg_pred", "neg_right", "neg_true", "unknown")

    def __init__(self) -> None:
        self.counts: Tensor | None = None

    def add(self, y_hat: Tensor, observed: Tensor, truth: Tensor) -> None:
        unknown = observed == 0
        pos, neg = y_hat == 1, y_hat == -1
        parts = [pos, pos & (truth == 1), unknown & (truth == 1), neg, neg & (truth == -1),
                 unknown & (truth == -1), unknown]
        counts = torch.stack([part.sum() for part in parts])
        self.counts = counts if self.counts is None else self.counts + counts

    def summary(self) -> dict[str, float]:
        """Precision and recall of the positive and negative pseudo-labels (%), and the share
        of unknown entries labelled at all; NaN where a denominator is 0."""
        if self.counts is None:
            return {}
        c = dict(zip(self.KEYS, self.counts.tolist()))
        ratio = lambda a, b: 100.0 * a / b if b else math.nan  # noqa: E731
        return {"pl_pos_precision": ratio(c["pos_right"], c["pos_pred"]),
                "pl_pos_recall": ratio(c["pos_right"], c["pos_true"]),
                "pl_neg_precision": ratio(c["neg_right"], c["neg_pred"]),
                "pl_neg_recall": ratio(c["neg_right"], c["neg_true"]),
                "pl_coverage": ratio(c["pos_pred"] + c["neg_pred"], c["unknown"])}


class _StatsHook(Hook):
    """Resets the method's pseudo-label counts each epoch and writes them into the history."""

    def __init__(self, method: ConsistencyMethod) -> None:
        self.method = method

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self.method.stats = PseudoLabelStats()

    def on_epoch_end(self, trainer: Trainer, epoch: int, record: dict[str, float]) -> None:
        record.update(self.method.stats.summary())


class ConsistencyMethod(Method):
    """The self-training framework of Wang et al. 2023 (§3.4-3.5, Eq. 12): L = L_s + L_u.

    Per batch, the weak and the strong view of each image go through the network in one
    forward pass (so that batch-norm layers see both, as FixMatch does). L_s is the run's
    loss (BN-BCE) on the weak view's logits and the observed labels (Eq. 10); the weak
    view's detached probabilities give pseudo-labels for the unknown entries (Eq. 8, or Eq. 7
    without SR: the head decides which logits those are); L_u is the same loss on the
    strong view's logits and the pseudo-labels (Eq. 11), normalised by their number.

    With ``pseudo_sr=False`` and a saliency head the pseudo-labels come from the plain GAP
    logit a_c while both losses train a_c + alpha s_c: Table 2's "SR + CR (w/o SR)" row.

    Where the paper is silent: which view L_s uses (the weak one; Fig. 2 feeds "different
    augmentations" to the supervised loss), no warm-up and no weight on L_u (Eq. 12 has
    none), pseudo-labels recomputed every step ("immediate labeling", §4.2). With
    ``strong`` equal to ``weak`` both losses see the same view: the conventional
    pseudo-labelling (the "PL" rows of Table 2).

    Args:
        criterion: the loss of both terms (``bn_bce``).
        tau: the pseudo-label threshold (the paper: 0.6).
        weak, strong: augmentation policies of the two views (:data:`mlrobust.data.POLICIES`).
        pseudo_sr: pseudo-labels from the head's logits (True, Eq. 8 with a saliency head) or
            from the average of its class maps, a_c (False, Eq. 7).
        truth: the hidden training labels, to measure the pseudo-labels (never trained on,
            except by the oracle).
        oracle: a control, not a method: the entries the rule labels get their *true* label
            (same entries, right signs), to separate what CR gains from pseudo-labelling
            from what its errors cost.
    """

    name = "consistency"

    def __init__(self, criterion: Callable[[Tensor, Tensor], Tensor], tau: float = 0.6, weak: str = "weak",
                 strong: str = "strong", pseudo_sr: bool = True, truth: Tensor | None = None,
                 oracle: bool = False) -> None:
        if not 0.5 <= tau <= 1:
            raise ValueError(f"consistency: tau must be in [0.5, 1], got {tau!r}")
        if oracle and truth is None:
            raise ValueError("consistency: the oracle control needs the complete hidden training labels")
        self.criterion, self.tau, self.weak, self.strong = criterion, float(tau), weak, strong
        self.pseudo_sr, self.truth, self.oracle = pseudo_sr, truth, oracle
        self.stats = PseudoLabelStats()

    def hooks(self) -> list[Hook]:
        return [_StatsHook(self)] if self.truth is not None else []

    def _views(self, batch: Batch) -> Tensor:
        weak = batch.view(self.weak)
        if self.strong == self.weak:
            return weak
        return torch.cat([weak, batch.view(self.strong)])

    def training_loss(self, trainer: Trainer, batch: Batch) -> tuple[Tensor, Tensor]:
        n = batch.targets.shape[0]
        if self.pseudo_sr:
            logits = trainer.model(self._views(batch))
            scores = logits[:n]
        else:
            logits, features = trainer.model(self._views(batch), with_features=True)
            with torch.no_grad():  # a_c of Eq. 4: the class maps' average, without the saliency term
                scores = trainer.module.head.maps(features[:n].float()).mean(dim=(2, 3))
        weak = logits[:n]
        strong = logits[n:] if logits.shape[0] > n else weak  # plain pseudo-labelling: one view
        y_hat = pseudo_labels(scores, batch.targets, self.tau)
        if self.truth is not None:
            truth = self.truth[batch.index.cpu()].to(y_hat.device)
            self.stats.add(y_hat, batch.targets, truth)
            if self.oracle:
                y_hat = torch.where(y_hat != 0, truth, y_hat)
        loss_s = self.criterion(weak, batch.targets)
        loss_u = self.criterion(strong, y_hat)
        return loss_s + loss_u, weak


@dataclass
class ConsistencyArgs(Options):
    """``method_args`` of ``consistency``: the threshold ``tau`` (the paper: 0.6), the
    policies of the ``weak`` and ``strong`` views (``strong == weak``: plain pseudo-labelling)
    and whether the pseudo-labels see the saliency term (``pseudo_sr``, see
    :class:`ConsistencyMethod`); ``oracle`` is the control that gives the pseudo-labelled
    entries their hidden true labels."""

    section = "method_args"

    tau: float = 0.6
    weak: str = "weak"
    strong: str = "strong"
    pseudo_sr: bool = True
    oracle: bool = False

    def validate(self) -> None:
        check(0.5 <= self.tau <= 1, self.key("tau"), self.tau, "in [0.5, 1]")
        for key in ("weak", "strong"):
            value = getattr(self, key)
            check(value in POLICIES or value == "none", self.key(key), value,
                  f"an augmentation policy ({', '.join(['none', *POLICIES])})")


@register_method("consistency", args=ConsistencyArgs)
def consistency(ctx: MethodContext, args: ConsistencyArgs) -> Method:
    """Wang et al.'s CR on the run's loss (BN-BCE); SR comes from the head
    (``model.head: classmap`` with ``head_args.pooling: saliency``)."""
    truth = ctx.splits.train.labels
    return ConsistencyMethod(ctx.loss(), args.tau, args.weak, args.strong, args.pseudo_sr,
                             truth=truth if bool((truth != 0).all()) else None, oracle=args.oracle)


# --------------------------------------------------------------------------- where the saliency looks


def top_k_hits(maps: Tensor, obj_class: Tensor, obj_center: Tensor, k: int) -> dict[str, float]:
    """Do the k highest cells of a present class's map A_c fall on that class's objects?

    For every (image, class) pair where the class is present, the k cells of A_c that
    s_c averages (Eq. 3) are compared with the cells holding the centre of an object of
    the class. Returns ``hit`` (% of pairs where at least one of the k cells holds such a
    centre), ``precision`` (% of the k cells that do) and ``chance`` (the hit rate of k
    cells drawn at random, for the same pairs), all in %.

    Args:
        maps: (N, C, h, w) class maps.
        obj_class: (N, S) class of each object slot (-1 empty; >= C a distractor).
        obj_center: (N, S, 2) object centres (x, y) in [0, 1].
        k: cells per map (1 <= k <= h * w).
    """
    n, c, h, w = maps.shape
    if not 1 <= k <= h * w:
        raise ValueError(f"top_k_hits: k must be in [1, {h * w}] for {h} x {w} maps, got {k}")
    col = (obj_center[..., 0] * w).long().clamp(0, w - 1)
    row = (obj_center[..., 1] * h).long().clamp(0, h - 1)
    holds = torch.zeros(n, c + 1, h * w, dtype=torch.bool)  # column c collects empty slots and distractors
    cls = torch.where((obj_class >= 0) & (obj_class < c), obj_class, torch.full_like(obj_class, c))
    holds[torch.arange(n)[:, None].expand_as(cls), cls, row * w + col] = True
    holds = holds[:, :c]
    present = holds.any(-1)  # (N, C)
    top = maps.detach().flatten(2).topk(k, dim=-1).indices.cpu()  # (N, C, k)
    on_object = holds.gather(2, top)[present]  # (pairs, k)
    cells = holds[present].sum(-1).double()  # object cells per pair
    total, free = float(h * w), h * w - holds[present].sum(-1).double()  # cells without such an object
    # P(k random cells all miss) = C(free, k) / C(total, k), 0 when free < k
    lg = torch.lgamma
    log_miss = (lg(free + 1) - lg((free - k).clamp(min=0) + 1) - lg(torch.tensor(total + 1, dtype=torch.float64))
                + lg(torch.tensor(total - k + 1, dtype=torch.float64)))
    miss = torch.where(free >= k, log_miss.exp(), torch.zeros_like(log_miss))
    return {"hit": 100.0 * float(on_object.any(-1).double().mean()),
            "precision": 100.0 * float(on_object.double().mean()),
            "chance": 100.0 * float((1 - miss).mean())}


# --------------------------------------------------------------------------- bench cases

_SALIENCY_HEAD: dict[str, Any] = {"head": "classmap", "pooling": "saliency"}


def _bn_bce(num_classes: int, batch_size: int) -> Method:
    return SupervisedMethod(create_loss("bn_bce"))


def _sr_cr(num_classes: int, batch_size: int) -> Method:
    return ConsistencyMethod(create_loss("bn_bce"))


register_bench_case(BenchCase("bn_bce", "BN-BCE (Wang 2023)", _bn_bce))
register_bench_case(BenchCase("sr", "BN-BCE + SR: saliency pooling of class maps (Wang 2023)", _bn_bce,
                              model_args=_SALIENCY_HEAD))
register_bench_case(BenchCase("sr_cr", "SR + CR (Wang 2023): two views per step, weak + strong, one forward",
                              _sr_cr, model_args=_SALIENCY_HEAD))
