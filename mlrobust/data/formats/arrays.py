"""CIFAR-10 (Krizhevsky, 2009) and STL-10 (Coates et al., 2011): single-label datasets held as
uint8 arrays, used by the RML paper (Cevikalp et al.) for semi-supervised training.

A single label becomes a label row with 1 for the class and -1 for the nine others; the
unlabeled split of STL-10 is all unknown (0), so label protocols and semi-supervised methods
treat both datasets like any multi-label set. Images are resized on the device per batch.

CIFAR-10 layouts under ``root`` (either)::

    cifar-10-batches-bin/data_batch_{1..5}.bin, test_batch.bin, batches.meta.txt
    cifar-10-batches-py/data_batch_{1..5}, test_batch, batches.meta

The python version is a pickle; it is read with an unpickler that only builds numpy arrays
and plain containers, so a tampered file cannot run code.

STL-10 (binary, ``root/stl10_binary``)::

    train_X.bin, train_y.bin, test_X.bin, test_y.bin, unlabeled_X.bin, class_names.txt, fold_indices.txt

Images are stored column-major (each 96 x 96 channel transposed); they are read through a
memory map, so the 2.7 GB unlabeled split is not loaded into memory. ``fold=k`` keeps the
k-th of the ten predefined 1,000-image training folds.
"""

from __future__ import annotations

import importlib
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..registry import register_dataset
from ._files import ArrayImages, DatasetFormatError, dataset_root, read_lines, require_file

__all__ = ["one_hot_labels", "read_cifar_binary", "read_cifar_python", "SafeUnpickler"]

CIFAR_BYTES = 3 * 32 * 32
STL_BYTES = 3 * 96 * 96


def one_hot_labels(targets: Tensor, num_classes: int) -> Tensor:
    """Class indices (N,) -> label rows (N, C) int8: 1 at the class, -1 elsewhere."""
    labels = -torch.ones(len(targets), num_classes, dtype=torch.int8)
    labels[torch.arange(len(targets)), targets.long()] = 1
    return labels


class SafeUnpickler(pickle.Unpickler):
    """Builds numpy arrays and plain Python containers, and nothing else."""

    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("numpy.core.numeric", "_frombuffer"),
                ("numpy._core.numeric", "_frombuffer"),
                ("_codecs", "encode")}  # protocol-2 pickles written by Python 3 carry bytes this way

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        if module.startswith("numpy.core") and int(np.__version__.split(".")[0]) >= 2:
            module = module.replace("numpy.core", "numpy._core")  # avoids numpy 2's deprecation shim
        return getattr(importlib.import_module(module), name)


def _unpickle(path: Path) -> dict[str, Any]:
    require_file(path, "CIFAR-10 python batch")
    try:
        with open(path, "rb") as f:
            data = SafeUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, ImportError, AttributeError) as err:
        raise DatasetFormatError(f"{path}: not a CIFAR-10 python batch ({err})") from None
    if not isinstance(data, dict):
        raise DatasetFormatError(f"{path}: expected a pickled dict, got {type(data).__name__}")
    return data


def read_cifar_binary(path: Path) -> tuple[np.ndarray, Tensor]:
    """One binary CIFAR-10 batch: images (N, 3, 32, 32) uint8 and labels (N,)."""
    raw = np.fromfile(require_file(path, "CIFAR-10 binary batch"), dtype=np.uint8)
    if raw.size % (CIFAR_BYTES + 1):
        raise DatasetFormatError(f"{path}: {raw.size} bytes is not a whole number of {CIFAR_BYTES + 1}-byte "
                                 "records (1 label byte + 3x32x32 pixels)")
    records = raw.reshape(-1, CIFAR_BYTES + 1)
    return records[:, 1:].reshape(-1, 3, 32, 32), torch.from_numpy(records[:, 0].astype(np.int64))


