"""CUB-200-2011 attributes (Wah et al., 2011): 312 binary attributes of bird photographs.

The multi-label task of the IMCL paper (Huynh & Elhamifar, 2020): predict each image's 312
attribute vector (present 1 / absent -1); the bird species (200 classes) comes along as side
information in ``dataset.class_index`` with names in ``dataset.class_names``.

Layout: ``root`` is ``CUB_200_2011`` or the folder holding it::

    images.txt, image_class_labels.txt, classes.txt, train_test_split.txt, images/
    attributes/image_attribute_labels.txt   (image_id attribute_id is_present certainty_id time)
    attributes.txt or attributes/attributes.txt   (attribute_id name; the archive puts it beside CUB_200_2011/)

A handful of lines of ``image_attribute_labels.txt`` in the official archive carry an extra
field; only the first four fields are read. Annotators marked some attributes "not visible"
(certainty 1): by default these count as absent, as in the paper's presence/absence vectors;
``not_visible="unknown"`` makes them unknown (0) instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..registry import register_dataset
from ._files import DatasetFormatError, ImageFiles, dataset_root, first_existing, read_lines, require_file

__all__ = ["cub_attributes"]


def _table(path: Path, what: str, fields: int) -> list[list[str]]:
    """Whitespace-separated rows of a CUB text file, each with at least ``fields`` fields."""
    rows = [line.split(maxsplit=fields - 1) for line in read_lines(path, what)]
    for line, row in enumerate(rows, 1):
        if len(row) < fields:
            raise DatasetFormatError(f"{path}, line {line}: expected {fields} fields ({what}), got {row}")
    return rows


def _id_table(path: Path, what: str, int_values: bool = False) -> list[tuple[int, Any]]:
    """Rows ``<integer id> <value>`` of a CUB text file (values as integers if asked)."""
    rows = _table(path, what, 2)
    return [(_int(path, line, i), _int(path, line, v) if int_values else v) for line, (i, v) in enumerate(rows, 1)]


def _int(path: Path, line: int, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise DatasetFormatError(f"{path}, line {line}: expected an integer, got {value!r}") from None


def cub_attributes(cub: Path, not_visible: str = "absent") -> tuple[Tensor, Tensor]:
    """(labels (N, 312) int8, image ids) from ``attributes/image_attribute_labels.txt``,
    rows in image-id order."""
    path = require_file(cub / "attributes" / "image_attribute_labels.txt", "CUB attribute labels")
    values: list[int] = []
    with open(path, encoding="utf-8") as f:
        for line, text in enumerate(f, 1):
            fields = text.split()
            if not fields:
                continue
            if len(fields) < 4:
                raise DatasetFormatError(f"{path}, line {line}: expected 'image_id attribute_id is_present "
                                         f"certainty_id time', got {text.strip()!r}")
            values.extend(_int(path, line, v) for v in fields[:4])
    table = torch.tensor(values, dtype=torch.long).view(-1, 4)
    image_ids, rows = torch.unique(table[:, 0], return_inverse=True)
    n_attr = int(table[:, 1].max()) if len(table) else 0
    present = table[:, 2] == 1
    label = torch.where(present, 1, -1)
    if not_visible == "unknown":
        label = torch.where(table[:, 3] == 1, 0, label)
    elif not_visible != "absent":
        raise ValueError(f"not_visible must be 'absent' or 'unknown', got {not_visible!r}")
    labels = torch.zeros(len(image_ids), n_attr, dtype=torch.int8)
    labels[rows, table[:, 1] - 1] = label.to(torch.int8)
    return labels, image_ids


def _attribute_names(cub: Path) -> list[str]:
    path = first_existing([cub / "attributes" / "attributes.txt", cub / "attributes.txt",
                           cub.parent / "attributes.txt"], "CUB attribute names")
    return [row[1] for row in _table(path, "CUB attribute names", 2)]


@register_dataset("cub")
def cub(split: str, *, root: str | Path | None, image_size: int = 448, n: int | None = None, seed: int = 0,
        cache: bool | None = None, not_visible: str = "absent", bad_images: str = "error") -> ImageFiles:
    """CUB-200-2011 attributes, ``split`` in train / test (the official split)."""
    root = dataset_root("cub", root, split, ("train", "test"), "the CUB_200_2011 folder or its parent")
    cub_dir = root / "CUB_200_2011" if (root / "CUB_200_2011").is_dir() else root
    images = {i: name for i, name in _id_table(cub_dir / "images.txt", "CUB image list")}
    species = dict(_id_table(cub_dir / "image_class_labels.txt", "CUB image classes", int_values=True))
    is_train = {i: t == "1" for i, t in _id_table(cub_dir / "train_test_split.txt", "CUB split")}
    class_names = [name for _, name in _table(cub_dir / "classes.txt", "CUB class names", 2)]
    labels, ids = cub_attributes(cub_dir, not_visible)
    names = _attribute_names(cub_dir)
    if len(names) != labels.shape[1]:
        raise DatasetFormatError(f"CUB: {len(names)} attribute names but attribute ids up to {labels.shape[1]}")
    missing = [i for i in ids.tolist() if i not in images or i not in species or i not in is_train]
    if missing:
        raise DatasetFormatError(f"CUB: image id {missing[0]} has attribute labels but is missing from images.txt, "
                                 "image_class_labels.txt or train_test_split.txt")
    want = torch.tensor([is_train[i] == (split == "train") for i in ids.tolist()], dtype=torch.bool)
    ids = ids[want]
    class_index = torch.tensor([species[i] - 1 for i in ids.tolist()], dtype=torch.long)
    dataset = ImageFiles(f"cub/{split}", [cub_dir / "images" / images[i] for i in ids.tolist()], labels[want],
                         names, image_size=image_size, bad_images=bad_images, n=n, seed=seed,
                         info={"not_visible": not_visible}, side={"class_index": class_index})
    dataset.class_names = class_names
    return dataset
