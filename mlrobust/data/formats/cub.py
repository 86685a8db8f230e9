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

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..registry import register_dataset
from ._files import ENCODING, DatasetFormatError, ImageFiles, dataset_root, first_existing, read_lines, require_file

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


_FIELDS = "'image_id attribute_id is_present certainty_id time'"
_COLUMNS = ("image id", "attribute id", "is_present", "certainty id")


def _line_of_row(path: Path, row: int) -> int:
    """The 1-based line of the ``row``-th non-blank line (blank lines are skipped by the
    fast reader); read again only on the way to an error message."""
    with open(path, encoding=ENCODING) as f:
        seen = -1
        for line, text in enumerate(f, 1):
            seen += bool(text.strip())
            if seen == row:
                return line
    return row + 1


def _first_malformed_line(path: Path) -> DatasetFormatError:
    """The error for the first line the fast reader could not take (fewer than four fields,
    a non-integer, a number past 32 bits): found by reading the file line by line, only when
    it is malformed."""
    with open(path, encoding=ENCODING) as f:
        for line, text in enumerate(f, 1):
            fields = text.split()
            if not fields:
                continue
            if len(fields) < 4:
                return DatasetFormatError(f"{path}, line {line}: expected {_FIELDS}, got {text.strip()!r}")
            for name, value in zip(_COLUMNS, fields):
                if not -2**31 <= _int(path, line, value) < 2**31:
                    return DatasetFormatError(f"{path}, line {line}: {name} {value} is out of range")
    return DatasetFormatError(f"{path}: could not be read as rows of {_FIELDS}")


def _read_attribute_table(path: Path) -> np.ndarray:
    """The first four fields of every line as int32 (N, 4), read by numpy's C parser: about
    1.4 s and 180 MB for a file of the official size (3.7 million lines, 75 MB), where a
    Python list of ints took 13.5 s and 500 MB. The official file's few lines with a sixth
    field are fine (only the first four fields are read)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # an empty file: refused just below
            table = np.loadtxt(path, dtype=np.int32, usecols=(0, 1, 2, 3), comments=None, ndmin=2,
                               encoding=ENCODING)
    except (ValueError, OverflowError):
        raise _first_malformed_line(path) from None
    if not len(table):
        raise DatasetFormatError(f"{path}: no attribute labels (expected lines of {_FIELDS})")
    return table


def _check_column(path: Path, table: np.ndarray, col: int, name: str, low: int, high: int) -> None:
    """Every value of one column in [low, high]; an error names the line and the value."""
    bad = np.flatnonzero((table[:, col] < low) | (table[:, col] > high))
    if len(bad):
        row = int(bad[0])
        raise DatasetFormatError(f"{path}, line {_line_of_row(path, row)}: {name} {int(table[row, col])} is outside "
                                 f"{low}..{high}")


def cub_attributes(cub: Path, not_visible: str = "absent", n_attributes: int | None = None) -> tuple[Tensor, Tensor]:
    """(labels (N, n_attributes) int8, image ids) from ``attributes/image_attribute_labels.txt``,
    rows in image-id order. Attribute ids must lie in 1..``n_attributes`` (by default the
    number of names in ``attributes.txt``): an id of 0 or less would wrap to the last columns,
    and a huge one would allocate gigabytes. ``is_present`` must be 0 or 1, ``certainty_id``
    1..4, and an (image, attribute) pair may appear once; a pair that never appears is
    unknown (0)."""
    if not_visible not in ("absent", "unknown"):
        raise ValueError(f"not_visible must be 'absent' or 'unknown', got {not_visible!r}")
    n_attr = len(_attribute_names(cub)) if n_attributes is None else n_attributes
    path = require_file(cub / "attributes" / "image_attribute_labels.txt", "CUB attribute labels")
    table = _read_attribute_table(path)
    for col, (low, high) in enumerate(((1, np.iinfo(np.int32).max), (1, n_attr), (0, 1), (1, 4))):
        _check_column(path, table, col, _COLUMNS[col], low, high)
    image_ids, rows = np.unique(table[:, 0], return_inverse=True)
    cells = rows.reshape(-1).astype(np.int64) * n_attr + (table[:, 1] - 1)
    _check_unique_pairs(path, cells)
    label = np.where(table[:, 2] == 1, 1, -1).astype(np.int8)
    if not_visible == "unknown":
        label[table[:, 3] == 1] = 0
    labels = np.zeros(len(image_ids) * n_attr, dtype=np.int8)
    labels[cells] = label
    return torch.from_numpy(labels.reshape(len(image_ids), n_attr)), torch.from_numpy(image_ids.astype(np.int64))


def _check_unique_pairs(path: Path, cells: np.ndarray) -> None:
    """An (image, attribute) pair given twice would let the later line win silently."""
    counts = np.bincount(cells)
    if (counts > 1).any():
        twice = np.flatnonzero(counts[cells] > 1)
        first, second = twice[cells[twice] == cells[twice[0]]][:2].tolist()
        raise DatasetFormatError(f"{path}, line {_line_of_row(path, second)}: repeats the image and attribute of "
                                 f"line {_line_of_row(path, first)}")


def _attribute_names(cub: Path) -> list[str]:
    path = first_existing([cub / "attributes" / "attributes.txt", cub / "attributes.txt",
                           cub.parent / "attributes.txt"], "CUB attribute names")
    return [row[1] for row in _table(path, "CUB attribute names", 2)]


@register_dataset("cub")
def cub(split: str, *, root: str | Path | None, image_size: int = 448, n: int | None = None, seed: int = 0,
        not_visible: str = "absent", bad_images: str = "error") -> ImageFiles:
    """CUB-200-2011 attributes, ``split`` in train / test (the official split)."""
    root = dataset_root("cub", root, split, ("train", "test"), "the CUB_200_2011 folder or its parent")
    cub_dir = root / "CUB_200_2011" if (root / "CUB_200_2011").is_dir() else root
    images = {i: name for i, name in _id_table(cub_dir / "images.txt", "CUB image list")}
    species = dict(_id_table(cub_dir / "image_class_labels.txt", "CUB image classes", int_values=True))
    is_train = {i: t == "1" for i, t in _id_table(cub_dir / "train_test_split.txt", "CUB split")}
    class_names = [name for _, name in _table(cub_dir / "classes.txt", "CUB class names", 2)]
    names = _attribute_names(cub_dir)
    labels, ids = cub_attributes(cub_dir, not_visible, len(names))
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
