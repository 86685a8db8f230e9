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
# (ch03)=
# # Noisy labels: asymmetric loss and gold loss correction with single-label regulators
#
# When labels are wrong rather than missing, a network trained long enough learns the mistakes
# too. {cite:t}`pene2021multilabel` combine two ideas against it:
#
# * the **asymmetric loss** (ASL) of {cite:t}`ridnik2021asymmetric`, the multi-label loss their
#   baseline is trained with: positives and negatives are weighted differently, and easy
#   negatives are discarded by a probability margin;
# * **forward loss correction with a trusted set**, the gold loss correction (GLC) of
#   {cite:t}`hendrycks2018using`: a classifier trained on the noisy labels, applied to a small
#   set of images whose labels are trusted, estimates how labels get corrupted — a matrix
#   $\Chat$ — and a final classifier is trained through $\Chat$, so that it learns the clean
#   labels while fitting the noisy ones.
#
# Their contribution, **GALC-SLR**, adapts the corruption estimate to multi-label images with
# *single-label regulators*: a pool of trusted images showing a single class tells how the
# classifier responds to each class alone, which is subtracted from multi-label predictions.
# The paper reports that GALC-SLR keeps its mAP under heavy symmetric noise where ASL collapses
# (Table 1, Fig. 5), that its $\Chat$ is closer to the truth than GLC's (Fig. 4), and that it is
# insensitive to the gold fraction and the single-label pool (Fig. 6).
#
# This chapter derives both losses, checks their gradients, and reruns every experiment. The
# embedded benchmark knows the true corruption matrix, so we can measure what the paper could
# only show as a picture: **how far each estimate is from the truth** — and, it turns out,
# *why* GALC-SLR behaves as it does.
#
# **Scales.** The paper fine-tunes an ImageNet-21k TResNet-M at 224 px on COCO for 80 epochs
# with the ASL authors' optimiser; `scale = "full"` is that setting. The quick scale trains the
# classification head on frozen features of the backbone the package ships pretrained on
# ObjectScenes, the benchmark's ImageNet (as in the {ref}`Durand et al. chapter <ch02>`),
# except for the memorisation experiment, which fine-tunes end to end, since a frozen backbone
# cannot memorise.
#
# **The regime.** Chapter 1's calibration table places this test bed: the network recognises
# objects far above what the scene context alone predicts, but its mAP is lower than a
# TResNet-M's on COCO, and with a frozen backbone label noise costs ASL far less than the
# paper's fine-tuned network — which changes what "more robust than ASL" can mean here.

# %% tags=["parameters", "hide-input"]
# Parameters (papermill). None means "the value for the chosen scale", read from
# params/ch03_pene.yaml: "quick" runs on a CPU (its time is in the README), "full" is
# the paper's setting for a GPU (TResNet-M at 224 px, 80 epochs).
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
n_val = None
frozen = None
epochs = None
batch_size = None
lr = None
schedule = None
n_seeds = None
noise_levels = None
ablation_noise = None
gold_fraction = None
small_gold_fraction = None
single_caps = None
memo_n_train = None
memo_n_test = None
memo_epochs = None
output_dir = None

# %% tags=["hide-input"]
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display

from mlrobust import labels, losses, metrics
from mlrobust.config import (DataConfig, ExperimentConfig, LossConfig,
                             ModelConfig, TrainConfig)
from mlrobust.data import DataSplits, Subset, extract_features, hold_out
from mlrobust.engine import resolve_device
from mlrobust.experiments import (Run, build_data, frozen_backbone, run_experiment,
                                  run_many)
from mlrobust.parallel import map_in_workers
from mlrobust.seeding import derive_seed
from mlrobust.methods.pene import (GoldCorrectedMethod,
                                   corrected_probabilities, estimate_corruption,
                                   galc_slr_corruption, gold_correction,
                                   pene_split)
from mlrobust.claims import Claims, paired
from mlrobust.notebook import (claims_checked, floats, fmt_mean_std, ints,
                               markdown_table, mean_std, resolve_parameters,
                               show_source)

P = resolve_parameters("ch03_pene", scale, dict(
    dataset=dataset, data_root=data_root, device=device, backbone=backbone,
    weights=weights, freeze_at=freeze_at, cache_frozen=cache_frozen,
    image_size=image_size, n_train=n_train, n_test=n_test,
    n_val=n_val, frozen=frozen, epochs=epochs, batch_size=batch_size, lr=lr,
    schedule=schedule, n_seeds=n_seeds, noise_levels=noise_levels,
    ablation_noise=ablation_noise,
    gold_fraction=gold_fraction, small_gold_fraction=small_gold_fraction,
    single_caps=single_caps, memo_n_train=memo_n_train, memo_n_test=memo_n_test,
    memo_epochs=memo_epochs, output_dir=output_dir))
NOISE = floats(P["noise_levels"], "noise_levels")
CAPS = ints(P["single_caps"], "single_caps")
ETA = float(P["ablation_noise"])
SEEDS = range(P["n_seeds"])
FULL = scale == "full"
chapter_start = time.perf_counter()
# measured claims fail the build at the quick scale with its preset parameters;
# elsewhere they are reported
claims = Claims(strict=claims_checked("ch03_pene", scale, P))
images = build_data(DataConfig(dataset=P["dataset"], root=P["data_root"],
                               image_size=P["image_size"], n_train=P["n_train"],
                               n_test=P["n_test"]))
markdown_table(["parameter", "value"], [[k, repr(v)] for k, v in P.items()])

# %% [markdown]
# ## The asymmetric loss
#
# With $p = \sig(x)$ the predicted probability of a class, the ASL of a label is
# (Ridnik et al.; Pene et al. §3.3)
#
# ```{math}
# :label: eq-asl
# L_+ &= -(1 - p)^{\gamma_+} \log p, \\[4pt]
# L_- &= -p_m^{\gamma_-} \log(1 - p_m), \qquad p_m = \max(p - m, 0),
# ```
#
# for a present ($L_+$) and an absent ($L_-$) label, summed over images and classes. Two
# asymmetries. **Focusing**: the factor $p_m^{\gamma_-}$ with $\gamma_- = 4 > \gamma_+ = 0$
# shrinks the loss of negatives the model already gets right, so the many easy negatives of a
# multi-label image stop drowning the few positives. **The probability margin** $m = 0.05$:
# a negative with $p \le m$ has $p_m = 0$ and no loss at all — it is discarded — and the
# shift also lowers the weight of every other negative. The shift applies to negatives only,
# and the focusing weight is computed from the shifted probability. In the authors' training,
# the weights are treated as constants (no gradient flows through them); we follow that by
# default (`focal_grad=False`). The package's implementation follows; its reduction is a sum,
# as the authors' (`help(losses.asl)` documents every option):

