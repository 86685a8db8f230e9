"""Tests of mlrobust.labels: statistics on large inputs, exact properties (hypothesis),
hand-worked examples and input errors."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlrobust import labels

N_BIG, C_BIG = 20_000, 20
SIGMAS = 5.0
PROPERTY = settings(deadline=None, max_examples=50)


# --------------------------------------------------------------------------- helpers


def random_labels(n: int, c: int, seed: int, *, p_pos: torch.Tensor | None = None,
                  p_unknown: float = 0.0) -> torch.Tensor:
    """Fully known (or partly unknown) labels with per-class positive rates p_pos."""
    g = torch.Generator().manual_seed(seed)
    if p_pos is None:
        p_pos = torch.linspace(0.05, 0.5, c)
    y = torch.where(torch.rand(n, c, generator=g) < p_pos, 1, -1)
    y = torch.where(torch.rand(n, c, generator=g) < p_unknown, 0, y)
    return y.to(torch.int8)


def assert_binomial(count: float, trials: int, p: float, what: str) -> None:
    """``count`` successes out of ``trials`` agree with probability ``p`` within 5 sigma."""
    sd = math.sqrt(trials * p * (1 - p))
    assert abs(count - trials * p) <= SIGMAS * sd + 1e-9, (
        f"{what}: {count} of {trials}, expected {trials * p:.1f} +- {SIGMAS * sd:.1f}")


@st.composite
def label_matrices(draw, *, known_only: bool = False, min_n: int = 0, min_c: int = 1,
                   max_n: int = 9, max_c: int = 7) -> torch.Tensor:
    n = draw(st.integers(min_n, max_n))
    c = draw(st.integers(min_c, max_c))
    values = [-1, 1] if known_only else [-1, 0, 1]
    flat = draw(st.lists(st.sampled_from(values), min_size=n * c, max_size=n * c))
    return torch.tensor(flat, dtype=torch.int8).reshape(n, c)


seeds = st.integers(0, 2**32 - 1)
fractions = st.floats(0.0, 1.0, allow_nan=False)

# Every protocol as f(y, seed) -> labels, with the label matrices it accepts.
PROTOCOLS: dict[str, tuple[Callable, bool]] = {
    "partial": (lambda y, s: labels.partial(y, 0.4, s), False),
    "partial_per_image": (lambda y, s: labels.partial(y, 0.4, s, per_image=True), False),
    "partial_min_positive": (lambda y, s: labels.partial(y, 0.4, s, min_known_positives=1), False),
    "dense": (lambda y, s: labels.dense(y, 0.4, s), False),
    "noisy": (lambda y, s: labels.noisy(y, 0.7, s), False),
    "single_positive": (lambda y, s: labels.single_positive(y, s), False),
    "symmetric_noise": (lambda y, s: labels.symmetric_noise(y, 0.5, s)[0], True),
    "frequency_corruption": (lambda y, s: labels.frequency_corruption(
        y, 0.5, s, class_frequency=torch.full((y.shape[1],), 0.5)), False),
    "semi_supervised": (lambda y, s: labels.semi_supervised(y, y.shape[0] // 2, s), False),
}


# --------------------------------------------------------------------------- statistics


@pytest.mark.parametrize("known", [0.1, 0.5, 0.9])
def test_partial_kept_share_is_binomial(known: float) -> None:
    y = random_labels(N_BIG, C_BIG, 0)
    out = labels.partial(y, known, 1)
    assert_binomial(int((out != 0).sum()), y.numel(), known, "kept entries")
    # every class is thinned alike (no column is favoured)
    for kept in (out != 0).sum(dim=0).tolist():
        assert_binomial(kept, N_BIG, known, "kept entries of one class")


def test_partial_per_image_positions_are_uniform() -> None:
    y = random_labels(N_BIG, C_BIG, 2)
    out = labels.partial(y, 0.3, 3, per_image=True)
    k = round(0.3 * C_BIG)
    assert ((out != 0).sum(dim=1) == k).all()
    for kept in (out != 0).sum(dim=0).tolist():  # each position kept with probability k / C
        assert_binomial(kept, N_BIG, k / C_BIG, "kept entries of one class")


@pytest.mark.parametrize("known", [0.05, 0.37, 1.0])
def test_dense_keeps_exact_number_of_whole_rows(known: float) -> None:
    y = random_labels(N_BIG, C_BIG, 4)
    out = labels.dense(y, known, 5)
    kept = (out != 0).any(dim=1)
    assert int(kept.sum()) == round(known * N_BIG)
    assert torch.equal(out[kept], y[kept])
    assert (out[~kept] == 0).all()
    if known < 1:  # the kept rows are spread over the data set, not its first rows
        first = kept[: N_BIG // 2].sum().item()
        assert_binomial(first, int(kept.sum()), 0.5, "kept rows in the first half")


@pytest.mark.parametrize("clean", [0.6, 0.9])
def test_noisy_flip_share_is_binomial(clean: float) -> None:
    y = random_labels(N_BIG, C_BIG, 6, p_unknown=0.3)
    out = labels.noisy(y, clean, 7)
    known = y != 0
    flipped = int((out[known] == -y[known]).sum())
    assert_binomial(flipped, int(known.sum()), 1 - clean, "flipped known entries")
    assert (out[~known] == 0).all()
    # positives and negatives are flipped at the same rate
    pos = y == 1
    assert_binomial(int((out[pos] == -1).sum()), int(pos.sum()), 1 - clean, "flipped positives")


@pytest.mark.parametrize("eta", [0.2, 0.6])
def test_symmetric_noise_moved_share_is_eta(eta: float) -> None:
    y = random_labels(N_BIG, C_BIG, 8, p_pos=torch.full((C_BIG,), 0.15))
    out, c_true = labels.symmetric_noise(y, eta, 9)
    pos = y == 1
    moved = int((pos & (out == -1)).sum())
    # with 20 classes and ~3 positives per image a shortage of free classes is astronomically rare
    assert_binomial(moved, int(pos.sum()), eta, "moved positives")
    assert torch.equal((out == 1).sum(dim=1), pos.sum(dim=1))
    assert torch.allclose(c_true.diagonal(), torch.full((C_BIG,), 1 - eta, dtype=torch.float64))


def test_symmetric_noise_destination_is_uniform_among_free_classes() -> None:
    c = 6
    y = torch.full((N_BIG, c), -1, dtype=torch.int8)
    y[:, 0] = 1
    out, _ = labels.symmetric_noise(y, 1.0, 10)
    assert (out[:, 0] == -1).all()
    assert ((out[:, 1:] == 1).sum(dim=1) == 1).all()
    for hits in (out[:, 1:] == 1).sum(dim=0).tolist():
        assert_binomial(hits, N_BIG, 1 / (c - 1), "destination class")


def test_single_positive_choice_is_uniform() -> None:
    y = torch.full((N_BIG, 5), -1, dtype=torch.int8)
    y[:, :3] = 1
    out = labels.single_positive(y, 11)
    assert ((out == 1).sum(dim=1) == 1).all()
    for hits in (out[:, :3] == 1).sum(dim=0).tolist():
        assert_binomial(hits, N_BIG, 1 / 3, "kept positive")


def test_frequency_corruption_preserves_class_frequencies() -> None:
    p_pos = torch.linspace(0.02, 0.3, C_BIG)
    y = random_labels(N_BIG, C_BIG, 12, p_pos=p_pos, p_unknown=0.2)
    y[:500] = 0  # unlabeled images are never corrupted
    out = labels.frequency_corruption(y, 0.4, 13)
    index = labels.frequency_corruption_index(y, 0.4, 13)
    assert index.numel() == round(0.4 * (N_BIG - 500)) and int(index.unique().numel()) == index.numel()
    assert (index >= 500).all()
    corrupted = out[index]
    assert (corrupted != 0).all() and ((corrupted == 1).sum(dim=1) >= 1).all()
    untouched = torch.ones(N_BIG, dtype=torch.bool)
    untouched[index] = False
    assert torch.equal(out[untouched], y[untouched])
    # estimated frequency f_c, and its value conditional on ">= 1 positive" (the redraw rule)
    f = (y == 1).sum(0).double() / (y != 0).sum(0).double()
    f_cond = f / (1 - torch.prod(1 - f))
    for c in range(C_BIG):  # a loop over classes in a test, not in the library
        assert_binomial(int((corrupted[:, c] == 1).sum()), index.numel(), float(f_cond[c]),
                        f"class {c} positives among corrupted rows")
    # the data set's class frequencies are maintained approximately (Cevikalp §3.3)
    f_out = (out == 1).sum(0).double() / (out != 0).sum(0).double()
    assert torch.allclose(f_out, f, rtol=0.1, atol=0.01)


def test_frequency_corruption_uses_given_class_frequency() -> None:
    y = random_labels(N_BIG, 4, 14)
    freq = torch.tensor([0.0, 1.0, 0.5, 0.25])
    out = labels.frequency_corruption(y, 1.0, 15, class_frequency=freq)
    assert (out[:, 0] == -1).all() and (out[:, 1] == 1).all()
    assert_binomial(int((out[:, 2] == 1).sum()), N_BIG, 0.5, "class 2")
    assert_binomial(int((out[:, 3] == 1).sum()), N_BIG, 0.25, "class 3")


def test_frequency_corruption_redraws_until_a_positive() -> None:
    # one class with frequency 0.1: 90 % of first draws have no positive and must be redrawn
    y = random_labels(2000, 3, 16)
    out = labels.frequency_corruption(y, 1.0, 17, class_frequency=torch.tensor([0.1, 0.0, 0.0]))
    assert (out[:, 0] == 1).all() and (out[:, 1:] == -1).all()


# --------------------------------------------------------------------------- exact properties


@pytest.mark.parametrize("name", list(PROTOCOLS))
@PROPERTY
@given(data=st.data(), seed=seeds)
def test_protocol_contract(name: str, data: st.DataObject, seed: int) -> None:
    """Determinism, Generator seeds, allowed values, int8, device, input unchanged."""
    protocol, known_only = PROTOCOLS[name]
    min_c = 2 if name == "symmetric_noise" else 1
    y = data.draw(label_matrices(known_only=known_only, min_c=min_c))
    y_before = y.clone()
    out = protocol(y, seed)
    assert torch.equal(y, y_before), "the input was modified"
    assert out.dtype == torch.int8 and out.shape == y.shape and out.device == y.device
    assert torch.isin(out, torch.tensor([-1, 0, 1], dtype=torch.int8)).all()
    assert torch.equal(protocol(y, seed), out)
    assert torch.equal(protocol(y, torch.Generator().manual_seed(seed)), out)
    # other dtypes with valid values are accepted and give the same labels
    assert torch.equal(protocol(y.to(torch.float32), seed), out)


def test_different_seeds_give_different_outputs() -> None:
    y = random_labels(200, 10, 18)
    for name, (protocol, _) in PROTOCOLS.items():
        assert not torch.equal(protocol(y, 1), protocol(y, 2)), name


def test_generator_state_advances() -> None:
    y = random_labels(100, 8, 19)
    g = torch.Generator().manual_seed(0)
    assert not torch.equal(labels.noisy(y, 0.5, g), labels.noisy(y, 0.5, g))


@PROPERTY
@given(y=label_matrices(), known=fractions, seed=seeds, per_image=st.booleans())
def test_partial_only_hides(y: torch.Tensor, known: float, seed: int, per_image: bool) -> None:
    out = labels.partial(y, known, seed, per_image=per_image)
    assert ((out == y) | (out == 0)).all()
    if per_image:
        assert ((out != 0).sum(dim=1) <= round(known * y.shape[1])).all()


@PROPERTY
@given(y=label_matrices(known_only=True), known=fractions, seed=seeds)
def test_partial_per_image_exact_count(y: torch.Tensor, known: float, seed: int) -> None:
    out = labels.partial(y, known, seed, per_image=True)
    assert ((out != 0).sum(dim=1) == round(known * y.shape[1])).all()
    assert ((out == y) | (out == 0)).all()


@PROPERTY
@given(y=label_matrices(), known=fractions, seed=seeds, per_image=st.booleans(), m=st.integers(1, 3))
def test_partial_min_known_positives(y: torch.Tensor, known: float, seed: int, per_image: bool, m: int) -> None:
    """The plain mask, plus hidden positives revealed until each image has m known positives
    (or all of its own); nothing else changes."""
    plain = labels.partial(y, known, seed, per_image=per_image)
    out = labels.partial(y, known, seed, per_image=per_image, min_known_positives=m)
    assert ((out == y) | (out == 0)).all()
    assert torch.equal(out[plain != 0], plain[plain != 0])  # the mask's draw is unchanged
    assert ((out != plain) <= (y == 1)).all()  # only positives are revealed
    known_pos = (out == 1).sum(dim=1)
    assert torch.equal(known_pos, torch.maximum((plain == 1).sum(dim=1), torch.clamp((y == 1).sum(dim=1), max=m)))


def test_partial_reveals_positives_uniformly() -> None:
    """Which hidden positive is revealed is uniform: each of an image's 4 positives is
    revealed about a quarter of the time when none is kept."""
    y = torch.tensor([[1, 1, 1, 1, -1, -1]], dtype=torch.int8).repeat(4000, 1)
    out = labels.partial(y, 0.0, 5, min_known_positives=1)
    share = (out[:, :4] == 1).float().mean(0)
    assert torch.allclose(share, torch.full((4,), 0.25), atol=0.03)
    with pytest.raises(ValueError, match="min_known_positives"):
        labels.partial(y, 0.1, 0, min_known_positives=-1)


@pytest.mark.parametrize("per_image", [False, True])
def test_partial_extremes(per_image: bool) -> None:
    y = random_labels(50, 6, 20, p_unknown=0.2)
    assert torch.equal(labels.partial(y, 1.0, 0, per_image=per_image), y)
    assert (labels.partial(y, 0.0, 0, per_image=per_image) == 0).all()


@PROPERTY
@given(y=label_matrices(known_only=True), known=fractions, seed=seeds)
def test_dense_keeps_whole_rows(y: torch.Tensor, known: float, seed: int) -> None:
    out = labels.dense(y, known, seed)
    kept = (out != 0).all(dim=1)
    assert ((out == 0).all(dim=1) | kept).all(), "a row was partly hidden"
    assert torch.equal(out[kept], y[kept])
    assert int(kept.sum()) == round(known * y.shape[0])


@PROPERTY
@given(y=label_matrices(), data=st.data(), seed=seeds)
def test_semi_supervised_exact_count(y: torch.Tensor, data: st.DataObject, seed: int) -> None:
    n_labeled = data.draw(st.integers(0, y.shape[0]))
    out = labels.semi_supervised(y, n_labeled, seed)
    assert ((out == y) | (out == 0)).all()
    same = (out == y).all(dim=1) & (y != 0).any(dim=1)
    assert int(same.sum()) <= n_labeled
    assert int(same.sum()) == n_labeled or not (y != 0).any(dim=1).all()
    if n_labeled == y.shape[0]:
        assert torch.equal(out, y)


@PROPERTY
@given(y=label_matrices(), clean=fractions, seed=seeds)
def test_noisy_flips_signs_only(y: torch.Tensor, clean: float, seed: int) -> None:
    out = labels.noisy(y, clean, seed)
    assert ((out == y) | (out == -y)).all()
    assert torch.equal(out == 0, y == 0)


def test_noisy_extremes() -> None:
    y = random_labels(50, 6, 21, p_unknown=0.2)
    assert torch.equal(labels.noisy(y, 1.0, 0), y)
    assert torch.equal(labels.noisy(y, 0.0, 0), -y)


@PROPERTY
@given(y=label_matrices(), seed=seeds)
def test_single_positive_keeps_one_positive(y: torch.Tensor, seed: int) -> None:
    out = labels.single_positive(y, seed)
    had = (y == 1).any(dim=1)
    assert ((out[had] == 1).sum(dim=1) == 1).all()
    assert torch.equal(out[~had], y[~had])
    assert ((out != 1) | (y == 1)).all(), "a new positive appeared"
    assert torch.equal(out[y != 1], y[y != 1]), "a negative or unknown entry changed"
    assert (out[y == 1] != 0).all()


@PROPERTY
@given(y=label_matrices(known_only=True, min_c=2), eta=fractions, seed=seeds)
def test_symmetric_noise_exact_properties(y: torch.Tensor, eta: float, seed: int) -> None:
    out, c_true = labels.symmetric_noise(y, eta, seed)
    k = y.shape[1]
    assert torch.isin(out, torch.tensor([-1, 1], dtype=torch.int8)).all()
    new_pos = (out == 1) & (y != 1)
    assert (y[new_pos] == -1).all()  # never a label already present in the original row
    assert torch.equal((out == 1).sum(dim=1), (y == 1).sum(dim=1))  # positives per row kept
    moved = ((y == 1) & (out == -1)).sum(dim=1)
    assert torch.equal(moved, new_pos.sum(dim=1))
    assert (moved <= torch.minimum((y == 1).sum(dim=1), (y == -1).sum(dim=1))).all()
    assert c_true.shape == (k, k) and c_true.dtype == torch.float64
    assert torch.allclose(c_true.sum(dim=1), torch.ones(k, dtype=torch.float64))
    expected = torch.full((k, k), eta / (k - 1), dtype=torch.float64)
    expected.fill_diagonal_(1 - eta)
    assert torch.allclose(c_true, expected)


@PROPERTY
@given(y=label_matrices(known_only=True, min_c=2), seed=seeds)
def test_symmetric_noise_eta_one_moves_all_it_can(y: torch.Tensor, seed: int) -> None:
    out, _ = labels.symmetric_noise(y, 1.0, seed)
    n_pos, n_free = (y == 1).sum(dim=1), (y == -1).sum(dim=1)
    moved = ((y == 1) & (out == -1)).sum(dim=1)
    assert torch.equal(moved, torch.minimum(n_pos, n_free))
    assert torch.equal(labels.symmetric_noise(y, 0.0, seed)[0], y)


def test_symmetric_noise_hand_examples() -> None:
    y = torch.tensor([[1, -1], [1, 1], [-1, -1], [-1, 1]], dtype=torch.int8)
    out, c_true = labels.symmetric_noise(y, 1.0, 0)
    # row 1 has no free class (surplus moves do not happen); row 2 has no positive
    assert out.tolist() == [[-1, 1], [1, 1], [-1, -1], [1, -1]]
    assert c_true.tolist() == [[0.0, 1.0], [1.0, 0.0]]
    y3 = torch.tensor([[1, 1, -1]], dtype=torch.int8)
    out3, _ = labels.symmetric_noise(y3, 1.0, 1)  # two moves, one free class: exactly one moves
    assert out3[0, 2] == 1 and int((out3[0, :2] == 1).sum()) == 1


@PROPERTY
@given(y=label_matrices(), fraction=fractions, seed=seeds)
def test_frequency_corruption_exact_properties(y: torch.Tensor, fraction: float,
                                               seed: int) -> None:
    freq = torch.linspace(0.1, 0.9, y.shape[1])
    out = labels.frequency_corruption(y, fraction, seed, class_frequency=freq)
    index = labels.frequency_corruption_index(y, fraction, seed)
    labeled = (y != 0).any(dim=1)
    assert index.numel() == round(fraction * int(labeled.sum()))
    assert labeled[index].all()
    assert (out[index] != 0).all() and ((out[index] == 1).sum(dim=1) >= 1).all()
    rest = torch.ones(y.shape[0], dtype=torch.bool)
    rest[index] = False
    assert torch.equal(out[rest], y[rest])
    assert torch.equal(labels.frequency_corruption(y, fraction, seed, class_frequency=freq), out)


def test_known_proportion_hand_example() -> None:
    y = torch.tensor([[1, 0, -1, 0], [0, 0, 0, 0], [1, 1, -1, -1]], dtype=torch.int8)
    p = labels.known_proportion(y)
    assert p.dtype == torch.float32 and p.tolist() == [0.5, 0.0, 1.0]
    part = labels.partial(random_labels(N_BIG, C_BIG, 22), 0.3, 0)
    assert abs(float(labels.known_proportion(part).mean()) - 0.3) < 0.01


def test_summary_hand_example() -> None:
    y = torch.tensor([[1, 0, -1, 0], [0, 0, 0, 0], [1, 1, -1, -1]], dtype=torch.int8)
    s = labels.summary(y)
    assert all(type(v) is float for v in s.values())
    expected = {
        "n_images": 3.0, "n_classes": 4.0,
        "known_share": 6 / 12, "positive_share": 3 / 12, "negative_share": 3 / 12,
        "unknown_share": 6 / 12, "known_per_image": 2.0, "positives_per_image": 1.0,
        "negatives_per_image": 1.0, "unknown_per_image": 2.0, "max_positives_per_image": 2.0,
        "images_with_positive": 2 / 3, "images_single_positive": 1 / 3,
        "images_fully_known": 1 / 3, "images_unlabeled": 1 / 3, "classes_with_positive": 2 / 4,
    }
    assert s.keys() == expected.keys()
    for key, value in expected.items():
        assert s[key] == pytest.approx(value), key


def test_summary_reflects_protocols() -> None:
    y = random_labels(N_BIG, C_BIG, 23)
    assert labels.summary(y)["known_share"] == 1.0
    assert labels.summary(labels.dense(y, 0.25, 0))["images_unlabeled"] == pytest.approx(0.75)
    assert labels.summary(labels.single_positive(y, 0))["max_positives_per_image"] == 1.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_cuda_matches_cpu(name: str) -> None:
    protocol, _ = PROTOCOLS[name]
    y = random_labels(500, 12, 24)
    out = protocol(y.cuda(), 3)
    assert out.device.type == "cuda" and out.dtype == torch.int8
    assert torch.equal(out.cpu(), protocol(y, 3))
    if name == "symmetric_noise":
        assert labels.symmetric_noise(y.cuda(), 0.5, 3)[1].device.type == "cuda"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_generator_is_refused() -> None:
    with pytest.raises(ValueError, match="seed"):
        labels.noisy(random_labels(5, 3, 0), 0.5, torch.Generator(device="cuda"))


# --------------------------------------------------------------------------- errors


ALL_CALLS: dict[str, Callable] = {
    "partial": lambda y: labels.partial(y, 0.5, 0),
    "dense": lambda y: labels.dense(y, 0.5, 0),
    "noisy": lambda y: labels.noisy(y, 0.5, 0),
    "single_positive": lambda y: labels.single_positive(y, 0),
    "symmetric_noise": lambda y: labels.symmetric_noise(y, 0.5, 0),
    "frequency_corruption": lambda y: labels.frequency_corruption(y, 0.5, 0),
    "semi_supervised": lambda y: labels.semi_supervised(y, 1, 0),
    "known_proportion": labels.known_proportion,
    "summary": labels.summary,
}


@pytest.mark.parametrize("name", list(ALL_CALLS))
@pytest.mark.parametrize("bad", [torch.ones(4, dtype=torch.int8),
                                 torch.ones(2, 3, 4, dtype=torch.int8)])
def test_wrong_shape_is_refused(name: str, bad: torch.Tensor) -> None:
    with pytest.raises(ValueError, match=r"y must have shape \(N, C\)"):
        ALL_CALLS[name](bad)


@pytest.mark.parametrize("name", list(ALL_CALLS))
def test_bad_values_are_refused(name: str) -> None:
    bad = torch.tensor([[1, -1], [2, 1]], dtype=torch.int8)
    with pytest.raises(ValueError, match=r"y must hold values in .*found 2"):
        ALL_CALLS[name](bad)
    with pytest.raises(TypeError, match="y must be a torch.Tensor"):
        ALL_CALLS[name]([[1, -1]])


@pytest.mark.parametrize("call, arg", [
    (lambda v: labels.partial(random_labels(4, 3, 0), v, 0), "known"),
    (lambda v: labels.partial(random_labels(4, 3, 0), v, 0, per_image=True), "known"),
    (lambda v: labels.dense(random_labels(4, 3, 0), v, 0), "known"),
    (lambda v: labels.noisy(random_labels(4, 3, 0), v, 0), "clean"),
    (lambda v: labels.symmetric_noise(random_labels(4, 3, 0), v, 0), "eta"),
    (lambda v: labels.frequency_corruption(random_labels(4, 3, 0), v, 0), "fraction"),
])
@pytest.mark.parametrize("value", [-0.1, 1.5, math.nan])
def test_fraction_out_of_range_is_refused(call: Callable, arg: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"{arg} must be in \[0.0, 1.0\], got {value}"):
        call(value)


def test_non_number_fraction_and_bad_seed_are_refused() -> None:
    y = random_labels(4, 3, 0)
    with pytest.raises(TypeError, match="known must be a number"):
        labels.partial(y, "0.5", 0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="seed must be an int or a torch.Generator"):
        labels.partial(y, 0.5, 1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="per_image must be a bool"):
        labels.partial(y, 0.5, 0, per_image=1)  # type: ignore[arg-type]


def test_symmetric_noise_refuses_unknown_entries_and_one_class() -> None:
    y = torch.tensor([[1, 0, -1]], dtype=torch.int8)
    with pytest.raises(ValueError, match=r"y must hold values in \{-1, 1\}; found 0"):
        labels.symmetric_noise(y, 0.5, 0)
    with pytest.raises(ValueError, match="y must have at least 2 columns"):
        labels.symmetric_noise(torch.ones(3, 1, dtype=torch.int8), 0.5, 0)


@pytest.mark.parametrize("n_labeled", [-1, 5])
def test_n_labeled_out_of_range_is_refused(n_labeled: int) -> None:
    with pytest.raises(ValueError, match=rf"n_labeled must be in \[0, N\] = \[0, 4\].*got {n_labeled}"):
        labels.semi_supervised(random_labels(4, 3, 0), n_labeled, 0)


@pytest.mark.parametrize("n_labeled", [True, 1.0, "2"])
def test_n_labeled_wrong_type_is_refused(n_labeled: object) -> None:
    with pytest.raises(TypeError, match="n_labeled must be an int"):
        labels.semi_supervised(random_labels(4, 3, 0), n_labeled, 0)  # type: ignore[arg-type]


def test_class_frequency_errors_name_the_argument() -> None:
    y = random_labels(10, 3, 0)
    with pytest.raises(ValueError, match=r"class_frequency must have shape \(C,\) = \(3,\)"):
        labels.frequency_corruption(y, 0.5, 0, class_frequency=torch.full((4,), 0.5))
    with pytest.raises(ValueError, match="class_frequency must hold probabilities in"):
        labels.frequency_corruption(y, 0.5, 0, class_frequency=torch.tensor([0.5, 1.2, 0.1]))
    with pytest.raises(TypeError, match="class_frequency must be a torch.Tensor"):
        labels.frequency_corruption(y, 0.5, 0, class_frequency=[0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="class_frequency must give at least one class"):
        labels.frequency_corruption(y, 0.5, 0, class_frequency=torch.zeros(3))
    with pytest.raises(ValueError, match="class_frequency makes a label vector without positive"):
        labels.frequency_corruption(y, 0.5, 0, class_frequency=torch.tensor([1e-9, 0.0, 0.0]))
    with pytest.raises(ValueError, match="max_rounds must be a positive int"):
        labels.frequency_corruption(y, 0.5, 0, max_rounds=0)


def test_frequency_corruption_without_known_positive_is_refused() -> None:
    y = torch.full((10, 3), -1, dtype=torch.int8)
    with pytest.raises(ValueError, match="estimated from y"):
        labels.frequency_corruption(y, 0.5, 0)
    assert torch.equal(labels.frequency_corruption(y, 0.0, 0), y)  # nothing to corrupt: fine


def test_label_values_are_not_read_on_devices_other_than_the_cpu() -> None:
    """A value check on a GPU tensor forces a host-device sync; it runs on CPU tensors only."""
    from mlrobust._validate import check_labels

    check_labels(torch.empty(2, 3, dtype=torch.int8, device="meta"), "y")  # would fail if read
    with pytest.raises(ValueError, match="y must hold values in"):
        check_labels(torch.tensor([[2, 0, 1]], dtype=torch.int8), "y")
    with pytest.raises(ValueError, match="shape"):
        check_labels(torch.empty(3, dtype=torch.int8, device="meta"), "y")


def test_protocol_registry_returns_tensors_and_checks_options() -> None:
    from mlrobust.options import ConfigError

    y = random_labels(40, 6, 0, p_unknown=0.0)
    noisy = labels.create_protocol("symmetric_noise", eta=0.5)(y, 3)
    assert isinstance(noisy, torch.Tensor) and torch.equal(noisy, labels.symmetric_noise(y, 0.5, 3).labels)
    assert torch.equal(labels.symmetric_noise(y, 0.5, 3).c_true, labels.symmetric_noise_matrix(6, 0.5))
    assert torch.equal(labels.create_protocol("full")(y, 0), y)
    for name in labels.PROTOCOLS:
        assert name in {"full", "partial", "dense", "noisy", "single_positive", "symmetric_noise",
                        "frequency_corruption", "semi_supervised"}
    with pytest.raises(ConfigError, match=r"not accepted by protocol 'frequency_corruption'; valid: "
                                          r"\['fraction', 'class_frequency', 'max_rounds'\]"):
        labels.create_protocol("frequency_corruption", fraction=0.1, return_index=True)
    with pytest.raises(ConfigError, match="unknown data.protocol 'parital'"):
        labels.create_protocol("parital")
