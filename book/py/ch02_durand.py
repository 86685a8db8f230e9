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
# (ch02)=
# # Partial labels: partial-BCE, a label graph and curriculum relabeling
#
# {cite:t}`durand2019learning` ask two questions. **Which labels should we buy?** With a fixed
# budget of correct labels, is it better to label every image partially, a few images
# completely, or every image fully but with mistakes? And **how do we learn from partial
# labels?** Their answer has three parts:
#
# 1. the **partial-BCE** loss, which rescales each image's loss by a function of its share of
#    known labels, so that training with few labels keeps the learning dynamics of training
#    with all of them (§3.1);
# 2. a **graph neural network** over label nodes on top of the ConvNet, to reason about
#    correlations between observed and unobserved labels (§3.2, appendix A.1);
# 3. **curriculum relabeling**: during training, the model labels the missing labels it is
#    sure about, and training continues on the clean and the new weak labels (§3.3).
#
# This chapter derives each part, checks it, and reruns the paper's experiments — the labeling
# strategies (Fig. 3, Tables 1, 6, 7), BCE against partial-BCE (Fig. 3), the normalisation
# sweeps (Figs. 5, 6), the GNN (Fig. 4), the relabeling strategies (Tables 2, 8) and the
# ablation (Table 4) — with our numbers beside the paper's.
#
# **Scales.** The paper fine-tunes an ImageNet ResNet-101 WELDON at 448 px for 20 epochs on
# COCO, VOC 2007 and NUS-WIDE; `scale = "full"` runs exactly that setting (dozens of full
# trainings: reduce `n_seeds` or the grids for a first look). The quick scale needs well over a
# hundred trainings in a few minutes on two CPU cores, so it uses a **frozen-feature variant**:
# the small CNN the package ships pretrained on ObjectScenes — one large object per image, 30
# classes, a scene stream disjoint from the chapter's data, as ImageNet is for COCO
# (`mlrobust.pretrained`) — is frozen, its feature maps are cached, and every run trains the
# WELDON head (and the GNN) on the cache, through the same engine. One ablation row fine-tunes
# the backbone (all but its stem and first stage, as in chapter 1), to show what freezing
# costs.
#
# **The regime.** Chapter 1's calibration table places this test bed: the network recognises
# objects far above what the scene context alone predicts, but its mAP is lower than a
# ResNet-101's on COCO and, with few labels, it calls far fewer labels present at logit 0 than
# the paper's models do. Findings that depend on that operating point — relabeling by score —
# are flagged as such below.

# %% tags=["parameters", "hide-input"]
# Parameters (papermill). None means "the value for the chosen scale", read from
# params/ch02_durand.yaml: "quick" runs on a CPU (frozen features; its time is in the
# README), "full" is the paper's setting for a GPU (ResNet-101 WELDON at 448 px,
# fine-tuned).
scale = "quick"
dataset = None
data_root = None
device = None
backbone = None
weights = None
freeze_at = None
cache_frozen = None
image_size = None
n_train = None
n_test = None
frozen = None
epochs = None
batch_size = None
lr = None
schedule = None
lr_step = None
finetune_epochs = None
finetune_lr = None
finetune_lr_factors = None
n_seeds = None
n_val = None
lr_factors = None
proportions = None
noisy_clean = None
g_values = None
gammas = None
dropout = None
passes = None
relabel_gnn = None
output_dir = None

# %% tags=["hide-input"]
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display

from mlrobust import labels, losses
from mlrobust.config import (DataConfig, ExperimentConfig, LossConfig, ModelConfig,
                             TrainConfig)
from mlrobust.data import DataSplits, Subset, extract_features, hold_out
from mlrobust.engine import resolve_device
from mlrobust.experiments import Run, build_data, frozen_backbone, run_many, tune_lr
from mlrobust.seeding import derive_seed
from mlrobust.methods.durand import CurriculumRelabeling, select_labels
from mlrobust.models import LabelGNN, WeldonPooling
from mlrobust.claims import Claims, paired
from mlrobust.notebook import (claims_checked, floats, fmt_mean_std, markdown_table,
                               mean_std, resolve_parameters, show_source)

P = resolve_parameters("ch02_durand", scale, dict(
    dataset=dataset, data_root=data_root, device=device, backbone=backbone,
    weights=weights, freeze_at=freeze_at, cache_frozen=cache_frozen,
    image_size=image_size, n_train=n_train, n_test=n_test,
    frozen=frozen, epochs=epochs, batch_size=batch_size, lr=lr, schedule=schedule,
    lr_step=lr_step, finetune_epochs=finetune_epochs, finetune_lr=finetune_lr,
    finetune_lr_factors=finetune_lr_factors, n_seeds=n_seeds, n_val=n_val,
    lr_factors=lr_factors,
    proportions=proportions, noisy_clean=noisy_clean, g_values=g_values, gammas=gammas,
    dropout=dropout, passes=passes, relabel_gnn=relabel_gnn, output_dir=output_dir))
PROPORTIONS, CLEAN, G_VALUES, GAMMAS = (
    floats(P[k], k) for k in ("proportions", "noisy_clean", "g_values", "gammas"))
SEEDS = range(P["n_seeds"])
chapter_start = time.perf_counter()
# measured claims fail the build at the quick scale with its preset parameters;
# elsewhere they are reported
claims = Claims(strict=claims_checked("ch02_durand", scale, P))
images = build_data(DataConfig(dataset=P["dataset"], root=P["data_root"],
                               image_size=P["image_size"], n_train=P["n_train"],
                               n_test=P["n_test"]))
markdown_table(["parameter", "value"], [[k, repr(v)] for k, v in P.items()])

# %% [markdown]
# ## The partial-BCE loss
#
# Write $\x \in \R^C$ for the network's logits and $\y \in \{-1, 0, 1\}^C$ for an image's
# labels. The binary cross-entropy used for multi-label training is normalised by the number
# of classes, so its scale does not depend on $C$. With partial labels the unknown terms are
# dropped, and the normalisation becomes a problem: an image with 10 % of its labels known
# contributes a tenth of the gradient of a fully labelled one. Durand et al. replace the
# constant $1/C$ by a function $g$ of the image's **proportion of known labels** $\py$
# (their Eq. 1):
#
# ```{math}
# :label: eq-partial-bce
# \ell(\x, \y) = -\frac{g(\py)}{C} \sum_{c=1}^{C} \Big[ \ind{y_c = 1} \log \sig(x_c)
#   + \ind{y_c = -1} \log\big(1 - \sig(x_c)\big) \Big],
# ```
#
# with (Eq. 2)
#
# ```{math}
# :label: eq-g
# g(\py) = \alpha\, \py^{\gamma} + \beta .
# ```
#
# The standard BCE is $g \equiv 1$. Asking that the loss equal the BCE when every label is
# known, $g(1) = 1$, and fixing the weight at one proportion, say $g(0.1) = 5$, gives two
# linear equations in $\alpha, \beta$ for each $\gamma$:
#
# $$\alpha + \beta = 1, \qquad \alpha\, 0.1^\gamma + \beta = 5 \quad\Longrightarrow\quad
# \alpha = \frac{5 - 1}{0.1^\gamma - 1}, \quad \beta = 1 - \alpha .$$
#
# For $\gamma = 1$ this is $\alpha = -4.44\ldots$, $\beta = 5.44\ldots$, which the paper rounds
# to $-4.45$ and $5.45$. $\gamma$ sets the shape: $\gamma = 1$ makes $g$ linear in $\py$, and
# $\gamma = -1$ with $\alpha = 1, \beta = 0$ would normalise by the number of known labels
# instead of $C$ (there is no solution for $\gamma = 0$). The package's code:

# %%
show_source(losses.partial_bce_coefficients, losses.partial_bce)

