"""Huynh & Elhamifar 2020 (IMCL): Joint Nonnegative OMP against a literal per-sample
transcription of Algorithm 2, scikit-learn's OMP and scipy's NNLS; the smoothness terms
(Eq. 5, 6) against literal sums and hand-worked numbers, their gradients in float64; the
label graph against hand counts; the method in the training loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import nnls
from sklearn.linear_model import OrthogonalMatchingPursuit, orthogonal_mp

import mlrobust.methods.huynh  # noqa: F401  (registers the method and its bench cases)
from mlrobust import losses
from mlrobust.bench import BenchSettings, bench_methods
from mlrobust.config import DataConfig, ExperimentConfig, LossConfig, ModelConfig, TrainConfig
from mlrobust.data import DataSplits, FeatureMaps, ShapeScenes
from mlrobust.experiments import run_experiment
from mlrobust.methods.base import BENCH_CASES
from mlrobust.methods.huynh import (IMCLMethod, LabelGraph, cooccurrence_graph, feature_smoothness, graph_step,
                                    identity_graph, imcl_loss, impute_labels, joint_nonnegative_omp,
                                    label_smoothness, pooled_features)
from mlrobust.models import create_model
from mlrobust.options import ConfigError
from test_engine import Interrupt  # a crash at the start of an epoch

F64 = torch.float64


# --------------------------------------------------------------------------- Algorithm 2, literally


def omp_literal(y, f, atoms_y, atoms_f, k, lam_y, lam_f, exclude=None):
    """Algorithm 2 as printed, one query at a time (numpy, float64), with tanh(x) ≈ x and the
    label atom A y_s in step 5. Returns (c, c_bar, events) with c[i, i'] = c_{i',i} and the
    counts of breaks (step 6) and of refits that clipped a coefficient (steps 9-10)."""
    n, m = y.shape[0], atoms_y.shape[0]
    c, c_bar = np.zeros((n, m)), np.zeros((n, m))
    events = {"break": 0, "clip": 0}
    for i in range(n):  # step 1
        r_y, r_f, support = y[i].copy(), f[i].copy(), []  # step 2
        for _ in range(k):  # step 3
            best, s = -np.inf, None
            for j in range(m):  # step 4
                if j in support or (exclude is not None and exclude[i, j]):
                    continue
                score = 0.0
                if atoms_y[j] @ atoms_y[j] > 0:
                    score += lam_y * (r_y @ atoms_y[j]) ** 2 / (atoms_y[j] @ atoms_y[j])
                if atoms_f[j] @ atoms_f[j] > 0:
                    score += lam_f * (r_f @ atoms_f[j]) ** 2 / (atoms_f[j] @ atoms_f[j])
                if score > best:
                    best, s = score, j
            if s is None or r_y @ atoms_y[s] <= 0 or r_f @ atoms_f[s] <= 0:  # step 5
                events["break"] += 1
                break  # step 6
            support.append(s)  # step 8
            sol_y = np.linalg.lstsq(atoms_y[support].T, y[i], rcond=None)[0]  # step 9
            sol_f = np.linalg.lstsq(atoms_f[support].T, f[i], rcond=None)[0]  # step 10
            events["clip"] += int((sol_y < 0).any() or (sol_f < 0).any())
            c[i], c_bar[i] = 0.0, 0.0
            c[i, support], c_bar[i, support] = np.maximum(sol_y, 0), np.maximum(sol_f, 0)
            r_y = y[i] - c[i, support] @ atoms_y[support]  # step 11
            r_f = f[i] - c_bar[i, support] @ atoms_f[support]  # step 12
    return c, c_bar, events


def _problem(seed: int, n: int = 7, m: int = 9, classes: int = 10, dim: int = 8):
    """Imputed-label-like vectors in [-0.5, 1] and post-ReLU-like features, float64."""
    g = torch.Generator().manual_seed(seed)
    y = torch.rand(n, classes, generator=g, dtype=F64) * 1.5 - 0.5
    atoms_y = torch.rand(m, classes, generator=g, dtype=F64) * 1.5 - 0.5
    f = torch.rand(n, dim, generator=g, dtype=F64)
    atoms_f = torch.rand(m, dim, generator=g, dtype=F64) * (torch.rand(m, dim, generator=g) < 0.7)
    exclude = torch.rand(n, m, generator=g) < 0.15
    return y, f, atoms_y, atoms_f, exclude


def test_omp_equals_the_literal_transcription():
    events = {"break": 0, "clip": 0}
    for seed in range(40):
        y, f, atoms_y, atoms_f, exclude = _problem(seed)
        k, lam_y, lam_f = 1 + seed % 5, [1.0, 0.5, 2.0, 0.0][seed % 4], [0.5, 1.0, 0.0, 0.7][seed % 4]
        sims = joint_nonnegative_omp(y, f, atoms_y, atoms_f, k, lam_y, lam_f, exclude)
        c, c_bar, ev = omp_literal(*(t.numpy() for t in (y, f, atoms_y, atoms_f)), k, lam_y, lam_f, exclude.numpy())
        np.testing.assert_allclose(sims.c.numpy(), c, atol=1e-10)
        np.testing.assert_allclose(sims.c_bar.numpy(), c_bar, atol=1e-10)
        assert bool((sims.selected.sum(1) <= k).all()) and not bool((sims.c[exclude] != 0).any())
        events = {key: events[key] + ev[key] for key in events}
    assert events["break"] > 10 and events["clip"] > 10  # both departures from plain OMP were exercised


def test_method_similarities_are_algorithm_2_over_the_batch():
    """The method's in-batch call: atoms A y over the batch itself, no image selects itself."""
    g = torch.Generator().manual_seed(1)
    observed = torch.where(torch.rand(12, 6, generator=g) < 0.4, 1, -1).to(torch.int8)
    graph = cooccurrence_graph(observed, k_a=2)
    graph = LabelGraph(graph.neighbours, graph.weights.to(F64), graph.mask)
    method = IMCLMethod(graph, k=3, lambda_y=1.0, lambda_f=0.5)
    y, f = torch.rand(8, 6, generator=g, dtype=F64) * 1.5 - 0.5, torch.rand(8, 5, generator=g, dtype=F64)
    sims = method.similarities(y, f)
    atoms = (y @ graph.dense().T).numpy()
    c, c_bar, _ = omp_literal(y.numpy(), f.numpy(), atoms, f.numpy(), 3, 1.0, 0.5, np.eye(8, dtype=bool))
    np.testing.assert_allclose(sims.c.numpy(), c, atol=1e-10)
    np.testing.assert_allclose(sims.c_bar.numpy(), c_bar, atol=1e-10)
    assert float(sims.c.diagonal().abs().sum()) == 0.0 and int(sims.sizes.sum()) > 0


