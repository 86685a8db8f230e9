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
# (ch05)=
# # Interactive learning: label and image similarities (IMCL)
#
# {cite:t}`huynh2020interactive` regularise the cross-entropy on the observed labels with a
# **smoothness loss**: the labels of an image should be predictable from the labels of
# similar images, passed through a label graph, and its features from the features of the
# same similar images. The similarities are not given; they are **learned interactively**.
# On every mini-batch, with the network fixed, a greedy sparse solver (Joint Nonnegative
# OMP) picks at most $k$ similar images per image and a gradient step refines the weights of
# a label graph built from co-occurrences; with the similarities fixed, the network takes a
# step on the regularised loss. The paper reports, on Open Images (5,000 classes, partial
# labels):
#
# * IMCL beats the Logistic baseline and Curriculum Labeling {cite:p}`durand2019learning`,
#   with fixed features and more so end to end (Table 1);
# * the regularisation helps up to $\lambda_y \approx 1$ and is robust to $k$ (Table 2);
# * a learned label graph beats a fixed one or none (Tables 3-4);
# * on CUB attributes {cite:p}`wah2011caltech`, the gain is largest when most attributes
#   are missing, and side information (the species) helps (Fig. 3).
#
# This chapter derives the objective and every step of the solver, checks the gradients of
# the smoothness terms, looks at the learned similarities against the benchmark's hidden
# truth, and reruns Tables 1-4 and the attribute study with paired effects over seeds.
#
# **Scales.** The paper fine-tunes a ResNet-101 pretrained on Open Images
# {cite:p}`kuznetsova2020open` (CUB: on ImageNet), trains the Logistic model first and
# refines every method from it. `scale = "full"` runs that setting through the package's
# Open Images and CUB loaders. At the quick scale the heads are trained on frozen features
# of the backbone the package ships pretrained on ObjectScenes (the benchmark's ImageNet,
# see {ref}`chapter 2 <ch02>`), the "fixed features" column of Table 1; its end-to-end
# column fine-tunes that backbone as chapter 1 does (all but its stem and first stage, a few
# epochs), and the other experiments stay on frozen features.
#
# **The regime.** Open Images has 5,000 trainable classes whose number of verified labels
# spans orders of magnitude, a few verified labels per image and millions of images. The
# benchmark has 24 classes whose frequencies differ only by a small factor (printed below).
# We build the long tail into the **labels**: each class is annotated on its own share of
# the images (at the quick scale from 1 % to 30 %, on a log scale), and a share of the
# images (30 %) carries no label at all. The five
# groups of the paper (ranked by the number of available annotations) then hold four or
# five classes each, not 1,000. Unlike Open Images, our test labels are complete, so a rare
# class is tested on as many images as a frequent one.

# %% tags=["parameters", "hide-input"]
# Parameters (papermill). None means "the value for the chosen scale", read from
# params/ch05_huynh.yaml: "quick" runs on a CPU (its time is in the README), "full" is
# the paper's setting for a GPU (ResNet-101 on Open Images, then CUB).
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
n_val = None
n_test = None
max_label_gib = None
rate_min = None
rate_max = None
unlabelled = None
epochs = None
logistic_epochs = None
batch_size = None
lrs = None
thetas = None
lambda_y = None
lambda_f = None
k = None
k_a = None
graph_lr = None
sweep_lambda_y = None
sweep_lambda_f = None
sweep_k = None
oracle_weights = None
e2e_epochs = None
e2e_lr = None
attr_dataset = None
attr_data_root = None
attr_image_size = None
attr_n_train = None
attr_n_test = None
attr_missing = None
attr_lambda_y = None
side_weights = None
n_seeds = None
output_dir = None

# %% tags=["hide-input"]
import math
import time

import matplotlib.pyplot as plt
from matplotlib.patches import Patch
import numpy as np
import torch
from IPython.display import display

from mlrobust import labels, metrics
from mlrobust.claims import Claims, paired
from mlrobust.config import (DataConfig, ExperimentConfig, LossConfig, ModelConfig,
                             TrainConfig)
from mlrobust.data import (DataSplits, FeatureMaps, Subset, create_dataset,
                           extract_features, hold_out, scene_class_radius)
from mlrobust.engine import resolve_device
from mlrobust.experiments import Run, frozen_backbone, run_experiment, run_many
from mlrobust.methods.huynh import (IMCLMethod, cooccurrence_graph, feature_smoothness,
                                    graph_step, identity_graph, imcl_loss,
                                    impute_labels, joint_nonnegative_omp,
                                    label_smoothness, pooled_features)
from mlrobust.notebook import (claims_checked, floats, fmt_mean_std, ints,
                               markdown_table, mean_std, resolve_parameters,
                               show_source)
from mlrobust.seeding import derive_seed
from mlrobust.viz import show_images

P = resolve_parameters("ch05_huynh", scale, dict(
    dataset=dataset, data_root=data_root, device=device, backbone=backbone,
    weights=weights, freeze_at=freeze_at, cache_frozen=cache_frozen,
    image_size=image_size, n_train=n_train, n_val=n_val, n_test=n_test,
    max_label_gib=max_label_gib, rate_min=rate_min, rate_max=rate_max,
    unlabelled=unlabelled, epochs=epochs, logistic_epochs=logistic_epochs,
    batch_size=batch_size, lrs=lrs, thetas=thetas, lambda_y=lambda_y,
    lambda_f=lambda_f, k=k, k_a=k_a, graph_lr=graph_lr, sweep_lambda_y=sweep_lambda_y,
    sweep_lambda_f=sweep_lambda_f, sweep_k=sweep_k, oracle_weights=oracle_weights,
    e2e_epochs=e2e_epochs, e2e_lr=e2e_lr, attr_dataset=attr_dataset,
    attr_data_root=attr_data_root, attr_image_size=attr_image_size,
    attr_n_train=attr_n_train, attr_n_test=attr_n_test, attr_missing=attr_missing,
    attr_lambda_y=attr_lambda_y, side_weights=side_weights, n_seeds=n_seeds,
    output_dir=output_dir))
LRS, THETAS = floats(P["lrs"], "lrs"), floats(P["thetas"], "thetas")
SEEDS = range(P["n_seeds"])
FULL = scale == "full"
DEV = resolve_device(P["device"])
chapter_start = time.perf_counter()
# measured claims fail the build at the quick scale with its preset parameters only
claims = Claims(strict=claims_checked("ch05_huynh", scale, P))
markdown_table(["parameter", "value"], [[k, repr(v)] for k, v in P.items()])

# %% [markdown]
# ## The objective (Eq. 1-7)
#
# Image $i$ has observed labels $y^o_{j,i} \in \{-1, 1\}$ for $j \in \Omega_i$ and unknown
# ones elsewhere; $p_{j,i} = \sig(x_{j,i})$ is the network's probability of label $j$ and
# $\mathbf{f}_i$ its feature vector (the layer before the classifier). IMCL minimises
#
# ```{math}
# :label: eq-imcl
# \sum_i \mathcal{L}_c^{(i)} + \mathcal{L}_s^{(i)}, \qquad
# \mathcal{L}_s^{(i)} = \min_{\{c_{i',i}, \bar c_{i',i}\} \in \mathcal{R}}
#   \lambda_y \ell_y^{(i)} + \lambda_f \ell_f^{(i)},
# ```
#
# where $\mathcal{L}_c^{(i)}$ is the binary cross-entropy on the observed labels (Eq. 2) and the
# two smoothness terms use a **completed** label vector: observed labels as they are,
# missing ones imputed by the network (Eq. 3),
#
# ```{math}
# :label: eq-imcl-impute
# y_{j,i} = y^o_{j,i} \ (j \in \Omega_i), \qquad y_{j,i} = 2 p_{j,i} - 1 \ (j \notin \Omega_i).
# ```
#
# §4.3 rescales $\y$ from $[-1, 1]$ to $[-0.5, 1]$, "so that similarity learning would focus
# more on positive labels"; the package does so by default (`y_min = -0.5`). The label
# term says that label $j$ of image $i$ follows from the labels $j' \in \mathcal{Q}_j$ related to
# $j$, in images $i'$ similar to $i$ (Eq. 4-5); the feature term says the same of features
# (Eq. 6):
#
# ```{math}
# :label: eq-imcl-smooth
# \ell_y^{(i)} = \Big\| \y_i - \tanh\Big(\sum_{i'} c_{i',i} \mathbf{A} \y_{i'}\Big) \Big\|_2^2,
# \qquad
# \ell_f^{(i)} = \Big\| \mathbf{f}_i - \sum_{i'} \bar c_{i',i} \mathbf{f}_{i'} \Big\|_2^2 .
# ```
#
# $\mathbf{A} = [a_{j',j}]$ is a label graph: each label is connected to the $k_a$ labels it co-occurs
# with most often in the training labels, and the weights of these edges are learned. The
# constraint set $\mathcal{R}$ (Eq. 8) asks for nonnegative similarities and at most $k$ similar
# images per image, **the same** $k$ for both terms: $c$ and $\bar c$ share their support.
# With $\lambda_y = \lambda_f = 0$ the objective is the Logistic baseline. The package
# divides the whole of Eq. 1 by $B \cdot C$ (batch size times classes), so that this limit is
# its class-normalised BCE and the $\lambda$'s keep the paper's meaning.

# %%
show_source(impute_labels, label_smoothness, feature_smoothness, imcl_loss)

