"""Cevikalp et al. 2019: the ramp and WARP losses against literal transcriptions of the paper,
their gradients against Eq. 7-8, the rank estimator against its exact distribution, label
propagation against brute force, and the SS-RML method in the training loop."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlrobust import losses
from mlrobust.config import DataConfig, ExperimentConfig, LossConfig, ModelConfig, TrainConfig
from mlrobust.data import DataSplits, FeatureMaps
from mlrobust.experiments import run_experiment
from mlrobust.methods.cevikalp import (RMLCMethod, SSRMLMethod, heat_kernel_scale, nearest_labelled,
                                       propagate_labels)
from mlrobust.options import ConfigError

S = -0.8


def ramp_literal(t: float, s: float = S) -> float:
    """R_s(t) = min(1 - s, max(0, 1 - t)), §2.1, for one number."""
    return min(1 - s, max(0.0, 1 - t))


def harmonic(r: int) -> float:
    return sum(1.0 / j for j in range(1, r + 1))


def rml_literal(f: torch.Tensor, y: torch.Tensor, ranks: torch.Tensor, kappa: float = 5.0, s: float = S,
                hinge_pairs: bool = False) -> float:
    """Eq. 1 without the trace term, loops over images, positives and negatives, with given
    ranks; mean over images. ``hinge_pairs``: WARP (hinge pairs, no kappa term)."""
    total = 0.0
    for i in range(f.shape[0]):
        for j in range(f.shape[1]):
            if y[i, j] != 1:
                continue
            for k in range(f.shape[1]):
                if y[i, k] == -1:
                    t = float(f[i, j] - f[i, k])
                    total += harmonic(int(ranks[i, j])) * (max(0.0, 1 - t) if hinge_pairs else ramp_literal(t, s))
        if not hinge_pairs:
            for j in range(f.shape[1]):
                if y[i, j] != 0:
                    total += kappa * ramp_literal(float(y[i, j]) * float(f[i, j]), s)
    return total / f.shape[0]


def _example(seed: int = 0, n: int = 5, c: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(n, c, dtype=torch.float64, generator=g) * 1.5
    y = torch.where(torch.rand(n, c, generator=g) < 0.35, 1, -1).to(torch.int8)
    y[0, 1] = 0  # an unknown label takes part in nothing
    return f, y


@given(st.floats(-5, 5, allow_nan=False), st.floats(-0.99, 0.0))
def test_ramp_is_the_difference_of_two_hinges(t, s):
    value = float(losses.ramp(torch.tensor(t, dtype=torch.float64), s=s))
    assert value == pytest.approx(ramp_literal(t, s), abs=1e-12)
    assert 0.0 <= value <= 1 - s + 1e-12


def test_soft_ramp_keeps_a_slope_past_the_ramp():
    t = torch.tensor([-3.0, -2.0], dtype=torch.float64)
    hard, soft = losses.ramp(t), losses.ramp(t, beta=0.9)
    assert float(hard[0]) == pytest.approx(1.8) and float(hard[1]) == pytest.approx(1.8)
    assert float(soft[0] - soft[1]) == pytest.approx(0.1)  # slope 1 - beta


def test_rank_weight_is_the_harmonic_number():
    r = torch.arange(0, 200)
    expected = torch.tensor([harmonic(int(k)) for k in r], dtype=torch.float64)
    assert torch.allclose(losses.rank_weight(r), expected, atol=1e-12)


def _fixed_ranks(f, y, seed):
    return losses.warp_ranks(f, y, generator=torch.Generator().manual_seed(seed))[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rml_and_warp_equal_the_literal_eq1(seed):
    f, y = _example(seed)
    ranks = _fixed_ranks(f, y, seed)  # the same draws as the losses below make
    rml = losses.rml(f, y, generator=torch.Generator().manual_seed(seed))
    warp = losses.warp(f, y, generator=torch.Generator().manual_seed(seed))
    assert float(rml) == pytest.approx(rml_literal(f, y, ranks), rel=1e-10)
    assert float(warp) == pytest.approx(rml_literal(f, y, ranks, hinge_pairs=True), rel=1e-10)


def test_rml_gradient_is_eq_7_and_8_for_a_linear_classifier():
    """Eq. 7-8 for scores f = W^T x, with per-image weights s_i: autograd of the ramp form
    equals the paper's case-wise gradient (float64, away from the kinks)."""
    g = torch.Generator().manual_seed(3)
    n, d, c = 6, 4, 5
    x = torch.randn(n, d, dtype=torch.float64, generator=g)
    w = (torch.randn(d, c, dtype=torch.float64, generator=g) * 0.8).requires_grad_(True)
    y = torch.where(torch.rand(n, c, generator=g) < 0.4, 1, -1).to(torch.int8)
    s_i = torch.rand(n, dtype=torch.float64, generator=g) + 0.5
    kappa = 5.0
    ranks = losses.warp_ranks(x @ w.detach(), y, generator=torch.Generator().manual_seed(9))[0]
    loss = losses.rml(x @ w, y, weights=s_i, kappa=kappa, generator=torch.Generator().manual_seed(9))
    (auto,) = torch.autograd.grad(loss, w)
    paper = torch.zeros(d, c, dtype=torch.float64)
    f = (x @ w).detach()
    for i in range(n):
        for j in range(c):
            if y[i, j] == 1:
                for k in range(c):
                    if y[i, k] == -1:
                        psi = (1 - f[i, j] + f[i, k] > 0) and (S - f[i, j] + f[i, k] < 0)
                        if psi:  # Eq. 7
                            paper[:, j] -= s_i[i] * harmonic(int(ranks[i, j])) * x[i] / n
                            paper[:, k] += s_i[i] * harmonic(int(ranks[i, j])) * x[i] / n
            t = float(y[i, j]) * f[i, j]
            if 1 - t > 0 and S - t < 0:  # Eq. 8, for the signed score y_ij w_j^T x_i
                paper[:, j] -= s_i[i] * kappa * float(y[i, j]) * x[i] / n
    assert torch.allclose(auto, paper, atol=1e-12)


