"""Pene, Ghiassi, Younesian & Chen, "Multi-Label Gold Asymmetric Loss Correction with
Single-Label Regulators" (GALC-SLR), 2021, and its single-label ancestor, the gold loss
correction (GLC) of Hendrycks et al., NeurIPS 2018.

The pipeline (their Fig. 3):

1. a *silver* classifier f is trained with the asymmetric loss (:func:`mlrobust.losses.asl`)
   on the untrusted, noisy set S;
2. a corruption matrix Ĉ (K x K, C_ij ~ "label i flipped into label j") is estimated from
   f's predictions: :func:`glc_corruption` (GLC, from the trusted set G) or
   :func:`galc_slr_corruption` (Algorithm 1, from S and the single-label pool G_S);
3. a *gold* classifier g, from fresh weights, is trained with ASL(g(x), y) on G and
   ASL(Ĉᵀσ(g(x)), ỹ) on S (:class:`GoldCorrectedMethod`).

:func:`pene_split` makes the data split of their §4.1 on any label matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .. import losses
from .._validate import check_fraction, check_labels, make_generator
from ..engine import Batch, Method

__all__ = ["PeneSplit", "pene_split", "single_label_regulators", "glc_corruption", "galc_slr_corruption",
           "corrected_probabilities", "GoldCorrectedMethod", "GalcResult", "galc_pipeline"]


# --------------------------------------------------------------------------- data split


@dataclass
class PeneSplit:
    """Indices into a training set: the single-label pool G_S, the gold set G (trusted
    multi-label images) and the silver set S (the rest, to be corrupted)."""

    single: Tensor
    gold: Tensor
    silver: Tensor
    single_class: Tensor  # the class of each single-label image, aligned with ``single``


def pene_split(y: Tensor, gold_fraction: float, seed: int | torch.Generator,
               single_cap: int | None = None) -> PeneSplit:
    """The split of Pene et al. §4.1 from a fully known label matrix ``y`` (N, K).

    Images with exactly one positive form the single-label pool (optionally at most
    ``single_cap`` per class, drawn at random: their L50 / L10); images without a positive
    are dropped; a random ``gold_fraction`` of the images with two or more labels is the
    gold set, the rest the silver set. The gold and silver sets depend on the seed only, not
    on the cap.
    """
    check_labels(y, "y", allow_unknown=False)
    check_fraction(gold_fraction, "gold_fraction")
    if single_cap is not None and (isinstance(single_cap, bool) or not isinstance(single_cap, int) or single_cap < 1):
        raise ValueError(f"single_cap must be a positive int or None, got {single_cap!r}")
    g = make_generator(seed)
    positives = (y == 1).sum(1)
    single = torch.nonzero(positives == 1)[:, 0]
    multi = torch.nonzero(positives >= 2)[:, 0]
    single_class = (y[single] == 1).int().argmax(1)
    # the gold draw comes first, so a cap on the single-label pool leaves gold and silver as they are
    shuffled = multi[torch.randperm(len(multi), generator=g)]
    n_gold = round(gold_fraction * len(multi))
    if single_cap is not None:
        # random order, then keep the first `single_cap` images of each class
        order = torch.randperm(len(single), generator=g)
        cls = single_class[order]
        by_class = torch.argsort(cls, stable=True)
        rank = torch.empty_like(by_class)
        starts = torch.searchsorted(cls[by_class], cls[by_class])
        rank[by_class] = torch.arange(len(by_class)) - starts
        keep = order[rank < single_cap].sort().values
        single, single_class = single[keep], single_class[keep]
    return PeneSplit(single=single, gold=shuffled[:n_gold].sort().values, silver=shuffled[n_gold:].sort().values,
                     single_class=single_class)


# --------------------------------------------------------------------------- corruption matrices


def _positive(labels: Tensor) -> Tensor:
    """Labels in {0, 1} or {-1, 1} as a float {0, 1} matrix."""
    return (labels == 1).to(torch.float64)


def single_label_regulators(single_softmax_probs: Tensor, single_labels: Tensor, num_classes: int) -> Tensor:
    """Reg (K, K): row k is the mean softmax prediction of the silver classifier over the
    single-label images of class k (Algorithm 1, lines 5-15). A class without a
    single-label image gets a zero row (the algorithm would divide by zero)."""
    if single_softmax_probs.dim() != 2 or single_softmax_probs.shape[1] != num_classes:
        raise ValueError(f"single_softmax_probs must be (M, {num_classes}), got {tuple(single_softmax_probs.shape)}")
    if single_labels.shape != (single_softmax_probs.shape[0],):
        raise ValueError(f"single_labels must be (M,) class indices, got {tuple(single_labels.shape)}")
    probs = single_softmax_probs.to(torch.float64)
    onehot = torch.nn.functional.one_hot(single_labels.long(), num_classes).to(torch.float64)  # (M, K)
    counts = onehot.sum(0)
    return (onehot.T @ probs) / counts.clamp(min=1)[:, None]


def glc_corruption(sig_probs: Tensor, labels: Tensor) -> Tensor:
    """GLC for multi-label (Hendrycks et al. 2018, as Pene et al. compare against): row k is
    the mean silver sigmoid prediction over the trusted images whose label k is present.
    ``sig_probs`` (N, K) and ``labels`` (N, K, {0,1} or {-1,1}) are those of the gold set.
    Rows of classes without a trusted positive are zero."""
    if sig_probs.shape != labels.shape:
        raise ValueError(f"sig_probs and labels must have the same shape, got {tuple(sig_probs.shape)} "
                         f"and {tuple(labels.shape)}")
    y = _positive(labels)
    return (y.T @ sig_probs.to(torch.float64)) / y.sum(0).clamp(min=1)[:, None]


def galc_slr_corruption(sig_probs: Tensor, noisy_labels: Tensor, single_softmax_probs: Tensor,
                        single_labels: Tensor, *, squash: bool = True) -> Tensor:
    """Ĉ (K, K) by Algorithm 1 of Pene et al. 2021, exactly, vectorised.

    Args:
        sig_probs: (N, K) sigmoid predictions of the silver classifier f on the silver set S.
        noisy_labels: (N, K) the silver set's (noisy) labels, in {0, 1} or {-1, 1}.
        single_softmax_probs: (M, K) softmax predictions of f on the single-label pool G_S.
        single_labels: (M,) the class index of each single-label image.
        squash: apply the final sigmoid (line 38); False gives the raw matrix the paper
            plots in its Fig. 4 "for better contrast".

    For each class k, over the silver images i whose (noisy) label k is present, with n_i
    their number of labels and Reg the regulators (:func:`single_label_regulators`):

        Ĉ_k = mean_i [ f_sig(x_i) - sum_{p != k, y_ip = 1} Reg_p + (n_i - 1) Reg_k ]   (lines 19-36)
        Ĉ = sigmoid(Ĉ)                                                                   (line 38)

    Because sum_{p != k} Reg_p = (Y Reg)_i - Reg_k on such an image, the bracket is
    f_sig(x_i) - (Y Reg)_i + n_i Reg_k, so the whole matrix is two matrix products. Note that
    the rows come from the untrusted set, grouped by its noisy labels, as Algorithm 1 is
    written (its §3.2 prose speaks of the trusted set). A class with no silver positive gets
    a zero row before the sigmoid (the algorithm would divide by zero).
    """
    if sig_probs.shape != noisy_labels.shape:
        raise ValueError(f"sig_probs and noisy_labels must have the same shape, got {tuple(sig_probs.shape)} "
                         f"and {tuple(noisy_labels.shape)}")
    k = sig_probs.shape[1]
    reg = single_label_regulators(single_softmax_probs, single_labels, k)
    y = _positive(noisy_labels)  # (N, K)
    n = y.sum(1, keepdim=True)  # labels per image
    per_image = sig_probs.to(torch.float64) - y @ reg  # f_sig(x_i) - sum over all its labels' regulators
    rows = y.T @ per_image + (y.T @ n) * reg  # + n_i Reg_k, summed over the images of row k
    c_hat = rows / y.sum(0).clamp(min=1)[:, None]
    return torch.sigmoid(c_hat) if squash else c_hat


def corrected_probabilities(logits: Tensor, c_hat: Tensor) -> Tensor:
    """Ĉᵀσ(g(x)) for a batch: (B, K) with q_j = sum_i Ĉ_ij σ(x_i), the probability that
    the *noisy* label j is present given the clean probabilities (forward correction)."""
    dtype = torch.promote_types(logits.dtype, torch.float32)
    return torch.sigmoid(logits.to(dtype)) @ c_hat.to(device=logits.device, dtype=dtype)


# --------------------------------------------------------------------------- the gold classifier


class GoldCorrectedMethod(Method):
    """Step 3 of GALC-SLR (and of GLC in the multi-label form): the loss of a batch is

        ASL(g(x), y)              on the gold images (clean labels), plus
        ASL(Ĉᵀσ(g(x)), ỹ)         on the silver images (noisy labels), with probabilities,

    both summed over images and classes (the ASL authors' reduction). ``is_gold`` (N,) marks
    the gold images of the training set.

    Values of Ĉᵀσ(g(x)) outside [0, 1]: with ``correction="clamp"`` (the paper as written)
    :func:`mlrobust.losses.asl` clamps them into [eps, 1 - eps], where their gradient is zero
    — the share of such entries is recorded in :attr:`clamped_share`. ``correction=
    "normalize"`` divides each column of Ĉ by its sum first, so every q_j is a weighted mean
    of probabilities and stays in [0, 1] (the true symmetric C already has unit columns).
    """

    name = "gold_corrected"

    def __init__(self, c_hat: Tensor, is_gold: Tensor, *, correction: str = "clamp",
                 asl_args: dict[str, Any] | None = None) -> None:
        if c_hat.dim() != 2 or c_hat.shape[0] != c_hat.shape[1]:
            raise ValueError(f"c_hat must be a square (K, K) matrix, got {tuple(c_hat.shape)}")
        if correction not in ("clamp", "normalize"):
            raise ValueError(f"correction must be 'clamp' or 'normalize', got {correction!r}")
        c = c_hat.to(torch.float32)
        self.c_hat = c / c.sum(0, keepdim=True).clamp(min=1e-12) if correction == "normalize" else c
        self.is_gold = is_gold.bool()
        self.asl_args = dict(asl_args or {})
        self._outside = torch.zeros(())
        self._entries = torch.zeros(())

    def training_loss(self, trainer: Any, batch: Batch) -> tuple[Tensor, Tensor]:
        logits = trainer.model(batch.images)
        gold = self.is_gold.to(logits.device)[batch.index.to(logits.device)][:, None]
        # masking targets to 0 (ignored by ASL) instead of indexing rows: no device sync
        zero = torch.zeros_like(batch.targets)
        loss_gold = losses.asl(logits, torch.where(gold, batch.targets, zero), **self.asl_args)
        q = corrected_probabilities(logits, self.c_hat)
        outside = ((q < 0) | (q > 1)) & ~gold
        self._outside = self._outside.to(q.device) + outside.sum().detach()
        self._entries = self._entries.to(q.device) + (~gold).sum().detach() * q.shape[1]
        loss_silver = losses.asl(q, torch.where(gold, zero, batch.targets), from_logits=False, **self.asl_args)
        return loss_gold + loss_silver, logits

    @property
    def clamped_share(self) -> float:
        """Share of silver entries whose corrected probability left [0, 1] (zero gradient)."""
        return float(self._outside) / max(float(self._entries), 1.0)


# --------------------------------------------------------------------------- the pipeline


@dataclass
class GalcResult:
    """What the three steps produced: the silver classifier's run, the estimated matrix
    (``c_hat``; ``c_hat_raw`` before GALC-SLR's final sigmoid), the gold classifier's run and
    the share of silver entries whose corrected probability left [0, 1]."""

    silver: Any  # RunResult of f
    c_hat: Tensor
    c_hat_raw: Tensor
    gold: Any  # RunResult of g
    clamped_share: float


@torch.no_grad()
def _probabilities(trainer: Any, dataset: Any) -> tuple[Tensor, Tensor]:
    logits = trainer.predict(dataset)
    return torch.sigmoid(logits), torch.softmax(logits, dim=1)


def galc_pipeline(cfg: Any, train: Any, test: Any, split: PeneSplit, silver_labels: Tensor, *,
                  estimator: str = "galc_slr", c_true: Tensor | None = None, correction: str = "clamp",
                  val: Any = None, write: bool = False, silver_result: Any = None) -> GalcResult:
    """The three steps of Pene et al. (their Fig. 3) with one config for both classifiers.

    1. the silver classifier f: ``cfg`` (its loss should be ASL) on the silver images of
       ``train`` with their noisy ``silver_labels``;
    2. Ĉ: ``estimator`` "galc_slr" (Algorithm 1, from f on the silver set and on the
       single-label pool), "glc" (from f on the gold set) or "true" (``c_true``, the upper
       bound of their Fig. 6b); ``silver_result`` reuses an f already trained by step 1
       (one f serves every estimator);
    3. the gold classifier g from fresh weights — the same initial weights as f, since both
       start from ``cfg.train.seed``, as GLC re-initialises its network — trained with
       :class:`GoldCorrectedMethod` on gold (clean labels) and silver (noisy labels) images.
    """
    from ..data import DataSplits, Subset
    from ..experiments import run_experiment

    if estimator not in ("galc_slr", "glc", "true"):
        raise ValueError(f"estimator must be 'galc_slr', 'glc' or 'true', got {estimator!r}")
    if estimator == "true" and c_true is None:
        raise ValueError("estimator 'true' needs c_true")
    silver_set = Subset(train, split.silver, silver_labels)
    f = silver_result if silver_result is not None else run_experiment(
        cfg, data=DataSplits(train=silver_set, test=test, val=val), train_labels=silver_set.labels, write=write)
    if estimator == "true":
        raw = c_hat = c_true.to(torch.float64)
    elif estimator == "glc":
        sig_gold, _ = _probabilities(f.trainer, Subset(train, split.gold))
        raw = c_hat = glc_corruption(sig_gold, train.labels[split.gold])
    else:
        sig_silver, _ = _probabilities(f.trainer, silver_set)
        _, soft_single = _probabilities(f.trainer, Subset(train, split.single))
        raw = galc_slr_corruption(sig_silver, silver_labels, soft_single, split.single_class, squash=False)
        c_hat = torch.sigmoid(raw)
    index = torch.cat([split.gold, split.silver])
    labels = torch.cat([train.labels[split.gold], silver_labels.to(torch.int8)])
    is_gold = torch.cat([torch.ones(len(split.gold), dtype=torch.bool), torch.zeros(len(split.silver), dtype=torch.bool)])
    method = GoldCorrectedMethod(c_hat, is_gold, correction=correction, asl_args=dict(cfg.loss.args))
    g_cfg = type(cfg).from_dict({**cfg.to_dict(), "name": f"{cfg.name}-gold"})
    g = run_experiment(g_cfg, data=DataSplits(train=Subset(train, index, labels), test=test, val=val),
                       train_labels=labels, method=method, write=write)
    return GalcResult(f, c_hat, raw, g, method.clamped_share)