# %%
show_source(losses.asl)

# %% [markdown]
# ### Gradient checks
#
# With constant weights and $p > m$, differentiating Eq. {eq}`eq-asl` through $p = \sig(x)$ gives
#
# $$\frac{\partial L_+}{\partial x} = -(1-p)^{\gamma_+} (1 - p), \qquad
# \frac{\partial L_-}{\partial x} = p_m^{\gamma_-} \, \frac{p (1 - p)}{1 - p + m},$$
#
# and $\partial L_- / \partial x = 0$ for $p \le m$. We compare the implementation with this
# formula and with finite differences (with and without constant weights), and check the
# gradient of the corrected loss $\mathrm{ASL}(\Chat^\top \sig(x), \tilde y)$ used below.

# %% tags=["nbval-check-output"]
gen = torch.Generator().manual_seed(0)
x = torch.randn(8, 6, dtype=torch.float64, generator=gen) * 3
x.requires_grad_(True)
y = torch.where(torch.rand(8, 6, generator=gen) < 0.3, 1, -1).to(torch.int8)
m, gamma_neg = 0.05, 4.0
p = torch.sigmoid(x.detach())
p_m = (p - m).clamp(min=0)
formula = torch.where(y == 1, -(1 - p), p_m**gamma_neg * p * (1 - p) / (1 - p + m))
autograd = torch.autograd.grad(losses.asl(x, y), x)[0]
assert (autograd - formula).abs().max() < 1e-12
assert torch.autograd.gradcheck(lambda z: losses.asl(z, y, focal_grad=True), (x,))
# unit columns
c_example = torch.softmax(torch.randn(6, 6, dtype=torch.float64, generator=gen), 0)
assert torch.autograd.gradcheck(
    lambda z: losses.asl(corrected_probabilities(z, c_example), y, from_logits=False,
                         focal_grad=True), (x,))
print("ASL: autograd = formula (constant weights); gradcheck passes with gradient "
      "through the weights and for the corrected loss")

# %% [markdown]
# ## Forward correction and why multi-label needs regulators
#
# Suppose the observed labels come from the clean ones through a corruption: a present label
# $i$ is reported as label $j$ with probability $C_{ij}$. Then the probability that noisy label
# $j$ is present is $\tilde p_j = \sum_i C_{ij} p_i$, i.e. $\tilde{\p} = C^\top \p$. If a network
# $g$ is trained so that $C^\top \sig(g(x))$ fits the **noisy** labels, $\sig(g(x))$ itself
# estimates the **clean** ones: the loss is corrected *forward*, through the noise. GLC
# estimates $C$ with a *silver* classifier $f$ trained on the noisy data: on trusted images
# whose label $i$ is present, $f$'s mean prediction is row $i$,
#
# $$\Chat^{\text{GLC}}_{i\bullet} = \frac{1}{|G_i|} \sum_{x \in G_i} \sig(f(x)).$$
#
# In a single-label world each trusted image has one true class, and the row is exactly how
# that class gets reported. In a multi-label image, $f$ also (correctly) predicts the image's
# *other* labels, so row $i$ mixes the noise with label co-occurrence: on the embedded
# benchmark, where a context favours six classes, the rows fill with context partners that
# have nothing to do with noise. GALC-SLR's regulators remove that mixing: $\mathrm{Reg}_{k\bullet}$
# is $f$'s mean **softmax** prediction on trusted single-label images of class $k$, i.e. how $f$
# answers when only $k$ is there. For each image carrying $k$, Algorithm 1 subtracts the
# regulators of the image's other labels from $f$'s sigmoid prediction, adds back $n - 1$
# times $k$'s own regulator ($n$ the image's labels) "to rebalance towards $k$", averages, and
# squashes the result with a sigmoid:
#
# $$\Chat_{k\bullet} = \sig\Big(\operatorname*{mean}_{i:\, \tilde y_{ik} = 1}
#   \Big[\sig(f(x_i)) - \sum_{p \ne k,\, \tilde y_{ip} = 1} \mathrm{Reg}_{p\bullet}
#   + (n_i - 1)\, \mathrm{Reg}_{k\bullet}\Big]\Big).$$
#
# Algorithm 1 averages over the *untrusted* images, grouped by their noisy labels (§3.2's prose
# mentions the trusted set; we follow the algorithm). The package computes it with two matrix
# products instead of the algorithm's three nested loops (a test compares the two):

# %%
show_source(galc_slr_corruption)

# %% [markdown]
# The final classifier $g$ starts from fresh weights and is trained with ASL on the gold images
# and ASL on $\Chat^\top \sig(g(x))$ for the silver ones. Pene et al. do not say what happens
# when $\Chat^\top \sig(g(x))$ leaves $[0, 1]$ — which it can, since the rows of $\Chat$ need
# not sum to one and the sigmoid squashing puts every entry above 0.5 for a non-negative raw
# value. The loss clamps probabilities into $[\epsilon, 1 - \epsilon]$, where the gradient is
# zero; we measure how often that happens.

# %% [markdown]
# ## Data and noise (§4.1)
#
# Images with fewer than two labels are removed from the multi-label training and test sets;
# those with exactly one label form the single-label pool $G_S$. A gold fraction of the
# remaining training images is trusted ($G$); the rest, the silver set $S$, receives
# **symmetric noise**: each positive label moves, with probability $\eta$, to a class not
# already in the image, so that $C_{ii} = 1 - \eta$ and $C_{ij} = \eta / (K - 1)$.

# %%
weights_file = P["weights"]
# the shipped backbone pretrained on ObjectScenes, the stand-in for ImageNet
if P["frozen"]:
    net, weights_file = frozen_backbone(P["backbone"], P["weights"])
    dev = resolve_device(P["device"])
    train = extract_features(net, images.train, dev)
    test_all = extract_features(net, images.test, dev)