def test_rml_gradcheck_and_bounded_per_sample_gradient():
    f, y = _example(4)
    f = f.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: losses.rml(z, y, generator=torch.Generator().manual_seed(0)), (f,))
    # a hopelessly mislabelled score (far past the ramp) gets no gradient from the ramp; the hinge keeps pulling
    z = torch.tensor([[-10.0, 0.0]], dtype=torch.float64, requires_grad=True)
    yy = torch.tensor([[1, -1]], dtype=torch.int8)
    (g_ramp,) = torch.autograd.grad(losses.rml(z, yy, generator=torch.Generator().manual_seed(0)), z)
    (g_hinge,) = torch.autograd.grad(losses.warp(z, yy, generator=torch.Generator().manual_seed(0)), z)
    assert float(g_ramp[0, 0]) == 0.0 and float(g_hinge[0, 0]) < 0


def _exact_rank_expectation(n_neg: int, v: int, m: int, rounding: str = "floor") -> float:
    """E[floor((m-1)/q)] with q the draw of the first of v violators among n_neg negatives
    drawn without replacement (negative hypergeometric); q = n_neg + 1 when v = 0."""
    if v == 0:
        q_values = {n_neg + 1: 1.0}
    else:
        q_values = {}
        for q in range(1, n_neg - v + 2):  # first q-1 draws non-violating, q-th violating
            p = v / (n_neg - q + 1)
            for a in range(q - 1):
                p *= (n_neg - v - a) / (n_neg - a)
            q_values[q] = p
    rnd = math.floor if rounding == "floor" else round
    return sum(p * rnd((m - 1) / q) for q, p in q_values.items())