def test_omp_hand_worked_break():
    """y = (3, 1, 0), atoms u0 = (1,0,0), u1 = (1,1,0), u2 = (0,0,1), u3 = (0,-1,0), features
    equal to labels. Step 4: scores 9, 16/2, 0, 1 (times 2) -> u0, c = 3, r = (0, 1, 0).
    Next: u1 scores 1/2, u3 scores 1 but ⟨r, u3⟩ = -1 <= 0: step 5 stops. (Plain OMP would
    take u3 with coefficient -1 and fit y exactly.)"""
    y = torch.tensor([[3.0, 1.0, 0.0]], dtype=F64)
    atoms = torch.tensor([[1.0, 0, 0], [1, 1, 0], [0, 0, 1], [0, -1, 0]], dtype=F64)
    sims = joint_nonnegative_omp(y, y, atoms, atoms, 2, 1.0, 1.0)
    expected = torch.tensor([[3.0, 0.0, 0.0, 0.0]], dtype=F64)
    assert torch.allclose(sims.c, expected, atol=1e-12) and torch.allclose(sims.c_bar, expected, atol=1e-12)
    assert sims.selected.tolist() == [[True, False]]


def test_omp_hand_worked_clipping_and_nnls():
    """y = (1, 1, 0), atoms u0 = (2,0,1), u1 = (1,0,1), u2 = (0,1,0), u3 = (1,1,1), k = 3.
    Step 1: scores 4/5, 1/2, 1, 4/3 -> u3, c = 2/3, r = (1/3, 1/3, -2/3).
    Step 2: ⟨r, u⟩ = 0, -1/3, 1/3 for u0, u1, u2 -> u2 (score 1/9); LS on {u3, u2}: 1/2, 1/2.
    Step 3: r = (1/2, 0, -1/2); ⟨r, u0⟩ = 1/2 -> u0. LS on {u3, u2, u0} is exact with
    coefficients (-1, 2, 1); step 9 clips u3's to 0: c = (u0: 1, u2: 2), residual (-1,-1,-1),
    worse than the previous step's (1/2, 0, -1/2) and than NNLS on the same support
    (u2: 1, u0: 0.4, residual (0.2, 0, -0.4))."""
    y = torch.tensor([[1.0, 1.0, 0.0]], dtype=F64)
    atoms = torch.tensor([[2.0, 0, 1], [1, 0, 1], [0, 1, 0], [1, 1, 1]], dtype=F64)
    sims = joint_nonnegative_omp(y, y, atoms, atoms, 3, 1.0, 1.0)
    assert sims.support.tolist() == [[3, 2, 0]] and sims.selected.all()
    assert torch.allclose(sims.c, torch.tensor([[1.0, 0.0, 2.0, 0.0]], dtype=F64), atol=1e-12)
    x = atoms[[3, 2, 0]].T.numpy()
    coef, res = nnls(x, y[0].numpy())
    ours = float(torch.linalg.vector_norm(y[0] - sims.c[0] @ atoms))
    assert ours == pytest.approx(math.sqrt(3.0)) and res < ours - 0.5
    np.testing.assert_allclose(np.linalg.lstsq(x, y[0].numpy(), rcond=None)[0], [-1.0, 2.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(coef, [0.0, 1.0, 0.4], atol=1e-12)  # NNLS: residual (0.2, 0, -0.4)


def _path_is_nonnegative(x: np.ndarray, target: np.ndarray, path: np.ndarray) -> int:
    """The number of leading OMP steps in which plain OMP stays nonnegative: each new atom
    correlates positively with the residual before it, and each refit is positive."""
    residual, previous = target, np.zeros(x.shape[1], dtype=bool)
    for t in range(path.shape[1]):
        now = path[:, t] != 0
        new = np.flatnonzero(now & ~previous)
        if len(new) != 1 or x[:, new[0]] @ residual <= 0 or (path[now, t] <= 0).any():
            return t
        residual, previous = target - x @ path[:, t], now
    return path.shape[1]


def test_omp_agrees_with_sklearn_while_plain_omp_stays_nonnegative():
    """With features equal to labels and unit-norm atoms, the joint score is 2⟨r, u⟩², the
    criterion of plain OMP (sklearn: argmax |Xᵀr|). Where sklearn's whole path is
    nonnegative the two give the same coefficients; elsewhere they agree on the steps
    before the first negative one (then Algorithm 2 stops or clips, OMP goes on)."""
    agree = differ = 0
    for seed in range(60):
        rng = np.random.default_rng(seed)
        x = np.abs(rng.normal(size=(12, 15)))
        x /= np.linalg.norm(x, axis=0)
        target = x @ (rng.random(15) * (rng.random(15) < 0.3)) + 0.1 * rng.normal(size=12)
        k = 4
        path = orthogonal_mp(x, target, n_nonzero_coefs=k, return_path=True)
        nonzero = path != 0
        order = [int(np.flatnonzero(nonzero[:, t] & ~(nonzero[:, t - 1] if t else False))[0])
                 for t in range(path.shape[1])]
        t_ok = _path_is_nonnegative(x, target, path)
        q = torch.tensor(target[None])
        sims = joint_nonnegative_omp(q, q, torch.tensor(x.T), torch.tensor(x.T), k, 1.0, 1.0)
        ours = sims.support[0][sims.selected[0]].tolist()
        assert ours[:t_ok] == order[:t_ok]
        if t_ok == k:
            sk = OrthogonalMatchingPursuit(n_nonzero_coefs=k, fit_intercept=False).fit(x, target).coef_
            np.testing.assert_allclose(sims.c[0].numpy(), sk, atol=1e-10)
            agree += 1
        else:
            differ += 1
    assert agree >= 10 and differ >= 5


def test_omp_refit_is_clipped_least_squares_and_never_beats_nnls():
    """Steps 9-10 are max(0, least squares) on the final support: equal to numpy's lstsq
    where that is nonnegative (and then to NNLS), and never a smaller residual than NNLS."""
    same = 0
    for seed in range(30):
        y, f, atoms_y, atoms_f, _ = _problem(seed, n=4)
        sims = joint_nonnegative_omp(y, f, atoms_y, atoms_f, 4, 1.0, 0.5)
        for i in range(4):
            s = sims.support[i][sims.selected[i]].numpy()
            if len(s) == 0:
                continue
            for coef, atoms, target in ((sims.c, atoms_y, y), (sims.c_bar, atoms_f, f)):
                x, b = atoms[s].T.numpy(), target[i].numpy()
                ls = np.linalg.lstsq(x, b, rcond=None)[0]
                np.testing.assert_allclose(coef[i, s].numpy(), np.maximum(ls, 0), atol=1e-10)
                nn, res = nnls(x, b)
                assert res <= np.linalg.norm(b - x @ coef[i, s].numpy()) + 1e-10
                if (ls >= 0).all():
                    np.testing.assert_allclose(nn, ls, atol=1e-8)
                    same += 1
    assert same > 20


def test_omp_edge_cases_and_validation():
    y = torch.rand(3, 4)
    alone = joint_nonnegative_omp(y[:1], y[:1], y[:1], y[:1], 3, exclude=torch.ones(1, 1, dtype=torch.bool))
    assert not alone.selected.any() and alone.c.tolist() == [[0.0]]
    zero_atoms = joint_nonnegative_omp(y, y, torch.zeros(2, 4), torch.zeros(2, 4), 2)
    assert not zero_atoms.selected.any() and bool(torch.isfinite(zero_atoms.c).all())
    dup = torch.tensor([[1.0, 2.0, 0.5], [1.0, 2.0, 0.5]])  # two identical images: the second adds nothing
    sims = joint_nonnegative_omp(torch.tensor([[2.0, 4.0, 1.0]]), torch.ones(1, 2), dup, torch.ones(2, 2), 2)
    assert sims.selected.tolist() == [[True, False]] and sims.c.tolist() == [[pytest.approx(2.0, rel=1e-5), 0.0]]
    with pytest.raises(ValueError, match="must share C"):
        joint_nonnegative_omp(y, y, torch.rand(2, 5), y, 2)
    with pytest.raises(ValueError, match="k .* must be an int >= 1"):
        joint_nonnegative_omp(y, y, y, y, 0)
    with pytest.raises(ValueError, match="lambda_f must be"):
        joint_nonnegative_omp(y, y, y, y, 2, lambda_f=-1.0)
    with pytest.raises(ValueError, match="exclude must be a bool"):
        joint_nonnegative_omp(y, y, y, y, 2, exclude=torch.eye(3))


# --------------------------------------------------------------------------- labels and the graph


def test_impute_labels_is_eq_3_with_the_renormalisation_of_section_4_3():
    logits = torch.tensor([[0.0, math.log(3.0), 5.0, -5.0]])
    observed = torch.tensor([[0, 0, -1, 1]], dtype=torch.int8)
    assert torch.allclose(impute_labels(logits, observed, y_min=-1.0), torch.tensor([[0.0, 0.5, -1.0, 1.0]]))
    assert torch.allclose(impute_labels(logits, observed), torch.tensor([[0.25, 0.625, -0.5, 1.0]]))
    z = logits.clone().requires_grad_(True)
    impute_labels(z, observed, -1.0).sum().backward()
    assert z.grad[0, 2:].tolist() == [0.0, 0.0] and z.grad[0, 0] == pytest.approx(0.5)  # d(2p-1)/dx = 2p(1-p)
    with pytest.raises(ValueError, match="y_min"):
        impute_labels(logits, observed, y_min=1.0)


def test_cooccurrence_graph_by_hand():
    """Counts over observed positives: n(0)=3, n(1)=3, n(2)=2, n(3)=0; n(0,1)=2,
    n(0,2)=1, n(1,2)=1. With k_a = 1: Q_0 = {0, 1} with rates (1, 2/3) -> (3/5, 2/5);
    Q_1 = {1, 0} likewise; Q_2 = {2, 0} (0 and 1 tie; the lower index wins) with (1, 1/2)
    -> (2/3, 1/3); label 3 never appears: only itself."""
    observed = torch.tensor([[1, 1, -1, 0], [1, 1, 0, -1], [1, -1, 1, 0], [0, 1, 1, -1]], dtype=torch.int8)
    graph = cooccurrence_graph(observed, k_a=1)
    assert graph.neighbours.tolist() == [[0, 1], [1, 0], [2, 0], [3, 0]]
    assert graph.mask.tolist() == [[True, True], [True, True], [True, True], [True, False]]
    expected = torch.tensor([[3 / 5, 2 / 5, 0, 0], [2 / 5, 3 / 5, 0, 0], [1 / 3, 0, 2 / 3, 0], [0, 0, 0, 1]])
    assert torch.allclose(graph.dense(), expected)
    y = torch.tensor([[1.0, -1.0, 0.5, 0.25], [0.0, 1.0, -0.5, 1.0]])
    assert torch.allclose(graph.apply(y), y @ expected.T)
    assert torch.equal(cooccurrence_graph(observed, k_a=0).dense(), torch.eye(4))
    assert cooccurrence_graph(observed, k_a=10).neighbours.shape == (4, 4)  # k_a capped at C - 1
    assert torch.equal(identity_graph(4).dense(), torch.eye(4)) and torch.equal(identity_graph(4).apply(y), y)


# --------------------------------------------------------------------------- the smoothness terms


def _eq5_literal(y, a, c):
    """Eq. 5 with Eq. 4's sums: ||y_i - tanh(Σ_i' c_{i',i} Σ_{j'} a_{j',j} y_{j',i'})||², where
    a[j, j'] = a_{j',j} and c[i, i'] = c_{i',i}."""
    out = []
    for i in range(y.shape[0]):
        total = 0.0
        for j in range(y.shape[1]):
            z = sum(float(c[i, i2]) * sum(float(a[j, j2]) * float(y[i2, j2]) for j2 in range(y.shape[1]))
                    for i2 in range(y.shape[0]))
            total += (float(y[i, j]) - math.tanh(z)) ** 2
        out.append(total)
    return out


def test_label_smoothness_is_eq_5():
    y = torch.tensor([[1.0, -1.0], [1.0, 1.0]], dtype=F64)
    c = torch.tensor([[0.0, 0.5], [0.0, 0.0]], dtype=F64)
    by_hand = [(1 - math.tanh(0.5)) ** 2 + (-1 - math.tanh(0.5)) ** 2, 2.0]
    assert label_smoothness(y, y, c).tolist() == pytest.approx(by_hand)
    g = torch.Generator().manual_seed(0)
    y = torch.rand(5, 4, generator=g, dtype=F64) * 2 - 1
    graph = cooccurrence_graph(torch.where(torch.rand(20, 4, generator=g) < 0.5, 1, -1).to(torch.int8), k_a=2)
    a = graph.dense().to(F64)
    c = torch.rand(5, 5, generator=g, dtype=F64) * (torch.rand(5, 5, generator=g) < 0.4)
    assert label_smoothness(y, graph.apply(y), c).tolist() == pytest.approx(_eq5_literal(y, a, c), rel=1e-12)


def test_feature_smoothness_is_eq_6():
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=F64)
    c_bar = torch.tensor([[0.0, 0.5], [0.25, 0.0]], dtype=F64)
    # (1 - 1.5)² + (2 - 2)², (3 - 0.25)² + (4 - 0.5)²
    assert feature_smoothness(f, f, c_bar).tolist() == pytest.approx([0.25, 19.8125])
    assert pooled_features(torch.ones(2, 3, 2, 2, dtype=F64)).tolist() == [[1.0] * 3] * 2


def test_imcl_loss_is_eq_1_over_b_times_c():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(4, 3, generator=g, dtype=F64)
    observed = torch.tensor([[1, 0, -1], [0, 0, 1], [-1, -1, 0], [1, 1, 1]], dtype=torch.int8)
    sy, sf = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=F64), torch.tensor([0.5, 0.0, 1.5, 2.0], dtype=F64)
    assert float(imcl_loss(logits, observed, sy, sf, 0.0, 0.0)) == float(losses.bce(logits, observed))
    expected = float(losses.bce(logits, observed)) + (2.0 * 10.0 + 0.5 * 4.0) / 12
    assert float(imcl_loss(logits, observed, sy, sf, 2.0, 0.5)) == pytest.approx(expected, rel=1e-12)