# %% mystnb={"figure": {"caption": "The normalisation g(p) of Eq. 2 for several gamma, each with g(1) = 1 and g(0.1) = 5 (the paper's Figure 2). Dotted: the standard BCE, g = 1.", "name": "fig-g"}} tags=["hide-input"]
p = np.linspace(0.05, 1.0, 200)
fig, ax = plt.subplots(figsize=(6, 3.6))
for gam in (-1.0, 0.5, 1.0, 2.0, 3.0):
    a, b = losses.partial_bce_coefficients(gam, g_at=0.1, value=5.0)
    ax.plot(p, a * p**gam + b, label=f"γ = {gam:g}  (α = {a:.2f}, β = {b:.2f})")
ax.axhline(1.0, color="grey", linestyle=":", linewidth=1)
ax.scatter([0.1, 1.0], [5.0, 1.0], color="black", zorder=3, s=14)
ax.set_ylim(0, 10), ax.set_xlabel("proportion of known labels $p_y$")
ax.set_ylabel("g($p_y$)")
ax.legend(fontsize=8), ax.grid(alpha=0.3)
fig.tight_layout()

# %% [markdown]
# ### Gradient checks
#
# $g$ depends on the labels only, so on a known label the gradient is
# $\partial \ell / \partial x_c = g(\py)\,(\sig(x_c) - \ind{y_c = 1}) / C$ — the BCE gradient
# times $g(\py)$ — and zero on an unknown one. The batch loss averages over the $N$ images.
# We check the implementation three ways in double precision: against that formula, against
# automatic differentiation, and against central finite differences.

# %% tags=["nbval-check-output"]
gen = torch.Generator().manual_seed(0)
x = torch.randn(6, 8, dtype=torch.float64, generator=gen, requires_grad=True)
y = (torch.randint(0, 3, (6, 8), generator=gen) - 1).to(torch.int8)
y[0] = 1  # a fully known image
y[1] = 0
y[1, 3] = -1  # an image with a single known label
y[2] = 0  # an image with none
alpha, beta = losses.partial_bce_coefficients(1.0)


def loss_at(z: torch.Tensor) -> torch.Tensor:
    return losses.partial_bce(z, y, alpha, beta)


autograd = torch.autograd.grad(loss_at(x), x)[0]
p_y = (y != 0).double().mean(1, keepdim=True)
g = torch.where(p_y > 0, alpha * p_y + beta, 0.0)
analytic = (g * (torch.sigmoid(x) - (y == 1).double()) * (y != 0)
            / (x.shape[0] * x.shape[1]))
h, numeric = 1e-6, torch.zeros_like(x)
with torch.no_grad():
    for i in range(x.shape[0]):
        for c in range(x.shape[1]):
            e = torch.zeros_like(x)
            e[i, c] = h
            numeric[i, c] = (loss_at(x + e) - loss_at(x - e)) / (2 * h)
assert torch.autograd.gradcheck(loss_at, (x,))
assert (autograd - analytic).abs().max() < 1e-15
assert (autograd - numeric).abs().max() < 1e-9
assert (autograd[y == 0] == 0).all()
print("autograd = analytic formula = finite differences; "
      "unknown labels get zero gradient")

# %% [markdown]
# ### Why the BCE starves with few labels (§3.1), in numbers
#
# The total gradient an image sends back is the sum of $|\partial \ell / \partial x_c|$ over
# its known labels. With the BCE it shrinks in proportion to $\py$; with the partial-BCE it is
# multiplied by $g(\py)$, which for $\gamma = 1$ turns the factor $\py$ into
# $\py(\alpha \py + \beta)$: at 10 % known, half of the full-label gradient instead of a tenth.
# (In between it even exceeds the full-label gradient — the factor peaks at
# $\beta^2 / 4|\alpha| \approx 1.7$ near $\py = 0.6$ — one reason the paper's Fig. 6 finds
# other shapes $\gamma$ better at large proportions.) Measured on random logits and the
# benchmark's labels, each image keeping exactly $\operatorname{round}(\py C)$ labels:

# %% mystnb={"figure": {"caption": "Total gradient magnitude sent back by a batch, relative to training with all labels, as a function of the proportion of known labels per image; random logits, embedded-benchmark labels, exactly round(p C) known labels per image.", "name": "fig-gradient"}} tags=["hide-input"]
train_truth = images.train.labels[:1024]
logits = torch.randn(train_truth.shape, generator=torch.Generator().manual_seed(1),
                     requires_grad=True)
known_grid = np.linspace(0.1, 1.0, 10)
PBCE = "partial-BCE (γ = 1, g(0.1) = 5)"
magnitude = {"BCE": [], PBCE: []}
for known in known_grid:
    y_k = labels.partial(train_truth, float(known), seed=0, per_image=True)
    for name, loss in zip(magnitude, (losses.bce, losses.partial_bce)):
        logits.grad = None
        loss(logits, y_k).backward()
        magnitude[name].append(logits.grad.abs().sum().item())
fig, ax = plt.subplots(figsize=(6, 3.4))
for name, values in magnitude.items():
    ax.plot(known_grid, np.array(values) / values[-1], marker="o", label=name)
ax.set_xlabel("proportion of known labels per image")
ax.set_ylabel("total |gradient| / all labels")
ax.legend(), ax.grid(alpha=0.3)
fig.tight_layout()
bce_ratio = magnitude["BCE"][0] / magnitude["BCE"][-1]
pbce_ratio = magnitude[PBCE][0] / magnitude[PBCE][-1]
# the share actually kept at "10 %"
p_y = round(0.1 * train_truth.shape[1]) / train_truth.shape[1]
assert abs(bce_ratio - p_y) < 0.03
assert abs(pbce_ratio - p_y * (alpha * p_y + beta)) < 0.1

# %% [markdown]
# ## The experiments' set-up
#
# Every experiment below uses the network of the paper's experiments — a backbone, a 1×1
# convolution giving one map per class, WELDON pooling (the mean of the 10 % highest and the
# 10 % lowest regions of each map {cite:p}`durand2016weldon`) — and varies the labels, the loss,
# the GNN and the relabeling. The pooling's code:

# %%
show_source(WeldonPooling)

# %% [markdown]
# At the quick scale the shipped pretrained backbone is frozen; its feature maps are cached (the run folders of the full scale are written to `output_dir`, and
# a killed full-scale run resumes where it stopped).

# %%
weights_file = P["weights"]
# the shipped backbone pretrained on ObjectScenes, the stand-in for ImageNet
if P["frozen"]:
    net, weights_file = frozen_backbone(P["backbone"], P["weights"])
    dev = resolve_device(P["device"])
    features = DataSplits(train=extract_features(net, images.train, dev),
                          test=extract_features(net, images.test, dev))
    print(f"feature maps: train {tuple(features.train.features.shape)}, "
          f"test {tuple(features.test.features.shape)}")
setup_seconds = time.perf_counter() - chapter_start


