"""From a dataset to device batches.

Every epoch's order and augmentation draws come from generators seeded by (run seed,
epoch), never from a running RNG, so epoch ``e`` sees the same batches whether the run went
straight through or was resumed at ``e`` (the resume guarantee of design section 8).

Images travel as uint8 and become float on the device: the embedded benchmark renders
straight onto the device (``load_batch``), datasets read from disk go through a DataLoader
with workers and pinned memory. Augmentation (random horizontal flip, per sample) and
normalisation run on whole batches on the device.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from ..data.augment import AugmentParams, apply_params, draw_params
from .utils import derive_seed

__all__ = ["Batch", "epoch_order", "BatchLoader", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Batch:
    """One training batch on the device: normalised images, the current observed labels of
    those images, and their dataset indices (so hooks can update the label store)."""

    images: Tensor  # float (B, 3, H, W)
    targets: Tensor  # int8 (B, C)
    index: Tensor  # int64 (B,)


def epoch_order(n: int, seed: int, epoch: int, *, shuffle: bool = True, rank: int = 0,
                world_size: int = 1) -> Tensor:
    """The dataset indices this rank visits in ``epoch``.

    With several ranks the order is padded by repeating its start to a multiple of
    ``world_size`` and dealt round-robin, as torch's DistributedSampler does.
    """
    if shuffle:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(seed, epoch, 0)))
    else:
        order = torch.arange(n)
    if world_size > 1:
        pad = (-n) % world_size
        order = torch.cat([order, order[:pad]])[rank::world_size]
    return order


class _IndexBatches(torch.utils.data.Sampler[list[int]]):
    """A batch sampler over a precomputed order, replaced each epoch (DataLoader path)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _collate(items: list[tuple[Tensor, int]]) -> tuple[Tensor, Tensor]:
    images, index = zip(*items)
    return torch.stack(images), torch.tensor(index)


class BatchLoader:
    """Yields ``(uint8 images on device, index)`` for a list of index batches."""

    def __init__(self, dataset: torch.utils.data.Dataset, device: torch.device, num_workers: int = 0) -> None:
        self.dataset, self.device = dataset, device
        self.fast = hasattr(dataset, "load_batch")
        self._sampler = _IndexBatches()
        self._loader = None
        if not self.fast:
            self._loader = torch.utils.data.DataLoader(
                dataset, batch_sampler=self._sampler, num_workers=num_workers, collate_fn=_collate,
                pin_memory=device.type == "cuda", persistent_workers=num_workers > 0)

    def __call__(self, batches: list[Tensor]) -> Iterator[tuple[Tensor, Tensor]]:
        if self.fast:
            for index in batches:
                yield self.dataset.load_batch(index, self.device), index
            return
        self._sampler.batches = [b.tolist() for b in batches]
        for images, index in self._loader:
            yield images.to(self.device, non_blocking=True), index


def split_batches(order: Tensor, batch_size: int, drop_last: bool) -> list[Tensor]:
    """Cut an order into batches; ``drop_last`` drops a short final batch (BatchNorm needs
    more than one sample, and equal batches keep the loss scale steady)."""
    batches = list(order.split(batch_size))
    if drop_last and batches and len(batches[-1]) < batch_size and len(batches) > 1:
        batches.pop()
    return batches


class Preprocess:
    """uint8 batch -> (augmented) normalised float batch on the device."""

    def __init__(self, device: torch.device, channels_last: bool = False,
                 mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD) -> None:
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1)
        self.channels_last = channels_last

    def __call__(self, images: Tensor, augment: AugmentParams | None = None) -> Tensor:
        x = images.float() / 255
        if augment is not None:
            x = apply_params(x, augment)
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def epoch_augmentation(sizes: list[int], policy: str, seed: int, epoch: int,
                       device: torch.device, rank: int = 0) -> list[AugmentParams | None]:
    """The augmentation parameters of every batch of an epoch: drawn from (seed, epoch, rank)
    on the CPU, moved to the device in one go, sliced per batch. Each rank draws its own, so
    the i-th images of two ranks are not augmented alike."""
    if policy == "none" or not sizes:
        return [None] * len(sizes)
    key = (seed, epoch, 1) if rank == 0 else (seed, epoch, 1, rank)  # rank 0: the single-process draw
    g = torch.Generator().manual_seed(derive_seed(*key))
    params = draw_params(sum(sizes), policy, g).to(device)
    bounds = torch.tensor([0, *sizes]).cumsum(0).tolist()
    return [params.slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
