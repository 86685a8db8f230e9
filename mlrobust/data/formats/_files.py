"""What every real-dataset loader shares: images as files or arrays on disk, labels in memory.

A loader parses its annotation files into a label matrix (N, C) int8 (1 present, -1 absent,
0 unknown) and a list of image files, without decoding a single image, so label protocols
and statistics run on labels alone. Images are decoded only in ``__getitem__`` (in DataLoader
workers) with Pillow, converted to RGB and resized to a square ``image_size`` x ``image_size``, the
resize the papers' pipelines use (ASL, Durand et al.: no aspect-preserving crop at test time).

Bad input policy:

* missing folders, missing or malformed annotation files, unknown class names: a
  :class:`DatasetFormatError` naming the file (and line) and what was expected;
* image files: ``bad_images="error"`` (default) raises, naming the file, when an image is
  missing at construction or cannot be decoded when read; ``bad_images="skip"`` decodes every
  image once at construction (at 1/8 scale for JPEGs, with a progress bar, the answer cached
  by file list: see ``_imagecheck``), drops the missing, unreadable and truncated ones and
  lists them in ``dataset.skipped``, with the count in ``dataset.info``;
* an annotation file that lists no image at all is an error, not an empty dataset.

Text files are read as UTF-8 with an optional byte-order mark (``utf-8-sig``), so a CSV saved
by Excel as "CSV UTF-8" loads. A 0 in a loader's label matrix is what its format says it is
(unknown for Open Images' unverified classes, VOC's difficult-only classes, ...), so the
matrices are checked with ``zero_means="unknown"``; the ``folder`` loader, whose users write
the 0s themselves, checks its files for the 0/1 ambiguity on its own.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..._validate import check_labels
from ..dataset import DatasetBase
from ._imagecheck import unreadable_images

__all__ = ["DatasetFormatError", "dataset_root", "ImageFiles", "ArrayImages", "require_dir", "require_file",
           "read_rows", "read_lines", "label_matrix", "subsample", "first_existing", "drop_unlabelled",
           "check_unique_columns", "BAD_IMAGE_POLICIES", "ENCODING"]

BAD_IMAGE_POLICIES = ("error", "skip")
#: Every text file is read with this codec: UTF-8, with the byte-order mark Excel writes skipped.
ENCODING = "utf-8-sig"
log = logging.getLogger(__name__)


class DatasetFormatError(ValueError):
    """A dataset on disk is not in the layout or format its loader expects."""


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetFormatError(f"{what}: folder {path} does not exist")
    return path


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DatasetFormatError(f"{what}: file {path} does not exist")
    return path


def dataset_root(name: str, root: str | Path | None, split: str, splits: Sequence[str], hint: str) -> Path:
    """Check a loader's ``root`` (given, an existing folder) and ``split`` (one of ``splits``)."""
    if root is None:
        raise ValueError(f"{name} needs data.root: {hint}")
    if split not in splits:
        raise ValueError(f"{name} has splits {sorted(splits)}, got {split!r}")
    return require_dir(Path(root), f"{name} root")


def first_existing(candidates: Sequence[Path], what: str, kind: str = "file") -> Path:
    """The first of ``candidates`` that exists (a file or a folder), else an error listing them."""
    for path in candidates:
        if (path.is_dir() if kind == "folder" else path.is_file()):
            return path
    raise DatasetFormatError(f"{what}: no {kind} among {[str(p) for p in candidates]}")


def drop_unlabelled(paths: list[Path], labels: Tensor) -> tuple[list[Path], Tensor, int]:
    """Remove the images without any present label; returns the rest and how many went."""
    has = (labels == 1).any(1)
    return [p for p, k in zip(paths, has.tolist()) if k], labels[has], int((~has).sum())


def read_lines(path: Path, what: str) -> list[str]:
    """The non-empty lines of a text file, stripped."""
    require_file(path, what)
    with open(path, encoding=ENCODING) as f:
        return [line.strip() for line in f if line.strip()]


