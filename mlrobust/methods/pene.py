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

:func:`pene_split` makes the data split of their §4.1 on any label matrix;
:func:`gold_correction` runs steps 1 and 2 and returns the method of step 3, given a way
to train the silver classifier; the method ``gold_correction`` (:class:`GoldCorrectionArgs`)
is the whole pipeline from a config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .. import labels as label_protocols
from .. import losses
from .._validate import check_fraction, check_labels, make_generator
from ..data import LabelledDataset, Subset
from ..engine import Batch, Method, Trainer
from ..options import ConfigError, Options, check
from ..seeding import derive_seed
from .base import BenchCase, MethodContext, register_bench_case, register_method
from .supervised import SupervisedMethod

__all__ = ["PeneSplit", "pene_split", "single_label_regulators", "glc_corruption", "galc_slr_corruption",
           "corrected_probabilities", "GoldCorrectedMethod", "ESTIMATORS", "CorruptionEstimate",
           "estimate_corruption", "gold_training_set", "GoldCorrection", "gold_correction", "GoldCorrectionArgs"]


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
    the gold images of the set it trains on; ``train_index`` and ``train_labels`` (optional)
    say which images of the run's training set that is, with their labels
    (:meth:`training_data`).

    Values of Ĉᵀσ(g(x)) outside [0, 1]: the paper does not say what happens to them. With
    ``correction="clamp"`` they go to :func:`mlrobust.losses.asl` as they are, which reads
    them by its ``prob_clamp`` option (``asl_args``): ``"both"`` (default) clamps them into
    [eps, 1 - eps], where their gradient is zero; ``"authors"`` follows the ASL authors'
    code, which clamps positives from below only. The share of silver entries outside
    [0, 1] is recorded in :attr:`clamped_share`. ``correction="normalize"`` divides each
    column of Ĉ by its sum first, so every q_j is a weighted mean of probabilities and stays
    in [0, 1] (the true symmetric C already has unit columns).
    """

    name = "gold_corrected"

    def __init__(self, c_hat: Tensor, is_gold: Tensor, *, correction: str = "clamp",
                 asl_args: dict[str, Any] | None = None, train_index: Tensor | None = None,
                 train_labels: Tensor | None = None) -> None:
        if c_hat.dim() != 2 or c_hat.shape[0] != c_hat.shape[1]:
            raise ValueError(f"c_hat must be a square (K, K) matrix, got {tuple(c_hat.shape)}")
        if correction not in ("clamp", "normalize"):
            raise ValueError(f"correction must be 'clamp' or 'normalize', got {correction!r}")
        c = c_hat.to(torch.float32)
        self.c_hat = c / c.sum(0, keepdim=True).clamp(min=1e-12) if correction == "normalize" else c
        self.is_gold = is_gold.bool()
        self.asl_args = dict(asl_args or {})
        if (train_index is None) != (train_labels is None):
            raise ValueError("train_index and train_labels go together (the gold and silver images and their labels)")
        self.train_index, self.train_labels = train_index, train_labels
        self._outside = torch.zeros(())
        self._entries = torch.zeros(())

    def training_data(self, dataset: LabelledDataset, labels: Tensor) -> tuple[LabelledDataset, Tensor]:
        """The gold and silver images with their labels, when the method was built with
        them (``train_index``, ``train_labels``); else the run's training set."""
        if self.train_index is None:
            return dataset, labels
        return Subset(dataset, self.train_index, self.train_labels), self.train_labels

    def training_loss(self, trainer: Trainer, batch: Batch) -> tuple[Tensor, Tensor]:
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

ESTIMATORS = ("galc_slr", "glc", "true")
"""Ĉ from Algorithm 1 (GALC-SLR), from GLC (the trusted set), or the true matrix (the
upper bound of their Fig. 6b)."""


@dataclass
class CorruptionEstimate:
    """An estimated corruption matrix ``c_hat`` and ``raw``, the same before GALC-SLR's
    final sigmoid (equal to ``c_hat`` for the other estimators)."""

    c_hat: Tensor
    raw: Tensor