# %% [markdown]
# ## Learning the similarities: Joint Nonnegative OMP (Algorithm 2)
#
# For one image $i$, with the network fixed, Eq. 7 is a sparse regression: explain $\y_i$ by
# nonnegative combinations of the **atoms** $\mathbf{A}\y_{i'}$ and, with the same support, $\mathbf{f}_i$
# by the atoms $\mathbf{f}_{i'}$. With the first-order approximation $\tanh(z) \approx z$ it becomes
#
# ```{math}
# :label: eq-imcl-sparse
# \min_{\mathcal{S}, c \ge 0, \bar c \ge 0,\ |\mathcal{S}| \le k}\
#   \lambda_y \Big\|\y_i - \sum_{s \in \mathcal{S}} c_s \mathbf{A}\y_s\Big\|^2
#   + \lambda_f \Big\|\mathbf{f}_i - \sum_{s \in \mathcal{S}} \bar c_s \mathbf{f}_s\Big\|^2 ,
# ```
#
# a combinatorial problem that orthogonal matching pursuit {cite:p}`tropp2004greed` solves
# greedily. Each step of Algorithm 2 follows from one observation:
#
# * **step 2** — with $\mathcal{S} = \emptyset$ the residuals are $\mathbf{r}_y = \y_i$, $\mathbf{r}_f = \mathbf{f}_i$;
# * **step 4** — adding atom $u$ with the best single coefficient $\alpha = \langle \mathbf{r}, u
#   \rangle / \|u\|^2$ lowers $\|\mathbf{r}\|^2$ by $\langle \mathbf{r}, u\rangle^2/\|u\|^2$ (expand
#   $\|\mathbf{r} - \alpha u\|^2$). The joint objective {eq}`eq-imcl-sparse` falls most for the image
#   $s$ maximising $\lambda_y \langle \mathbf{r}_y, \mathbf{A}\y_s\rangle^2 / \|\mathbf{A}\y_s\|^2 + \lambda_f
#   \langle \mathbf{r}_f, \mathbf{f}_s\rangle^2 / \|\mathbf{f}_s\|^2$: the shared support is chosen on the sum;
# * **step 5** — that best coefficient is positive only if $\langle \mathbf{r}, u\rangle > 0$; if
#   either part would need a negative similarity the pursuit stops (the paper prints
#   $\langle \mathbf{r}_y, \y_s\rangle$; the package tests the atom actually used, $\mathbf{A}\y_s$);
# * **steps 9-10** — on the new support, the least-squares coefficients of each part,
#   clipped at 0 (not nonnegative least squares: the chapter's package tests show the
#   difference);
# * **steps 11-12** — the residuals of the refit, for the next selection.
#
# In a mini-batch, every image is a query and the other images of the batch are its
# dictionary (§3.2: "the similarity graph is learned only for images in the current
# minibatch"). The package runs all queries at once on the Gram matrices of the batch, a
# loop over the sparsity level only.

# %%
show_source(joint_nonnegative_omp)

# %% [markdown]
# The label graph's weights take a plain projected gradient step on $\lambda_y$ times the
# mean $\ell_y$ of the batch, with the similarities fixed (Algorithm 1, step 6; the paper
# gives neither a step size nor a number of steps), and the network's step follows with the
# similarities and the graph fixed:

# %%
show_source(graph_step, IMCLMethod.interactive_loss)

# %% [markdown]
# ## Gradient checks
#
# Stack a batch's completed labels as rows of $\Y \in \R^{B \times C}$, its features as rows
# of $\mathbf{F}$, the similarities as $\mathbf{C} = [c_{i',i}]$ (row $i$) and $\bar{\mathbf{C}}$, and write the graph
# densely so that the atoms are the rows of $\Y\mathbf{A}^\top$. With $\mathbf{T} = \tanh(\mathbf{C}\Y\mathbf{A}^\top)$,
# $\mathbf{R} = \Y - \mathbf{T}$ and $\mathbf{C}, \bar{\mathbf{C}}$ fixed (they come from the solver), the smoothness terms'
# gradients are
#
# ```{math}
# :label: eq-imcl-grad
# \begin{aligned}
# \frac{\partial \sum_i \ell_y^{(i)}}{\partial \Y} &=
#   2\mathbf{R} - \mathbf{C}^\top\big[2\mathbf{R} \odot (1 - \mathbf{T}^2)\big]\mathbf{A}, \\
# \frac{\partial \sum_i \ell_y^{(i)}}{\partial \mathbf{A}} &=
#   -\big[2\mathbf{R} \odot (1 - \mathbf{T}^2)\big]^\top \mathbf{C}\Y,
# \end{aligned}
# ```
#
# ```{math}
# :label: eq-imcl-gradf
# \frac{\partial \sum_i \ell_f^{(i)}}{\partial \mathbf{F}} = 2(\mathbf{F} - \bar{\mathbf{C}}\mathbf{F}) - 2\bar{\mathbf{C}}^\top(\mathbf{F} - \bar{\mathbf{C}}\mathbf{F}),
# ```
#
# the first terms from each image as a query, the second from the same image as an atom of
# the others. Through Eq. 3 a missing label passes
# $\partial y_{j,i}/\partial x_{j,i} = (1 - y_{\min})\, p_{j,i}(1 - p_{j,i})$ on to its logit;
# an observed one passes nothing. We compare these formulas with autograd of the package's
# terms in float64, with the graph's gradient restricted to its support, and run
# `gradcheck`.

# %% tags=["nbval-check-output"]
g = torch.Generator().manual_seed(0)
B_, C_, D_ = 9, 6, 5
obs_ = torch.where(torch.rand(B_, C_, generator=g) < 0.4, 1, -1).to(torch.int8)
obs_[torch.rand(B_, C_, generator=g) < 0.6] = 0
graph_ = cooccurrence_graph(torch.where(obs_ == 0, -1, obs_), k_a=2)
graph_.weights = graph_.weights.double()
x_ = torch.randn(B_, C_, dtype=torch.float64, generator=g, requires_grad=True)
f_ = torch.rand(B_, D_, dtype=torch.float64, generator=g, requires_grad=True)
w_ = graph_.weights.clone().requires_grad_(True)
y_ = impute_labels(x_, obs_, -0.5)
sims_ = IMCLMethod(graph_, k=3).similarities(y_.detach(), f_.detach())
C_sim, Cbar = sims_.c, sims_.c_bar
graph_w = type(graph_)(graph_.neighbours, w_, graph_.mask)
loss_y = label_smoothness(y_, graph_w.apply(y_), C_sim).sum()
loss_f = feature_smoothness(f_, f_, Cbar).sum()
gx, gw = torch.autograd.grad(loss_y, (x_, w_))
(gf,) = torch.autograd.grad(loss_f, f_)
# Eq. (eq-imcl-grad) and (eq-imcl-gradf) by hand
Y, A = y_.detach(), graph_.dense()
T = torch.tanh(C_sim @ Y @ A.T)
R = Y - T
dY = 2 * R - C_sim.T @ (2 * R * (1 - T**2)) @ A
dA = -(2 * R * (1 - T**2)).T @ C_sim @ Y
p_ = torch.sigmoid(x_.detach())
dx = dY * (1 - (-0.5)) * p_ * (1 - p_) * (obs_ == 0)
rows = torch.arange(C_)[:, None].expand_as(graph_.neighbours)
dw = dA[rows, graph_.neighbours] * graph_.mask
F_ = f_.detach()
S_ = F_ - Cbar @ F_
dF = 2 * S_ - 2 * Cbar.T @ S_
assert torch.allclose(gx, dx, atol=1e-12)
assert torch.allclose(gw * graph_.mask, dw, atol=1e-12)  # on the support
assert torch.allclose(gf, dF, atol=1e-12)
assert torch.autograd.gradcheck(
    lambda y, w: label_smoothness(
        y, type(graph_)(graph_.neighbours, w, graph_.mask).apply(y), C_sim),
    (Y.clone().requires_grad_(True), graph_.weights.clone().requires_grad_(True)))
assert torch.autograd.gradcheck(lambda f: feature_smoothness(f, f, Cbar),
                                (F_.clone().requires_grad_(True),))
print("the gradients of ℓ_y (logits, graph weights) and ℓ_f (features) equal autograd "
      f"to 1e-12; gradcheck passes; {int(sims_.sizes.sum())} similarities in the toy "
      "batch")

# %% [markdown]
# ## Open Images in miniature
#
# The training pool is split into a part to train on and a validation part to tune on
# (`data.hold_out`). On the training part, each class $j$ is annotated on its own share
# $r_j$ of the images (positive or negative, as Open Images' human verifications are), with
# the $r_j$ spread from `rate_min` to `rate_max` on a log scale over the classes in a fixed
# random order, and a share `unlabelled` of the images keeps no label at all. The label
# protocol draws from its own seeds; the networks from theirs. On a dataset whose labels are
# partial already (Open Images) nothing is hidden: its own unknown labels are the missing
# ones.

# %%
common = dict(root=P["data_root"], image_size=P["image_size"], seed=0)
loader = ({"max_label_bytes": int(P["max_label_gib"] * 2**30)}
          if P["dataset"] == "openimages" else {})
train_images = create_dataset(P["dataset"], "train", n=P["n_train"], **common, **loader)
test_images = create_dataset(P["dataset"], "test", n=P["n_test"], **common, **loader)
net, weights_file = frozen_backbone(P["backbone"], P["weights"])
train_feat = extract_features(net, train_images, DEV)
test_feat = extract_features(net, test_images, DEV)
fit, val = hold_out(train_feat, P["n_val"], seed=0)
CLASSES = list(fit.classes)
NC = len(CLASSES)
COMPLETE = bool((fit.labels != 0).all())  # complete labels: some hidden, truth known
N_GROUPS = min(5, NC)
RATES = torch.logspace(math.log10(P["rate_min"]), math.log10(P["rate_max"]), NC)[
    torch.randperm(NC, generator=torch.Generator().manual_seed(0))]
PROTOCOL = 0x1C5  # the label protocol's seeds: derive_seed(PROTOCOL, seed, ...)


def observe(truth: torch.Tensor, seed: int) -> torch.Tensor:
    """The training labels of seed ``seed``: a share of the images unlabelled, then each
    class kept on its own share RATES[j] of the others (package protocols, composed)."""
    if not COMPLETE:
        return truth.clone()
    kept = labels.dense(truth, 1 - P["unlabelled"], seed=derive_seed(PROTOCOL, seed, 0))
    return torch.cat([labels.partial(kept[:, [j]], float(RATES[j]),
                                     seed=derive_seed(PROTOCOL, seed, 1, j))
                      for j in range(NC)], dim=1)


def groups_of(observed: torch.Tensor) -> list[torch.Tensor]:
    """The paper's groups: classes ranked by their number of observed positive labels
    (ascending), cut into N_GROUPS groups of (nearly) equal size; group 1 the rarest."""
    order = torch.argsort((observed == 1).sum(dim=0), stable=True)
    return list(torch.tensor_split(order, N_GROUPS))


