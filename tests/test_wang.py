"""Wang et al. 2023: the saliency pooling (Eq. 3-5) and the pseudo-label rule (Eq. 7-8)
against literal transcriptions, Proposition 2's gradient, the consistency method's loss
(Eq. 11-12), stored augmented feature views, the top-k hit rate, and a run through the loop."""

from __future__ import annotations

import math
from itertools import combinations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlrobust import losses
from mlrobust.config import DataConfig, ExperimentConfig, LossConfig, ModelConfig, TrainConfig
from mlrobust.data import DataSplits, FeatureMaps, Subset, TensorImages, extract_features
from mlrobust.engine import Batch, FeatureViewMaker
from mlrobust.experiments import run_experiment
from mlrobust.methods.wang import ConsistencyMethod, pseudo_labels, top_k_hits
from mlrobust.models import SaliencyPooling, create_model
from mlrobust.options import ConfigError


def saliency_literal(a: list[list[float]], alpha: float, k: int) -> float:
    """a_c + alpha * s_c of one class map, Eq. 3-5: the mean of all values plus alpha times
    the mean of the k largest."""
    values = [v for row in a for v in row]
    return sum(values) / len(values) + alpha * sum(sorted(values, reverse=True)[:k]) / k


@pytest.mark.parametrize("alpha,k", [(0.5, 5), (0.0, 1), (1.3, 16), (0.5, 0.25)])
def test_saliency_pooling_matches_the_equations(alpha, k):
    maps = torch.randn(3, 4, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    got = SaliencyPooling(alpha, k)(maps)
    count = 4 if k == 0.25 else k  # a fraction of the 16 regions
    want = [[saliency_literal(maps[b, c].tolist(), alpha, count) for c in range(4)] for b in range(3)]
    assert torch.allclose(got, torch.tensor(want, dtype=torch.float64), atol=1e-12)


def test_saliency_pooling_rejects_bad_arguments():
    for alpha, k in ((-0.1, 5), (0.5, 0), (math.nan, 5)):
        with pytest.raises(ValueError, match="alpha"):
            SaliencyPooling(alpha, k)


def test_proposition_2_saliency_separates_the_top_k_gradient():
    """Without SR every cell of A_c gets dL/da_c / (W H); with SR the k top cells get
    alpha / k times dL/dlogit more (Proposition 2)."""
    maps = torch.randn(2, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1),
                       requires_grad=True)
    y = torch.tensor([[1, -1, 0], [-1, 1, 1]], dtype=torch.int8)
    alpha, k = 0.5, 5
    logits = SaliencyPooling(alpha, k)(maps)
    (grad,) = torch.autograd.grad(losses.bn_bce(logits, y), maps)
    z = logits.detach().requires_grad_(True)
    (dlogit,) = torch.autograd.grad(losses.bn_bce(z, y), z)
    top = maps.detach().flatten(2).topk(k, dim=-1).indices
    in_top = torch.zeros(2, 3, 16, dtype=torch.bool).scatter_(2, top, True).view(2, 3, 4, 4)
    want = dlogit[..., None, None] * (1 / 16 + alpha / k * in_top)
    assert torch.allclose(grad, want, atol=1e-14)
    assert torch.autograd.gradcheck(lambda m: losses.bn_bce(SaliencyPooling(alpha, k)(m), y), (maps,))


def test_classmap_head_with_saliency_pooling_by_name():
    model = create_model("cnn_s", 5, head="classmap", pooling="saliency", alpha=0.3, k=2)
    assert isinstance(model.head.pooling, SaliencyPooling) and model.head.pooling.alpha == 0.3
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def pseudo_literal(p: float, y: int, tau: float) -> int:
    """Eq. 8 for one entry: only unknown labels (y = 0) are assigned."""
    if y != 0:
        return 0
    return int(p >= tau) - int(1 - p >= tau)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.5, 1.0))
def test_pseudo_labels_match_eq_8(seed, tau):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(6, 5, generator=g) * 3
    y = torch.randint(-1, 2, (6, 5), generator=g, dtype=torch.int8)
    got = pseudo_labels(logits, y, tau)
    p = torch.sigmoid(logits)
    want = [[pseudo_literal(float(p[i, j]), int(y[i, j]), tau) for j in range(5)] for i in range(6)]
    assert got.tolist() == want
    assert bool((got[y != 0] == 0).all())  # known labels are never overwritten