def _probabilities(predict: Callable[[LabelledDataset], Tensor], dataset: LabelledDataset) -> tuple[Tensor, Tensor]:
    logits = predict(dataset)
    return torch.sigmoid(logits), torch.softmax(logits, dim=1)


def estimate_corruption(estimator: str, predict: Callable[[LabelledDataset], Tensor], train: LabelledDataset,
                        split: PeneSplit, silver_labels: Tensor, c_true: Tensor | None = None) -> CorruptionEstimate:
    """Step 2: Ĉ from the silver classifier's logits ``predict(dataset)``: "galc_slr"
    (Algorithm 1, on the silver set with its noisy labels and on the single-label pool),
    "glc" (on the gold set with its clean labels) or "true" (``c_true`` itself)."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if estimator == "true":
        if c_true is None:
            raise ValueError("estimator 'true' needs c_true")
        c = c_true.to(torch.float64)
        return CorruptionEstimate(c, c)
    if estimator == "glc":
        sig_gold, _ = _probabilities(predict, Subset(train, split.gold))
        c = glc_corruption(sig_gold, train.labels[split.gold])
        return CorruptionEstimate(c, c)
    sig_silver, _ = _probabilities(predict, Subset(train, split.silver, silver_labels))
    _, soft_single = _probabilities(predict, Subset(train, split.single))
    raw = galc_slr_corruption(sig_silver, silver_labels, soft_single, split.single_class, squash=False)
    return CorruptionEstimate(torch.sigmoid(raw), raw)


def gold_training_set(train: LabelledDataset, split: PeneSplit, silver_labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The images g trains on — the gold set, then the silver set — as (indices into
    ``train``, their labels: clean for gold, ``silver_labels`` for silver, ``is_gold``)."""
    index = torch.cat([split.gold, split.silver])
    labels = torch.cat([train.labels[split.gold], silver_labels.to(torch.int8)])
    is_gold = torch.cat([torch.ones(len(split.gold), dtype=torch.bool), torch.zeros(len(split.silver), dtype=torch.bool)])
    return index, labels, is_gold


@dataclass
class GoldCorrection:
    """Steps 1 and 2 done: the gold classifier's ``method`` (it trains on the gold and
    silver images of the training set), the ``estimate`` of Ĉ and the ``silver``
    classifier f."""

    method: GoldCorrectedMethod
    estimate: CorruptionEstimate
    silver: Trainer


def gold_correction(fit_silver: Callable[[LabelledDataset], Trainer], train: LabelledDataset, split: PeneSplit,
                    silver_labels: Tensor, *, estimator: str = "galc_slr", c_true: Tensor | None = None,
                    correction: str = "clamp", asl_args: dict[str, Any] | None = None,
                    silver: Trainer | None = None) -> GoldCorrection:
    """Steps 1 and 2 of Pene et al. (their Fig. 3), and the method of step 3.

    1. the silver classifier f: ``fit_silver(dataset)`` trains a fresh model with ASL on the
       silver images of ``train`` with their noisy ``silver_labels`` (the dataset's labels)
       and returns its trainer; pass ``silver`` to reuse an f already trained (one f serves
       every estimator);
    2. Ĉ by ``estimator`` (:func:`estimate_corruption`);
    3. the gold classifier g's :class:`GoldCorrectedMethod`, to be trained from fresh weights
       (as GLC re-initialises its network) on the gold images with their clean labels and the
       silver images with their noisy ones.
    """
    f = silver if silver is not None else fit_silver(Subset(train, split.silver, silver_labels))
    estimate = estimate_corruption(estimator, f.predict, train, split, silver_labels, c_true)
    index, labels, is_gold = gold_training_set(train, split, silver_labels)
    method = GoldCorrectedMethod(estimate.c_hat, is_gold, correction=correction, asl_args=asl_args,
                                 train_index=index, train_labels=labels)
    return GoldCorrection(method, estimate, f)


