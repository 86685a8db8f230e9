# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py//py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python (mlrobust)
#     language: python
#     name: mlrobust
# ---

# %% [markdown] tags=["remove-cell"]
# ---
# math:
#   '\R': '\mathbb{R}'
#   '\E': '\mathbb{E}'
#   '\ind': '\mathbb{1}_{[#1]}'
#   '\x': '\mathbf{x}'
#   '\y': '\mathbf{y}'
#   '\Y': '\mathbf{Y}'
#   '\p': '\mathbf{p}'
#   '\Ical': '\mathcal{I}'
#   '\Dcal': '\mathcal{D}'
#   '\sig': '\sigma'
#   '\py': 'p_{\mathbf{y}}'
#   '\BCE': '\operatorname{BCE}'
#   '\AP': '\operatorname{AP}'
#   '\mAP': '\operatorname{mAP}'
#   '\Chat': '\hat{C}'
# ---
# $\def\R{\mathbb{R}}\def\E{\mathbb{E}}\def\ind#1{\mathbb{1}_{[#1]}}\def\x{\mathbf{x}}\def\y{\mathbf{y}}\def\Y{\mathbf{Y}}\def\p{\mathbf{p}}\def\Ical{\mathcal{I}}\def\Dcal{\mathcal{D}}\def\sig{\sigma}\def\py{p_{\mathbf{y}}}\def\BCE{\operatorname{BCE}}\def\AP{\operatorname{AP}}\def\mAP{\operatorname{mAP}}\def\Chat{\hat{C}}$

# %% [markdown]
# (ch04)=
# # Robust ranking: WARP, the ramp loss and semi-supervised label propagation
#
# {cite:t}`cevikalp2019semi` attack noisy, incomplete and absent labels with one idea each:
#
# * **a bounded loss.** WARP {cite:p}`weston2011wsabie,gong2014deep` ranks every present
#   label above every absent one with a hinge, weighted by an estimate of how badly the
#   present label is ranked. A wrong label far on the wrong side of the margin then costs
#   without bound and dominates the gradient. RML replaces the hinge with the **ramp loss**,
#   which stops growing past a point, and adds a per-label margin term so that scores can be
#   thresholded at 0;
# * **label propagation.** SS-RML gives each unlabelled image the labels of its nearest
#   labelled image in the network's feature space, weighted by a heat kernel of their
#   distance. The bounded loss is what should make these error-prone labels safe.
#
# The paper reports that RML beats WARP at every level of corrupted labels (Fig. 3), that
# SS-RML beats RML on CIFAR-10 and STL-10 (Tables 1-2), and that softmax and RML are about
# equal on single-label data, with WARP behind. This chapter derives the losses, checks their
# gradients against the paper's Eq. 7-8, measures the rank estimator against the exact rank,
# and reruns the noise and semi-supervised studies, each with its control.
#
# **Scales.** The paper fine-tunes an ImageNet ResNet-101 (batch 96, SGD with momentum 0.9)
# on COCO, NUS-WIDE, CIFAR-10 (at 256 px) and STL-10; `scale = "full"` is that setting
# through the package's loaders. At the quick scale the heads are trained on frozen features
# of the backbone the package ships pretrained on ObjectScenes (the benchmark's ImageNet, as
# in {ref}`chapter 2 <ch02>`), and the "random init" rows train the small backbone from
# scratch end to end.
#
# **The regime.** Chapter 1's calibration table places this test bed: the network recognises
# objects far above what the scene context predicts, at a lower mAP than an ImageNet
# ResNet-101 reaches on COCO. With a frozen backbone only the linear classifier sees the
# noise, which is the paper's "CNN+RMLC" setting (Eq. 1 on fixed features), not RML-CNN.

# %% tags=["parameters", "hide-input"]
# Parameters (papermill). None means "the value for the chosen scale", read from
# params/ch04_cevikalp.yaml: "quick" runs on a CPU (its time is in the README), "full"
# is the paper's setting for a GPU (ResNet-101 at 224 px).
scale = "quick"
dataset = None
data_root = None
device = None
backbone = None
weights = None
image_size = None
n_pool = None
data_sizes = None
n_test = None
epochs = None
batch_size = None
lrs = None
bce_lrs = None
n_val = None
noise_levels = None
n_seeds = None
ss_n = None
ss_ood_fraction = None
ss_n_distractors = None
ss_labelled = None
ss_epochs = None
ss_refine_epochs = None
ss_refresh = None
scratch_epochs = None
scratch_ss_epochs = None
scratch_lr = None
output_dir = None

# %% tags=["hide-input"]
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from mlrobust import labels, losses, metrics
from mlrobust.claims import Claims, paired
from mlrobust.config import (
    DataConfig,
    ExperimentConfig,
    LossConfig,
    ModelConfig,
    TrainConfig,
)
from mlrobust.data import DataSplits, Subset, create_dataset, extract_features, hold_out
from mlrobust.engine import resolve_device
from mlrobust.experiments import Run, frozen_backbone, run_experiment, run_many
from mlrobust.methods.cevikalp import SSRMLMethod, propagate_labels
from mlrobust.notebook import (claims_checked, floats, fmt_mean_std, markdown_table,
                               mean_std, resolve_parameters, show_source)

P = resolve_parameters(
    "ch04_cevikalp",
    scale,
    dict(
        dataset=dataset,
        data_root=data_root,
        device=device,
        backbone=backbone,
        weights=weights,
        image_size=image_size,
        n_pool=n_pool,
        data_sizes=data_sizes,
        n_test=n_test,
        epochs=epochs,
        batch_size=batch_size,
        lrs=lrs,
        bce_lrs=bce_lrs,
        n_val=n_val,
        noise_levels=noise_levels,
        n_seeds=n_seeds,
        ss_n=ss_n,
        ss_ood_fraction=ss_ood_fraction,
        ss_n_distractors=ss_n_distractors,
        ss_labelled=ss_labelled,
        ss_epochs=ss_epochs,
        ss_refine_epochs=ss_refine_epochs,
        ss_refresh=ss_refresh,
        scratch_epochs=scratch_epochs,
        scratch_ss_epochs=scratch_ss_epochs,
        scratch_lr=scratch_lr,
        output_dir=output_dir,
    ),
)
NOISE, SIZES, LRS, BCE_LRS = (
    floats(P["noise_levels"], "noise_levels"),
    floats(P["data_sizes"], "data_sizes"),
    floats(P["lrs"], "lrs"),
    floats(P["bce_lrs"], "bce_lrs"),
)
SEEDS = range(P["n_seeds"])
FULL = scale == "full"
DEV = resolve_device(P["device"])
chapter_start = time.perf_counter()
# measured claims fail the build at the quick scale with its preset parameters only
claims = Claims(strict=claims_checked("ch04_cevikalp", scale, P))
markdown_table(["parameter", "value"], [[k, repr(v)] for k, v in P.items()])