def run(name: str, protocol: str, args: dict, *, loss: str = "bce",
        loss_args: dict | None = None, gnn: int = 0, method: str = "supervised",
        method_args: dict | None = None, seed: int = 0, drop: float = 0.0,
        finetune: bool = False, lr_factor: float = 1.0, data: DataSplits | None = None,
        epochs: int | None = None) -> Run:
    """One training run, planned (:func:`run_all` trains the planned runs side by side).
    ``data`` replaces the chapter's splits (e.g. a validation split to tune on);
    ``lr_factor`` multiplies the learning rate; ``epochs`` replaces the chapter's number
    of epochs. A relabeling run keeps the statistics of its relabeling steps."""
    on_features = P["frozen"] and not finetune
    cfg = ExperimentConfig(name=f"{name}-seed{seed}", output_dir=P["output_dir"],
                           method=method, method_args=method_args or {})
    cfg.data = DataConfig(dataset=P["dataset"], root=P["data_root"],
                          image_size=P["image_size"], n_train=P["n_train"],
                          n_test=P["n_test"], protocol=protocol, protocol_args=args,
                          protocol_seed=seed, augment="none" if on_features else "flip")
    cfg.model = ModelConfig(backbone="features" if on_features else P["backbone"],
                            weights=None if on_features else weights_file,
                            freeze_at=0 if on_features else P["freeze_at"],
                            head="classmap", gnn_steps=gnn,
                            head_args={"pooling": "weldon", "dropout": drop})
    cfg.loss = LossConfig(loss, loss_args or {})
    ep, rate = ((P["finetune_epochs"], P["finetune_lr"]) if finetune
                else (P["epochs"], P["lr"]))
    ep = epochs or ep
    cfg.train = TrainConfig(epochs=ep, batch_size=P["batch_size"], lr=rate * lr_factor,
                            schedule=P["schedule"],
                            lr_steps=[P["lr_step"]] if P["lr_step"] else [],
                            seed=seed, device=P["device"],
                            cache_frozen=P["cache_frozen"] and not on_features)
    full = scale == "full"
    splits = data if data is not None else features if on_features else images
    return Run(cfg, data=splits, write=full, resume=full,
               collect=relabeling_steps if method == "curriculum" else None)


def relabeling_steps(result) -> list[dict]:
    hooks = result.trainer.hooks
    return next(h for h in hooks if isinstance(h, CurriculumRelabeling)).steps


results: dict[tuple, list[dict]] = {}  # test metrics of each setting, one per seed
collected: dict[tuple, list] = {}  # what a run kept (relabeling steps), one per seed
planned: list[tuple[tuple, Run]] = []


def record(key: tuple, run: Run) -> None:
    """Plan ``run`` under ``key`` (seeds of one setting share the key)."""
    planned.append((key, run))


def run_all() -> None:
    """Train the planned runs side by side (`run_many`: one single-threaded process per
    core; each run gives the numbers it gives alone) and file their results by key."""
    outcomes = run_many(dict(enumerate(run for _, run in planned)))
    for (key, _), outcome in zip(planned, outcomes.values()):
        results.setdefault(key, []).append(outcome.metrics)
        collected.setdefault(key, []).append(outcome.collected)
    planned.clear()


def mAP(key: tuple, metric: str = "mAP") -> list[float]:
    return [r[metric] for r in results[key]]


# %% [markdown]
# ## Which labels to buy? (§4.1)
#
# The budget is a number of correct labels: a proportion $q$ of all image-class pairs. Three
# ways to spend it {cite:p}`durand2019learning`:
#
# * **partial** — every image, a random share $q$ of its labels (`labels.partial`);
# * **dense** — a share $q$ of the images with all their labels, the others none
#   (`labels.dense`);
# * **noisy** — every label of every image, a share $1 - q$ of them wrong (`labels.noisy`);
#
# and a fourth, **noisy+**, the web-search assumption: one positive per image kept, every other
# label said absent (`labels.single_positive`). As in the paper, all are trained with the
# standard BCE here.
#
# The paper does not say how dense labels are trained. Kept in the training set, the
# unlabelled images contribute a loss of 0: every image gets the same number of steps as with
# partial labels, and each class head sees a random share $q$ of its column under either
# protocol — so with a frozen backbone, partial and dense must agree *by construction*. The
# reading that gives dense labels a chance to differ trains on the labelled subset only
# (`method="labelled_only"`), and then the step budget matters: the **same epochs** (a share
# $q$ of the steps) or the **same steps** (epochs $/\,q$). We run all three.

# %%
for seed in SEEDS:
    for q in PROPORTIONS:
        record(("partial", q), run(f"partial-{q}", "partial", {"known": q}, seed=seed))
        if q < 1:
            record(("dense", q), run(f"dense-{q}", "dense", {"known": q}, seed=seed))
            record(("dense, subset", q),
                   run(f"dense_subset-{q}", "dense", {"known": q},
                       method="labelled_only", seed=seed))
            record(("dense, subset, same steps", q),
                   run(f"dense_subset_steps-{q}", "dense", {"known": q},
                       method="labelled_only", seed=seed,
                       epochs=round(P["epochs"] / q)))
    for q in CLEAN:
        record(("noisy", q), run(f"noisy-{q}", "noisy", {"clean": q}, seed=seed))
    record(("noisy+",), run("noisy_plus", "single_positive", {}, seed=seed))
run_all()
# all labels: one setting
results[("dense", 1.0)] = results[("noisy", 1.0)] = results[("partial", 1.0)]
print(f"{time.perf_counter() - chapter_start:.0f} s so far")

# %% mystnb={"figure": {"caption": "Test mAP for the three ways of spending a budget of correct labels, against the proportion of correct labels (embedded benchmark, BCE; mean and one standard deviation over seeds). Dense labels three ways: all images kept (unlabelled ones add no loss), the labelled subset only with the same epochs, and with the same number of steps. The paper's Figure 3, top row.", "name": "fig-budget"}} tags=["hide-input"]
fig, ax = plt.subplots(figsize=(6.5, 3.8))
STYLES = {"partial": ("o", "-"), "dense": ("s", "--"), "dense, subset": ("v", "-."),
          "dense, subset, same steps": ("D", ":"), "noisy": ("^", "-")}
for k, (strategy, (marker, line)) in enumerate(STYLES.items()):
    qs = sorted(q for (s, *rest) in results if s == strategy for q in rest)
    m = [mean_std(mAP((strategy, q)))[0] for q in qs]
    e = [mean_std(mAP((strategy, q)))[1] for q in qs]
    shift = 0.008 * (k - 2)  # side by side, so that overlapping curves stay visible
    ax.errorbar([q + shift for q in qs], m, yerr=e, marker=marker, linestyle=line,
                capsize=3, markersize=5, label=strategy,
                markerfacecolor="none" if k % 2 else None)
ax.axhline(mean_std(mAP(("noisy+",)))[0], color="grey", linestyle="--", linewidth=1,
           label="noisy+ (one positive)")
ax.set_xlabel("proportion of correct labels"), ax.set_ylabel("test mAP (%)")
ax.legend(fontsize=9), ax.grid(alpha=0.3)
fig.tight_layout()

# %% [markdown]
# Beside the paper's numbers on MS COCO with ResNet-101 WELDON (its Table 6; Table 1 for
# noisy+):

# %%
PAPER_T6 = {("partial", 0.1): 72.15, ("partial", 0.2): 74.49, ("partial", 0.3): 75.76,
            ("partial", 0.4): 76.56, ("partial", 0.5): 77.22, ("partial", 0.6): 77.73,
            ("partial", 0.7): 78.17, ("partial", 0.8): 78.53, ("partial", 0.9): 78.84,
            ("partial", 1.0): 79.22, ("dense", 0.1): 65.22, ("dense", 0.2): 71.00,
            ("dense", 0.3): 73.80, ("dense", 0.4): 75.44, ("dense", 0.5): 76.59,
            ("dense", 0.6): 77.44, ("dense", 0.7): 78.08, ("dense", 0.8): 78.61,
            ("dense", 0.9): 78.90, ("noisy", 0.5): 3.63, ("noisy", 0.6): 53.10,
            ("noisy", 0.7): 69.09, ("noisy", 0.8): 74.06, ("noisy", 0.9): 76.85,
            ("noisy+",): 71.60}
def paper_key(k: tuple) -> tuple:
    """The paper's row for one of ours: every reading of dense labels is the paper's
    dense row."""
    return ("dense", *k[1:]) if str(k[0]).startswith("dense") else k


rows = [[" ".join(map(str, k)), fmt_mean_std(mAP(k)), f"{PAPER_T6[paper_key(k)]:.2f}"]
        for k in sorted(results, key=str) if paper_key(k) in PAPER_T6]