def check_unique_columns(path: Path, header: Sequence[str]) -> None:
    """A CSV header's column names must be non-empty and distinct: with a repeated name, one
    of the columns would be silently ignored."""
    names = [h.strip() for h in header]
    seen: dict[str, int] = {}
    for j, name in enumerate(names, 1):
        if not name:
            raise DatasetFormatError(f"{path}, line 1: column {j} of the header has no name")
        if name in seen:
            raise DatasetFormatError(f"{path}, line 1: column {name!r} appears twice in the header "
                                     f"(columns {seen[name]} and {j}); each column name must be unique")
        seen[name] = j


def read_rows(path: Path, what: str, columns: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows of a CSV file with a header that must hold ``columns``; yields (line number, row)."""
    require_file(path, what)
    f = open(path, newline="", encoding=ENCODING)
    with f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetFormatError(f"{path}: header {reader.fieldnames} lacks the column(s) {missing} of {what}")
        check_unique_columns(path, reader.fieldnames or [])
        for row in reader:
            yield reader.line_num, row


def label_matrix(n_rows: int, n_cols: int, rows: Sequence[int], cols: Sequence[int],
                 values: Sequence[int] | int = 1, fill: int = -1) -> Tensor:
    """An int8 (n_rows, n_cols) matrix filled with ``fill`` and ``values`` at (rows, cols)."""
    labels = torch.full((n_rows, n_cols), fill, dtype=torch.int8)
    if len(rows):
        v = torch.as_tensor(values, dtype=torch.int8)
        labels[torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)] = v
    return labels


def subsample(n_total: int, n: int | None, seed: int) -> Tensor | None:
    """The indices of a seeded random subset of ``n`` items (sorted), or None for all."""
    if n is None or n <= 0 or n >= n_total:
        return None
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n_total, generator=g)[:n].sort().values


def resize_square(images: Tensor, size: int) -> Tensor:
    """uint8 (B, 3, H, W) -> uint8 (B, 3, size, size), antialiased bilinear."""
    if images.shape[-2:] == (size, size):
        return images
    x = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8)


def _decode(path: Path, size: int) -> Tensor:
    """An image file as uint8 (3, size, size) RGB, with Pillow: a JPEG is decoded at the
    smallest DCT scale that still covers ``size`` (``draft``), which makes downscaling large
    photos several times cheaper, then resized with an antialiased bilinear filter."""
    from PIL import Image

    with Image.open(path) as im:
        im.draft("RGB", (size, size))
        im = im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        array = np.asarray(im, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


class _Labelled(DatasetBase):
    """Labels, classes and a short description shared by the file and array datasets."""

    labels: Tensor
    classes: list[str]
    name: str
    info: dict[str, Any]

    def _set_labels(self, labels: Tensor, classes: list[str]) -> None:
        # each loader's format defines its 0s (see the module docstring)
        check_labels(labels, f"{self.name} labels", num_classes=len(classes), zero_means="unknown")
        self.labels, self.classes = labels.to(torch.int8), list(classes)

    def __repr__(self) -> str:
        pos = (self.labels == 1).sum(1).float()
        return (f"{type(self).__name__}({self.name}: {len(self)} images, {len(self.classes)} classes, "
                f"{pos.mean().item() if len(pos) else 0:.2f} positives/image, "
                f"{(self.labels == 0).float().mean().item() if len(pos) else 0:.1%} unknown)")


class ImageFiles(_Labelled):
    """Images stored as files (JPEG, PNG, ...), with their labels.

    Items are ``(uint8 (3, S, S) image, index)``; ``paths`` holds the files in label-row order.
    Batches are decoded item by item in DataLoader workers (``in_memory`` False).
    """

    kind = "images"
    in_memory = False

    def __init__(self, name: str, paths: Sequence[Path], labels: Tensor, classes: list[str], *,
                 image_size: int, bad_images: str = "error", n: int | None = None, seed: int = 0,
                 info: dict[str, Any] | None = None, side: dict[str, Tensor] | None = None) -> None:
        """``side`` holds per-image side information (row-aligned tensors, e.g. CUB's bird
        class), kept aligned through subsampling and skipping and set as attributes."""
        if bad_images not in BAD_IMAGE_POLICIES:
            raise ValueError(f"bad_images must be one of {BAD_IMAGE_POLICIES}, got {bad_images!r}")
        if len(paths) != labels.shape[0]:
            raise ValueError(f"{name}: {len(paths)} image files but {labels.shape[0]} label rows")
        if not len(paths):
            where = f" ({info['file']})" if info and "file" in info else ""
            raise DatasetFormatError(f"{name}: the annotations list no image{where}")
        self.name, self.image_size, self.bad_images = name, int(image_size), bad_images
        side = dict(side or {})
        keep = subsample(len(paths), n, seed)
        if keep is not None:
            log.info("%s: a seeded subset of %d of its %d images (n=0 keeps all)", name, len(keep), len(paths))
            paths, labels = [paths[i] for i in keep.tolist()], labels[keep]
            side = {k: v[keep] for k, v in side.items()}
        self.paths = [Path(p) for p in paths]
        self.skipped: list[Path] = []
        self._check_files()
        if self.skipped:
            bad = set(self.skipped)
            ok = torch.tensor([p not in bad for p in self.paths], dtype=torch.bool)
            self.paths = [p for p, k in zip(self.paths, ok.tolist()) if k]
            labels, side = labels[ok], {k: v[ok] for k, v in side.items()}
        if not self.paths:
            raise DatasetFormatError(f"{name}: all {len(self.skipped)} images are missing or unreadable, "
                                     f"first {self.skipped[0]}")
        self._set_labels(labels, classes)
        for key, value in side.items():
            setattr(self, key, value)
        self.info = {"images": len(self.paths), "skipped": len(self.skipped), **(info or {})}

    def _check_files(self) -> None:
        if self.bad_images == "skip":
            self.skipped = unreadable_images(self.paths, self.name)
            return
        missing = [p for p in self.paths if not p.is_file()]
        if missing:
            raise DatasetFormatError(
                f"{self.name}: {len(missing)} image file(s) missing, first {missing[0]} "
                "(pass bad_images='skip' to drop unreadable images and count them)")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        path = self.paths[i]
        try:
            image = _decode(path, self.image_size)
        except (OSError, ValueError, SyntaxError) as err:  # PIL's errors for unreadable files
            raise DatasetFormatError(f"{self.name}: cannot decode image {path}: {err}") from None
        return image, i


class ArrayImages(_Labelled):
    """Images held as one uint8 array (N, 3, H, W), in memory or memory-mapped from disk,
    resized per batch on the device (``load_batch``), so no DataLoader workers are needed."""

    kind = "images"
    in_memory = True  # load_batch slices the array (or memory map) directly

    def __init__(self, name: str, images: np.ndarray | Tensor, labels: Tensor, classes: list[str], *,
                 image_size: int, rows: Tensor | None = None, n: int | None = None, seed: int = 0,
                 info: dict[str, Any] | None = None, transpose_hw: bool = False) -> None:
        """``labels`` has one row per array image; ``rows`` selects a subset of the array
        (an official fold, say) before ``n`` draws a seeded random subset of that."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"{name}: images must be (N, 3, H, W), got {tuple(images.shape)}")
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{name}: {images.shape[0]} images but {labels.shape[0]} label rows")
        self.name, self.image_size, self.transpose_hw = name, int(image_size), transpose_hw
        rows = torch.arange(images.shape[0]) if rows is None else rows.long()
        keep = subsample(len(rows), n, seed)
        if keep is not None:
            log.info("%s: a seeded subset of %d of its %d images (n=0 keeps all)", name, len(keep), len(rows))
        self.images, self.rows = images, rows if keep is None else rows[keep]
        self._set_labels(labels[self.rows], classes)
        self.info = {"images": len(self.rows), **(info or {})}

    def __len__(self) -> int:
        return self.labels.shape[0]

    def _raw(self, index: Tensor) -> Tensor:
        rows = self.rows[index]
        sel = np.sort(rows.numpy())  # sorted reads are sequential on a memory map
        back = np.argsort(np.argsort(rows.numpy()))
        x = torch.as_tensor(np.ascontiguousarray(self.images[sel]))[torch.as_tensor(back)]
        return x.transpose(-1, -2) if self.transpose_hw else x

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return resize_square(self._raw(torch.tensor([i])), self.image_size)[0], i

    def load_batch(self, index: Tensor, device: torch.device | str = "cpu") -> Tensor:
        raw = self._raw(index.cpu().long())
        return resize_square(raw.to(device, non_blocking=True), self.image_size)
