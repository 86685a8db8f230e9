"""Frozen features: a backbone's feature maps computed once and kept.

Sweeps over label proportions, loss hyper-parameters and relabeling strategies need dozens
of training runs. With a frozen backbone each run only trains the head (and the label GNN)
on cached feature maps, so a sweep that would take hours on two CPU cores takes seconds, and
it still goes through the same engine (:class:`mlrobust.engine.Trainer`). The paper chapters
say where they use this variant; the full scale fine-tunes end to end, as the papers do.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .dataset import DatasetBase, check_dataset
from .preprocess import Preprocess

__all__ = ["FeatureMaps", "extract_features"]


class FeatureMaps(DatasetBase):
    """Cached feature maps (N, D, h, w) with the labels of their images.

    ``kind = "features"`` tells the engine to feed them to the head as they are (no pixel
    normalisation, no flips).
    """

    kind = "features"
    in_memory = True

    def __init__(self, features: Tensor, labels: Tensor, classes: list[str], source: Any = None) -> None:
        if features.dim() != 4:
            raise ValueError(f"features must have shape (N, D, h, w), got {tuple(features.shape)}")
        if labels.shape[0] != features.shape[0]:
            raise ValueError(f"{features.shape[0]} feature maps but {labels.shape[0]} label rows")
        self.features, self.labels, self.classes = features, labels, list(classes)
        self.source = source  # the image dataset they were computed from (scene tables, ...)

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


@torch.no_grad()
def extract_features(backbone: nn.Module, dataset: Any, device: torch.device | str = "cpu",
                     batch_size: int = 256) -> FeatureMaps:
    """Run ``backbone`` (eval mode) over a dataset of images and keep its feature maps
    (float32, on the CPU), with the dataset's labels and classes."""
    check_dataset(dataset)
    device = torch.device(device)
    backbone = backbone.to(device).eval()
    preprocess = Preprocess(device)
    out = []
    for index in torch.arange(len(dataset)).split(batch_size):
        images = dataset.load_batch(index, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out.append(backbone(preprocess(images)).float().cpu())
    return FeatureMaps(torch.cat(out), dataset.labels, dataset.classes, source=dataset)