# %% [markdown]
# ## The objective (Eq. 1)
#
# Let $f_j = \mathbf{w}_j^\top \x_i$ be the score of class $j$ for image $i$ (a raw score,
# not a probability), $C^+_i$ and $C^-_i$ its present and absent labels, $m$ the number of
# classes. Without the trace term, which a deep network replaces with weight decay, the RML
# objective is
#
# ```{math}
# :label: eq-rml
# J = \sum_i \Big[\sum_{j \in C^+_i} \sum_{k \in C^-_i} L(r_j)\, R_s(f_j - f_k)
#     + \kappa \sum_{j=1}^{m} R_s(y_{ij} f_j)\Big],
# ```
#
# with the **ramp** $R_s(t) = \min(1 - s, \max(0, 1 - t))$, $s = -0.8$, $\kappa = 5$. WARP is
# the first term with the hinge $H_1(t) = \max(0, 1 - t)$ in place of $R_s$. The ramp is a
# difference of two hinges, $R_s = H_1 - H_s$ with $H_a(t) = \max(0, a - t)$: it follows the
# hinge down to $t = s$ and is flat below. Its gradient is $-1$ on $(s, 1)$ and **zero**
# elsewhere; the hinge's stays at $-1$ however wrong the pair. The released code uses
# $H_1 - 0.9\,H_s$, a "soft" ramp with slope $-0.1$ past $s$.

# %% mystnb={"figure": {"caption": "The hinge H\u2081, the shifted hinge H_s, the ramp R_s = H\u2081 \u2212 H_s (s = \u22120.8) and the released code's soft ramp H\u2081 \u2212 0.9\u00b7H_s (left), and their derivatives (right), computed by the package's losses.hinge and losses.ramp and autograd. Past t = s the ramp has no gradient: a badly violated pair, the mark of a wrong label, stops pulling.", "name": "fig-ramp"}} tags=["hide-input"]
t = torch.linspace(-3, 2.5, 551, dtype=torch.float64, requires_grad=True)
curves = {
    "$H_1$ (hinge)": losses.hinge(t, 1.0),
    "$H_s$": losses.hinge(t, -0.8),
    "$R_s = H_1 - H_s$ (ramp)": losses.ramp(t),
    "$H_1 - 0.9 H_s$ (released code)": losses.ramp(t, beta=0.9),
}
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
for name, value in curves.items():
    (grad,) = torch.autograd.grad(value.sum(), t)
    axes[0].plot(t.detach(), value.detach(), label=name)
    axes[1].plot(t.detach(), grad, label=name)
axes[0].set(
    xlabel="margin $t$ (score difference $f_j - f_k$)",
    ylabel="loss",
    title="losses (s = -0.8)",
)
axes[1].set(xlabel="margin $t$", ylabel="d loss / d t", title="gradients")
axes[0].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ### The rank weight (Eq. 2-3)
#
# $L(r) = \sum_{j=1}^{r} 1/j$ grows like $\log r$. The rank $r_j$ of a present label is not
# computed exactly: negatives are drawn at random until one *violates* the margin,
# $1 - f_j + f_k \ge 0$; after $q$ draws, $r_j = \lfloor (m - 1)/q \rfloor$. A present label
# that many negatives beat is found violated at once ($q$ small, $r_j$ large, a large weight);
# one ranked at the top needs many draws. The package draws without replacement (as the
# released code shuffles the negatives), vectorised: one uniform key per (image, positive,
# negative), the first violation being the violating negative with the smallest key.

# %%
show_source(losses.warp_ranks, losses.rml)

# %% [markdown]
# ### The estimator against the exact rank
#
# With $n$ negatives of which $v$ violate, $q$ follows the negative hypergeometric law, with
# $\mathbb{E}[q] = (n + 1)/(v + 1)$, so $r_j$ estimates roughly $(m - 1)(v + 1)/(n + 1)$: the
# number of violators scaled to the whole label set. We draw the estimate 2,000 times for one
# positive among $m = 24$ classes, with $v = 0, \dots, 23$ of its 23 negatives violating.

# %% mystnb={"figure": {"caption": "The sampled WARP rank r_j (mean \u00b1 sd over 2,000 draws) against the exact number of violating negatives v, for one positive among 24 classes (23 negatives); the dashed line is the exact rank.", "name": "fig-rank"}} tags=["hide-input"]
m_classes, draws = 24, 2000
est_mean, est_sd = [], []
for v in range(m_classes):
    f = torch.full((draws, m_classes), -5.0)
    f[:, 0] = 2.0
    f[:, 1 : 1 + v] = 1.5  # violators: 1 - 2.0 + 1.5 >= 0
    y = -torch.ones(draws, m_classes, dtype=torch.int8)
    y[:, 0] = 1
    r, _ = losses.warp_ranks(f, y, generator=torch.Generator().manual_seed(v))
    est_mean.append(float(r[:, 0].double().mean()))
    est_sd.append(float(r[:, 0].double().std()))
v_axis = np.arange(m_classes)
fig, ax = plt.subplots(figsize=(6, 3.4))
ax.errorbar(
    v_axis,
    est_mean,
    yerr=est_sd,
    fmt="o",
    ms=3,
    capsize=2,
    label="sampled $r_j$ (mean ± sd)",
)
ax.plot(v_axis, v_axis, "k--", lw=1, label="exact rank $v$")
ax.set(
    xlabel="violating negatives $v$ (exact rank)",
    ylabel="rank estimate $r_j$",
    title=f"m = {m_classes} classes, {draws} draws each",
)
ax.legend()
plt.show()
print(
    f"relative sd of the estimate at v = 1, 5, 20: "
    + ", ".join(f"{est_sd[v] / max(est_mean[v], 1e-9):.2f}" for v in (1, 5, 20))
)