OBSERVED = {seed: observe(fit.labels, seed) for seed in SEEDS}
GROUPS = {seed: groups_of(OBSERVED[seed]) for seed in SEEDS}
pos0 = (OBSERVED[0] == 1).sum(dim=0)
freq = (fit.labels == 1).float().mean(dim=0)
known0 = float((OBSERVED[0] != 0).float().mean())
markdown_table(["set", "images"],
               [["training (labels hidden by the protocol)", len(fit)],
                ["of which without any label (seed 0)",
                 int((OBSERVED[0] == 0).all(dim=1).sum())],
                ["validation (tuning)", len(val)], ["test", len(test_feat)]]
               + [[f"group {g + 1}: observed positives per class (seed 0)",
                   ", ".join(str(int(pos0[j])) for j in grp)]
                  for g, grp in enumerate(GROUPS[0])],
               caption=f"{P['dataset']}, {NC} classes, {P['image_size']} px; known "
                       f"share of the training labels {100 * known0:.1f} %; true class "
                       f"frequencies from {100 * freq.min():.1f} % to "
                       f"{100 * freq.max():.1f} % of the images")

# %% mystnb={"figure": {"caption": "The long tail of the miniature Open Images: observed positive training labels per class (log scale, seed 0), coloured by the paper's frequency group, against the number of training images that truly hold the class (grey). On Open Images the tail spans 5,000 classes and several orders of magnitude of verified labels.", "name": "fig-imcl-tail"}} tags=["hide-input"]
order = torch.argsort(pos0, stable=True)
colours = plt.cm.viridis(np.linspace(0.1, 0.9, N_GROUPS))
group_of = torch.zeros(NC, dtype=torch.long)
for g_, grp in enumerate(GROUPS[0]):
    group_of[grp] = g_
fig, ax = plt.subplots(figsize=(9, 3.4))
ax.bar(range(NC), (fit.labels == 1).sum(0)[order], color="#dddddd")
ax.bar(range(NC), pos0[order].clamp(min=0.8), color=colours[group_of[order]])
ax.set_yscale("log")
ax.set_xticks(range(NC), [CLASSES[j] for j in order], rotation=90, fontsize=8)
ax.set(ylabel="training labels (count, log scale)", xlabel="class (rarest first)")
handles = [Patch(color="#dddddd", label="images holding the class (hidden)")] + [
    Patch(color=colours[g_], label=f"observed positives, group {g_ + 1}")
    for g_ in range(N_GROUPS)]
ax.legend(handles=handles, fontsize=7, ncol=2)
fig.tight_layout()
plt.show()


# %%
def config(tag: str, method: str, seed: int, lr: float, *,
           method_args: dict | None = None, variant: str = "",
           end_to_end: bool = False) -> ExperimentConfig:
    """One run of the chapter (``tag`` and ``variant`` name it, so that runs written at
    the full scale never share a folder): the BCE of Eq. 2, SGD with momentum, a
    one-cycle schedule, a linear (gap) head on frozen features or the whole network end
    to end."""
    args = method_args or {}
    name = "-".join([tag, method, *(f"{k}{v}" for k, v in sorted(args.items())),
                     *([variant] if variant else []), f"lr{lr:g}", f"seed{seed}"])
    cfg = ExperimentConfig(name=name, output_dir=P["output_dir"], method=method,
                           method_args=dict(args))
    cfg.data = DataConfig(dataset=P["dataset"],
                          augment="flip" if end_to_end else "none")
    cfg.model = ModelConfig(backbone=P["backbone"] if end_to_end else "features",
                            weights=weights_file if end_to_end else None, head="gap",
                            freeze_at=P["freeze_at"] if end_to_end else 0)
    cfg.loss = LossConfig("bce")
    cfg.train = TrainConfig(epochs=P["e2e_epochs"] if end_to_end else P["epochs"],
                            batch_size=P["batch_size"], lr=lr, seed=seed,
                            device=P["device"], checkpoint=FULL,
                            cache_frozen=P["cache_frozen"] and end_to_end)
    return cfg


def train(cfg: ExperimentConfig, data: DataSplits, observed: torch.Tensor, method=None):
    return run_experiment(cfg, data=data, train_labels=observed, method=method,
                          write=FULL, resume=FULL)


def group_maps(result, test_set, groups: list[torch.Tensor]) -> dict[str, float]:
    """Test mAP over all classes and per frequency group (classes without a known test
    positive are skipped, as mAP skips them); ``result`` is a run or its test logits."""
    logits = result if torch.is_tensor(result) else result.trainer.predict(test_set)
    ap = metrics.average_precision(logits, test_set.labels)
    out = {"All": float(np.nanmean(ap.numpy()))}
    for g_, grp in enumerate(groups):
        out[f"G{g_ + 1}"] = float(np.nanmean(ap[grp].numpy()))
    return out


IMCL_ARGS = dict(lambda_y=P["lambda_y"], lambda_f=P["lambda_f"], k=P["k"], k_a=P["k_a"],
                 graph_lr=P["graph_lr"], logistic_epochs=P["logistic_epochs"])
METHODS = {"Logistic": ("supervised", {}),
           "Curriculum Labeling": ("curriculum", {"strategy": "threshold"}),
           "IMCL": ("imcl", IMCL_ARGS)}
VAL = DataSplits(train=fit, test=val)
TEST = DataSplits(train=fit, test=test_feat)

# %% [markdown]
# ## Tuning on the validation split
#
# Every method gets its learning rate from the validation split (seed 0); Curriculum
# Labeling, Durand et al.'s score-threshold strategy [a] that the paper uses ("score
# thresholding strategy"), also its threshold $\theta$ on the logits. It relabels before the
# same fractions of training as in {ref}`chapter 2 <ch02>`, on the same BCE. IMCL keeps the
# paper's Open Images setting: $\lambda_y = 1$, $\lambda_f = 0.5$, $k = 5$; $k_a$ is scaled
# to 24 classes. It starts as the Logistic model: its first `logistic_epochs` epochs train
# the BCE alone (the paper initialises every method with the Logistic weights).

# %%
trials = {}  # trained side by side (run_many: one process per core)
for name, (method, args) in METHODS.items():
    for lr in LRS:
        for th in THETAS if method == "curriculum" else [None]:
            margs = dict(args, **({"theta": th} if th is not None else {}))
            cfg = config("tune", method, 0, lr, method_args=margs)
            trials[name, lr, th] = Run(cfg, VAL, train_labels=OBSERVED[0], write=FULL,
                                       resume=FULL)
tuning = {key: outcome.metrics["mAP"] for key, outcome in run_many(trials).items()}
BEST = {name: max(((lr, th) for (n, lr, th) in tuning if n == name),
                  key=lambda key: tuning[(name, *key)]) for name in METHODS}
ENDS = (min(LRS), max(LRS)) if len(LRS) > 1 else ()  # a wider grid may do better
at_end = [n for n, (lr, _) in BEST.items() if lr in ENDS]
print(f"learning rate chosen at an end of the grid: {', '.join(at_end) or 'none'}")
markdown_table(["method", "learning rate", "θ", "validation mAP", "chosen"],
               [[n, f"{lr:g}", "" if th is None else f"{th:g}", f"{v:.2f}",
                 "✓" if BEST[n] == (lr, th) else ""]
                for (n, lr, th), v in tuning.items()],
               caption=f"{P['dataset']}, validation split of {len(val)} images, seed 0")


# %%
def method_args(name: str) -> dict:
    """A Table 1 method's arguments with its tuned θ (Curriculum Labeling)."""
    method, args = METHODS[name]
    th = BEST[name][1]
    return dict(args, **({"theta": th} if th is not None else {}))


# %% [markdown]
# ## Table 1: mAP by label-frequency group
#
# Each method trains with each seed on the same hidden labels, and is tested on the complete
# test labels. Groups are recomputed per seed from that seed's observed labels.

# %%
R: dict[tuple, list] = {}
RUNS: dict[tuple, list] = {}
for seed in SEEDS:
    for name, (method, _) in METHODS.items():
        lr = BEST[name][0]
        cfg = config("table1", method, seed, lr, method_args=method_args(name))
        result = train(cfg, TEST, OBSERVED[seed])
        R.setdefault(("fixed", name), []).append(
            group_maps(result, test_feat, GROUPS[seed]))
        RUNS.setdefault(("fixed", name), []).append(result)

# %% [markdown]
# ### End to end
#
# The paper's main column fine-tunes the whole network. Here Logistic, Curriculum Labeling
# and IMCL train end to end on the training images (`e2e_epochs > 0`), from the same
# pretrained backbone, with chapter 1's fine-tuning recipe at the quick scale: four epochs,
# the stem and first stage fixed (`freeze_at = 2`), and the learning rate chapter 1 tuned on
# its validation split for the BCE on partial labels (`e2e_lr`), the same for the three
# methods (tuning each end to end would take more minutes than the chapter has).
# Curriculum Labeling keeps its threshold tuned on fixed features, and IMCL's BCE-only
# start takes the same share of the end-to-end epochs as of the fixed-feature ones (at
# least one epoch left to IMCL). IMCL's similarities are learned on the pooled features of
# the network being trained, so end to end they change as it learns.

# %%
E2E = P["e2e_epochs"] > 0
NO_LF = "IMCL, λ_f = 0"
if E2E:
    e2e_data = DataSplits(train=Subset(train_images, fit.index), test=test_images)
    e2e_warmup = min(round(P["logistic_epochs"] * P["e2e_epochs"] / P["epochs"]),
                     P["e2e_epochs"] - 1)
    E2E_METHODS = {**METHODS, NO_LF: METHODS["IMCL"]}  # the control: no feature term
    e2e_runs = {}  # trained side by side (run_many: one process per core)
    for seed in SEEDS:
        for name, (method, _) in E2E_METHODS.items():
            args = method_args("IMCL" if name == NO_LF else name)
            if "logistic_epochs" in args:
                args["logistic_epochs"] = e2e_warmup
            if name == NO_LF:
                args["lambda_f"] = 0.0
            cfg = config("table1-e2e", method, seed, P["e2e_lr"], method_args=args,
                         end_to_end=True)
            e2e_runs[name, seed] = Run(
                cfg, e2e_data, train_labels=OBSERVED[seed], write=FULL, resume=FULL,
                collect=lambda result: result.trainer.predict(test_images))
    E2E_LF = {}  # ℓ_f per image in the last epoch (IMCL's monitor)
    for (name, seed), outcome in run_many(e2e_runs).items():
        R.setdefault(("end to end", name), []).append(
            group_maps(outcome.collected, test_images, GROUPS[seed]))
        if "imcl_feature_smoothness" in outcome.history[-1]:
            E2E_LF.setdefault(name, []).append(
                outcome.history[-1]["imcl_feature_smoothness"])
else:
    print("end-to-end rows: not run at this scale (e2e_epochs = 0); see the full scale")