def _batch_problem(seed: int = 3, n: int = 6, classes: int = 5, dim: int = 4):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes, generator=g, dtype=F64)
    observed = torch.where(torch.rand(n, classes, generator=g) < 0.3, 1, -1).to(torch.int8)
    observed[torch.rand(n, classes, generator=g) < 0.5] = 0
    graph = cooccurrence_graph(torch.where(torch.rand(30, classes, generator=g) < 0.4, 1, -1).to(torch.int8), k_a=2)
    graph = LabelGraph(graph.neighbours, graph.weights.to(F64), graph.mask)
    f = torch.rand(n, dim, generator=g, dtype=F64)
    c = torch.rand(n, n, generator=g, dtype=F64) * (torch.rand(n, n, generator=g) < 0.4)
    c.fill_diagonal_(0.0)
    return logits, observed, graph, f, c


def test_gradients_of_the_smoothness_terms_in_float64():
    logits, observed, graph, f, c = _batch_problem()

    def l_y(z):  # the in-batch ℓ_y: imputed labels are both the targets and the dictionary
        y = impute_labels(z, observed)
        return label_smoothness(y, graph.apply(y), c).sum()

    assert torch.autograd.gradcheck(l_y, (logits.clone().requires_grad_(True),))
    assert torch.autograd.gradcheck(lambda x: feature_smoothness(x, x, c).sum(), (f.clone().requires_grad_(True),))
    total = lambda z, x: imcl_loss(z, observed, label_smoothness(impute_labels(z, observed),  # noqa: E731
                                                                 graph.apply(impute_labels(z, observed)), c),
                                   feature_smoothness(x, x, c), 1.0, 0.5)
    assert torch.autograd.gradcheck(total, (logits.clone().requires_grad_(True), f.clone().requires_grad_(True)))
    # ℓ_f = ||(I - C̄) F||²: its gradient is 2 (I - C̄)ᵀ (I - C̄) F
    x = f.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(feature_smoothness(x, x, c).sum(), x)
    m = torch.eye(len(c), dtype=F64) - c
    assert torch.allclose(auto, 2 * m.T @ m @ f, atol=1e-12)