@dataclass
class GoldCorrectionArgs(Options):
    """``method_args`` of the method ``gold_correction``: the estimator of Ĉ, the share of
    multi-label training images that is trusted (gold), an optional cap on single-label
    images per class (their L50 / L10) and how corrected probabilities outside [0, 1] are
    handled (:class:`GoldCorrectedMethod`)."""

    section = "method_args"

    estimator: str = "galc_slr"
    gold_fraction: float = 0.1
    single_cap: int | None = None
    correction: str = "clamp"

    def validate(self) -> None:
        check(self.estimator in ESTIMATORS, self.key("estimator"), self.estimator, f"one of {list(ESTIMATORS)}")
        check(0 < self.gold_fraction < 1, self.key("gold_fraction"), self.gold_fraction, "in (0, 1)")
        check(self.single_cap is None or self.single_cap >= 1, self.key("single_cap"), self.single_cap, ">= 1")
        check(self.correction in ("clamp", "normalize"), self.key("correction"), self.correction,
              "'clamp' or 'normalize'")


SPLIT_STREAM = 1  # derive_seed(protocol_seed, SPLIT_STREAM): the gold draw, independent of the noise draw


@register_method("gold_correction", args=GoldCorrectionArgs)
def _gold_correction_method(ctx: MethodContext, args: GoldCorrectionArgs) -> Method:
    """GALC-SLR (or GLC, or the true C) from a config: the data protocol corrupts the
    training labels (e.g. ``symmetric_noise``); the gold images, drawn from the multi-label
    images of the training set, get their clean labels back; f is trained with the config's
    loss (ASL in the paper) and training settings."""
    if ctx.fit is None:
        raise ValueError("the method 'gold_correction' trains a silver classifier first: its context needs fit")
    truth = ctx.splits.train.labels
    if not bool((truth != 0).all()):
        raise ConfigError("method 'gold_correction' needs fully labelled training images (its gold set is trusted)")
    data = ctx.config.data
    split = pene_split(truth, args.gold_fraction, seed=derive_seed(data.protocol_seed, SPLIT_STREAM),
                       single_cap=args.single_cap)
    c_true = None
    if args.estimator == "true":
        if data.protocol != "symmetric_noise":
            raise ConfigError("method_args.estimator 'true' needs data.protocol 'symmetric_noise' (its C is known)")
        c_true = label_protocols.symmetric_noise_matrix(truth.shape[1], data.protocol_args["eta"])
    loss = ctx.loss()
    out = gold_correction(lambda ds: ctx.fit(ds, ds.labels, SupervisedMethod(loss)), ctx.splits.train, split,
                          ctx.observed[split.silver], estimator=args.estimator, c_true=c_true,
                          correction=args.correction, asl_args=dict(ctx.config.loss.args))
    return out.method


# --------------------------------------------------------------------------- bench cases


def _asl_on_probabilities(logits: Tensor, y: Tensor) -> Tensor:
    return losses.asl(torch.sigmoid(logits.float()), y, from_logits=False)


def _gold_corrected(num_classes: int, batch_size: int) -> Method:
    """GALC's gold classifier step with a random Ĉ (values do not change the cost) and
    every other image of the batch gold, so both loss terms run."""
    c_hat = torch.rand(num_classes, num_classes, generator=torch.Generator().manual_seed(1))
    return GoldCorrectedMethod(c_hat, torch.arange(batch_size) % 2 == 0)


register_bench_case(BenchCase("asl", "ASL (Ridnik 2021)", lambda c, b: SupervisedMethod(losses.create_loss("asl"))))
register_bench_case(BenchCase("asl_prob", "ASL on probabilities, from_logits=False",
                              lambda c, b: SupervisedMethod(_asl_on_probabilities)))
register_bench_case(BenchCase("galc", "GALC gold-corrected ASL: ASL(Ĉᵀσ(g(x))) on silver + ASL on gold",
                              _gold_corrected))
