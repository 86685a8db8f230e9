"""NUS-WIDE (Chua et al., 2009): 81 concepts of Flickr images.

Two layouts are read:

* the official release (``layout="official"``)::

      root/ConceptsList/Concepts81.txt            (or root/Concepts81.txt)
      root/ImageList/TrainImagelist.txt, TestImagelist.txt   (Windows paths, e.g. actor\\0001_2124494179.jpg)
      root/Groundtruth/TrainTestLabels/Labels_<concept>_{Train,Test}.txt   (one 0/1 per image list line)
      root/Flickr/<folder>/<file>.jpg

* the CSV form used by the ASL code and its successors (``layout="csv"``): one file
  ``root/nus_wid_data.csv`` (or ``csv=PATH``) with columns ``filepath`` (relative to
  ``root``), ``label`` (a Python list literal of concept names, e.g. ``['sky', 'clouds']``)
  and ``split_name`` (``train`` or ``val``, the latter being the test split).

``layout="auto"`` picks the one present. Labels are 1 (concept tagged) or -1; about a fifth
of the images carry no concept at all: kept as all -1 rows, or dropped with ``keep_empty``.

The official label files hold one 0 or 1 per line, but not all of them: line 78,372 of
``Labels_lake_Train.txt`` reads ``-1130179``. By default (``malformed="error"``) any entry
other than 0 or 1 is an error naming the file, line and value; ``malformed="absent"`` reads
such entries as 0 (absent), warns with their count and first location, and reports the count
in ``dataset.info["malformed_labels"]``, so that the official train split can be used.
"""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import torch

from ..registry import register_dataset
from ._files import (DatasetFormatError, ImageFiles, dataset_root, drop_unlabelled, label_matrix, read_lines,
                     read_rows)

__all__ = ["nuswide_official", "nuswide_csv"]


def _concepts(root: Path) -> list[str] | None:
    for path in (root / "ConceptsList" / "Concepts81.txt", root / "Concepts81.txt"):
        if path.is_file():
            return read_lines(path, "NUS-WIDE concept list")
    return None


MALFORMED_POLICIES = ("error", "absent")


def _label_column(path: Path, n_images: int, part: str, malformed: str) -> tuple[torch.Tensor, list[tuple[int, str]]]:
    """One concept's 0/1 column and the (line, value) of its malformed entries (read as 0
    when ``malformed="absent"``, an error otherwise)."""
    values = read_lines(path, f"NUS-WIDE labels of {path.stem}")
    if len(values) != n_images:
        raise DatasetFormatError(f"{path}: expected {n_images} lines (one per image of "
                                 f"{part}Imagelist.txt), got {len(values)}")
    bad = [(i + 1, v) for i, v in enumerate(values) if v not in ("0", "1")]
    if bad and malformed == "error":
        line, value = bad[0]
        raise DatasetFormatError(f"{path}, line {line}: expected 0 or 1, got {value!r} ({len(bad)} such line(s) in "
                                 "this file; malformed='absent' reads them as absent)")
    return torch.tensor([v == "1" for v in values]), bad


def nuswide_official(root: Path, split: str,
                     malformed: str = "error") -> tuple[list[Path], torch.Tensor, list[str], int]:
    """(image paths, labels (N, 81), concepts, number of malformed entries read as absent)
    from the official lists and label files."""
    if malformed not in MALFORMED_POLICIES:
        raise ValueError(f"nuswide: malformed must be one of {MALFORMED_POLICIES}, got {malformed!r}")
    concepts = _concepts(root)
    if concepts is None:
        raise DatasetFormatError(f"NUS-WIDE: {root / 'ConceptsList' / 'Concepts81.txt'} does not exist")
    part = {"train": "Train", "test": "Test"}[split]
    images = read_lines(root / "ImageList" / f"{part}Imagelist.txt", "NUS-WIDE image list")
    columns, malformed_at = [], []
    for concept in concepts:
        path = root / "Groundtruth" / "TrainTestLabels" / f"Labels_{concept}_{part}.txt"
        column, bad = _label_column(path, len(images), part, malformed)
        columns.append(column)
        malformed_at += [(path, line, value) for line, value in bad]
    if malformed_at:
        path, line, value = malformed_at[0]
        warnings.warn(f"NUS-WIDE {split}: {len(malformed_at)} malformed label entr(ies) read as absent, "
                      f"first {path}, line {line}: {value!r}", stacklevel=3)
    present = torch.stack(columns, 1) if columns else torch.zeros(len(images), 0, dtype=torch.bool)
    paths = [root / "Flickr" / Path(*line.replace("\\", "/").split("/")) for line in images]
    return paths, torch.where(present, 1, -1).to(torch.int8), concepts, len(malformed_at)