# %%
# Table 1 of the paper (Open Images test set): end to end, and fixed features in
# brackets (the Logistic row initialises every method and has one value per group)
CL = "Curriculum Labeling"
PAPER_T1 = {("end to end", "Logistic"): [69.47, 70.29, 74.79, 79.23, 85.49, 75.85],
            ("end to end", CL): [70.37, 71.32, 76.23, 80.54, 86.81, 77.05],
            ("end to end", "IMCL"): [70.95, 72.59, 77.64, 81.83, 87.34, 78.07],
            ("fixed", "Logistic"): [69.47, 70.29, 74.79, 79.23, 85.49, 75.85],
            ("fixed", CL): [69.77, 70.86, 75.45, 79.62, 85.91, 76.32],
            ("fixed", "IMCL"): [69.91, 71.36, 75.94, 80.15, 86.32, 76.72]}
COLS = [f"G{g + 1}" for g in range(N_GROUPS)] + ["All"]


def col(key: tuple, c: str) -> list[float]:
    return [r[c] for r in R[key]]


rows = [[key[1], key[0]] + [fmt_mean_std(col(key, c)) for c in COLS] for key in R]
if N_GROUPS == 5:  # the paper's rows for the columns run here
    rows += [[f"{key[1]} (paper)", key[0]] + [f"{v:.2f}" for v in PAPER_T1[key]]
             for key in PAPER_T1 if key[0] in {k[0] for k in R}]
markdown_table(["method", "features"] + [c.replace("G", "group ") for c in COLS], rows,
               caption=f"Table 1, test mAP (%) by label-frequency group (group 1: "
                       f"rarest): {P['dataset']}, {P['image_size']} px, {P['n_seeds']} "
                       "seeds (mean ± sd); rows marked (paper): Open Images, Table 1")

# %% mystnb={"figure": {"caption": "Left: test mAP by label-frequency group (group 1: the classes with the fewest observed labels), mean \u00b1 sd over seeds, frozen features. Right: the paired change over the Logistic model per group (ours: bars with the sd over seeds; the paper's Table 1 with fixed features: diamonds).", "name": "fig-imcl-groups"}} tags=["hide-input"]
fig, axes = plt.subplots(1, 2, figsize=(9.8, 3.8))
names = list(METHODS)
width = 0.8 / len(names)
for m, name in enumerate(names):
    xs = np.arange(len(COLS)) + (m - (len(names) - 1) / 2) * width
    ms = [mean_std(col(("fixed", name), c)) for c in COLS]
    axes[0].bar(xs, [a for a, _ in ms], width, yerr=[s for _, s in ms], label=name,
                capsize=2)
    if name != "Logistic":
        eff = [paired(col(("fixed", "Logistic"), c), col(("fixed", name), c))
               for c in COLS]
        axes[1].bar(xs, [e.mean for e in eff], width, yerr=[e.sd for e in eff],
                    label=f"{name} (ours)", capsize=2, color=f"C{m}")
        if N_GROUPS == 5:
            base = PAPER_T1["fixed", "Logistic"]
            axes[1].scatter(xs, [p - b for p, b in zip(PAPER_T1["fixed", name], base)],
                            marker="D", color=f"C{m}", edgecolor="black", zorder=3,
                            label=f"{name} (paper)")
for ax in axes:
    ax.set_xticks(range(len(COLS)), [c.replace("G", "group ") for c in COLS])
axes[0].set(ylabel="test mAP (%)", title="mAP by group")
axes[1].axhline(0, color="black", lw=0.8)
axes[1].set(ylabel="Δ mAP vs Logistic (points)", title="paired change over Logistic")
axes[0].legend(fontsize=8)
axes[1].legend(fontsize=7)
fig.tight_layout()
plt.show()

# %%
fx = lambda name, c="All": col(("fixed", name), c)  # noqa: E731
ee = lambda name, c="All": col(("end to end", name), c)  # noqa: E731
# the paper's Table 1, all classes: IMCL against Logistic and Curriculum Labeling
PAPER_ALL = {"fixed features": (fx, "76.72 vs 75.85", "76.72 vs 76.32"),
             "end to end": (ee, "78.07 vs 75.85", "78.07 vs 77.05")}
for column, (get, vs_log, vs_cur) in PAPER_ALL.items():
    if column == "end to end" and not E2E:
        continue
    for rival, paper in (("Logistic", vs_log), ("Curriculum Labeling", vs_cur)):
        gain = paired(get(rival), get("IMCL"))
        claims.paper(f"IMCL > {rival} ({column}, all classes)", gain.detected(),
                     expect=False, measured=gain, paper=f"{paper} (Table 1)")
cur_vs_log = paired(fx("Logistic"), fx("Curriculum Labeling"))
rare = paired([a - b for a, b in zip(fx("IMCL", "G1"), fx("Logistic", "G1"))],
              [a - b for a, b in zip(fx("IMCL", f"G{N_GROUPS}"),
                                     fx("Logistic", f"G{N_GROUPS}"))])
claims.paper("IMCL's gain over Logistic is larger on the rarest group than on the most "
             "frequent", rare.detected(-1), expect=False,
             measured=f"gain G{N_GROUPS} − gain G1: {rare}",
             paper="Fig. 2: 'better regularize prediction of rare labels'; but "
                   "Table 1: +0.44 (G1) vs +0.83 (G5)")
claims.ours("Curriculum Labeling (score threshold) loses mAP against Logistic",
            cur_vs_log.detected(-1), measured=cur_vs_log)
if E2E:
    e2e = paired(fx("IMCL"), ee("IMCL"))
    claims.paper("IMCL end to end > IMCL on fixed features", e2e.detected(),
                 expect=False, measured=e2e, paper="78.07 vs 76.72 (Table 1)");

# %% [markdown]
# **Table 1 does not reproduce at the quick scale.** IMCL does not beat the Logistic model
# it starts from: its paired change is negative, by more than the spread of the seeds,
# and the right panel shows it falling below Logistic in the middle groups. Nor does
# it beat Curriculum Labeling beyond the spread, although score-threshold relabeling does
# lose against Logistic here: as in {ref}`chapter 2 <ch02>`, a model trained on few labels
# calls few labels present, so the labels it adds with confidence are nearly all negatives,
# and some of them are wrong. The groups are small (four or five classes) and rare classes
# have two or three observed positives, so a group's mAP swings by several points from seed
# to seed; the gain on the rarest group is not larger than on the most frequent. Neither is
# it in the paper's own Table 1 (+0.44 on group 1, +0.83 on group 5 with fixed features),
# whatever its text says of rare labels. The rest of the chapter looks for the reason.
#
# **End to end, the feature term collapses the network.** Fine-tuning lifts Logistic and
# Curriculum Labeling well above their fixed-feature rows, but IMCL falls towards random
# scores. The control row isolates the cause: the same IMCL without its feature term
# ($\lambda_f = 0$). Eq. 6 asks each image's feature vector to equal a nonnegative
# combination of its neighbours'; on frozen features the network cannot change them, but
# end to end the cheapest way to satisfy it is to make all feature vectors alike, and
# nothing in Eq. 1 stops the backbone from doing so. The last epoch's $\ell_f$ per image
# shows it:

# %%
if E2E:
    display(markdown_table(
        ["IMCL end to end", "test mAP (%)", "ℓ_f per image, last epoch"],
        [[name, fmt_mean_std(ee(name)), fmt_mean_std(E2E_LF[name], digits=2)]
         for name in ("IMCL", NO_LF)],
        caption=f"{P['dataset']}, {P['image_size']} px, {P['e2e_epochs']} epochs "
                f"end to end, {P['n_seeds']} seeds (mean ± sd)"))
    collapse = paired(ee("IMCL"), ee(NO_LF))
    claims.ours("end to end, IMCL without the feature term (λ_f = 0) beats IMCL "
                "with it", collapse.detected(), measured=collapse)
    no_lf_vs_log = paired(ee("Logistic"), ee(NO_LF))
    claims.ours("end to end, IMCL without the feature term still loses against "
                "Logistic", no_lf_vs_log.detected(-1), measured=no_lf_vs_log)

# %% [markdown]
# Without the feature term IMCL trains end to end, but it stays below the Logistic model,
# as it does on fixed features: what remains is the label term, whose target the rest of
# the chapter examines.

# %% [markdown]
# ## What the learned similarities look like
#
# First, the solver itself on a real batch: the first training images, their labels
# completed by the Logistic model of seed 0 (Eq. 3), for $k = 1, \dots, 7$. The joint
# objective {eq}`eq-imcl-sparse` falls with $k$, but step 5 stops most pursuits long before
# $k$: a label vector made mostly of absent labels ($-0.5$) is explained by one or two
# images whose absent labels already match it, and the next image would need a negative
# weight.

# %%
logistic0 = RUNS["fixed", "Logistic"][0].trainer
batch = torch.arange(min(P["batch_size"], len(fit)))
y_b = impute_labels(logistic0.predict(Subset(fit, batch)), OBSERVED[0][batch], -0.5)
f_b = pooled_features(fit.base.features[fit.index[batch]])
solver = IMCLMethod(cooccurrence_graph(OBSERVED[0], P["k_a"]), lambda_y=P["lambda_y"],
                    lambda_f=P["lambda_f"], k=1)
atoms_b = solver.graph.apply(y_b)
rows = []
for k_ in range(1, 8):
    itself = torch.eye(len(batch), dtype=torch.bool)
    sims_b = joint_nonnegative_omp(y_b, f_b, atoms_b, f_b, k_, P["lambda_y"],
                                   P["lambda_f"], itself)
    res_y = (y_b - sims_b.c @ atoms_b).square().sum(1)
    res_f = (f_b - sims_b.c_bar @ f_b).square().sum(1)
    rows.append([k_, f"{float(res_y.mean()):.3f}", f"{float(res_f.mean()):.2f}",
                 f"{float((P['lambda_y'] * res_y + P['lambda_f'] * res_f).mean()):.2f}",
                 f"{float(sims_b.sizes.float().mean()):.2f}"])
markdown_table(["k", "label residual ‖r_y‖²", "feature residual ‖r_f‖²",
                "joint objective", "images selected |S| (mean)"], rows,
               caption=f"Joint Nonnegative OMP on {len(batch)} training images of "
                       f"{P['dataset']} (tanh ≈ identity, as the solver assumes), "
                       "seed 0; "
                       f"‖y‖² = {float(y_b.square().sum(1).mean()):.2f}, "
                       f"‖f‖² = {float(f_b.square().sum(1).mean()):.1f} on average")

