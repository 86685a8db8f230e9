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
# (ch01)=
# # Missing, partial and wrong labels
#
# A multi-label image classifier answers, for each of $C$ classes, "is it in the picture?".
# Training one needs, for every training image, the answer to all $C$ questions: an
# *exhaustive* label vector. Real datasets rarely have that. Annotators skip classes (labels are
# **missing**, or **partial**), crowd workers and web tags are sometimes **wrong** (labels are
# **noisy**), and most images were never labelled at all (labels are **absent**). This chapter
# sets up everything the rest of the book uses:
#
# 1. the label convention, $y_c \in \{-1, 0, 1\}$;
# 2. the **embedded benchmark**, a procedural multi-label image dataset that ships with the
#    package, so every chapter runs without downloads and can measure what no paper could
#    (its ground truth is always known);
# 3. the **label protocols** that hide or corrupt training labels, as the papers define them;
# 4. the **metrics**, with worked examples, because papers report numbers under the same names
#    that are computed differently;
# 5. **the problem in numbers**: the same network trained with all labels, with a small share
#    of them (the unknown ones ignored, or taken as negatives), and with wrong labels;
# 6. **the regime** of the quick scale: a backbone pretrained on single objects and shipped with
#    the package stands in for ImageNet weights, and a calibration table says how close the
#    benchmark then comes to the papers' setting, and where it falls short.
#
# Run it in JupyterLab (`make lab`) or read it here; every number on this page was computed
# when the page was built.

# %% tags=["parameters", "hide-input"]
# Parameters (papermill). None means "the value for the chosen scale", read from
# params/ch01_problem.yaml: "quick" runs on a CPU (its time is in the README), "full" is
# a paper-scale run for a GPU (ResNet-101 at 448 px, 20 epochs).
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
epochs = None
batch_size = None
lr = None
schedule = None
lr_step = None
known = None
clean = None
n_val = None
lr_factors = None
n_seeds = None
output_dir = None

# %% tags=["hide-input"]
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from IPython.display import display

from mlrobust import labels, losses, metrics
from mlrobust.config import DataConfig, ExperimentConfig, ModelConfig, TrainConfig
from mlrobust.data import (CLASSES, COMPANIONS, CONTEXTS, DISTRACTOR_CLASSES,
                           DataSplits, ShapeScenes, context_only_logits,
                           extract_features, scene_class_radius)
from mlrobust.experiments import (Run, build_data, observed_labels, run_experiment,
                                  run_many, tune_lr)
from mlrobust.engine import resolve_device
from mlrobust.seeding import derive_seed
from mlrobust.claims import Claims, Verdict, paired
from mlrobust.notebook import (claims_checked, floats, fmt_mean_std, markdown_table,
                               mean_std, resolve_parameters, show_source)
from mlrobust.viz import (as_jpeg, errorbar_by_setting, protocol_explorer,
                          protocol_grid, show_images)

P = resolve_parameters("ch01_problem", scale, dict(
    dataset=dataset, data_root=data_root, device=device, backbone=backbone,
    weights=weights, freeze_at=freeze_at, cache_frozen=cache_frozen,
    image_size=image_size, n_train=n_train, n_test=n_test,
    epochs=epochs, batch_size=batch_size, lr=lr, schedule=schedule, lr_step=lr_step,
    known=known, clean=clean, n_val=n_val, lr_factors=lr_factors, n_seeds=n_seeds,
    output_dir=output_dir))
chapter_start = time.perf_counter()
# measured claims fail the build at the quick scale with its presets; elsewhere they
# are reported
claims = Claims(strict=claims_checked("ch01_problem", scale, P))
# the benchmark is sampled once (labels only; images are rendered when first needed)
splits = build_data(DataConfig(dataset=P["dataset"], root=P["data_root"],
                               image_size=P["image_size"], n_train=P["n_train"],
                               n_test=P["n_test"]))
markdown_table(["parameter", "value"], [[k, repr(v)] for k, v in P.items()])

# %% [markdown]
# ## The label convention
#
# We write an image's labels as a vector $\y \in \{-1, 0, 1\}^C$ {cite:p}`durand2019learning`:
# $y_c = 1$ means class $c$ is present, $y_c = -1$ absent, $y_c = 0$ **unknown**. In code, a
# batch of labels is an `int8` tensor of shape $(N, C)$. Model outputs are *logits*
# $\x \in \R^C$ (before the sigmoid $\sig$); $\sig(x_c)$ is the predicted probability that
# class $c$ is present. The same image can be labelled in four ways:
#
# | situation | what we know | example ($C = 5$) |
# |---|---|---|
# | all labels | every class, correctly | $(1, 1, -1, -1, -1)$ |
# | partial labels | some classes, correctly; the rest unknown | $(1, 0, 0, -1, 0)$ |
# | noisy labels | every class, some wrongly | $(1, -1, 1, -1, -1)$ |
# | absent labels | nothing | $(0, 0, 0, 0, 0)$ |
#
# Protocols (below) turn the first row into the others, so that a method's loss of accuracy
# can be measured against the truth. The ground truth of every *evaluation* image is always
# the clean, complete one.

# %%
y_example = torch.tensor([[1, 1, -1, -1, -1], [1, 0, 0, -1, 0], [1, -1, 1, -1, -1],
                          [0, 0, 0, 0, 0]], dtype=torch.int8)
summary = [[k, f"{v:g}"] for k, v in labels.summary(y_example).items()]
half = (len(summary) + 1) // 2  # two statistics per row
markdown_table(["statistic", "value", "statistic", "value"],
               [a + b for a, b in zip(summary[:half], summary[half:] + [["", ""]])])

# %% [markdown]
# ## The embedded benchmark
#
# No dataset can be downloaded while the book runs, so the package generates one: **ShapeScenes**.
# Each image is a scene: a background from one of six *contexts* (meadow, harbour, kitchen,
# workshop, night, desert), clutter strokes and blobs, one to six labelled objects, and
# sometimes *distractors* — objects of classes outside the label set. The 24 classes are
# (shape, texture) pairs such as "striped ring" or "dotted star": telling them apart needs both
# cues, and both fade for small objects at low resolution, as in real photographs. It is built
# to be a test bed for the methods of this book, not a toy:
#
# * **label correlation** — a context favours six classes and four pairs of classes co-occur,
#   so label graphs and graph networks have structure to find;
# * **scale, occlusion and clutter** — object radii range from 10 % to 30 % of the image side
#   (at 32 px, objects 6 to 19 pixels across) and are drawn in painter's order over a noisy,
#   cluttered background;
# * **confusable classes** — both textures of a shape share a preferred colour, and pairs of
#   similar shapes (disk and hexagon, square and diamond, ...) share one too;
# * **single-object images** occur naturally, **distractors** from six out-of-set classes appear
#   in many scenes, and an `ood_fraction` of images can hold only distractors
#   (out-of-distribution unlabelled data);
# * **attributes** of each object (colour, pattern tone, size, texture) give an attribute task;
# * **known truth** — labels, attributes and every object's parameters are kept, so the book can
#   measure the precision of pseudo-labels or the error of an estimated noise matrix exactly.
#
# Scenes are sampled from a seed; pixels are rendered on demand at any resolution from 32 to
# 448 px, on the CPU or the GPU, and image $i$ is the same whatever batch renders it. The
# statistics of the chapter's training set follow the figures below.