else:
    train, test_all = images.train, images.test
# clean training images set aside, only to choose each class's threshold (see below)
train, val = hold_out(train, P["n_val"], seed=derive_seed(0, 7))
multi_test = torch.nonzero((test_all.labels == 1).sum(1) >= 2)[:, 0]
test = Subset(test_all, multi_test)
split0 = pene_split(train.labels, P["gold_fraction"], seed=0)
noisy0, c_true0 = labels.symmetric_noise(train.labels[split0.silver], ETA, seed=0)
markdown_table(["set", "images"], [["single-label pool G_S", len(split0.single)],
                                   ["gold G", len(split0.gold)],
                                   ["silver S", len(split0.silver)],
                                   ["validation (thresholds only)", len(val)],
                                   ["test (two labels or more)", len(test)]])

# %%
moved = labels.compare(noisy0, train.labels[split0.silver])
print(f"with eta = {ETA}: {100 * moved['wrong_share']:.1f} % of the silver labels are "
      f"wrong, {moved['false_positives_per_image']:.2f} wrong positives per image; "
      f"C_true diagonal {c_true0[0, 0]:.2f}, off-diagonal {c_true0[0, 1]:.4f}")

# %% [markdown]
# ## ASL against GALC-SLR across noise levels (Table 1, Fig. 5)
#
# For each noise level and seed: the **ASL** baseline trained on all the training images (gold
# with clean labels, silver with noisy ones, without knowing which is which — the paper's fair
# comparison); the three steps of **GALC-SLR**; and **GLC**'s estimate in the same pipeline
# (one silver classifier serves both). At the ablation noise level we also train $g$ with the
# **true** $C$ (the paper's upper bound), with a column-normalised $\Chat$ (our variant, which
# keeps every corrected probability in $[0, 1]$), and a **control** that trains on the same
# batches with the silver labels hidden — the gold labels only.

# %%
def config(name: str, seed: int, *, finetune: bool = False,
           epochs: int | None = None, eval_every: int = 0,
           schedule: str | None = None) -> ExperimentConfig:
    on_features = P["frozen"] and not finetune
    cfg = ExperimentConfig(name=f"{name}-seed{seed}", output_dir=P["output_dir"])
    cfg.data = DataConfig(dataset=P["dataset"], root=P["data_root"],
                          image_size=P["image_size"], n_train=P["n_train"],
                          n_test=P["n_test"], augment="none" if on_features else "flip")
    cfg.model = ModelConfig(backbone="features" if on_features else P["backbone"],
                            weights=None if on_features else weights_file,
                            freeze_at=0 if on_features else P["freeze_at"], head="gap")
    # gamma_pos 0, gamma_neg 4, clip 0.05, constant weights, sum
    cfg.loss = LossConfig("asl")
    cfg.train = TrainConfig(epochs=epochs or P["epochs"], batch_size=P["batch_size"],
                            optimizer="adam", lr=P["lr"], weight_decay=1e-4,
                            schedule=schedule or P["schedule"], seed=seed,
                            device=P["device"], eval_every=eval_every,
                            cache_frozen=P["cache_frozen"] and not on_features)
    return cfg


def trained(cfg: ExperimentConfig, dataset, test_set, *, best_cuts: bool = True,
            **kwargs):
    """A run on ``dataset``, evaluated on ``test_set``; with ``best_cuts`` (and the
    chapter's test set) also CF1* and OF1*, at per-class thresholds chosen on the
    validation split."""
    splits = DataSplits(train=dataset, test=test_set, val=kwargs.pop("val", None))
    run = run_experiment(cfg, data=splits, train_labels=dataset.labels, write=FULL,
                         resume=FULL, **kwargs)
    if best_cuts and test_set is test:
        cuts = metrics.f1_thresholds(run.trainer.predict(val), val.labels)
        tuned = metrics.evaluate(run.trainer.predict(test), test.labels, threshold=cuts)
        run.metrics.update({f"{k}*": tuned[k] for k in ("CF1", "OF1")})
    return run


def galc(cfg: ExperimentConfig, split, noisy, **options):
    """Pene et al.'s three steps: the silver classifier f and Ĉ (steps 1 and 2, by the
    package's gold_correction; options: estimator, c_true, correction, silver), then
    the gold classifier g trained from fresh weights with the method of step 3."""
    out = gold_correction(lambda silver_set: trained(cfg, silver_set, test,
                                                     best_cuts=False).trainer,
                          train, split, noisy, asl_args=dict(cfg.loss.args), **options)
    g_cfg = ExperimentConfig.from_dict({**cfg.to_dict(), "name": f"{cfg.name}-gold"})
    return out, trained(g_cfg, train, test, method=out.method)


