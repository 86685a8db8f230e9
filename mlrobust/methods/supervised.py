"""Plain supervised training with a loss: ``loss(model(images), observed labels)``.

Every loss-only method is this one with another ``loss.name``: the BCE, the partial-BCE of
Durand et al. 2019, the ASL used by Pene et al. 2021, the BN-BCE of Wang et al. 2023. A new
loss needs only ``@register_loss`` in :mod:`mlrobust.losses` (and, for the bench, a case).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor

from ..data import LabelledDataset, Subset
from ..engine import Batch, Hook, Method, Trainer
from ..losses import create_loss
from .base import BenchCase, MethodContext, NoArgs, register_bench_case, register_method

__all__ = ["SupervisedMethod", "LabelledOnlyMethod"]


class SupervisedMethod(Method):
    """``criterion(model(images), observed labels)``: BCE, partial-BCE, ASL, ..."""

    name = "supervised"

    def __init__(self, criterion: Callable[[Tensor, Tensor], Tensor], hooks: Sequence[Hook] = ()) -> None:
        self.criterion = criterion
        self._hooks = list(hooks)

    def hooks(self) -> list[Hook]:
        return self._hooks

    def training_loss(self, trainer: Trainer, batch: Batch) -> tuple[Tensor, Tensor]:
        logits = trainer.model(batch.images)
        return self.criterion(logits, batch.targets), logits


@register_method("supervised")
def supervised(ctx: MethodContext, args: NoArgs) -> Method:
    """The config's loss on the observed labels."""
    return SupervisedMethod(ctx.loss())


class LabelledOnlyMethod(SupervisedMethod):
    """:class:`SupervisedMethod` on the images with at least one known label only.

    Durand, Mehrasa, Mori, CVPR 2019, §4.1: "dense" labels give a subset of the images all
    their labels. Trained on the whole set, the unlabelled images add nothing but steps (their
    loss is 0); this method reads the setting as training on the labelled subset. With the
    same epochs it takes a share ``known`` of the steps; the same steps need epochs / known.
    """

    name = "labelled_only"

    def training_data(self, dataset: LabelledDataset, labels: Tensor) -> tuple[LabelledDataset, Tensor]:
        keep = (labels != 0).any(dim=1).nonzero()[:, 0]
        if len(keep) == 0:
            raise ValueError("labelled_only: no training image has a known label")
        return Subset(dataset, keep, labels[keep]), labels[keep]


@register_method("labelled_only")
def labelled_only(ctx: MethodContext, args: NoArgs) -> Method:
    """The config's loss on the images that have a known label (the dense setting's subset)."""
    return LabelledOnlyMethod(ctx.loss())


def _loss_case(loss: str) -> Callable[[int, int], Method]:
    return lambda num_classes, batch_size: SupervisedMethod(create_loss(loss))


register_bench_case(BenchCase("bce", "BCE, gap head (baseline)", _loss_case("bce")))
