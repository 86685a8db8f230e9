"""Models: a backbone (timm or a small CPU CNN) and a head, joined by :class:`MultiLabelNet`."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from .backbones import BACKBONES, SmallCNN, create_backbone, load_backbone_weights, register_backbone
from .freeze import FrozenBatchNorm2d, freeze_stages
from .gnn import LabelGNN
from .heads import (HEADS, POOLINGS, ClassMapHead, GAPHead, SaliencyPooling, WeldonPooling, create_head,
                    register_pooling)

__all__ = [
    "MultiLabelNet", "create_model", "create_refine", "create_backbone", "create_head", "load_backbone_weights",
    "register_backbone", "register_pooling", "BACKBONES", "HEADS", "POOLINGS", "SmallCNN",
    "GAPHead", "ClassMapHead", "WeldonPooling", "SaliencyPooling", "LabelGNN", "FrozenBatchNorm2d", "freeze_stages",
]


class MultiLabelNet(nn.Module):
    """backbone -> feature map -> head -> logits (B, C) [-> refine -> logits (B, C)].

    ``refine`` is an optional module on the logits, such as the label GNN of Durand et al.
    The head and ``refine`` always run in float32, outside any autocast region: under bf16
    autocast the backbone's features are cast up first, so logits keep full precision (bf16
    logits would create ties that change average precision).

    Methods reach the parts through :meth:`features` (the backbone's map) and
    :meth:`classify` (head and refine on a map), or call the model with
    ``with_features=True`` in training, so that a multi-GPU wrapper sees the whole forward.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, refine: nn.Module | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.refine = refine

    def features(self, x: Tensor) -> Tensor:
        """The backbone's feature map (B, D, h, w)."""
        return self.backbone(x)

    def classify(self, features: Tensor) -> Tensor:
        """Logits (B, C) of feature maps, in float32: the head, then ``refine``."""
        with torch.autocast(features.device.type, enabled=False):
            logits = self.head(features.float())
            return self.refine(logits) if self.refine is not None else logits

    def split_frozen(self) -> tuple[nn.Module, MultiLabelNet]:
        """(the backbone's frozen leading layers, a network that starts where they end), the
        second sharing every module with this one: what ``train.cache_frozen`` trains on
        stored outputs of the first. The backbone must say where its frozen part ends
        (``split_frozen()``, as :class:`SmallCNN` does), and something must be frozen."""
        split = getattr(self.backbone, "split_frozen", None)
        if split is None:
            raise ValueError(f"the backbone {type(self.backbone).__name__} cannot be split at its frozen layers "
                             "(no split_frozen()); train.cache_frozen needs one that can (cnn_s, cnn_m)")
        prefix, rest = split()
        if len(prefix) == 0:
            raise ValueError("the backbone has no frozen leading layer (model.freeze_at is 0)")
        moving = [type(m).__name__ for m in prefix.modules()
                  if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd))]
        if moving:  # their output depends on the training mode: one stored map cannot stand for it
            raise ValueError(f"the frozen layers hold {', '.join(sorted(set(moving)))}, whose output changes "
                             "with the training mode (model.freeze_at makes batch norms FrozenBatchNorm2d)")
        return prefix, MultiLabelNet(rest, self.head, self.refine)

    def forward(self, x: Tensor, with_features: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Logits (B, C); with ``with_features`` also the feature maps: ``(logits, maps)``."""
        features = self.backbone(x)
        logits = self.classify(features)
        return (logits, features) if with_features else logits


def create_model(backbone: str, num_classes: int, *, head: str = "gap", weights: str | Path | None = None,
                 in_chans: int = 3, gnn_steps: int = 0, freeze_at: int = 0, **head_args: object) -> MultiLabelNet:
    """A multi-label network: ``create_backbone(backbone, weights=...)`` plus a head, plus
    the label GNN of Durand et al. 2019 on the logits when ``gnn_steps > 0``; the backbone's
    stem and first ``freeze_at - 1`` stages are frozen (:func:`freeze_stages`)."""
    body = freeze_stages(create_backbone(backbone, weights=weights, in_chans=in_chans), freeze_at)
    return MultiLabelNet(body, create_head(head, body.num_features, num_classes, **head_args),
                         create_refine(num_classes, gnn_steps))


def create_refine(num_classes: int, gnn_steps: int = 0) -> nn.Module | None:
    """The label GNN (``gnn_steps`` > 0) or nothing."""
    if gnn_steps <= 0:
        return None
    return LabelGNN(num_classes, steps=gnn_steps)
