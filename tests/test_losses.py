"""Tests for mlrobust.losses: literal transcriptions of the papers' equations (Python loops,
float64), gradient checks, edge cases (no known label, extreme logits, bf16) and the registry."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.autograd import gradcheck

from mlrobust import losses

F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """The tensors here are tiny: intra-op threads only cost time (on a busy 2-core machine
    F.logsigmoid's parallel kernel was measured ~1000x slower than single-threaded)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# --------------------------------------------------------------------------- fixtures

def make_batch(n: int = 5, c: int = 5, seed: int = 0, scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 logits and int8 labels with row 0 fully known, row 1 one known label,
    row 2 nothing known and the other rows random in {-1, 0, 1}."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g, dtype=F64) * scale
    y = torch.randint(-1, 2, (n, c), generator=g).to(torch.int8)
    y[0] = torch.where(torch.rand(c, generator=g) < 0.5, 1, -1).to(torch.int8)
    y[1] = 0
    y[1, int(torch.randint(c, (1,), generator=g))] = 1 if seed % 2 else -1
    y[2] = 0
    return logits, y


def sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


# --------------------------------------------------------------------------- transcriptions

def bce_reference(x, y, unknown="ignore"):
    """Durand Eq. 1 with g = 1, averaged over images: -(1/N) sum_i (1/C) sum_c [...]."""
    n, c = len(x), len(x[0])
    total = 0.0
    for i in range(n):
        image = 0.0
        for k in range(c):
            label = y[i][k]
            if label == 0 and unknown == "negative":
                label = -1
            if label == 1:
                image += math.log(sigmoid(x[i][k]))
            elif label == -1:
                image += math.log(math.exp(-x[i][k]) / (1.0 + math.exp(-x[i][k])))
        total += -image / c
    return total / n


def partial_bce_reference(x, y, alpha, beta, gamma):
    """Durand Eq. 1 and 2: l = -(g(p_y)/C) sum_c [...], g = alpha p_y^gamma + beta; mean over N."""
    n, c = len(x), len(x[0])
    total = 0.0
    for i in range(n):
        known = sum(1 for k in range(c) if y[i][k] != 0)
        if known == 0:
            continue  # contributes 0, still counted in N
        p_y = known / c
        g = alpha * p_y ** gamma + beta
        image = 0.0
        for k in range(c):
            if y[i][k] == 1:
                image += math.log(1.0 / (1.0 + math.exp(-x[i][k])))
            elif y[i][k] == -1:
                image += math.log(math.exp(-x[i][k]) / (1.0 + math.exp(-x[i][k])))
        total += -g / c * image
    return total / n


def bn_bce_reference(x, y, per_image=False):
    """Wang et al.: batch version (section 4.3) or Eq. 9 per image, averaged over images
    with a known label."""
    n, c = len(x), len(x[0])
    if not per_image:
        total, known = 0.0, 0
        for i in range(n):
            for k in range(c):
                if y[i][k] == 1:
                    total += math.log(sigmoid(x[i][k])); known += 1
                elif y[i][k] == -1:
                    total += math.log(1.0 - sigmoid(x[i][k])); known += 1
        return -total / known if known else 0.0
    total, images = 0.0, 0
    for i in range(n):
        denominator = sum(abs(y[i][k]) for k in range(c))
        if denominator == 0:
            continue
        image = 0.0
        for k in range(c):
            if y[i][k] == 1:
                image += math.log(sigmoid(x[i][k]))
            elif y[i][k] == -1:
                image += math.log(1.0 - sigmoid(x[i][k]))
        total += -image / denominator
        images += 1
    return total / images if images else 0.0


def asl_reference(x, y, gamma_pos, gamma_neg, clip, from_logits=True, reduction="sum", eps=1e-8):
    """ASL: L+ = (1-p)^g+ log p, L- = p_m^g- log(1-p_m), p_m = max(p - m, 0); loss = -sum L."""
    n, c = len(x), len(x[0])
    total, known = 0.0, 0
    for i in range(n):
        for k in range(c):
            p = sigmoid(x[i][k]) if from_logits else min(max(x[i][k], eps), 1.0 - eps)
            if y[i][k] == 1:
                total += (1.0 - p) ** gamma_pos * math.log(p); known += 1
            elif y[i][k] == -1:
                p_m = max(p - clip, 0.0)
                total += p_m ** gamma_neg * math.log(1.0 - p_m); known += 1
    loss = -total
    if reduction == "mean":
        loss = loss / known if known else 0.0
    return loss


# --------------------------------------------------------------------------- against the equations

@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("unknown", ["ignore", "negative"])
def test_bce_matches_transcription(seed, unknown):
    x, y = make_batch(seed=seed)
    got = losses.bce(x, y, unknown=unknown)
    assert got.dtype == F64 and got.dim() == 0
    assert got.item() == pytest.approx(bce_reference(x.tolist(), y.tolist(), unknown), rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("gamma", [1.0, 3.0, -1.0, 0.5])
def test_partial_bce_matches_transcription(seed, gamma):
    x, y = make_batch(seed=seed)
    alpha, beta = losses.partial_bce_coefficients(gamma)
    got = losses.partial_bce(x, y, alpha, beta, gamma)
    expected = partial_bce_reference(x.tolist(), y.tolist(), alpha, beta, gamma)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_partial_bce_default_is_paper_setting():
    x, y = make_batch(seed=3)
    expected = partial_bce_reference(x.tolist(), y.tolist(), -4.45, 5.45, 1.0)
    assert losses.partial_bce(x, y).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("per_image", [False, True])
def test_bn_bce_matches_transcription(seed, per_image):
    x, y = make_batch(seed=seed)
    got = losses.bn_bce(x, y, per_image=per_image)
    assert got.item() == pytest.approx(bn_bce_reference(x.tolist(), y.tolist(), per_image), rel=1e-12)


def test_bn_bce_batch_and_per_image_differ_when_counts_differ():
    x, y = make_batch(seed=4)
    assert not torch.isclose(losses.bn_bce(x, y), losses.bn_bce(x, y, per_image=True))


ASL_SETTINGS = [
    dict(gamma_pos=0.0, gamma_neg=4.0, clip=0.05),  # the authors' train.py
    dict(gamma_pos=1.0, gamma_neg=4.0, clip=0.05),  # the class defaults
    dict(gamma_pos=0.5, gamma_neg=2.0, clip=0.3),
    dict(gamma_pos=2.0, gamma_neg=0.0, clip=0.0),
]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("kw", ASL_SETTINGS)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("focal_grad", [False, True])
def test_asl_from_logits_matches_transcription(seed, kw, reduction, focal_grad):
    x, y = make_batch(seed=seed)
    got = losses.asl(x, y, **kw, reduction=reduction, focal_grad=focal_grad)
    expected = asl_reference(x.tolist(), y.tolist(), kw["gamma_pos"], kw["gamma_neg"], kw["clip"],
                             reduction=reduction)
    assert got.item() == pytest.approx(expected, rel=1e-10, abs=1e-14)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("kw", ASL_SETTINGS)
def test_asl_probabilities_matches_transcription(seed, kw):
    x, y = make_batch(seed=seed)
    probs = torch.sigmoid(x)
    got = losses.asl(probs, y, **kw, from_logits=False)
    expected = asl_reference(probs.tolist(), y.tolist(), kw["gamma_pos"], kw["gamma_neg"], kw["clip"],
                             from_logits=False)
    assert got.item() == pytest.approx(expected, rel=1e-10, abs=1e-14)


# --------------------------------------------------------------------------- partial-BCE properties

@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 6), c=st.integers(1, 9), seed=st.integers(0, 2**31 - 1),
       gamma=st.sampled_from([1.0, 2.0, 3.0, -1.0, -0.5, 0.25]))
def test_partial_bce_reduces_to_bce_when_all_known(n, c, seed, gamma):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, generator=g, dtype=F64) * 4
    y = torch.where(torch.rand(n, c, generator=g) < 0.4, 1, -1).to(torch.int8)
    alpha, beta = losses.partial_bce_coefficients(gamma, value=float(torch.rand(1, generator=g)) * 20 + 0.5)
    torch.testing.assert_close(losses.partial_bce(x, y, alpha, beta, gamma),
                               losses.bce(x, y, unknown="ignore"), rtol=1e-12, atol=0)


