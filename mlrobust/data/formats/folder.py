"""Bring your own data: image files listed in a CSV or JSON-lines file with their labels.

``root`` holds one annotation file per split, ``train.csv`` / ``test.csv`` / ``val.csv`` (or
``.jsonl``), and optionally ``classes.txt`` (one class name per line, the column order).
``file=PATH`` reads one file for any split instead. Image paths are relative to the
annotation file's folder (absolute paths work too). Four forms are read:

* CSV, one column per class: header ``image,cat,dog,...``; cells 1 (present), -1 (absent),
  0 or empty (unknown)::

      image,cat,dog,car
      img/0001.jpg,1,-1,
      img/0002.jpg,-1,1,1

* CSV, a list of positives: header ``image,labels``; ``labels`` holds the present classes
  separated by ``;``, every other class is absent::

      image,labels
      img/0001.jpg,cat;car

* JSON lines with a dict (unlisted classes unknown) or a list of positives (others absent)::

      {"image": "img/0001.jpg", "labels": {"cat": 1, "dog": -1}}
      {"image": "img/0002.jpg", "labels": ["dog", "car"]}

Classes come from ``classes=``, else ``classes.txt``, else the header of a one-column-per-class
``train.csv``, else the sorted set of names over every split file in ``root``: all splits
share one column order.

Files are UTF-8, with or without a byte-order mark (Excel's "CSV UTF-8" loads). A file that
lists no image, a repeated or unnamed class column, a label that is not a class name (a
string) and a cell that is not 1, -1, 0 or empty are errors naming the file and line.

A file whose known cells are all 1 (the other cells 0 or empty, no -1) is refused: most
likely 0 was meant as "absent", which here means "unknown". Write -1 for absent (or use the
list form), or pass ``zero_means="unknown"`` (``data.dataset_args``) when the 0s really are
unknown, e.g. positives-only labels.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

from ..registry import register_dataset
from ..._validate import ZERO_MEANS, looks_zero_one
from ._files import (ENCODING, DatasetFormatError, ImageFiles, check_unique_columns, first_existing, label_matrix,
                     read_lines, require_dir, require_file)

__all__ = ["read_label_file"]

_SPLIT_FILES = ("train", "val", "test")
_CELL = {"1": 1, "1.0": 1, "-1": -1, "-1.0": -1, "0": 0, "0.0": 0, "": 0}

Record = tuple[str, dict[str, int] | list[str]]


def _read_csv(path: Path) -> tuple[list[Record], list[str] | None]:
    """Records and, for the one-column-per-class form, the header's class names."""
    with open(path, newline="", encoding=ENCODING) as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header or header[0].strip() != "image" or len(header) < 2:
            raise DatasetFormatError(f"{path}: the header must start with 'image' followed by class columns "
                                     f"or a 'labels' column, got {header}")
        check_unique_columns(path, header)
        listed = [h.strip() for h in header[1:]] == ["labels"]
        records: list[Record] = []
        for row in reader:
            if not row:
                continue
            line = reader.line_num
            if len(row) != len(header):
                raise DatasetFormatError(f"{path}, line {line}: {len(row)} cells, the header has {len(header)}")
            if listed:
                records.append((row[0], [c.strip() for c in row[1].split(";") if c.strip()]))
                continue
            bad = [c for c in row[1:] if c.strip() not in _CELL]
            if bad:
                raise DatasetFormatError(f"{path}, line {line}: label cells must be 1, -1, 0 or empty, got {bad[0]!r}")
            records.append((row[0], {h.strip(): _CELL[c.strip()] for h, c in zip(header[1:], row[1:])}))
    return records, None if listed else [h.strip() for h in header[1:]]


def _read_jsonl(path: Path) -> list[Record]:
    records: list[Record] = []
    with open(path, encoding=ENCODING) as f:
        for line, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                item = json.loads(text)
            except json.JSONDecodeError as err:
                raise DatasetFormatError(f"{path}, line {line}: not valid JSON ({err})") from None
            labels = item.get("labels") if isinstance(item, dict) else None
            if not isinstance(item, dict) or not isinstance(item.get("image"), str) \
                    or not isinstance(labels, dict | list):
                raise DatasetFormatError(f"{path}, line {line}: expected {{\"image\": PATH, \"labels\": "
                                         "{NAME: 1|-1|0, ...} or [NAME, ...]}")
            _check_json_labels(labels, path, line)
            records.append((item["image"], labels))
    return records


def _check_json_labels(labels: dict[str, object] | list[object], path: Path, line: int) -> None:
    """A list must hold class names; a dict's values must be the integers 1, -1 or 0 (not
    true/false, not 1.0, which JSON would otherwise let through as 1)."""
    if isinstance(labels, list):
        bad = [v for v in labels if not isinstance(v, str) or not v.strip()]
        if bad:
            raise DatasetFormatError(f"{path}, line {line}: \"labels\" must list class names (strings), "
                                     f"got {bad[0]!r}")
        return
    bad_item = next(((k, v) for k, v in labels.items() if type(v) is not int or v not in (1, -1, 0)), None)
    if bad_item is not None:
        raise DatasetFormatError(f"{path}, line {line}: label of class {bad_item[0]!r} must be 1, -1 or 0, "
                                 f"got {bad_item[1]!r}")