# %% [markdown]
# The estimate is floored and noisy: its spread is of the order of its mean for a few
# violators (the relative spreads printed above). Since $L$ grows like a logarithm, the
# weight is far less noisy than the rank.
#
# ## Gradient checks (Eq. 7-8)
#
# For a linear classifier the paper gives the gradients case by case: a pair $(j, k)$ adds
# $-s_i L(r_j)\x_i / N$ to $\mathbf{w}_j$ and $+s_i L(r_j)\x_i / N$ to $\mathbf{w}_k$ when
# its margin lies on the ramp's slope, $s < f_j - f_k < 1$ (Eq. 7); a label adds
# $-s_i\kappa\, y_{ij}\x_i/N$ when $s < y_{ij} f_j < 1$ (Eq. 8, written there for the signed
# score). We compare autograd of the ramp form with these formulas in float64, and run
# `gradcheck`.

# %% tags=["nbval-check-output"]
g = torch.Generator().manual_seed(0)
n_img, dim, m_small, kappa, s_ramp = 6, 4, 5, 5.0, -0.8
x_lin = torch.randn(n_img, dim, dtype=torch.float64, generator=g)
w_lin = (
    torch.randn(dim, m_small, dtype=torch.float64, generator=g) * 0.8
).requires_grad_(True)
y_lin = torch.where(torch.rand(n_img, m_small, generator=g) < 0.4, 1, -1).to(torch.int8)
s_i = torch.rand(n_img, dtype=torch.float64, generator=g) + 0.5
f_lin = (x_lin @ w_lin).detach()
ranks = losses.warp_ranks(f_lin, y_lin, generator=torch.Generator().manual_seed(1))[0]
weight = losses.rank_weight(ranks)
loss = losses.rml(
    x_lin @ w_lin, y_lin, weights=s_i, generator=torch.Generator().manual_seed(1)
)
(autograd,) = torch.autograd.grad(loss, w_lin)
eq78 = torch.zeros(dim, m_small, dtype=torch.float64)
for i in range(n_img):  # the paper's case-wise formulas, literally
    for j in range(m_small):
        for k in range(m_small):
            if (
                y_lin[i, j] == 1
                and y_lin[i, k] == -1
                and s_ramp < f_lin[i, j] - f_lin[i, k] < 1
            ):
                eq78[:, j] -= s_i[i] * weight[i, j] * x_lin[i] / n_img
                eq78[:, k] += s_i[i] * weight[i, j] * x_lin[i] / n_img
        if s_ramp < y_lin[i, j] * f_lin[i, j] < 1:
            eq78[:, j] -= s_i[i] * kappa * y_lin[i, j] * x_lin[i] / n_img
assert torch.allclose(autograd, eq78, atol=1e-12)
z = torch.randn(5, 7, dtype=torch.float64, generator=g, requires_grad=True)
y_z = torch.where(torch.rand(5, 7, generator=g) < 0.35, 1, -1).to(torch.int8)
assert torch.autograd.gradcheck(
    lambda v: losses.rml(v, y_z, generator=torch.Generator().manual_seed(0)), (z,)
)
assert torch.autograd.gradcheck(
    lambda v: losses.warp(v, y_z, generator=torch.Generator().manual_seed(0)), (z,)
)
print(
    "Eq. 7-8 = autograd (max difference "
    f"{float((autograd - eq78).abs().max()):.1e}); gradcheck passes for RML and WARP"
)

# %% [markdown]
# ## Data
#
# The noise study subsamples a multi-label pool, as §3.3 subsamples COCO and NUS-WIDE to 10 %
# and 20 % "while maintaining the class frequencies" (a random subsample does that in
# expectation). A held-out part of the training pool serves to tune each loss's learning rate.

# %%
common = dict(root=P["data_root"], image_size=P["image_size"], seed=0)
pool_images = create_dataset(P["dataset"], "train", n=P["n_pool"], **common)
test_images = create_dataset(P["dataset"], "test", n=P["n_test"], **common)
net, weights_file = frozen_backbone(P["backbone"], P["weights"])
pool = extract_features(net, pool_images, DEV)
test = extract_features(net, test_images, DEV)
pool_train, val = hold_out(pool, P["n_val"], seed=0)
SUBSETS = {
    size: Subset(
        pool_train, torch.arange(min(len(pool_train), round(size * len(pool))))
    )
    for size in SIZES
}
markdown_table(
    ["set", "images"],
    [["pool", len(pool)], ["validation (tuning)", len(val)], ["test", len(test)]]
    + [
        [f"training subsample {size:.0%} of the pool", len(s)]
        for size, s in SUBSETS.items()
    ],
)


# %%
def config(
    tag: str,
    loss: str,
    lr: float,
    seed: int,
    *,
    epochs: int | None = None,
    loss_args: dict | None = None,
    features: bool = True,
    weight_decay: float = 5e-4,
    batch: int | None = None,
) -> ExperimentConfig:
    """A run of this chapter (``tag`` names the experiment, so that runs written at
    the full scale never share a folder): SGD with momentum 0.9 (the paper's
    optimiser), a one-cycle schedule, a linear (gap) head on frozen features or the
    whole network from scratch."""
    cfg = ExperimentConfig(
        name=f"{tag}-{loss}-lr{lr}-seed{seed}", output_dir=P["output_dir"]
    )
    cfg.data = DataConfig(dataset=P["dataset"], augment="none" if features else "flip")
    cfg.model = ModelConfig(
        backbone="features" if features else P["backbone"], head="gap"
    )
    cfg.loss = LossConfig(loss, dict(loss_args or {}))
    cfg.train = TrainConfig(
        epochs=epochs or P["epochs"],
        batch_size=batch or P["batch_size"],
        lr=lr,
        weight_decay=weight_decay,
        schedule="onecycle",
        seed=seed,
        device=P["device"],
        checkpoint=FULL,
    )
    return cfg


def train(cfg: ExperimentConfig, data, observed, test_set, **kwargs):
    return run_experiment(
        cfg,
        data=DataSplits(train=data, test=test_set),
        train_labels=observed,
        write=FULL,
        resume=FULL,
        **kwargs,
    )