def test_pseudo_labels_reject_bad_input():
    with pytest.raises(ValueError, match="tau"):
        pseudo_labels(torch.zeros(1, 2), torch.zeros(1, 2, dtype=torch.int8), 0.4)
    with pytest.raises(ValueError, match="shape"):
        pseudo_labels(torch.zeros(1, 2), torch.zeros(1, 3, dtype=torch.int8), 0.6)


class _Views:
    """A hand-made view maker: the weak view is the batch, the strong one the batch + 1."""

    def __call__(self, batch: Batch, policy: str, k: int = 0) -> torch.Tensor:
        return batch.images + (1.0 if policy == "strong" else 0.0)


class _Trainer:
    """What the method uses of a trainer: the model."""

    def __init__(self, model):
        self.model = self.module = model


def test_consistency_loss_is_eq_12_with_one_forward_pass():
    linear = torch.nn.Linear(3, 4, dtype=torch.float64)
    calls = []
    model = lambda x: (calls.append(x.shape[0]), linear(x))[1]  # noqa: E731
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, dtype=torch.float64, generator=g)
    y = torch.tensor([[1, 0, -1, 0]] * 5, dtype=torch.int8)
    batch = Batch(x, y, torch.arange(5), views=_Views())
    method = ConsistencyMethod(losses.bn_bce, tau=0.6)
    loss, logits = method.training_loss(_Trainer(model), batch)
    assert calls == [10]  # weak and strong in one pass
    weak, strong = linear(x), linear(x + 1)
    want = losses.bn_bce(weak, y) + losses.bn_bce(strong, pseudo_labels(weak, y, 0.6))
    assert torch.allclose(loss, want) and torch.allclose(logits, weak)
    # strong == weak: plain pseudo-labelling, one view
    calls.clear()
    loss, _ = ConsistencyMethod(losses.bn_bce, strong="weak").training_loss(_Trainer(model), batch)
    assert calls == [5]
    assert torch.allclose(loss, losses.bn_bce(weak, y) + losses.bn_bce(weak, pseudo_labels(weak, y, 0.6)))


def test_pseudo_label_statistics_against_the_truth():
    method = ConsistencyMethod(losses.bn_bce, tau=0.6, strong="weak", truth=torch.tensor([[1, -1, 1, -1]] * 2,
                                                                                         dtype=torch.int8))
    logits = torch.tensor([[5.0, 5.0, -5.0, -5.0], [0.0, -5.0, 5.0, 5.0]])  # row 1, col 0 unsure
    y = torch.zeros(2, 4, dtype=torch.int8)
    y[1, 3] = -1  # known: not pseudo-labelled
    batch = Batch(logits, y, torch.arange(2))
    method.training_loss(_Trainer(lambda v: v), batch)
    stats = method.stats.summary()
    # positives: (0,0) right, (0,1) wrong, (1,2) right -> precision 2/3; true unknown positives 4
    assert stats["pl_pos_precision"] == pytest.approx(200 / 3) and stats["pl_pos_recall"] == pytest.approx(50)
    # negatives: (0,2) wrong, (0,3) right, (1,1) right -> 2/3; true unknown negatives 3 -> 2/3
    assert stats["pl_neg_precision"] == pytest.approx(200 / 3) and stats["pl_neg_recall"] == pytest.approx(200 / 3)
    assert stats["pl_coverage"] == pytest.approx(600 / 7)


def _images(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 16, 16), generator=g, dtype=torch.uint8)
    labels = torch.where(torch.rand(n, 3, generator=g) < 0.5, 1, -1).to(torch.int8)
    return TensorImages(images, labels, ["a", "b", "c"])


