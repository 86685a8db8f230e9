"""From a dataset to device batches.

Every epoch's order and augmentation draws come from generators seeded by (run seed,
epoch), never from a running RNG, so epoch ``e`` sees the same batches whether the run went
straight through or was resumed at ``e`` (a resumed run ends bit-exactly where an
uninterrupted one does, on the CPU).

Images travel as uint8 and become float on the device: in-memory datasets serve whole
batches (the embedded benchmark renders straight onto the device), datasets read from disk
go through a DataLoader with workers and pinned memory. Augmentation and normalisation run
on whole batches on the device. A :class:`Batch` keeps the raw uint8 images, so a method
can ask for more views of them (weak and strong, say), each from its own seeded stream;
a batch of frozen feature maps picks among the augmented copies its dataset stores.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..data.augment import AugmentParams, draw_params
from ..data.dataset import LabelledDataset
from ..data.preprocess import Preprocess
from ..seeding import derive_seed

__all__ = ["Batch", "ViewMaker", "FeatureViewMaker", "epoch_order", "BatchLoader", "split_batches", "epoch_augmentation"]

# purposes of the derived seeds of a run (seed, epoch, purpose, ...): one stream each
ORDER_STREAM, AUGMENT_STREAM, DROPOUT_STREAM, VIEW_STREAM = 0, 1, 2, 3


def _view_generator(seed: int, epoch: int, step: int, policy: str, k: int, rank: int,
                    stream: int = VIEW_STREAM) -> torch.Generator:
    """The stream (seed, epoch, stream, step, policy, k, rank) of one view of a batch."""
    key = (seed, epoch, stream, step, zlib.crc32(policy.encode()), k, rank)
    return torch.Generator().manual_seed(derive_seed(*key))


@dataclass
class ViewMaker:
    """Draws extra augmented views of a batch's raw images, each from the stream
    (seed, epoch, VIEW_STREAM, step, policy, k, rank): deterministic, so a resumed run sees
    the same views, and independent of the batch's default augmentation."""

    preprocess: Callable[[Tensor, AugmentParams | None], Tensor]
    seed: int
    epoch: int
    step: int
    rank: int = 0

    def __call__(self, batch: Batch, policy: str, k: int = 0) -> Tensor:
        if batch.raw is None:
            return batch.images
        if policy == "none":
            return self.preprocess(batch.raw, None)
        generator = _view_generator(self.seed, self.epoch, self.step, policy, k, self.rank)
        params = draw_params(batch.raw.shape[0], policy, generator)
        return self.preprocess(batch.raw, params.to(batch.raw.device))


@dataclass
class FeatureViewMaker:
    """Views of a batch of frozen feature maps: for each image, one of the augmented copies
    the dataset stores for the policy (``FeatureMaps.views``), picked from the same stream a
    :class:`ViewMaker` draws from (the trainer picks a batch's default view from
    ``AUGMENT_STREAM`` instead). A policy with no stored copies is an error that lists the
    stored ones."""

    dataset: LabelledDataset
    seed: int
    epoch: int
    step: int
    rank: int = 0
    stream: int = VIEW_STREAM

    def __call__(self, batch: Batch, policy: str, k: int = 0) -> Tensor:
        draws = self.dataset.view_draws.get(policy, 1)
        pick = torch.randint(draws, (len(batch.index),), generator=_view_generator(
            self.seed, self.epoch, self.step, policy, k, self.rank, self.stream))
        return self.dataset.load_view(policy, pick, batch.index, batch.images.device)


@dataclass
class Batch:
    """One training batch on the device.

    ``images`` is the default view (the run's augmentation policy, normalised); ``raw`` the
    uint8 images before augmentation (for feature-map datasets both are the maps). With
    ``train.cache_frozen`` in effect, ``images`` and every view are the frozen layers'
    output: a method passes them to ``trainer.model`` (the layers after them), never to
    ``trainer.module`` (the whole network);
    ``targets`` the current observed labels from the trainer's label store; ``index`` the
    dataset indices (so hooks and methods can keep per-image state). :meth:`view` makes
    other views of the same images.
    """

    images: Tensor  # float (B, 3, H, W), or feature maps (B, D, h, w)
    targets: Tensor  # int8 (B, C)
    index: Tensor  # int64 (B,)
    raw: Tensor | None = None  # uint8 (B, 3, H, W) on the device
    views: ViewMaker | FeatureViewMaker | None = field(default=None, repr=False)

    def view(self, policy: str, k: int = 0) -> Tensor:
        """The images augmented by ``policy`` ("none", "flip", "weak", "strong" or any
        registered policy) and normalised; ``k`` numbers independent draws of one policy.
        Feature maps: one of the stored augmented copies (:class:`FeatureViewMaker`)."""
        if self.views is None:
            return self.images  # feature maps without stored views (or a hand-made batch): one view only
        return self.views(self, policy, k)


def epoch_order(n: int, seed: int, epoch: int, *, shuffle: bool = True, rank: int = 0,
                world_size: int = 1) -> Tensor:
    """The dataset indices this rank visits in ``epoch``.

    With several ranks the order is padded by repeating its start to a multiple of
    ``world_size`` and dealt round-robin, as torch's DistributedSampler does.
    """
    if shuffle:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(seed, epoch, ORDER_STREAM)))
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

    def __init__(self, dataset: LabelledDataset, device: torch.device, num_workers: int = 0) -> None:
        self.dataset, self.device = dataset, device
        self.fast = dataset.in_memory
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


def epoch_augmentation(sizes: list[int], policy: str, seed: int, epoch: int,
                       device: torch.device, rank: int = 0) -> list[AugmentParams | None]:
    """The augmentation parameters of every batch of an epoch: drawn from (seed, epoch, rank)
    on the CPU, moved to the device in one go, sliced per batch. Each rank draws its own, so
    the i-th images of two ranks are not augmented alike."""
    if policy == "none" or not sizes:
        return [None] * len(sizes)
    # rank 0 draws what a single process draws
    key = (seed, epoch, AUGMENT_STREAM) if rank == 0 else (seed, epoch, AUGMENT_STREAM, rank)
    g = torch.Generator().manual_seed(derive_seed(*key))
    params = draw_params(sum(sizes), policy, g).to(device)
    bounds = torch.tensor([0, *sizes]).cumsum(0).tolist()
    return [params.slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