def noise_level(task: tuple[int, float]) -> dict:
    """Every run of one seed at one noise rate η: its test metrics (R), the share of
    silver entries at the clamp (CLAMPED), the matrices (C_MATS) and, for seed 0 at the
    ablation rate, the silver classifier's logits (examined below)."""
    seed, eta = task
    r, clamped, mats, logits = {}, {}, {}, None
    split = pene_split(train.labels, P["gold_fraction"], seed=seed)
    index = torch.cat([split.gold, split.silver])
    noisy, c_true = labels.symmetric_noise(train.labels[split.silver], eta, seed=seed)
    mixed = Subset(train, index, torch.cat([train.labels[split.gold], noisy]))
    r["ASL"] = trained(config(f"asl-{eta}", seed), mixed, test).metrics
    galc_out, galc_gold = galc(config(f"galc-{eta}", seed), split, noisy)
    glc_out, glc_gold = galc(config(f"glc-{eta}", seed), split, noisy,
                             estimator="glc", silver=galc_out.silver)
    for name, out, gold in (("GALC-SLR", galc_out, galc_gold),
                            ("GLC", glc_out, glc_gold)):
        r[name], clamped[name] = gold.metrics, out.method.clamped_share
    if eta != ETA:
        return {"R": r, "CLAMPED": clamped, "C_MATS": mats, "silver_logits": logits}
    if seed == 0:  # f's logits on the sets Algorithm 1 reads, examined below
        logits = {part: galc_out.silver.predict(Subset(train, getattr(split, part)))
                  for part in ("gold", "silver", "single")}
    mats.update({"true": c_true, "GLC": glc_out.estimate.c_hat,
                 "GALC-SLR raw": galc_out.estimate.raw})
    _, true_gold = galc(config("true-c", seed), split, noisy, estimator="true",
                        c_true=c_true, silver=galc_out.silver)
    norm_out, norm_gold = galc(config("galc-normalized", seed), split, noisy,
                               correction="normalize", silver=galc_out.silver)
    hidden = Subset(train, index,
                    torch.cat([train.labels[split.gold], torch.zeros_like(noisy)]))
    r["true C"] = true_gold.metrics
    r["GALC-SLR, normalised"] = norm_gold.metrics
    clamped["GALC-SLR, normalised"] = norm_out.method.clamped_share
    # the ASL authors' clamp: positives clamped from below only, so q > 1 keeps a
    # gradient
    authors = config("galc-authors-clamp", seed)
    authors.loss = LossConfig("asl", {"prob_clamp": "authors"})
    authors_out, authors_gold = galc(authors, split, noisy, silver=galc_out.silver)
    r["GALC-SLR, authors' clamp"] = authors_gold.metrics
    clamped["GALC-SLR, authors' clamp"] = authors_out.method.clamped_share
    r["gold labels only"] = trained(config("gold-only", seed), hidden, test).metrics
    # Fig. 6(b): a smaller trusted set; Fig. 6(c): capped single-label pools
    small = pene_split(train.labels, P["small_gold_fraction"], seed=seed)
    noisy_small, c_small = labels.symmetric_noise(train.labels[small.silver], eta,
                                                  seed=seed)
    small_out, small_gold = galc(config("galc-small-gold", seed), small, noisy_small)
    _, true_small_gold = galc(config("true-c-small-gold", seed), small, noisy_small,
                              estimator="true", c_true=c_small, silver=small_out.silver)
    r["GALC-SLR, small gold"] = small_gold.metrics
    r["true C, small gold"] = true_small_gold.metrics
    for cap in CAPS:
        capped = pene_split(train.labels, P["gold_fraction"], seed=seed, single_cap=cap)
        _, capped_gold = galc(config(f"galc-L{cap}", seed), capped, noisy,
                              silver=galc_out.silver)
        r[f"GALC-SLR-L{cap}"] = capped_gold.metrics
    return {"R": r, "CLAMPED": clamped, "C_MATS": mats, "silver_logits": logits}


# the (seed, η) tasks are independent: one worker process per core takes them side by
# side (the long ablation-rate tasks first), each with the numbers it gives alone
TASKS = sorted(((seed, eta) for seed in SEEDS for eta in NOISE),
               key=lambda task: task[1] != ETA)
LEVELS = dict(zip(TASKS, map_in_workers(noise_level, TASKS)))
R: dict[tuple, list] = {}
C_MATS, CLAMPED = {}, {}
for seed in SEEDS:
    for eta in NOISE:
        level = LEVELS[seed, eta]
        for name, value in level["R"].items():
            R.setdefault((name, eta), []).append(value)
        for name, value in level["CLAMPED"].items():
            CLAMPED.setdefault((name, eta), []).append(value)
        for name, value in level["C_MATS"].items():
            C_MATS.setdefault(name, []).append(value)
SILVER0_LOGITS = LEVELS[0, ETA]["silver_logits"]


def silver0_predict(dataset: Subset) -> torch.Tensor:
    """Seed 0's silver classifier f on one of the sets it was evaluated on above."""
    for part, logits in SILVER0_LOGITS.items():
        if torch.equal(dataset.index, getattr(split0, part)):
            return logits
    raise KeyError("silver0_predict: not seed 0's gold, silver or single-label set")


print(f"{time.perf_counter() - chapter_start:.0f} s so far")


def metric(key: tuple, name: str = "mAP") -> list[float]:
    return [r[name] for r in R[key]]


# %% [markdown]
# Our numbers beside the paper's Table 1 (MS COCO, TResNet-M; ours: the embedded benchmark,
# mean ± standard deviation over seeds):

# %%
PAPER_T1 = {0.0: (74.91, 71.38, 75.55, 75.08, 70.82, 75.09),
            0.1: (69.55, 68.01, 73.07, 74.54, 70.55, 74.85),
            0.2: (64.71, 64.03, 69.96, 73.77, 69.66, 74.25),
            0.3: (58.89, 58.52, 65.30, 71.85, 68.27, 73.41),
            0.4: (52.18, 52.24, 59.58, 69.94, 66.45, 72.28),
            0.5: (45.24, 45.42, 52.78, 68.31, 64.68, 71.33),
            0.6: (36.81, 37.44, 43.29, 65.48, 61.73, 69.42)}
rows = []
for eta in NOISE:
    ours = [fmt_mean_std(metric((method, eta), k))
            for method in ("ASL", "GALC-SLR") for k in ("mAP", "CF1", "OF1")]
    paper = PAPER_T1.get(round(eta, 1))
    rows.append([f"{eta:.0%}"] + [f"{o} ({v:.2f})" for o, v in zip(ours, paper)]
                if paper else [f"{eta:.0%}"] + ours)
markdown_table(["noise", "ASL mAP", "ASL CF1", "ASL OF1", "GALC-SLR mAP",
                "GALC-SLR CF1", "GALC-SLR OF1"], rows)

# %% mystnb={"figure": {"caption": "Test mAP, CF1 and OF1 (%) against the symmetric noise rate for ASL, GLC and GALC-SLR (the paper's Figure 5, with GLC added); mean and one standard deviation over seeds, embedded benchmark.", "name": "fig-noise"}} tags=["hide-input"]
fig, axes = plt.subplots(1, 3, figsize=(9.6, 3.4))
STYLES = (("ASL", "o", "-", None), ("GLC", "s", "--", "none"),
          ("GALC-SLR", "^", ":", None))
