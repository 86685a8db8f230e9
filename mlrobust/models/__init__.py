"""Models: a backbone (timm or a small CPU CNN) and a head, joined by :class:`MultiLabelNet`."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from .backbones import BACKBONES, SmallCNN, create_backbone, load_backbone_weights, register_backbone
from .heads import HEADS, POOLINGS, ClassMapHead, GAPHead, create_head, register_pooling

__all__ = [
    "MultiLabelNet", "create_model", "create_backbone", "create_head", "load_backbone_weights",
    "register_backbone", "register_pooling", "BACKBONES", "HEADS", "POOLINGS", "SmallCNN",
    "GAPHead", "ClassMapHead",
]


class MultiLabelNet(nn.Module):
    """backbone -> feature map -> head -> logits (B, C).

    The head always runs in float32, outside any autocast region: under bf16 autocast the
    backbone's features are cast up first, so logits keep full precision (bf16 logits would
    create ties that change average precision)."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def features(self, x: Tensor) -> Tensor:
        """The backbone's feature map (B, D, h, w)."""
        return self.backbone(x)

    def forward(self, x: Tensor) -> Tensor:
        features = self.backbone(x)
        with torch.autocast(features.device.type, enabled=False):
            return self.head(features.float())


def create_model(backbone: str, num_classes: int, *, head: str = "gap", weights: str | Path | None = None,
                 in_chans: int = 3, **head_args: object) -> MultiLabelNet:
    """A multi-label network: ``create_backbone(backbone, weights=...)`` plus a head."""
    body = create_backbone(backbone, weights=weights, in_chans=in_chans)
    return MultiLabelNet(body, create_head(head, body.num_features, num_classes, **head_args))
