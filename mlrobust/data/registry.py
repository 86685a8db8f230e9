"""The dataset registry: datasets are created by name, so real datasets plug in beside the
embedded benchmark without touching the engine or the chapters.

A dataset factory is ``factory(split, *, root, image_size, n, seed, **options)`` and returns
a :class:`~mlrobust.data.dataset.LabelledDataset`. This module also holds the small dataset
wrappers the chapters and methods combine: :class:`TensorImages` (images in memory) and
:class:`Subset` (some images of a dataset, optionally with other labels).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .._validate import check_labels
from ..registry import Registry
from .dataset import DatasetBase, LabelledDataset
from .shapescenes import ShapeScenes

__all__ = ["DATASETS", "register_dataset", "create_dataset", "DataSplits", "TensorImages", "Subset", "hold_out"]


DatasetFactory = Callable[..., LabelledDataset]
DATASETS: Registry[DatasetFactory] = Registry("dataset")
#: ``@register_dataset("name")`` adds ``factory(split, *, root, image_size, n, seed, **options)``
register_dataset = DATASETS.register


def create_dataset(name: str, split: str, **kwargs: Any) -> LabelledDataset:
    """The ``split`` of the dataset registered as ``name``."""
    return DATASETS.lookup(name)(split, **kwargs)


@register_dataset("shapescenes")
def _shapescenes(split: str, *, root: str | None = None, image_size: int = 32, n: int = 1000,
                 seed: int = 0, ood_fraction: float = 0.0, cache: bool | None = None) -> ShapeScenes:
    """The embedded benchmark (see :class:`ShapeScenes` for ``ood_fraction`` and ``cache``)."""
    if root is not None:
        raise ValueError("the embedded benchmark is generated, not read from disk: leave data.root empty")
    if n < 1:
        raise ValueError(f"the embedded benchmark needs n >= 1 images for its {split!r} split "
                         f"(data.n_{split}), got {n}; n = 0 keeps a whole split only on datasets read from disk")
    return ShapeScenes(n, image_size=image_size, seed=seed, split=split, ood_fraction=ood_fraction, cache=cache)


class TensorImages(DatasetBase):
    """Images already in memory, uint8 (N, 3, H, W), with their labels."""

    in_memory = True

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


class Subset(DatasetBase):
    """The images ``index`` of a dataset, with their labels (or ``labels`` given instead),
    keeping the base's kind and batch loading (images or feature maps, in memory or not)."""

    def __init__(self, base: LabelledDataset, index: Tensor, labels: Tensor | None = None) -> None:
        self.base, self.index = base, index.long().cpu()
        self.labels = (base.labels[self.index] if labels is None else labels).to(torch.int8)
        if self.labels.shape[0] != len(self.index):
            raise ValueError(f"{len(self.index)} images but {self.labels.shape[0]} label rows")
        self.classes = list(base.classes)
        self.kind, self.in_memory = base.kind, base.in_memory

    @property
    def num_features(self) -> int:
        """The depth of the base's feature maps (datasets of kind "features")."""
        return self.base.num_features

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.base[int(self.index[i])][0], i

    def load_batch(self, index: Tensor, device: torch.device | str = "cpu") -> Tensor:
        return self.base.load_batch(self.index[index.cpu()], device)

    @property
    def view_draws(self) -> dict[str, int]:
        """The base's stored augmented feature views (feature datasets; none otherwise)."""
        return getattr(self.base, "view_draws", {})

    def load_view(self, policy: str, draw: Tensor, index: Tensor, device: torch.device | str = "cpu") -> Tensor:
        return self.base.load_view(policy, draw, self.index[index.cpu()], device)


def hold_out(dataset: LabelledDataset, n: int, seed: int) -> tuple[Subset, Subset]:
    """Split ``dataset`` at random into (the other images, ``n`` held-out images): a validation
    split carved from the training images, to tune settings without looking at the test set.
    The draw depends only on ``seed`` and the dataset's size."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n < len(dataset):
        raise ValueError(f"hold_out: n must be an int in [1, {len(dataset) - 1}] (the dataset has {len(dataset)} "
                         f"images), got {n!r}")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    return Subset(dataset, order[n:].sort().values), Subset(dataset, order[:n].sort().values)


@dataclass
class DataSplits:
    """The splits of one experiment; ``val`` may be None."""

    train: LabelledDataset
    test: LabelledDataset
    val: LabelledDataset | None = None

    @property
    def classes(self) -> list[str]:
        return list(self.train.classes)