for ax, name in zip(axes, ("mAP", "CF1", "OF1")):
    for k, (method, marker, line, face) in enumerate(STYLES):
        m, e = zip(*(mean_std(metric((method, eta), name)) for eta in NOISE))
        shift = 0.006 * (k - 1)  # side by side, so that coinciding curves stay visible
        ax.errorbar([eta + shift for eta in NOISE], m, yerr=e, marker=marker,
                    linestyle=line, markerfacecolor=face, markersize=5, capsize=3,
                    label=method)
    ax.set_xlabel("noise rate η"), ax.set_ylabel(f"test {name} (%)"), ax.grid(alpha=0.3)
axes[0].legend(fontsize=9)
fig.tight_layout()

# %% [markdown]
# ## What GALC-SLR's gold classifier actually learns from
#
# The share of silver label entries whose corrected probability $\Chat^\top \sig(g(x))$ fell
# outside $[0, 1]$ during training — where the clamped loss has no gradient — and the ablation
# runs at the chosen noise level:

# %%
display(markdown_table(["estimate", "noise", "silver entries outside [0, 1] (%)"],
                       [[name, f"{eta:.0%}", f"{100 * float(np.mean(v)):.1f}"]
                        for (name, eta), v in CLAMPED.items()]))
ablation = ["ASL", "GALC-SLR", "gold labels only", "GLC", "GALC-SLR, normalised",
            "GALC-SLR, authors' clamp", "true C"]
markdown_table([f"at η = {ETA:.0%} ({P['n_seeds']} seeds)", "mAP", "CF1", "OF1",
                "CF1*", "OF1*"],
               [[name] + [fmt_mean_std(metric((name, ETA), k))
                          for k in ("mAP", "CF1", "OF1", "CF1*", "OF1*")]
                for name in ablation],
               caption="CF1, OF1: at probability 0.5 (the paper's); CF1*, OF1*: at the "
                       "per-class thresholds that maximise each class's F1 on the "
                       "validation split")

# %% [markdown]
# This is the central finding of our reproduction: GALC-SLR's gold classifier is trained by its
# gold images alone — its results coincide with the control that hides the silver labels —
# which is why its mAP does not move with the noise rate: the noisy labels never reach it. The
# cause is structural, not the silver classifier's calibration. Algorithm 1 ends with a
# sigmoid (line 38) applied to averages that are almost always $\ge 0$, so nearly every
# entry of $\Chat$ is at least about $\sig(0) = 1/2$. The corrected probability of a silver label
# $j$ is $q_j = \sum_i \Chat_{ij}\, \sig(g_i(x))$, and every silver image has at least two
# labels (single-label images form the pool $G_S$), so as soon as $g$ predicts them,
# $q_j \ge \tfrac12 \sum_i \sig(g_i(x)) \ge 1$: the probability leaves $[0, 1]$, the two-sided
# clamp of the ASL on probabilities sets it to $1 - \epsilon$, and its gradient is zero. For
# **any** silver classifier most silver entries reach the clamp — even for a perfect one — as
# the next cell measures,
# with a perfect $g$, for $\Chat$ from the chapter's ASL-trained $f$, from an $f$ trained with
# the BCE, from an oracle $f$ that outputs the true labels, and for the true $C$.

# %%
def outside_share(c_hat: torch.Tensor) -> float:
    """Share of the silver set's entries whose corrected probability reaches the clamp
    (0 or 1, where the two-sided clamp leaves no gradient) when g predicts the true
    labels perfectly."""
    perfect_logits = 20.0 * train.labels[split0.silver].float()
    q = corrected_probabilities(perfect_logits, c_hat)
    return 100 * float(((q <= 0) | (q >= 1)).float().mean())


def oracle(dataset) -> torch.Tensor:
    """A perfect silver classifier: logits ±20 from the true labels of the images."""
    return 20.0 * train.labels[dataset.index].float()


bce_cfg = config("silver-bce", 0)
bce_cfg.loss = LossConfig("bce")
silver_bce = trained(bce_cfg, Subset(train, split0.silver, noisy0), test,
                     best_cuts=False).trainer
sources = {"Algorithm 1, ASL silver f (the chapter's)": silver0_predict,
           "Algorithm 1, BCE silver f": silver_bce.predict,
           "Algorithm 1, perfect (oracle) silver f": oracle}
evidence = []
for name, predict in sources.items():
    est = estimate_corruption("galc_slr", predict, train, split0, noisy0)
    evidence.append([name, f"{float(est.c_hat.min()):.2f}",
                     f"{outside_share(est.c_hat):.1f}",
                     f"{outside_share(est.raw):.1f}"])
evidence.append(["true C", f"{float(c_true0.min()):.3f}",
                 f"{outside_share(c_true0):.1f}", "-"])
markdown_table(["Ĉ from", "smallest entry",
                "silver entries at the clamp, perfect g (%)",
                "the same without the final sigmoid (%)"], evidence,
               caption=f"Why GALC-SLR's silver loss is silent (η = {ETA:.0%}, seed 0, "
                       f"{len(split0.silver)} silver images)")

# %% [markdown]
# With a perfect $g$, a $\Chat$ made by Algorithm 1 puts most silver entries at the clamp,
# whichever silver classifier made it — the oracle's a little less, because its regulators
# push a few raw entries below 0 — while the true $C$ puts none there (its columns sum to 1).
# Without the final sigmoid the picture depends on $f$: so the sigmoid, not the silver
# classifier's calibration, is what silences the silver loss. Two readings keep the silver
# gradient, and we ran both (ablation table above): the **ASL authors' clamp** (their code
# clamps a positive's probability from below only, so $q > 1$ still has a gradient) and our
# **column-normalised** $\Chat$, which keeps every $q_j$ in $[0, 1]$. Neither helps here: with
# the authors' clamp the silver gradient pushes every $q_j$ of a present label *down* towards
# 1 through a matrix whose entries are all large, and the mAP falls far below the gold-only
# control; the normalised matrix stays a little below it. Only the true $C$ turns the silver
# images into a gain over gold-only — the correction works when $\Chat$ is right, and
# Algorithm 1's $\Chat$ is not (next section).
#
# **The paper's 0 % row.** With no noise at all, the paper reports GALC-SLR at 75.08 mAP against
# ASL's 74.91 (Table 1). A classifier trained on the gold images alone — 10 % of the training
# set — could not match ASL trained on all of them, so in the paper's runs the silver images
# must have contributed gradient: its implementation did not clamp as Algorithm 1 and a
# two-sided clamp imply. The paper does not say which reading it used; here the two-sided
# clamp collapses to gold-only at every noise level, and the other readings are compared at
# $\eta$ = `ablation_noise` in the table above.