@pytest.mark.parametrize("rounding", ["floor", "round"])
def test_rank_estimator_matches_its_exact_expectation(rounding):
    """One positive, 9 negatives of which 3 violate: the mean sampled rank over many draws
    equals the negative-hypergeometric expectation (independent draws per positive)."""
    m = 10
    f = torch.zeros(4000, m)
    f[:, 0] = 1.5  # the positive
    f[:, 1:4] = 1.0  # 3 negatives within the margin: 1 - 1.5 + 1.0 = 0.5 >= 0
    f[:, 4:] = -2.0  # 6 negatives well below
    y = -torch.ones(4000, m, dtype=torch.int8)
    y[:, 0] = 1
    r, q = losses.warp_ranks(f, y, rounding=rounding, generator=torch.Generator().manual_seed(0))
    expected = _exact_rank_expectation(9, 3, m, rounding)
    assert float(r[:, 0].double().mean()) == pytest.approx(expected, abs=0.08)
    assert float(q[:, 0].double().mean()) == pytest.approx(10 / 4, abs=0.05)  # E[q] = (n+1)/(v+1)
    assert bool((r[:, 1:] == 0).all())


def test_rank_without_violation_and_validation():
    f = torch.tensor([[5.0, -5.0, -5.0]])
    y = torch.tensor([[1, -1, -1]], dtype=torch.int8)
    r, q = losses.warp_ranks(f, y)
    assert int(q[0, 0]) == 3 and float(losses.warp(f, y)) == 0.0
    with pytest.raises(ValueError, match="rank_rounding"):
        losses.rml(f, y, rank_rounding="ceil")
    with pytest.raises(ValueError, match="s must be in"):
        losses.rml(f, y, s=0.5)
    with pytest.raises(ValueError, match="weights must have shape"):
        losses.rml(f, y, weights=torch.ones(2))


def test_losses_are_registered_and_seeded_by_the_default_generator():
    f, y = _example(5)
    loss = losses.create_loss("rml", beta=0.9, rank_rounding="round")
    torch.manual_seed(1)
    a = loss(f, y)
    torch.manual_seed(1)
    b = losses.rml(f, y, beta=0.9, rank_rounding="round")
    assert float(a) == float(b)


# --------------------------------------------------------------------------- propagation


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 30), st.integers(1, 12), st.integers(1, 6), st.integers(0, 10**6))
def test_nearest_labelled_equals_brute_force(n_query, n_ref, dim, seed):
    g = torch.Generator().manual_seed(seed)
    query, ref = torch.randn(n_query, dim, generator=g), torch.randn(n_ref, dim, generator=g)
    d, index = nearest_labelled(query, ref, chunk=7)
    brute = torch.cdist(query.double(), ref.double())
    assert torch.allclose(d.double(), brute.min(dim=1).values, atol=1e-5)
    assert torch.allclose(brute[torch.arange(n_query), index], brute.min(dim=1).values, atol=1e-9)


def test_propagate_labels_copies_the_neighbour_with_heat_kernel_weights():
    features = torch.tensor([[0.0, 0.0], [10.0, 0.0], [1.0, 0.0], [9.0, 0.0], [0.0, 3.0]])
    observed = torch.tensor([[1, -1], [-1, 1], [0, 0], [0, 0], [0, 0]], dtype=torch.int8)
    prop = propagate_labels(features, observed, t=2.0)
    assert prop.labels.tolist() == [[1, -1], [-1, 1], [1, -1], [-1, 1], [1, -1]]
    assert prop.unlabelled.tolist() == [2, 3, 4] and prop.neighbour.tolist() == [0, 1, 0]
    assert torch.allclose(prop.weights, torch.tensor([1, 1, math.exp(-0.5), math.exp(-0.5), math.exp(-1.5)]))
    assert heat_kernel_scale(torch.tensor([1.0, 2.0, 6.0]), "median", 2, 5) == 2.0
    assert heat_kernel_scale(torch.tensor([1.0, 2.0, 6.0]), "code", 2, 5) == pytest.approx(3.0 * 3 / 5)
    with pytest.raises(ValueError, match="heat-kernel scale"):
        heat_kernel_scale(torch.ones(1), -1.0, 1, 2)
    with pytest.raises(ValueError, match="no labelled"):
        propagate_labels(features, torch.zeros(5, 2, dtype=torch.int8))


# --------------------------------------------------------------------------- methods in the loop