def test_partial_bce_upweights_images_with_missing_labels():
    x, _ = make_batch(seed=5)
    y = torch.zeros(5, 5, dtype=torch.int8)
    y[torch.arange(5), torch.arange(5)] = torch.tensor([1, -1, 1, -1, -1], dtype=torch.int8)  # p_y = 0.2
    g = -4.45 * 0.2 + 5.45
    torch.testing.assert_close(losses.partial_bce(x, y), g * losses.bce(x, y), rtol=1e-12, atol=0)


@pytest.mark.parametrize("gamma", [1.0, 2.0, 3.0, 0.5, -1.0, -2.0])
@pytest.mark.parametrize("g_at,value", [(0.1, 5.0), (0.1, 20.0), (0.3, 2.0), (0.5, 0.5)])
def test_partial_bce_coefficients_constraints(gamma, g_at, value):
    alpha, beta = losses.partial_bce_coefficients(gamma, g_at=g_at, value=value)
    assert alpha + beta == pytest.approx(1.0, abs=1e-12)
    assert alpha * g_at ** gamma + beta == pytest.approx(value, rel=1e-12)


def test_partial_bce_coefficients_paper_values():
    alpha, beta = losses.partial_bce_coefficients(1.0)
    assert alpha == pytest.approx(-40 / 9, rel=1e-12) and beta == pytest.approx(49 / 9, rel=1e-12)
    assert round(alpha, 2) == -4.44 and alpha == pytest.approx(-4.45, abs=0.01)
    assert beta == pytest.approx(5.45, abs=0.01)
    # the paper's rounded values satisfy g(0.1) ~ 5, g(1) = 1
    assert -4.45 * 0.1 + 5.45 == pytest.approx(5.005)
    # gamma = -1, g(0.1) = 5: alpha = 4/9 (inversely proportional to the label proportion)
    assert losses.partial_bce_coefficients(-1.0)[0] == pytest.approx(4 / 9)