# %%
clamped_galc = float(np.mean(CLAMPED[("GALC-SLR", ETA)]))
claims.ours("during training, GALC-SLR's corrected silver probabilities leave [0, 1] "
            "almost everywhere (two-sided clamp: no silver gradient)",
            clamped_galc > 0.99, measured=f"{100 * clamped_galc:.1f} %")
claims.ours("even a perfect silver classifier gives a Ĉ that puts most silver entries "
            "(over 80 %) at the clamp", float(evidence[2][2]) > 80,
            measured=f"{evidence[2][2]} % of entries at 0 or 1")
gold_only = metric(("gold labels only", ETA))
same = paired(gold_only, metric(("GALC-SLR", ETA)))
claims.ours("GALC-SLR equals training on the gold labels only", same.within(0.5),
            measured=same)
for reading, expect in (("GALC-SLR, authors' clamp", False),
                        ("GALC-SLR, normalised", False), ("true C", True)):
    e = paired(gold_only, metric((reading, ETA)))
    claims.ours(f"{reading}: the silver images add mAP over gold-only", e.detected(+1),
                expect=expect, measured=e)
asl_drop = paired(metric(("ASL", NOISE[0])), metric(("ASL", NOISE[-1])))
galc_drop = paired(metric(("GALC-SLR", NOISE[0])), metric(("GALC-SLR", NOISE[-1])))
claims.paper(f"GALC-SLR loses less mAP than ASL from {NOISE[0]:.0%} to {NOISE[-1]:.0%} "
             "noise", galc_drop.mean - asl_drop.mean > galc_drop.sd + asl_drop.sd,
             measured=f"ASL {asl_drop}, GALC-SLR {galc_drop}",
             paper="ASL -38.10, GALC-SLR -9.60 (COCO, 0 → 60 %)")
at_eta = paired(metric(("ASL", ETA)), metric(("GALC-SLR", ETA)))
claims.paper(f"GALC-SLR beats ASL at {ETA:.0%} noise", at_eta.detected(+1),
             expect=False, measured=at_eta,
             paper=f"{PAPER_T1[round(ETA, 1)][3] - PAPER_T1[round(ETA, 1)][0]:+.2f} "
                   "(COCO)")
at_zero = (paired(metric(("ASL", 0.0)), metric(("GALC-SLR", 0.0))) if 0.0 in NOISE
           else None)
if at_zero is not None:
    claims.paper("without noise GALC-SLR is on a par with ASL",
                 not at_zero.detected(-1), expect=False, measured=at_zero,
                 paper="+0.17 (COCO)")
true_vs_asl = paired(metric(("ASL", ETA)), metric(("true C", ETA)))
claims.paper(f"with the true C the correction beats ASL at {ETA:.0%} noise",
             true_vs_asl.detected(+1), expect=False, measured=true_vs_asl,
             paper=f"{70.30 - PAPER_T1[round(ETA, 1)][0]:+.2f} (COCO, Fig. 6b)")
tuned_asl = paired(metric(("ASL", ETA), "CF1"), metric(("ASL", ETA), "CF1*"))
claims.ours(f"ASL's CF1 at {ETA:.0%} noise rises beyond its spread when each class's "
            "threshold is chosen on the validation split instead of 0.5",
            tuned_asl.detected(+1), measured=tuned_asl)
galc_range = [mean_std(metric(("GALC-SLR", eta)))[0] for eta in NOISE]
asl_range = [mean_std(metric(("ASL", eta)))[0] for eta in NOISE]
print(f"GALC-SLR mAP across noise levels: {min(galc_range):.1f}-{max(galc_range):.1f}; "
      f"ASL: {asl_range[0]:.1f} at {NOISE[0]:.0%} to {asl_range[-1]:.1f} at "
      f"{NOISE[-1]:.0%}")

# %% [markdown]
# Against the paper's claim that GALC-SLR is more robust than ASL: its curve is flat, as the
# paper's nearly is, while ASL's falls. Whether it ends *above* ASL depends on how much the
# noise costs ASL: on COCO with a fine-tuned TResNet, 40 % noise costs ASL 23 mAP points; with
# a frozen backbone, which cannot memorise noise, far less (table above) — and training on 10 %
# of the images costs more than that here. The thresholded metrics at probability 0.5 (CF1,
# OF1, as the paper reports them) compare operating points, not rankings: ASL's focusing on
# negatives leaves it predicting most labels present at 0.5, so its CF1 hardly varies across
# seeds. The ablation table therefore also gives **CF1\* and OF1\***, at per-class
# thresholds that maximise each class's F1 on a validation split — `n_val` clean training
# images held out of every run, the same for every method, used for nothing else — so that
# each classifier is compared at its own best operating point. Our comparisons use mAP and
# these; the 0.5 columns stay for the paper's sake.
#
# ## How close is each estimate to the true $C$? (Fig. 4)
#
# The paper shows the matrices at 40 % noise as pictures (without the final sigmoid "for better
# contrast"). We show the same and measure three distances to the truth: the mean absolute
# error of the entries, the **contrast** between the mean diagonal and the mean off-diagonal
# entry (the true $C$ has $1 - \eta$ against $\eta / (K-1)$), and the correlation of the entries
# with the true ones.

# %% mystnb={"figure": {"caption": "Corruption matrices at the ablation noise level (seed 0): the true C of symmetric noise, GLC's estimate, and GALC-SLR's estimate before its final sigmoid, as in the paper's Figure 4. Rows: true label i; columns: observed label j; colour: entry value.", "name": "fig-matrices"}} tags=["hide-input"]
fig, axes = plt.subplots(1, 3, figsize=(9.6, 3.2))
for ax, name in zip(axes, ("true", "GLC", "GALC-SLR raw")):
    im = ax.imshow(C_MATS[name][0], cmap="magma")
    ax.set_title(name), ax.set_xlabel("observed label j"), ax.set_ylabel("true label i")
    fig.colorbar(im, ax=ax, fraction=0.046)
fig.tight_layout()


