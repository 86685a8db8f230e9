"""The dataset registry: datasets are built by name, so real datasets plug in beside the
embedded benchmark without touching the engine or the chapters.

A dataset is a ``torch.utils.data.Dataset`` whose items are ``(image, index)`` with
``image`` a uint8 tensor (3, H, W), and which exposes

* ``labels``: the ground-truth label matrix (N, C) int8 (1 present, -1 absent, 0 unknown),
  available without decoding any image, so protocols run on labels alone;
* ``classes``: the C class names in label-column order;
* optionally ``load_batch(index, device)``: a whole batch of uint8 images at once, on any
  device (the embedded benchmark renders on the GPU this way; no DataLoader needed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from .._validate import check_labels
from ..registry import Registry
from .shapescenes import ShapeScenes

__all__ = ["LabelledDataset", "DATASETS", "register_dataset", "build_dataset", "DataSplits", "TensorImages", "Subset"]


@runtime_checkable
class LabelledDataset(Protocol):
    labels: Tensor
    classes: list[str]

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> tuple[Tensor, int]: ...


DatasetFactory = Callable[..., LabelledDataset]
DATASETS: Registry[DatasetFactory] = Registry("dataset")
#: ``@register_dataset("name")`` adds ``factory(split, *, root, image_size, n, seed, cache, **kwargs)``
register_dataset = DATASETS.register


def build_dataset(name: str, split: str, **kwargs: Any) -> LabelledDataset:
    """Build the ``split`` of the dataset registered as ``name``."""
    return DATASETS.lookup(name)(split, **kwargs)


@register_dataset("shapescenes")
def _shapescenes(split: str, *, root: str | None = None, image_size: int = 32, n: int = 1000,
                 seed: int = 0, cache: bool = True, **kwargs: Any) -> ShapeScenes:
    if root is not None:
        raise ValueError("the embedded benchmark is generated, not read from disk: leave data.root empty")
    return ShapeScenes(n, image_size=image_size, seed=seed, split=split, cache=cache, **kwargs)


class TensorImages(torch.utils.data.Dataset):
    """Images already in memory, uint8 (N, 3, H, W), with their labels."""

    def __init__(self, images: Tensor, labels: Tensor, classes: list[str]) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        check_labels(labels, "labels", num_classes=len(classes))
        if labels.shape[0] != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} label rows")
        self.images, self.labels, self.classes = images, labels.to(torch.int8), list(classes)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.images[i], i

    def load_batch(self, index: Tensor, device: torch.device | str = "cpu") -> Tensor:
        return self.images[index.cpu()].to(device, non_blocking=True)


class Subset(torch.utils.data.Dataset):
    """The images ``index`` of a dataset, with their labels (or ``labels`` given instead),
    keeping the fast ``load_batch`` path and the kind (images or feature maps)."""

    def __init__(self, base: Any, index: Tensor, labels: Tensor | None = None) -> None:
        self.base, self.index = base, index.long().cpu()
        self.labels = (base.labels[self.index] if labels is None else labels).to(torch.int8)
        if self.labels.shape[0] != len(self.index):
            raise ValueError(f"{len(self.index)} images but {self.labels.shape[0]} label rows")
        self.classes = list(base.classes)
        self.kind = getattr(base, "kind", "images")
        if hasattr(base, "num_features"):
            self.num_features = base.num_features

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.base[int(self.index[i])][0], i

    def load_batch(self, index: Tensor, device: torch.device | str = "cpu") -> Tensor:
        if hasattr(self.base, "load_batch"):
            return self.base.load_batch(self.index[index.cpu()], device)
        return torch.stack([self.base[int(i)][0] for i in self.index[index.cpu()]]).to(device)


@dataclass
class DataSplits:
    """The splits of one experiment; ``val`` may be None."""

    train: LabelledDataset
    test: LabelledDataset
    val: LabelledDataset | None = None

    @property
    def classes(self) -> list[str]:
        return list(self.train.classes)