# %% [markdown]
# The benchmark keeps the hidden truth, so we can ask what no paper could: do the images the
# solver selects as similar share a label? The package's monitor records, per epoch, the
# share of selected pairs whose true label sets intersect (`imcl_neighbour_precision`). Two
# references: a random pair of training images, and each image's nearest neighbour in its
# batch by the cosine of the pooled features.

# %%
if COMPLETE:
    truth_pos = (fit.labels == 1).float()
    pick = torch.randperm(len(fit), generator=torch.Generator().manual_seed(1))[:1500]
    sub = truth_pos[pick]
    shares = (sub @ sub.T) > 0
    random_pair = float(shares[~torch.eye(len(sub), dtype=torch.bool)].float().mean())
    feats = pooled_features(fit.base.features[fit.index])
    feats = torch.nn.functional.normalize(feats, dim=1)
    nn_hits = []
    for batch in torch.arange(len(fit)).split(P["batch_size"]):
        sim = feats[batch] @ feats[batch].T
        sim.fill_diagonal_(-2.0)
        best = sim.argmax(dim=1)
        nn_hits.append(((truth_pos[batch] * truth_pos[batch][best]).sum(1) > 0).float())
    nn_precision = float(torch.cat(nn_hits).mean())
    hist = [r.history for r in RUNS["fixed", "IMCL"]]
    curve = np.array([[h["imcl_neighbour_precision"] for h in run if
                       "imcl_neighbour_precision" in h] for run in hist])
    size = np.array([[h["imcl_neighbours"] for h in run if "imcl_neighbours" in h]
                     for run in hist])
    display(markdown_table(["pairs", "share that share a true label (%)"],
                   [["two random training images", f"{100 * random_pair:.1f}"],
                    ["nearest neighbour in the batch (feature cosine)",
                     f"{100 * nn_precision:.1f}"],
                    ["IMCL's selected images, first IMCL epoch",
                     fmt_mean_std(100 * curve[:, 0])],
                    ["IMCL's selected images, last epoch",
                     fmt_mean_std(100 * curve[:, -1])],
                    ["images selected per image (of k = {})".format(P["k"]),
                     fmt_mean_std(size[:, -1], 2)]],
                   caption=f"Neighbour precision against the hidden truth: "
                           f"{P['dataset']}, training part, batches of "
                           f"{P['batch_size']}, "
                           f"{P['n_seeds']} seeds (mean ± sd)"))
    over_time = paired(100 * curve[:, 0], 100 * curve[:, -1])
    claims.paper("the similarities improve during interactive learning (neighbour "
                 "precision, last vs first IMCL epoch)", over_time.detected(),
                 expect=False, measured=over_time,
                 paper="Fig. 1, Remark 3: the two steps 'improve the performance of "
                       "each other over time'")
    last = float(curve[:, -1].mean())
    claims.ours("IMCL's selected images share a true label less often than the nearest "
                "neighbour by feature cosine", last < nn_precision,
                measured=f"{100 * last:.1f} % vs {100 * nn_precision:.1f} %");
else:
    print("neighbour precision: skipped, the dataset has no complete hidden truth")

# %% mystnb={"figure": {"caption": "Three training images (left column, their hidden true labels above) and the first (up to three) images Joint Nonnegative OMP selects as similar in their mini-batch, with the similarities c (labels) and c\u0304 (features), at the end of IMCL training (seed 0). A selected image sharing a true label with its query is marked \u2713.", "name": "fig-imcl-neighbours"}} tags=["hide-input"]
if COMPLETE:
    model0 = RUNS["fixed", "IMCL"][0].trainer
    batch = torch.arange(P["batch_size"])
    logits0 = model0.predict(Subset(fit, batch))
    y0 = impute_labels(logits0, OBSERVED[0][batch], -0.5)
    f0 = pooled_features(fit.base.features[fit.index[batch]])
    sims0 = model0.method.similarities(y0, f0)
    by_size = torch.argsort(sims0.sizes, descending=True, stable=True)
    queries = [int(q) for q in by_size[:3]]
    picked = {q: [int(s) for s, ok in zip(sims0.support[q], sims0.selected[q])
                  if ok][:3] for q in queries}
    ncol = 1 + max(len(v) for v in picked.values())
    tiles, titles = [], []
    short = lambda i: "\n".join(CLASSES[j] for j in  # noqa: E731
                                (fit.labels[int(i)] == 1).nonzero()[:, 0][:3].tolist())
    for q in queries:
        picks = picked[q]
        tiles.append(int(fit.index[q]))
        titles.append("query\n" + short(q))
        for s in picks:
            shared = bool(((fit.labels[q] == 1) & (fit.labels[s] == 1)).any())
            tiles.append(int(fit.index[s]))
            c_qs, cbar_qs = float(sims0.c[q, s]), float(sims0.c_bar[q, s])
            titles.append(f"c={c_qs:.2f} c̄={cbar_qs:.2f} {'✓' if shared else '✗'}\n"
                          + short(s))
        tiles += [None] * (ncol - 1 - len(picks))
        titles += [""] * (ncol - 1 - len(picks))
    blank = torch.full((3, P["image_size"], P["image_size"]), 255, dtype=torch.uint8)
    shown = train_images.load_batch(torch.tensor([t for t in tiles if t is not None]))
    it = iter(shown)
    grid = torch.stack([next(it) if t is not None else blank for t in tiles])
    fig = show_images(grid, titles, ncols=ncol, size=min(2.3, 9.6 / ncol), fontsize=9)
    plt.show()
else:
    print("neighbour examples: skipped, the dataset has no complete hidden truth")

# %% [markdown]
# The solver's images share a true label more often than random pairs do, but less often
# than each image's single nearest neighbour by feature cosine: its first pick is driven
# by the same feature similarity (the feature part of step 4 dominates, $\|\mathbf{f}\|^2$ being
# far larger than $\|\y\|^2$, see the solver's table), and the later picks, chosen to
# explain what is left, share labels less often. Nor do the similarities improve as training goes on (first against last epoch),
# the interaction the paper's Fig. 1 and Remark 3 describe. Are poor similarities why
# IMCL loses? A **control**: give the solver the hidden truth as side information,
# $a \cdot \y^{\text{true}}_i$ appended to every label vector in the solver only (the
# package's `side`, the device of the paper's CUB experiment), so that it prefers images
# that do share labels.

# %%
ORACLE = floats(P["oracle_weights"], "oracle_weights")
if COMPLETE:
    lr_imcl = BEST["IMCL"][0]
    for a in ORACLE:
        for seed in SEEDS:
            method = IMCLMethod(
                cooccurrence_graph(OBSERVED[seed], P["k_a"]), lambda_y=P["lambda_y"],
                lambda_f=P["lambda_f"], k=P["k"], graph_lr=P["graph_lr"],
                logistic_epochs=P["logistic_epochs"], truth=fit.labels,
                side=a * (fit.labels == 1).float())
            cfg = config("oracle", "imcl", seed, lr_imcl, method_args=IMCL_ARGS,
                         variant=f"oracle-side{a:g}")
            result = train(cfg, TEST, OBSERVED[seed], method)
            R.setdefault(("fixed", f"IMCL, oracle a = {a:g}"), []).append(
                group_maps(result, test_feat, GROUPS[seed]))
            RUNS.setdefault(("fixed", f"IMCL, oracle a = {a:g}"), []).append(result)
    PREC = {name: [r.history[-1]["imcl_neighbour_precision"]
                   for r in RUNS["fixed", name]]
            for name in ["IMCL", *(f"IMCL, oracle a = {a:g}" for a in ORACLE)]}
    display(markdown_table(
        ["similarities", "neighbour precision (%)", "test mAP (%)", "Δ mAP vs Logistic",
         "Δ mAP vs IMCL"],
        [[name, fmt_mean_std([100 * v for v in prec]), fmt_mean_std(fx(name)),
          str(paired(fx("Logistic"), fx(name))),
          str(paired(fx("IMCL"), fx(name))) if name != "IMCL" else ""]
         for name, prec in PREC.items()],
        caption=f"Learned against oracle similarities (the hidden truth as side "
                f"information of weight a): {P['dataset']}, last epoch, {P['n_seeds']} "
                "seeds (mean ± sd)"))
else:
    print("oracle similarities: skipped, the dataset has no complete hidden truth")

# %%
if COMPLETE:
    a_hi = f"IMCL, oracle a = {max(ORACLE):g}"
    learned = float(np.mean(PREC["IMCL"]))
    claims.ours("the learned similarities pick images that share a true label more "
                "often than random pairs", learned > random_pair,
                measured=f"{100 * learned:.1f} % vs {100 * random_pair:.1f} %")
    claims.ours(f"oracle side information (a = {max(ORACLE):g}) raises the neighbour "
                "precision", paired(PREC["IMCL"], PREC[a_hi]).detected(),
                measured=paired(PREC["IMCL"], PREC[a_hi]))
    a_lo = f"IMCL, oracle a = {min(ORACLE):g}"
    lo_gain = paired(fx("IMCL"), fx(a_lo))
    claims.ours(f"oracle similarities with a = {min(ORACLE):g} beat the learned ones "
                "(mAP)", lo_gain.detected(), expect=False, measured=lo_gain)
    for a in ORACLE:
        gain = paired(fx("Logistic"), fx(f"IMCL, oracle a = {a:g}"))
        claims.ours(f"IMCL with oracle similarities (a = {a:g}) beats Logistic",
                    gain.detected(), expect=False, measured=gain);

# %% [markdown]
# **Better neighbours do not rescue it.** With $a = 1$ the side part
# weighs about as much as a label vector, the neighbour precision rises, and IMCL gains at
# most a little over its learned similarities, at the edge of the spread over seeds (the
# claims table says on which side of it this run falls), while it stays below the Logistic
# model. With $a = 10$ nearly every
# selected image shares a true label, and mAP collapses: the side part, far larger than the
# label part, now also sets the coefficients $c$ of steps 9-10, which are then fitted to the
# hidden labels rather than to the completed ones. So the loss lies in the smoothness term
# itself. The target of a missing label in Eq. 5 is $\tanh(\sum_{i'} c_{i',i}
# (\mathbf{A}\y_{i'})_j)$: a weighted **average** over the selected images and the related labels,
# squashed by tanh. A missing label that is truly present is pulled towards what the
# neighbours say about it, and the neighbours' own missing labels are the network's
# predictions, which for a model trained on few labels are low (Eq. 3 maps $p = 0.2$ to
# $y = -0.2$). We measure the pull on the training set, at the start of IMCL (the Logistic
# model) and at its end: the mean completed label $y$ and the mean target of the missing
# labels, split by their hidden truth, and the gap between the present and the absent ones,
# which is what a ranking metric sees.

