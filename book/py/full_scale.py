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
# (full-scale)=
# # Running at full scale
#
# Every chapter runs at three scales, chosen in its parameters cell:
#
# * `quick` — what this book shows: the embedded benchmark at 32 px with small CPU networks,
#   a few to fifteen minutes per chapter on one CPU core. Its claims are checked at its
#   preset parameters on every build.
# * `full` — the paper's experiment: its backbone, resolution, schedule and dataset. It needs a
#   GPU, the dataset on disk and, for the papers' numbers, ImageNet weights on disk.
# * `smoke` — the `full` code path on any dataset in seconds, to check an installation and a
#   dataset before committing GPU hours.
#
# This page lists the full-scale settings, shows how to launch them, measures the speed of the
# training step, of inference, of data loading and of every method on the machine that builds
# it, and quotes the numbers the papers report. When the book is built on a CPU (as the
# published book is), the measurements below are CPU figures for the small networks; run this
# page with `scale="full"` on a GPU to measure the papers' backbones.

# %% tags=["parameters", "hide-input"]
# params/full_scale.yaml: "quick" measures the CPU networks of the book, "full" the
# papers' backbones at their resolutions (a GPU).
scale = "quick"
device = None
backbones = None
batch_size = None
steps = None
warmup = None
rounds = None
loading_dataset = None
data_root = None
workers = None

# %% tags=["hide-input"]
from pathlib import Path

import torch
import yaml
from IPython.display import Markdown, display

from mlrobust.bench import (
    BenchSettings,
    bench_inference,
    bench_loading,
    bench_methods,
    bench_train_step,
    device_name,
    format_table,
)
from mlrobust.engine import resolve_device
from mlrobust.claims import Claims
from mlrobust.notebook import claims_checked, markdown_table, resolve_parameters

P = resolve_parameters(
    "full_scale",
    scale,
    dict(
        device=device,
        backbones=backbones,
        batch_size=batch_size,
        steps=steps,
        warmup=warmup,
        rounds=rounds,
        loading_dataset=loading_dataset,
        data_root=data_root,
        workers=workers,
    ),
)
DEVICE = resolve_device(P["device"])
claims = Claims(strict=claims_checked("full_scale", scale, P))
print(f"measuring on {device_name(DEVICE)} with torch {torch.__version__}")

# %% [markdown]
# ## The full-scale settings
#
# The settings each chapter uses at `scale="full"`, read from its parameter file
# (`book/params/<chapter>.yaml`); a `datasets` section there adapts them to each real dataset
# (a whole official split is `n = 0`).

# %%
# two tables, so that each fits the page: how each chapter trains, and on what data
TRAINING = {"backbone": "backbone", "image_size": "image size (px)", "epochs": "epochs",
            "batch_size": "batch size", "lr": "lr", "schedule": "schedule"}
DATA = {"n_train": "training images", "n_test": "test images", "n_seeds": "seeds"}
training, data = [], []
for path in sorted(Path("params").glob("ch*.yaml")):
    presets = yaml.safe_load(path.read_text())
    full = presets["full"]
    datasets = ", ".join(["shapescenes"] + sorted(presets.get("datasets") or {}))
    # str: lr 1e-4 stays 1e-4
    training.append([path.stem] + [str(full.get(k, "-")) for k in TRAINING])
    data.append([path.stem] + [str(full.get(k, "-")) for k in DATA] + [datasets])
display(markdown_table(["chapter", *TRAINING.values()], training,
                       caption="Full scale: the training setting of each chapter"))
markdown_table(["chapter", *DATA.values(), "datasets"], data,
               caption="Full scale: the data of each chapter (0: the whole split)")

# %% [markdown]
# ## Commands
#
# ```bash
# # a chapter on the embedded benchmark at full size (GPU)
# make full CHAPTER=ch02_durand DEVICE=cuda WEIGHTS=weights/resnet101.safetensors
# # on COCO 2014 (annotations/instances_{train,val}2014.json, train2014/, val2014/)
# make full CHAPTER=ch03_pene DATASET=coco DATA_ROOT=/data/coco DEVICE=cuda \
#     WEIGHTS=weights/tresnet_m.safetensors
# # the same path in seconds, on CPU, to check the dataset and the installation first
# make full CHAPTER=ch03_pene DATASET=coco DATA_ROOT=/data/coco SCALE=smoke
# # several GPUs: one experiment over all of them (torch.distributed, NCCL)
# torchrun --nproc_per_node 8 -m mlrobust run --config my.yaml \
#     --set data.dataset=coco --set data.root=/data/coco
# ```
#
# The executed notebook and its run folders land in `_build/full/` (or `_build/smoke/`). Each
# run folder holds `config.json`, `env.json`, `history.csv`, `metrics.json` and an
# atomically written checkpoint: `python -m mlrobust run --config FILE --resume` continues a
# killed run, on one process or under `torchrun` alike. Pretrained weights are read from disk
# only; the README says how to fetch them on a connected machine. At the full scale a claim
# that does not hold is reported in the chapter's claims table instead of stopping the run.
#
# The GPU path: bf16 autocast (`train.amp`) and channels_last (`train.channels_last`, on by
# default on the CPU too, where oneDNN's NHWC convolutions are faster as well),
# optional `torch.compile` (`train.compile`), DataLoader workers with pinned memory and
# persistent workers for datasets on disk (`data.num_workers`), and augmentation on the
# device in whole batches with per-sample randomness (`data.augment`: `flip`, `weak`,
# `strong`). The embedded benchmark renders straight onto the device.

