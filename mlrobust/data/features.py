"""Frozen features: a backbone's feature maps computed once and kept.

Sweeps over label proportions, loss hyper-parameters and relabeling strategies need dozens
of training runs. With a frozen backbone each run only trains the head (and the label GNN)
on cached feature maps, so a sweep that would take hours on two CPU cores takes seconds, and
it still goes through the same engine (:class:`mlrobust.engine.Trainer`). The paper chapters
say where they use this variant; the full scale fine-tunes end to end, as the papers do.

A method that trains on several augmented views of each image (weak and strong, Wang et al.
2023) needs features of augmented images: ``extract_features(..., views={"strong": 4})``
also keeps the maps of a few augmented copies of every image, and a batch's
``view("strong")`` then picks one of them per image from its own seeded stream.
"""

from __future__ import annotations

import zlib
from typing import Any

import torch
from torch import Tensor, nn

from ..seeding import derive_seed
from .augment import draw_params
from .dataset import DatasetBase, check_dataset
from .preprocess import Preprocess

__all__ = ["FeatureMaps", "extract_features"]


class FeatureMaps(DatasetBase):
    """Cached feature maps (N, D, h, w) with the labels of their images.

    ``kind = "features"`` tells the engine to feed them to the head as they are (no pixel
    normalisation, no flips). ``views`` optionally maps an augmentation policy to the maps of
    ``V`` augmented copies of every image, (V, N, D, h, w).
    """

    kind = "features"
    in_memory = True

    def __init__(self, features: Tensor, labels: Tensor, classes: list[str], source: Any = None,
                 views: dict[str, Tensor] | None = None) -> None:
        if features.dim() != 4:
            raise ValueError(f"features must have shape (N, D, h, w), got {tuple(features.shape)}")
        if labels.shape[0] != features.shape[0]:
            raise ValueError(f"{features.shape[0]} feature maps but {labels.shape[0]} label rows")
        self.features, self.labels, self.classes = features, labels, list(classes)
        self.source = source  # the image dataset they were computed from (scene tables, ...)
        self.views = dict(views or {})
        for policy, bank in self.views.items():
            if bank.dim() != 5 or bank.shape[1:] != features.shape:
                raise ValueError(f"views[{policy!r}] must have shape (V, {', '.join(map(str, features.shape))}), "
                                 f"got {tuple(bank.shape)}")

    @property
    def view_draws(self) -> dict[str, int]:
        """The number of stored augmented copies per policy."""
        return {policy: bank.shape[0] for policy, bank in self.views.items()}

    def load_view(self, policy: str, draw: Tensor, index: Tensor, device: torch.device | str = "cpu") -> Tensor:
        """The maps of copy ``draw[i]`` of image ``index[i]`` under ``policy`` (policy "none":
        the un-augmented maps)."""
        if policy == "none":
            return self.load_batch(index, device)
        if policy not in self.views:
            raise ValueError(f"no stored feature views for the augmentation policy {policy!r}; stored: "
                             f"{sorted(self.views) or 'none'} (extract_features(..., views={{{policy!r}: n}}))")
        bank = self.views[policy]
        if bank.device != torch.device(device):  # move once, not per batch
            bank = self.views[policy] = bank.to(device)
        return bank[draw.to(bank.device), index.to(bank.device)]

    @property
    def num_features(self) -> int:
        return self.features.shape[1]

    def __len__(self) -> int:
        return self.features.shape[0]

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.features[i], i

    def load_batch(self, index: Tensor, device: torch.device | str = "cpu") -> Tensor:
        if self.features.device != torch.device(device):  # move once, not per batch
            self.features = self.features.to(device)
        return self.features[index.to(self.features.device)]


#: derive_seed(seed, FEATURE_VIEW_STREAM, crc32(policy), copy): the draws of a stored view
FEATURE_VIEW_STREAM = 0xFEA7


@torch.no_grad()
def extract_features(backbone: nn.Module, dataset: Any, device: torch.device | str = "cpu",
                     batch_size: int = 256, views: dict[str, int] | None = None, seed: int = 0,
                     channels_last: bool = True) -> FeatureMaps:
    """Run ``backbone`` (eval mode) over a dataset of images and keep its feature maps
    (float32, on the CPU), with the dataset's labels and classes.

    ``views`` (policy -> number of copies) also keeps the maps of that many augmented copies
    of every image per augmentation policy, each copy drawn from the stream
    (``seed``, policy, copy), so the same call gives the same maps on any device.
    ``channels_last`` runs the backbone on NHWC tensors, as the trainer does (it converts
    ``backbone``'s weights in place); the maps are stored NCHW either way.
    """
    check_dataset(dataset)
    device = torch.device(device)
    backbone = backbone.to(device).eval()
    if channels_last:
        backbone = backbone.to(memory_format=torch.channels_last)
    preprocess = Preprocess(device, channels_last=channels_last)
    draws = dict(views or {})
    for policy, copies in draws.items():
        if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
            raise ValueError(f"views[{policy!r}] must be a number of copies >= 1, got {copies!r}")
    out: list[Tensor] = []
    banks: dict[str, list[list[Tensor]]] = {policy: [[] for _ in range(n)] for policy, n in draws.items()}
    params = {(policy, c): draw_params(len(dataset), policy, torch.Generator().manual_seed(
              derive_seed(seed, FEATURE_VIEW_STREAM, zlib.crc32(policy.encode()), c)))
              for policy, n in draws.items() for c in range(n)}
    for start, index in zip(range(0, len(dataset), batch_size), torch.arange(len(dataset)).split(batch_size)):
        images = dataset.load_batch(index, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out.append(backbone(preprocess(images)).float().cpu())
            for (policy, c), p in params.items():
                view = preprocess(images, p.slice(start, start + len(index)).to(device))
                banks[policy][c].append(backbone(view).float().cpu())
    stored = {policy: torch.stack([torch.cat(copy) for copy in copies]).contiguous()
              for policy, copies in banks.items()}
    return FeatureMaps(torch.cat(out).contiguous(), dataset.labels, dataset.classes, source=dataset, views=stored)
