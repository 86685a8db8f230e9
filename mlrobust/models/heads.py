"""Classification heads: feature map (B, D, h, w) -> logits (B, C).

* :class:`GAPHead` pools the feature map, then applies a linear classifier: the standard
  multi-label ConvNet.
* :class:`ClassMapHead` applies the classifier at every position first (a 1x1 convolution),
  giving one map per class (B, C, h, w), then pools each map to a score. With average
  pooling the two heads compute the same function; other poolings (max, WELDON's top/bottom
  regions, the saliency regularisation of Wang et al. 2023) only exist for class maps.
  Poolings are registered in :data:`POOLINGS` so a paper's pooling plugs in without touching
  the head.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from ..registry import Registry

__all__ = ["GAPHead", "ClassMapHead", "WeldonPooling", "SaliencyPooling", "POOLINGS", "register_pooling", "HEADS",
           "create_head"]

POOLINGS: Registry[Callable[..., nn.Module]] = Registry("pooling")
#: ``@register_pooling("name")`` adds a module class mapping (B, C, h, w) class maps to (B, C) scores
register_pooling = POOLINGS.register


@register_pooling("gap")
class AvgPool(nn.Module):
    """Global average pooling of each class map."""

    def forward(self, maps: Tensor) -> Tensor:
        return maps.mean(dim=(2, 3))


@register_pooling("max")
class MaxPool(nn.Module):
    """Global max pooling of each class map (the single most confident region)."""

    def forward(self, maps: Tensor) -> Tensor:
        return maps.amax(dim=(2, 3))


def _region_count(k: float, regions: int) -> int:
    """k as a fraction of the regions (0 < k < 1) or as a count (k >= 1); at least 1."""
    return max(1, min(regions, round(k * regions) if k < 1 else int(k)))


@register_pooling("weldon")
class WeldonPooling(nn.Module):
    """WELDON pooling of class maps (Durand, Thome & Cord, CVPR 2016), as in ResNet-WELDON.

    The score of class c is the mean of its k+ highest regions plus the mean of its k-
    lowest regions of the class map A_c: the top regions carry the evidence for the class,
    the bottom regions the evidence against it. Durand et al. 2019 use k+ = k- = 0.1 of the
    regions (supplementary A.2).
    """

    def __init__(self, k_pos: float = 0.1, k_neg: float = 0.1) -> None:
        super().__init__()
        if k_pos <= 0 or k_neg < 0:
            raise ValueError(f"k_pos must be > 0 and k_neg >= 0, got k_pos={k_pos}, k_neg={k_neg}")
        self.k_pos, self.k_neg = k_pos, k_neg

    def forward(self, maps: Tensor) -> Tensor:
        flat = maps.flatten(2)  # (B, C, regions)
        regions = flat.shape[-1]
        k_pos = _region_count(self.k_pos, regions)
        score = flat.topk(k_pos, dim=-1).values.mean(-1)
        if self.k_neg > 0:
            k_neg = _region_count(self.k_neg, regions)
            score = score + flat.topk(k_neg, dim=-1, largest=False).values.mean(-1)
        return score


@register_pooling("saliency")
class SaliencyPooling(nn.Module):
    """Saliency regularisation (Wang, Wan, Xiang, Zeng, ICCV 2023, Eq. 3-5).

    The logit of class c is a_c + alpha * s_c: a_c the average of the class map A_c (Eq. 4,
    the plain GAP logit) and s_c the mean of its k highest *raw* values (Eq. 3, no ReLU), so
    that the BCE on sigma(a_c + alpha s_c) also raises the top-k regions of a present class
    and lowers those of an absent one (the paper's J_theta, Eq. 2). The paper uses
    alpha = 0.5, k = 5 regions of ResNet-101's 14 x 14 map at 448 px; ``k`` below 1 is read as
    a fraction of the regions (at least one), as in :class:`WeldonPooling`.
    """

    def __init__(self, alpha: float = 0.5, k: float = 5) -> None:
        super().__init__()
        if not alpha >= 0 or not k > 0:  # `not >=` also catches NaN
            raise ValueError(f"saliency pooling needs alpha >= 0 and k > 0, got alpha={alpha}, k={k}")
        self.alpha, self.k = float(alpha), k

    def saliency(self, maps: Tensor) -> Tensor:
        """s_c of Eq. 3: the mean of the k highest values of each class map, (B, C)."""
        flat = maps.flatten(2)
        return flat.topk(_region_count(self.k, flat.shape[-1]), dim=-1).values.mean(-1)

    def forward(self, maps: Tensor) -> Tensor:
        return maps.mean(dim=(2, 3)) + self.alpha * self.saliency(maps)


class GAPHead(nn.Module):
    """Global average pooling, dropout, linear classifier."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, num_classes)

    def pool(self, features: Tensor) -> Tensor:
        return features.mean(dim=(2, 3))

    def forward(self, features: Tensor) -> Tensor:
        return self.fc(self.dropout(self.pool(features)))


class ClassMapHead(nn.Module):
    """A 1x1 convolution to class-specific maps A_c, then a pooling to scores."""

    def __init__(self, in_features: int, num_classes: int, pooling: str = "gap",
                 dropout: float = 0.0, **pooling_args: object) -> None:
        super().__init__()
        pool = POOLINGS.lookup(pooling)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(in_features, num_classes, kernel_size=1)
        try:
            self.pooling = pool(**pooling_args)
        except TypeError as err:  # an argument the pooling does not take: name it, not the module internals
            raise ValueError(f"pooling {pooling!r} does not take the arguments {sorted(pooling_args)}: {err}") from None

    def maps(self, features: Tensor) -> Tensor:
        """Class maps (B, C, h, w)."""
        return self.classifier(self.dropout(features))

    def forward(self, features: Tensor) -> Tensor:
        return self.pooling(self.maps(features))


HEADS: Registry[type[nn.Module]] = Registry("head")
HEADS.register("gap", GAPHead)
HEADS.register("classmap", ClassMapHead)


def create_head(name: str, in_features: int, num_classes: int, **kwargs: object) -> nn.Module:
    """Build a head by name (``"gap"`` or ``"classmap"``)."""
    return HEADS.lookup(name)(in_features, num_classes, **kwargs)