def test_stored_feature_views_are_the_features_of_augmented_images():
    data = _images()
    net = torch.nn.Conv2d(3, 4, 4, stride=4)
    a = extract_features(net, data, views={"weak": 2, "strong": 3}, seed=5, batch_size=5)
    b = extract_features(net, data, views={"weak": 2, "strong": 3}, seed=5, batch_size=12)
    assert a.view_draws == {"weak": 2, "strong": 3} and a.views["strong"].shape == (3, 12, 4, 4, 4)
    assert torch.allclose(a.views["strong"], b.views["strong"], atol=1e-6)  # batch size does not matter
    assert not torch.allclose(a.views["strong"][0], a.features)  # augmented
    assert not torch.allclose(a.views["strong"][0], a.views["strong"][1])  # independent copies
    sub = Subset(a, torch.tensor([3, 7]))
    got = sub.load_view("strong", torch.tensor([2, 0]), torch.tensor([1, 0]))
    assert torch.equal(got, torch.stack([a.views["strong"][2, 7], a.views["strong"][0, 3]]))
    with pytest.raises(ValueError, match="'flip'.*stored"):
        a.load_view("flip", torch.tensor([0]), torch.tensor([0]))
    with pytest.raises(ValueError, match="copies"):
        extract_features(net, data, views={"weak": 0})


def test_feature_view_maker_is_seeded_per_step_and_policy():
    maps = torch.randn(6, 2, 2, 2)
    views = {"strong": torch.randn(4, 6, 2, 2, 2)}
    data = FeatureMaps(maps, torch.ones(6, 1, dtype=torch.int8), ["a"], views=views)
    batch = Batch(maps[:4], data.labels[:4], torch.arange(4))
    first = FeatureViewMaker(data, seed=0, epoch=1, step=2)(batch, "strong")
    again = FeatureViewMaker(data, seed=0, epoch=1, step=2)(batch, "strong")
    later = [FeatureViewMaker(data, seed=0, epoch=1, step=s)(batch, "strong") for s in range(3, 8)]
    assert torch.equal(first, again) and any(not torch.equal(first, v) for v in later)
    assert torch.equal(FeatureViewMaker(data, 0, 1, 2)(batch, "none"), maps[:4])
    with pytest.raises(ValueError, match="shape"):
        FeatureMaps(maps, data.labels, ["a"], views={"weak": torch.randn(6, 2, 2, 2)})