def read_cifar_python(path: Path) -> tuple[np.ndarray, Tensor]:
    """One python-version CIFAR-10 batch: images (N, 3, 32, 32) uint8 and labels (N,)."""
    data = _unpickle(path)
    try:
        images = np.asarray(data["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = torch.tensor(list(data["labels"]), dtype=torch.int64)
    except (KeyError, ValueError) as err:
        raise DatasetFormatError(f"{path}: expected 'data' (N x 3072 uint8) and 'labels' ({err})") from None
    if len(labels) != len(images):
        raise DatasetFormatError(f"{path}: {len(images)} images but {len(labels)} labels")
    return images, labels


def _check_targets(targets: Tensor, num_classes: int, where: Path, first: int = 0) -> None:
    """Class labels as the file stores them, ``first``..``first + num_classes - 1`` (CIFAR-10
    counts from 0, STL-10 from 1): an error names the file, the record and the raw value."""
    bad = torch.nonzero((targets < first) | (targets >= first + num_classes)).flatten()
    if len(bad):
        i = int(bad[0])
        raise DatasetFormatError(f"{where}: label {int(targets[i])} of image {i} (0-based) is outside "
                                 f"{first}..{first + num_classes - 1}")


@register_dataset("cifar10")
def cifar10(split: str, *, root: str | Path | None, image_size: int = 32, n: int | None = None,
            seed: int = 0) -> ArrayImages:
    """CIFAR-10, ``split`` in train (50,000) / test (10,000), binary or python version."""
    root = dataset_root("cifar10", root, split, ("train", "test"),
                        "the folder holding cifar-10-batches-bin or cifar-10-batches-py")
    names = ["test_batch"] if split == "test" else [f"data_batch_{i}" for i in range(1, 6)]
    if (root / "cifar-10-batches-bin").is_dir():
        folder = root / "cifar-10-batches-bin"
        parts = [read_cifar_binary(folder / f"{name}.bin") for name in names]
        classes = read_lines(folder / "batches.meta.txt", "CIFAR-10 class names")
    elif (root / "cifar-10-batches-py").is_dir():
        folder = root / "cifar-10-batches-py"
        parts = [read_cifar_python(folder / name) for name in names]
        classes = [str(c) for c in _unpickle(folder / "batches.meta").get("label_names", [])]
    else:
        raise DatasetFormatError(f"CIFAR-10: neither {root / 'cifar-10-batches-bin'} nor "
                                 f"{root / 'cifar-10-batches-py'} exists")
    if len(classes) != 10:
        raise DatasetFormatError(f"{folder}: expected 10 class names in the batches meta file, got {len(classes)}")
    images = np.concatenate([p[0] for p in parts])
    targets = torch.cat([p[1] for p in parts])
    _check_targets(targets, 10, folder)
    return ArrayImages(f"cifar10/{split}", images, one_hot_labels(targets, 10), classes, image_size=image_size,
                       n=n, seed=seed, info={"format": folder.name})


def _stl_images(path: Path) -> np.ndarray:
    require_file(path, "STL-10 images")
    size = path.stat().st_size
    if size == 0 or size % STL_BYTES:
        raise DatasetFormatError(f"{path}: {size} bytes is not a whole number of 3x96x96 images")
    return np.memmap(path, dtype=np.uint8, mode="r", shape=(size // STL_BYTES, 3, 96, 96))


@register_dataset("stl10")
def stl10(split: str, *, root: str | Path | None, image_size: int = 96, n: int | None = None, seed: int = 0,
          fold: int | None = None) -> ArrayImages:
    """STL-10, ``split`` in train (5,000) / test (8,000) / unlabeled (100,000, all labels 0)."""
    root = dataset_root("stl10", root, split, ("train", "test", "unlabeled"), "the folder holding stl10_binary")
    folder = root / "stl10_binary" if (root / "stl10_binary").is_dir() else root
    classes = read_lines(folder / "class_names.txt", "STL-10 class names")
    images = _stl_images(folder / f"{split}_X.bin")
    if split == "unlabeled":
        labels = torch.zeros(len(images), len(classes), dtype=torch.int8)
    else:
        y_path = require_file(folder / f"{split}_y.bin", "STL-10 labels")
        raw = torch.from_numpy(np.fromfile(y_path, dtype=np.uint8).astype(np.int64))
        if len(raw) != len(images):
            raise DatasetFormatError(f"{y_path}: {len(raw)} labels for {len(images)} images")
        _check_targets(raw, len(classes), y_path, first=1)  # the file counts classes from 1
        labels = one_hot_labels(raw - 1, len(classes))
    rows = None
    if fold is not None:
        if split != "train":
            raise ValueError("stl10: fold= selects one of the training folds; use it with split='train'")
        rows = _fold_rows(folder / "fold_indices.txt", fold, len(images))
    return ArrayImages(f"stl10/{split}", images, labels, classes, image_size=image_size, rows=rows, n=n,
                       seed=seed, transpose_hw=True, info={"fold": fold})


def _fold_rows(path: Path, fold: int, n_images: int) -> Tensor:
    """The training images of one predefined fold (0-based indices into train_X.bin)."""
    lines = read_lines(path, "STL-10 folds")
    if not 0 <= fold < len(lines):
        raise ValueError(f"stl10: fold must be in 0..{len(lines) - 1}, got {fold}")
    try:
        index = torch.tensor([int(v) for v in lines[fold].split()], dtype=torch.long)
    except ValueError:
        raise DatasetFormatError(f"{path}, line {fold + 1}: expected image indices") from None
    if len(index) and (index.min() < 0 or index.max() >= n_images):
        raise DatasetFormatError(f"{path}, line {fold + 1}: index outside 0..{n_images - 1}")
    return index