# %% [markdown]
# ## Speed on this machine
#
# A training step is forward, loss, backward and optimiser step on a batch already on the
# device (so data loading is excluded); inference is an eval-mode forward without gradients.
# The numbers are images per second (higher is better) and milliseconds per batch.

# %%
SPECS = [
    (name, int(size))
    for name, size in (spec.split("@") for spec in str(P["backbones"]).split(","))
]
speed = []
for name, size in SPECS:
    knobs = dict(
        backbone=name,
        image_size=size,
        batch_size=P["batch_size"],
        device=str(DEVICE),
        steps=P["steps"],
        warmup=P["warmup"],
    )
    speed += [bench_train_step(**knobs), bench_inference(**knobs)]
display(
    Markdown(
        f"Device: {device_name(DEVICE)}; torch {torch.__version__}; "
        f"batch {P['batch_size']}.\n\n"
        + format_table(
            speed,
            [
                "what",
                "backbone",
                "image_size",
                "amp",
                "channels_last",
                "images_per_s",
                "step_ms",
            ],
        )
    )
)

# %%
train_rate = {
    (r.backbone, r.image_size): r.images_per_s
    for r in speed
    if r.what.startswith("train")
}
infer_rate = {
    (r.backbone, r.image_size): r.images_per_s
    for r in speed
    if r.what.startswith("inference")
}
for key in train_rate:
    claims.ours(
        f"inference is faster than training ({key[0]} at {key[1]} px)",
        infer_rate[key] > train_rate[key],
        measured=f"{infer_rate[key]:.0f} vs {train_rate[key]:.0f} img/s",
    )
name, size = SPECS[0]
coco_epoch = 82_783 / train_rate[(name, size)]
print(
    "one epoch over COCO train2014 (82,783 images) with "
    f"{name} at {size} px on this device: "
    f"{coco_epoch / 60:.1f} min of training steps, data loading not included"
)

# %% [markdown]
# ### Data loading
#
# Data loading must keep up with the training step. The table times uint8 batches produced
# on the device by the project's loader, then augmented there (`none` is the plain
# conversion): the embedded benchmark is rendered, a dataset on disk is decoded by
# DataLoader workers.

# %%
loading = [
    bench_loading(
        P["loading_dataset"],
        P["batch_size"],
        P["workers"],
        str(DEVICE),
        P["steps"],
        augment=policy,
        image_size=SPECS[0][1],
        data_root=P["data_root"],
    )
    for policy in ("none", "flip", "strong")
]
slowest = min(r.images_per_s for r in loading)
claims.ours(
    "data loading with the strongest augmentation outpaces the training step",
    slowest > train_rate[SPECS[0]],
    measured=f"{slowest:.0f} vs {train_rate[SPECS[0]]:.0f} img/s",
)
display(
    Markdown(
        format_table(
            loading, ["what", "image_size", "batch_size", "images_per_s", "step_ms"]
        )
    )
)

# %% [markdown]
# ### What each method costs
#
# Every method's training step against the plain BCE step on the same backbone, batch and
# device (design target: at most 1.10). The relabeling rows of Durand et al. are whole
# relabeling passes per image, which run once before a few given epochs, not at every step.

# %%
settings = BenchSettings(
    SPECS[0][0], SPECS[0][1], P["batch_size"], str(DEVICE), P["steps"], P["warmup"]
)
ratios = bench_methods(settings, rounds=P["rounds"])
display(
    Markdown(format_table(ratios, ["what", "images_per_s", "step_ms", "ratio_to_bce"]))
)

# %% [markdown]
# ## The papers' numbers
#
# What a full-scale run should approach (COCO 2014, from the papers' tables):

# %%
markdown_table(
    ["paper, setting", "mAP (%)"],
    [
        [
            "Durand et al. Table 4: ResNet-101 WELDON, 10 % of the labels, BCE, frozen",
            66.21,
        ],
        ["... fine-tuned, BCE", 72.15],
        ["... fine-tuned, partial-BCE", 75.31],
        ["... + GNN", 75.82],
        ["... + GNN + relabeling [e]", 76.40],
        ["Pene et al. Table 1: TResNet-M 224 px, ASL, 0 % noise", 74.91],
        ["... ASL, 40 % symmetric noise", 52.18],
        ["... GALC-SLR, 40 % symmetric noise", 69.94],
        ["... ASL, 60 % symmetric noise", 36.81],
        ["... GALC-SLR, 60 % symmetric noise", 65.48],
    ],
)

# %% [markdown]
# The observations of this page, as measured in this build:

# %%
claims.table("ours", caption=f"Speed on {DEVICE} (this build)")