display(markdown_table([f"labels (ours: {P['dataset']}, {P['image_size']} px, "
                        f"{P['n_seeds']} seeds)", "ours, mAP (%)", "paper, COCO (%)"],
                       rows))
noisy_plus_wrong = labels.compare(labels.single_positive(images.train.labels, seed=0),
                                  images.train.labels)
print(f"noisy+ makes {100 * noisy_plus_wrong['wrong_share']:.1f} % of our training "
      f"labels wrong (COCO: 2.4 % in the paper's Table 1)")

# %% [markdown]
# What agrees and what does not (checked below, each as a difference paired by seed):
#
# * **Noisy labels collapse when half are wrong**, as in the paper (3.63 on COCO): with
#   `clean = 0.5` the labels carry no information.
# * **Partial against dense.** The paper finds partial labels better than dense ones at the
#   same budget, by 7 points at 10 % on COCO. Kept in the training set, dense labels cannot
#   differ from partial ones here (see above), and they do not: that comparison is not
#   evidence either way. The labelled-subset readings are the test, and their verdict depends
#   on the step budget, which the paper does not state.
# * **"20 % of clean partial labels beat 80 % clean and 20 % wrong"** — the paper's example on
#   COCO — and **noisy+ on a par with 10 % partial labels** (71.60 against 72.15) are checked
#   with the BCE, as in the paper.

# %%
low = min(PROPORTIONS)
collapse = paired(mAP(("noisy", 0.5)), mAP(("partial", low))) if 0.5 in CLEAN else None
if collapse is not None:
    claims.paper(f"with half the labels wrong the model collapses: below {low:.0%} "
                 "partial labels", collapse.detected(+1), measured=collapse,
                 paper="3.63 vs 72.15 (COCO)")
for q in PROPORTIONS[:-1]:
    for reading, expect in (("dense, subset", q == low),
                            ("dense, subset, same steps", False)):
        e = paired(mAP((reading, q)), mAP(("partial", q)))
        claims.paper(f"partial labels beat dense labels at {q:.0%} "
                     f"({reading.removeprefix('dense, ')})",
                     e.detected(+1), expect=expect, measured=e,
                     paper=f"{PAPER_T6[('partial', q)] - PAPER_T6[('dense', q)]:+.2f} "
                           "(COCO)")
plus = paired(mAP(("noisy+",)), mAP(("partial", low)))
claims.paper(f"{low:.0%} partial labels are at least on a par with noisy+ (BCE)",
             not plus.detected(-1), expect=False, measured=plus, paper="+0.55 (COCO)")
READINGS = ("dense", "dense, subset", "dense, subset, same steps")
markdown_table(["known labels"] + [f"partial minus {r}" for r in (
                   "dense (all images kept)", *READINGS[1:])],
               [[f"{q:.0%}"] + [str(paired(mAP((r, q)), mAP(("partial", q))))
                                for r in READINGS]
                for q in PROPORTIONS[:-1]],
               caption=f"Partial against dense labels at the same budget "
                       f"({P['dataset']}, {P['image_size']} px, test mAP, paired "
                       f"Δ ± sd over {len(SEEDS)} seeds)")
if 0.2 in PROPORTIONS and 0.8 in CLEAN:
    budget = paired(mAP(("noisy", 0.8)), mAP(("partial", 0.2)))
    claims.paper("20 % partial labels beat 80 % clean noisy labels (BCE)",
                 budget.detected(+1), expect=False, measured=budget,
                 paper=f"{PAPER_T6[('partial', 0.2)] - PAPER_T6[('noisy', 0.8)]:+.2f} "
                       "(COCO)")

# %% [markdown]
# ## BCE or partial-BCE? (§4.2)
#
# Now the same partial labels, with the partial-BCE ($\gamma = 1$, $g(0.1) = 5$) against the
# BCE of the previous section:

# %%
for seed in SEEDS:
    for q in PROPORTIONS[:-1]:
        record(("partial-bce", q), run(f"pbce-{q}", "partial", {"known": q},
                                       loss="partial_bce", seed=seed))
run_all()
# identical losses when every label is known
results[("partial-bce", 1.0)] = results[("partial", 1.0)]

# %% mystnb={"figure": {"caption": "BCE against partial-BCE for partial labels (the paper's Figure 3, bottom row): test mAP against the proportion of known labels; mean and one standard deviation over seeds.", "name": "fig-bce-pbce"}} tags=["hide-input"]
fig, ax = plt.subplots(figsize=(6.5, 3.6))
for key, label in (("partial", "BCE"), ("partial-bce", "partial-BCE")):
    m, e = zip(*(mean_std(mAP((key, q))) for q in PROPORTIONS))
    ax.errorbar(PROPORTIONS, m, yerr=e, marker="o", capsize=3, label=label)
ax.set_xlabel("proportion of known labels"), ax.set_ylabel("test mAP (%)")
ax.legend(), ax.grid(alpha=0.3)
fig.tight_layout()

# %% [markdown]
# At the same learning rate the partial-BCE helps at every proportion below 1, and the fewer
# the labels the larger the gain — the paper's finding on all three datasets (on COCO at 10 %,
# with fine-tuning: 72.15 with the BCE, 75.31 with the partial-BCE, Table 4). At 100 % the two
# losses are the same. The next section asks how much of it is the learning rate.

# %%
same_lr = {q: paired(mAP(("partial", q)), mAP(("partial-bce", q)))
           for q in PROPORTIONS[:-1]}
for q, e in same_lr.items():
    claims.ours(f"at the same learning rate, the partial-BCE beats the BCE at {q:.0%}",
                e.detected(+1), measured=e)
claims.ours("at the same learning rate, the gain grows as labels get fewer",
            same_lr[min(same_lr)].mean
            > same_lr[max(same_lr)].mean + same_lr[min(same_lr)].sd,
            measured=" / ".join(f"{q:.0%}: {e.mean:+.2f}" for q, e in same_lr.items()))
# the paper's budget example, with the partial-BCE
if 0.2 in PROPORTIONS and 0.8 in CLEAN:
    e = paired(mAP(("noisy", 0.8)), mAP(("partial-bce", 0.2)))
    claims.ours("with the partial-BCE, 20 % partial labels beat 80 % clean noisy "
                "labels", e.detected(+1), measured=e)
markdown_table(["known labels",
                "gain of the partial-BCE at the same learning rate (paired Δ ± sd)"],
               [[f"{q:.0%}", str(e)] for q, e in same_lr.items()])

# %% [markdown]
# ### The control: a BCE whose learning rate is tuned too
#
# Is the partial-BCE's gain more than a larger step? Under plain SGD the update of an image's
# contribution is the learning rate $\eta$ times its gradient, and the partial-BCE's gradient is
# the BCE's times $g(\py)$:
#
# $$\eta \, \nabla_\theta \ell_{\text{partial}}(\x, \y)
#   = \eta \, g(\py) \, \nabla_\theta \ell_{\BCE}(\x, \y).$$
#
# With the `partial` protocol every image has nearly the same share of known labels,
# $\py \approx q$, so the partial-BCE is the BCE trained with the learning rate $\eta\,g(q)$
# (and a weight decay divided by $g(q)$, since the decay term is not rescaled); only the
# spread of $\py$ across images (and momentum's interaction with it) makes a difference. The
# "$g(0.1)$ sweep" below is then, to first order, a learning-rate sweep. A fair comparison tunes
# the learning rate of **both** losses, at the lowest proportion and at 50 %, on a validation split: here
# `n_val` training images held out (`data.hold_out`) with labels hidden by the same protocol,
# factors `lr_factors` of the chapter's learning rate, chosen on seed 0 and then run on every
# seed.

