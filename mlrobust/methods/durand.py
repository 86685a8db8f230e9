"""Durand, Mehrasa & Mori, "Learning a Deep ConvNet for Multi-label Classification with
Partial Labels", CVPR 2019: curriculum relabeling. The paper's other parts live where they
plug in: the partial-BCE is :func:`mlrobust.losses.partial_bce`, WELDON pooling is
:class:`mlrobust.models.heads.WeldonPooling` (pooling "weldon"), the label GNN is
:class:`mlrobust.models.gnn.LabelGNN` (``model.gnn_steps``).

* :func:`select_labels` and :class:`CurriculumRelabeling` — Algorithm 1, curriculum labeling
  of missing labels with the five strategies [a]-[e] of section 3.3 (Eq. 8-11).
* :func:`mc_dropout_logits` — T stochastic passes through the head only, for [d] and [e].
* the method ``curriculum`` (:class:`CurriculumArgs`): the config's loss plus relabeling.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .. import labels as label_tools
from .._validate import check_labels
from ..engine import Hook, Method, Trainer
from ..losses import create_loss
from ..models import MultiLabelNet
from ..options import Options, check
from .base import BenchCase, MethodContext, register_bench_case, register_method
from .supervised import SupervisedMethod

__all__ = ["STRATEGIES", "Selection", "select_labels", "mc_dropout_logits",
           "relabel_epochs", "CurriculumRelabeling", "CurriculumArgs"]


# --------------------------------------------------------------------------- relabeling

STRATEGIES = ("threshold", "proportion", "positive", "ensemble", "uncertainty", "all")
"""[a] score threshold, [b] score proportion per mini-batch, [c] positive only, [d] ensemble
score threshold, [e] Bayesian uncertainty, and "all": label every missing label at once
(the paper's "2 steps, no curriculum" baseline)."""


@dataclass
class Selection:
    """Which missing labels a strategy labels, and as what."""

    selected: Tensor  # bool (N, C): v_ic = 1 for a newly labelled pair
    labels: Tensor  # int8 (N, C): the labels, meaningful where selected


def _per_batch_top(strength: Tensor, candidates: Tensor, share: float, batch_size: int) -> Tensor:
    """In consecutive groups of ``batch_size`` images, the ``share`` of candidate pairs with
    the largest strength (strategy [b]); vectorised over the groups."""
    n, c = strength.shape
    pad = (-n) % batch_size
    s = torch.cat([strength, strength.new_full((pad, c), -math.inf)]) if pad else strength
    ok = torch.cat([candidates, candidates.new_zeros((pad, c))]) if pad else candidates
    s = torch.where(ok, s, torch.full_like(s, -math.inf)).reshape(-1, batch_size * c)
    counts = torch.round(share * ok.reshape(-1, batch_size * c).sum(1)).long()  # per group
    order = s.argsort(dim=1, descending=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(s.shape[1]).expand_as(order))
    chosen = rank < counts[:, None]
    return chosen.reshape(-1, c)[:n] & candidates


def select_labels(strategy: str, theta: float, missing: Tensor, scores: Tensor | None = None,
                  samples: Tensor | None = None, batch_size: int = 16) -> Selection:
    """The v-step of Algorithm 1: which missing labels to add, Durand et al. 2019, §3.3.

    Args:
        strategy: one of :data:`STRATEGIES`.
        theta: the strategy's threshold (a logit for [a], [c], [d]; a share in [0, 1] for
            [b]; an uncertainty for [e]; unused for "all").
        missing: bool (N, C), the pairs still unknown.
        scores: logits x (N, C) for [a], [b], [c] and "all".
        samples: logits of T stochastic passes (T, N, C) for [d] (their mean is the ensemble
            score E) and [e] (their variance is the uncertainty U; the label is the sign of
            their mean).
        batch_size: the mini-batch of strategy [b].

    Rules (the label is the sign of the score in every case):
        [a] threshold:    v = 1[x >= θ] + 1[x < -θ]                     (Eq. 8)
        [b] proportion:   the θ share of missing pairs with the largest |x| in each mini-batch
        [c] positive:     v = 1[x >= θ], labels +1 only                    (Eq. 9)
        [d] ensemble:     v = 1[E >= θ] + 1[E < -θ], E the mean of the passes   (Eq. 10)
        [e] uncertainty:  v = 1[U <= θ], U the variance of the passes      (Eq. 11)
        all:              every missing pair
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown relabeling strategy {strategy!r}; valid: {list(STRATEGIES)}")
    if strategy in ("ensemble", "uncertainty"):
        if samples is None or samples.dim() != 3:
            raise ValueError(f"strategy {strategy!r} needs samples of shape (T, N, C) from stochastic passes")
        score = samples.mean(0)
    else:
        if scores is None:
            raise ValueError(f"strategy {strategy!r} needs scores (N, C)")
        score = scores
    if score.shape != missing.shape:
        raise ValueError(f"scores have shape {tuple(score.shape)} but missing has {tuple(missing.shape)}")
    sign = torch.where(score >= 0, 1, -1).to(torch.int8)
    if strategy == "threshold" or strategy == "ensemble":
        chosen = (score >= theta) | (score < -theta)
    elif strategy == "positive":
        chosen = score >= theta
    elif strategy == "proportion":
        if not 0.0 <= theta <= 1.0:
            raise ValueError(f"theta of the proportion strategy must be a share in [0, 1], got {theta}")
        chosen = _per_batch_top(score.abs(), missing, theta, batch_size)
    elif strategy == "uncertainty":
        chosen = samples.var(0, unbiased=False) <= theta
    else:  # "all"
        chosen = torch.ones_like(missing)
    return Selection(selected=chosen & missing, labels=sign)


@torch.no_grad()
def mc_dropout_logits(model: MultiLabelNet, images: Tensor, passes: int) -> Tensor:
    """Logits (T, B, C) of ``passes`` stochastic passes through the model's head with its
    dropout active (Gal & Ghahramani 2016), the backbone run once in eval mode.

    Only dropout layers of ``model.head`` switch to training mode, so BatchNorm statistics
    are untouched; the passes run as one batch of T x B feature maps.
    """
    was_training = model.training
    model.eval()
    features = model.features(images)
    drop = [m for m in model.head.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    if not drop or all(m.p == 0 for m in drop):
        raise ValueError("MC dropout needs a head with dropout > 0 (e.g. model.head_args={'dropout': 0.3})")
    for m in drop:
        m.train()
    try:
        logits = model.classify(features.repeat(passes, *([1] * (features.dim() - 1))))
    finally:
        model.train(was_training)
    return logits.reshape(passes, images.shape[0], -1)


def relabel_epochs(epochs: int, at: Sequence[float] = (0.45, 0.7)) -> list[int]:
    """0-based epochs before which to relabel: the paper relabels before epochs 10 and 15
    of 20 (1-based), i.e. after 45 % and 70 % of training; scaled to ``epochs``."""
    return sorted({min(epochs - 1, max(1, round(a * epochs))) for a in at})


class CurriculumRelabeling(Hook):
    """Algorithm 1 of Durand et al. 2019 as a training hook.

    Before each epoch in ``epochs`` (0-based), score the training images with the current
    model, select easy missing labels with ``strategy`` / ``theta`` (:func:`select_labels`)
    and write them into the trainer's label store; training then continues on the clean and
    the new weak labels. Clean labels never change and a weak label, once added, stays.

    ``truth`` (the benchmark's hidden ground truth) is only used to measure each step:
    the label proportion, and on the newly labelled pairs the true-positive rate
    (sensitivity: true positives labelled +1) and true-negative rate (specificity), as in
    Table 2, plus their precision.
    """

    def __init__(self, strategy: str, theta: float, epochs: Sequence[int], truth: Tensor | None = None,
                 passes: int = 20, batch_size: int = 16, predict_batch_size: int = 256) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown relabeling strategy {strategy!r}; valid: {list(STRATEGIES)}")
        if truth is not None:
            check_labels(truth, "truth", allow_unknown=False)
        self.strategy, self.theta, self.epochs = strategy, float(theta), sorted(int(e) for e in epochs)
        self.truth, self.passes, self.batch_size = truth, passes, batch_size
        self.predict_batch_size = predict_batch_size
        self.steps: list[dict[str, float]] = []

    def _scores(self, trainer: Trainer) -> tuple[Tensor | None, Tensor | None]:
        if self.strategy not in ("ensemble", "uncertainty"):
            return trainer.predict(trainer.train_set, self.predict_batch_size), None
        # (N, T, C) rows from the trainer's inference pass, back to (T, N, C)
        rows = trainer.infer(trainer.train_set, lambda x: mc_dropout_logits(trainer.module, x, self.passes)
                             .transpose(0, 1), self.predict_batch_size)
        return None, rows.transpose(0, 1).contiguous()

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        if epoch not in self.epochs or epoch in [int(s["epoch"]) for s in self.steps]:
            return
        store = trainer.train_labels.cpu()
        missing = store == 0
        scores, samples = self._scores(trainer)
        sel = select_labels(self.strategy, self.theta, missing, scores, samples, self.batch_size)
        new = torch.where(sel.selected, sel.labels, store)
        trainer.set_train_labels(new)
        self.steps.append(self._measure(epoch, sel, new))

    def _measure(self, epoch: int, sel: Selection, new: Tensor) -> dict[str, float]:
        record = {"epoch": float(epoch), "added": float(sel.selected.sum()),
                  "label_proportion": float(label_tools.known_proportion(new).mean())}
        if self.truth is not None:
            t, s, lab = self.truth.cpu(), sel.selected, sel.labels
            pos, neg = s & (t == 1), s & (t == -1)

            def share(num: Tensor, den: Tensor) -> float:
                d = int(den.sum())
                return float(num.sum()) / d if d else math.nan

            record.update({
                "tp_rate": share(pos & (lab == 1), pos),  # sensitivity on the new labels
                "tn_rate": share(neg & (lab == -1), neg),  # specificity on the new labels
                "positive_precision": share(pos & (lab == 1), s & (lab == 1)),
                "accuracy": share(s & (lab == t), s),
            })
        return record

    def on_epoch_end(self, trainer: Trainer, epoch: int, record: dict[str, float]) -> None:
        if self.steps and int(self.steps[-1]["epoch"]) == epoch:
            record.update({f"relabel_{k}": v for k, v in self.steps[-1].items() if k != "epoch"})

    def state_dict(self) -> dict[str, Any]:
        return {"steps": [dict(s) for s in self.steps]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = [dict(s) for s in state["steps"]]


# --------------------------------------------------------------------------- the method


@dataclass
class CurriculumArgs(Options):
    """``method_args`` of the method ``curriculum`` (Algorithm 1): the strategy and its
    θ (:func:`select_labels`), when to relabel (``at``: fractions of training, the paper's
    epochs 10 and 15 of 20), the MC-dropout ``passes`` of [d] and [e], and the mini-batch
    of [b] (default: the training batch)."""

    section = "method_args"

    strategy: str = "uncertainty"
    theta: float = 0.3
    at: list[float] = field(default_factory=lambda: [0.45, 0.7])
    passes: int = 20
    batch_size: int | None = None

    def validate(self) -> None:
        check(self.strategy in STRATEGIES, self.key("strategy"), self.strategy, f"one of {list(STRATEGIES)}")
        check(all(0 < a < 1 for a in self.at), self.key("at"), self.at, "fractions of training in (0, 1)")
        check(self.passes >= 2, self.key("passes"), self.passes, ">= 2")
        check(self.batch_size is None or self.batch_size >= 1, self.key("batch_size"), self.batch_size, ">= 1")


@register_method("curriculum", args=CurriculumArgs)
def curriculum(ctx: MethodContext, args: CurriculumArgs) -> Method:
    """The config's loss plus :class:`CurriculumRelabeling`; the benchmark's hidden truth,
    when the training set has one, measures each relabeling step."""
    truth = ctx.splits.train.labels
    hook = CurriculumRelabeling(args.strategy, args.theta, relabel_epochs(ctx.config.train.epochs, args.at),
                                truth=truth if bool((truth != 0).all()) else None, passes=args.passes,
                                batch_size=args.batch_size or ctx.config.train.batch_size)
    return SupervisedMethod(ctx.loss(), hooks=[hook])


# --------------------------------------------------------------------------- bench cases

MC_PASSES = 20  # the T of the MC-dropout strategies in the bench


def _relabel_step(strategy: str) -> Callable[[Trainer], Callable[[], None]]:
    """A relabeling pass over the trainer's training set, timed as a bench step: the real
    hook's ``on_epoch_start`` (scores or MC-dropout passes, selection, store update), reset
    before each call so that every call does the whole pass again."""

    def make(trainer: Trainer) -> Callable[[], None]:
        hook = CurriculumRelabeling(strategy, 1.0, epochs=[1], passes=MC_PASSES,
                                    predict_batch_size=len(trainer.train_set))
        store = trainer.train_labels

        def step() -> None:
            hook.steps.clear()
            trainer.set_train_labels(store)
            hook.on_epoch_start(trainer, 1)

        return step

    return make


def _bce(num_classes: int, batch_size: int) -> Method:
    return SupervisedMethod(create_loss("bce"))


register_bench_case(BenchCase("partial_bce", "partial-BCE (Durand 2019)",
                              lambda c, b: SupervisedMethod(create_loss("partial_bce"))))
register_bench_case(BenchCase("weldon", "WELDON pooling (classmap head) + BCE", _bce,
                              {"head": "classmap", "pooling": "weldon"}))
register_bench_case(BenchCase("gnn", "label GNN refine (3 steps) + BCE", _bce, {"gnn_steps": 3}))
register_bench_case(BenchCase("relabel_scores", "Durand relabeling [a]-[c]: one eval pass, per image (once per "
                              "relabeling epoch, not per step)", _bce, step=_relabel_step("threshold")))
register_bench_case(BenchCase("relabel_mc", f"Durand relabeling [d]/[e]: MC dropout, T={MC_PASSES} head passes, "
                              "per image (once per relabeling epoch, not per step)", _bce, {"dropout": 0.3},
                              step=_relabel_step("ensemble")))