def _graph_objective(graph: LabelGraph, weights: torch.Tensor, y: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return label_smoothness(y, LabelGraph(graph.neighbours, weights, graph.mask).apply(y), c).mean()


def test_graph_gradient_and_step():
    logits, observed, graph, _, c = _batch_problem(4)
    y = impute_labels(logits, observed)
    w = graph.weights.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: _graph_objective(graph, v, y, c), (w,))
    # the chain rule by hand: dℓ/dz = -2 r (1 - tanh² z) with z = C (A Y), and
    # dℓ/da_{j',j} = Σ_i' (Cᵀ dℓ/dz)_{i',j} y_{j',i'}
    z = c @ graph.apply(y)
    dz = -2 * (y - torch.tanh(z)) * (1 - torch.tanh(z) ** 2) / len(y)
    by_hand = ((c.T @ dz)[:, :, None] * y[:, graph.neighbours]).sum(0)
    (auto,) = torch.autograd.grad(_graph_objective(graph, w, y, c), w)
    assert torch.allclose(auto, by_hand, atol=1e-12)
    # one projected step: w - lr·λ_y·grad, clipped at 0, zero off the support; it descends
    stepped = graph_step(graph, y, c, lambda_y=2.0, lr=0.05)
    assert torch.allclose(stepped.weights, ((graph.weights - 0.1 * by_hand).clamp(min=0) * graph.mask), atol=1e-12)
    before = float(_graph_objective(graph, graph.weights, y, c))
    assert float(_graph_objective(graph, stepped.weights, y, c)) < before
    assert torch.equal(graph_step(graph, y, c, lambda_y=0.0, lr=0.05).weights, graph.weights)
    assert torch.equal(graph.weights, w.detach())  # the input graph is not modified