@pytest.mark.parametrize("kwargs,exc,words", [
    (dict(gamma=0.0), ValueError, "gamma"),
    (dict(gamma=1.0, g_at=0.0), ValueError, "g_at"),
    (dict(gamma=1.0, g_at=1.0), ValueError, "g_at"),
    (dict(gamma=1.0, g_at=1.5), ValueError, "g_at"),
    (dict(gamma=1.0, value=0.0), ValueError, "value"),
    (dict(gamma=float("nan")), ValueError, "gamma"),
    (dict(gamma="1"), TypeError, "gamma"),
    (dict(gamma=True), TypeError, "gamma"),
])
def test_partial_bce_coefficients_errors(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        losses.partial_bce_coefficients(**kwargs)


# --------------------------------------------------------------------------- gradients

def _gradcheck(fn, x):
    x = x.clone().requires_grad_(True)
    assert gradcheck(fn, (x,), eps=1e-6, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("unknown", ["ignore", "negative"])
def test_bce_gradcheck(unknown):
    x, y = make_batch(seed=0, scale=1.0)
    _gradcheck(lambda t: losses.bce(t, y, unknown=unknown), x)


@pytest.mark.parametrize("gamma", [1.0, -1.0])
def test_partial_bce_gradcheck(gamma):
    x, y = make_batch(seed=1, scale=1.0)
    alpha, beta = losses.partial_bce_coefficients(gamma)
    _gradcheck(lambda t: losses.partial_bce(t, y, alpha, beta, gamma), x)


@pytest.mark.parametrize("per_image", [False, True])
def test_bn_bce_gradcheck(per_image):
    x, y = make_batch(seed=2, scale=1.0)
    _gradcheck(lambda t: losses.bn_bce(t, y, per_image=per_image), x)


def _away_from_margin(x: torch.Tensor, clip: float, from_logits: bool) -> torch.Tensor:
    """Move entries whose probability is within 0.02 of the margin (the kink of p_m)."""
    p = torch.sigmoid(x) if from_logits else x
    near = (p - clip).abs() < 0.02
    return torch.where(near, x + (1.0 if from_logits else 0.05), x)


@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("kw", ASL_SETTINGS[:3])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_asl_gradcheck_focal_grad(from_logits, kw, reduction):
    """focal_grad=True: the weights are differentiated too, so finite differences apply."""
    x, y = make_batch(seed=3, scale=1.5)
    if not from_logits:
        x = torch.rand(x.shape, generator=torch.Generator().manual_seed(3), dtype=F64) * 0.9 + 0.05
    x = _away_from_margin(x, kw["clip"], from_logits)
    _gradcheck(lambda t: losses.asl(t, y, **kw, from_logits=from_logits, focal_grad=True,
                                    reduction=reduction), x)


def asl_constant_weight_gradient(x, y, gamma_pos, gamma_neg, clip, from_logits):
    """Analytic d(loss)/dx with the focusing weights held constant (reduction="sum")."""
    p = torch.sigmoid(x) if from_logits else x
    grad = torch.zeros_like(x)
    for i in range(x.shape[0]):
        for k in range(x.shape[1]):
            pv = p[i, k].item()
            if y[i, k] == 1:
                w = (1 - pv) ** gamma_pos
                grad[i, k] = -w * (1 - pv) if from_logits else -w / pv
            elif y[i, k] == -1 and pv > clip:
                w = (pv - clip) ** gamma_neg
                dq = pv * (1 - pv) if from_logits else 1.0  # d p / d x
                grad[i, k] = w * dq / (1 - pv + clip)
    return grad


@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("kw", ASL_SETTINGS)
def test_asl_constant_weight_gradient(from_logits, kw):
    """focal_grad=False (the authors' training): gradient of -w log(.) with w a constant."""
    x, y = make_batch(seed=4, scale=2.0)
    if not from_logits:
        x = torch.rand(x.shape, generator=torch.Generator().manual_seed(4), dtype=F64) * 0.98 + 0.01
    x.requires_grad_(True)
    losses.asl(x, y, **kw, from_logits=from_logits).backward()
    expected = asl_constant_weight_gradient(x.detach(), y, kw["gamma_pos"], kw["gamma_neg"], kw["clip"],
                                            from_logits)
    torch.testing.assert_close(x.grad, expected, rtol=1e-10, atol=1e-14)


def test_asl_focal_grad_changes_gradient_only_when_weights_vary():
    x, y = make_batch(seed=5, scale=2.0)
    grads = {}
    for focal_grad in (False, True):
        t = x.clone().requires_grad_(True)
        losses.asl(t, y, gamma_pos=1.0, gamma_neg=4.0, clip=0.05, focal_grad=focal_grad).backward()
        grads[focal_grad] = t.grad
    assert not torch.allclose(grads[False], grads[True])
    for focal_grad in (False, True):  # unit weights: both modes agree
        t = x.clone().requires_grad_(True)
        losses.asl(t, y, gamma_pos=0.0, gamma_neg=0.0, clip=0.05, focal_grad=focal_grad).backward()
        grads[focal_grad] = t.grad
    torch.testing.assert_close(grads[False], grads[True], rtol=0, atol=0)


LOSS_CALLS = {
    "bce": lambda x, y: losses.bce(x, y),
    "partial_bce": lambda x, y: losses.partial_bce(x, y),
    "partial_bce_gamma_neg": lambda x, y: losses.partial_bce(x, y, *losses.partial_bce_coefficients(-1.0), -1.0),
    "bn_bce": lambda x, y: losses.bn_bce(x, y),
    "bn_bce_per_image": lambda x, y: losses.bn_bce(x, y, per_image=True),
    "asl": lambda x, y: losses.asl(x, y),
    "asl_focal_grad_mean": lambda x, y: losses.asl(x, y, gamma_pos=1.0, focal_grad=True, reduction="mean"),
    "asl_probs": lambda x, y: losses.asl(torch.sigmoid(x), y, from_logits=False, focal_grad=True),
}


@pytest.mark.parametrize("name", list(LOSS_CALLS))
def test_unknown_entries_get_exactly_zero_gradient(name):
    x, y = make_batch(seed=6)
    x.requires_grad_(True)
    LOSS_CALLS[name](x, y).backward()
    assert (x.grad[y == 0] == 0).all()
    assert (x.grad[y != 0] != 0).any()


def test_bce_negative_gives_unknown_entries_a_gradient():
    x, y = make_batch(seed=6)
    x.requires_grad_(True)
    losses.bce(x, y, unknown="negative").backward()
    assert (x.grad[y == 0] > 0).all()  # pushed towards "absent"


@pytest.mark.parametrize("gamma", [1.0, 3.0, -1.0])
def test_partial_bce_gradient_is_g_times_bce_gradient(gamma):
    x, y = make_batch(seed=7, n=6, c=7)
    alpha, beta = losses.partial_bce_coefficients(gamma)
    grads = []
    for fn in (lambda t: losses.partial_bce(t, y, alpha, beta, gamma), lambda t: losses.bce(t, y)):
        t = x.clone().requires_grad_(True)
        fn(t).backward()
        grads.append(t.grad)
    for i in range(y.shape[0]):
        known = y[i] != 0
        if not known.any():
            continue
        p_y = known.sum().item() / y.shape[1]
        g = alpha * p_y ** gamma + beta
        torch.testing.assert_close(grads[0][i, known], g * grads[1][i, known], rtol=1e-12, atol=0)


# --------------------------------------------------------------------------- ASL edge cases

@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("gamma_neg", [0.0, 0.5, 4.0])
@pytest.mark.parametrize("focal_grad", [False, True])
def test_asl_negatives_below_margin_have_zero_loss_and_gradient(from_logits, gamma_neg, focal_grad):
    clip = 0.2
    probs = torch.tensor([[0.0, 0.05, 0.1, 0.19, 0.2]], dtype=F64)  # all p <= clip, incl. p == clip
    x = torch.logit(probs.clamp(min=1e-30)) if from_logits else probs
    x = x.clone().requires_grad_(True)
    y = -torch.ones_like(probs, dtype=torch.int8)
    loss = losses.asl(x, y, gamma_neg=gamma_neg, clip=clip, from_logits=from_logits, focal_grad=focal_grad)
    loss.backward()
    assert loss.item() == 0.0
    assert (x.grad == 0).all()
    # just above the margin the negative counts again
    above = (torch.logit(torch.tensor([[0.3]], dtype=F64)) if from_logits
             else torch.tensor([[0.3]], dtype=F64))
    assert losses.asl(above, y[:, :1], gamma_neg=gamma_neg, clip=clip, from_logits=from_logits) > 0


def test_asl_margin_shifts_negatives_only():
    x = torch.tensor([[-3.0]], dtype=F64)  # p ~ 0.047 < clip
    pos = losses.asl(x, torch.ones(1, 1, dtype=torch.int8), clip=0.05)
    assert pos.item() == pytest.approx(-math.log(sigmoid(-3.0)), rel=1e-12)  # gamma_pos = 0


@pytest.mark.parametrize("seed", [0, 1])
def test_asl_without_margin_and_focusing_is_summed_bce(seed):
    x, y = make_batch(seed=seed, n=4, c=5)
    n, c = y.shape
    got = losses.asl(x, y, gamma_pos=0.0, gamma_neg=0.0, clip=0.0)
    torch.testing.assert_close(got, n * c * losses.bce(x, y, unknown="ignore"), rtol=1e-12, atol=0)
    mean = losses.asl(x, y, gamma_pos=0.0, gamma_neg=0.0, clip=0.0, reduction="mean")
    torch.testing.assert_close(mean, losses.bn_bce(x, y), rtol=1e-12, atol=0)


def test_asl_sum_scales_with_batch_and_mean_does_not():
    x, y = make_batch(seed=8)
    xx, yy = torch.cat([x, x]), torch.cat([y, y])
    torch.testing.assert_close(losses.asl(xx, yy), 2 * losses.asl(x, y))
    torch.testing.assert_close(losses.asl(xx, yy, reduction="mean"), losses.asl(x, y, reduction="mean"))


def test_asl_probabilities_outside_unit_interval():
    eps = 1e-8
    x = torch.tensor([[1.3, -0.2, 0.7, 1.2, -0.4, 0.6]], dtype=F64, requires_grad=True)
    y = torch.tensor([[1, 1, 1, -1, -1, -1]], dtype=torch.int8)
    loss = losses.asl(x, y, gamma_pos=1.0, gamma_neg=4.0, clip=0.05, from_logits=False, eps=eps)
    loss.backward()
    assert torch.isfinite(loss)
    expected = asl_reference(x.tolist(), y.tolist(), 1.0, 4.0, 0.05, from_logits=False, eps=eps)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    outside = (x.detach() < eps) | (x.detach() > 1 - eps)
    assert (x.grad[outside] == 0).all()  # the clamp is active there: no gradient
    assert (x.grad[~outside] != 0).all()
    # a positive scored above 1 is clamped to 1 - eps: (almost) no loss; a negative below 0
    # is clamped to eps <= clip: exactly no loss
    assert losses.asl(x[:, :1], y[:, :1], from_logits=False, eps=eps).item() == pytest.approx(0.0, abs=1e-7)
    assert losses.asl(x[:, 4:5], y[:, 4:5], from_logits=False, eps=eps).item() == 0.0


def test_asl_does_not_touch_global_grad_mode():
    x, y = make_batch(seed=9)
    x.requires_grad_(True)
    with torch.no_grad():
        for focal_grad in (False, True):
            loss = losses.asl(x, y, focal_grad=focal_grad)
            assert not loss.requires_grad
            assert not torch.is_grad_enabled()
    assert torch.is_grad_enabled()
    assert losses.asl(x, y).requires_grad


# --------------------------------------------------------------------------- dtypes and extremes

@pytest.mark.parametrize("name", list(LOSS_CALLS))
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_inputs_give_float32_loss(name, dtype):
    x, y = make_batch(seed=10)
    low = x.to(dtype).requires_grad_(True)
    loss = LOSS_CALLS[name](low, y)
    assert loss.dtype == torch.float32
    reference = LOSS_CALLS[name](low.detach().double(), y)
    # asl_probs rounds sigmoid(x) itself to the low precision before the loss is computed
    assert loss.item() == pytest.approx(reference.item(), rel=1e-2 if name == "asl_probs" else 1e-5)
    loss.backward()
    assert low.grad.dtype == dtype and torch.isfinite(low.grad.float()).all()


@pytest.mark.parametrize("name", list(LOSS_CALLS))
def test_loss_under_cpu_autocast_is_float32(name):
    x, y = make_batch(seed=16)
    layer = torch.nn.Linear(5, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = layer(x.float())
        assert logits.dtype == torch.bfloat16
        loss = LOSS_CALLS[name](logits, y)
    assert loss.dtype == torch.float32
    loss.backward()
    assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()


@pytest.mark.parametrize("name", list(LOSS_CALLS))
def test_float32_and_float64_are_kept(name):
    x, y = make_batch(seed=11)
    assert LOSS_CALLS[name](x, y).dtype == F64
    assert LOSS_CALLS[name](x.float(), y).dtype == torch.float32


@pytest.mark.parametrize("name", list(LOSS_CALLS) + ["asl_gamma_half_focal"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_extreme_logits_are_finite(name, dtype):
    calls = dict(LOSS_CALLS, asl_gamma_half_focal=lambda x, y: losses.asl(
        x, y, gamma_pos=0.5, gamma_neg=0.5, clip=0.0, focal_grad=True))
    x = torch.tensor([[100.0, -100.0, 100.0, -100.0, 30.0, -30.0]], dtype=dtype).repeat(2, 1)
    y = torch.tensor([[1, 1, -1, -1, 0, 0], [-1, -1, 1, 1, 1, -1]], dtype=torch.int8)
    x.requires_grad_(True)
    loss = calls[name](x, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad.float()).all()


def test_bce_extreme_values():
    x = torch.tensor([[100.0, -100.0]])
    y = torch.tensor([[-1, 1]], dtype=torch.int8)
    assert losses.bce(x, y).item() == pytest.approx(100.0, rel=1e-6)  # (100 + 100) / 2
    assert losses.bn_bce(x, y).item() == pytest.approx(100.0, rel=1e-6)
    assert losses.asl(x, y, gamma_neg=0.0, clip=0.0).item() == pytest.approx(200.0, rel=1e-6)


@pytest.mark.parametrize("name", list(LOSS_CALLS))
def test_no_known_label_gives_zero_without_nan(name):
    x = torch.randn(3, 4, dtype=F64, requires_grad=True)
    y = torch.zeros(3, 4, dtype=torch.int8)
    loss = LOSS_CALLS[name](x, y)
    loss.backward()
    assert loss.item() == 0.0
    assert (x.grad == 0).all()


@pytest.mark.parametrize("gamma", [-1.0, -3.0])
def test_partial_bce_negative_gamma_row_without_labels(gamma):
    x, y = make_batch(seed=12)  # row 2 has no known label
    x.requires_grad_(True)
    alpha, beta = losses.partial_bce_coefficients(gamma)
    loss = losses.partial_bce(x, y, alpha, beta, gamma)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all() and (x.grad[2] == 0).all()


def test_empty_batch():
    x = torch.zeros(0, 5)
    y = torch.zeros(0, 5, dtype=torch.int8)
    for fn in LOSS_CALLS.values():
        assert fn(x, y).item() == 0.0


# --------------------------------------------------------------------------- validation

@pytest.mark.parametrize("name", ["bce", "partial_bce", "bn_bce", "asl"])
def test_bad_inputs_name_the_argument(name):
    fn = getattr(losses, name)
    scores_name = "x" if name == "asl" else "logits"
    y = torch.ones(2, 3, dtype=torch.int8)
    with pytest.raises(ValueError, match=f"{scores_name} and y"):
        fn(torch.zeros(2, 4), y)
    with pytest.raises(TypeError, match=scores_name):
        fn(torch.zeros(2, 3, dtype=torch.long), y)
    with pytest.raises(ValueError, match="y must hold values"):
        fn(torch.zeros(2, 3), torch.full((2, 3), 2, dtype=torch.int8))
    with pytest.raises(ValueError, match="y must have shape"):
        fn(torch.zeros(6), torch.ones(6, dtype=torch.int8))
    with pytest.raises(TypeError, match="y must be a torch.Tensor"):
        fn(torch.zeros(2, 3), [[1, 1, 1], [1, 1, 1]])


@pytest.mark.parametrize("call,exc,words", [
    (lambda x, y: losses.bce(x, y, unknown="zero"), ValueError, "unknown"),
    (lambda x, y: losses.partial_bce(x, y, alpha="a"), TypeError, "alpha"),
    (lambda x, y: losses.partial_bce(x, y, gamma=float("inf")), ValueError, "gamma"),
    (lambda x, y: losses.bn_bce(x, y, per_image=1), TypeError, "per_image"),
    (lambda x, y: losses.asl(x, y, gamma_neg=-1.0), ValueError, "gamma_neg"),
    (lambda x, y: losses.asl(x, y, clip=1.5), ValueError, "clip"),
    (lambda x, y: losses.asl(x, y, reduction="max"), ValueError, "reduction"),
    (lambda x, y: losses.asl(x, y, eps=0.0), ValueError, "eps"),
    (lambda x, y: losses.asl(x, y, from_logits="yes"), TypeError, "from_logits"),
    (lambda x, y: losses.asl(x, y, focal_grad=None), TypeError, "focal_grad"),
])
def test_bad_options_name_the_option(call, exc, words):
    x, y = make_batch(seed=13)
    with pytest.raises(exc, match=words):
        call(x, y)


def test_inputs_are_not_modified():
    x, y = make_batch(seed=14)
    x0, y0 = x.clone(), y.clone()
    for fn in LOSS_CALLS.values():
        fn(x, y)
    assert torch.equal(x, x0) and torch.equal(y, y0)


# --------------------------------------------------------------------------- registry

def test_registry_names():
    assert {"bce", "bce_negative", "partial_bce", "bn_bce", "asl"} <= set(losses.LOSSES)


def test_create_loss_binds_options():
    x, y = make_batch(seed=15)
    torch.testing.assert_close(losses.create_loss("bce")(x, y), losses.bce(x, y))
    torch.testing.assert_close(losses.create_loss("bce_negative")(x, y), losses.bce(x, y, unknown="negative"))
    torch.testing.assert_close(losses.create_loss("partial_bce", gamma=-1.0, alpha=4 / 9, beta=5 / 9)(x, y),
                               losses.partial_bce(x, y, 4 / 9, 5 / 9, -1.0))
    torch.testing.assert_close(losses.create_loss("bn_bce", per_image=True)(x, y), losses.bn_bce(x, y, per_image=True))
    torch.testing.assert_close(losses.create_loss("asl", gamma_neg=2.0, clip=0.1, reduction="mean")(x, y),
                               losses.asl(x, y, gamma_neg=2.0, clip=0.1, reduction="mean"))
    assert not torch.allclose(losses.create_loss("asl", gamma_neg=2.0)(x, y), losses.asl(x, y))


def test_create_loss_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="unknown loss 'focal'") as info:
        losses.create_loss("focal")
    for name in losses.LOSSES:
        assert name in str(info.value)
    with pytest.raises(TypeError, match="name"):
        losses.create_loss(3)


def test_create_loss_unknown_option_lists_valid_options():
    with pytest.raises(TypeError, match="'gamma'") as info:
        losses.create_loss("asl", gamma=2.0)
    for option in ("gamma_pos", "gamma_neg", "clip", "from_logits", "focal_grad", "reduction", "eps"):
        assert option in str(info.value)
    with pytest.raises(TypeError, match="'unknown'"):  # fixed by the alias
        losses.create_loss("bce_negative", unknown="ignore")


def test_create_loss_checks_option_values_at_once():
    with pytest.raises(ValueError, match="clip"):
        losses.create_loss("asl", clip=2.0)


@pytest.mark.parametrize("loss,kwargs", [(losses.bce, {}), (losses.bce, {"unknown": "negative"}),
                                         (losses.partial_bce, {}), (losses.bn_bce, {}),
                                         (losses.bn_bce, {"per_image": True})])
def test_per_image_reduction_averages_to_the_loss(loss, kwargs):
    x, y = make_batch(seed=21)
    per_image = loss(x, y, reduction="none", **kwargs)
    assert per_image.shape == (x.shape[0],)
    torch.testing.assert_close(per_image.mean(), loss(x, y, **kwargs))
    torch.testing.assert_close(loss(x, y, reduction="sum", **kwargs), per_image.sum())


def test_asl_per_image_reduction_sums_to_the_loss():
    x, y = make_batch(seed=22)
    per_image = losses.asl(x, y, reduction="none")
    assert per_image.shape == (x.shape[0],)
    torch.testing.assert_close(per_image.sum(), losses.asl(x, y))
    with pytest.raises(ValueError, match="reduction must be one of 'mean', 'sum', 'none', got 'max'"):
        losses.bce(x, y, reduction="max")


def test_asl_on_probabilities_outside_the_unit_interval_both_readings():
    q = torch.tensor([[1.4, 0.3, 1.2], [0.6, 1.3, 0.02]], dtype=F64, requires_grad=True)
    y = torch.tensor([[1, -1, -1], [1, 1, -1]], dtype=torch.int8)
    grad_both = torch.autograd.grad(losses.asl(q, y, from_logits=False), q)[0]
    assert grad_both[0, 0] == 0 and grad_both[1, 1] == 0 and grad_both[0, 2] == 0  # p > 1: clamped, no gradient
    authors = losses.asl(q, y, from_logits=False, prob_clamp="authors")
    grad = torch.autograd.grad(authors, q)[0]
    # positives keep -1/p above 1 (the loss keeps pushing p up); a negative above 1 + clip has none
    torch.testing.assert_close(grad[0, 0], torch.tensor(-1 / 1.4, dtype=F64))
    torch.testing.assert_close(grad[1, 1], torch.tensor(-1 / 1.3, dtype=F64))
    assert grad[0, 2] == 0 and grad[1, 2] == 0  # 1.2 > 1 + clip; 0.02 below the margin
    inside = torch.tensor([[0.7, 0.3]], dtype=F64)
    y2 = torch.tensor([[1, -1]], dtype=torch.int8)
    torch.testing.assert_close(losses.asl(inside, y2, from_logits=False, prob_clamp="authors"),
                               losses.asl(inside, y2, from_logits=False))
    with pytest.raises(ValueError, match="prob_clamp must be 'both' or 'authors'"):
        losses.asl(inside, y2, from_logits=False, prob_clamp="upper")
