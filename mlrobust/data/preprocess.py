"""From uint8 images to the network's input: scale to [0, 1], augment, normalise.

Images travel as uint8 (cheap to store, render and copy) and become float on the device,
where a whole batch is augmented and normalised at once.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .augment import AugmentParams, apply_params

__all__ = ["Preprocess", "IMAGENET_MEAN", "IMAGENET_STD"]

# the statistics timm's ImageNet weights were trained with; the benchmark's backbones use them too
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Preprocess:
    """uint8 batch (B, 3, H, W) -> (augmented) normalised float batch on the device."""

    def __init__(self, device: torch.device | str, channels_last: bool = False,
                 mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD) -> None:
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1)
        self.channels_last = channels_last

    def __repr__(self) -> str:
        return (f"Preprocess(mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}, "
                f"channels_last={self.channels_last})")

    def __call__(self, images: Tensor, augment: AugmentParams | None = None) -> Tensor:
        x = images.float() / 255
        if augment is not None:
            x = apply_params(x, augment)
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x
