"""MS-COCO 2014 (Lin et al., 2014) as a multi-label dataset: 80 object classes.

Layout (the official archives unpacked under ``root``)::

    root/annotations/instances_train2014.json
    root/annotations/instances_val2014.json
    root/train2014/COCO_train2014_000000000009.jpg ...   (or root/images/train2014/...)
    root/val2014/...

An image's labels are the categories of its instance annotations (crowd annotations count),
1 for present and -1 for absent; the columns follow category-id order (1 person ... 90
toothbrush), the order every multi-label COCO paper uses. The papers train on train2014 and
test on val2014, so the splits are ``train`` (train2014) and ``test`` (val2014).

Images without any annotation are kept (all -1) or dropped with ``keep_empty``: kept,
train2014/val2014 hold 82,783/40,504 images; dropped, 82,081/40,137 (design section 10).
``dataset.info`` reports which, and how many were dropped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..registry import register_dataset
from ._files import (DatasetFormatError, ImageFiles, dataset_root, drop_unlabelled, first_existing, label_matrix,
                     require_file)

__all__ = ["coco_labels", "COCO_SPLITS"]

COCO_SPLITS = {"train": "train2014", "test": "val2014", "train2014": "train2014", "val2014": "val2014"}


def _load_json(path: Path) -> dict[str, Any]:
    require_file(path, "COCO instance annotations")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise DatasetFormatError(f"{path}: not valid JSON ({err})") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(data, dict) or key not in data:
            raise DatasetFormatError(f"{path}: expected a COCO instances file with key {key!r}")
    return data


def coco_labels(annotation_file: Path, keep_empty: bool = True) -> tuple[list[str], torch.Tensor, list[str], int]:
    """Parse an ``instances_*.json`` file: (file names, labels (N, 80) int8, class names,
    number of images dropped for having no annotation)."""
    data = _load_json(annotation_file)
    try:
        categories = sorted(data["categories"], key=lambda c: c["id"])
        column = {c["id"]: j for j, c in enumerate(categories)}
        images = sorted(data["images"], key=lambda im: im["id"])
        row = {im["id"]: i for i, im in enumerate(images)}
        pairs = [(a["image_id"], a["category_id"]) for a in data["annotations"]]
    except (KeyError, TypeError) as err:
        raise DatasetFormatError(f"{annotation_file}: an entry lacks the field {err}") from None
    unknown_cat = {c for _, c in pairs if c not in column}
    unknown_img = {i for i, _ in pairs if i not in row}
    if unknown_cat or unknown_img:
        what = (f"category id {min(unknown_cat)} not in 'categories'" if unknown_cat
                else f"image id {min(unknown_img)} not in 'images'")
        raise DatasetFormatError(f"{annotation_file}: an annotation refers to {what}")
    labels = label_matrix(len(images), len(categories), [row[i] for i, _ in pairs], [column[k] for _, k in pairs])
    names = [im["file_name"] for im in images]
    dropped = 0
    if not keep_empty:
        names, labels, dropped = drop_unlabelled(names, labels)
    return names, labels, [c["name"] for c in categories], dropped


@register_dataset("coco")
def coco(split: str, *, root: str | Path | None, image_size: int = 448, n: int | None = None, seed: int = 0,
         cache: bool | None = None, keep_empty: bool = True, bad_images: str = "error") -> ImageFiles:
    """MS-COCO 2014, ``split`` in train (train2014) / test (val2014). ``n`` > 0 keeps a seeded
    random subset of that many images; ``cache`` is ignored (images are read from disk)."""
    root = dataset_root("coco", root, split, COCO_SPLITS, "the folder holding annotations/ and train2014/, val2014/")
    folder = COCO_SPLITS[split]
    names, labels, classes, dropped = coco_labels(root / "annotations" / f"instances_{folder}.json", keep_empty)
    images = first_existing([root / folder, root / "images" / folder], "COCO images", "folder")
    return ImageFiles(f"coco/{folder}", [images / f for f in names], labels, classes, image_size=image_size,
                      bad_images=bad_images, n=n, seed=seed,
                      info={"keep_empty": keep_empty, "dropped_without_annotations": dropped})
