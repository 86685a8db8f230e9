"""Plain supervised training with a loss: ``loss(model(images), observed labels)``.

Every loss-only method is this one with another ``loss.name``: the BCE, the partial-BCE of
Durand et al. 2019, the ASL used by Pene et al. 2021, the BN-BCE of Wang et al. 2023. A new
loss needs only ``@register_loss`` in :mod:`mlrobust.losses` (and, for the bench, a case).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor

from ..engine import Batch, Hook, Method, Trainer
from ..losses import create_loss
from .base import BenchCase, MethodContext, NoArgs, register_bench_case, register_method

__all__ = ["SupervisedMethod"]


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


def _loss_case(loss: str) -> Callable[[int, int], Method]:
    return lambda num_classes, batch_size: SupervisedMethod(create_loss(loss))


register_bench_case(BenchCase("bce", "BCE, gap head (baseline)", _loss_case("bce")))
# BN-BCE belongs to Wang et al. 2023, whose module does not exist yet
register_bench_case(BenchCase("bn_bce", "BN-BCE (Wang 2023)", _loss_case("bn_bce")))