def planned(cfg: ExperimentConfig, data, observed, test_set, collect,
            method=None) -> Run:
    """A run of :func:`train` for `run_many`, which trains runs side by side;
    ``collect`` picks what to keep of the finished run."""
    return Run(cfg, data=DataSplits(train=data, test=test_set), train_labels=observed,
               method=method, write=FULL, resume=FULL, collect=collect)


def top3(result, test_set) -> dict[str, float]:
    """mAP and the top-3 metrics of Tables 3-4 (each image's three highest scores
    predicted)."""
    logits = result.trainer.predict(test_set)
    return {
        **metrics.evaluate(logits, test_set.labels, top_k=3),
        "mAP": result.metrics["mAP"],
    }


# %% [markdown]
# ## Tuning each loss (on a validation split)
#
# The paper optimised "the hyperparameters ... for the illustrated metrics"; the released code
# tunes on top-3 CF1. So do we: for each loss, the learning rate with the best top-3 CF1 on the
# held-out images, averaged over the clean and the most corrupted training labels (one seed).
# BCE works on probabilities and takes larger rates than the margin losses.

# %%
LOSSES = {"BCE": ("bce", {}), "WARP": ("warp", {}), "RML": ("rml", {})}
tune_set = SUBSETS[max(SIZES)]
ETAS = (NOISE[0], NOISE[-1])
tune_labels = {
    eta: labels.frequency_corruption(tune_set.labels, eta, seed=10_000) for eta in ETAS
}
trials = run_many(
    {
        (name, lr, eta): planned(
            config(f"tune-{name}-{eta}", loss, lr, 0, loss_args=args),
            tune_set,
            tune_labels[eta],
            val,
            collect=lambda result: top3(result, val)["CF1"],
        )
        for name, (loss, args) in LOSSES.items()
        for lr in (BCE_LRS if loss == "bce" else LRS)
        for eta in ETAS
    }
)
tuning = {
    (name, lr): float(np.mean([trials[name, lr, eta].collected for eta in ETAS]))
    for name, lr, _ in trials
}
BEST_LR = {}
for name in LOSSES:
    BEST_LR[name] = max(
        (lr for (n, lr) in tuning if n == name), key=lambda lr: tuning[name, lr]
    )
at_end = [
    name
    for name, (loss, _) in LOSSES.items()
    if len(grid := BCE_LRS if loss == "bce" else LRS) > 1
    and BEST_LR[name] in (min(grid), max(grid))
]
print(f"learning rate chosen at an end of the grid: {', '.join(at_end) or 'none'}")
spread = {n: max(v for (m, _), v in tuning.items() if m == n)
          - min(v for (m, _), v in tuning.items() if m == n) for n in LOSSES}
print("validation range over the grid (best - worst, points): "
      + ", ".join(f"{n} {r:.1f}" for n, r in spread.items()))
markdown_table(
    [
        "loss",
        "learning rate",
        "validation top-3 CF1 (mean of clean and corrupted)",
        "chosen",
    ],
    [
        [n, f"{lr:g}", f"{v:.1f}", "✓" if BEST_LR[n] == lr else ""]
        for (n, lr), v in tuning.items()
    ],
    caption=f"{P['dataset']}, validation split of {len(val)} images, seed 0",
)

# %% [markdown]
# ## Noise study (§3.3, Fig. 3)
#
# A random share of the training images gets a new label vector, each class positive with
# its training frequency (`labels.frequency_corruption`, redrawn until one label is present);
# the corrupted images are chosen from their own random stream (seed), the network's
# initialisation from another. The test labels are clean.

# %%
show_source(labels.frequency_corruption)

# %%
def top3_on_test(result) -> dict[str, float]:
    return top3(result, test)


R: dict[tuple, list] = {}  # top-3 metrics and mAP of each setting, one per seed
plan = {}
for seed in SEEDS:
    for size, subset in SUBSETS.items():
        for eta in NOISE:
            observed = labels.frequency_corruption(subset.labels, eta, seed=1000 + seed)
            for name, (loss, args) in LOSSES.items():
                plan[name, size, eta, seed] = planned(
                    config(
                        f"noise-{eta}-size{size}-{name}",
                        loss,
                        BEST_LR[name],
                        seed,
                        loss_args=args,
                    ),
                    subset,
                    observed,
                    test,
                    collect=top3_on_test,
                )
for (*key, _), outcome in run_many(plan).items():
    R.setdefault(tuple(key), []).append(outcome.collected)


def values(key: tuple, metric: str) -> list[float]:
    return [r[metric] for r in R[key]]


COLUMNS = ["CP", "CR", "CF1", "OP", "OR", "OF1", "mAP"]
rows = [
    [f"{size:.0%}", f"{eta:.0%}", name]
    + [fmt_mean_std(values((name, size, eta), c)) for c in COLUMNS]
    for size in SIZES
    for eta in NOISE
    for name in LOSSES
]
markdown_table(
    ["data", "corrupted", "loss", *COLUMNS],
    rows,
    caption="Noise study, top-3 metrics and mAP (%): "
    f"{P['dataset']}, {P['image_size']} px, frozen features, test {len(test)} images, "
    f"{P['n_seeds']} seeds (mean ± sd)",
)

# %% mystnb={"figure": {"caption": "Top-3 CF1 (left) and mAP (right), in %, on clean test labels against the share of corrupted training images, for BCE, WARP and RML at the two training-set sizes; mean over seeds, embedded benchmark, frozen features (the paper's Figure 3).", "name": "fig-noise-cevikalp"}} tags=["hide-input"]
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
for ax, metric in zip(axes, ("CF1", "mAP")):
    for name, colour in zip(LOSSES, ("tab:gray", "tab:blue", "tab:red")):
        for size, style in zip(SIZES, ("--", "-")):
            m = [mean_std(values((name, size, eta), metric))[0] for eta in NOISE]
            ax.plot(
                [100 * e for e in NOISE],
                m,
                style,
                color=colour,
                marker="o",
                ms=3,
                label=f"{name}, {size:.0%} of the data",
            )
    ax.set(
        xlabel="corrupted training images (%)",
        ylabel=f"{'top-3 ' if metric == 'CF1' else ''}{metric} (%)",
    )