# %%
def pull(trainer, seed: int) -> dict[str, float]:
    """Mean y and mean Eq. 5 target of the missing training labels, by hidden truth,
    over the training set in batches (the trained IMCL method's solver, or a fresh
    one)."""
    method = (trainer.method if isinstance(trainer.method, IMCLMethod)
              else IMCLMethod(cooccurrence_graph(OBSERVED[seed], P["k_a"]),
                              lambda_y=P["lambda_y"], lambda_f=P["lambda_f"], k=P["k"]))
    sums = torch.zeros(4, dtype=torch.float64)
    counts = torch.zeros(2, dtype=torch.float64)
    for batch in torch.arange(len(fit)).split(P["batch_size"]):
        logits = trainer.predict(Subset(fit, batch))
        obs = OBSERVED[seed][batch]
        y = impute_labels(logits, obs, -0.5)
        f = pooled_features(fit.base.features[fit.index[batch]])
        sims = method.similarities(y, f)
        target = torch.tanh(sims.c @ method.graph.apply(y))
        missing = obs == 0
        for t, value in enumerate((1, -1)):
            mask = missing & (fit.labels[batch] == value)
            sums[2 * t] += y[mask].double().sum()
            sums[2 * t + 1] += target[mask].double().sum()
            counts[t] += mask.sum()
    return {"y pos": float(sums[0] / counts[0]),
            "target pos": float(sums[1] / counts[0]),
            "y neg": float(sums[2] / counts[1]),
            "target neg": float(sums[3] / counts[1])}


if COMPLETE:
    PULL = {"Logistic (IMCL's starting point)":
            [pull(RUNS["fixed", "Logistic"][s].trainer, s) for s in SEEDS],
            "IMCL (end of training)":
            [pull(RUNS["fixed", "IMCL"][s].trainer, s) for s in SEEDS]}
    display(markdown_table(["model", "missing, truly present: y", "→ target",
                            "missing, truly absent: y", "→ target", "gap of y"],
                   [[m] + [fmt_mean_std([r[c] for r in v], 3) for c in
                           ("y pos", "target pos", "y neg", "target neg")]
                    + [fmt_mean_std([r["y pos"] - r["y neg"] for r in v], 3)]
                    for m, v in PULL.items()],
                   caption=f"Completed labels (Eq. 3, in [-0.5, 1]) and their Eq. 5 "
                           f"targets on the missing training labels: {P['dataset']}, "
                           f"{P['n_seeds']} seeds (mean ± sd)"))
    start = PULL["Logistic (IMCL's starting point)"]
    down = paired([r["y pos"] for r in start], [r["target pos"] for r in start])
    up = paired([r["y neg"] for r in start], [r["target neg"] for r in start])
    claims.ours("the Eq. 5 target pulls missing true positives down", down.detected(-1),
                measured=down)
    claims.ours("... and missing true negatives up: a shrinkage towards the average",
                up.detected(), measured=up)
    gap = paired(*([r["y pos"] - r["y neg"] for r in v] for v in PULL.values()))
    claims.ours("after IMCL the completed labels of missing present and absent labels "
                "are closer than after Logistic", gap.detected(-1), measured=gap);

# %% [markdown]
# That is the mechanism: the label smoothness **shrinks** every missing label towards the
# neighbourhood's average, positives down and negatives up, and training on it narrows the
# gap between the missing labels that are present and those that are absent, which blurs
# exactly the ranking that mAP scores. It needs neighbours whose completed labels are *more*
# right than the image's own, which a model trained on a few labels does not provide; the
# oracle neighbours share a label, but their missing labels are as under-confident. With the
# paper's
# ResNet-101 trained on millions of Open Images labels, the network's completed labels are
# far better, and the released code weighs the smoothness loss at half of the BCE measured
# on trial batches (`α = 0.5 · mean L_logistic / mean L_colab`).
#
# ## Table 2: the regularisation weights and k
#
# The paper's sweep, on the validation split: $\lambda_y$ with $\lambda_f = 0.5$, $\lambda_f$
# with $\lambda_y = 1$, and $k$. On frozen features $\ell_f$ has no gradient (the features
# are inputs), so $\lambda_f$ only changes which images the solver selects; with
# $\lambda_y = 0$ IMCL is the Logistic model exactly.

# %%
SWEEP = ([("λ_y", v, dict(IMCL_ARGS, lambda_y=v))
          for v in floats(P["sweep_lambda_y"], "sweep_lambda_y")]
         + [("λ_f", v, dict(IMCL_ARGS, lambda_f=v))
            for v in floats(P["sweep_lambda_f"], "sweep_lambda_f")]
         + [("k", v, dict(IMCL_ARGS, k=v)) for v in ints(P["sweep_k"], "sweep_k")])
sweep_runs = {}  # one run per distinct setting and seed, side by side
for seed in SEEDS:
    for knob, value, args in SWEEP:
        key = tuple(sorted(args.items()))
        if (key, seed) not in sweep_runs:
            cfg = config("table2", "imcl", seed, BEST["IMCL"][0], method_args=args)
            sweep_runs[key, seed] = Run(cfg, VAL, train_labels=OBSERVED[seed],
                                        write=FULL, resume=FULL)
done = {key: outcome.metrics["mAP"] for key, outcome in run_many(sweep_runs).items()}
S: dict[tuple, list] = {}
for seed in SEEDS:
    for knob, value, args in SWEEP:
        S.setdefault((knob, value), []).append(done[tuple(sorted(args.items())), seed])
PAPER_T2 = {("λ_y", 0.0): 78.12, ("λ_y", 0.5): 78.37, ("λ_y", 1.0): 78.44,
            ("λ_y", 2.0): 78.40, ("λ_f", 0.0): 78.40, ("λ_f", 0.5): 78.44,
            ("λ_f", 1.0): 78.38, ("λ_f", 2.0): 78.17, ("k", 3): 78.34, ("k", 5): 78.44,
            ("k", 7): 78.17}
markdown_table(["knob", "value", "validation mAP (ours)", "paper (Open Images val)"],
               [[kn, f"{v:g}", fmt_mean_std(vals), PAPER_T2.get((kn, v), "")]
                for (kn, v), vals in S.items()],
               caption=f"Table 2 (the others at λ_y = {P['lambda_y']:g}, λ_f = "
                       f"{P['lambda_f']:g}, k = {P['k']}): {P['dataset']}, validation "
                       f"split, frozen features, {P['n_seeds']} seeds (mean ± sd)")

# %%
lam = lambda v: S["λ_y", v] if ("λ_y", v) in S else None  # noqa: E731
if lam(0.0) and lam(1.0):
    ly_gain = paired(lam(0.0), lam(1.0))
    claims.paper("λ_y = 1 beats λ_y = 0 (label smoothness helps)", ly_gain.detected(),
                 expect=False, measured=ly_gain, paper="78.44 vs 78.12 (Table 2)")
if ("λ_f", 0.0) in S and ("λ_f", 0.5) in S:
    lf_gain = paired(S["λ_f", 0.0], S["λ_f", 0.5])
    claims.paper("λ_f = 0.5 beats λ_f = 0 at λ_y = 1", lf_gain.detected(), expect=False,
                 measured=lf_gain, paper="78.44 vs 78.40 (Table 2)")
ks = [v for (kn, v) in S if kn == "k"]
if len(ks) > 1:
    k_spread = paired(S["k", min(ks)], S["k", max(ks)])
    claims.paper(f"robust to k: k = {min(ks)} and k = {max(ks)} within 1 mAP",
                 k_spread.within(1.0), measured=k_spread, paper="range 0.27 (Table 2)")
ly_values = sorted(v for (kn, v) in S if kn == "λ_y")
if len(ly_values) > 1:
    ly_loss = paired(S["λ_y", ly_values[0]], S["λ_y", ly_values[-1]])
    claims.ours(f"λ_y = {ly_values[-1]:g} loses against λ_y = {ly_values[0]:g} "
                "(validation)", ly_loss.detected(-1), measured=ly_loss);

# %% [markdown]
# On validation the label smoothness does not pay: small $\lambda_y$ is on a par with none,
# and mAP falls as $\lambda_y$ grows, while in the paper it rises up to $\lambda_y = 1$. The
# feature term's weight changes little, and $k$ hardly matters, as in the paper, because
# step 5 stops the pursuit long before $k$ whatever $k$ allows.
#
# ## Tables 3-4: the label graph
#
# The ablation keeps the image similarities learned and changes the label graph: weights
# learned from their co-occurrence initialisation (IMCL), fixed at it, or no graph
# ($\mathbf{A} = I$, Remark 2). The paper's Table 3 builds the graph's structure from Wikipedia and
# WordNet instead of co-occurrence; the benchmark has no text, so our "external knowledge"
# graph is the co-occurrence of the **hidden complete** training labels, the knowledge a
# perfect outside source would bring. The paper reports group 5 (the most annotated) in
# Table 4.

# %%
HIDDEN_GRAPH = "IMCL, graph from the hidden complete labels"
ABLATION = {"label graph fixed": {"label_graph": "fixed"},
            "no label graph (A = I)": {"label_graph": "none"}}
lr_imcl = BEST["IMCL"][0]
for seed in SEEDS:
    for name, extra in ABLATION.items():
        cfg = config("table4", "imcl", seed, lr_imcl,
                     method_args=dict(IMCL_ARGS, **extra))
        result = train(cfg, TEST, OBSERVED[seed])
        R.setdefault(("fixed", f"IMCL, {name}"), []).append(
            group_maps(result, test_feat, GROUPS[seed]))
    if COMPLETE:
        method = IMCLMethod(
            cooccurrence_graph(fit.labels, P["k_a"]), lambda_y=P["lambda_y"],
            lambda_f=P["lambda_f"], k=P["k"], graph_lr=P["graph_lr"],
            logistic_epochs=P["logistic_epochs"], truth=fit.labels)
        cfg = config("table3", "imcl", seed, lr_imcl, method_args=IMCL_ARGS,
                     variant="graph-hidden-truth")
        result = train(cfg, TEST, OBSERVED[seed], method)
        R.setdefault(("fixed", HIDDEN_GRAPH), []).append(
            group_maps(result, test_feat, GROUPS[seed]))