def _features_data(n=48, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    truth = -torch.ones(n, c, dtype=torch.int8)
    truth[torch.arange(n), torch.arange(n) % c] = 1
    maps = torch.randn(n, 6, 2, 2, generator=g) + truth.float().repeat(1, 2)[:, :6, None, None]
    return FeatureMaps(maps, truth, [f"c{i}" for i in range(c)])


def _cfg(**train):
    cfg = ExperimentConfig(name="t", method="supervised")
    cfg.data = DataConfig(augment="none")
    cfg.model = ModelConfig(backbone="features", head="gap")
    cfg.loss = LossConfig("rml")
    cfg.train = TrainConfig(epochs=4, batch_size=8, lr=0.01, seed=0, device="cpu", checkpoint=False, **train)
    return cfg


def test_ss_rml_refreshes_labels_and_resumes_bit_exactly(tmp_path):
    data = _features_data()
    observed = torch.zeros_like(data.labels)
    observed[:8] = data.labels[:8]
    splits = DataSplits(train=data, test=data)

    def run(resume_after=None):
        cfg = _cfg()
        cfg.output_dir, cfg.train.checkpoint = str(tmp_path / ("b" if resume_after else "a")), True
        method = SSRMLMethod(observed, refresh_every=2, truth=data.labels)
        if resume_after:
            cfg.train.epochs = resume_after
            run_experiment(cfg, data=splits, train_labels=observed, method=method)
            cfg.train.epochs = 4
            cfg = ExperimentConfig.from_dict(cfg.to_dict())
            method = SSRMLMethod(observed, refresh_every=2, truth=data.labels)
            return run_experiment(cfg, data=splits, train_labels=observed, method=method, resume=True), method
        return run_experiment(cfg, data=splits, train_labels=observed, method=method), method

    straight, m1 = run()
    assert [int(r["epoch"]) for r in m1.propagation.refreshes] == [0, 2]
    assert bool((straight.trainer.train_labels != 0).all())  # every image has propagated labels
    assert 0 < float(m1.weights[8:].mean()) < 1 and bool((m1.weights[:8] == 1).all())
    assert 0 <= m1.propagation.refreshes[-1]["precision"] <= 1
    assert "propagation_precision" in straight.history[0]
    with pytest.raises(ValueError, match="epochs"):  # a changed epochs count is refused on resume
        run(resume_after=3)


def test_ss_rml_factory_validates_its_config():
    data = _features_data()
    cfg = _cfg()
    cfg.method, cfg.data.protocol, cfg.data.protocol_args = "ss_rml", "semi_supervised", {"n_labeled": 8}
    cfg.method_args = {"refresh_every": 2, "t": "code", "warm_start_epochs": 1}
    result = run_experiment(cfg, data=DataSplits(train=data, test=data), write=False)
    assert result.trainer.method.propagation.refreshes[0]["t"] > 0
    cfg.loss = LossConfig("bce")
    with pytest.raises(ValueError, match="loss.name"):
        run_experiment(cfg, data=DataSplits(train=data, test=data), write=False)
    cfg.loss = LossConfig("rml")
    cfg.method_args = {"t": "mean"}
    with pytest.raises(ConfigError, match="method_args.t"):
        run_experiment(cfg, data=DataSplits(train=data, test=data), write=False)


def test_rmlc_adds_the_trace_term():
    data = _features_data()
    cfg = _cfg(weight_decay=0.0)
    cfg.method, cfg.method_args = "rmlc", {"lam": 0.5}
    result = run_experiment(cfg, data=DataSplits(train=data, test=data), write=False)
    method = result.trainer.method
    assert isinstance(method, RMLCMethod) and method.lam == 0.5
    batch_images = data.load_batch(torch.arange(8))
    from mlrobust.engine import Batch
    batch = Batch(batch_images, data.labels[:8], torch.arange(8))
    torch.manual_seed(0)
    with_trace, logits = method.training_loss(result.trainer, batch)
    torch.manual_seed(0)
    plain = losses.rml(logits, data.labels[:8])
    w = result.trainer.module.head.fc.weight
    assert float((with_trace - plain).detach()) == pytest.approx(float(0.25 * (w * w).sum().detach()), rel=1e-6)