# --------------------------------------------------------------------------- the method in the loop


@pytest.fixture(scope="module")
def feature_splits() -> DataSplits:
    """Feature maps that carry the benchmark's labels (plus noise), so similar images exist."""
    truth = ShapeScenes(96, image_size=32).labels
    g = torch.Generator().manual_seed(0)
    proj = torch.randn(truth.shape[1], 12, generator=g)
    maps = ((truth.float() @ proj)[:, :, None, None] + 0.5 * torch.randn(96, 12, 2, 2, generator=g)).relu()
    train = FeatureMaps(maps[:64], truth[:64], [f"c{i}" for i in range(truth.shape[1])])
    test = FeatureMaps(maps[64:], truth[64:], train.classes)
    return DataSplits(train=train, test=test)


def imcl_config(**method_args) -> ExperimentConfig:
    cfg = ExperimentConfig(name="imcl", method="imcl", method_args={"k": 3, "k_a": 5, "graph_lr": 0.5, **method_args})
    cfg.data = DataConfig(protocol="partial", protocol_args={"known": 0.3}, augment="none")
    cfg.model = ModelConfig(backbone="features", head="gap")
    cfg.loss = LossConfig("bce")
    cfg.train = TrainConfig(epochs=2, batch_size=16, lr=0.05, seed=0, device="cpu", checkpoint=False, progress=False)
    return cfg