top = f"G{N_GROUPS}"
PAPER_T4 = {"Logistic": 85.49, "IMCL, label graph fixed": 85.99, "IMCL": 86.26,
            HIDDEN_GRAPH: "86.32 (wiki)"}
rows = [[name, fmt_mean_std(fx(name, top)), fmt_mean_std(fx(name)),
         str(paired(fx("IMCL"), fx(name))) if name != "IMCL" else "",
         PAPER_T4.get(name, "")]
        for name in ["Logistic", "IMCL", *(f"IMCL, {n}" for n in ABLATION),
                     *([HIDDEN_GRAPH] if COMPLETE else [])]]
markdown_table(["variant", f"group {N_GROUPS} mAP", "all classes mAP",
                "Δ all vs IMCL (paired)", "paper, group 5 (Table 4)"], rows,
               caption=f"Tables 3-4, test mAP (%): {P['dataset']}, frozen features, "
                       f"{P['n_seeds']} seeds (mean ± sd)")

# %%
learned_vs_fixed = paired(fx("IMCL, label graph fixed"), fx("IMCL"))
learned_vs_none = paired(fx("IMCL, no label graph (A = I)"), fx("IMCL"))
claims.paper("a learned label graph beats a fixed one", learned_vs_fixed.detected(),
             expect=False, measured=learned_vs_fixed,
             paper="86.26 vs 85.99 (Table 4, G5)")
claims.paper("a learned co-occurrence graph beats no label graph",
             learned_vs_none.detected(), expect=False, measured=learned_vs_none,
             paper="§4.5: 'not using co-occurrence label graph ... does not do as "
                   "well'")
if COMPLETE:
    ext = paired(fx("IMCL"), fx(HIDDEN_GRAPH))
    claims.paper("a graph from the data's co-occurrence does as well as one from "
                 "outside knowledge (no detectable difference)",
                 not ext.detected() and not ext.detected(-1), measured=ext,
                 paper="76.72 vs 76.74 (Table 3, all)");

# %% mystnb={"figure": {"caption": "The label graph of seed 0: its initial weights from the observed co-occurrences (left), the change the IMCL run made to them (middle; note the scale), and the co-occurrence rate P(j\u2032 | j) in the hidden complete training labels (right). Row j holds the labels j\u2032 that explain label j.", "name": "fig-imcl-graph"}} tags=["hide-input"]
imcl0 = RUNS["fixed", "IMCL"][0].trainer.method
w_init = type(imcl0.graph)(imcl0.graph.neighbours, imcl0.initial_weights.cpu(),
                          imcl0.graph.mask.cpu()).dense()
w_end = imcl0.graph.to("cpu").dense()
panels = [("initial (observed co-occurrence)", w_init, "viridis"),
          ("learned − initial", w_end - w_init, "RdBu_r")]
if COMPLETE:
    tp = (fit.labels == 1).float()
    panels.append(("hidden P(j′ | j)", (tp.T @ tp) / tp.sum(0).clamp(min=1)[:, None],
                   "viridis"))
fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3.2))
for ax, (title, m_, cmap) in zip(np.atleast_1d(axes), panels):
    lim = float(m_.abs().max()) or 1.0
    im = ax.imshow(m_, cmap=cmap, vmin=-lim if cmap == "RdBu_r" else 0, vmax=lim)
    ax.set(xlabel="label j′", ylabel="label j")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046)
fig.tight_layout()
plt.show()
change = [r.history[-1]["imcl_graph_change"] for r in RUNS["fixed", "IMCL"]]
print(f"relative change of the graph weights (mean over seeds): {np.mean(change):.3f}")

# %% [markdown]
# The graph barely moves: one projected gradient step per batch at the default step size
# changes its weights by a few percent (printed above), so "learned" and "fixed" are nearly
# the same model, within a fraction of a point of each other, and no graph is no worse. Those
# fractions of a point sit at the edge of their spread over seeds: a verdict there is
# *borderline* (the claims table says so when it crosses), and the last bits of another
# machine can tip it either way. The
# observed co-occurrences are sparse (rare classes co-occur with nothing observed, and keep
# only their own edge), while the hidden ones are dense; a graph built from the hidden
# labels does not differ from the observed one beyond the spread either. The paper gives no
# step size for the graph; `graph_lr` and `graph_steps` are the package's knobs.
#
# ## The attribute task (CUB, §4.6)
#
# The paper's systematic study of missing labels: predict CUB's 312 bird attributes with a
# share $\rho$ of each image's attributes hidden, the label graph set to the identity
# (attributes taken as independent), and the species as **side information**: its one-hot
# vector times $a$, appended to each label vector in the similarity learner only, so that
# images of the same species are preferred as neighbours. The benchmark's analogue: the 17
# attributes of each image's largest labelled object (colour, pattern tone, size, texture,
# `dataset.attributes`), with that object's class as the species. The paper uses
# $\lambda_y = 2$ here (its "$\lambda_c$").

# %%
attr_same = (P["attr_dataset"], P["attr_data_root"], P["attr_image_size"],
             P["attr_n_train"], P["attr_n_test"]) == (
    P["dataset"], P["data_root"], P["image_size"], P["n_train"], P["n_test"])
if attr_same:
    attr_train_images, attr_test_images = train_images, test_images
else:
    attr_common = dict(root=P["attr_data_root"], image_size=P["attr_image_size"],
                       seed=0)
    attr_train_images = create_dataset(P["attr_dataset"], "train", n=P["attr_n_train"],
                                       **attr_common)
    attr_test_images = create_dataset(P["attr_dataset"], "test", n=P["attr_n_test"],
                                      **attr_common)


def attribute_task(images):
    """(attribute labels, attribute names, species index) of a dataset: the
    benchmark's attributes with the class of each image's largest labelled object, or
    CUB's attribute labels with its species; None if the dataset has neither."""
    if hasattr(images, "attributes") and hasattr(images, "scenes"):
        return (images.attributes, list(images.attribute_names),
                scene_class_radius(images.scenes).argmax(dim=1))
    if hasattr(images, "class_index"):
        return images.labels, list(images.classes), images.class_index
    return None


ATTR = attribute_task(attr_train_images)
if ATTR is None:
    print(f"attribute task: skipped, {P['attr_dataset']} has no attributes")