axes[0].legend(fontsize=7)
fig.tight_layout()
plt.show()

# %%
top_noise, big = NOISE[-1], max(SIZES)
for eta in NOISE:
    for size in SIZES:
        effect = paired(
            values(("WARP", size, eta), "CF1"), values(("RML", size, eta), "CF1")
        )
        # with WARP's learning rate tuned too, RML is not ahead anywhere (see the text)
        if eta > 0:
            claims.paper(
                f"RML > WARP in top-3 CF1, {eta:.0%} corrupted, "
                f"{size:.0%} of the data",
                effect.detected(),
                expect=False,
                measured=effect,
                paper="Fig. 3: RML above WARP at every level",
            )
for size in SIZES:
    effect = paired(
        values(("WARP", size, top_noise), "mAP"),
        values(("RML", size, top_noise), "mAP"),
    )
    claims.paper(
        f"RML > WARP in mAP, {top_noise:.0%} corrupted, {size:.0%} of the data",
        effect.detected(),
        expect=False,
        measured=effect,
        paper="Fig. 3; Table 4: 71.5 vs 63.2 (clean COCO)",
    )
more_data = paired(
    values(("RML", min(SIZES), top_noise), "CF1"),
    values(("RML", big, top_noise), "CF1"),
)
claims.paper(
    "more data (20 % vs 10 %) helps at the highest noise level (RML, top-3 CF1)",
    more_data.detected(),
    measured=more_data,
    paper="Fig. 3: a constant improvement",
);

# %% [markdown]
# In top-3 CF1, the metric the released code tunes for, RML is **not** above WARP at any
# corruption level here: each difference is within its seed spread or favours WARP, so the
# ordering of the paper's Figure 3 is not reproduced. The control decides it. WARP's
# validation score keeps rising as its learning rate goes down to the second-smallest rate of
# the grid (the tuning table), so a grid that stops higher leaves WARP with too large a step
# and hands RML an advantage that is the learning rate's, not the loss's; RML's validation
# score hardly moves across the grid (the range printed under the table), so its choice at the
# grid's lower end is a near tie. (A verdict near its boundary is *borderline*: the claims
# table marks it where it crosses, since the last bits of another machine can tip it.) In
# **mAP** RML falls far below WARP under heavy corruption. A ranking loss orders labels *within* an image — what top-3 metrics
# score — while mAP orders images *within* a class. Which part of RML costs mAP? We isolate it
# at the highest noise level with three variants: RML without the $\kappa$ term (the ramp on
# pairs only), the $\kappa$ term with a hinge instead of the ramp (`beta=0`, an unbounded
# per-label term), and the released code's soft ramp (`beta=0.9`, with its rounding of the
# rank).

# %%
VARIANTS = {
    "RML, kappa = 0 (ramp pairs only)": {"kappa": 0.0},
    "hinge instead of ramp (beta = 0)": {"beta": 0.0},
    "released code: soft ramp (beta = 0.9), round": {
        "beta": 0.9,
        "rank_rounding": "round",
    },
}
plan = {}
for seed in SEEDS:
    observed = labels.frequency_corruption(
        SUBSETS[big].labels, top_noise, seed=1000 + seed
    )
    for name, args in VARIANTS.items():
        plan[name, seed] = planned(
            config(
                f"variant-{sorted(args.items())}",
                "rml",
                BEST_LR["RML"],
                seed,
                loss_args=args,
            ),
            SUBSETS[big],
            observed,
            test,
            collect=top3_on_test,
        )
for (name, _), outcome in run_many(plan).items():
    R.setdefault((name, big, top_noise), []).append(outcome.collected)
rows = [
    [name]
    + [fmt_mean_std(values((name, big, top_noise), c)) for c in ("CF1", "OF1", "mAP")]
    for name in [*LOSSES, *VARIANTS]
]
markdown_table(
    ["loss", "top-3 CF1", "top-3 OF1", "mAP"],
    rows,
    caption=f"{top_noise:.0%} corrupted, {big:.0%} of the data, {P['dataset']}, "
    f"{P['n_seeds']} seeds (mean ± sd)",
)

# %%
code_vs_paper = paired(
    values(("RML", big, top_noise), "mAP"),
    values(("released code: soft ramp (beta = 0.9), round", big, top_noise), "mAP"),
)
no_kappa = paired(
    values(("RML", big, top_noise), "mAP"),
    values(("RML, kappa = 0 (ramp pairs only)", big, top_noise), "mAP"),
)
claims.ours(
    "the hard-ramp kappa term costs the mAP: RML without it is better "
    f"({top_noise:.0%} corrupted)",
    no_kappa.detected(),
    measured=no_kappa,
)
claims.ours(
    "the released code's soft ramp (slope 0.1 past s) recovers mAP over the paper's "
    "hard ramp",
    code_vs_paper.detected(),
    measured=code_vs_paper,
)
hinge = paired(
    values(("RML", big, top_noise), "mAP"),
    values(("hinge instead of ramp (beta = 0)", big, top_noise), "mAP"),
)
claims.ours(
    "with a hinge in place of its ramp, the kappa term no longer costs the mAP: "
    "the hinge variant beats RML",
    hinge.detected(),
    measured=hinge,
);

# %% [markdown]
# The culprit is the **per-label $\kappa$ term with its hard ramp**: without the term RML's
# mAP rises, and with the term kept but an unbounded hinge in place of the ramp it rises too
# (the variants table). Once a positive's score falls below $s$ the hard ramp gives it no
# gradient at all, from a wrong label or a hard right one alike: rare classes whose positives
# start below the ramp are given up, which a per-image top-3 metric hardly notices and a
# per-class mAP does. The released code's slope of 0.1 past $s$ keeps a small pull on them and
# recovers part of the mAP — an implementation detail the paper does not mention.
#
# ### What a mislabelled image can do to the gradient
#
# The argument for the ramp is about single samples: a wrong label should not dominate. We
# measure it on the trained heads: the norm of each training image's gradient with respect
# to its scores, for the corrupted and the clean images, and their ratio.