# %%
def distances(c_hat: torch.Tensor, c_true: torch.Tensor) -> tuple[float, float, float]:
    c_hat, c_true = c_hat.double(), c_true.double()
    off = ~torch.eye(len(c_true), dtype=torch.bool)
    contrast = (c_hat.diag().mean() - c_hat[off].mean()).item()
    corr = torch.corrcoef(torch.stack([c_hat.flatten(), c_true.flatten()]))[0, 1].item()
    return (c_hat - c_true).abs().mean().item(), contrast, corr


D = {name: [distances(c, t) for c, t in zip(C_MATS[name], C_MATS["true"])]
     for name in ("true", "GLC", "GALC-SLR raw")}
markdown_table([f"estimate at η = {ETA:.0%} ({P['n_seeds']} seeds)", "mean |Ĉ - C|",
                "diagonal contrast", "correlation with C"],
               [[name] + [fmt_mean_std([d[i] for d in D[name]], 3) for i in range(3)]
                for name in D])

# %% [markdown]
# Both estimates are far from the truth in absolute terms; GALC-SLR's regulators do sharpen
# the diagonal against the off-diagonal entries and raise the correlation with the true matrix,
# which is what the paper's Fig. 4 shows: **closer than GLC in structure, checked below, but
# not close.** Row $i$ of both estimates still carries the context partners of class $i$.

# %%
for i, measure in ((1, "diagonal contrast"), (2, "correlation with the true C")):
    galc_i = [d[i] for d in D["GALC-SLR raw"]]
    glc_i = [d[i] for d in D["GLC"]]
    e = paired(glc_i, galc_i)
    claims.paper(f"GALC-SLR's Ĉ is closer to the true C than GLC's ({measure})",
                 e.detected(+1), measured=e, paper="Fig. 4 (pictures)")

# %% [markdown]
# ## The trusted set and the single-label pool (Fig. 6b, 6c)
#
# Halving the trusted fraction, with the estimate and with the true $C$; and capping the
# single-label pool per class (the paper's L50 and L10; our pool is smaller, so the caps are
# scaled, see the parameters):

# %%
PAPER_6B = {"GALC-SLR": 69.94, "true C": 70.30, "GALC-SLR, small gold": 68.73,
            "true C, small gold": 69.11}
rows = [[name, fmt_mean_std(metric((name, ETA))),
         f"{PAPER_6B[name]:.2f}" if name in PAPER_6B else "-"]
        for name in ("GALC-SLR", "true C", "GALC-SLR, small gold", "true C, small gold",
                     *(f"GALC-SLR-L{cap}" for cap in CAPS))]
markdown_table([f"at η = {ETA:.0%}; gold {P['gold_fraction']:.0%} "
                f"(small: {P['small_gold_fraction']:.0%})",
                "ours, mAP (%)", "paper, mAP (%)"], rows)

# %% [markdown]
# The paper: with the estimate, 68.73 and 69.94 mAP for 5 % and 10 % of trusted data, within
# half a point of the true-matrix bound; and "limiting the number of single-label images has
# only a minor impact". Here the single-label caps change nothing at all — the estimate does
# not reach the gradient — and halving the trusted set costs what training on half as many
# clean images costs; the true matrix keeps its advantage.

# %%
for cap in CAPS:
    e = paired(metric(("GALC-SLR", ETA)), metric((f"GALC-SLR-L{cap}", ETA)))
    claims.ours(f"capping single-label images at {cap} per class changes nothing (the "
                "silver loss is silent)", e.within(0.5), measured=e)
e = paired(metric(("GALC-SLR", ETA)), metric(("GALC-SLR, small gold", ETA)))
claims.paper("a smaller gold set lowers GALC-SLR's mAP", e.detected(-1), measured=e,
             paper="69.94 → 68.73 (Fig. 6b)");

# %% [markdown]
# ## The memorisation effect (Fig. 6a)
#
# Pene et al. always take the last model, because a network trained on noisy labels first
# learns the easy, mostly correct patterns and then memorises the noise: its test mAP peaks and
# declines. A frozen backbone cannot memorise, so this experiment fine-tunes the pretrained
# network (all but its stem and first stage, as in chapter 1) on a subset, evaluating every
# epoch: ASL on the noisy training set, and GALC-SLR's gold classifier with the matrix
# estimated above. The learning rate is constant here: in so few epochs a decaying schedule
# freezes the network before it memorises (the paper's 80 epochs leave it the time).

# %%
n_memo = min(P["memo_n_train"] or len(images.train), len(images.train))
memo_train = Subset(images.train, torch.arange(n_memo))
multi = torch.nonzero((images.test.labels == 1).sum(1) >= 2)[:, 0]
multi = multi[: P["memo_n_test"] or None]  # memo_n_test 0: all
memo_test = Subset(images.test, multi)
curves: dict[str, list[list[float]]] = {"ASL": [], "GALC-SLR": []}
memo_config = dict(finetune=True, epochs=P["memo_epochs"], eval_every=1,
                   schedule="constant")
memo_runs = {}  # trained side by side below (run_many: one process per core)
for seed in SEEDS:
    memo_split = pene_split(memo_train.labels, P["gold_fraction"], seed=seed)
    memo_noisy, _ = labels.symmetric_noise(memo_train.labels[memo_split.silver], ETA,
                                           seed=seed)
    memo_index = torch.cat([memo_split.gold, memo_split.silver])
    memo_labels = torch.cat([memo_train.labels[memo_split.gold], memo_noisy])
    memo_set = Subset(memo_train, memo_index, memo_labels)
    is_gold = torch.cat([torch.ones(len(memo_split.gold), dtype=torch.bool),
                         torch.zeros(len(memo_split.silver), dtype=torch.bool)])
    c_estimate = torch.sigmoid(C_MATS["GALC-SLR raw"][seed])
    memo_data = DataSplits(train=memo_set, test=memo_test, val=memo_test)
    memo_runs["ASL", seed] = Run(config("memo-asl", seed, **memo_config), memo_data,
                                 train_labels=memo_set.labels, write=FULL, resume=FULL)
    memo_runs["GALC-SLR", seed] = Run(
        config("memo-galc", seed, **memo_config), memo_data,
        train_labels=memo_set.labels, write=FULL, resume=FULL,
        method=GoldCorrectedMethod(c_estimate, is_gold))
