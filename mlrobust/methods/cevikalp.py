"""Cevikalp, Benligiray, Gerek, Saribas 2019: semi-supervised robust deep networks for
multi-label classification (RML-CNN, SS-RML-CNN, CNN+RMLC).

The losses are in :mod:`mlrobust.losses` (:func:`~mlrobust.losses.warp`,
:func:`~mlrobust.losses.rml`, :func:`~mlrobust.losses.ramp`); the label corruption of §3.3
is :func:`mlrobust.labels.frequency_corruption`. This module holds what is not a loss:

* :func:`nearest_labelled` and :func:`propagate_labels` — §2.2, Eq. 5: each unlabelled image
  takes the labels of its nearest labelled neighbour in feature space, weighted by the heat
  kernel s_i = exp(-d_i / t);
* :func:`heat_kernel_scale` — the rule for t, which the paper does not give;
* :class:`LabelPropagation` — the hook that redoes the propagation with the current network's
  features every ``refresh_every`` epochs (§2.3: every 20 epochs);
* the methods ``rml`` (alias of the config's loss with per-step ranks), ``ss_rml`` (Eq. 6,
  :class:`SSRMLMethod`) and ``rmlc`` (Eq. 1 *with* the trace term, for fixed features).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .._validate import check_labels
from ..data import Subset
from ..engine import Batch, Hook, Method, Trainer
from ..losses import create_loss, rml
from ..options import Options, check
from .base import BenchCase, MethodContext, register_bench_case, register_method
from .supervised import SupervisedMethod

__all__ = ["nearest_labelled", "heat_kernel_scale", "Propagation", "propagate_labels", "LabelPropagation",
           "SSRMLArgs", "SSRMLMethod", "RMLCArgs", "RMLCMethod", "T_RULES"]

T_RULES = ("median", "code")


# --------------------------------------------------------------------------- propagation (§2.2)


def nearest_labelled(query: Tensor, reference: Tensor, chunk: int = 4096) -> tuple[Tensor, Tensor]:
    """Euclidean distance from each ``query`` row (U, D) to its nearest ``reference`` row
    (L, D), and that row's index: ``(d (U,), index (U,))``.

    Chunked over the queries — ||a||² + ||b||² - 2 a·b by one matrix product per chunk and a
    min on the device — so memory is O(chunk · L), never O(U · L). float64 on the CPU avoids
    the cancellation of the expanded form for near-duplicates; on a GPU float32 is used.
    """
    if query.dim() != 2 or reference.dim() != 2 or query.shape[1] != reference.shape[1]:
        raise ValueError(f"query (U, D) and reference (L, D) must share D; got {tuple(query.shape)} "
                         f"and {tuple(reference.shape)}")
    if reference.shape[0] == 0:
        raise ValueError("nearest_labelled: there is no labelled (reference) image to propagate from")
    dtype = torch.float64 if query.device.type == "cpu" else torch.float32
    ref = reference.to(dtype)
    ref_sq = (ref * ref).sum(dim=1)
    dist, index = [], []
    for part in query.to(dtype).split(chunk):
        sq = (part * part).sum(dim=1, keepdim=True) - 2.0 * part @ ref.T + ref_sq
        best, at = sq.min(dim=1)
        dist.append(best.clamp(min=0).sqrt())
        index.append(at)
    if not dist:
        return query.new_zeros(0), torch.zeros(0, dtype=torch.int64, device=query.device)
    return torch.cat(dist).to(query.dtype), torch.cat(index)


def _check_t(value: object) -> bool:
    """A valid bandwidth rule: a positive finite number or a name in :data:`T_RULES`."""
    if isinstance(value, str):
        return value in T_RULES
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def heat_kernel_scale(d: Tensor, rule: str | float, n_labelled: int, n_total: int) -> float:
    """The bandwidth t of the heat kernel s = exp(-d / t) (Eq. 5), which the paper leaves
    open. ``rule``:

    * ``"median"`` (ours): t = the median nearest-labelled distance, so half the unlabelled
      images get s >= 1/e and the scale follows the feature space as the network trains;
    * ``"code"``: the released code's t = mean(d) · n_unlabelled / n_total;
    * a positive number: that t.
    """
    if not _check_t(rule):
        raise ValueError(f"the heat-kernel scale t must be a positive number or one of {T_RULES}, got {rule!r}")
    if not isinstance(rule, str):
        return float(rule)
    if d.numel() == 0:
        return 1.0
    if rule == "median":
        t = float(d.median())
    else:
        t = float(d.mean()) * (n_total - n_labelled) / max(n_total, 1)
    return t if t > 0 else 1.0  # every unlabelled image is a duplicate of a labelled one


@dataclass
class Propagation:
    """The result of one propagation: the full label matrix (labelled rows unchanged,
    unlabelled rows copied from their neighbour), the per-image weights s_i (1 for labelled
    images, Eq. 6), and for the unlabelled rows (``unlabelled`` indices) the distance, the
    neighbour (an index into the whole set) and the t used."""

    labels: Tensor  # (N, C) int8
    weights: Tensor  # (N,) float32
    unlabelled: Tensor  # (U,) int64
    distance: Tensor  # (U,)
    neighbour: Tensor  # (U,) int64
    t: float


def propagate_labels(features: Tensor, observed: Tensor, t: str | float = "median",
                     chunk: int = 4096) -> Propagation:
    """Cevikalp et al. 2019, §2.2, Eq. 5: every image without a known label (an all-zero row
    of ``observed``) takes the label row of its nearest labelled image in ``features``
    (N, D), with weight s_i = exp(-d_i / t) (``t``: :func:`heat_kernel_scale`); labelled
    images keep their labels and weight 1."""
    check_labels(observed, "observed", zero_means="unknown")
    if features.shape[0] != observed.shape[0]:
        raise ValueError(f"{features.shape[0]} feature rows but {observed.shape[0]} label rows")
    labelled = (observed != 0).any(dim=1)
    lab_idx, unl_idx = labelled.nonzero()[:, 0], (~labelled).nonzero()[:, 0]
    feats = features.to(observed.device)
    d, at = nearest_labelled(feats[unl_idx], feats[lab_idx], chunk)
    scale = heat_kernel_scale(d, t, len(lab_idx), len(observed))
    neighbour = lab_idx[at]
    labels, weights = observed.clone(), torch.ones(len(observed), device=observed.device)
    labels[unl_idx] = observed[neighbour]
    weights[unl_idx] = torch.exp(-d.float() / scale)
    return Propagation(labels, weights, unl_idx, d, neighbour, scale)


class LabelPropagation(Hook):
    """§2.3: before every ``refresh_every``-th epoch (0, refresh_every, ...), the current
    network's pooled features of the training set give new propagated labels and weights
    (:func:`propagate_labels` from the *original* labelled set), written into the trainer's
    label store and the method's weights. The paper refreshes every 20 epochs.

    ``truth`` (the benchmark's hidden labels) only measures each refresh: the share of
    unlabelled images whose propagated row equals the truth (``precision``; for single-label
    data the pseudo-label accuracy), the same share weighted by s_i, and the mean weight.
    """

    def __init__(self, method: "SSRMLMethod", refresh_every: int, truth: Tensor | None = None) -> None:
        self.method, self.refresh_every, self.truth = method, int(refresh_every), truth
        self.refreshes: list[dict[str, float]] = []

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        if epoch % self.refresh_every or epoch in [int(r["epoch"]) for r in self.refreshes]:
            return
        features = trainer.features(trainer.train_set)
        prop = propagate_labels(features, self.method.observed, self.method.t)
        trainer.set_train_labels(prop.labels)
        self.method.weights = prop.weights.to(trainer.device)
        self.refreshes.append(self._measure(epoch, prop))

    def _measure(self, epoch: int, prop: Propagation) -> dict[str, float]:
        w = prop.weights[prop.unlabelled].cpu()
        record = {"epoch": float(epoch), "t": prop.t, "mean_weight": float(w.mean()) if len(w) else math.nan}
        if self.truth is not None and len(w):
            correct = (prop.labels[prop.unlabelled].cpu() == self.truth[prop.unlabelled.cpu()]).all(dim=1).float()
            record["precision"] = float(correct.mean())
            record["weighted_precision"] = float((w * correct).sum() / w.sum().clamp(min=1e-12))
        return record

    def on_epoch_end(self, trainer: Trainer, epoch: int, record: dict[str, float]) -> None:
        if self.refreshes and int(self.refreshes[-1]["epoch"]) == epoch:
            record.update({f"propagation_{k}": v for k, v in self.refreshes[-1].items() if k != "epoch"})

    def state_dict(self) -> dict[str, Any]:
        return {"refreshes": [dict(r) for r in self.refreshes]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.refreshes = [dict(r) for r in state["refreshes"]]


# --------------------------------------------------------------------------- SS-RML (Eq. 6)


class SSRMLMethod(Method):
    """SS-RML-CNN (Cevikalp et al. 2019, Eq. 6 without the trace term): the RML loss over
    labelled and propagated images, each image's terms weighted by s_i, with labels and
    weights refreshed by :class:`LabelPropagation`. ``init_state`` (a state dict of the
    run's network, trained on the labelled images only, as §2.3 initialises it) is loaded
    before the first epoch; ``loss_args`` are :func:`mlrobust.losses.rml`'s options."""

    name = "ss_rml"

    def __init__(self, observed: Tensor, *, refresh_every: int, t: str | float = "median",
                 loss_args: dict[str, Any] | None = None, init_state: dict[str, Tensor] | None = None,
                 truth: Tensor | None = None) -> None:
        check_labels(observed, "observed", zero_means="unknown")
        if not bool((observed != 0).any()):
            raise ValueError("ss_rml needs at least one labelled image to propagate from")
        if not _check_t(t):  # now, not at the first refresh
            raise ValueError(f"the heat-kernel scale t must be a positive number or one of {T_RULES}, got {t!r}")
        self.observed, self.t = observed.cpu(), t
        self.loss_args = dict(loss_args or {})
        create_loss("rml", **self.loss_args)  # reject bad options now
        self.init_state = init_state
        self.weights = torch.ones(len(observed))
        self.propagation = LabelPropagation(self, refresh_every, truth)

    def hooks(self) -> list[Hook]:
        return [_WarmStart(self), self.propagation]

    def training_loss(self, trainer: Trainer, batch: Batch) -> tuple[Tensor, Tensor]:
        logits = trainer.model(batch.images)
        if self.weights.device != logits.device:  # once per run (or resume), not every step
            self.weights = self.weights.to(logits.device)
        weights = self.weights[batch.index.to(logits.device)]
        return rml(logits, batch.targets, weights=weights, **self.loss_args), logits

    def state_dict(self) -> dict[str, Any]:
        return {"weights": self.weights.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.weights = state["weights"]


class _WarmStart(Hook):
    """Loads the method's ``init_state`` into a fresh run's network (not on resume)."""

    def __init__(self, method: SSRMLMethod) -> None:
        self.method = method

    def on_fit_start(self, trainer: Trainer) -> None:
        if trainer.epoch == 0 and self.method.init_state is not None:
            trainer.module.load_state_dict(self.method.init_state)


@dataclass
class SSRMLArgs(Options):
    """``method_args`` of ``ss_rml``: refresh the propagation every ``refresh_every`` epochs
    (the paper: 20), heat-kernel scale ``t`` (:func:`heat_kernel_scale`), and the epochs of
    the warm start trained on the labelled images only (``warm_start_epochs``; 0: none).
    The RML options (s, kappa, beta, rank_rounding) come from ``loss.args``."""

    section = "method_args"

    refresh_every: int = 20
    t: Any = "median"
    warm_start_epochs: int = 0

    def validate(self) -> None:
        check(self.refresh_every >= 1, self.key("refresh_every"), self.refresh_every, ">= 1")
        check(_check_t(self.t), self.key("t"), self.t, f"a positive number or one of {list(T_RULES)}")
        check(self.warm_start_epochs >= 0, self.key("warm_start_epochs"), self.warm_start_epochs, ">= 0")


@register_method("ss_rml", args=SSRMLArgs)
def ss_rml(ctx: MethodContext, args: SSRMLArgs) -> Method:
    """SS-RML-CNN on the run's observed labels (labelled rows plus all-zero unlabelled rows,
    e.g. the ``semi_supervised`` protocol); ``loss.name`` must be ``rml``. With
    ``warm_start_epochs`` > 0 a network is first trained with RML on the labelled images."""
    if ctx.config.loss.name != "rml":
        raise ValueError(f"ss_rml trains with the RML loss: set loss.name to 'rml' (got {ctx.config.loss.name!r})")
    init_state = None
    if args.warm_start_epochs > 0:
        if ctx.fit is None:
            raise ValueError("ss_rml: a warm start needs the run's fit helper")
        keep = (ctx.observed != 0).any(dim=1).nonzero()[:, 0]
        labelled = Subset(ctx.splits.train, keep, ctx.observed[keep])
        warm = ctx.fit(labelled, ctx.observed[keep], SupervisedMethod(ctx.loss()))
        init_state = {k: v.detach().clone() for k, v in warm.module.state_dict().items()}
    truth = ctx.splits.train.labels
    return SSRMLMethod(ctx.observed, refresh_every=args.refresh_every, t=args.t, loss_args=dict(ctx.config.loss.args),
                       init_state=init_state, truth=truth if bool((truth != 0).all()) else None)


# --------------------------------------------------------------------------- RMLC on fixed features


class RMLCMethod(SupervisedMethod):
    """CNN+RMLC (Cevikalp et al. 2019, §3.2): Eq. 1 on fixed features, i.e. the RML loss
    *plus* the trace term (lambda / 2) · trace(WᵀW) of the linear classifier W, which the
    deep version drops in favour of weight decay. Meant for a run on precomputed features
    (``model.backbone="features"``) with ``train.weight_decay`` 0, so that the trace term is
    the only regulariser (for SGD the two are the same update; here it is part of the
    objective, as the paper writes it)."""

    name = "rmlc"

    def __init__(self, lam: float, loss_args: dict[str, Any] | None = None) -> None:
        super().__init__(create_loss("rml", **(loss_args or {})))
        self.lam = float(lam)

    def training_loss(self, trainer: Trainer, batch: Batch) -> tuple[Tensor, Tensor]:
        loss, logits = super().training_loss(trainer, batch)
        head = trainer.module.head  # W (C, D) of the gap head's fc or the class-map head's 1x1 conv
        weight = head.fc.weight if hasattr(head, "fc") else head.classifier.weight
        return loss + 0.5 * self.lam * (weight * weight).sum(), logits


@dataclass
class RMLCArgs(Options):
    """``method_args`` of ``rmlc``: the regularisation weight lambda of Eq. 1."""

    section = "method_args"

    lam: float = 1e-4

    def validate(self) -> None:
        check(math.isfinite(self.lam) and self.lam >= 0, self.key("lam"), self.lam, "a finite number >= 0")


@register_method("rmlc", args=RMLCArgs)
def rmlc(ctx: MethodContext, args: RMLCArgs) -> Method:
    """Eq. 1 with the trace term on the run's observed labels; ``loss.args`` are the RML
    options."""
    if ctx.config.loss.name != "rml":
        raise ValueError(f"rmlc is the RML objective: set loss.name to 'rml' (got {ctx.config.loss.name!r})")
    return RMLCMethod(args.lam, dict(ctx.config.loss.args))


# --------------------------------------------------------------------------- bench cases

PROPAGATION_BENCH_IMAGES = 100_000  # on a GPU
PROPAGATION_BENCH_IMAGES_CPU = 10_000  # 100k take about a minute per refresh on 2 cores: too long for the book's bench
PROPAGATION_BENCH_DIM = 2048  # ResNet-101's pooled features, the paper's network


def _propagation_step(trainer: Trainer) -> Callable[[], None]:
    """One propagation refresh, timed: the nearest labelled neighbour (8 % of the images
    labelled, as in CIFAR-10's split) of every other image among 2048-d features (a
    ResNet-101's), on the trainer's device, at 100k images on a GPU and 10k on a CPU; the
    feature pass itself is not included."""
    n = PROPAGATION_BENCH_IMAGES if trainer.device.type == "cuda" else PROPAGATION_BENCH_IMAGES_CPU
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(n, PROPAGATION_BENCH_DIM, generator=g).to(trainer.device)
    n_lab = n * 8 // 100
    labelled, unlabelled = feats[:n_lab], feats[n_lab:]

    def step() -> None:
        nearest_labelled(unlabelled, labelled)

    return step


def _loss_method(loss: str, **options: Any) -> Callable[[int, int], Method]:
    return lambda num_classes, batch_size: SupervisedMethod(create_loss(loss, **options))


register_bench_case(BenchCase("warp", "WARP (Cevikalp 2019 baseline)", _loss_method("warp")))
register_bench_case(BenchCase("rml", "RML ramp loss (Cevikalp 2019)", _loss_method("rml")))
register_bench_case(BenchCase("propagation", "SS-RML label propagation: one refresh at 100k images on a GPU, "
                              "10k on a CPU (8 % labelled; once per refresh, not per step)", _loss_method("bce"),
                              step=_propagation_step))