# %%
GRAD: dict[str, list] = {}
for seed in SEEDS:
    observed = labels.frequency_corruption(
        SUBSETS[big].labels, top_noise, seed=1000 + seed
    )
    corrupted = torch.zeros(len(SUBSETS[big]), dtype=torch.bool)
    corrupted[
        labels.frequency_corruption_index(
            SUBSETS[big].labels, top_noise, seed=1000 + seed
        )
    ] = True
    for name, (loss, args) in (("WARP", LOSSES["WARP"]), ("RML", LOSSES["RML"])):
        result = train(
            config(f"gradnorm-{name}", loss, BEST_LR[name], seed, loss_args=args),
            SUBSETS[big],
            observed,
            test,
        )
        scores = result.trainer.predict(SUBSETS[big]).double().requires_grad_(True)
        fn = losses.warp if loss == "warp" else losses.rml
        per_image = fn(
            scores,
            observed,
            reduction="none",
            generator=torch.Generator().manual_seed(seed),
        )
        (grad,) = torch.autograd.grad(per_image.sum(), scores)
        norm = grad.norm(dim=1)
        GRAD.setdefault(name, []).append(
            (float(norm[corrupted].mean()), float(norm[~corrupted].mean()))
        )
markdown_table(
    ["loss", "corrupted images", "clean images", "ratio corrupted / clean"],
    [
        [
            name,
            fmt_mean_std([c for c, _ in v], 2),
            fmt_mean_std([k for _, k in v], 2),
            fmt_mean_std([c / k for c, k in v], 2),
        ]
        for name, v in GRAD.items()
    ],
    caption="Mean per-image gradient norm ‖∂ℓᵢ/∂fᵢ‖ after training, "
    f"{top_noise:.0%} corrupted, {big:.0%} of the data, {P['dataset']}, "
    f"{P['n_seeds']} seeds (mean ± sd)",
)

# %%
ratio_change = paired([c / k for c, k in GRAD["WARP"]], [c / k for c, k in GRAD["RML"]])
claims.ours(
    "the ramp lowers the corrupted images' pull relative to the clean ones by more "
    "than 0.5 (ratio)",
    ratio_change.mean + ratio_change.sd < -0.5,
    expect=False,
    measured=ratio_change,
);

# %% [markdown]
# ## Semi-supervised learning (§2.2-2.3, Tables 1-2)
#
# The paper's semi-supervised experiments are single-label: CIFAR-10 with 4,000 labelled
# images (8 %) and the rest unlabelled, and STL-10 whose unlabelled pool also holds images of
# other classes. The benchmark's version: the scenes that hold exactly one labelled object form
# the in-set pool, 8 % of it labelled; scenes holding only distractor objects of out-of-set
# classes play STL-10's foreign images. Accuracy is the share of test images whose top score
# is their class.

# %%
generated = (
    P["dataset"] == "shapescenes"
)  # the benchmark can add distractor-only scenes; a real set has its own
ss_images = create_dataset(
    P["dataset"],
    "train",
    n=P["ss_n"],
    **common,
    **({"ood_fraction": P["ss_ood_fraction"]} if generated else {}),
)
# about a quarter of the generated test scenes hold a single object: draw twice as many
ss_test_images = create_dataset(
    P["dataset"], "test", n=P["n_test"] * (2 if generated else 1), **common
)
positives = (ss_images.labels == 1).sum(dim=1)
in_set = (positives == 1).nonzero()[:, 0]
distractors = (positives == 0).nonzero()[:, 0][: P["ss_n_distractors"]]
ss_test_index = ((ss_test_images.labels == 1).sum(dim=1) == 1).nonzero()[:, 0]
pool_index = torch.cat([in_set, distractors])
ss_pool = extract_features(net, Subset(ss_images, pool_index), DEV)
ss_test = extract_features(net, Subset(ss_test_images, ss_test_index), DEV)
n_in = len(in_set)
markdown_table(
    ["set", "images"],
    [
        ["in-set pool (one labelled object)", n_in],
        [
            f"labelled ({P['ss_labelled']:.0%} of the in-set pool)",
            round(P["ss_labelled"] * n_in),
        ],
        ["distractor-only scenes", len(distractors)],
        ["test (one object)", len(ss_test)],
    ],
)


# %%
def accuracy(result, test_set) -> float:
    logits = result.trainer.predict(test_set)
    return 100 * float(
        (logits.argmax(dim=1) == (test_set.labels == 1).int().argmax(dim=1))
        .float()
        .mean()
    )


SUPERVISED = {
    "softmax": ("softmax_ce", 0.1),
    "WARP": ("warp", 0.01),
    "RML": ("rml", 0.01),
}
A: dict[tuple, list] = {}
PROP: dict[tuple, list] = {}
for seed in SEEDS:
    # the same labelled images with and without distractors; distractors are never
    # labelled
    observed_in = labels.semi_supervised(
        ss_pool.labels[:n_in], round(P["ss_labelled"] * n_in), seed=2000 + seed
    )
    for with_distractors in (False, True):
        data = ss_pool if with_distractors else Subset(ss_pool, torch.arange(n_in))
        observed = (
            torch.cat([observed_in, torch.zeros_like(ss_pool.labels[n_in:])])
            if with_distractors
            else observed_in
        )
        labelled = (observed != 0).any(dim=1).nonzero()[:, 0]
        if (
            not with_distractors
        ):  # the supervised baselines see the labelled images only
            for name, (loss, lr) in SUPERVISED.items():
                result = train(
                    config("ss-sup", loss, lr, seed, epochs=P["ss_epochs"]),
                    Subset(data, labelled),
                    observed[labelled],
                    ss_test,
                )
                A.setdefault((name, "pretrained"), []).append(accuracy(result, ss_test))
                if name == "RML":
                    warm = {
                        k: v.clone()
                        for k, v in result.trainer.module.state_dict().items()
                    }
        t_rules = (
            {"median": "median", "code": "code", "none (s = 1)": 1e12}
            if with_distractors
            else {"median": "median"}
        )
        for t_name, t in t_rules.items():
            method = SSRMLMethod(
                observed,
                refresh_every=P["ss_refresh"],
                t=t,
                init_state=warm,
                truth=data.labels,
            )
            key = (
                "SS-RML" + (", with distractors" if with_distractors else ""),
                "pretrained",
                t_name,
            )
            cfg = config(
                f"ss-{with_distractors}-{t_name}",
                "rml",
                SUPERVISED["RML"][1],
                seed,
                epochs=P["ss_refine_epochs"],
            )
            result = train(cfg, data, observed, ss_test, method=method)
            A.setdefault(key, []).append(accuracy(result, ss_test))
            w = method.weights.cpu()
            unl = (observed == 0).all(dim=1)
            PROP.setdefault(key, []).append(
                {
                    "precision": method.propagation.refreshes[-1].get(
                        "precision", math.nan
                    ),
                    "w_in": float(w[:n_in][unl[:n_in]].mean()),
                    "w_out": float(w[n_in:].mean())
                    if with_distractors and len(w) > n_in
                    else math.nan,
                }
            )