for (name, _), run in run_many(memo_runs).items():
    curves[name].append([h["val_mAP"] for h in run.history])

# %% mystnb={"figure": {"caption": "Test mAP after every epoch while fine-tuning (stem and first stage fixed) at the ablation noise level (a subset of the benchmark): ASL on the noisy labels and GALC-SLR's gold classifier (the paper's Figure 6a). Lines: mean over seeds; bands: one standard deviation.", "name": "fig-memorisation"}} tags=["hide-input"]
fig, ax = plt.subplots(figsize=(6.5, 3.6))
for (name, per_seed), marker in zip(curves.items(), ("o", "s")):
    values = np.array(per_seed)
    epochs_axis = np.arange(1, values.shape[1] + 1)
    mean = values.mean(0)
    sd = values.std(0, ddof=1) if len(values) > 1 else 0 * mean
    ax.plot(epochs_axis, mean, marker=marker, label=name)
    ax.fill_between(epochs_axis, mean - sd, mean + sd, alpha=0.2)
ax.set_xlabel("epoch"), ax.set_ylabel("test mAP (%)"), ax.legend(), ax.grid(alpha=0.3)
fig.tight_layout()
peak = {name: [max(c) for c in v] for name, v in curves.items()}
last = {name: [c[-1] for c in v] for name, v in curves.items()}
print("; ".join(f"{name}: peak {fmt_mean_std(peak[name])} at epochs "
                f"{[int(np.argmax(c)) + 1 for c in curves[name]]}, last "
                f"{fmt_mean_std(last[name])}" for name in curves))

# %% [markdown]
# ASL shows the memorisation effect in every seed: its mAP peaks within the first epochs and
# declines as it fits the wrong labels. GALC-SLR's gold classifier, which (as shown above)
# learns from the gold labels only, has no wrong label to memorise; it still declines, as any
# network fine-tuned at a constant learning rate on a few hundred clean images overfits them,
# but by less. The paper draws the same curves and reads them as "preventing overfit to the
# noisy labels"; our control says the noisy labels are not used at all, so the smaller
# decline is that of a small clean set, not of a correction.

# %%
memorised = paired(peak["ASL"], last["ASL"])
claims.paper("ASL memorises noise: its last epoch is more than 1 mAP below its peak, "
             "beyond the seed spread", memorised.detected(-1) and memorised.mean < -1.0,
             measured=memorised, paper="Fig. 6a")
drops = {name: [p - l for p, l in zip(peak[name], last[name])] for name in curves}
drop_gap = paired(drops["ASL"], drops["GALC-SLR"])
claims.paper("GALC-SLR loses less from its peak than ASL", drop_gap.detected(-1),
             measured=f"drop GALC-SLR - ASL {drop_gap}", paper="Fig. 6a");

# %% [markdown]
# The claims of this chapter, as measured in this run:

# %% tags=["nbval-check-output"]
claims.table("paper", caption=f"Pene et al. 2021, the paper's claims: {P['dataset']}, "
                              f"{P['image_size']} px, {P['n_seeds']} seeds; paired "
                              "Δ ± sd (reproduced: the effect exceeds its spread)")

# %% tags=["nbval-check-output"]
claims.table("ours", caption=f"Pene et al. 2021, our observations: {P['dataset']}, "
                             f"{P['image_size']} px, {P['n_seeds']} seeds")

# %% [markdown]
# ## Paper and code
#
# * **No code** was released for GALC-SLR; the paper says its implementation builds on the ASL
#   and GLC repositories. Algorithm 1 is implemented exactly (a test compares it with a literal
#   loop-by-loop transcription); rows come from the untrusted set grouped by noisy labels, as
#   the algorithm says, though §3.2's prose mentions the trusted set.
# * **Values outside $[0, 1]$** of $\Chat^\top \sig(g(x))$: the paper is silent. We clamp into
#   $[\epsilon, 1 - \epsilon]$ (zero gradient there) and measure the share; the normalised
#   variant is ours.
# * **$g$ from fresh weights**, as in GLC: $f$ and $g$ start from the same initial weights.
# * **ASL** as in the authors' training script: $\gamma_+ = 0$, $\gamma_- = 4$, margin 0.05 on
#   negatives only, constant focusing weights, sum over images and classes. Our log-sigmoid is
#   exact where their `log(clamp(p))` saturates (documented in `losses.asl`).
# * **Symmetric noise** moves each positive label to a distinct class not present in the image;
#   images whose labels cover every class keep the surplus (only possible with few classes).
# * **Quick scale**: frozen features of the shipped ObjectScenes backbone, 32 px, 4000 training images, heads
#   trained with Adam for a few epochs, caps scaled to our pool; the memorisation run fine-tunes.
#
# ## Summary
#
# * ASL weighs positives and negatives asymmetrically and drops easy negatives with a margin;
#   its gradients check out, with and without constant focusing weights.
# * Forward correction trains through the corruption matrix; with the true matrix the silver
#   images add mAP over the gold images alone, though here not beyond ASL on all images.
# * GALC-SLR's regulators make $\Chat$ structurally closer to the truth than GLC's, but
#   Algorithm 1's final sigmoid makes nearly every entry at least about one half, so most
#   corrected probabilities of the silver labels reach the clamp — for any silver
#   classifier, even a perfect one. The noisy labels then carry no gradient, and GALC-SLR trains on its gold set
#   alone: that explains its flat noise curve, its resistance to memorisation and its
#   indifference to the single-label pool. Readings that keep the gradient (the ASL authors'
#   clamp, a normalised $\Chat$) do worse than the gold set alone; the paper's 0 % row
#   implies its implementation kept a gradient that helped.
#
# ## Exercises
#
# 1. Train the silver classifier with the BCE instead of ASL. How do $\Chat$'s entries and the
#    share of corrected probabilities outside $[0, 1]$ change?
# 2. Skip the final sigmoid (use `c_hat_raw` with `correction="normalize"`). Is the correction
#    better or worse than the true matrix?
# 3. Show that the true symmetric $C$ has unit column sums, so that $C^\top \p$ stays a
#    probability. Which noise models lack this property?

# %% tags=["remove-cell"]
print(f"chapter time: {time.perf_counter() - chapter_start:.0f} s")
