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
train2014/val2014 hold 82,783/40,504 images; dropped, 82,081/40,137.
``dataset.info`` reports which, and how many were dropped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..registry import register_dataset
from ._files import (ENCODING, DatasetFormatError, ImageFiles, dataset_root, drop_unlabelled, first_existing,
                     label_matrix, require_file)

__all__ = ["coco_labels", "COCO_SPLITS"]

COCO_SPLITS = {"train": "train2014", "test": "val2014", "train2014": "train2014", "val2014": "val2014"}


def _load_json(path: Path) -> dict[str, Any]:
    require_file(path, "COCO instance annotations")
    try:
        with open(path, encoding=ENCODING) as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise DatasetFormatError(f"{path}: not valid JSON ({err})") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise DatasetFormatError(f"{path}: expected a COCO instances file with a list {key!r}")
    return data


def _column(path: Path, entries: list[Any], section: str, field: str, kind: type) -> list[Any]:
    """``entry[field]`` of every entry of ``data[section]``, each of type ``kind``; an error
    names the file, the entry (``images[3]``) and what it holds. (JSON has no useful line
    numbers: the official files are one line.)"""
    values = [e.get(field) if isinstance(e, dict) else None for e in entries]
    bad = next((i for i, v in enumerate(values) if not isinstance(v, kind) or isinstance(v, bool)), None)
    if bad is not None:
        raise DatasetFormatError(f"{path}: {section}[{bad}] needs a field {field!r} of type {kind.__name__}, "
                                 f"got {entries[bad]!r:.200}")
    return values


def _unique_ids(path: Path, ids: list[int], section: str) -> None:
    """Two entries with one id would move labels to the wrong image (or category)."""
    seen: dict[int, int] = {}
    for i, value in enumerate(ids):
        if value in seen:
            raise DatasetFormatError(f"{path}: {section}[{i}] repeats the id {value} of {section}[{seen[value]}]; "
                                     "ids must be unique")
        seen[value] = i


def _check_refs(path: Path, refs: list[int], known: dict[int, int], what: str, section: str) -> None:
    bad = next((i for i, v in enumerate(refs) if v not in known), None)
    if bad is not None:
        raise DatasetFormatError(f"{path}: annotations[{bad}] refers to {what} {refs[bad]} not in {section!r}")


def coco_labels(annotation_file: Path, keep_empty: bool = True) -> tuple[list[str], torch.Tensor, list[str], int]:
    """Parse an ``instances_*.json`` file: (file names, labels (N, 80) int8, class names,
    number of images dropped for having no annotation)."""
    data = _load_json(annotation_file)
    cat_ids = _column(annotation_file, data["categories"], "categories", "id", int)
    cat_names = _column(annotation_file, data["categories"], "categories", "name", str)
    image_ids = _column(annotation_file, data["images"], "images", "id", int)
    files = _column(annotation_file, data["images"], "images", "file_name", str)
    _unique_ids(annotation_file, cat_ids, "categories")
    _unique_ids(annotation_file, image_ids, "images")
    ann_images = _column(annotation_file, data["annotations"], "annotations", "image_id", int)
    ann_cats = _column(annotation_file, data["annotations"], "annotations", "category_id", int)
    cat_order = sorted(range(len(cat_ids)), key=cat_ids.__getitem__)
    column = {cat_ids[k]: j for j, k in enumerate(cat_order)}
    image_order = sorted(range(len(image_ids)), key=image_ids.__getitem__)
    row = {image_ids[k]: i for i, k in enumerate(image_order)}
    _check_refs(annotation_file, ann_cats, column, "category id", "categories")
    _check_refs(annotation_file, ann_images, row, "image id", "images")
    labels = label_matrix(len(image_ids), len(cat_ids), [row[i] for i in ann_images], [column[k] for k in ann_cats])
    names = [files[k] for k in image_order]
    dropped = 0
    if not keep_empty:
        names, labels, dropped = drop_unlabelled(names, labels)
    return names, labels, [cat_names[k] for k in cat_order], dropped


@register_dataset("coco")
def coco(split: str, *, root: str | Path | None, image_size: int = 448, n: int | None = None, seed: int = 0,
         keep_empty: bool = True, bad_images: str = "error") -> ImageFiles:
    """MS-COCO 2014, ``split`` in train (train2014) / test (val2014). ``n`` > 0 keeps a seeded
    random subset of that many images."""
    root = dataset_root("coco", root, split, COCO_SPLITS, "the folder holding annotations/ and train2014/, val2014/")
    folder = COCO_SPLITS[split]
    names, labels, classes, dropped = coco_labels(root / "annotations" / f"instances_{folder}.json", keep_empty)
    images = first_existing([root / folder, root / "images" / folder], "COCO images", "folder")
    return ImageFiles(f"coco/{folder}", [images / f for f in names], labels, classes, image_size=image_size,
                      bad_images=bad_images, n=n, seed=seed,
                      info={"keep_empty": keep_empty, "dropped_without_annotations": dropped})