def test_imcl_trains_on_fixed_features_and_learns_the_graph(feature_splits):
    result = run_experiment(imcl_config(), data=feature_splits, write=False)
    method = result.trainer.method
    assert isinstance(method, IMCLMethod)
    assert all(math.isfinite(r["train_loss"]) for r in result.history)
    assert method.graph_change() > 0 and not torch.equal(method.graph.weights.cpu(), method.initial_weights)
    assert bool((method.graph.weights >= 0).all()) and bool((method.graph.weights[~method.graph.mask] == 0).all())
    last = result.history[-1]
    assert last["imcl_neighbours"] > 0 and 0 <= last["imcl_neighbour_precision"] <= 1
    assert last["imcl_label_smoothness"] > 0 and last["imcl_feature_smoothness"] > 0
    assert method.last is not None and int(method.last.sizes.max()) <= 3


@pytest.mark.parametrize("variant", ["fixed", "none"])
def test_fixed_and_no_label_graph(feature_splits, variant):
    result = run_experiment(imcl_config(label_graph=variant, logistic_epochs=1), data=feature_splits, write=False)
    method = result.trainer.method
    assert method.graph_change() == 0.0
    assert "imcl_neighbours" not in result.history[0] and "imcl_neighbours" in result.history[1]
    if variant == "none":
        assert torch.equal(method.graph.dense().cpu(), torch.eye(24))