# %%
LR_FACTORS = floats(P["lr_factors"], "lr_factors")
base_splits = features if P["frozen"] else images
fit_part, val_part = hold_out(base_splits.train, P["n_val"], seed=derive_seed(0, 0x7A1))
TUNED = sorted({low, 0.5} & set(PROPORTIONS[:-1]))
# the validation labels are partial too
tuning = {q: DataSplits(train=fit_part, test=Subset(
    base_splits.train, val_part.index,
    labels.partial(val_part.labels, q, seed=derive_seed(0, 0x7A2)))) for q in TUNED}
trials = run_many({(loss, q, f): run(f"tune-{loss}-{q}-x{f}", "partial", {"known": q},
                                     loss=loss, lr_factor=f, data=tuning[q])
                   for q in TUNED for loss in ("bce", "partial_bce")
                   for f in LR_FACTORS})
tuning_map = {(loss, q): {f: trials[loss, q, f].metrics["mAP"] for f in LR_FACTORS}
              for q in TUNED for loss in ("bce", "partial_bce")}
tuned_factor = {k: max(scores, key=scores.get) for k, scores in tuning_map.items()}
for seed in SEEDS:
    for (loss, q), f in tuned_factor.items():
        if f == 1.0:
            continue  # the untuned runs above already used this learning rate
        record((f"{loss}-tuned", q), run(f"{loss}-tuned-{q}", "partial", {"known": q},
                                         loss=loss, lr_factor=f, seed=seed))
run_all()
for (loss, q), f in tuned_factor.items():
    if f == 1.0:
        untuned = "partial" if loss == "bce" else "partial-bce"
        results[(f"{loss}-tuned", q)] = results[(untuned, q)]
net = {q: paired(mAP(("bce-tuned", q)), mAP(("partial_bce-tuned", q))) for q in TUNED}
raw = {q: paired(mAP(("partial", q)), mAP(("partial-bce", q))) for q in TUNED}
display(markdown_table(
    ["known labels", "BCE lr factor", "partial-BCE lr factor", "BCE, tuned",
     "partial-BCE, tuned", "gain at the same lr", "gain, both tuned"],
    [[f"{q:.0%}", tuned_factor[("bce", q)], tuned_factor[("partial_bce", q)],
      fmt_mean_std(mAP(("bce-tuned", q))),
      fmt_mean_std(mAP(("partial_bce-tuned", q))), str(raw[q]), str(net[q])]
     for q in TUNED],
    caption=f"Partial-BCE against the BCE with learning rates tuned on a validation "
            f"split ({P['dataset']}, {P['image_size']} px, test mAP %, {len(SEEDS)} "
            "seeds, paired Δ ± sd)"))
display(markdown_table(
    ["loss, known labels"] + [f"lr × {f:g}" for f in LR_FACTORS],
    [[f"{'BCE' if loss == 'bce' else 'partial-BCE'}, {q:.0%}"]
     + [f"{scores[f]:.1f}" for f in LR_FACTORS]
     for (loss, q), scores in tuning_map.items()],
    caption=f"Validation mAP (%) per learning-rate factor ({P['n_val']} held-out "
            "training images, labels through the same protocol, seed 0)"))
# a factor chosen at the top of the grid might have gained from a wider one
at_edge = [f"{'BCE' if loss == 'bce' else 'partial-BCE'} at {q:.0%}"
           for (loss, q), f in tuned_factor.items() if f == max(LR_FACTORS)]
print(f"learning-rate factors tried: {', '.join(f'{f:g}' for f in LR_FACTORS)}; "
      f"chosen at the largest: {', '.join(at_edge) or 'none'}")

# %% [markdown]
# The paper's claim, with its control: the partial-BCE against a BCE whose learning rate was
# tuned as carefully as its own.

# %%
for q, e in net.items():
    claims.paper(f"the partial-BCE beats the BCE at {q:.0%} (both learning rates "
                 "tuned)", e.detected(+1), expect=False, measured=e,
                 paper="+3.16 at 10 % (COCO, Table 4; BCE not re-tuned)")

# %% [markdown]
# With both learning rates tuned, the partial-BCE's gain is gone: at neither proportion does
# it beat the tuned BCE (the table above); the BCE is level with it or ahead. Which of the
# two leads, and by how much, moves with the factors the validation split picks, and it picks
# between near-equal scores. On this benchmark, with a frozen backbone and SGD, the partial-BCE is
# what the derivation says: a per-image learning rate. The line under the table names any
# factor chosen at the top of the grid, where a wider grid could change the verdict. The
# paper compared the two losses at one learning rate; whether its 3-point gain on COCO
# survives a tuned BCE is a question for the full scale.

# %% [markdown]
# ### The normalisation value $g(0.1)$ (Fig. 5) and the shape $\gamma$ (Fig. 6)
#
# At 10 % known labels, varying the weight $g(0.1)$ with $\gamma = 1$ ($g(0.1) = 1$ is the
# BCE); then varying $\gamma$ with $g(0.1) = 5$ at two proportions.

# %%
low = min(PROPORTIONS)
for seed in SEEDS:
    for value in G_VALUES:
        if value == 5:
            continue  # the default, measured above
        a, b = losses.partial_bce_coefficients(1.0, 0.1, value)
        record(("g", value), run(f"g-{value}", "partial", {"known": low},
                                 loss="partial_bce", loss_args={"alpha": a, "beta": b},
                                 seed=seed))
    for gam in GAMMAS:
        if gam == 1:
            continue
        a, b = losses.partial_bce_coefficients(gam, 0.1, 5.0)
        for q in (low, 0.5):
            record(("gamma", gam, q),
                   run(f"gamma{gam}-{q}", "partial", {"known": q}, loss="partial_bce",
                       loss_args={"alpha": a, "beta": b, "gamma": gam}, seed=seed))
run_all()
results[("g", 1.0)] = results[("partial", low)]
results[("g", 5.0)] = results[("partial-bce", low)]
for q in (low, 0.5):
    results[("gamma", 1.0, q)] = results[("partial-bce", q)]

# %% mystnb={"figure": {"caption": "Left: test mAP at 10 % known labels against the normalisation value g(0.1) (gamma = 1; g(0.1) = 1 is the BCE; log scale), the paper's Figure 5. Right: test mAP against gamma at two proportions of known labels (g(0.1) = 5), the paper's Figure 6. Mean and one standard deviation over seeds.", "name": "fig-sweeps"}} tags=["hide-input"]
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8.6, 3.4))
gs = sorted(v for (k, *rest) in results if k == "g" for v in rest)
m, e = zip(*(mean_std(mAP(("g", v))) for v in gs))
ax1.errorbar(gs, m, yerr=e, marker="o", capsize=3)
ax1.set_xscale("log"), ax1.set_xlabel("g(0.1)"), ax1.set_ylabel("test mAP (%)")
ax1.grid(alpha=0.3)
for q, marker in ((low, "o"), (0.5, "s")):
    m, e = zip(*(mean_std(mAP(("gamma", gam, q))) for gam in sorted(GAMMAS)))
    ax2.errorbar(sorted(GAMMAS), m, yerr=e, marker=marker, capsize=3,
                 label=f"{q:.0%} known")
ax2.set_xlabel("γ"), ax2.set_ylabel("test mAP (%)"), ax2.legend(), ax2.grid(alpha=0.3)
fig.tight_layout()

# %% [markdown]
# The paper (§4.4): "$g(0.1) = 1$ gives the worst results. The best score is obtained for a
# normalization value around 20 but the performance is similar for $g(0.1) \in [3, 50]$";
# and "using a normalization that is proportional to the number of known labels
# ($\gamma = 1$) works better than using a normalization that is inversely proportional
# ($\gamma = -1$)", with $\gamma = 3$ better at large proportions. Read with the previous
# section in mind: with $\gamma = 1$, the $g(0.1)$ sweep is to first order a sweep of the
# learning rate at 10 % known labels.