# %% [markdown]
# ### From scratch (random initialisation)
#
# The same comparison with the small backbone trained end to end from random weights on the
# images (with flips), SS-RML continuing from the RML network with its features refreshed.

# %%
ss_images_in = Subset(ss_images, in_set)
ss_test_img = Subset(ss_test_images, ss_test_index)
n_labelled = round(P["ss_labelled"] * n_in)
OBSERVED = {
    seed: labels.semi_supervised(ss_images_in.labels, n_labelled, seed=2000 + seed)
    for seed in SEEDS
}


def scratch_accuracy(result) -> float:
    return accuracy(result, ss_test_img)


def accuracy_and_weights(result) -> tuple[float, dict]:
    """The test accuracy and the trained weights (SS-RML continues from them)."""
    state = result.trainer.module.state_dict()
    return scratch_accuracy(result), {k: v.clone() for k, v in state.items()}


def accuracy_and_refreshes(result) -> tuple[float, list[dict]]:
    """The test accuracy and what each refresh of the pseudo-labels measured."""
    return scratch_accuracy(result), result.trainer.method.propagation.refreshes


# the supervised runs side by side, then SS-RML from each seed's RML network
plan = {}
for seed in SEEDS:
    labelled = (OBSERVED[seed] != 0).any(dim=1).nonzero()[:, 0]
    for name, (loss, _) in SUPERVISED.items():
        lr = P["scratch_lr"] * (1 if loss == "softmax_ce" else 0.1)
        cfg = config("scratch-sup", loss, lr, seed, epochs=P["scratch_epochs"],
                     features=False, batch=32)
        plan[seed, name] = planned(
            cfg, Subset(ss_images_in, labelled), OBSERVED[seed][labelled], ss_test_img,
            collect=accuracy_and_weights if name == "RML" else scratch_accuracy)