def test_a_run_left_no_imcl_epoch_is_refused(feature_splits):
    """logistic_epochs >= epochs would train the Logistic model and report it as IMCL."""
    with pytest.raises(ValueError, match="logistic_epochs = 2 leaves none of the run's 2 epochs"):
        run_experiment(imcl_config(logistic_epochs=2), data=feature_splits, write=False)


def test_without_smoothness_it_is_the_logistic_baseline(feature_splits):
    """λ_y = λ_f = 0: Eq. 1 is the BCE (§4.2's Logistic); the run equals the supervised one."""
    imcl = run_experiment(imcl_config(lambda_y=0.0, lambda_f=0.0), data=feature_splits, write=False)
    cfg = imcl_config()
    cfg.method, cfg.method_args = "supervised", {}
    plain = run_experiment(cfg, data=feature_splits, write=False)
    for a, b in zip(imcl.trainer.module.state_dict().values(), plain.trainer.module.state_dict().values()):
        assert torch.equal(a, b)


def test_resume_restores_the_graph_bit_exactly(feature_splits, tmp_path):
    def run(folder: str, stop_at: int, resume: bool = False):
        cfg = imcl_config()
        cfg.output_dir, cfg.train.checkpoint, cfg.train.epochs = str(tmp_path / folder), True, 3
        return run_experiment(cfg, data=feature_splits, resume=resume, hooks=[Interrupt(stop_at)])

    straight = run("a", 99).trainer
    with pytest.raises(KeyboardInterrupt):
        run("b", 2)
    resumed = run("b", 99, resume=True).trainer
    assert torch.equal(resumed.method.graph.weights, straight.method.graph.weights)
    assert straight.method.graph_change() > 0
    for a, b in zip(resumed.module.state_dict().values(), straight.module.state_dict().values()):
        assert torch.equal(a, b)


def test_imcl_end_to_end_on_images_and_feature_gradient():
    """On images the feature term ℓ_f reaches the backbone; a tiny run trains end to end."""
    cfg = imcl_config(k=2)
    cfg.data = DataConfig(n_train=32, n_test=16, image_size=32, protocol="partial", protocol_args={"known": 0.3},
                          augment="flip")
    cfg.model = ModelConfig(backbone="cnn_s", head="gap")
    cfg.train.epochs = 1
    result = run_experiment(cfg, write=False)
    assert math.isfinite(result.history[0]["train_loss"]) and result.trainer.method.graph_change() > 0

    torch.manual_seed(0)
    model = create_model("cnn_s", 24)
    images = torch.rand(8, 3, 32, 32)
    observed = result.trainer.train_labels[:8].cpu()
    grads = []
    for lambda_f in (0.0, 1.0):
        model.zero_grad()
        method = IMCLMethod(cooccurrence_graph(observed, 3), k=2, lambda_f=lambda_f, learn_graph=False)
        logits, maps = model(images, with_features=True)
        method.interactive_loss(logits, pooled_features(maps), observed).backward()
        grads.append(next(model.backbone.parameters()).grad.clone())
    assert not torch.allclose(grads[0], grads[1])