def read_label_file(path: Path) -> tuple[list[Record], list[str] | None]:
    """The records of a CSV or JSON-lines annotation file (and the CSV header's classes)."""
    require_file(path, "annotation file")
    if path.suffix == ".csv":
        records, header = _read_csv(path)
    elif path.suffix in (".jsonl", ".json"):
        records, header = _read_jsonl(path), None
    else:
        raise DatasetFormatError(f"{path}: annotation files must end in .csv or .jsonl")
    if not records:
        raise DatasetFormatError(f"{path}: no image listed (a header or blank lines only); expected one image "
                                 "per line")
    return records, header


def _names(records: list[Record]) -> set[str]:
    return {name for _, labels in records for name in labels}


def _labels(records: list[Record], classes: list[str], path: Path) -> Any:
    column = {c: j for j, c in enumerate(classes)}
    unknown = sorted(_names(records) - set(column))
    if unknown:
        raise DatasetFormatError(f"{path}: unknown class(es) {unknown[:5]}; the classes are {classes[:20]}")
    rows, cols, vals, listed = [], [], [], []
    for i, (_, labels) in enumerate(records):
        if isinstance(labels, list):
            listed.append(i)
            items = [(name, 1) for name in labels]
        else:
            items = list(labels.items())
        rows += [i] * len(items)
        cols += [column[name] for name, _ in items]
        vals += [v for _, v in items]
    y = label_matrix(len(records), len(classes), rows, cols, vals, fill=0)
    if listed:  # a list of positives says every other class is absent
        y[listed] = y[listed].masked_fill(y[listed] == 0, -1)
    return y


def _split_files(root: Path) -> list[Path]:
    return [root / f"{split}{suffix}" for split in _SPLIT_FILES for suffix in (".csv", ".jsonl")
            if (root / f"{split}{suffix}").is_file()]


def _classes(root: Path, classes: list[str] | str | None, path: Path, records: list[Record],
             header: list[str] | None) -> list[str]:
    """One column order for every split of ``root``: ``classes``, else ``classes.txt``, else
    the header of a one-column-per-class ``train.csv``, else the sorted names of all split
    files (a lone ``file=`` outside them: the header of that file, else its sorted names)."""
    if isinstance(classes, list):
        return list(classes)
    if isinstance(classes, str):
        return read_lines(Path(classes), "class list")
    if (root / "classes.txt").is_file():
        return read_lines(root / "classes.txt", "class list")
    files = _split_files(root)
    if path not in files:
        return header if header is not None else sorted(_names(records))
    if root / "train.csv" in files:
        train_header = read_label_file(root / "train.csv")[1]
        if train_header is not None:
            return train_header
    return sorted(set().union(*(_names(read_label_file(f)[0]) for f in files)))


def _zero_one_check(labels: Any, path: Path, zero_means: str | None) -> None:
    """Refuse a file whose known cells are only 1s (0s or empty elsewhere, no -1): see the
    module docstring."""
    if zero_means not in ZERO_MEANS:
        raise ValueError(f"folder: zero_means must be one of {ZERO_MEANS}, got {zero_means!r}")
    if zero_means is None and looks_zero_one(labels):
        raise DatasetFormatError(
            f"{path}: every known label is 1 and the other cells are 0 or empty (no -1); here 0 means unknown, "
            "not absent. Write -1 for absent classes (or list the present classes in a 'labels' column), or pass "
            "zero_means='unknown' (data.dataset_args) if the 0s really are unknown")


def _unique_classes(names: list[str], source: str) -> list[str]:
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if repeated:
        raise DatasetFormatError(f"{source}: class(es) {repeated[:5]} listed more than once")
    return names


@register_dataset("folder")
def folder(split: str, *, root: str | Path | None, image_size: int = 224, n: int | None = None, seed: int = 0,
           file: str | None = None, classes: list[str] | str | None = None, bad_images: str = "error",
           zero_means: str | None = None) -> ImageFiles:
    """Your own images and labels; see the module docstring for the formats and for
    ``zero_means``."""
    if root is None and file is None:
        raise ValueError("folder needs data.root (holding train.csv, test.csv, ...) or file=PATH")
    root = require_dir(Path(root), "folder dataset root") if root is not None else Path(file).parent
    path = Path(file) if file else first_existing([root / f"{split}.csv", root / f"{split}.jsonl"],
                                                   "folder dataset annotations (or pass file=PATH)")
    records, header = read_label_file(path)
    names = _unique_classes(_classes(root, classes, path, records, header), "folder dataset classes")
    labels = _labels(records, names, path)
    _zero_one_check(labels, path, zero_means)
    base = path.parent
    return ImageFiles(f"folder/{path.name}", [base / p for p, _ in records], labels, names, image_size=image_size,
                      bad_images=bad_images, n=n, seed=seed, info={"file": str(path)})