supervised = run_many(plan)
semi = run_many({seed: planned(
    config("scratch-ss", "rml", P["scratch_lr"] * 0.1, seed,
           epochs=P["scratch_ss_epochs"], features=False),
    ss_images_in, OBSERVED[seed], ss_test_img, collect=accuracy_and_refreshes,
    method=SSRMLMethod(OBSERVED[seed], init_state=supervised[seed, "RML"].collected[1],
                       refresh_every=max(1, P["scratch_ss_epochs"] // 2),
                       truth=ss_images_in.labels))
    for seed in SEEDS})
for seed in SEEDS:
    for name in SUPERVISED:
        got = supervised[seed, name].collected
        A.setdefault((name, "random init"), []).append(got[0] if name == "RML" else got)
    acc, refreshes = semi[seed].collected
    A.setdefault(("SS-RML", "random init", "median"), []).append(acc)
    PROP.setdefault(("SS-RML", "random init", "median"), []).append(
        {"precision": refreshes[-1].get("precision", math.nan),
         "curve": [r.get("precision", math.nan) for r in refreshes]})

# %%
PAPER_T1 = {
    ("RML", "pretrained"): 89.24,
    ("SS-RML", "pretrained", "median"): 91.46,
    ("WARP", "pretrained"): 85.41,
    ("softmax", "pretrained"): 89.32,
    ("RML", "random init"): 52.37,
    ("SS-RML", "random init", "median"): 58.86,
    ("WARP", "random init"): 50.52,
    ("softmax", "random init"): 51.46,
}
markdown_table(
    ["method", "initialisation", "heat kernel t", "accuracy (%)", "CIFAR-10, Table 1"],
    [
        [
            k[0],
            k[1],
            k[2] if len(k) > 2 else "",
            fmt_mean_std(v),
            PAPER_T1.get(k, "") if "distractors" not in k[0] else "",
        ]
        for k, v in A.items()
    ],
    caption=f"Semi-supervised single-label task: {P['dataset']} single-object scenes, "
    f"{P['ss_labelled']:.0%} labelled, {P['n_seeds']} seeds (mean ± sd); "
    "'pretrained' = frozen features of the shipped backbone",
)

# %%
ss_gain = paired(A["RML", "pretrained"], A["SS-RML", "pretrained", "median"])
ss_gain_scratch = paired(A["RML", "random init"], A["SS-RML", "random init", "median"])
claims.paper(
    "SS-RML > RML (pretrained features)",
    ss_gain.detected(),
    expect=False,
    measured=ss_gain,
    paper="Table 1: +2.2 (CIFAR-10), Table 2: +3.0 (STL-10)",
)
claims.paper(
    "SS-RML > RML (random init)",
    ss_gain_scratch.detected(),
    expect=False,
    measured=ss_gain_scratch,
    paper="Table 1: +6.5",
)
warp_gap = paired(A["WARP", "pretrained"], A["RML", "pretrained"])
claims.paper(
    "RML > WARP on single-label data (pretrained)",
    warp_gap.detected(),
    expect=False,
    measured=warp_gap,
    paper="Table 1: 89.2 vs 85.4",
)
soft_gap = paired(A["RML", "pretrained"], A["softmax", "pretrained"])
claims.paper(
    "softmax ≳ RML on single-label data (pretrained): softmax not below RML",
    soft_gap.mean > -soft_gap.sd,
    measured=soft_gap,
    paper="Table 1: 89.3 vs 89.2",
);

# %% [markdown]
# ### The heat kernel's job
#
# Eq. 5's weight is meant to silence foreign images: far from every labelled image, they
# should get a small $s_i$. We compare the mean weight of distractor-only scenes with that of
# in-set unlabelled scenes, and the pseudo-labels' precision (the share of unlabelled images
# given exactly their true label vector) — measurable only because the benchmark keeps the
# truth. Three rules for the bandwidth $t$, which the paper does not give: the median
# nearest-labelled distance (ours), the released code's mean distance × unlabelled share,
# and no kernel at all ($s_i = 1$).

# %%
def weight_cell(records: list[dict], key: str) -> str:
    """Mean ± sd of a weight over seeds, or a dash where the run has no such images."""
    v = [r.get(key, math.nan) for r in records]
    return "–" if any(math.isnan(x) for x in v) else fmt_mean_std(v, 2)


heat_rows = [
    [
        key[0],
        key[1],
        key[2],
        fmt_mean_std([100 * r["precision"] for r in records]),
        weight_cell(records, "w_in"),
        weight_cell(records, "w_out"),
    ]
    for key, records in PROP.items()
]
markdown_table(
    [
        "method",
        "initialisation",
        "t",
        "pseudo-label precision (%)",
        "mean s, in-set",
        "mean s, distractors",
    ],
    heat_rows,
    caption="Label propagation at its last refresh: "
    f"{P['dataset']}, {P['n_seeds']} seeds",
)

# %%
with_d = PROP["SS-RML, with distractors", "pretrained", "median"]
separation = paired([r["w_out"] for r in with_d], [r["w_in"] for r in with_d])
claims.ours(
    "the heat kernel gives distractor scenes less weight than in-set unlabelled scenes",
    separation.detected(),
    measured=separation,
)
claims.ours(
    "... but the difference in weight is below 0.1 (on weights of about 0.4)",
    separation.within(0.1),
    measured=separation,
)
kernel_vs_none = paired(
    A["SS-RML, with distractors", "pretrained", "none (s = 1)"],
    A["SS-RML, with distractors", "pretrained", "median"],
)
claims.ours(
    "with distractors, the heat kernel (median t) beats no kernel (s = 1)",
    kernel_vs_none.detected(),
    expect=False,
    measured=kernel_vs_none,
);

# %% [markdown]
# In this feature space the kernel separates the two only slightly: distractor scenes lie
# almost as close to a labelled image as in-set scenes do, so their weights are lower but of
# the same order, and the choice of $t$ changes little. The propagated labels are wrong for
# about half the unlabelled images with pretrained features (more often with distractors),
# and far more often from scratch: SS-RML does not beat RML here, with or without distractors. The paper's gains came with
# ImageNet features on CIFAR-10, where nearest neighbours are far more often of the same class.
#
# ## Claims
#
# The claims of this chapter, as measured in this run:

# %% tags=["nbval-check-output"]
claims.table(
    "paper",
    caption="Cevikalp et al. 2019, the paper's claims: "
    f"{P['dataset']}, {P['image_size']} px, {P['n_seeds']} seeds; paired Δ ± sd "
    "(reproduced: the effect exceeds its spread)",
)

# %% tags=["nbval-check-output"]
claims.table(
    "ours",
    caption="Cevikalp et al. 2019, our observations: "
    f"{P['dataset']}, {P['image_size']} px, {P['n_seeds']} seeds",
)

# %% [markdown]
# ## Paper and code
#
# * **The ramp.** The paper's $R_s = H_1 - H_s$ is flat past $s$; the released code
#   (`bbenligiray/rml-cnn`, C++ ops) uses $H_1 - 0.9 H_s$. The two differ on mAP under noise
#   (table above). `losses.rml(beta=0.9)` is the code's form.
# * **The rank.** Paper: $\lfloor (m-1)/q \rfloor$; code: `round((C-1)/N)`, with $N$ the
#   draws until the first violating negative and $|C^-| + 1$ when none violates. Both multiply
#   $L(r_j)$ into the loss over *all* negatives of the positive, as Eq. 1's double sum does.
#   `rank_rounding="round"` is the code's.
# * **Weights in SS-RML.** The paper sets $s_i = 1$ for labelled images and multiplies both
#   terms of Eq. 6 by $s_i$; the code gives labelled images weight 5 (in place of $\kappa$)
#   and the heat kernel's $t$ = mean distance × unlabelled share. We follow the paper and offer
#   the code's $t$ (`t="code"`).
# * **Scaling and optimiser.** The code divides the loss by the batch size and again by 20 and
#   trains with Nesterov SGD at lr 0.01, weight decay 1e-7; the paper reports weight decay
#   5e-4 (semi-supervised) and 5e-5 (supervised) and fixed learning rates of 1e-3 / 1e-4. We
#   use SGD with momentum 0.9 and tune the learning rate per loss on a validation split.
# * **Refresh period.** §2.3 refreshes the propagation every 20 epochs; with frozen features it
#   cannot change (the paper's hand-crafted-feature case), and from scratch we refresh every
#   other epoch of a short run.
# * **Top-3 metrics.** The code's "per class" precision and recall sum over the wrong axis
#   (per image); the book uses the standard per-class definitions (chapter 1).
#
# ## Summary
#
# * RML is WARP with a bounded loss and a per-label margin term; its gradient is the paper's
#   Eq. 7-8, zero for any pair or label past the ramp.
# * WARP's sampled rank is a coarse, noisy estimate, tamed by the logarithmic weight.
# * With each loss's learning rate tuned on a validation split, RML does not keep a higher
#   top-3 F1 than WARP under corrupted labels, as the paper reports it does; its mAP falls far
#   below WARP's, through the per-label $\kappa$ term (its hard ramp gives up on hard
#   positives; a hinge in its place does not) — the released code's soft ramp recovers part
#   of it.
# * Label propagation does not help here: about half its pseudo-labels are wrong, and the heat
#   kernel hardly tells foreign images apart in this feature space.
#
# ## Exercises
#
# 1. Set `noise_levels="0,0.2,0.4,0.6"`. Does RML overtake WARP in top-3 F1 at 60 %?
#    Then set `lrs="0.001,0.003,0.01"`: how does the comparison change when WARP's learning
#    rate cannot go below 0.001?
# 2. Replace the median bandwidth with `t=0.5` times it in `SSRMLMethod`. Do distractor
#    scenes get lower weights, and does the accuracy change?
# 3. Show that $\mathbb{E}[q] = (n + 1)/(v + 1)$ for the first of $v$ marked items in a random
#    order of $n$.

# %% tags=["remove-cell"]
print(f"chapter time: {time.perf_counter() - chapter_start:.0f} s")
