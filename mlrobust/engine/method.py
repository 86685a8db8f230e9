"""How a paper's method plugs into the one training loop: a :class:`Method` turns a batch
into a loss; :class:`Hook` objects run at fixed points of the loop. Both may keep state,
which every checkpoint saves and a resume restores.

What a method may use of the trainer (:class:`~mlrobust.engine.Trainer`): ``model`` (the
network to call in ``training_loss``, wrapped for several GPUs when there are several;
``model(images, with_features=True)`` also returns the backbone's feature maps), ``module``
(the unwrapped network, for inference), ``predict`` / ``features`` / ``infer`` (whole-dataset
passes in eval mode), ``train_labels`` / ``set_train_labels`` (the label store),
``train_set``, ``device``, ``epoch`` and ``config``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from torch import Tensor

from ..data.dataset import LabelledDataset
from .batches import Batch

if TYPE_CHECKING:  # annotations only: the trainer imports this module
    from .trainer import Trainer

__all__ = ["Method", "Hook"]


class Hook:
    """Callbacks into the loop; override what a method needs. State returned by
    :meth:`state_dict` is saved in checkpoints and restored on resume."""

    def on_fit_start(self, trainer: Trainer) -> None:
        """Once, before the first epoch that runs (also after a resume)."""

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Before epoch ``epoch`` (0-based) trains, e.g. to relabel the label store."""

    def on_batch_end(self, trainer: Trainer, batch: Batch, logits: Tensor, loss: Tensor) -> None:
        """After the optimiser step of each batch."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, record: dict[str, float]) -> None:
        """After epoch ``epoch``; may add entries to its history ``record``."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class Method(ABC):
    """How a batch becomes a loss. Subclasses implement :meth:`training_loss`; they may
    contribute hooks, keep state, and choose the images they train on."""

    name = "method"

    def hooks(self) -> list[Hook]:
        return []

    @abstractmethod
    def training_loss(self, trainer: Trainer, batch: Batch) -> tuple[Tensor, Tensor]:
        """Return (scalar loss, logits of the batch)."""

    def training_data(self, dataset: LabelledDataset, labels: Tensor) -> tuple[LabelledDataset, Tensor]:
        """The images and observed labels the run trains on, from the run's training set and
        its observed labels (default: all of them, unchanged). A method that trains on a
        part of the set (GALC-SLR's gold and silver images) returns that part."""
        return dataset, labels

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