def _features_data(n=48, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    truth = -torch.ones(n, c, dtype=torch.int8)
    truth[torch.arange(n), torch.arange(n) % c] = 1
    signal = truth.float().repeat(1, 2)[:, :6, None, None]
    maps = torch.randn(n, 6, 3, 3, generator=g) + signal
    views = {p: maps + 0.3 * torch.randn(2, n, 6, 3, 3, generator=g) for p in ("weak", "strong")}
    return FeatureMaps(maps, truth, [f"c{i}" for i in range(c)], views=views)


def _cfg(pooling="saliency", **method_args):
    cfg = ExperimentConfig(name="t", method="consistency", method_args=method_args)
    cfg.data = DataConfig(augment="none")
    cfg.model = ModelConfig(backbone="features", head="classmap", head_args={"pooling": pooling, **({"k": 2} if pooling == "saliency" else {})})
    cfg.loss = LossConfig("bn_bce")
    cfg.train = TrainConfig(epochs=3, batch_size=8, lr=0.3, seed=0, device="cpu", checkpoint=False)
    return cfg


def test_consistency_trains_through_the_loop_and_reports_pseudo_labels():
    data = _features_data()
    observed = torch.where(torch.rand(data.labels.shape, generator=torch.Generator().manual_seed(1)) < 0.3,
                           data.labels, torch.zeros_like(data.labels))
    splits = DataSplits(train=data, test=data)
    first = run_experiment(_cfg(), data=splits, train_labels=observed, write=False)
    again = run_experiment(_cfg(), data=splits, train_labels=observed, write=False)
    timing = ("seconds", "images_per_s")
    strip = lambda history: [{k: v for k, v in r.items() if k not in timing} for r in history]  # noqa: E731
    assert strip(first.history) == strip(again.history)  # the views come from seeded streams
    last = first.history[-1]
    assert math.isfinite(last["train_loss"]) and 0 < last["pl_coverage"] <= 100
    assert last["pl_pos_precision"] > 50  # separable data: the pseudo-labels are mostly right
    plain = run_experiment(_cfg(pooling="gap"), data=splits, train_labels=observed, write=False)
    assert strip(plain.history) != strip(first.history)
    with pytest.raises(ConfigError, match="method_args.tau"):
        run_experiment(_cfg(tau=0.3), data=splits, train_labels=observed, write=False)
    with pytest.raises(ConfigError, match="method_args.strong"):
        run_experiment(_cfg(strong="sharp"), data=splits, train_labels=observed, write=False)


def test_top_k_hits_by_hand_and_chance_by_enumeration():
    maps = torch.zeros(1, 2, 4, 4)
    maps[0, 0, 1, 2] = 5  # class 0's top cell: row 1, column 2
    maps[0, 1, 3, 3] = 5
    obj_class = torch.tensor([[0, 1, -1, 7]])  # an empty slot and a distractor (class 7 >= C)
    centre = torch.tensor([[[0.6, 0.3], [0.1, 0.1], [0.0, 0.0], [0.9, 0.9]]])
    got = top_k_hits(maps, obj_class, centre, 1)
    assert got["hit"] == 50 and got["precision"] == 50 and got["chance"] == pytest.approx(100 / 16)
    # chance for k = 3 cells with one object cell among 16, against enumeration
    misses = sum(1 for cells in combinations(range(16), 3) if 0 not in cells)
    assert top_k_hits(maps, obj_class, centre, 3)["chance"] == pytest.approx(100 * (1 - misses / math.comb(16, 3)))
    with pytest.raises(ValueError, match="k must be"):
        top_k_hits(maps, obj_class, centre, 17)


def test_pseudo_labels_without_the_saliency_term_come_from_the_map_average():
    """Table 2's "SR + CR (w/o SR)": trained on a_c + alpha s_c, pseudo-labelled from a_c."""
    from mlrobust.models import ClassMapHead, MultiLabelNet

    torch.manual_seed(0)
    head = ClassMapHead(3, 2, pooling="saliency", alpha=0.5, k=1)
    model = MultiLabelNet(torch.nn.Identity(), head)
    x = torch.randn(4, 3, 2, 2)
    batch = Batch(x, torch.zeros(4, 2, dtype=torch.int8), torch.arange(4))
    method = ConsistencyMethod(losses.bn_bce, tau=0.55, strong="weak", pseudo_sr=False)
    loss, _ = method.training_loss(_Trainer(model), batch)
    with torch.no_grad():
        a_c = head.maps(x).mean(dim=(2, 3))
        sr = model(x)
    want = losses.bn_bce(sr, pseudo_labels(a_c, batch.targets, 0.55))  # L_s is 0: nothing is known
    assert torch.allclose(loss, want)
    assert not torch.equal(pseudo_labels(a_c, batch.targets, 0.55), pseudo_labels(sr, batch.targets, 0.55))


def test_a_feature_dataset_with_stored_copies_serves_them_as_the_augmented_default_view():
    """data.augment = "weak" on features that store weak copies: the supervised baseline sees
    the same augmentation as the consistency method's weak view; a policy with no stored
    copies leaves the maps as they are."""
    data = _features_data()
    splits = DataSplits(train=data, test=data)

    def history(augment):
        cfg = _cfg(pooling="gap")
        cfg.method, cfg.method_args = "supervised", {}
        cfg.data.augment = augment
        return [r["train_loss"] for r in run_experiment(cfg, data=splits, write=False).history]

    none = history("none")
    assert history("weak") != none and history("weak") == history("weak")
    assert history("flip") == none  # no stored flip copies


def test_the_oracle_control_gives_the_pseudo_labelled_entries_their_true_labels():
    truth = torch.tensor([[1, -1, 1, -1]], dtype=torch.int8)
    logits = torch.tensor([[-5.0, 5.0, 0.0, -5.0]])  # wrong, wrong, unsure, right
    batch = Batch(logits, torch.zeros(1, 4, dtype=torch.int8), torch.arange(1))
    oracle = ConsistencyMethod(losses.bn_bce, strong="weak", truth=truth, oracle=True)
    loss, _ = oracle.training_loss(_Trainer(lambda v: v), batch)
    want = losses.bn_bce(logits, torch.tensor([[1, -1, 0, -1]], dtype=torch.int8))
    assert torch.allclose(loss, want)
    assert oracle.stats.summary()["pl_pos_precision"] == 0  # the statistics measure the rule, not the oracle
    with pytest.raises(ValueError, match="oracle"):
        ConsistencyMethod(losses.bn_bce, oracle=True)
