"""Open Images (Kuznetsova et al., 2020): human-verified image-level labels.

Open Images is partially labeled by nature: annotators verified some candidate labels of
each image as present (``Confidence`` 1) or absent (0) and never looked at the rest. So a
verified-present label is 1, a verified-absent label is -1 and every unlisted class is
unknown, 0 (if two sources disagree, present wins).

Layout under ``root`` (v4-v7 names; v3 keeps ``<split>/annotations-human.csv``)::

    root/class-descriptions.csv or oidv6-class-descriptions.csv   (LabelName, DisplayName)
    root/<split>-annotations-human-imagelabels[-boxable].csv       (ImageID, Source, LabelName, Confidence)
    root/oidv6-train-annotations-human-imagelabels.csv              (v6+ train)
    root/<split>/<ImageID>.jpg                                      (or root/images/<split>/...)

``split`` is train, val (``validation``) or test. ``labels_file`` and ``images`` override
the file and folder. ``classes`` sets the label columns: a list of MIDs or display names, or a
text file with one MID per line; by default v3's ``classes-trainable.txt`` (the 5,000
classes of the IMCL paper) when ``root`` has it, else every class of the class descriptions
(the same columns for every split). Only images with at least one verified label on those
classes are kept; rows of other classes are skipped while the CSV is read. The label matrix
is dense int8, so thousands of classes over millions of images need a class subset; the
loader refuses matrices over ``max_label_bytes``, and checks it while it reads: it stops at
the first line whose new image would cross it, not after parsing a multi-gigabyte file.
"""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from ..registry import register_dataset
from ._files import (ENCODING, DatasetFormatError, ImageFiles, dataset_root, first_existing, read_lines, read_rows,
                     require_dir, require_file)

__all__ = ["openimages_labels", "class_descriptions"]

SPLIT_FOLDERS = {"train": "train", "val": "validation", "test": "test"}


def class_descriptions(path: Path) -> dict[str, str]:
    """MID -> display name, from a class-descriptions CSV (with or without its header)."""
    require_file(path, "Open Images class descriptions")
    out: dict[str, str] = {}
    with open(path, newline="", encoding=ENCODING) as f:
        for line, row in enumerate(csv.reader(f), 1):
            if not row or (line == 1 and row[0] == "LabelName"):
                continue
            if len(row) < 2:
                raise DatasetFormatError(f"{path}, line {line}: expected 'LabelName,DisplayName', got {row}")
            out[row[0]] = row[1]
    return out


def _label_file(root: Path, folder: str) -> Path:
    names = [f"{folder}-annotations-human-imagelabels.csv", f"{folder}-annotations-human-imagelabels-boxable.csv",
             f"oidv6-{folder}-annotations-human-imagelabels.csv", f"{folder}/annotations-human.csv"]
    return first_existing([root / name for name in names], f"Open Images human-verified labels of {folder}")


def _class_subset(classes: list[str] | str | None, names: dict[str, str], root: Path) -> list[str]:
    """The MIDs of the label columns. By default the trainable classes of ``root`` if it has a
    ``classes-trainable.txt`` (v3), else every described class: a fixed set, so that every
    split gets the same columns."""
    if classes is None:
        trainable = root / "classes-trainable.txt"
        classes = str(trainable) if trainable.is_file() else list(names)
    wanted = read_lines(Path(classes), "Open Images class list") if isinstance(classes, str | Path) else list(classes)
    by_name = {v: k for k, v in names.items()}
    mids = [c if c in names else by_name.get(c, "") for c in wanted]
    unknown = [c for c, m in zip(wanted, mids) if not m]
    if unknown:
        raise DatasetFormatError(f"Open Images: class(es) {unknown[:5]} are neither MIDs nor display names in the "
                                 "class descriptions")
    return mids


def openimages_labels(label_file: Path, names: dict[str, str], classes: list[str],
                      max_label_bytes: int) -> tuple[list[str], torch.Tensor, list[str]]:
    """(image ids, labels (N, C) in {1, 0, -1}, class MIDs) from a human-verified labels CSV."""
    images: dict[str, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    vals: list[int] = []
    column = {m: j for j, m in enumerate(classes)}
    max_images = max_label_bytes // max(len(classes), 1)  # known before the first line is read
    for line, row in read_rows(label_file, "Open Images labels", ["ImageID", "LabelName", "Confidence"]):
        mid, conf = row["LabelName"], row["Confidence"].strip()
        if mid not in names:
            raise DatasetFormatError(f"{label_file}, line {line}: label {mid!r} is not in the class descriptions")
        if conf not in ("0", "1", "0.0", "1.0"):
            raise DatasetFormatError(f"{label_file}, line {line}: Confidence must be 0 or 1, got {conf!r}")
        if mid not in column:  # outside the class subset: not even kept in memory
            continue
        rows.append(images.setdefault(row["ImageID"], len(images)))
        if len(images) > max_images:
            raise DatasetFormatError(
                f"{label_file}, line {line}: already {len(images)} images x {len(classes)} classes, more than "
                f"max_label_bytes={max_label_bytes} bytes ({max_label_bytes / 2**30:.2f} GiB) of labels; pass "
                "classes=[...] or a class list file to keep a subset, or raise max_label_bytes")
        cols.append(column[mid])
        vals.append(1 if conf.startswith("1") else -1)
    mids = list(classes)
    r, c, v = (torch.tensor(a, dtype=torch.long) for a in (rows, cols, vals))
    labels = torch.zeros(len(images), len(mids), dtype=torch.int8)
    labels[r[v < 0], c[v < 0]] = -1
    labels[r[v > 0], c[v > 0]] = 1  # after the negatives: a label verified both ways is present
    return list(images), labels, mids


@register_dataset("openimages")
def openimages(split: str, *, root: str | Path | None, image_size: int = 224, n: int | None = None, seed: int = 0,
               classes: list[str] | str | None = None, labels_file: str | None = None,
               images: str | None = None, max_label_bytes: int = 8 * 2**30, bad_images: str = "error") -> ImageFiles:
    """Open Images human-verified image-level labels, ``split`` in train / val / test."""
    root = dataset_root("openimages", root, split, SPLIT_FOLDERS, "the Open Images folder")
    folder = SPLIT_FOLDERS[split]
    descriptions = [root / name for name in ("class-descriptions.csv", "oidv6-class-descriptions.csv",
                                             "class-descriptions-boxable.csv")]
    names = class_descriptions(first_existing(descriptions, "Open Images class descriptions"))
    label_file = Path(labels_file) if labels_file else _label_file(root, folder)
    ids, labels, mids = openimages_labels(label_file, names, _class_subset(classes, names, root), max_label_bytes)
    image_dir = require_dir(Path(images), f"Open Images {split} images") if images else first_existing(
        [root / folder, root / "images" / folder], f"Open Images {split} images", "folder")
    dataset = ImageFiles(f"openimages/{folder}", [image_dir / f"{i}.jpg" for i in ids], labels,
                         [names[m] for m in mids], image_size=image_size, bad_images=bad_images, n=n, seed=seed,
                         info={"label_file": str(label_file)})
    dataset.mids = mids
    return dataset