else:
    attr_labels, attr_names, species = ATTR
    test_attr = attribute_task(attr_test_images)
    a_train = train_feat if attr_same else extract_features(net, attr_train_images, DEV)
    a_test = test_feat if attr_same else extract_features(net, attr_test_images, DEV)
    a_pool = FeatureMaps(a_train.features, attr_labels, attr_names)
    a_fit, a_val = hold_out(a_pool, P["n_val"] if attr_same else
                            max(1, len(a_pool) // 8), seed=0)
    a_testset = FeatureMaps(a_test.features, test_attr[0], attr_names)
    n_species = int(species.max()) + 1
    onehot = torch.nn.functional.one_hot(species[a_fit.index], n_species).float()
    MISSING = floats(P["attr_missing"], "attr_missing")
    SIDE = floats(P["side_weights"], "side_weights")
    markdown_table(["", "value"],
                   [["attributes", len(attr_names)],
                    ["species (side information)", n_species],
                    ["training / validation / test images",
                     f"{len(a_fit)} / {len(a_val)} / {len(a_testset)}"],
                    ["positive rate of an attribute (mean, %)",
                     f"{100 * float((a_fit.labels == 1).float().mean()):.1f}"]],
                   caption=f"Attribute task: {P['attr_dataset']}")


# %%
ATTR_ARGS = dict(lambda_y=P["attr_lambda_y"], lambda_f=P["lambda_f"], k=P["k"],
                 label_graph="none", logistic_epochs=P["logistic_epochs"])


def attr_method(a: float) -> IMCLMethod:
    """IMCL for attributes: identity label graph (Remark 2), the paper's CUB weights,
    the species as side information of weight a (none for a = 0)."""
    return IMCLMethod(identity_graph(len(attr_names)), lambda_y=P["attr_lambda_y"],
                      lambda_f=P["lambda_f"], k=P["k"],
                      logistic_epochs=P["logistic_epochs"],
                      side=a * onehot if a > 0 else None)


def attr_observed(rho: float, seed: int) -> torch.Tensor:
    """ρ of each image's attributes hidden, uniformly at random (an exact count per
    image)."""
    stream = derive_seed(PROTOCOL, seed, 2, int(round(100 * rho)))
    return labels.partial(a_fit.labels, 1 - rho, seed=stream, per_image=True)


if ATTR is not None:
    A_VAL = DataSplits(train=a_fit, test=a_val)
    A_TEST = DataSplits(train=a_fit, test=a_testset)
    hardest = max(MISSING)
    A_TUNE, A_BEST = {}, {}
    for name, a in (("Logistic", None), (f"IMCL, a = {max(SIDE):g}", max(SIDE))):
        for lr in LRS:
            obs = attr_observed(hardest, 0)
            method = None if a is None else attr_method(a)
            cfg = config("attr-tune", "supervised" if a is None else "imcl", 0, lr,
                         method_args=None if a is None else ATTR_ARGS,
                         variant=f"rho{hardest:g}" + ("" if a is None else f"-a{a:g}"))
            A_TUNE[name, lr] = train(cfg, A_VAL, obs, method).metrics["mAP"]
        A_BEST[name] = max(LRS, key=lambda lr: A_TUNE[name, lr])
    at_end = [n for n, lr in A_BEST.items() if lr in ENDS]
    print("attributes, learning rate chosen at an end of the grid: "
          f"{', '.join(at_end) or 'none'}")
    AR: dict[tuple, list] = {}
    for seed in SEEDS:
        for rho in MISSING:
            obs = attr_observed(rho, seed)
            cfg = config("attr", "supervised", seed, A_BEST["Logistic"],
                         variant=f"rho{rho:g}")
            AR.setdefault(("Logistic", rho), []).append(
                train(cfg, A_TEST, obs).metrics["mAP"])
            for a in SIDE:
                cfg = config("attr", "imcl", seed, A_BEST[f"IMCL, a = {max(SIDE):g}"],
                             method_args=ATTR_ARGS, variant=f"rho{rho:g}-a{a:g}")
                AR.setdefault((f"IMCL, a = {a:g}", rho), []).append(
                    train(cfg, A_TEST, obs, attr_method(a)).metrics["mAP"])
    display(markdown_table(
        ["method", "learning rate", "validation mAP", "chosen"],
        [[n, f"{lr:g}", f"{v:.2f}", "✓" if A_BEST[n] == lr else ""]
         for (n, lr), v in A_TUNE.items()],
        caption=f"Attribute task tuning at {hardest:.0%} missing, seed 0"))
    display(markdown_table(
        ["method"] + [f"{rho:.0%} missing" for rho in MISSING],
        [[name] + [fmt_mean_std(AR[name, rho]) + (
            f" (Δ {paired(AR['Logistic', rho], AR[name, rho])})" if name != "Logistic"
            else "") for rho in MISSING]
         for name in ["Logistic", *(f"IMCL, a = {a:g}" for a in SIDE)]],
        caption=f"Attribute task, test mAP (%) and paired Δ over Logistic: "
                f"{P['attr_dataset']}, frozen features, {P['n_seeds']} seeds "
                "(mean ± sd)"))

# %% mystnb={"figure": {"caption": "The attribute task (the paper's Figure 3): paired change of test mAP over the Logistic model against the share of hidden attributes, for IMCL with side information of weight a (a = 0: none); mean \u00b1 sd over seeds, frozen features.", "name": "fig-imcl-attributes"}} tags=["hide-input"]
if ATTR is not None:
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    for a in SIDE:
        eff = [paired(AR["Logistic", rho], AR[f"IMCL, a = {a:g}", rho])
               for rho in MISSING]
        ax.errorbar([100 * r for r in MISSING], [e.mean for e in eff],
                    yerr=[e.sd for e in eff], marker="o", capsize=3,
                    label=f"IMCL, a = {a:g}")
    ax.axhline(0, color="black", lw=0.8)
    ax.set(xlabel="hidden attributes per image (%)",
           ylabel="Δ mAP vs Logistic (points)")
    ax.legend(fontsize=8)
    plt.show()
else:
    print("attribute figure: skipped")

# %%
if ATTR is not None:
    amax, amin = f"IMCL, a = {max(SIDE):g}", f"IMCL, a = {min(SIDE):g}"
    at_hard = paired(AR["Logistic", hardest], AR[amax, hardest])
    claims.paper(f"IMCL beats Logistic on attributes at {hardest:.0%} missing",
                 at_hard.detected(), expect=False, measured=at_hard,
                 paper="Fig. 3: about +2 over the other methods at 90 % missing")
    if len(MISSING) > 1:
        easy = min(MISSING)
        gain_at = lambda rho: [b - a for a, b in  # noqa: E731
                               zip(AR["Logistic", rho], AR[amax, rho])]
        shrink = paired(gain_at(easy), gain_at(hardest))
        claims.paper(f"the gain is larger at {hardest:.0%} than at {easy:.0%} missing",
                     shrink.detected(), expect=False, measured=shrink,
                     paper="Fig. 3: the gap narrows as more attributes are observed")
    if {1.0, 10.0} <= set(SIDE):
        side_gain = paired(AR["IMCL, a = 1", hardest], AR["IMCL, a = 10", hardest])
        claims.paper(f"stronger side information helps: a = 10 beats a = 1 "
                     f"({hardest:.0%} missing)", side_gain.detected(),
                     measured=side_gain, paper="Fig. 3: a = 10 above a = 1")
    if len(SIDE) > 1 and min(SIDE) == 0:
        some_side = paired(AR[amin, hardest], AR[amax, hardest])
        claims.ours(f"side information (a = {max(SIDE):g}) beats none (a = 0) at "
                    f"{hardest:.0%} missing", some_side.detected(), measured=some_side);

# %% [markdown]
# On attributes IMCL does not beat the Logistic model either: it is slightly below it when
# half the attributes are hidden and loses more when most are, the opposite of the paper's
# Fig. 3, where the gain grows with the share of missing attributes. Side information does
# part of what the paper says: preferring images of the same class as neighbours reduces
# the loss (the class fixes the object's texture and, roughly, its colour), and the stronger
# $a = 10$ reduces it more than $a = 1$, as in Fig. 3.
#
# ## Claims
#
# The claims of this chapter, as measured in this run:

# %% tags=["nbval-check-output"]
claims.table("paper",
             caption=f"Huynh & Elhamifar 2020, the paper's claims: {P['dataset']} and "
                     f"{P['attr_dataset']} attributes, {P['image_size']} px, frozen "
                     f"features unless a row says end to end, {P['n_seeds']} seeds; "
                     "paired Δ ± sd (reproduced: the "
                     "effect exceeds its spread)")

# %% tags=["nbval-check-output"]
claims.table("ours",
             caption=f"Huynh & Elhamifar 2020, our observations: {P['dataset']}, "
                     f"{P['image_size']} px, {P['n_seeds']} seeds")

# %% [markdown]
# Beside the paper's numbers: on Open Images IMCL gains +0.87 mAP over Logistic with fixed
# features (76.72 vs 75.85), +2.22 end to end (78.07), and +0.40 over Curriculum Labeling
# with fixed features (76.72 vs 76.32); here, with fixed features, the first two rows of the
# table are negative or within the spread, and end to end IMCL collapses: its feature term
# makes the features alike (without it, it trains but stays below Logistic). The learned graph's +0.27 over a fixed one
# (group 5, Table 4) does not reproduce beyond the spread, and Table 2's +0.32 for
# $\lambda_y = 1$ over 0 is reversed: $\lambda_y = 1$ loses about two points. Table 2's
# robustness to $k$ does reproduce. On attributes the paper's "about two points" at 90 % missing
# become a loss here, and only side information behaves as reported.
#
# ## Paper and code
#
# * **Eq. 2** as printed, $-\sum y \log p + (1 - y)\log(1 - p)$ with $y \in \{-1, 1\}$, is
#   not a cross-entropy for $y = -1$; the package reads it as the standard BCE.
# * **Scale.** The package divides Eq. 1 by $B \cdot C$; the released code
#   (`hbdat/cvpr20_IMCL`) instead sets the smoothness weight before training to
#   $0.5 \cdot$ mean BCE / mean smoothness loss over ten trial batches (and a quarter of that
#   for features), so its $\lambda$'s are not the paper's.
# * **tanh.** Eq. 5 squashes with tanh, into $[-1, 1]$, while the completed labels live in
#   $[-0.5, 1]$ (§4.3). The released code uses an asymmetric sigmoid with range
#   $[-1/c, 1]$ and clamps the known labels into the prediction; the package follows the
#   paper.
# * **Step 5** tests $\langle \mathbf{r}_y, \y_s \rangle$ in the paper; the package tests the atom it
#   fits, $\mathbf{A}\y_s$ (the same for $\mathbf{A} = I$). Steps 9-10 clip least squares at 0, as printed.
# * **Dictionary.** The paper learns similarities within the mini-batch; the released code
#   matches each image (batch size 1 on MS-COCO) against 10,000 images refreshed every 3,000
#   iterations. A larger dictionary gives better neighbours at a higher cost; the control
#   above shows that better neighbours alone do not change the verdict here.
# * **Graph learning.** No step size or number of steps is given; the package takes one
#   projected gradient step per batch (`graph_lr`, `graph_steps`), keeping the weights
#   nonnegative. The Open Images graph of the code is downloaded, the MS-COCO one is built
#   from Wikipedia summaries with 5 neighbours per label.
# * **Optimiser and schedule.** The paper uses RMSProp (lr 0.001, decay 0.8 when validation
#   degrades) and refines the Logistic model for 1 epoch on Open Images; the chapter uses
#   SGD with momentum and a one-cycle schedule for every method, with IMCL switched on after
#   `logistic_epochs`. The code's MS-COCO script tunes on the test set; the chapter tunes on
#   a validation split.
# * **The feature term end to end.** Eq. 6 has a trivial minimiser when the backbone
#   trains: identical feature vectors. The released code never meets it on its MS-COCO
#   script (feature term off, `is_feature_propagate=False`, and the VGG convolutions
#   frozen), weighs it at a quarter of the auto-scaled label term elsewhere, and fine-tunes
#   Open Images end to end at a learning rate of $10^{-8}$, which leaves the backbone nearly
#   where it started. The paper mentions none of this; the package applies Eq. 1 as printed.
# * **Side information** (§4.6) enters Algorithm 2 only; its part of $\ell_y$ is constant in
#   the network's parameters, so the package leaves it out of the loss.
#
# ## Summary
#
# * IMCL adds to the BCE a smoothness loss whose similarities are learned by a greedy,
#   nonnegative, jointly sparse regression per mini-batch (Algorithm 2) and a label graph
#   refined by gradient steps; the gradients of both terms are Eq. {eq}`eq-imcl-grad`-
#   {eq}`eq-imcl-gradf`.
# * End to end, Eq. 6 as printed collapses the network: nothing stops the backbone from
#   making every feature vector alike, which satisfies the feature term at no cost. Without
#   it (λ_f = 0) IMCL trains, but below the Logistic model.
# * On the miniature Open Images with frozen features, IMCL does not beat its own starting
#   point, the Logistic model, nor Curriculum Labeling (which loses against Logistic); the
#   label graph's variants hardly differ; past $\lambda_y = 0.5$, the larger $\lambda_y$,
#   the lower the validation mAP.
# * The similarities are better than chance but worse than a plain nearest neighbour, and do
#   not improve during training; better (oracle) similarities do not rescue IMCL either,
#   because the smoothness target is an average of under-confident completed labels that
#   shrinks every missing label towards the middle.
# * On attributes IMCL loses most where the paper gains most; side information reduces the
#   loss, the more the stronger it is, as the paper's side-information result suggests.
#
# ## Exercises
#
# 1. Set `logistic_epochs = 9` (the paper's one-epoch refinement). Does the loss against
#    Logistic shrink in proportion to the number of IMCL epochs?
# 2. Run the Table 1 IMCL row with `y_min = -1` (Eq. 3 as printed). Which way does the
#    shrinkage table move, and why?
# 3. Show that with $\mathbf{A} = I$, $k = 1$ and $\lambda_f = 0$, step 4 picks the image whose
#    completed label vector has the largest cosine with the query's.
# 4. Rerun the end-to-end rows with `e2e_lr = 0.2`, eight times smaller. Does the feature
#    term still collapse IMCL, or was the collapse a matter of step size?

# %% tags=["remove-cell"]
print(f"chapter time: {time.perf_counter() - chapter_start:.0f} s")
