"""Losses for multi-label classification with missing, partial and noisy labels.

Conventions shared by every loss in this module:

* ``y`` is an integer (N, C) label matrix: ``1`` present, ``-1`` absent, ``0`` unknown.
  Unknown entries contribute neither a loss term nor a gradient, unless a loss's option
  says they are treated as negative (``bce(unknown="negative")``).
* Scores are logits (pre-sigmoid) of shape (N, C); :func:`asl` also accepts probabilities
  (``from_logits=False``).
* The papers write their objectives as log-likelihoods (Durand Eq. 1, Wang Eq. 9 carry no
  minus sign); every function here returns the *negative*, a loss to minimise.
* Computation is done in float32 or wider whatever the input dtype: half and bfloat16
  inputs (bf16 autocast on CUDA) are cast up, float64 stays float64. The returned loss is
  a scalar tensor in that dtype.
* The BCE family uses ``F.logsigmoid`` so that logits of +-100 give finite losses and
  gradients.
* Masking uses ``torch.where`` (never "fill the unknowns with sigmoid(x)", which leaves a
  gradient on them, a bug of public partial-label code).
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ._validate import check_fraction, check_labels, check_scores
from .registry import Registry

__all__ = [
    "bce",
    "partial_bce",
    "partial_bce_coefficients",
    "bn_bce",
    "asl",
    "softmax_ce",
    "hinge",
    "ramp",
    "rank_weight",
    "warp_ranks",
    "warp",
    "rml",
    "LOSSES",
    "register_loss",
    "create_loss",
]

Loss = Callable[..., Tensor]
LOSSES: Registry[Loss] = Registry("loss")
"""Losses by name (the config's ``loss.name``): ``loss(logits, y, <options>) -> scalar``.
Aliases fix an option: ``bce_negative`` = ``bce(unknown="negative")`` (assume negative),
``bn_bce_per_image`` = ``bn_bce(per_image=True)``."""
register_loss = LOSSES.register


# --------------------------------------------------------------------------- helpers

def _check_inputs(scores: Tensor, y: Tensor, name: str) -> None:
    # observed labels: 0 is unknown by definition (a positives-only batch is legitimate)
    check_labels(y, "y", zero_means="unknown")
    check_scores(scores, y, name=name, y_name="y")


def _at_least_float32(t: Tensor) -> Tensor:
    """Cast half/bfloat16 up to float32 (bf16 autocast); keep float32/float64 as they are."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _check_number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def _check_bool(value: object, name: str) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")


REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction: object) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(map(repr, REDUCTIONS))}, got {reduction!r}")


def _reduce(per_image: Tensor, loss: Tensor, reduction: str) -> Tensor:
    """``loss`` (the "mean" reduction, computed in the paper's own order of operations) or
    the per-image losses ``per_image`` (N,) whose mean it is, or their sum."""
    if reduction == "mean":
        return loss
    return per_image if reduction == "none" else per_image.sum()