# %%
g_means = {v: mean_std(mAP(("g", v)))[0] for v in gs}
best_g = max(g_means, key=g_means.get)
vs_bce = paired(mAP(("g", 1.0)), mAP(("g", best_g)))
claims.paper("g(0.1) = 1 (the BCE) is worst, the best g(0.1) lies between 3 and 50",
             min(g_means, key=g_means.get) == 1.0 and 3 <= best_g <= 50
             and vs_bce.detected(+1),
             measured=f"best g(0.1) = {best_g:g}: {vs_bce} over g = 1",
             paper="best ≈ 20, similar in [3, 50]")
for q in (low, 0.5):
    e = paired(mAP(("gamma", -1.0, q)), mAP(("gamma", 1.0, q)))
    claims.paper(f"γ = 1 beats γ = -1 at {q:.0%}", e.detected(+1), measured=e,
                 paper="Fig. 6")
if 3.0 in GAMMAS:
    e = paired(mAP(("gamma", 1.0, 0.5)), mAP(("gamma", 3.0, 0.5)))
    claims.paper("γ = 3 beats γ = 1 at 50 %", e.detected(+1), measured=e,
                 paper="Fig. 6")
markdown_table(["g(0.1)", "test mAP (%)"],
               [[v, fmt_mean_std(mAP(("g", v)))] for v in gs])

# %% [markdown]
# ## A graph network over the labels (§3.2, appendix A.1)
#
# Each class is a node of a fully connected graph. Node $v$ starts from the ConvNet's logit
# placed at position $v$ of a $C$-dimensional state, $\mathbf{h}_v^0 = [0, \dots, x_v, \dots, 0]$;
# for $T = 3$ steps every node averages a message $f_{\mathcal{M}}(\mathbf{h}_u^t)$ (a fully
# connected layer and a ReLU) over the other nodes and updates its state with a GRU shared by
# all nodes:
#
# $$\mathbf{m}_v^t = \frac{1}{C - 1} \sum_{u \ne v} f_{\mathcal{M}}(\mathbf{h}_u^t), \qquad
# \mathbf{h}_v^{t+1} = \operatorname{GRU}(\mathbf{h}_v^t, \mathbf{m}_v^t), \qquad
# \bar{\mathbf{y}} = \mathbf{h}_v^0 + \mathbf{h}_v^T .$$
#
# The paper leaves one thing open: Eq. 15 gives a $C$-vector per node, but class $v$ needs one
# score. We read node $v$ at position $v$, $\bar y_v = x_v + h_{v,v}^T$ — the position its input
# was written to — so the GNN starts close to the identity plus a learned correction and needs
# no extra parameters. All nodes are processed at once:

# %%
show_source(LabelGNN)

# %%
for seed in SEEDS:
    for q in (low, 0.5):
        record(("gnn", q), run(f"gnn-{q}", "partial", {"known": q}, loss="partial_bce",
                               gnn=3, seed=seed))
run_all()
gnn_rows = [[f"{q:.0%}", fmt_mean_std(mAP(("partial-bce", q))),
             fmt_mean_std(mAP(("gnn", q))),
             str(paired(mAP(("partial-bce", q)), mAP(("gnn", q))))] for q in (low, 0.5)]
markdown_table(["known labels", "partial-BCE", "GNN + partial-BCE",
                "gain (paired Δ ± sd)"], gnn_rows,
               caption=f"The label GNN ({P['dataset']}, {P['image_size']} px, "
                       f"test mAP %, {len(SEEDS)} seeds)")

# %% [markdown]
# The paper finds a small gain (Fig. 4; on COCO at 10 %, 75.31 → 75.82 in Table 4); whether
# ours exceeds its seed spread is checked below. The benchmark's labels are strongly
# correlated through the scene contexts, but a ConvNet already shares its representation
# between classes — the paper's own caveat — and the frozen features already encode the context.

# %%
for q in (low, 0.5):
    e = paired(mAP(("partial-bce", q)), mAP(("gnn", q)))
    claims.paper(f"the GNN adds mAP to the partial-BCE at {q:.0%}", e.detected(+1),
                 measured=e, paper="+0.51 at 10 % (COCO, Table 4)")

# %% [markdown]
# ## Curriculum relabeling (§3.3, Algorithm 1)
#
# Training starts from the clean partial labels. Before given epochs (10 and 15 of 20 in the
# paper; the same fractions of training here), the model scores every training image and
# **labels the missing labels it finds easy**; training continues on the clean and the new weak
# labels (Algorithm 1). Five ways to decide what is easy, each a rule for $v_{ic} = 1$ (the
# label is then the sign of the score):
#
# * [a] **score threshold** — $|x_c| \ge \theta$ (Eq. 8);
# * [b] **score proportion** — in each mini-batch, the share $\theta$ of missing labels with the
#   largest $|x_c|$;
# * [c] **positive only** — $x_c \ge \theta$, labelled positive (Eq. 9);
# * [d] **ensemble score** — [a] on the mean score $E_c$ of an ensemble (Eq. 10);
# * [e] **Bayesian uncertainty** — $U_c \le \theta$ with $U_c$ the variance of the scores over
#   stochastic passes, MC dropout {cite:p}`gal2016dropout` (Eq. 11);
#
# and the paper's baseline, "2 steps": label every missing label at once. The quick scale runs
# [a], [c], [e] and "2 steps"; [b] and [d] are in the package (`strategy="proportion"`,
# `"ensemble"`) and behave like [a] in the paper's tables. The paper describes
# [e] as [d] "except that it uses the variance of the classification scores instead of the
# average", so we read [d]'s ensemble as the same $T$ dropout passes, averaged. The passes go
# through the head only: the backbone runs once (a frozen or fine-tuned backbone's features do
# not change between passes), the head's dropout is on, BatchNorm statistics are untouched.

# %%
show_source(select_labels)

# %% [markdown]
# Each relabeling step records, against the benchmark's hidden truth — which no real dataset
# offers — the proportion of labels now known and, **on the newly labelled pairs**, the
# true-positive rate (the share of truly present labels labelled present) and the true-negative
# rate. (The paper reports "label accuracy instead of the TP rate" for [c], which only labels
# positives: its TP rate would be trivially 100 %. That is why we read its TP/TN as
# sensitivity and specificity on the new labels rather than as precisions.) The paper's
# setting for this table is Pascal VOC 2007 with 10 % of the labels, the partial-BCE and the
# GNN; at the quick scale we leave the GNN out (`relabel_gnn`) to stay within the time budget.

# %%
RELABEL = [("all at once (2 steps)", "all", 0.0),
           ("[a] score threshold θ = 2", "threshold", 2.0),
           ("[a] score threshold θ = 5", "threshold", 5.0),
           ("[c] positive only θ = 5", "positive", 5.0),
           ("[e] uncertainty θ = 0.1", "uncertainty", 0.1),
           ("[e] uncertainty θ = 0.3", "uncertainty", 0.3),
           ("[e] uncertainty θ = 0.5", "uncertainty", 0.5)]
# the paper's Table 2/8 (VOC 2007 val, 10 % labels, with GNN): ΔMAP, label proportion,
# TP, TN
PAPER_T2 = {"all at once (2 steps)": (-1.49, 100, 82.78, 96.40),
            "[a] score threshold θ = 2": (0.34, 95.29, 85.00, 98.50),
            "[a] score threshold θ = 5": (0.31, 70.98, 96.56, 99.44),
            "[b] score proportion θ = 0.8": (0.17, 96.24, 84.40, 98.10),
            "[c] positive only θ = 5": (0.31, 12.01, 79.07, None),
            "[d] ensemble θ = 2": (0.23, 95.33, 84.80, 98.53),
            "[e] uncertainty θ = 0.1": (0.36, 19.45, 38.15, 99.97),
            "[e] uncertainty θ = 0.3": (0.59, 79.74, 68.96, 99.23),
            "[e] uncertainty θ = 0.5": (0.45, 94.79, 74.73, 98.00)}