def nuswide_csv(root: Path, split: str, csv: Path | None = None) -> tuple[list[Path], torch.Tensor, list[str]]:
    """(image paths, labels, concepts) from the CSV form; concepts from Concepts81.txt when
    present, else the sorted set of names in the file."""
    path = csv or root / "nus_wid_data.csv"
    want = {"train": "train", "test": "val"}[split]
    rows: list[tuple[str, list[str]]] = []
    seen: set[str] = set()
    for line, row in read_rows(path, "the NUS-WIDE CSV", ["filepath", "label", "split_name"]):
        try:
            names = ast.literal_eval(row["label"]) if row["label"].strip() else []
        except (ValueError, SyntaxError):
            names = None
        if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
            raise DatasetFormatError(f"{path}, line {line}: column 'label' must be a list of concept names "
                                     f"like ['sky', 'clouds'], got {row['label']!r}")
        seen.update(names)
        if row["split_name"] == want:
            rows.append((row["filepath"], list(names)))
    concepts = _concepts(root) or sorted(seen)
    column = {c: j for j, c in enumerate(concepts)}
    unknown = sorted(seen - set(column))
    if unknown:
        raise DatasetFormatError(f"{path}: concept(s) {unknown[:5]} are not in Concepts81.txt")
    pairs = [(i, column[n]) for i, (_, names) in enumerate(rows) for n in names]
    labels = label_matrix(len(rows), len(concepts), [i for i, _ in pairs], [j for _, j in pairs])
    return [root / p for p, _ in rows], labels, concepts


@register_dataset("nuswide")
def nuswide(split: str, *, root: str | Path | None, image_size: int = 448, n: int | None = None, seed: int = 0,
            layout: str = "auto", csv: str | None = None, keep_empty: bool = True, bad_images: str = "error",
            malformed: str = "error") -> ImageFiles:
    """NUS-WIDE, ``split`` in train / test; ``malformed`` as in the module docstring (the
    official layout only: the CSV form has no such entries)."""
    root = dataset_root("nuswide", root, split, ("train", "test"), "the NUS-WIDE folder")
    if malformed not in MALFORMED_POLICIES:
        raise ValueError(f"nuswide: malformed must be one of {MALFORMED_POLICIES}, got {malformed!r}")
    if layout == "auto":
        layout = "csv" if (csv or (root / "nus_wid_data.csv").is_file()) else "official"
    n_malformed = 0
    if layout == "official":
        paths, labels, concepts, n_malformed = nuswide_official(root, split, malformed)
    elif layout == "csv":
        paths, labels, concepts = nuswide_csv(root, split, Path(csv) if csv else None)
    else:
        raise ValueError(f"nuswide layout must be 'auto', 'official' or 'csv', got {layout!r}")
    dropped = 0
    if not keep_empty:
        paths, labels, dropped = drop_unlabelled(paths, labels)
    return ImageFiles(f"nuswide/{split}", paths, labels, concepts, image_size=image_size, bad_images=bad_images,
                      n=n, seed=seed, info={"layout": layout, "dropped_without_labels": dropped,
                            "malformed_labels": n_malformed})