def test_factory_and_args_validation(feature_splits):
    cfg = imcl_config(label_graph="wiki")
    with pytest.raises(ConfigError, match="method_args.label_graph"):
        run_experiment(cfg, data=feature_splits, write=False)
    cfg = imcl_config()
    cfg.loss = LossConfig("partial_bce")
    with pytest.raises(ValueError, match="loss.name"):
        run_experiment(cfg, data=feature_splits, write=False)
    with pytest.raises(ConfigError, match="method_args.k "):
        IMCLMethod(identity_graph(3), k=0)
    method = IMCLMethod(identity_graph(3))
    with pytest.raises(ValueError, match="graph weights have shape"):
        method.load_state_dict({"graph_weights": torch.ones(4, 1)})


def test_bench_cases_run():
    assert {"imcl", "imcl_omp"} <= set(BENCH_CASES)
    rows = bench_methods(BenchSettings(batch_size=4, image_size=32, device="cpu", steps=1, warmup=0),
                         methods=["imcl", "imcl_omp"], rounds=1)
    assert [r.what for r in rows] == [BENCH_CASES[m].label for m in ("bce", "imcl", "imcl_omp")]
    assert all(r.ratio_to_bce > 0 and math.isfinite(r.ratio_to_bce) for r in rows[1:])


def test_side_information_joins_the_similarity_learner_only(feature_splits):
    """§4.6: side information (CUB's one-hot species times a) is appended to y and A y in
    Algorithm 2. Without it nothing changes; with a large a, the first image selected shares
    the query's group; the loss and the graph step see the labels only."""
    g = torch.Generator().manual_seed(3)
    observed = torch.where(torch.rand(16, 6, generator=g) < 0.4, 1, -1).to(torch.int8)
    method = IMCLMethod(cooccurrence_graph(observed, k_a=2), k=3)
    y, f = torch.rand(16, 6, generator=g, dtype=F64) * 1.5 - 0.5, torch.rand(16, 5, generator=g, dtype=F64)
    plain = method.similarities(y, f)
    assert torch.equal(method.similarities(y, f, None).c, plain.c)
    group = torch.arange(16) % 4
    side = 100.0 * torch.nn.functional.one_hot(group, 4).to(F64)
    sims = method.similarities(y, f, side)
    # the first pick of every query shares its group (the side part then fits, and later
    # picks are decided by what the side part leaves: the labels and features)
    assert bool(sims.selected[:, 0].all()) and torch.equal(group[sims.support[:, 0]], group)
    assert not torch.equal(sims.support, plain.support)
    literal = joint_nonnegative_omp(torch.cat([y, side], 1), f, torch.cat([method.graph.apply(y), side], 1), f, 3,
                                    1.0, 0.5, torch.eye(16, dtype=torch.bool))
    assert torch.equal(sims.c, literal.c) and torch.equal(sims.c_bar, literal.c_bar)
    # in a run: the side rows follow the batch's indices; a wrong row count is refused
    splits = feature_splits
    obs = splits.train.labels.clone()
    obs[torch.rand(obs.shape, generator=g) < 0.7] = 0
    side = 10.0 * (splits.train.labels == 1).float()  # the hidden truth as side information: an oracle
    precision = {}
    for name, rows in (("without", None), ("with", side)):
        method = IMCLMethod(cooccurrence_graph(obs, 3), k=1, side=rows, truth=splits.train.labels)
        result = run_experiment(imcl_config(), data=splits, train_labels=obs, method=method, write=False)
        precision[name] = result.history[-1]["imcl_neighbour_precision"]
    assert precision["with"] > 0.95 > precision["without"]  # the one image selected shares a true label
    with pytest.raises(ValueError, match="side has 5 rows"):
        run_experiment(imcl_config(), data=splits, train_labels=obs, write=False,
                       method=IMCLMethod(cooccurrence_graph(obs, 3), side=side[:5]))
    with pytest.raises(ValueError, match="side must be"):
        IMCLMethod(identity_graph(3), side=torch.ones(4, 2, dtype=torch.int64))