# the paper's Table 8 rows without the GNN (it has them for [e] only): ΔMAP, label
# proportion, TP, TN
PAPER_T8_NO_GNN = {"[e] uncertainty θ = 0.1": (0.26, 22.63, 25.71, 99.98),
                   "[e] uncertainty θ = 0.3": (0.34, 77.91, 61.15, 99.24),
                   "[e] uncertainty θ = 0.5": (0.26, 92.90, 70.96, 98.04)}
gnn_r = 3 if P["relabel_gnn"] else 0
for seed in SEEDS:
    record(("relabel", "none"), run("relabel-none", "partial", {"known": low},
                                    loss="partial_bce", gnn=gnn_r, seed=seed,
                                    drop=P["dropout"]))
    for name, strategy, theta in RELABEL:
        record(("relabel", name), run(
            f"relabel-{strategy}-{theta}", "partial", {"known": low},
            loss="partial_bce", gnn=gnn_r, method="curriculum",
            method_args={"strategy": strategy, "theta": theta, "passes": P["passes"]},
            seed=seed, drop=P["dropout"]))
run_all()
# the statistics of each relabeling step, per seed
steps = {name: collected[("relabel", name)] for name, _, _ in RELABEL}
print(f"{time.perf_counter() - chapter_start:.0f} s so far")


# %%
def step_stat(name: str, key: str) -> float:
    """Mean over seeds of a statistic of the labels added by all steps (weighted by
    size)."""
    values = []
    for seed_steps in steps[name]:
        added = [s for s in seed_steps
                 if s["added"] > 0 and not np.isnan(s.get(key, np.nan))]
        if added:
            values.append(sum(s[key] * s["added"] for s in added)
                          / sum(s["added"] for s in added))
    return 100 * float(np.mean(values)) if values else float("nan")


reference = results[("relabel", "none")]
rows = []
for name, strategy, _ in RELABEL:
    delta = {m: mean_std([b[m] - a[m]
                          for a, b in zip(reference, results[("relabel", name)])])[0]
             for m in ("mAP", "exact_match", "macro_F1", "micro_F1")}
    proportion = 100 * float(np.mean([s[-1]["label_proportion"] for s in steps[name]]))
    tp = step_stat(name, "accuracy" if strategy == "positive" else "tp_rate")
    tn = step_stat(name, "tn_rate") if strategy != "positive" else float("nan")
    precision = step_stat(name, "positive_precision")
    # the paper's matching row: without the GNN where it has one ([e]), else its GNN
    # row, marked
    paper, mark = ((PAPER_T8_NO_GNN[name], "")
                   if not P["relabel_gnn"] and name in PAPER_T8_NO_GNN
                   else (PAPER_T2[name], "" if P["relabel_gnn"] else "ᴳ"))
    rows.append([name, f"{delta['mAP']:+.2f} ({paper[0]:+.2f}{mark})",
                 f"{delta['exact_match']:+.2f}", f"{delta['macro_F1']:+.2f}",
                 f"{delta['micro_F1']:+.2f}", f"{proportion:.1f} ({paper[1]:.1f})",
                 f"{'-' if np.isnan(tp) else f'{tp:.1f}'} ({paper[2]:.1f})",
                 "-" if np.isnan(tn) else f"{tn:.1f} ({paper[3]:.1f})",
                 "-" if np.isnan(precision) else f"{precision:.1f}"])
display(markdown_table(
    ["strategy (ours, paper in brackets)", "Δ mAP", "Δ 0-1", "Δ macro-F1", "Δ micro-F1",
     "label prop. (%)", "TP rate (%)", "TN rate (%)", "added positives right (%)"],
    rows,
    caption=f"Relabeling at {low:.0%} known labels ({P['dataset']}, "
            f"{P['image_size']} px, {P['n_seeds']} seeds, GNN "
            f"{'on' if P['relabel_gnn'] else 'off'}); paper: VOC 2007, Table 8 without "
            "the GNN for [e], ᴳ: only a with-GNN row exists (Table 2)"))
missing_truth = images.train.labels[
    labels.partial(images.train.labels, low, seed=0) == 0]
print(f"reference without relabeling: mAP {fmt_mean_std(mAP(('relabel', 'none')))}, "
      f"test positives recalled at logit 0 "
      f"{fmt_mean_std(mAP(('relabel', 'none'), 'OR'))} %; "
      f"Δ are means over {P['n_seeds']} seeds; for [c] the TP column is the accuracy "
      f"of the added labels; {100 * (missing_truth == -1).float().mean():.1f} % of the "
      "missing labels are truly negative")

# %% [markdown]
# **At the quick scale this experiment does not reproduce** (checked below). In the paper every
# curriculum strategy gains a little (+0.2 to +0.6 mAP) and "2 steps" loses 1.5 points; here no
# strategy gains and the ones that label many pairs lose most. The columns say why. The
# reference model's operating point is far from the paper's: it calls only about a quarter of
# the test positives present at logit 0 (printed above), where the paper's VOC models with
# 10 % of the labels over-predict. So the "easy" missing labels are nearly all labelled
# negative: the sensitivity on the new labels (TP rate) is low, and the truly present labels
# among them become false negatives that training then learns. The specificity (TN rate) is
# excellent, as in the paper, but most missing labels are negative anyway (share printed
# above). The last column is the precision of the positives a strategy adds: "all at once"
# and [e] get about three in ten of them wrong. Relabeling needs a model whose confident
# predictions are right for the rare positives too; the full scale, with a fine-tuned
# ResNet-101, tests whether the benchmark then behaves as VOC did.

# %%
ref = mAP(("relabel", "none"))
gain = {name: paired(ref, mAP(("relabel", name))) for name, *_ in RELABEL}
best_name = max(gain, key=lambda n: gain[n].mean)
claims.paper("a curriculum strategy ([e] θ = 0.3) adds mAP",
             gain["[e] uncertainty θ = 0.3"].detected(+1), expect=False,
             measured=gain["[e] uncertainty θ = 0.3"],
             paper="+0.34 (VOC, no GNN, Table 8)")
claims.paper("relabeling everything at once (2 steps) loses mAP",
             gain["all at once (2 steps)"].detected(-1),
             measured=gain["all at once (2 steps)"], paper="-1.49 (VOC, GNN, Table 2)")
claims.ours("no relabeling strategy adds mAP beyond the seed spread",
            not gain[best_name].detected(+1),
            measured=f"best: {best_name}, {gain[best_name]}")
sensitivity = step_stat("[e] uncertainty θ = 0.3", "tp_rate")
claims.ours("[e] θ = 0.3 labels fewer than 30 % of the truly present missing labels as "
            "present (sensitivity)", sensitivity < 30,
            measured=f"{sensitivity:.1f} % (paper 61.15)")
precision = step_stat("[e] uncertainty θ = 0.3", "positive_precision")
claims.ours("the positives [e] θ = 0.3 adds are right more often than not (precision "
            "above 50 %)", precision > 50, measured=f"{precision:.1f} %")
claims.ours("the reference model recalls fewer than half of the test positives at "
            "logit 0", mean_std(mAP(("relabel", "none"), "OR"))[0] < 50,
            measured=f"{fmt_mean_std(mAP(('relabel', 'none'), 'OR'))} %");

# %% [markdown]
# ## Ablation (Table 4)
#
# The paper's ablation on COCO with 10 % of the labels adds one part at a time: fine-tuning,
# the partial-BCE, the GNN, relabeling ([e] with $\theta = 0.3$). At the quick scale the rows
# after the second use the frozen backbone; the fine-tuning row trains the pretrained network
# with the BCE, all but its stem and first stage (`freeze_at`, as in chapter 1). That row is
# compared with the frozen BCE, so both get a learning rate tuned on the validation split
# (the frozen one in the tuning section above; the fine-tuned one here, among
# `finetune_lr_factors` times `finetune_lr`, seed 0).

