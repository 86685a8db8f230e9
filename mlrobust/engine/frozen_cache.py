"""The output of a backbone's frozen layers, computed once (``train.cache_frozen``).

With ``model.freeze_at`` the stem and first stages never change, so their output for an
image is the same at every step of every run that loads the same weights. Computed once
per training image and per mirror image (a horizontal flip is the one augmentation a stored
map can serve: crops and colour change the input of the frozen layers), the maps let each
step run only the trainable layers, with the same result. Where they cannot serve a run
(nothing frozen, crops, precomputed features) the trainer says so in its log and runs the
frozen layers at every step. For ``cnn_s`` at 32 px and ``freeze_at = 2`` the frozen
forward pass is about a quarter of a step on a CPU.

The maps are kept on the images' base dataset (the one a :class:`~mlrobust.data.Subset`
wraps), under a hash of the frozen layers and their weights, as the benchmark keeps its
rendered images: the runs of a chapter on one dataset, the training parts of their
learning-rate tuning splits and the workers :func:`~mlrobust.experiments.run_many` forks all
read one copy (until the dataset object is dropped). They cost
``2 x images x map size`` of memory (bf16 under CUDA autocast, float32 otherwise), so they
are for small images (the quick scale); beyond :data:`MAPS_LIMIT` per dataset the request is
refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import Tensor, nn

from ..data.augment import POLICIES
from ..data.dataset import LabelledDataset
from ..data.registry import Subset
from ..options import ConfigError
from .batches import BatchLoader

__all__ = ["MAPS_LIMIT", "augment_unservable", "prefix_key", "base_rows", "frozen_maps"]

MAPS_LIMIT = 4 * 2**30  # bytes of stored maps per base dataset, all frozen parts together


def augment_unservable(augment: str) -> str | None:
    """Why stored maps cannot serve an augmentation policy (None when they can: 'none' and
    flip-only policies)."""
    policy = POLICIES[augment] if augment != "none" else None
    if policy is not None and (policy.crops or policy.jitter > 0 or policy.erase_p > 0):
        return f"data.augment {augment!r} changes the frozen layers' input (only 'none' and 'flip' can be stored)"
    return None


def prefix_key(prefix: nn.Module, context: str) -> str:
    """A hash of the frozen layers (their structure and every tensor of their state) and of
    ``context``, what else shapes their output (the preprocessing's ``repr``: normalisation
    and memory layout; the autocast dtype): runs whose frozen parts would compute the same
    maps share them."""
    h = hashlib.sha256(f"{prefix!r}\n{context}".encode())
    for name, tensor in prefix.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def base_rows(dataset: LabelledDataset) -> tuple[LabelledDataset, Tensor]:
    """(the dataset under any number of :class:`~mlrobust.data.Subset` wrappers, the rows
    of ``dataset``'s images in it)."""
    rows = torch.arange(len(dataset))
    while isinstance(dataset, Subset):
        rows, dataset = dataset.index[rows], dataset.base
    return dataset, rows


def frozen_maps(prefix: nn.Module, dataset: LabelledDataset, preprocess: Callable[[Tensor], Tensor],
                device: torch.device, batch_size: int = 256,
                autocast: Callable[[], AbstractContextManager] = nullcontext) -> tuple[Tensor, Tensor]:
    """``(maps, rows)``: the frozen layers' outputs (2, N, C, h, w) on ``device`` for every
    image of ``dataset``'s base dataset as it is (``maps[0]``) and mirrored (``maps[1]``),
    and the rows of ``dataset``'s images in them. Computed on the first request for a base
    dataset and frozen part, then read from the base dataset's store.

    ``preprocess`` turns a uint8 batch into the network's input (the trainer's
    normalisation); the mirrored input is ``preprocess`` of the mirrored uint8 images, bit
    for bit what a flip drawn in training gives. ``autocast`` is the training step's
    precision context (bf16 on CUDA with ``amp``): the maps are computed, and kept, as a
    step would compute them."""
    base, rows = base_rows(dataset)
    store: dict[str, Tensor] = base.__dict__.setdefault("_frozen_maps", {})
    with autocast():
        dtype = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else None
    key = prefix_key(prefix, f"{preprocess!r}\nautocast={dtype}")
    if key not in store:
        kept = sum(m.numel() * m.element_size() for m in store.values())
        store[key] = _compute(prefix, base, preprocess, device, batch_size, autocast, kept)
    elif store[key].device != device:
        store[key] = store[key].to(device)  # moves once, not every run
    return store[key], rows.to(device)


@torch.no_grad()
def _compute(prefix: nn.Module, base: LabelledDataset, preprocess: Callable[[Tensor], Tensor],
             device: torch.device, batch_size: int, autocast: Callable[[], AbstractContextManager],
             kept: int) -> Tensor:
    # no_grad, not inference_mode: the maps are read by training steps that record autograd
    was_training = prefix.training
    prefix.eval()
    loader = BatchLoader(base, device)
    maps: Tensor | None = None
    try:
        for images, index in loader(list(torch.arange(len(base)).split(batch_size))):
            with autocast():
                both = torch.stack([prefix(preprocess(images)), prefix(preprocess(images.flip(3)))])
            if maps is None:
                maps = _allocate(both.shape[2:], both.dtype, len(base), device, kept)
            maps[:, index.to(device)] = both
    finally:
        prefix.train(was_training)
    if maps is None:
        raise ValueError("train.cache_frozen: the training set has no image")
    return maps


def _allocate(shape: torch.Size, dtype: torch.dtype, n: int, device: torch.device, kept: int) -> Tensor:
    size = 2 * n * shape.numel() * torch.empty((), dtype=dtype).element_size()
    if kept + size > MAPS_LIMIT:
        raise ConfigError(f"train.cache_frozen: the frozen layers' maps {tuple(shape)} of {n} images and their mirror "
                          f"images would take {size / 2**30:.1f} GiB, {kept / 2**30:.1f} GiB more are stored for "
                          f"this dataset (limit {MAPS_LIMIT / 2**30:.0f} GiB); set train.cache_frozen false (it is "
                          "for small images)")
    return torch.empty(2, n, *shape, dtype=dtype, device=device)
