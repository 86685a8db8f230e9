"""Label conventions and the protocols that hide or corrupt training labels.

Labels are ``torch.int8`` tensors of shape (N, C): ``1`` present, ``-1`` absent, ``0`` unknown.
A benchmark's ground truth is fully known (values in {-1, 1}); the protocols below turn it into
the training labels of one experiment. Evaluation always uses the clean ground truth.

Protocols, registered by name in :data:`PROTOCOLS` (a config's ``data.protocol``; each
returns the observed int8 label matrix), and the paper each one follows:

=========================  =================================================================
``full``                   all labels, unchanged (the reference)
``partial``                Durand et al. 2019, §4.1 "partial labels" (and the SST/SARB/SR
                           convention: every entry kept independently)
``dense``                  Durand et al. 2019, §4.1 "complete image labels or dense labels"
``noisy``                  Durand et al. 2019, §4.1 "noisy labels"
``single_positive``        Durand et al. 2019, §4.1 "noisy web labels" (noisy+)
``symmetric_noise``        Pene et al. 2021, §4.1 "Label Noise"
``frequency_corruption``   Cevikalp et al. 2019, §3.3 "Experiments with Noisy Data"
``semi_supervised``        Cevikalp et al. 2019 (SS-RML-CNN): labeled / unlabeled split
=========================  =================================================================

Shared rules (see also CONTRIBUTING.md):

* Every protocol takes ``seed: int | torch.Generator``. Random numbers are always drawn on a
  **CPU** generator and then moved to ``y``'s device, so the same seed gives the same labels on
  CPU and on CUDA. A CUDA generator is refused with a clear error.
* Inputs are validated (``mlrobust._validate``), never modified, and the result is ``int8`` on
  ``y``'s device.
* Counts written as ``round(x)`` use Python's :func:`round` (half to even), so
  ``dense(y, 0.5, s)`` on 5 images keeps ``round(2.5) == 2`` of them.
* Random draws do not depend on the label values (e.g. ``noisy`` draws one number per entry,
  unknown or not), so changing the labels of one image never changes the random choices made for
  another.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ._validate import check_fraction, check_labels, make_generator
from .options import ConfigError
from .registry import Registry

__all__ = [
    "PROTOCOLS",
    "register_protocol",
    "create_protocol",
    "full",
    "partial",
    "dense",
    "noisy",
    "single_positive",
    "symmetric_noise",
    "SymmetricNoise",
    "symmetric_noise_matrix",
    "frequency_corruption",
    "frequency_corruption_index",
    "semi_supervised",
    "known_proportion",
    "summary",
    "compare",
]

_POS, _NEG, _UNK = 1, -1, 0

Protocol = Callable[..., Tensor]
PROTOCOLS: Registry[Protocol] = Registry("data.protocol")
"""Label protocols by name (the config's ``data.protocol``): ``fn(y, <options>, seed) -> labels``,
each returning the observed int8 label matrix."""
register_protocol = PROTOCOLS.register


def create_protocol(name: str, **options: Any) -> Callable[[Tensor, int | torch.Generator], Tensor]:
    """The protocol ``name`` with its ``options`` bound, called as ``protocol(y, seed)``.

    Unknown names and options are a :class:`~mlrobust.options.ConfigError` that lists the
    valid ones; option values are checked by the protocol itself when it runs.
    """
    try:
        fn = PROTOCOLS.lookup(name)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    valid = [p for p in inspect.signature(fn).parameters if p not in ("y", "seed")]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(f"data.protocol_args {unknown} not accepted by protocol {name!r}; valid: {valid}")

    def protocol(y: Tensor, seed: int | torch.Generator) -> Tensor:
        return fn(y, seed=seed, **options)

    protocol.__name__ = protocol.__qualname__ = f"{name}_protocol"
    return protocol


# --------------------------------------------------------------------------- helpers


def _cpu_generator(seed: int | torch.Generator) -> torch.Generator:
    """``make_generator`` plus the CPU requirement that keeps results device-independent."""
    g = make_generator(seed)
    if g.device.type != "cpu":
        raise ValueError(f"seed must be an int or a CPU torch.Generator (random numbers are drawn "
                         f"on the CPU so results do not depend on the device); got a generator "
                         f"on {g.device}")
    return g


def _as_labels(y: Tensor, *, allow_unknown: bool = True) -> Tensor:
    """Validate ``y`` and return it as int8 (a copy whenever the dtype changes)."""
    # protocols also take observed matrices (e.g. positives-only), whose 0s are unknown
    check_labels(y, "y", allow_unknown=allow_unknown, zero_means="unknown")
    return y.to(torch.int8)


def _rand(shape: tuple[int, ...], g: torch.Generator, device: torch.device,
          dtype: torch.dtype = torch.float32) -> Tensor:
    """Uniform [0, 1) numbers drawn on the CPU generator, then moved to ``device``."""
    return torch.rand(shape, generator=g, dtype=dtype).to(device)


def _keep_rows(y: Tensor, n_keep: int, g: torch.Generator) -> Tensor:
    """Exactly ``n_keep`` rows chosen uniformly at random keep their labels; the rest become 0."""
    perm = torch.randperm(y.shape[0], generator=g)
    keep = torch.zeros(y.shape[0], dtype=torch.bool)
    keep[perm[:n_keep]] = True
    keep = keep.to(y.device)
    return torch.where(keep[:, None], y, torch.zeros_like(y))


# --------------------------------------------------------------------------- hiding labels


@register_protocol("full")
def full(y: Tensor, seed: int | torch.Generator = 0) -> Tensor:
    """All labels, as they are (a copy): the reference every other protocol is compared with.
    ``seed`` is accepted for a uniform protocol signature and not used."""
    return _as_labels(y).clone()


@register_protocol("partial")
def partial(y: Tensor, known: float, seed: int | torch.Generator, *,
            per_image: bool = False, min_known_positives: int = 0) -> Tensor:
    """Partial labels: hide entries of ``y`` at random (unknown = 0), never change a sign.

    Durand, Mehrasa, Mori, CVPR 2019, §4.1 "Partial labels": all images are used but only a
    subset of the labels of each image is known, and the known categories differ per image.

    * ``per_image=False`` (default): every entry is kept independently with probability
      ``known`` (``rand < known``), else set to 0. This is the convention of the later
      partial-label papers (SST, SARB, SR / Wang et al. 2023); the share of known labels is
      ``known`` on average and varies slightly per image.
    * ``per_image=True``: every image keeps exactly ``round(known * C)`` of its C positions,
      chosen uniformly at random and independently per image; Durand et al. "drop labels per
      image at random", which this reproduces with an exact count so that every image has the
      same label proportion.

    Entries that are already 0 stay 0 (a kept position that was unknown remains unknown), so on
    a partially known ``y`` the known share is multiplied by ``known``; with ``per_image=True``
    an image then has *at most* ``round(known * C)`` known labels.

    ``min_known_positives = m > 0`` then reveals, in every image left with fewer than m known
    positives, hidden positives of ``y`` chosen uniformly at random (drawn after the mask, from
    the same generator) until it has m or has none left. The paper does not say its protocol
    does this; it enriches the known labels in positives, which moves a model's operating point
    towards "present" (the trade of precision for recall in Durand et al.'s supplementary
    Table 7). ``0`` (default) is the plain mask, with the same draws as without the option.
    """
    y8 = _as_labels(y)
    check_fraction(known, "known")
    if not isinstance(per_image, bool):
        raise TypeError(f"per_image must be a bool, got {per_image!r}")
    if isinstance(min_known_positives, bool) or not isinstance(min_known_positives, int) or min_known_positives < 0:
        raise ValueError(f"min_known_positives must be an integer >= 0, got {min_known_positives!r}")
    g = _cpu_generator(seed)
    n, c = y8.shape
    if per_image:
        k = round(known * c)
        # The k smallest of C iid float64 keys are a uniformly random k-subset of the positions.
        keys = _rand((n, c), g, y8.device, torch.float64)
        idx = keys.topk(k, dim=1, largest=False).indices
        keep = torch.zeros((n, c), dtype=torch.bool, device=y8.device).scatter_(1, idx, True)
    else:
        keep = _rand((n, c), g, y8.device) < known
    if min_known_positives > 0:
        keep |= _reveal_positives(y8 == 1, keep, min_known_positives, g)
    return torch.where(keep, y8, torch.zeros_like(y8))


def _reveal_positives(positive: Tensor, keep: Tensor, m: int, g: torch.Generator) -> Tensor:
    """The hidden positives to reveal so that every row has ``m`` kept positives (or all it
    has): the first ones of a uniformly random order of each row's hidden positives."""
    need = (m - (positive & keep).sum(dim=1, keepdim=True)).clamp(min=0)
    hidden = positive & ~keep
    keys = torch.where(hidden, _rand(tuple(positive.shape), g, positive.device), -1.0)
    rank = keys.argsort(dim=1, descending=True).argsort(dim=1)  # 0 = first in the random order
    return hidden & (rank < need)


@register_protocol("dense")
def dense(y: Tensor, known: float, seed: int | torch.Generator) -> Tensor:
    """Dense ("complete image") labels: a random subset of images keeps every label.

    Durand, Mehrasa, Mori, CVPR 2019, §4.1 "Complete image labels or dense labels": only a
    subset of the images is labeled, but those images are annotated for all categories.
    Exactly ``round(known * N)`` images, chosen uniformly at random, keep their row of ``y``;
    every other image becomes all 0 (unknown). With the same ``known`` the expected number of
    known labels equals that of :func:`partial`, which is the paper's fixed-budget comparison.
    """
    y8 = _as_labels(y)
    check_fraction(known, "known")
    g = _cpu_generator(seed)
    return _keep_rows(y8, round(known * y8.shape[0]), g)


@register_protocol("semi_supervised")
def semi_supervised(y: Tensor, n_labeled: int, seed: int | torch.Generator) -> Tensor:
    """Semi-supervised split: ``n_labeled`` images keep all labels, the rest are unlabeled.

    Cevikalp, Benligiray, Gerek, Saribas 2019 (SS-RML-CNN, §2 and §3.1): a labeled set plus
    unlabeled images whose labels are later propagated from their nearest labeled neighbours.
    Exactly ``n_labeled`` images (``0 <= n_labeled <= N``), chosen uniformly at random, keep
    their row of ``y``; every other row becomes all 0. The labeled images are those with a
    nonzero row when ``y`` had no all-unknown row to begin with.
    """
    y8 = _as_labels(y)
    if isinstance(n_labeled, bool) or not isinstance(n_labeled, numbers.Integral):
        raise TypeError(f"n_labeled must be an int in [0, N], got {n_labeled!r}")
    n = y8.shape[0]
    if not 0 <= n_labeled <= n:
        raise ValueError(f"n_labeled must be in [0, N] = [0, {n}] (N = number of images in y), "
                         f"got {n_labeled}")
    g = _cpu_generator(seed)
    return _keep_rows(y8, int(n_labeled), g)


# --------------------------------------------------------------------------- corrupting labels


@register_protocol("noisy")
def noisy(y: Tensor, clean: float, seed: int | torch.Generator) -> Tensor:
    """Noisy labels: every known entry's sign flipped independently with probability 1 - clean.

    Durand, Mehrasa, Mori, CVPR 2019, §4.1 "Noisy labels": all categories of all images are
    labeled but some labels are wrong; with a proportion ``clean`` of clean labels the other
    ``1 - clean`` are wrong. An entry is flipped (1 <-> -1) when ``rand < 1 - clean``; unknown
    entries (0) stay 0. One random number is drawn per entry, known or not.
    """
    y8 = _as_labels(y)
    check_fraction(clean, "clean")
    g = _cpu_generator(seed)
    flip = _rand(tuple(y8.shape), g, y8.device) < 1.0 - clean
    return torch.where(flip, -y8, y8)  # -0 == 0: unknown entries are unchanged


@register_protocol("single_positive")
def single_positive(y: Tensor, seed: int | torch.Generator) -> Tensor:
    """"noisy+" (webly-supervised) labels: keep one random positive, turn the others negative.

    Durand, Mehrasa, Mori, CVPR 2019, §4.1 "Noisy web labels": "if the image has more than one
    positive label, we randomly select one positive label among the positive labels and switch
    the other positive labels to negative labels". The kept positive is chosen uniformly among
    the image's positives (argmax of iid float64 keys over the positives). Negatives stay -1,
    unknown entries stay 0, and rows without a positive are returned unchanged.
    """
    y8 = _as_labels(y)
    g = _cpu_generator(seed)
    n, c = y8.shape
    keys = _rand((n, c), g, y8.device, torch.float64)
    pos = y8 == _POS
    if c == 0:
        return y8.clone()
    chosen = torch.where(pos, keys, torch.full_like(keys, -1.0)).argmax(dim=1, keepdim=True)
    keep = torch.zeros_like(pos).scatter_(1, chosen, True) & pos
    out = torch.where(pos, torch.full_like(y8, _NEG), y8)
    return torch.where(keep, torch.full_like(y8, _POS), out)


class SymmetricNoise(NamedTuple):
    """What :func:`symmetric_noise` returns: the noisy labels and the nominal corruption
    matrix (it unpacks as ``y_noisy, c_true = symmetric_noise(...)``)."""

    labels: Tensor
    c_true: Tensor


def symmetric_noise_matrix(num_classes: int, eta: float, device: torch.device | str = "cpu") -> Tensor:
    """The nominal corruption matrix of symmetric noise, float64 (K, K):
    ``C_ii = 1 - eta`` and ``C_ij = eta / (K - 1)`` (Pene et al. 2021, §4.1)."""
    check_fraction(eta, "eta")
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    c_true = torch.full((num_classes, num_classes), eta / (num_classes - 1), dtype=torch.float64, device=device)
    return c_true.fill_diagonal_(1.0 - eta)


def symmetric_noise(y: Tensor, eta: float, seed: int | torch.Generator) -> SymmetricNoise:
    """Symmetric label noise of Pene et al. 2021; returns ``(y_noisy, C_true)``
    (a :class:`SymmetricNoise`; the config protocol ``symmetric_noise`` keeps the labels).

    Pene, Ghiassi, Younesian, Chen 2021, §4.1 "Label Noise": a fraction ``eta`` of the labels is
    flipped to another class with uniform probability, and a new label that is already
    associated with the image is redrawn until it is not. Here:

    * ``y`` must be fully known (values in {-1, 1}).
    * Each positive entry is selected independently with probability ``eta`` and *moved*: it
      becomes -1 and a class that is not positive in the original image becomes 1. The
      destination is uniform among those classes, and the moved labels of one image go to
      distinct classes, so the number of positives per image is preserved and every move
      introduces a truly wrong label (the paper's "redraw until not present").
      Vectorised: per image a uniformly random permutation of the non-positive classes (random
      keys, masked, argsort), and the k-th moved positive (in a random order) takes the k-th
      class of that permutation.
    * If an image has more selected positives than non-positive classes, the surplus moves (a
      uniformly random subset of the selected ones) do not happen and those labels stay as
      they are. This only arises when C is tiny or an image is positive for most classes.

    ``C_true`` is the paper's *nominal* corruption matrix, float64 (K, K) on ``y``'s device:
    ``C_ii = 1 - eta`` and ``C_ij = eta / (K - 1)``. Because destinations exclude the image's
    other positives, the empirical transition frequencies of a given dataset differ from these
    off-diagonal values (label co-occurrence), exactly as in the paper's own protocol.
    """
    y8 = _as_labels(y, allow_unknown=False)
    check_fraction(eta, "eta")
    n, k = y8.shape
    if k < 2:
        raise ValueError(f"y must have at least 2 columns (classes) for symmetric noise, "
                         f"got shape {tuple(y8.shape)}")
    g = _cpu_generator(seed)
    dev = y8.device
    select = _rand((n, k), g, dev)
    free_keys = _rand((n, k), g, dev, torch.float64)
    move_keys = _rand((n, k), g, dev, torch.float64)

    pos = y8 == _POS
    move = pos & (select < eta)
    n_free = (~pos).sum(dim=1, keepdim=True)
    # Columns of `order`: the image's non-positive classes first, in uniformly random order.
    order = torch.where(pos, 2.0, free_keys).argsort(dim=1)
    # Rank of each selected positive among the selected ones of its image, in random order, so
    # that the surplus (rank >= n_free) is a random subset rather than the last classes.
    rank = torch.where(move, move_keys, 2.0).argsort(dim=1).argsort(dim=1)
    happens = move & (rank < n_free)
    dest = order.gather(1, rank.clamp(max=k - 1))
    # scatter_add, not scatter: the clamped indices of non-moves may repeat within a row.
    dest_hit = torch.zeros((n, k), dtype=torch.int32, device=dev).scatter_add_(
        1, dest, happens.to(torch.int32)) > 0

    out = torch.where(happens, torch.full_like(y8, _NEG), y8)
    out = torch.where(dest_hit, torch.full_like(y8, _POS), out)
    return SymmetricNoise(out, symmetric_noise_matrix(k, eta, dev))


@register_protocol("symmetric_noise")
def _symmetric_noise_labels(y: Tensor, eta: float, seed: int | torch.Generator) -> Tensor:
    """The noisy labels of :func:`symmetric_noise` (the matrix is
    :func:`symmetric_noise_matrix`)."""
    return symmetric_noise(y, eta, seed).labels


@register_protocol("frequency_corruption")
def frequency_corruption(y: Tensor, fraction: float, seed: int | torch.Generator, *,
                         class_frequency: Tensor | None = None, max_rounds: int = 10_000) -> Tensor:
    """Cevikalp et al. 2019 label corruption that keeps the class frequencies.

    Cevikalp, Benligiray, Gerek, Saribas 2019, §3.3: "a subset is chosen randomly, and the
    corresponding labels are altered stochastically, while maintaining the class frequencies of
    the original dataset". The paper gives no more detail; this implementation:

    * chooses exactly ``round(fraction * n)`` images uniformly at random among the ``n`` images
      that have at least one known label (all-unknown images are never corrupted);
    * gives each of them a new, fully known label vector: class c is positive with probability
      ``f_c`` and -1 otherwise, independently across classes;
    * redraws a vector (vectorised rounds over the rows still pending) until it has at least
      one positive, as every image of a multi-label benchmark has one.

    ``f_c`` is the training frequency of class c estimated from ``y``'s known entries
    (positives / known entries of that column; 0 for a column with no known entry), or the
    ``class_frequency`` tensor (C,) of probabilities when given. The "at least one positive"
    condition raises the expected frequency of class c among corrupted rows from ``f_c`` to
    ``f_c / (1 - prod_j (1 - f_j))``, a small factor when images usually hold several labels.

    Raises ``ValueError`` if no class has a positive frequency or if the chance that a draw has
    no positive is so close to 1 that ``max_rounds`` redraw rounds would not be enough.
    :func:`frequency_corruption_index` gives the indices of the corrupted images.
    """
    y8 = _as_labels(y)
    check_fraction(fraction, "fraction")
    if isinstance(max_rounds, bool) or not isinstance(max_rounds, numbers.Integral) \
            or max_rounds < 1:
        raise ValueError(f"max_rounds must be a positive int, got {max_rounds!r}")
    n, c = y8.shape
    freq = _class_frequency(y8, class_frequency)
    g = _cpu_generator(seed)
    index = _corrupted_rows(y8, fraction, g)  # the generator's first draw
    n_corrupt = len(index)
    out = y8.clone()
    if n_corrupt == 0:
        return out

    source = ("class_frequency" if class_frequency is not None
              else "the class frequencies estimated from y (positives / known entries)")
    p_none = float(torch.prod(1.0 - freq))
    if not bool((freq > 0).any()) or p_none >= 1.0:
        raise ValueError(f"{source} must give at least one class a positive frequency, so that a "
                         f"redrawn label vector can have a positive; got {_short(freq)}")
    if n_corrupt * p_none ** max_rounds >= 1e-3:
        raise ValueError(f"{source} makes a label vector without positive too likely "
                         f"(probability {p_none:.6g} per draw): {n_corrupt} rows would not all "
                         f"get a positive within max_rounds={max_rounds} redraw rounds")
    new = _draw_with_positive(freq, n_corrupt, g, int(max_rounds), source)
    out[index.to(y8.device)] = torch.where(new, _POS, _NEG).to(torch.int8).to(y8.device)
    return out


def frequency_corruption_index(y: Tensor, fraction: float, seed: int | torch.Generator) -> Tensor:
    """The int64 indices (on the CPU) of the images :func:`frequency_corruption` corrupts with
    the same ``y``, ``fraction`` and ``seed`` (an int seed: a generator would have moved on)."""
    y8 = _as_labels(y)
    check_fraction(fraction, "fraction")
    return _corrupted_rows(y8, fraction, _cpu_generator(seed))


def _corrupted_rows(y8: Tensor, fraction: float, g: torch.Generator) -> Tensor:
    """``round(fraction * n)`` images drawn uniformly among the ``n`` with a known label."""
    candidates = (y8 != _UNK).any(dim=1).cpu().nonzero().squeeze(1)
    n_corrupt = round(fraction * candidates.numel())
    return candidates[torch.randperm(candidates.numel(), generator=g)[:n_corrupt]]


def _class_frequency(y8: Tensor, class_frequency: Tensor | None) -> Tensor:
    """(C,) float64 CPU tensor of per-class positive probabilities."""
    c = y8.shape[1]
    if class_frequency is None:
        positives = (y8 == _POS).sum(dim=0).to(torch.float64)
        known = (y8 != _UNK).sum(dim=0).to(torch.float64)
        return (positives / known.clamp(min=1.0)).cpu()
    if not isinstance(class_frequency, Tensor):
        raise TypeError(f"class_frequency must be a torch.Tensor of shape (C,) = ({c},), "
                        f"got {type(class_frequency).__name__}")
    if tuple(class_frequency.shape) != (c,):
        raise ValueError(f"class_frequency must have shape (C,) = ({c},) to match y, "
                         f"got {tuple(class_frequency.shape)}")
    freq = class_frequency.detach().to("cpu", torch.float64)
    bad = ~(torch.isfinite(freq) & (freq >= 0) & (freq <= 1))
    if bad.any():
        raise ValueError(f"class_frequency must hold probabilities in [0, 1]; "
                         f"found {_short(freq[bad])}")
    return freq


def _draw_with_positive(freq: Tensor, n: int, g: torch.Generator, max_rounds: int,
                        source: str) -> Tensor:
    """``n`` boolean rows, entry c True with probability freq[c], redrawn until any is True."""
    out = torch.zeros((n, freq.numel()), dtype=torch.bool)
    pending = torch.arange(n)
    for _ in range(max_rounds):  # a loop over redraw rounds, not over samples
        draw = torch.rand((pending.numel(), freq.numel()), generator=g, dtype=torch.float64) < freq
        ok = draw.any(dim=1)
        out[pending[ok]] = draw[ok]
        pending = pending[~ok]
        if pending.numel() == 0:
            return out
    raise ValueError(f"{source}: {pending.numel()} label vectors still had no positive after "
                     f"max_rounds={max_rounds} redraw rounds; raise max_rounds or use larger "
                     f"frequencies")


def _short(values: Tensor, limit: int = 5) -> str:
    shown = ", ".join(f"{v:.4g}" for v in values[:limit].tolist())
    return "[" + shown + (", ...]" if values.numel() > limit else "]")


# --------------------------------------------------------------------------- statistics


def known_proportion(y: Tensor) -> Tensor:
    """Proportion of known labels per image, ``p_y`` of Durand et al. 2019, Eq. 1.

    Durand, Mehrasa, Mori, CVPR 2019, §3.1 Eq. 1: the partial-BCE normalises the loss of an
    image by ``g(p_y)`` where ``p_y`` is the proportion of known labels of that image. Returns a
    float32 tensor (N,) on ``y``'s device: (number of nonzero entries) / C (NaN when C = 0).
    """
    check_labels(y, "y", zero_means="unknown")
    return (y != 0).sum(dim=1).to(torch.float32) / y.shape[1]


def summary(y: Tensor) -> dict[str, float]:
    """Plain-float statistics of a label matrix, for the book's tables.

    Keys: ``n_images``, ``n_classes``; entry shares ``known_share``, ``positive_share``,
    ``negative_share``, ``unknown_share``; per-image means ``known_per_image``,
    ``positives_per_image``, ``negatives_per_image``, ``unknown_per_image`` and
    ``max_positives_per_image``; image shares ``images_with_positive`` (at least one positive),
    ``images_single_positive`` (exactly one), ``images_fully_known`` (no 0),
    ``images_unlabeled`` (all 0); and ``classes_with_positive``, the share of classes with at
    least one positive. Shares are in [0, 1]; an empty dimension gives NaN.
    """
    check_labels(y, "y", zero_means="unknown")
    n, c = y.shape
    pos = (y == _POS).to(torch.float64)
    neg = (y == _NEG).to(torch.float64)
    unk = (y == _UNK).to(torch.float64)
    pos_row = pos.sum(dim=1)
    unk_row = unk.sum(dim=1)
    nan = math.nan

    def mean(t: Tensor) -> float:
        return float(t.mean()) if t.numel() else nan

    return {
        "n_images": float(n),
        "n_classes": float(c),
        "known_share": mean(1.0 - unk),
        "positive_share": mean(pos),
        "negative_share": mean(neg),
        "unknown_share": mean(unk),
        "known_per_image": mean(c - unk_row),
        "positives_per_image": mean(pos_row),
        "negatives_per_image": mean(neg.sum(dim=1)),
        "unknown_per_image": mean(unk_row),
        "max_positives_per_image": float(pos_row.max()) if n else nan,
        "images_with_positive": mean((pos_row > 0).to(torch.float64)),
        "images_single_positive": mean((pos_row == 1).to(torch.float64)),
        "images_fully_known": mean((unk_row == 0).to(torch.float64)),
        "images_unlabeled": mean((unk_row == c).to(torch.float64)),
        "classes_with_positive": mean((pos.sum(dim=0) > 0).to(torch.float64)),
    }


def compare(observed: Tensor, truth: Tensor) -> dict[str, float]:
    """How observed labels relate to the ground truth, as plain floats for the book.

    Keys: ``known_share`` (entries not 0); ``wrong_share`` (wrong among the known entries);
    ``false_positives_per_image`` (observed 1, truly -1) and ``false_negatives_per_image``
    (observed -1, truly 1); ``positive_recall`` (share of true positives observed as 1) and
    ``negative_recall`` (share of true negatives observed as -1) — the true-positive and
    true-negative rates that Durand et al. 2019 (§4.3, Table 2) report for relabeling.
    ``truth`` must be fully known ({-1, 1}).
    """
    check_labels(observed, "observed", zero_means="unknown")
    check_labels(truth, "truth", allow_unknown=False)
    if observed.shape != truth.shape:
        raise ValueError(f"observed and truth must have the same shape, got {tuple(observed.shape)} "
                         f"and {tuple(truth.shape)}")
    obs, tru = observed.to(torch.int8), truth.to(device=observed.device, dtype=torch.int8)
    known = obs != _UNK
    n = max(obs.shape[0], 1)

    def share(num: Tensor, den: Tensor) -> float:
        d = int(den.sum())
        return float(num.sum()) / d if d else math.nan

    return {
        "known_share": float(known.to(torch.float64).mean()) if obs.numel() else math.nan,
        "wrong_share": share(known & (obs != tru), known),
        "false_positives_per_image": float(((obs == _POS) & (tru == _NEG)).sum()) / n,
        "false_negatives_per_image": float(((obs == _NEG) & (tru == _POS)).sum()) / n,
        "positive_recall": share((obs == _POS) & (tru == _POS), tru == _POS),
        "negative_recall": share((obs == _NEG) & (tru == _NEG), tru == _NEG),
    }