# %% mystnb={"figure": {"caption": "Twelve training scenes of the embedded benchmark rendered at 128 px, titled with their labels (distractors such as hearts, tees and pentagons carry no label).", "name": "fig-gallery"}} tags=["hide-input"]
gallery = ShapeScenes(12, image_size=128, seed=0, split="train")
titles = ["\n".join(gallery.classes[c] for c in torch.nonzero(row == 1)[:, 0])
          for row in gallery.labels]
as_jpeg(show_images(gallery.images(), titles, ncols=4, size=2.3, fontsize=9, dpi=90))

# %% [markdown]
# The quick scale trains at low resolution, where small objects shrink to a few pixels and
# textures blur: the same scenes at four resolutions (geometry is resolution independent).
# The smallest radius, 10 % of the side, keeps the smallest object 6 pixels across at 32 px:
# smaller objects are a pixel or two of colour, and a network would learn the scene's context
# instead of the object (the regime section below measures how far it is from that).

# %% mystnb={"figure": {"caption": "The same four scenes rendered at 32, 64, 128 and 448 px (columns). At 32 px, the quick scale, small objects are a few pixels wide and stripes, checks and dots blur into grey.", "name": "fig-resolutions"}} tags=["hide-input"]
sizes = [32, 64, 128, 448]
fig, axes = plt.subplots(4, len(sizes), figsize=(1.8 * len(sizes), 7.4), dpi=90)
for j, size in enumerate(sizes):
    imgs = ShapeScenes(4, image_size=size, seed=0, split="train").images()
    for i in range(4):
        axes[i, j].imshow(imgs[i].permute(1, 2, 0), interpolation="nearest")
        axes[i, j].set_xticks([]), axes[i, j].set_yticks([])
        if i == 0:
            axes[i, j].set_title(f"{size} x {size} px", fontsize=9)
fig.tight_layout()
as_jpeg(fig)

# %% [markdown]
# The statistics of the chapter's training set, computed from the scene table (no image is
# rendered for this):

# %%
train_truth = splits.train.labels
positives = (train_truth == 1).sum(1).float()
freq = (train_truth == 1).float().mean(0)
stats = [["images", len(train_truth)], ["classes", train_truth.shape[1]],
         ["labels per image (mean)", f"{positives.mean():.2f}"],
         ["single-label images (%)", f"{100 * (positives == 1).float().mean():.1f}"],
         ["class frequency, min - max (%)",
          f"{100 * freq.min():.1f} - {100 * freq.max():.1f}"]]
# the embedded benchmark keeps every object's parameters
if hasattr(splits.train, "scenes"):
    scenes = splits.train.scenes
    objects = scenes.obj_class >= 0
    radius = scenes.obj_radius[objects]
    stats += [["contexts / distractor classes",
               f"{len(CONTEXTS)} / {len(DISTRACTOR_CLASSES)}"],
              ["images with a distractor (%)",
               f"{100 * (scenes.obj_class >= len(CLASSES)).any(1).float().mean():.1f}"],
              ["object radius, min - max (% of image side)",
               f"{100 * radius.min():.1f} - {100 * radius.max():.1f}"]]
markdown_table(["training set statistic", "value"], stats)

# %% mystnb={"figure": {"caption": "Label correlation in the training set: P(column class | row class), the share of images containing the row class that also contain the column class. The bright off-diagonal cells are the context groups and the four companion pairs.", "name": "fig-cooccurrence"}} tags=["hide-input"]
pos = (train_truth == 1).float()
cond = (pos.T @ pos) / pos.sum(0).clamp(min=1)[:, None]
fig, ax = plt.subplots(figsize=(7.5, 6.5))
im = ax.imshow(cond, cmap="viridis", vmin=0, vmax=1)
names = splits.classes
ax.set_xticks(range(len(names)), names, rotation=90, fontsize=8)
ax.set_yticks(range(len(names)), names, fontsize=8)
ax.set_xlabel("class b"), ax.set_ylabel("class a")
fig.colorbar(im, ax=ax, label="P(b present | a present)")
fig.tight_layout()

# %%
if hasattr(splits.train, "scenes"):  # the benchmark's companion pairs
    pairs = [(a, b) for a, b, _ in COMPANIONS]