def _known_bce_terms(logits: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
    """Per-entry negative log-likelihood, zero (and gradient-free) where neither mask holds.

    -log sigma(x) for positives, -log(1 - sigma(x)) = -log sigma(-x) for negatives."""
    zero = logits.new_zeros(())
    return -torch.where(pos, F.logsigmoid(logits), torch.where(neg, F.logsigmoid(-logits), zero))


# --------------------------------------------------------------------------- BCE

@register_loss("bce")
def bce(logits: Tensor, y: Tensor, *, unknown: str = "ignore", reduction: str = "mean") -> Tensor:
    """Class-normalised binary cross-entropy, Durand et al. 2019's "standard BCE".

    Paper: Durand, Mehrasa, Mori, "Learning a Deep ConvNet for Multi-label Classification
    with Partial Labels", CVPR 2019, section 3.1, Eq. 1 with g = 1 ("In the standard BCE
    loss, the normalization function is g(p_y) = 1"), averaged over the batch (Eq. 7's 1/N):

        loss = -(1 / (N*C)) * sum_{i,c} [ 1[y_ic=1] log sigma(x_ic) + 1[y_ic=-1] log(1 - sigma(x_ic)) ]

    Args:
        logits: float (N, C) logits.
        y: (N, C) labels in {-1, 0, 1}.
        unknown: ``"ignore"`` drops the y == 0 entries (they still count in the N*C
            denominator, as in the paper: that is exactly the weakness partial-BCE fixes);
            ``"negative"`` treats them as absent ("assume negative").
        reduction: ``"mean"`` (the formula above), ``"none"``: the per-image losses (N,)
            ``-(1/C) sum_c [...]`` whose mean it is, ``"sum"``: their sum.

    Returns:
        Scalar loss in float32 or wider (per-image losses with ``reduction="none"``). An
        empty batch gives 0.
    """
    _check_inputs(logits, y, "logits")
    if unknown not in ("ignore", "negative"):
        raise ValueError(f"unknown must be 'ignore' or 'negative', got {unknown!r}")
    _check_reduction(reduction)
    x = _at_least_float32(logits)
    pos = y == 1
    neg = (y == -1) | (y == 0) if unknown == "negative" else y == -1
    terms = _known_bce_terms(x, pos, neg)
    return _reduce(terms.sum(dim=1) / max(x.shape[1], 1), terms.sum() / max(terms.numel(), 1), reduction)


# --------------------------------------------------------------------------- partial-BCE

def partial_bce_coefficients(gamma: float, g_at: float = 0.1, value: float = 5.0) -> tuple[float, float]:
    """(alpha, beta) of Durand's normalisation g(p) = alpha * p**gamma + beta (Eq. 2)
    solving the two constraints g(1) = 1 and g(g_at) = value.

    Paper: Durand et al., CVPR 2019, section 3.1 ("Given a gamma value and the weight for a
    given proportion (e.g. g(0.1) = 5), we can find the hyperparameters alpha and beta"),
    Fig. 2. From alpha + beta = 1 and alpha * g_at**gamma + beta = value:

        alpha = (value - 1) / (g_at**gamma - 1),    beta = 1 - alpha.

    gamma = 1 gives (-4.444..., 5.444...); the paper rounds to (-4.45, 5.45).

    Note: when ``value < 1`` (or ``value < g_at**gamma``), g can become negative for label
    proportions below ``g_at``; the paper only uses values >= 1.

    Raises:
        ValueError: gamma == 0 (g would be constant and cannot meet both constraints),
            g_at not in the open interval (0, 1), value not > 0, non-finite numbers.
        TypeError: a non-numeric argument.
    """
    gamma = _check_number(gamma, "gamma")
    g_at = _check_number(g_at, "g_at")
    value = _check_number(value, "value")
    if gamma == 0.0:
        raise ValueError("gamma must be non-zero: with gamma = 0, g(p) = alpha + beta is constant "
                         "and cannot satisfy both g(1) = 1 and g(g_at) = value")
    if not 0.0 < g_at < 1.0:
        raise ValueError(f"g_at must be a label proportion in the open interval (0, 1), got {g_at}")
    if not value > 0.0:
        raise ValueError(f"value (the weight g(g_at)) must be > 0, got {value}")
    denominator = g_at ** gamma - 1.0
    if denominator == 0.0 or not math.isfinite(denominator):
        raise ValueError(f"g_at**gamma = {g_at}**{gamma} is not usable (it must be finite and != 1)")
    alpha = (value - 1.0) / denominator
    return alpha, 1.0 - alpha


@register_loss("partial_bce")
def partial_bce(logits: Tensor, y: Tensor, alpha: float = -4.45, beta: float = 5.45,
                gamma: float = 1.0, *, reduction: str = "mean") -> Tensor:
    """Partial-BCE of Durand et al. 2019: BCE re-weighted by the proportion of known labels.

    Paper: Durand, Mehrasa, Mori, CVPR 2019, section 3.1, Eq. 1 and Eq. 2. Per image i:

        l_i = -(g(p_y) / C) * sum_c [ 1[y_c=1] log sigma(x_c) + 1[y_c=-1] log(1 - sigma(x_c)) ]
        g(p_y) = alpha * p_y**gamma + beta,        p_y = (number of known labels) / C

    and the batch loss is the mean over the N images (the 1/N of Eq. 7). Defaults are the
    paper's alpha = -4.45, beta = 5.45, gamma = 1 (g(0.1) ~ 5, g(1) = 1); use
    :func:`partial_bce_coefficients` for other gamma / g(0.1) choices.

    Departures / precisions:
        * Images with no known label contribute 0 (their g is not evaluated, so gamma < 0
          gives no inf/NaN) but still count in N, as in Eq. 7.
        * g depends on the labels only, so it carries no gradient. Hence on the known entries
          of image i the gradient is exactly g(p_y) times the gradient of
          ``bce(unknown="ignore")``; with every label known and alpha + beta = 1 the loss
          equals :func:`bce`.
        * alpha, beta and gamma are not constrained (the paper requires g(1) = 1); a g that
          is negative somewhere flips the sign of those images' loss.

    Args:
        logits: float (N, C) logits.
        y: (N, C) labels in {-1, 0, 1}.
        alpha, beta, gamma: the coefficients of g (Eq. 2).
        reduction: ``"mean"`` over the N images (Eq. 7), ``"none"``: the per-image losses
            l_i (N,), ``"sum"``: their sum.

    Returns:
        Scalar loss in float32 or wider (per-image losses with ``reduction="none"``).
    """
    _check_inputs(logits, y, "logits")
    alpha = _check_number(alpha, "alpha")
    beta = _check_number(beta, "beta")
    gamma = _check_number(gamma, "gamma")
    _check_reduction(reduction)
    x = _at_least_float32(logits)
    num_images, num_classes = x.shape
    terms = _known_bce_terms(x, y == 1, y == -1)
    num_known = (y != 0).sum(dim=1).to(x.dtype)
    has_known = num_known > 0
    # p_y is replaced by 1 for images without known labels so that p**gamma stays finite
    # for gamma < 0; their g is then zeroed (they have no term to weight anyway).
    p_y = torch.where(has_known, num_known / max(num_classes, 1), torch.ones_like(num_known))
    g = torch.where(has_known, alpha * p_y.pow(gamma) + beta, torch.zeros_like(p_y))
    per_image = g * terms.sum(dim=1) / max(num_classes, 1)
    return _reduce(per_image, per_image.sum() / max(num_images, 1), reduction)


# --------------------------------------------------------------------------- softmax CE


@register_loss("softmax_ce")
def softmax_ce(logits: Tensor, y: Tensor, *, reduction: str = "mean") -> Tensor:
    """Softmax cross-entropy of a single-label task written as labels in {-1, 1}: each row
    of ``y`` holds exactly one 1 (the class) and -1 elsewhere.

    The loss of single-label pretraining (ImageNet, and its stand-in
    :class:`mlrobust.data.objectscenes.ObjectScenes`) and the "softmax" baseline of
    Cevikalp et al. 2019's semi-supervised tables. ``reduction`` "mean" (over images),
    "sum" or "none" (N,). A row without exactly one 1, or with an unknown (0), is an error:
    a multi-label row has no softmax target.
    """
    _check_inputs(logits, y, "logits")
    _check_reduction(reduction)
    positives = (y == 1).sum(dim=1)
    if y.device.type == "cpu" and (bool((positives != 1).any()) or bool((y == 0).any())):
        bad = int(((positives != 1) | (y == 0).any(dim=1)).nonzero()[0, 0])
        raise ValueError(f"softmax_ce needs exactly one 1 and no 0 in every row of y; row {bad} has "
                         f"{int(positives[bad])} ones and {int((y[bad] == 0).sum())} unknowns")
    per_image = F.cross_entropy(_at_least_float32(logits), (y == 1).to(torch.int64).argmax(dim=1), reduction="none")
    return _reduce(per_image, per_image.mean(), reduction)


# --------------------------------------------------------------------------- BN-BCE

@register_loss("bn_bce")
def bn_bce(logits: Tensor, y: Tensor, *, per_image: bool = False, reduction: str = "mean") -> Tensor:
    """BN-BCE of Wang et al. 2023: BCE normalised by the number of known labels.

    Paper: Wang, Wan, Xiang, Zeng, "Saliency Regularization for Self-Training with Partial
    Annotations", ICCV 2023. The paper is ambiguous: its section 4.3 says
    BN-BCE is normalised "by the number of known labels from a batch", while Eq. 9 divides
    each image by its own number of known labels sum_c |y_c| and Eq. 10 sums over images.

    * ``per_image=False`` (default, the section 4.3 text): the BCE summed over every known
      entry of the batch, divided by the number of known entries of the batch.
    * ``per_image=True`` (Eq. 9): l_i = -(1 / sum_c |y_ic|) * sum_c [...], then averaged
      over the images that have at least one known label. Departure: Eq. 10 *sums* l_i over
      the N images; we average so that the loss scale does not grow with the batch size and
      matches the default's scale (both are a mean BCE per known label when every image
      has the same number of known labels).

    A batch (or image) without any known label contributes 0, without NaN.

    Args:
        logits: float (N, C) logits.
        y: (N, C) labels in {-1, 0, 1}.
        per_image: use Eq. 9's per-image normalisation instead of the batch one.
        reduction: ``"mean"`` (the loss above), ``"none"``: per-image losses (N,) whose mean
            it is (with the batch normalisation, image i's BCE sum times N over the batch's
            known entries), ``"sum"``: their sum.

    Returns:
        Scalar loss in float32 or wider (per-image losses with ``reduction="none"``).
    """
    _check_inputs(logits, y, "logits")
    _check_bool(per_image, "per_image")
    _check_reduction(reduction)
    x = _at_least_float32(logits)
    terms = _known_bce_terms(x, y == 1, y == -1)
    known = y != 0
    n = x.shape[0]
    if not per_image:
        total_known = known.sum().clamp(min=1).to(x.dtype)
        return _reduce(terms.sum(dim=1) * n / total_known, terms.sum() / total_known, reduction)
    num_known = known.sum(dim=1)
    per_image_loss = terms.sum(dim=1) / num_known.clamp(min=1).to(x.dtype)
    images = (num_known > 0).sum().clamp(min=1).to(x.dtype)
    return _reduce(per_image_loss * n / images, per_image_loss.sum() / images, reduction)


# --------------------------------------------------------------------------- ASL

@register_loss("asl")
def asl(x: Tensor, y: Tensor, gamma_pos: float = 0.0, gamma_neg: float = 4.0, clip: float = 0.05,
        from_logits: bool = True, *, focal_grad: bool = False, reduction: str = "sum",
        eps: float = 1e-8, prob_clamp: str = "both") -> Tensor:
    """Asymmetric loss (ASL) of Ridnik / Ben-Baruch et al., ICCV 2021, as used by Pene et al.
    2021 (GALC-SLR, section 3, the L_ASL formula) and by the ASL authors' training script.

    With p = sigmoid(x) (or p = x when ``from_logits=False``):

        positives (y = 1):   L+ = (1 - p)**gamma_pos * log(p)
        negatives (y = -1):  L- = p_m**gamma_neg * log(1 - p_m),   p_m = max(p - clip, 0)
        loss = -sum(L)       (unknown entries, y = 0, are ignored)

    The probability margin ``clip`` shifts negatives only, and the negative focusing weight
    is computed from the shifted p_m, so a negative with p <= clip has zero loss and zero
    gradient. Defaults (gamma_pos=0, gamma_neg=4, clip=0.05, weight without gradient) are
    those of the authors' ``train.py``.

    Args:
        x: float (N, C) logits, or probability-like scores when ``from_logits=False``.
        y: (N, C) labels in {-1, 0, 1}.
        gamma_pos, gamma_neg: focusing parameters (>= 0).
        clip: the probability margin m, in [0, 1].
        from_logits: ``x`` are logits (True) or probabilities (False).
        focal_grad: if False (default, the authors' training, ``disable_torch_grad_focal_loss
            =True``), the focusing weights (1 - p)**gamma_pos and p_m**gamma_neg are treated
            as constants: they are ``.detach()``-ed locally. The authors' code instead turns
            autograd off and back on *globally*, which re-enables gradients inside an outer
            ``torch.no_grad()``; nothing here touches the global grad mode.
            If True, the gradient also flows through the weights (the paper's formula
            differentiated as written).
        reduction: ``"sum"`` (default, the authors' reduction) sums over batch and classes,
            so the loss and its gradient scale with the batch size; Adam is invariant to that
            scale, SGD is not (adjust the learning rate). ``"mean"`` divides the sum by the
            number of known entries (0 when there is none); ``"none"`` gives each image's
            sum over its classes (N,).
        eps: only used with ``from_logits=False``, see ``prob_clamp``.
        prob_clamp: how probability-like scores outside [0, 1] (the corrected probabilities
            Ĉᵀσ(g(x)) of GALC-SLR can leave it; ASL's paper never meets the case) are read,
            with ``from_logits=False``:

            * ``"both"`` (default): p is clamped into [eps, 1 - eps] before the logs, so a
              score outside gets a finite loss and a *zero gradient*, positive or negative;
            * ``"authors"``: the ASL authors' code applied to probabilities:
              log(max(p, eps)) for a positive (no upper clamp: a positive with p > 1 keeps
              its gradient) and log(max(min(1 - p + clip, 1), eps)) for a negative (zero
              gradient once p > 1 + clip - eps). With gamma_pos > 0, (1 - p)**gamma_pos is
              undefined for p > 1, as in their code: use gamma_pos = 0 (Pene et al.'s setting).

    Departure from the authors' code: with ``from_logits=True`` we use the exact
    log-sigmoid (log p = logsigmoid(x); log(1 - p) = logsigmoid(-x) when clip = 0;
    log(1 - p + clip) = log(sigmoid(-x) + clip) otherwise) instead of log(clamp(p, min=eps)).
    The values agree wherever the authors' clamp is inactive (|x| below about 18); beyond
    that their clamp silently zeroes the gradient of confidently wrong entries, ours does not.

    Returns:
        Scalar loss in float32 or wider.
    """
    _check_inputs(x, y, "x")
    gamma_pos = _check_number(gamma_pos, "gamma_pos")
    gamma_neg = _check_number(gamma_neg, "gamma_neg")
    if gamma_pos < 0 or gamma_neg < 0:
        raise ValueError(f"gamma_pos and gamma_neg must be >= 0, got gamma_pos={gamma_pos}, "
                         f"gamma_neg={gamma_neg}")
    check_fraction(clip, "clip")
    clip = float(clip)
    _check_bool(from_logits, "from_logits")
    _check_bool(focal_grad, "focal_grad")
    _check_reduction(reduction)
    eps = _check_number(eps, "eps")
    if not 0.0 < eps < 0.5:
        raise ValueError(f"eps must be in the open interval (0, 0.5), got {eps}")
    if prob_clamp not in ("both", "authors"):
        raise ValueError(f"prob_clamp must be 'both' or 'authors', got {prob_clamp!r}")

    s = _at_least_float32(x)
    pos = y == 1
    neg = y == -1
    if from_logits:
        p = torch.sigmoid(s)
        log_p = F.logsigmoid(s)
        # log(1 - p_m) = log(1 - p + clip) where p > clip; sigmoid(-x) is accurate near p = 1.
        log_q = F.logsigmoid(-s) if clip == 0.0 else torch.log(torch.sigmoid(-s) + clip)
        # (1 - p)**gamma_pos as exp(gamma * logsigmoid(-x)): finite value and gradient for any x.
        w_pos = torch.exp(gamma_pos * F.logsigmoid(-s))
    elif prob_clamp == "both":
        p = s.clamp(min=eps, max=1.0 - eps)  # zero gradient where the clamp is active
        log_p = torch.log(p)
        log_q = torch.log(1.0 - p + clip)  # >= log(eps + clip) > -inf
        w_pos = (1.0 - p).pow(gamma_pos)  # 1 - p >= eps > 0
    else:  # the authors' clamps: positives from below only, negatives' 1 - p + clip into [eps, 1]
        p = s
        log_p = torch.log(p.clamp(min=eps))
        log_q = torch.log((1.0 - p + clip).clamp(min=eps, max=1.0))
        w_pos = (1.0 - p).pow(gamma_pos)

    # Negatives at or below the margin (p_m = 0) have log(1 - p_m) = 0 exactly. The
    # stand-in 1 keeps pow() away from 0**(gamma-1), whose gradient is inf for gamma < 1.
    active = neg & (p > clip)
    p_m = torch.where(active, p - clip, torch.ones_like(p))
    w_neg = p_m.pow(gamma_neg)
    if not focal_grad:
        w_pos = w_pos.detach()
        w_neg = w_neg.detach()

    zero = s.new_zeros(())
    likelihood = torch.where(pos, w_pos * log_p, torch.where(active, w_neg * log_q, zero))
    if reduction == "none":
        return -likelihood.sum(dim=1)
    total = -likelihood.sum()
    if reduction == "mean":
        total = total / (pos | neg).sum().clamp(min=1).to(total.dtype)
    return total


# --------------------------------------------------------------------------- ranking losses (Cevikalp et al. 2019)
#
# Scores here are raw (linear) outputs, not probabilities: WARP and the ramp losses compare
# them with margins of 1, as the paper's SVM-style objective (Eq. 1) does.

RANK_ROUNDINGS = ("floor", "round")
_EULER_GAMMA = 0.5772156649015329


def hinge(t: Tensor, a: float = 1.0) -> Tensor:
    """The hinge loss H_a(t) = max(0, a - t) (Cevikalp et al. 2019, §2.1)."""
    return (a - t).clamp(min=0)


def ramp(t: Tensor, s: float = -0.8, beta: float = 1.0) -> Tensor:
    """The ramp loss R_s(t) = min(1 - s, max(0, 1 - t)) = H_1(t) - H_s(t), with -1 < s <= 0
    (Cevikalp et al. 2019, §2.1; s = -0.8 in their experiments).

    It equals the hinge H_1 for t >= s and stays at 1 - s below: a pair or a label however
    badly violated costs at most 1 - s, so a mislabelled one cannot dominate the gradient.
    ``beta`` < 1 gives the released code's "soft" ramp H_1 - beta·H_s, whose slope past the
    ramp is 1 - beta instead of 0 (beta = 0.9 in ``bbenligiray/rml-cnn``).
    """
    return hinge(t, 1.0) - beta * hinge(t, s)


def rank_weight(r: Tensor) -> Tensor:
    """L(r) = sum_{j=1..r} 1/j, the WARP rank weight with alpha_j = 1/j (Cevikalp et al.
    2019, Eq. 2; Weston et al. 2011); L(0) = 0. ``r`` is an integer tensor, r >= 0.

    Computed as the harmonic number H_r = digamma(r + 1) + Euler's gamma in float64 (exact to
    rounding), elementwise on the device, with no table and no host synchronisation."""
    return torch.special.digamma(r.to(torch.float64) + 1.0) + _EULER_GAMMA


def warp_ranks(scores: Tensor, y: Tensor, *, rounding: str = "floor",
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """The sampled WARP rank r_j of every positive label (Cevikalp et al. 2019, Eq. 3).

    For positive j of image i, the negatives k of that image are drawn one by one in random
    order (without replacement, as the released code shuffles them) until the first
    *violation*, 1 - f_j + f_k >= 0. With q the number of draws, r_j = floor((m - 1) / q),
    m the number of classes: a positive that few negatives beat needs many draws and gets a
    small rank. ``rounding="round"`` is the released code's round((m - 1) / q). When no
    negative violates, q is the number of negatives + 1 (the code's convention); such a
    positive has no violated pair, so its weight multiplies nothing.

    Vectorised: every (image, positive, negative) triple gets a uniform key; the first
    violation is the violating negative of smallest key, and q - 1 counts the
    non-violating negatives whose key is smaller. Memory is O(N·C²): meant for C up to a few
    hundred (the paper's 80-81 classes), not for thousands of classes.

    Returns ``(r, q)``, int64 (N, C) tensors, 0 where the label is not a known positive.
    Draws come from ``generator`` (on the scores' device) or torch's default generator (which
    the trainer seeds per epoch, so a resumed run draws the same numbers).
    """
    if rounding not in RANK_ROUNDINGS:
        raise ValueError(f"rounding must be one of {RANK_ROUNDINGS}, got {rounding!r}")
    n, m = scores.shape
    f = scores.detach()
    pos, neg = y == 1, y == -1
    # violation[i, j, k]: 1 - f_ij + f_ik >= 0, for a known negative k
    violation = ((1.0 - f[:, :, None] + f[:, None, :]) >= 0) & neg[:, None, :]
    keys = torch.rand((n, m, m), generator=generator, device=f.device)
    first = torch.where(violation, keys, torch.full_like(keys, 2.0)).amin(dim=2, keepdim=True)
    q = 1 + ((keys < first) & neg[:, None, :] & ~violation).sum(dim=2)
    ratio = (m - 1) / q.to(torch.float64)
    r = torch.floor(ratio) if rounding == "floor" else torch.round(ratio)
    zero = torch.zeros((), dtype=torch.int64, device=f.device)
    return torch.where(pos, r.to(torch.int64), zero), torch.where(pos, q, zero)


def _pair_terms(scores: Tensor, y: Tensor, loss: Callable[[Tensor], Tensor], rounding: str,
                generator: torch.Generator | None) -> Tensor:
    """Per image: sum over positives j and negatives k of L(r_j)·loss(f_j - f_k)."""
    r, _ = warp_ranks(scores, y, rounding=rounding, generator=generator)
    weight = rank_weight(r).to(scores.dtype)  # a constant: r is piecewise constant in the scores
    pairs = (y == 1)[:, :, None] & (y == -1)[:, None, :]
    diff = scores[:, :, None] - scores[:, None, :]
    per_pair = torch.where(pairs, loss(diff), scores.new_zeros(()))
    return (weight * per_pair.sum(dim=2)).sum(dim=1)


def _check_ranking_inputs(scores: Tensor, y: Tensor, name: str, reduction: str, rounding: str) -> Tensor:
    _check_inputs(scores, y, name)
    _check_reduction(reduction)
    if rounding not in RANK_ROUNDINGS:
        raise ValueError(f"rank_rounding must be one of {RANK_ROUNDINGS}, got {rounding!r}")
    return _at_least_float32(scores)


@register_loss("warp")
def warp(scores: Tensor, y: Tensor, *, rank_rounding: str = "floor", generator: torch.Generator | None = None,
         reduction: str = "mean") -> Tensor:
    """WARP, weighted approximate-rank pairwise loss (Weston et al. 2011; Gong et al. 2014),
    the baseline of Cevikalp et al. 2019 (Eq. 1 with the hinge instead of the ramp, without
    the κ term):

        loss_i = sum_{j positive} sum_{k negative} L(r_j) · H_1(f_j - f_k),

    with r_j sampled by :func:`warp_ranks` and L from :func:`rank_weight`; unknown labels
    (0) are neither positive nor negative. ``reduction`` "mean" over images (Eq. 7 divides by
    the number of images), "sum" or "none" (N,).
    """
    x = _check_ranking_inputs(scores, y, "scores", reduction, rank_rounding)
    per_image = _pair_terms(x, y, hinge, rank_rounding, generator)
    return _reduce(per_image, per_image.mean(), reduction)


@register_loss("rml")
def rml(scores: Tensor, y: Tensor, *, s: float = -0.8, kappa: float = 5.0, beta: float = 1.0,
        rank_rounding: str = "floor", weights: Tensor | None = None, generator: torch.Generator | None = None,
        reduction: str = "mean") -> Tensor:
    """The robust multi-label (RML) loss of Cevikalp, Benligiray, Gerek, Saribas 2019, Eq. 1
    without the trace term (the deep network's weight decay takes its place, §2.3), and with
    per-image weights s_i, Eq. 6:

        loss_i = s_i · [ sum_{j pos} sum_{k neg} L(r_j) R_s(f_j - f_k)
                         + kappa · sum_{j known} R_s(y_ij f_j) ],

    R_s from :func:`ramp` (s = -0.8), kappa = 5 (§2.4), r_j from :func:`warp_ranks`. The
    first term ranks every positive above every negative by a margin; the second asks each
    score to be > 1 for a positive and < -1 for a negative, so the scores can be thresholded
    at 0. Both are bounded. Autograd of this form gives the paper's gradients, Eq. 7-8
    (a test checks them in float64).

    ``weights``: s_i (N,), e.g. the heat-kernel weights of propagated labels (1 for labelled
    images, the default). ``beta=0.9, rank_rounding="round"`` is the released code's variant
    (:func:`ramp`, :func:`warp_ranks`). ``reduction`` as in :func:`warp`.
    """
    x = _check_ranking_inputs(scores, y, "scores", reduction, rank_rounding)
    s, kappa, beta = (_check_number(v, name) for v, name in ((s, "s"), (kappa, "kappa"), (beta, "beta")))
    if not -1.0 < s <= 0.0:
        raise ValueError(f"s must be in (-1, 0] (Cevikalp et al. 2019, §2.1), got {s}")
    if kappa < 0 or not 0.0 <= beta <= 1.0:
        raise ValueError(f"kappa must be >= 0 and beta in [0, 1], got kappa={kappa}, beta={beta}")
    ramp_s = functools.partial(ramp, s=s, beta=beta)
    pair = _pair_terms(x, y, ramp_s, rank_rounding, generator)
    signed = x * y.to(x.dtype)  # y_ij f_j; unknown entries are masked below
    margin = torch.where(y != 0, ramp_s(signed), x.new_zeros(())).sum(dim=1)
    per_image = pair + kappa * margin
    if weights is not None:
        if weights.shape != (x.shape[0],):
            raise ValueError(f"weights must have shape (N,) = ({x.shape[0]},), got {tuple(weights.shape)}")
        per_image = per_image * weights.to(x.dtype)
    return _reduce(per_image, per_image.mean(), reduction)


# --------------------------------------------------------------------------- aliases and lookup

register_loss("bce_negative", functools.partial(bce, unknown="negative"))
register_loss("bn_bce_per_image", functools.partial(bn_bce, per_image=True))


def _options(loss: Loss) -> list[str]:
    """Names a caller may set through :func:`create_loss`: every parameter after (scores, y),
    except those an alias already fixes."""
    fixed = set(loss.keywords) if isinstance(loss, functools.partial) else set()
    params = list(inspect.signature(loss).parameters)[2:]
    return [name for name in params if name not in fixed]


def create_loss(name: str, **options: object) -> Callable[[Tensor, Tensor], Tensor]:
    """A loss from :data:`LOSSES` with its options bound: ``create_loss("asl", gamma_neg=2)``
    returns a ``functools.partial`` called as ``loss(logits, y)``.

    Raises:
        ValueError: an unknown loss name (the message lists the valid names), or an option
            value the loss rejects (checked at once, on a 1x1 dummy batch).
        TypeError: a non-string name, or an option the loss does not take (the message
            names it and lists the valid options).
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, one of {sorted(LOSSES)}; got {name!r}")
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid names: {', '.join(sorted(LOSSES))}")
    loss = LOSSES[name]
    valid = _options(loss)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TypeError(f"loss {name!r} has no option(s) {', '.join(map(repr, unknown))}; "
                        f"valid options: {', '.join(valid) if valid else '(none)'}")
    bound = functools.partial(loss, **options)
    # Fail at configuration time, not at the first training step, on a bad option value.
    with torch.no_grad():
        bound(torch.zeros(1, 1), torch.ones(1, 1, dtype=torch.int8))
    return bound
