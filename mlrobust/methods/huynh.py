"""Huynh & Elhamifar, "Interactive Multi-Label CNN Learning with Partial Labels", CVPR 2020
(IMCL).

The loss (Eq. 1) is the BCE on the observed labels (Eq. 2) plus a smoothness loss (Eq. 7):
λ_y times the label smoothness ℓ_y (Eq. 5) and λ_f times the feature smoothness ℓ_f (Eq. 6)
over learned image similarities c, c̄ and a learned label graph A. Algorithm 1 alternates,
on every mini-batch, between learning the similarities with the CNN fixed and training the
CNN with the similarities fixed. This module holds:

* :func:`impute_labels` — Eq. 3: observed labels kept, missing ones imputed as 2p - 1
  (rescaled to [y_min, 1] as in §4.3);
* :class:`LabelGraph`, :func:`cooccurrence_graph`, :func:`identity_graph` — the label graph
  A = [a_{j',j}] with the known support Q_j (the k_a most co-occurring labels, §3.1.1) and
  learnable weights; the identity graph is Remark 2's "no label graph";
* :func:`joint_nonnegative_omp` — Algorithm 2, batched over the images of a mini-batch
  (a loop over the sparsity level only);
* :func:`label_smoothness`, :func:`feature_smoothness`, :func:`imcl_loss` — Eq. 5, 6, 1;
* :func:`graph_step` — Algorithm 1, step 6: gradient descent on Eq. 7 over the graph's
  weights;
* the method ``imcl`` (:class:`IMCLMethod`, :class:`IMCLArgs`) and its bench cases;
  ``IMCLMethod(side=...)`` adds §4.6's side information (CUB's species) to the similarity
  learner.

Where the code departs from the paper, or reads what the paper leaves open:

* Eq. 2 as printed, -Σ y log p + (1 - y) log(1 - p) with y in {-1, +1}, is not a
  cross-entropy for y = -1; it is read as the standard BCE with y mapped to {0, 1}, i.e.
  :func:`mlrobust.losses.bce`.
* Scale: Eq. 1 sums over images and Eq. 2 over observed labels. The loss here is Eq. 1
  divided by B·C (batch size times classes), so that with λ_y = λ_f = 0 it *is* the
  package's class-normalised BCE (the paper's "Logistic" baseline, §4.2) and the λs keep
  the paper's meaning (all three terms share the factor).
* Q_j contains j itself (weight 1 before normalisation): Remark 2's identity graph (CUB) is
  the graph with Q_j = {j}, and the released code sets the graph's diagonal to 1. The
  initial weights are the co-occurrence rates a_{j',j} = n(j, j') / n(j) over images where
  both are observed present, normalised to sum to 1 per label (the code normalises too);
  learned weights are kept >= 0 (projected gradient descent), so "removing a connection"
  (Remark 2) is a weight reaching 0.
* Algorithm 2, step 5 tests ⟨r_y, y_s⟩ as printed; the atom of the label part is A y_s,
  and only ⟨r_y, A y_s⟩ > 0 lets a nonnegative coefficient reduce the residual, so that is
  what is tested (with A = I the two are the same). Steps 9-10 are least squares followed
  by clipping at 0, as printed, not nonnegative least squares: a clipped coefficient can
  leave a larger residual than NNLS would (see the tests).
* The dictionary is the mini-batch itself (§3.2: "the similarity graph is learned only for
  images in the current minibatch"); an image never selects itself. The released code
  instead matches each image (batch size 1 on MS-COCO) against a 10,000-image dictionary
  refreshed every 3,000 iterations.
* Similarity learning uses the same forward pass as the CNN step, detached (the CNN is
  "fixed" for it: Algorithm 1, step 4); the paper does not say whether a separate pass is
  made. The graph's gradient descent (step 6) has no step size or step count in the paper:
  ``graph_lr`` and ``graph_steps`` (one plain step per batch by default), on λ_y times the
  mean of ℓ_y over the batch's images (so the step size does not depend on C).
* §4.3's renormalisation of y to [-0.5, 1] is the default (``y_min=-0.5``); ``y_min=-1`` is
  Eq. 3 as printed. §4.2's "λ_c" (CUB, Table 2's text) is read as λ_y.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validate import check_labels
from ..engine import Batch, Hook, Method, Trainer
from ..losses import bce, create_loss
from ..options import Options, check
from .base import BenchCase, MethodContext, register_bench_case, register_method
from .supervised import SupervisedMethod

__all__ = ["LABEL_GRAPHS", "LabelGraph", "cooccurrence_graph", "identity_graph", "impute_labels",
           "pooled_features", "Similarities", "joint_nonnegative_omp", "label_smoothness", "feature_smoothness",
           "imcl_loss", "graph_step", "IMCLMonitor", "IMCLMethod", "IMCLArgs"]

LABEL_GRAPHS = ("learned", "fixed", "none")
"""The label-graph variants of the ablation (Table 4): weights learned by gradient descent,
fixed at their co-occurrence initialisation, or no graph (A = I, Remark 2)."""


# --------------------------------------------------------------------------- the label graph (§3.1.1)


@dataclass
class LabelGraph:
    """The label graph A = [a_{j',j}] of §3.1.1, whose support is known and whose weights
    are learned. Row j holds the labels j' in Q_j (``neighbours``, long (C, K)) and their
    weights a_{j',j} (``weights``, (C, K)); ``mask`` (bool (C, K)) marks the slots that are
    in the support (a label with fewer than K - 1 co-occurring labels has padding slots,
    weight 0). So (A y)_j = Σ_{j' ∈ Q_j} a_{j',j} y_{j'}, Eq. 4 in the vector form of Eq. 5.
    """

    neighbours: Tensor
    weights: Tensor
    mask: Tensor

    def __post_init__(self) -> None:
        if self.neighbours.dim() != 2 or not self.neighbours.shape == self.weights.shape == self.mask.shape:
            raise ValueError(f"neighbours, weights and mask must share a shape (C, K); got "
                             f"{tuple(self.neighbours.shape)}, {tuple(self.weights.shape)}, {tuple(self.mask.shape)}")

    @property
    def num_classes(self) -> int:
        return self.neighbours.shape[0]

    def apply(self, y: Tensor) -> Tensor:
        """A y_i for every row y_i of ``y`` (N, C): (N, C). One fused weighted gather
        (``embedding_bag``: label j sums the K rows of yᵀ it names, weighted), N·C·K work
        and no (N, C, K) intermediate; differentiable in ``y`` and in the weights."""
        if y.dim() != 2 or y.shape[1] != self.num_classes:
            raise ValueError(f"y must have shape (N, {self.num_classes}), got {tuple(y.shape)}")
        if y.shape[0] == 0:
            return y.new_zeros(y.shape)
        return F.embedding_bag(self.neighbours, y.T, per_sample_weights=self.weights.to(y.dtype), mode="sum").T

    def dense(self) -> Tensor:
        """A as a dense (C, C) matrix with A[j, j'] = a_{j',j}, so that A y = y @ A.T."""
        c = self.num_classes
        rows = torch.arange(c, device=self.neighbours.device)[:, None].expand_as(self.neighbours)
        return torch.zeros(c, c, dtype=self.weights.dtype, device=self.weights.device).index_put_(
            (rows, self.neighbours), self.weights * self.mask, accumulate=True)

    def to(self, device: torch.device | str) -> LabelGraph:
        return LabelGraph(self.neighbours.to(device), self.weights.to(device), self.mask.to(device))


def cooccurrence_graph(observed: Tensor, k_a: int) -> LabelGraph:
    """The label graph of §3.1.1 from the observed training labels: each label j is connected
    to itself and to the ``k_a`` labels it co-occurs with most often (ties: the lower index),
    counting the images where both are observed present. A neighbour that never co-occurs
    with j is left out of the support. Initial weights: the co-occurrence rate
    n(j, j') / n(j) (1 for j itself), normalised to sum to 1 over Q_j."""
    check_labels(observed, "observed", zero_means="unknown")
    if isinstance(k_a, bool) or not isinstance(k_a, int) or k_a < 0:
        raise ValueError(f"k_a must be an int >= 0, got {k_a!r}")
    present = (observed == 1).float()
    counts = present.T @ present  # (C, C): images where j and j' are both observed present
    c = counts.shape[0]
    k_a = min(k_a, c - 1)
    others = counts.clone()
    others.fill_diagonal_(-1.0)  # j itself goes first, explicitly
    order = torch.argsort(others, dim=1, descending=True, stable=True)[:, :k_a]
    neighbours = torch.cat([torch.arange(c)[:, None], order], dim=1)
    together = counts.gather(1, neighbours)
    own = counts.diagonal()[:, None]
    mask = together > 0
    mask[:, 0] = True
    rate = torch.where(mask, together / own.clamp(min=1), torch.zeros_like(together))
    rate[:, 0] = 1.0
    return LabelGraph(neighbours, rate / rate.sum(dim=1, keepdim=True), mask)


def identity_graph(num_classes: int) -> LabelGraph:
    """A = I (Q_j = {j}): no label dependencies, Remark 2 (the paper's CUB setting and the
    "label similarity not used" row of Table 4)."""
    return LabelGraph(torch.arange(num_classes)[:, None], torch.ones(num_classes, 1),
                      torch.ones(num_classes, 1, dtype=torch.bool))


# --------------------------------------------------------------------------- labels and features


def impute_labels(logits: Tensor, observed: Tensor, y_min: float = -0.5) -> Tensor:
    """Eq. 3: y_{j,i} = y^o_{j,i} for an observed label, 2 p_{j,i} - 1 for a missing one,
    with p = σ(logit). §4.3 renormalises y from [-1, 1] to [y_min, 1] with y_min = -0.5 "so
    that similarity learning would focus more on positive labels": an absent label is
    ``y_min`` and a missing one y_min + (1 - y_min) p. ``y_min=-1`` is Eq. 3 as printed.
    Gradients flow through the imputed entries only."""
    check_labels(observed, "observed", zero_means="unknown")
    if logits.shape != observed.shape:
        raise ValueError(f"logits and observed must have the same shape; got {tuple(logits.shape)} "
                         f"and {tuple(observed.shape)}")
    if not -1.0 <= y_min < 1.0:
        raise ValueError(f"y_min must be in [-1, 1), got {y_min}")
    x = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    imputed = y_min + (1.0 - y_min) * torch.sigmoid(x)
    known = torch.where(observed == 1, 1.0, y_min).to(x.dtype)
    return torch.where(observed == 0, imputed, known)


def pooled_features(maps: Tensor) -> Tensor:
    """The feature vector f_i of §3 (the layer before the classifier): the backbone's maps
    (B, D, h, w) averaged over positions, as the gap head pools them; (B, D) is kept."""
    x = maps if maps.dtype in (torch.float32, torch.float64) else maps.float()  # bf16 maps under autocast
    if x.dim() == 4:
        return x.mean(dim=(2, 3))
    if x.dim() == 2:
        return x
    raise ValueError(f"features must have shape (B, D, h, w) or (B, D), got {tuple(maps.shape)}")


# --------------------------------------------------------------------------- Algorithm 2


@dataclass
class Similarities:
    """The output of Algorithm 2 for B queries over M dictionary images: ``c[i, i']`` is
    c_{i',i} (the label-smoothness coefficient of image i' for image i), ``c_bar[i, i']`` is
    c̄_{i',i}; ``support[i, t]`` is the atom selected at step t and ``selected[i, t]``
    whether step t selected one (the pursuit of a query stops at its first break)."""

    c: Tensor  # (B, M)
    c_bar: Tensor  # (B, M)
    support: Tensor  # long (B, k)
    selected: Tensor  # bool (B, k)

    @property
    def sizes(self) -> Tensor:
        """|S| of each query: the number of similar images it selected."""
        return self.selected.sum(dim=1)


def _explained(g: Tensor, norm: Tensor) -> Tensor:
    """⟨r, u⟩² / ||u||² of step 4 for every query and atom; 0 for a zero atom."""
    return torch.where(norm > 0, g.square() / norm.clamp(min=torch.finfo(g.dtype).tiny), torch.zeros_like(g))


def _refit(gram: Tensor, b: Tensor, support: Tensor, selected: Tensor) -> Tensor:
    """Steps 9-10 for both parts at once: max(0, least squares) on each query's support, from
    the dictionary's Gram matrices ``gram`` (P, M, M) and the query-atom products ``b``
    (P, B, M), P = 2 (labels, features). The normal equations G c = b on the selected slots,
    by Cholesky with a ridge of 10·t·eps of the largest diagonal entry (so duplicate images
    share their weight instead of failing; in float64 it equals least squares to ~1e-12).
    Unselected slots get 0. Returns (P, B, t)."""
    t = support.shape[1]
    eye = torch.eye(t, dtype=gram.dtype, device=gram.device)
    pair = selected[:, :, None] & selected[:, None, :]
    g = torch.where(pair, gram[:, support[:, :, None], support[:, None, :]], eye)  # padding: identity, c = 0
    rhs = torch.where(selected, b.gather(2, support.expand(len(b), -1, -1)), 0.0)
    diag = torch.where(selected, g.diagonal(dim1=2, dim2=3), 0.0).amax(dim=2)
    ridge = 10.0 * t * torch.finfo(gram.dtype).eps * diag + torch.finfo(gram.dtype).tiny
    chol, _ = torch.linalg.cholesky_ex(g + ridge[:, :, None, None] * eye)  # no host sync, unlike cholesky
    return torch.cholesky_solve(rhs[..., None], chol)[..., 0].clamp(min=0) * selected


def _check_omp_inputs(y: Tensor, f: Tensor, atoms_y: Tensor, atoms_f: Tensor, k: int,
                      lambda_y: float, lambda_f: float, exclude: Tensor | None) -> None:
    if y.dim() != 2 or atoms_y.dim() != 2 or y.shape[1] != atoms_y.shape[1]:
        raise ValueError(f"y (B, C) and atoms_y (M, C) must share C; got {tuple(y.shape)} and {tuple(atoms_y.shape)}")
    if f.dim() != 2 or atoms_f.dim() != 2 or f.shape[1] != atoms_f.shape[1]:
        raise ValueError(f"f (B, D) and atoms_f (M, D) must share D; got {tuple(f.shape)} and {tuple(atoms_f.shape)}")
    if f.shape[0] != y.shape[0] or atoms_f.shape[0] != atoms_y.shape[0]:
        raise ValueError(f"labels and features must describe the same images: y {tuple(y.shape)}, f {tuple(f.shape)}, "
                         f"atoms_y {tuple(atoms_y.shape)}, atoms_f {tuple(atoms_f.shape)}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k (the number of similar images) must be an int >= 1, got {k!r}")
    for name, lam in (("lambda_y", lambda_y), ("lambda_f", lambda_f)):
        if not (math.isfinite(lam) and lam >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {lam}")
    if exclude is not None and (exclude.dtype != torch.bool or exclude.shape != (y.shape[0], atoms_y.shape[0])):
        raise ValueError(f"exclude must be a bool tensor of shape {(y.shape[0], atoms_y.shape[0])}, "
                         f"got {exclude.dtype} {tuple(exclude.shape)}")


@torch.no_grad()
def joint_nonnegative_omp(y: Tensor, f: Tensor, atoms_y: Tensor, atoms_f: Tensor, k: int,
                          lambda_y: float = 1.0, lambda_f: float = 0.5,
                          exclude: Tensor | None = None) -> Similarities:
    """Algorithm 2 (Joint Nonnegative OMP) for B query images at once, with tanh(x) ≈ x.

    Args:
        y, f: the queries' label vectors y_i (B, C) and features f_i (B, D).
        atoms_y, atoms_f: the dictionary's label atoms A y_{i'} (M, C) and features f_{i'}
            (M, D); for the mini-batch, the batch itself.
        k: the most similar images per query (Eq. 8).
        lambda_y, lambda_f: the weights of the label and feature terms (Eq. 7).
        exclude: bool (B, M), atoms a query may not select (itself, in a mini-batch).

    For each query, with residuals r_y = y_i, r_f = f_i and S = ∅, k times:
    step 4 picks s = argmax λ_y ⟨r_y, A y_s⟩²/||A y_s||² + λ_f ⟨r_f, f_s⟩²/||f_s||² over atoms
    not in S; step 5 stops the query if ⟨r_y, A y_s⟩ <= 0 or ⟨r_f, f_s⟩ <= 0 (a correlation
    below 1000·eps·||x_i||·||u_s|| counts as 0: round-off); steps 9-10 refit c and c̄ on S by
    least squares clipped at 0; steps 11-12 update the residuals.

    Everything runs on the Gram matrices (Batch-OMP): the residual correlations are
    ⟨r, u_m⟩ = ⟨x_i, u_m⟩ - Σ_{s∈S} c_s ⟨u_s, u_m⟩, so no residual vector is formed; a
    query that stopped keeps its coefficients while the others go on. No host sync.
    """
    _check_omp_inputs(y, f, atoms_y, atoms_f, k, lambda_y, lambda_f, exclude)
    dtype = torch.promote_types(torch.promote_types(y.dtype, f.dtype), torch.float32)
    y, f, atoms_y, atoms_f = (t.to(dtype) for t in (y, f, atoms_y, atoms_f))
    # the label part (y, A y) and the feature part (f, f) run side by side on a leading axis of 2
    gram = torch.stack([atoms_y @ atoms_y.T, atoms_f @ atoms_f.T])  # (2, M, M)
    b = torch.stack([y @ atoms_y.T, f @ atoms_f.T])  # (2, B, M): ⟨x_i, u_m⟩
    norm = gram.diagonal(dim1=1, dim2=2)[:, None, :]  # (2, 1, M): ||u_m||²
    lam = torch.tensor([lambda_y, lambda_f], dtype=dtype, device=y.device)[:, None, None]
    # step 5's "<= 0", with round-off counted as 0: a refit that fits exactly leaves correlations of
    # ~eps·||x||·||u||, not 0, and a duplicate image must not pass the test on that noise
    queries = torch.stack([y.square().sum(dim=1), f.square().sum(dim=1)])[:, :, None]
    floor = (queries * norm).sqrt() * (1e3 * torch.finfo(dtype).eps)
    n, m = b.shape[1:]
    rows = torch.arange(n, device=y.device)
    blocked = exclude.clone() if exclude is not None else torch.zeros(n, m, dtype=torch.bool, device=y.device)
    active = torch.ones(n, dtype=torch.bool, device=y.device)
    support = torch.zeros(n, k, dtype=torch.long, device=y.device)
    selected = torch.zeros(n, k, dtype=torch.bool, device=y.device)
    coef = torch.zeros(2, n, k, dtype=dtype, device=y.device)
    g = b  # ⟨r, u_m⟩ for both parts, every query and atom
    for t in range(min(k, m)):  # the sparsity level: the only loop
        score = (lam * _explained(g, norm)).sum(dim=0)
        best, s = score.masked_fill(blocked, -math.inf).max(dim=1)  # step 4
        positive = (g[:, rows, s] > floor[:, rows, s]).all(dim=0)
        active = active & torch.isfinite(best) & positive  # step 5
        support[:, t], selected[:, t] = s, active
        blocked[rows, s] |= active  # step 8: S <- S ∪ {s}
        sup = support[:, :t + 1]
        refit = _refit(gram, b, sup, selected[:, :t + 1])  # steps 9-10
        coef[:, :, :t + 1] = torch.where(active[:, None], refit, coef[:, :, :t + 1])
        g = b - (coef[:, :, :t + 1, None] * gram[:, sup]).sum(dim=2)  # steps 11-12
    dense = torch.zeros(2, n, m, dtype=dtype, device=y.device)
    if m > 0:  # an empty dictionary has nothing to select
        dense = dense.scatter_add(2, support.expand(2, -1, -1), coef * selected)
    return Similarities(dense[0], dense[1], support, selected)


# --------------------------------------------------------------------------- the loss (Eq. 1, 5-7)


def label_smoothness(y: Tensor, atoms_y: Tensor, c: Tensor) -> Tensor:
    """Eq. 5 for each query i: ℓ_y^(i) = ||y_i - tanh(Σ_{i'} c_{i',i} A y_{i'})||², (B,).
    ``atoms_y`` (M, C) holds A y_{i'}, ``c`` (B, M) holds c_{i',i} in row i."""
    return (y - torch.tanh(c @ atoms_y)).square().sum(dim=1)


def feature_smoothness(f: Tensor, atoms_f: Tensor, c_bar: Tensor) -> Tensor:
    """Eq. 6 for each query i: ℓ_f^(i) = ||f_i - Σ_{i'} c̄_{i',i} f_{i'}||², (B,)."""
    return (f - c_bar @ atoms_f).square().sum(dim=1)


def imcl_loss(logits: Tensor, observed: Tensor, smooth_y: Tensor, smooth_f: Tensor, lambda_y: float,
              lambda_f: float) -> Tensor:
    """Eq. 1 with Eq. 2 and Eq. 7 at the learned similarities, over a batch of B images and
    C classes, divided by B·C:

        (1 / (B C)) Σ_i [ L_c^(i) + λ_y ℓ_y^(i) + λ_f ℓ_f^(i) ]
        = bce(logits, observed) + (λ_y Σ_i ℓ_y^(i) + λ_f Σ_i ℓ_f^(i)) / (B C),

    so λ_y = λ_f = 0 gives the class-normalised BCE (:func:`mlrobust.losses.bce`)."""
    n, c = logits.shape
    penalty = lambda_y * smooth_y.sum() + lambda_f * smooth_f.sum()
    return bce(logits, observed) + penalty / max(n * c, 1)


def graph_step(graph: LabelGraph, y: Tensor, c: Tensor, lambda_y: float, lr: float, steps: int = 1) -> LabelGraph:
    """Algorithm 1, step 6: gradient descent on Eq. 7 over the weights a_{j',j} with the
    labels ``y`` (B, C; the dictionary is the batch) and similarities ``c`` (B, B) fixed.
    The objective is λ_y mean_i ℓ_y^(i) (Eq. 5, tanh kept); the mean over images (not over
    labels) makes ``lr`` independent of the number of classes. Each step is projected onto
    a_{j',j} >= 0 on the support. Returns a new graph; ``graph`` is not modified."""
    y, c = y.detach(), c.detach()
    w = graph.weights.detach()
    with torch.enable_grad(), torch.autocast(y.device.type, enabled=False):
        for _ in range(steps):
            w = w.clone().requires_grad_(True)
            objective = lambda_y * label_smoothness(y, replace(graph, weights=w).apply(y), c).mean()
            (grad,) = torch.autograd.grad(objective, w)
            w = ((w - lr * grad).clamp(min=0) * graph.mask).detach()
    return replace(graph, weights=w)


# --------------------------------------------------------------------------- the method


class IMCLMonitor(Hook):
    """Per-epoch measurements of the similarity learner, added to the history as
    ``imcl_*``: the mean ℓ_y and ℓ_f per image, the mean number of similar images selected,
    the relative change of the graph weights from their initialisation, and (when the
    benchmark's ground truth ``truth`` is known) the share of selected pairs whose true
    label sets share a positive. Summed on the device, read once per epoch."""

    def __init__(self, method: IMCLMethod, truth: Tensor | None = None) -> None:
        self.method, self.truth = method, truth
        self._sums: Tensor | None = None

    def on_fit_start(self, trainer: Trainer) -> None:
        side = self.method.side
        if side is not None and len(side) != len(trainer.train_set):
            raise ValueError(f"side has {len(side)} rows but the training set has {len(trainer.train_set)} images")
        epochs = trainer.config.epochs
        if self.method.logistic_epochs >= epochs:  # the run would be the Logistic model, under IMCL's name
            raise ValueError(f"logistic_epochs = {self.method.logistic_epochs} leaves none of the run's {epochs} "
                             "epochs to IMCL: give it fewer BCE-only epochs or the run more epochs")

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self._sums = None

    @torch.no_grad()
    def add(self, sims: Similarities, smooth_y: Tensor, smooth_f: Tensor, index: Tensor | None) -> None:
        shared = smooth_y.new_zeros(())
        if self.truth is not None and index is not None:
            if self.truth.device != smooth_y.device:
                self.truth = self.truth.to(smooth_y.device)
            pos = self.truth[index.to(smooth_y.device)] == 1
            shared = ((pos[:, None, :] & pos[sims.support]).any(dim=2) & sims.selected).sum()
        row = torch.stack([smooth_y.sum(), smooth_f.sum(), sims.selected.sum().to(smooth_y.dtype),
                           shared.to(smooth_y.dtype), smooth_y.new_tensor(float(len(smooth_y)))])
        self._sums = row if self._sums is None else self._sums + row

    def on_epoch_end(self, trainer: Trainer, epoch: int, record: dict[str, float]) -> None:
        if self._sums is None:  # a logistic (warm-up) epoch
            return
        sy, sf, selected, shared, images = self._sums.tolist()
        record.update({"imcl_label_smoothness": sy / images, "imcl_feature_smoothness": sf / images,
                       "imcl_neighbours": selected / images, "imcl_graph_change": self.method.graph_change()})
        if self.truth is not None:
            record["imcl_neighbour_precision"] = shared / selected if selected else math.nan


class IMCLMethod(Method):
    """IMCL (Algorithm 1) on every mini-batch: one forward pass, then

    1. similarity learning with the CNN fixed (on detached outputs): the labels y of Eq. 3
       and the pooled features f give c, c̄ by Joint Nonnegative OMP over the other images
       of the batch (Algorithm 2), then ``graph_steps`` gradient steps on the graph weights
       (step 6; only when ``learn_graph``);
    2. CNN learning with the similarities fixed: the loss of Eq. 1 (:func:`imcl_loss`),
       whose gradient reaches the network through the logits (BCE, imputed labels) and the
       features (ℓ_f), and which the trainer's optimiser steps.

    The first ``logistic_epochs`` epochs train the BCE alone: the paper initialises IMCL with
    the Logistic model (§4.2). ``truth`` only measures (:class:`IMCLMonitor`).

    ``side`` (N, S), one row per training image, is side information for the similarity
    learner (§4.6: CUB's one-hot species label times a, "only used on our smoothness loss
    ℓ_y"): it is appended to each image's label vector y_i and to its atom A y_i in
    Algorithm 2, so images that agree on it are selected together. Its part of ℓ_y does not
    depend on the network, so the loss leaves it out (a constant) and the graph step ignores
    it (the graph acts on the labels only).
    """

    name = "imcl"

    def __init__(self, graph: LabelGraph, *, lambda_y: float = 1.0, lambda_f: float = 0.5, k: int = 5,
                 learn_graph: bool = True, graph_lr: float = 0.01, graph_steps: int = 1, y_min: float = -0.5,
                 logistic_epochs: int = 0, truth: Tensor | None = None, side: Tensor | None = None) -> None:
        # the same checks as a config's method_args, now rather than at the first step
        IMCLArgs(lambda_y=lambda_y, lambda_f=lambda_f, k=k, graph_lr=graph_lr, graph_steps=graph_steps, y_min=y_min,
                 logistic_epochs=logistic_epochs)
        if side is not None and (side.dim() != 2 or not side.is_floating_point() or not bool(side.isfinite().all())):
            raise ValueError(f"side must be a finite float tensor (N, S), one row per training image; got "
                             f"{side.dtype} {tuple(side.shape)}")
        self.side = side
        self.graph, self.initial_weights = graph, graph.weights.clone()
        self.lambda_y, self.lambda_f, self.k = float(lambda_y), float(lambda_f), int(k)
        self.learn_graph, self.graph_lr, self.graph_steps = learn_graph, float(graph_lr), int(graph_steps)
        self.y_min, self.logistic_epochs = float(y_min), int(logistic_epochs)
        self.monitor = IMCLMonitor(self, truth)
        self.last: Similarities | None = None  # the latest batch's similarities, for inspection

    def hooks(self) -> list[Hook]:
        return [self.monitor]

    def training_loss(self, trainer: Trainer, batch: Batch) -> tuple[Tensor, Tensor]:
        logits, maps = trainer.model(batch.images, with_features=True)
        if trainer.epoch < self.logistic_epochs:
            return bce(logits, batch.targets), logits
        # the similarity learner and the smoothness terms stay in float32 under bf16 autocast
        with torch.autocast(logits.device.type, enabled=False):
            loss = self.interactive_loss(logits, pooled_features(maps), batch.targets, batch.index)
        return loss, logits

    def interactive_loss(self, logits: Tensor, f: Tensor, observed: Tensor, index: Tensor | None = None) -> Tensor:
        """One round of Algorithm 1 on a batch: similarities and graph step, then Eq. 1."""
        if self.graph.weights.device != logits.device:  # once per run (or resume)
            self.graph = self.graph.to(logits.device)
        y = impute_labels(logits, observed, self.y_min)
        sims = self.similarities(y.detach(), f.detach(), self._side_rows(index, logits.device))
        if self.learn_graph and self.graph_steps > 0:
            self.graph = graph_step(self.graph, y, sims.c, self.lambda_y, self.graph_lr, self.graph_steps)
        smooth_y = label_smoothness(y, self.graph.apply(y), sims.c)
        smooth_f = feature_smoothness(f, f, sims.c_bar)
        self.monitor.add(sims, smooth_y, smooth_f, index)
        self.last = sims
        return imcl_loss(logits, observed, smooth_y, smooth_f, self.lambda_y, self.lambda_f)

    def similarities(self, y: Tensor, f: Tensor, side: Tensor | None = None) -> Similarities:
        """Algorithm 2 over a mini-batch: each image against the others (never itself);
        ``side`` (B, S), the batch's side information, is appended to y and to A y."""
        exclude = torch.eye(len(y), dtype=torch.bool, device=y.device)
        atoms = self.graph.apply(y)
        if side is not None:
            side = side.to(y.dtype)
            y, atoms = torch.cat([y, side], dim=1), torch.cat([atoms, side], dim=1)
        return joint_nonnegative_omp(y, f, atoms, f, self.k, self.lambda_y, self.lambda_f, exclude)

    def _side_rows(self, index: Tensor | None, device: torch.device) -> Tensor | None:
        """The batch's rows of ``side`` (None without side information)."""
        if self.side is None:
            return None
        if index is None:
            raise ValueError("side information needs the batch's image indices (batch.index)")
        if self.side.device != device:  # once per run
            self.side = self.side.to(device)
        return self.side[index.to(device)]

    def graph_change(self) -> float:
        """||a - a_0|| / ||a_0||: how far the graph weights moved from their initialisation."""
        w0 = self.initial_weights.to(self.graph.weights.device)
        return float(torch.linalg.vector_norm(self.graph.weights - w0) / torch.linalg.vector_norm(w0).clamp(min=1e-12))

    def state_dict(self) -> dict[str, Any]:
        return {"graph_weights": self.graph.weights.detach().cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        weights = state["graph_weights"]
        if weights.shape != self.graph.weights.shape:
            raise ValueError(f"checkpoint's graph weights have shape {tuple(weights.shape)}, this run's graph "
                             f"{tuple(self.graph.weights.shape)}")
        self.graph = replace(self.graph, weights=weights.to(self.graph.weights.device))


@dataclass
class IMCLArgs(Options):
    """``method_args`` of ``imcl``. Defaults: the paper's Open Images setting (§4.2:
    λ_y = 1, λ_f = 0.5, k = 5, k_a = 50; MS-COCO used λ_y = λ_f = 0.5, k = 3). ``label_graph``:
    one of :data:`LABEL_GRAPHS`; ``graph_lr`` and ``graph_steps``: the gradient descent on
    the graph weights (the paper gives neither); ``y_min``: the value of an absent label
    (§4.3's -0.5; -1 is Eq. 3 as printed); ``logistic_epochs``: BCE-only epochs first (the
    paper starts from the Logistic model)."""

    section = "method_args"

    lambda_y: float = 1.0
    lambda_f: float = 0.5
    k: int = 5
    k_a: int = 50
    label_graph: str = "learned"
    graph_lr: float = 0.01
    graph_steps: int = 1
    y_min: float = -0.5
    logistic_epochs: int = 0

    def validate(self) -> None:
        check(self.lambda_y >= 0, self.key("lambda_y"), self.lambda_y, ">= 0")
        check(self.lambda_f >= 0, self.key("lambda_f"), self.lambda_f, ">= 0")
        check(self.k >= 1, self.key("k"), self.k, ">= 1")
        check(self.k_a >= 0, self.key("k_a"), self.k_a, ">= 0")
        check(self.label_graph in LABEL_GRAPHS, self.key("label_graph"), self.label_graph,
              f"one of {list(LABEL_GRAPHS)}")
        check(self.graph_lr >= 0, self.key("graph_lr"), self.graph_lr, ">= 0")
        check(self.graph_steps >= 0, self.key("graph_steps"), self.graph_steps, ">= 0")
        check(-1 <= self.y_min < 1, self.key("y_min"), self.y_min, "in [-1, 1)")
        check(self.logistic_epochs >= 0, self.key("logistic_epochs"), self.logistic_epochs, ">= 0")


@register_method("imcl", args=IMCLArgs)
def imcl(ctx: MethodContext, args: IMCLArgs) -> Method:
    """IMCL on the run's observed labels; the label graph is built from them (or is the
    identity, ``label_graph="none"``). Its classification term is Eq. 2's BCE, so the
    config's loss must be plain ``bce``."""
    if ctx.config.loss.name != "bce" or ctx.config.loss.args:
        raise ValueError("imcl's classification loss is the BCE of Eq. 2: set loss.name to 'bce' without "
                         f"loss.args (got {ctx.config.loss.name!r} with {ctx.config.loss.args})")
    num_classes = ctx.observed.shape[1]
    graph = identity_graph(num_classes) if args.label_graph == "none" else cooccurrence_graph(ctx.observed, args.k_a)
    truth = ctx.splits.train.labels
    return IMCLMethod(graph, lambda_y=args.lambda_y, lambda_f=args.lambda_f, k=args.k,
                      learn_graph=args.label_graph == "learned", graph_lr=args.graph_lr, graph_steps=args.graph_steps,
                      y_min=args.y_min, logistic_epochs=args.logistic_epochs,
                      truth=truth if bool((truth != 0).all()) else None)


# --------------------------------------------------------------------------- bench cases

OMP_BENCH_CLASSES = 5000  # Open Images' trainable classes (§4.1)
OMP_BENCH_DIM = 2048  # ResNet-101's pooled features, the paper's network
OMP_BENCH_K_A = 50  # §4.2


def _bench_graph(num_classes: int, k_a: int = OMP_BENCH_K_A, seed: int = 0) -> LabelGraph:
    """A label graph of the paper's width for timing: each label, itself and k_a random
    neighbours (the cost does not depend on which), uniform weights."""
    k_a = min(k_a, num_classes - 1)
    g = torch.Generator().manual_seed(seed)
    others = torch.randint(0, num_classes, (num_classes, k_a), generator=g)
    neighbours = torch.cat([torch.arange(num_classes)[:, None], others], dim=1)
    return LabelGraph(neighbours, torch.full(neighbours.shape, 1.0 / (k_a + 1)),
                      torch.ones(neighbours.shape, dtype=torch.bool))


def _imcl_case(num_classes: int, batch_size: int) -> Method:
    return IMCLMethod(_bench_graph(num_classes))


def _omp_step(trainer: Trainer) -> Callable[[], None]:
    """Similarity learning for one batch of the trainer's batch size at 5,000 classes with
    2048-d features, timed: the label atoms A y (k_a = 50) and Joint Nonnegative OMP (k = 5)
    over the batch, on the trainer's device; no network pass."""
    g = torch.Generator().manual_seed(0)
    b = trainer.config.batch_size
    method = IMCLMethod(_bench_graph(OMP_BENCH_CLASSES).to(trainer.device))
    y = (torch.rand(b, OMP_BENCH_CLASSES, generator=g) * 1.5 - 0.5).to(trainer.device)  # imputed labels in [-0.5, 1]
    f = torch.rand(b, OMP_BENCH_DIM, generator=g).to(trainer.device)  # post-ReLU features are nonnegative

    def step() -> None:
        method.similarities(y, f)

    return step


register_bench_case(BenchCase("imcl", "IMCL (Huynh 2020): BCE + label/feature smoothness, joint NN-OMP (k=5) and "
                              "a label-graph step per batch", _imcl_case))
register_bench_case(BenchCase("imcl_omp", f"IMCL similarity learning alone: A y and joint NN-OMP (k=5) for one batch "
                              f"at {OMP_BENCH_CLASSES:,} classes, {OMP_BENCH_DIM}-d features",
                              lambda c, b: SupervisedMethod(create_loss("bce")), step=_omp_step))