# %%
FT_FACTORS = floats(P["finetune_lr_factors"], "finetune_lr_factors")
ft_factor = 1.0
if len(FT_FACTORS) > 1:
    ft_tuning = tune_lr(run(f"finetune-bce-{low}", "partial", {"known": low},
                            finetune=True).cfg, FT_FACTORS, images, n_val=P["n_val"],
                        seed=derive_seed(0, 0x7A1))
    ft_factor = ft_tuning.factor
    print("fine-tuning, validation mAP per learning rate: " + ", ".join(
        f"{P['finetune_lr'] * f:g}: {v:.1f}" for f, v in ft_tuning.scores.items())
        + f"; chosen {ft_tuning.lr:g}")
for seed in SEEDS:
    record(("ablation", "fine-tuned BCE"),
           run(f"finetune-bce-{low}", "partial", {"known": low}, seed=seed,
               finetune=True, lr_factor=ft_factor))
    record(("ablation", "GNN + relabel"), run(
        "gnn-relabel", "partial", {"known": low}, loss="partial_bce", gnn=3,
        method="curriculum",
        method_args={"strategy": "uncertainty", "theta": 0.3, "passes": P["passes"]},
        seed=seed, drop=P["dropout"]))
run_all()
# the BCE rows at their tuned learning rates, the others at the chapter's
ABLATION = [("BCE (lr tuned)", ("bce-tuned", low), (66.21, 17.53, 62.74, 67.33)),
            ("+ fine-tuning (lr tuned)", ("ablation", "fine-tuned BCE"),
             (72.15, 22.04, 65.82, 70.09)),
            ("partial-BCE", ("partial-bce", low), (75.31, 24.51, 67.94, 71.18)),
            ("partial-BCE + GNN", ("gnn", low), (75.82, 25.14, 68.40, 71.37)),
            ("partial-BCE + relabeling", ("relabel", "[e] uncertainty θ = 0.3"),
             (75.71, 30.52, 70.13, 73.87)),
            ("partial-BCE + GNN + relabeling", ("ablation", "GNN + relabel"),
             (76.40, 32.12, 70.73, 74.37))]
metric_names = ("mAP", "exact_match", "macro_F1", "micro_F1")
rows = [[name] + [f"{mean_std(mAP(key, m))[0]:.2f} ({paper[i]:.2f})"
                  for i, m in enumerate(metric_names)]
        for name, key, paper in ABLATION]
markdown_table([f"ours, {low:.0%} known ({P['n_seeds']} seeds); paper COCO in brackets",
                "mAP", "0-1 exact match", "macro-F1", "micro-F1"], rows)

# %% [markdown]
# In the paper every part adds to the mAP. Here relabeling takes away (previous section). The
# fine-tuning row compares the frozen backbone with the same backbone fine-tuned on
# the same labels, each at its tuned learning rate. The partial-BCE rows run at the
# chapter's learning rate: against the tuned BCE they add little (the tuning section).

# %%
if P["frozen"]:
    ft = paired(mAP(("bce-tuned", low)), mAP(("ablation", "fine-tuned BCE")))
    claims.paper("fine-tuning the backbone adds mAP (BCE, both learning rates tuned)",
                 ft.detected(+1), measured=ft,
                 paper=f"{72.15 - 66.21:+.2f} (COCO, Table 4)")

# %% [markdown]
# In the paper fine-tuning adds about 6 points. Here, with both rows at a learning rate tuned
# on the validation split, fine-tuning the backbone (all but its stem and first stage) adds
# mAP too, by more than the seed spread; the claims table below gives our difference beside
# the paper's. The spread is large: fine-tuning a network for a few epochs on a tenth of the
# labels varies by points from seed to seed. Compared at one untuned rate, the row would
# measure the rate as much as the fine-tuning: the same control as for the partial-BCE.

# %% [markdown]
# The paper's claims, as measured in this run, then our own observations:

# %% tags=["nbval-check-output"]
claims.table("paper", caption=f"Durand et al. 2019, the paper's claims: "
                              f"{P['dataset']}, {P['image_size']} px, {len(SEEDS)} "
                              "seeds; paired Δ ± sd (reproduced: the effect exceeds "
                              "its spread)")

# %% tags=["nbval-check-output"]
claims.table("ours", caption=f"Durand et al. 2019, our observations: {P['dataset']}, "
                             f"{P['image_size']} px, {len(SEEDS)} seeds")


# %% [markdown]
# ## Paper and code
#
# * **No official code** exists for this paper. A popular toolbox's "Durand" mode normalises by
#   $1/(1 + n_\text{known})$, not by $g(\py)$; one public snippet fills unknown labels with the
#   model's own sigmoid inside the BCE, which gives them a non-zero gradient. Ours masks them.
# * **$\alpha, \beta$**: the paper's $-4.45, 5.45$ are the rounded solution of $g(1) = 1$,
#   $g(0.1) = 5$; `partial_bce_coefficients` solves it for any $\gamma$.
# * **GNN read-out** (Eq. 15): the node's own position, as explained above.
# * **Ensemble [d] and uncertainty [e]**: the paper does not say which ensemble, nor the
#   dropout rate or the number of passes; we use the head's dropout (`dropout`) and `passes`
#   stochastic passes for both, and the variance of the logits for $U$.
# * **TP and TN rates** are read as sensitivity and specificity on the newly labelled pairs
#   (see above); label proportion is the share of known labels at the end of training.
# * **Relabeling schedule**: before epochs 10 and 15 of 20 in the paper, the same fractions of
#   training here (`mlrobust.methods.durand.relabel_epochs`).
# * **Quick scale**: frozen features of the shipped ObjectScenes backbone instead of a fine-tuned ImageNet
#   ResNet-101, 32 px instead of 448, 3000 training images; the full scale is the paper's.
#
# ## Summary
#
# * The partial-BCE rescales each image's loss by $g(\py)$; under SGD that is a per-image
#   learning rate. At one learning rate it beats the BCE at every proportion, more with fewer
#   labels, and $g(0.1)$ and $\gamma$ behave as in the paper; against a BCE whose learning rate
#   is tuned as carefully, none of the gain is left on this benchmark.
# * The label GNN gives a small gain, larger than its seed spread.
# * Which labels to buy: kept among the unlabelled images, dense labels equal partial ones by
#   construction; trained on the labelled subset, they lose to partial labels with the same
#   epochs at 10 % and win with the same number of steps — the paper's unstated step budget
#   decides. Noisy+ beats 10 % of partial labels with the BCE, unlike on COCO.
# * Curriculum relabeling needs a model whose confident predictions are right for positives;
#   at the quick scale ours under-predicts (low recall at logit 0), and relabeling hurts.
#
# ## Exercises
#
# 1. Show that with $\gamma = -1$, $\alpha = 1$, $\beta = 0$ the partial-BCE is the BCE
#    normalised by the number of known labels. Which $g(0.1)$ does that correspond to?
# 2. Rerun the labeling-strategy experiment with `frozen = False` (fine-tuning; slow on a CPU).
#    Does the gap between partial and dense labels appear?
# 3. Relabeling with a better operating point: multiply `lr` by the factor the tuning picked.
#    How do the recall at logit 0 and the TP rates of relabeling change?
# 4. Strategy [c] only adds positives. Find the $\theta$ at which it adds a few per cent of the
#    missing labels, and measure their accuracy.

# %% tags=["remove-cell"]
print(f"chapter time: {time.perf_counter() - chapter_start:.0f} s "
      f"(set-up {setup_seconds:.0f} s)")