else:  # a real dataset: its most predictive pairs
    lift = cond - torch.diag(torch.diag(cond))
    top = lift.flatten().topk(4).indices
    pairs = [(int(i) // len(names), int(i) % len(names)) for i in top]
strongest = [(names[a], names[b], round(cond[a, b].item(), 2), round(freq[b].item(), 2))
             for a, b in pairs]
markdown_table(["if present", "then", "P(then | if)", "P(then)"], strongest)

# %% [markdown]
# ## Label protocols
#
# A *protocol* turns complete training labels into the labels a method is given. Each one
# follows the definition of the paper that uses it, takes an explicit seed, and never touches
# evaluation labels. For an image with labels $\y$:
#
# `partial(y, known)`
# : each label is kept independently with probability `known`, else set to 0 — the convention
#   of most partial-label papers {cite:p}`chen2022structured,wang2023saliency`; with
#   `per_image=True`, exactly `round(known·C)` labels per image, as {cite:t}`durand2019learning`.
#
# `dense(y, known)`
# : a random `known` fraction of the images keep every label, the others none — Durand's
#   "complete image labels" strategy.
#
# `noisy(y, clean)`
# : each label's sign flips with probability `1 - clean` {cite:p}`durand2019learning`.
#
# `single_positive(y)`
# : "noisy+" — one positive chosen at random stays positive; every other label is said absent,
#   as a web image's single tag would suggest {cite:p}`durand2019learning,cole2021multi`.
#
# `symmetric_noise(y, eta)`
# : each positive label moves, with probability `eta`, to a class not present in the image, and
#   the function returns the corruption matrix
#   $C_{ii} = 1 - \eta$, $C_{ij} = \eta / (K - 1)$ {cite:p}`pene2021multilabel`.
#
# `frequency_corruption(y, fraction)`
# : a random `fraction` of the images gets a new label vector drawn from the class frequencies
#   {cite:p}`cevikalp2019semi`.
#
# `semi_supervised(y, n_labeled)`
# : `n_labeled` images keep all their labels, the rest none.
#
# Here is the package's code for the first one — the book always shows the package's code,
# never a copy:

# %%
show_source(labels.partial)

# %% [markdown]
# Each protocol on the twelve training images of {numref}`fig-gallery`
# ({numref}`fig-protocols`); a red cross marks an observed label that contradicts the truth:

# %% mystnb={"figure": {"caption": "Observed training labels under each protocol for the first 12 training images (rows) and 24 classes (columns); seed 0. Blue: present, grey: absent, white: unknown; a red cross marks a wrong label.", "name": "fig-protocols"}} tags=["hide-input"]
y12 = train_truth[:12]
# sampling is prefix-stable: the gallery shows these scenes
if P["dataset"] == "shapescenes":
    assert torch.equal(gallery.labels, y12)
grid = {
    "partial, known=0.3": lambda y: labels.partial(y, 0.3, seed=0),
    "partial per image, known=0.3":
        lambda y: labels.partial(y, 0.3, seed=0, per_image=True),
    "dense, known=0.3": lambda y: labels.dense(y, 0.3, seed=0),
    "noisy, clean=0.8": lambda y: labels.noisy(y, 0.8, seed=0),
    "single positive (noisy+)": lambda y: labels.single_positive(y, seed=0),
    "symmetric noise, eta=0.4": lambda y: labels.symmetric_noise(y, 0.4, seed=0)[0],
    "frequency corruption, 0.4": lambda y: labels.frequency_corruption(y, 0.4, seed=0),
}
protocol_grid(y12, grid);

# %% [markdown]
# In JupyterLab the explorer below lets you move each protocol's parameter and seed and watch
# the label matrix change; the static book shows {numref}`fig-protocols` instead.

# %% tags=["remove-output"]
# (function, its parameter, the value the slider starts at when the protocol is picked)
explorer = protocol_explorer(y12, {
    "partial": (labels.partial, "known", 0.3),
    "dense": (labels.dense, "known", 0.3),
    "noisy": (labels.noisy, "clean", 0.8),
    "single_positive": (labels.single_positive, None),
    "symmetric_noise": (
        lambda y, seed, eta: labels.symmetric_noise(y, eta, seed)[0], "eta", 0.4),
    "frequency_corruption": (labels.frequency_corruption, "fraction", 0.4),
})

# %% [markdown]
# The statistics of each protocol on the whole training set: the share of labels known, and
# among the known ones the share that is wrong.

# %%
def stats_row(name: str, y_obs: torch.Tensor) -> list:
    c = labels.compare(y_obs, train_truth)
    per_image = labels.summary(y_obs)["positives_per_image"]
    return [name, f"{100 * c['known_share']:.1f}", f"{per_image:.2f}",
            f"{100 * c['wrong_share']:.1f}"]


markdown_table(["protocol", "known labels (%)", "positives per image",
                "wrong among known (%)"],
               [stats_row("all labels", train_truth)]
               + [stats_row(name, fn(train_truth)) for name, fn in grid.items()])

# %% [markdown]
# ## Metrics
#
# Multi-label papers report two families of numbers. **Ranking metrics** ask whether, for each
# class, the images that contain it are ranked above those that do not; **threshold metrics**
# turn scores into yes/no predictions and count hits. Repositories compute both differently,
# and the differences can exceed the gains a paper claims, so here are our definitions on
# worked examples.
#
# ### Average precision
#
# For one class, rank the images whose label for that class is known by score, highest first.
# Each positive image $i$ contributes the precision at its rank — the share of positives among
# the images ranked at or above it. The **average precision** is the mean of these precisions
# over the $|P|$ positives {cite:p}`manning2008introduction`:
#
# $$\AP = \frac{1}{|P|} \sum_{i \in P} \frac{|\{j \in P : s_j \ge s_i\}|}{|\{j : s_j \ge s_i\}|}.$$
#
# Tied scores enter the ranking together (a tie is one threshold), which makes this exactly
# scikit-learn's `average_precision_score` {cite:p}`pedregosa2011scikit`. The **mAP** averages
# AP over classes. Take one class, seven images, one of them with an unknown label:

# %%
scores = torch.tensor([[0.9], [0.85], [0.8], [0.7], [0.6], [0.5], [0.4]])
y_worked = torch.tensor([[1], [0], [-1], [1], [1], [-1], [-1]], dtype=torch.int8)
markdown_table(["image", "score", "label"],
               [[i, s.item(), l.item()]
                for i, (s, l) in enumerate(zip(scores[:, 0], y_worked[:, 0]))])

# %% [markdown]
# Leaving out the unknown image, the positives sit at ranks 1, 3 and 4, with precisions
# $1/1$, $2/3$ and $3/4$, so $\AP = (1 + 2/3 + 3/4)/3 = 29/36 \approx 80.56\,\%$. Had the unknown
# image been counted as a negative (what "treat unknown as negative" does to evaluation), the
# ranks become 1, 4, 5 and $\AP = (1 + 2/4 + 3/5)/3 = 70\,\%$. The older PASCAL VOC-2007 protocol
# instead averages, over the 11 recall levels $t \in \{0, 0.1, \dots, 1\}$, the best precision
# reached at recall $\ge t$ {cite:p}`everingham2010pascal`: here $(4 \cdot 1 + 7 \cdot 3/4)/11
# = 9.25/11 \approx 84.09\,\%$, higher than the non-interpolated AP.

# %% tags=["nbval-check-output"]
ap = metrics.average_precision(scores, y_worked).item()
unknown_as_negative = torch.where(y_worked == 0, -1, y_worked).to(torch.int8)
ap_negative = metrics.average_precision(scores, unknown_as_negative).item()
ap_voc07 = metrics.average_precision(scores, y_worked, voc07=True).item()
assert abs(ap - 100 * 29 / 36) < 1e-9 and abs(ap_negative - 70) < 1e-9
assert abs(ap_voc07 - 100 * 9.25 / 11) < 1e-9
print(f"AP {ap:.2f} %   unknown as negative {ap_negative:.2f} %   "
      f"VOC-07 11-point {ap_voc07:.2f} %")

# %% [markdown]
# Interpolation usually raises AP, but not always: the 11 levels weigh every tenth of recall
# equally, so a last positive ranked very low drags the VOC-07 value down. Three positives
# among 100 images, at ranks 1, 2 and 100, give $\AP = (1 + 1 + 3/100)/3 \approx 67.67\,\%$ but a
# VOC-07 value of $(7 \cdot 1 + 4 \cdot 3/100)/11 \approx 64.73\,\%$ (seven recall levels up to
# $2/3$ are reached at precision 1, the last four only at precision $3/100$):

# %% tags=["nbval-check-output"]
scores_late = -torch.arange(100, dtype=torch.float32)[:, None]  # rank i has score -i
y_late = torch.full((100, 1), -1, dtype=torch.int8)
y_late[[0, 1, 99]] = 1
ap_late = metrics.average_precision(scores_late, y_late).item()
voc_late = metrics.average_precision(scores_late, y_late, voc07=True).item()
assert voc_late < ap_late
print(f"AP {ap_late:.2f} %   VOC-07 11-point {voc_late:.2f} %")

# %% [markdown]
# A class with no positive in the evaluation set has no AP — there is nothing to find. Some
# public code counts it as 0, which lowers mAP for reasons unrelated to the model; we leave it
# out and report how many classes were skipped:

# %% tags=["nbval-check-output"]
s3 = torch.tensor([[2.0, 0.1, 0.3], [1.0, 0.9, 0.2], [-1.0, 0.2, 0.1],
                   [0.5, -0.3, 0.0]])
y3 = torch.tensor([[1, -1, -1], [-1, 1, -1], [-1, -1, -1], [1, 1, -1]],
                  dtype=torch.int8)
per_class = metrics.average_precision(s3, y3)
m, skipped = metrics.mean_average_precision(s3, y3)
as_zero = torch.nan_to_num(per_class, nan=0.0).mean().item()
assert skipped == 1 and abs(m - per_class[:2].mean().item()) < 1e-9 and as_zero < m
print(f"per-class AP {[round(v, 2) for v in per_class.tolist()]}; mAP {m:.2f} % "
      f"(skipped {skipped}); counting the empty class as 0: {as_zero:.2f} %")

# %% [markdown]
# ### Threshold metrics
#
# A label is predicted when $\sig(x_c) \ge 0.5$ (or, in "top-$k$" tables, when it is among the
# $k$ highest scores of its image). Per class $c$ we count true positives $TP_c$, false
# positives $FP_c$ and false negatives $FN_c$ over the known labels, then
#
# $$\begin{aligned}
# CP &= \frac{1}{C}\sum_c \frac{TP_c}{TP_c + FP_c}, &
# OP &= \frac{\sum_c TP_c}{\sum_c (TP_c + FP_c)}, \\[6pt]
# CR &= \frac{1}{C^+}\sum_{c:\,P_c>0} \frac{TP_c}{TP_c + FN_c}, &
# OR &= \frac{\sum_c TP_c}{\sum_c (TP_c + FN_c)}, \\[6pt]
# CF1 &= \frac{2\,CP\,CR}{CP + CR}, &
# OF1 &= \frac{2\,OP\,OR}{OP + OR},
# \end{aligned}$$
#
# with $0/0 = 0$, and $C^+$ the number of classes that have positives. Note that $CF1$ is the F1
# of the *mean* precision and recall; the mean of the per-class F1 scores is a different number,
# which we report as `macro_F1`. ($OF1$ equals the micro-averaged F1; both keys exist.) Two
# classes, one precise and complete, one precise but nearly blind, show the gap:

# %% tags=["nbval-check-output"]
# class A: 9 true positives, 1 false positive, 0 false negatives;
# class B: 1 TP, 0 FP, 9 FN
y_ab = torch.full((20, 2), -1, dtype=torch.int8)
s_ab = torch.full((20, 2), -5.0)
y_ab[:9, 0], s_ab[:10, 0] = 1, 5.0
y_ab[10:20, 1], s_ab[10, 1] = 1, 5.0
r = metrics.evaluate(s_ab, y_ab)
assert abs(r["CP"] - 95) < 1e-9 and abs(r["CR"] - 55) < 1e-9
assert abs(r["CF1"] - 2 * 95 * 55 / 150) < 1e-9 and r["macro_F1"] < r["CF1"] - 10
keys = ("CP", "CR", "CF1", "macro_F1", "OP", "OR", "OF1", "micro_F1")
print("   ".join(f"{k} {r[k]:.2f}" for k in keys))

# %% [markdown]
# All metrics are in percent. `metrics.evaluate` returns all of them at once; the code:

# %%
show_source(metrics.evaluate)

# %% [markdown]
# ## The problem in numbers
#
# Now the experiment that motivates the book. One network, trained four ways:
#
# * **all labels** — binary cross-entropy (BCE) on complete labels;
# * **partial, unknown ignored** — only a `known` share of the labels (a parameter of the
#   chapter), BCE on the known ones;
# * **partial, unknown as negative** — the same labels, every unknown one taken as absent;
# * **noisy** — complete labels with each one flipped with probability `1 - clean`.
#
# The loss is the class-normalised BCE of {cite:t}`durand2019learning`,
#
# $$\ell(\x, \y) = -\frac{1}{C} \sum_{c=1}^{C} \Big[\ind{y_c = 1} \log \sig(x_c)
# + \ind{y_c = -1} \log\big(1 - \sig(x_c)\big)\Big],$$
#
# with unknown labels either dropped (the indicators are 0 for $y_c = 0$) or set to $-1$.
# Its gradient on a known label is $\partial \ell / \partial x_c = (\sig(x_c) - \ind{y_c=1})/C$ and
# zero on an unknown one, so with a share $p$ of labels known the total gradient shrinks by $p$
# while the learning rate stays the same — the "starved gradient" that Durand et al.'s
# partial-BCE corrects (chapter on their paper). Measured on random logits, with the
# chapter's training labels:

# %% tags=["nbval-check-output"]
# two independent streams: a mask drawn from the logits' own stream would correlate
# with them
logits0 = torch.randn(min(512, len(train_truth)), train_truth.shape[1],
                      generator=torch.Generator().manual_seed(derive_seed(0, 1)),
                      requires_grad=True)
y_batch = train_truth[:512]
grad_norms = {}
y_partial = labels.partial(y_batch, P["known"], seed=derive_seed(0, 2))
for name, y_b in (("all labels", y_batch), ("partial", y_partial)):
    logits0.grad = None
    losses.bce(logits0, y_b).backward()
    grad_norms[name] = logits0.grad.abs().sum().item()
ratio = grad_norms["partial"] / grad_norms["all labels"]
assert abs(ratio - P["known"]) < 0.03
print(f"total |gradient| with {P['known']:.0%} of the labels / with all labels "
      f"= {ratio:.3f}")

# %% [markdown]
# The four settings, each over several seeds (the seed sets the network's initialisation, the
# data order and the protocol's draw; the benchmark itself is the same). A comparison is only
# as fair as its weakest tuning: fewer labels mean a smaller gradient (above), so a learning
# rate chosen for all labels would handicap the partial settings. Each setting therefore gets
# its own learning rate, chosen among `lr_factors` times `lr` on a **validation split** —
# `n_val` training images held out, their labels passed through the same protocol (a user
# with a tenth of the labels validates on a tenth of them) — on seed 0, never on the test set
# (`mlrobust.experiments.tune_lr`):

# %%
settings = {
    "all labels": ("full", {}, "bce"),
    "partial, ignored": ("partial", {"known": P["known"]}, "bce"),
    "partial, negative": ("partial", {"known": P["known"]}, "bce_negative"),
    "noisy": ("noisy", {"clean": P["clean"]}, "bce"),
}
LR = {s: P["lr"] for s in settings}  # replaced by each setting's tuned rate below


def experiment(setting: str, seed: int) -> ExperimentConfig:
    protocol, args, loss = settings[setting]
    tag = setting.replace(", ", "-").replace(" ", "_")
    cfg = ExperimentConfig(name=f"{tag}-seed{seed}", output_dir=P["output_dir"])
    cfg.data = DataConfig(dataset=P["dataset"], root=P["data_root"],
                          image_size=P["image_size"], n_train=P["n_train"],
                          n_test=P["n_test"], protocol=protocol, protocol_args=args,
                          protocol_seed=seed)
    cfg.model = ModelConfig(backbone=P["backbone"], weights=P["weights"],
                            freeze_at=P["freeze_at"])
    cfg.loss.name = loss
    cfg.train = TrainConfig(epochs=P["epochs"], batch_size=P["batch_size"],
                            lr=LR[setting], schedule=P["schedule"],
                            lr_steps=[P["lr_step"]] if P["lr_step"] else [],
                            seed=seed, device=P["device"],
                            cache_frozen=P["cache_frozen"])
    return cfg


LR_FACTORS = floats(P["lr_factors"], "lr_factors")
tuning = {}
if len(LR_FACTORS) > 1:
    for setting in settings:
        tuning[setting] = tune_lr(experiment(setting, 0), LR_FACTORS, splits,
                                  n_val=P["n_val"], seed=derive_seed(0, 4))
        LR[setting] = tuning[setting].lr
    display(markdown_table(
        ["setting"] + [f"lr {P['lr'] * f:g}" for f in LR_FACTORS] + ["chosen"],
        [[s] + [f"{t.scores[f]:.1f}" for f in LR_FACTORS] + [f"{t.lr:g}"]
         for s, t in tuning.items()],
        caption=f"Validation mAP (%) per learning rate: {P['n_val']} held-out "
                f"training images of {P['dataset']}, labels through each setting's "
                "protocol, seed 0"))
    at_end = [s for s, t in tuning.items() if t.at_grid_end]
    print(f"chosen at an end of the grid: {', '.join(at_end) or 'none'}")

# %% [markdown]
# The runs are independent, so `run_many` runs them side by side, one single-threaded process
# per core; each gives the numbers it gives alone on one thread, so the tables below do not
# depend on how many cores computed them.

# %%
# quick runs are scratch (replaced on a re-run); full-scale runs resume
RERUN = dict(resume=scale == "full", overwrite=scale != "full")
SEEDS = range(P["n_seeds"])
test = splits.test


def logits_and_backbone(result) -> tuple[torch.Tensor, torch.nn.Module]:
    """What the analysis below needs of a model: its test logits and its backbone."""
    return result.trainer.predict(test), result.trainer.module.backbone


# seed 0's models of these settings are analysed below
ANALYSED = ("all labels", "partial, ignored")
outcomes = run_many({(setting, seed): Run(
    experiment(setting, seed), data=splits, **RERUN,
    collect=logits_and_backbone if seed == 0 and setting in ANALYSED else None)
    for seed in SEEDS for setting in settings})
test_metrics = {s: [outcomes[s, seed].metrics for seed in SEEDS] for s in settings}
results = {s: [m["mAP"] for m in test_metrics[s]] for s in settings}
kept = {s: outcomes[s, 0].collected for s in ANALYSED}  # (test logits, backbone)
train_seconds = sum(o.train_seconds for o in outcomes.values())
print(f"{len(outcomes)} runs, {train_seconds:.0f} s of training")

# %% [markdown]
# Test mAP, mean ± standard deviation over seeds ({numref}`fig-problem`):

# %%
table_rows = [[s, fmt_mean_std(v), " ".join(f"{x:.1f}" for x in v)]
              for s, v in results.items()]
header = (f"setting ({P['dataset']}, {P['image_size']} px, {len(splits.train)} "
          f"training images, {P['n_seeds']} seeds)")
display(markdown_table([header, "test mAP (%)", "per seed"], table_rows))

# %% mystnb={"figure": {"caption": "Test mAP of the same network trained with all labels, with a known share of the labels (unknown ignored or taken as negative) and with noisy labels. Bars: mean over seeds; whiskers: one standard deviation; dots: individual seeds. Dashed: the mAP of scoring each class by its frequency in the scene's context, without looking at any object (embedded benchmark only).", "name": "fig-problem"}} tags=["hide-input"]
fig, ax = plt.subplots(figsize=(7, 3.6))
errorbar_by_setting(ax, results, ylabel="test mAP (%)")
if hasattr(splits.test, "scenes"):
    context_map = metrics.mean_average_precision(
        context_only_logits(splits.train, splits.test), splits.test.labels)[0]
    ax.axhline(context_map, color="#b2182b", linestyle="--", linewidth=1)
    ax.text(len(results) - 0.55, context_map, "context only ", color="#b2182b",
            va="bottom", ha="right", fontsize=9)
ax.set_xlabel(f"training labels (known share {P['known']}, "
              f"clean share {P['clean']})")
fig.tight_layout()

# %% [markdown]
# What the numbers say, checked on the measurements (each difference is paired by seed — same
# initialisation, data order and protocol draw — and a claim fails the build if it stops
# holding):
#
# * Hiding most of the labels costs a large share of the mAP (more than 5 points), whether the
#   unknown labels are ignored or taken as negative, and in every seed. Part of the loss when
#   they are ignored is the starved gradient measured above, not only the missing
#   information: the chapter on {cite:t}`durand2019learning` separates the two.
# * Flipping labels costs clearly more than the seed-to-seed spread.
#
# The settings do not hold the same number of correct labels (`partial` keeps a tenth of them,
# `noisy` most of them), so this is not a verdict on which kind of damage is worse; comparing
# them at a fixed labelling budget is the first experiment of the Durand et al. chapter.

# %%
full_mean = mean_std(results["all labels"])[0]
effects = {s: paired(results["all labels"], v)
           for s, v in results.items() if s != "all labels"}
for s in ("partial, ignored", "partial, negative"):
    claims.ours(f"{s}: the mAP drops by more than 5 points, beyond the seed spread",
                effects[s].detected(-1) and effects[s].mean < -5, measured=effects[s])
claims.ours("noisy: the mAP drops by more than the seed spread",
            effects["noisy"].detected(-1), measured=effects["noisy"])
markdown_table(["setting", "Δ test mAP vs all labels, paired by seed (mean ± sd)"],
               [[s, str(e)] for s, e in effects.items()])

# %% [markdown]
# ### The regime: does the benchmark behave like the papers' data?
#
# The papers fine-tune a network pretrained on ImageNet. Such a network recognises objects
# before it sees a single label of the target dataset, so with all labels it is far above what
# the scene alone predicts, and with a tenth of the labels it keeps most of its mAP. A test bed
# on which the network learns mostly the scene's *context* would make methods look better or
# worse for reasons that are not the papers'. That is why the quick scale starts from the
# backbone the package ships pretrained on ObjectScenes — one large object per image, 30
# classes, scenes never used by a chapter (`mlrobust.pretrained`) — and fine-tunes it, as the
# papers fine-tune ImageNet weights. Its stem and first stage stay fixed (`freeze_at = 2`,
# Detectron2's default when fine-tuning a pretrained backbone): they compute edges and colour
# blobs that any object needs, and leaving them out of the backward pass makes every training
# step cheaper. As they never change, their output for each training image and its mirror
# image is computed once and shared by every run of the chapter (`cache_frozen`,
# `mlrobust.engine.frozen_cache`): the same training, with each step running only the layers
# that learn. Five measurements place the quick scale:
#
# * the **context-only predictor** scores each class by $P(\text{class} \mid \text{context})$,
#   estimated from the training labels, without looking at any object: what label correlation
#   alone is worth, the bar a network must clear to show it recognises objects;
# * **random scores**, the floor;
# * **mAP by object size**: the positives outside a size bin are treated as unknown (the
#   metric's masking at work), negatives are kept;
# * the **operating point**: the share of test positives called present at logit 0
#   (overall recall OR at the threshold 0.5). It depends on how the labels were hidden as much
#   as on the network, so it is measured twice with a tenth of the labels: under the uniform
#   mask the chapters use, and under a mask that keeps one known positive in every image
#   (`min_known_positives=1`), the reading of Durand et al.'s protocol that their own
#   numbers point to (the end of this section says why);
# * **half the labels flipped** (`clean = 0.5`, a pure-noise control): the network should
#   collapse towards random.
#
# The table sets each against a target that an ImageNet network fine-tuned on COCO meets, and
# shows that network's numbers as {cite:t}`durand2019learning` report them (ResNet-101 at
# 448 px, their supplementary Table 7: all labels, and 10 % of them).

# %% tags=["nbval-check-output"]
def flipped_half(seed: int) -> ExperimentConfig:
    cfg = experiment("noisy", seed)
    cfg.name, cfg.data.protocol_args = f"flipped_half-seed{seed}", {"clean": 0.5}
    return cfg


ENRICHED = {"known": P["known"], "min_known_positives": 1}


def one_positive_kept(seed: int) -> ExperimentConfig:
    """The partial setting, at its tuned rate, with one known positive per image."""
    cfg = experiment("partial, ignored", seed)
    cfg.name, cfg.data.protocol_args = f"partial-one_positive-seed{seed}", ENRICHED
    return cfg


controls = run_many({(make, seed): Run(make(seed), data=splits, **RERUN)
                     for make in (flipped_half, one_positive_kept) for seed in SEEDS})
flipped = [controls[flipped_half, seed].metrics["mAP"] for seed in SEEDS]
enriched = [controls[one_positive_kept, seed].metrics for seed in SEEDS]
random_scores = torch.randn(test.labels.shape,
                            generator=torch.Generator().manual_seed(derive_seed(0, 3)))
random_map = metrics.mean_average_precision(random_scores, test.labels)[0]
operating = {s: metrics.evaluate(logits, test.labels)["OR"]
             for s, (logits, _) in kept.items()}
partial_mean = mean_std(results["partial, ignored"])[0]
share = partial_mean / full_mean
recall_all, recall_partial = operating["all labels"], operating["partial, ignored"]
collapse = max(flipped) - random_map
few = f"{P['known']:.0%} of the labels"
# quantity, measured, target, met, Durand et al. on MS COCO (ResNet-101, 448 px;
# their supplementary Table 7: "clean" and "partial 10%")
calibration = [
    ["all labels, mAP (%)", fmt_mean_std(results["all labels"]), "≥ 65",
     full_mean >= 65, "79.2"],
    [f"{few} (unknown ignored), mAP (%)", fmt_mean_std(results["partial, ignored"]),
     "", None, "72.2"],
    ["  as a share of the all-labels mAP", f"{share:.1%}", "≥ 80 %", share >= 0.8,
     "91 %"],
    ["all labels: test positives recalled at logit 0 (seed 0)", f"{recall_all:.0f} %",
     "", None, "72 %"],
    [f"{few}, uniform mask: test positives recalled at logit 0 (seed 0)",
     f"{recall_partial:.0f} %", "", None, ""],
    [f"{few}, one known positive per image: recalled at logit 0",
     fmt_mean_std([r["OR"] for r in enriched]) + " %", "≥ 50 %",
     min(r["OR"] for r in enriched) >= 50, "80 %"],
    ["half the labels flipped, mAP (%)", fmt_mean_std(flipped),
     "< random + 5", collapse < 5, ""],
    ["random scores, mAP (%)", f"{random_map:.1f}", "", None, ""],
]
if hasattr(test, "scenes"):
    margin = min(results["all labels"]) - context_map
    calibration[1:1] = [
        ["context-only predictor, mAP (%)", f"{context_map:.1f}", "", None, ""],
        ["  all labels minus context-only (worst seed)", f"{margin:+.1f}", "≥ 25",
         margin >= 25, ""]]
    claims.ours("with all labels the network is more than 25 points above the "
                "context-only predictor (every seed)", margin > 25,
                measured=f"{margin:+.1f} (worst seed)")
    margin10 = min(results["partial, ignored"]) - context_map
    claims.ours(f"with {few} it stays above the context-only predictor (every seed)",
                margin10 > 0, measured=f"{margin10:+.1f} (worst seed)")
claims.ours("with all labels the mean mAP reaches 65", full_mean >= 65,
            measured=f"{full_mean:.1f}")
# the share's spread over seeds sets how near 80 % a machine's last bits can tip it
share_verdict = Verdict(share >= 0.8, share - 0.8,
                        mean_std(results["partial, ignored"])[1] / full_mean)
claims.ours(f"with {few} (tuned learning rate) the mAP keeps at least 80 % of the "
            "all-labels mAP", share_verdict, measured=f"{share:.1%}")
claims.ours(f"with {few} the model recalls fewer test positives at logit 0 than the "
            "papers' models (below 50 %)", recall_partial < 50,
            measured=f"{recall_partial:.0f} %")
claims.ours("with half the labels flipped it collapses to within 5 points of random "
            "scores (every seed)", collapse < 5,
            measured=f"{collapse:+.1f} above random (worst seed)")
claims.ours("the all-labels model stays well below 100 mAP (room for methods)",
            full_mean < 90, measured=f"{full_mean:.1f}")
verdict = {True: "yes", False: "**no**", None: ""}
markdown_table(["quantity", "measured", "target", "met", "Durand et al., MS COCO"],
               [[q, m, t, verdict[ok], d] for q, m, t, ok, d in calibration],
               caption=f"Calibration: {P['dataset']}, {P['image_size']} px, "
                       f"{len(splits.train)} training and {len(test)} test images, "
                       f"{P['n_seeds']} seeds (mean ± sd), each setting at its tuned "
                       "learning rate; the targets place the quick scale in the "
                       "papers' regime")

# %% mystnb={"figure": {"caption": "mAP of the all-labels model (seed 0) on the test positives of each object-size bin (radius of the largest object of the class, as a fraction of the image side); positives outside the bin are treated as unknown, negatives are kept.", "name": "fig-size"}} tags=["hide-input"]
if hasattr(test, "scenes"):
    test_logits = kept["all labels"][0]
    # (N, C) radius of the largest object of each class
    largest = scene_class_radius(test.scenes)
    edges = [0.10, 0.13, 0.17, 0.23, 0.30]  # log-spaced over the benchmark's radii
    map_by_size = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (largest >= lo) & (largest < hi)
        y_bin = torch.where((test.labels == 1) & ~in_bin, 0, test.labels).to(torch.int8)
        map_by_size.append(metrics.mean_average_precision(test_logits, y_bin)[0])
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar(range(len(map_by_size)), map_by_size, color="#2166ac", alpha=0.7)
    ax.set_xticks(range(len(map_by_size)),
                  [f"{a:.2f}-{b:.2f}" for a, b in zip(edges[:-1], edges[1:])])
    ax.set_xlabel("object radius (fraction of image side)")
    ax.set_ylabel("mAP of the bin's positives (%)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    claims.ours("large objects are ranked far better than small ones (seed 0, by more "
                "than 5 points)", map_by_size[-1] > map_by_size[0] + 5,
                measured=" / ".join(f"{m:.1f}" for m in map_by_size))

# %% [markdown]
# **Where the operating point comes from.** The target the quick scale misses is the recall
# at logit 0 with a tenth of the labels. Is the representation the limit, or the number of
# labels? An oracle separates the two: freeze the backbone of the all-labels network (seed 0),
# which has been trained on every training label, and train only a linear head on its
# features, once with all labels and once with the tenth, each at a learning rate tuned on the
# validation split as above. The representation is then as good as this network's training
# makes it (better than fair: it has seen the labels the head is denied); what remains is
# what a classifier does with few labels.

# %%
if scale != "full":  # at full scale the stored feature maps would not fit in memory
    oracle, on = kept["all labels"][1], resolve_device(P["device"])
    oracle_features = DataSplits(train=extract_features(oracle, splits.train, on),
                                 test=extract_features(oracle, test, on))

    def on_oracle_features(setting: str) -> ExperimentConfig:
        """A linear head for ``setting`` (seed 0) on the oracle features."""
        cfg = experiment(setting, 0)
        cfg.name, cfg.data.augment = f"oracle_features-{cfg.name}", "none"
        cfg.model, cfg.train.lr = ModelConfig(backbone="features"), P["lr"]
        if len(LR_FACTORS) > 1:
            cfg.train.lr = tune_lr(cfg, LR_FACTORS, oracle_features, n_val=P["n_val"],
                                   seed=derive_seed(0, 4)).lr
        return cfg

    oracle_recall = {}
    for setting in ("all labels", "partial, ignored"):
        head = run_experiment(on_oracle_features(setting), data=oracle_features,
                              write=False)
        predicted = head.trainer.predict(oracle_features.test)
        oracle_recall[setting] = metrics.evaluate(predicted, test.labels)["OR"]
    display(markdown_table(
        ["model (seed 0)", "all labels", few],
        [["fine-tuned (the table above)", f"{recall_all:.0f} %",
          f"{recall_partial:.0f} %"],
         ["linear head on the oracle representation",
          f"{oracle_recall['all labels']:.0f} %",
          f"{oracle_recall['partial, ignored']:.0f} %"]],
        caption=f"Test positives recalled at logit 0: {P['dataset']}, "
                f"{P['image_size']} px, seed 0, learning rates tuned on the validation "
                "split; the papers' models: 72 % and 80 % (Durand et al., COCO)"))
    claims.ours(f"even on the oracle representation, a head trained with {few} recalls "
                "fewer than half of the test positives at logit 0",
                oracle_recall["partial, ignored"] < 50,
                measured=f"{oracle_recall['partial, ignored']:.0f} % (all labels: "
                         f"{oracle_recall['all labels']:.0f} %)")
else:
    print("oracle representation: run at the quick scale only")

# %% [markdown]
# With every label the head on the oracle features calls about as many test positives
# present as the fine-tuned network; with a tenth of them it still calls fewer than half. A
# better backbone alone would not close the gap: a classifier that sees a tenth of the
# positives of each class scores most positives below one half.
#
# **The protocol can.** The papers' 10 %-label models trade precision for recall against
# their all-labels models (Durand et al.'s supplementary Table 7, COCO: overall recall 79.7 %
# against 72.2 %, precision 62.6 % against 84.3 %). A uniform mask cannot do that: the known
# labels keep the truth's share of positives, so the model learns the truth's prior. A
# protocol that makes sure every image keeps at least one known positive
# (`min_known_positives=1`) enriches the known labels in positives. The paper only says it
# drops labels "randomly per image"; IMCL's released code builds its partial attribute labels
# in a positive-enriched way too. The partial setting again, at its tuned learning rate, with
# that protocol (the runs behind the calibration table's last recall row):

# %%
# the runs were trained with the calibration table above
enriched_y = observed_labels(train_truth, one_positive_kept(0).data)  # seed 0's labels
uniform_y = observed_labels(train_truth, experiment("partial, ignored", 0).data)


def metric(runs: list[dict], name: str) -> list[float]:
    return [r[name] for r in runs]


def protocol_row(name: str, y_obs: torch.Tensor, runs: list[dict]) -> list[str]:
    c = labels.summary(y_obs)
    shares = [f"{100 * c['known_share']:.1f} %",
              f"{100 * c['positive_share'] / c['known_share']:.0f} %"]
    measured = [fmt_mean_std(metric(runs, m)) for m in ("mAP", "OR", "OP")]
    return [name, *shares, *measured]


display(markdown_table(
    ["training labels", "known", "positives among known", "test mAP (%)",
     "recall at logit 0 (%)", "precision at logit 0 (%)"],
    [protocol_row("all labels", train_truth, test_metrics["all labels"]),
     protocol_row(f"{few}, uniform mask", uniform_y, test_metrics["partial, ignored"]),
     protocol_row(f"{few}, one known positive kept per image", enriched_y, enriched)],
    caption=f"The operating point against the protocol: {P['dataset']}, "
            f"{P['image_size']} px, {P['n_seeds']} seeds (mean ± sd; label shares of "
            "seed 0's draw); each partial run at the partial setting's tuned rate"))
uniform, kept_one = test_metrics["partial, ignored"], enriched
claims.ours("keeping one known positive per image lifts the recall at logit 0 above "
            "50 % (every seed)", min(metric(kept_one, "OR")) > 50,
            measured=f"{fmt_mean_std(metric(kept_one, 'OR'))} % (uniform mask: "
                     f"{fmt_mean_std(metric(uniform, 'OR'))} %)")
precision_cost = paired(metric(uniform, "OP"), metric(kept_one, "OP"))
claims.ours("keeping one known positive per image costs precision at logit 0 against "
            "the uniform mask, beyond the seed spread", precision_cost.detected(-1),
            measured=precision_cost);

# %% [markdown]
# Enriched in positives, the known labels move the model's operating point past the papers':
# it now calls most test positives present, at a lower precision, the direction of
# Durand et al.'s Table 7. Part of its mAP gain is the larger number of known labels. Which
# protocol the papers used is not stated. The chapters keep the uniform mask — the
# convention of the later papers (SST, SARB, Wang et al.) and the literal reading of
# Durand et al. — so that every method is compared on the same labels, and say so where the
# operating point matters; `min_known_positives` is there for a reader who wants the other
# reading (Exercise 5).

# %% [markdown]
# **The regime, plainly.** Starting from the shipped backbone, the quick-scale network
# recognises objects: with all labels it clears the 65 mAP target and the context prior by
# more than 25 points; with a tenth of the labels it stays far above the prior and keeps about
# four fifths of its mAP — at the edge of the 80 % target, where Durand et al.'s network on
# COCO keeps nine tenths; and pure label noise destroys it. Two differences from COCO with
# ResNet-101 remain. Its mAP is lower (the papers report 75-80), and with a tenth of the
# labels it recalls far fewer test positives at logit 0 than the papers' models, which
# over-predict with partial labels: its scores lean towards "absent", and the oracle above
# says a better backbone would not lift it into their range. Conclusions that depend on the
# operating point (thresholded metrics, relabeling by score) are flagged as such in the
# chapters. That last difference is the protocol's, not the network's: with one known positive
# kept per image, the same network recalls more than half of the test positives, as the
# papers' models do.

# %% [markdown]
# Our observations in this chapter, as measured in this run:

# %% tags=["nbval-check-output"]
claims.table("ours", caption=f"Chapter 1 observations: {P['dataset']}, "
                             f"{P['image_size']} px, {P['n_seeds']} seeds")

# %% [markdown]
# ## Summary
#
# * Labels are `int8` vectors over $\{-1, 0, 1\}$; protocols produce partial, dense, noisy,
#   single-positive, symmetric-noise, frequency-corrupted and semi-supervised labels from the
#   truth, each as its paper defines it.
# * The embedded benchmark is a correlated, cluttered, multi-scale multi-label dataset with
#   known truth, generated on the fly at any resolution.
# * AP here is scikit-learn's non-interpolated AP over known labels; classes without positives
#   are skipped; CF1 is the F1 of mean precision and recall. Other definitions (VOC-07
#   interpolation, unknowns as negatives, empty classes as 0) move the numbers by several points.
# * With the same training recipe, hiding most labels or flipping some costs measurable mAP,
#   and ignoring unknown labels starves the gradient in proportion to the known share.
# * The quick scale fine-tunes a backbone pretrained on single objects (its stem and first
#   stage fixed), the package's stand-in for ImageNet weights, so the network recognises objects rather than scene context: the
#   calibration table says how close this comes to the papers' regime, and where it falls short.
#
# The next chapters take on each situation with the method of one paper.
#
# ## Exercises
#
# 1. Rerun the experiment with `known = 0.3` and `known = 0.5`. How does the gap between
#    "ignored" and "negative" change, and why? (Hint: how many of the unknown labels are truly
#    negative?)
# 2. The noisy protocol flips negatives as well as positives. With 24 classes and about 2.5
#    positives per image, how many wrong positives does `clean = 0.8` add per image? Compare with
#    `symmetric_noise(eta=0.2)`, which only moves positives.
# 3. Train from random weights (`weights = "random"`): how far above the context-only predictor
#    does the all-labels model get now, and what happens with 10 % of the labels?
# 4. Compute the mAP of the baseline with `voc07=True`. Is the gap to the non-interpolated mAP
#    the same for every class?
# 5. Run the four settings with `min_known_positives=1` added to the partial protocols'
#    arguments (the `settings` cell). Which of the settings' gaps to "all labels" change, and
#    does "partial, negative" gain or lose from the enriched mask?

# %% tags=["remove-cell"]
print(f"chapter time: {time.perf_counter() - chapter_start:.0f} s")
