"""What every dataset offers the engine: the :class:`LabelledDataset` protocol.

The trainer, the feature cache and the methods rely on these members and on nothing else;
:func:`check_dataset` checks them once, where a dataset enters the engine, with an error
that names what is missing. :class:`DatasetBase` supplies the defaults (images decoded one
by one, batches stacked from items), so a new dataset only defines ``labels``,
``classes``, ``__len__`` and ``__getitem__``.
"""

from __future__ import annotations

from typing import ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = ["LabelledDataset", "DatasetBase", "check_dataset", "KINDS"]

KINDS = ("images", "features")


@runtime_checkable
class LabelledDataset(Protocol):
    """A dataset of images (or precomputed feature maps) with a label matrix.

    * ``kind``: ``"images"`` — items are uint8 images (3, H, W), normalised and augmented on
      the device by the engine; ``"features"`` — items are float feature maps (D, h, w) that
      go to the head as they are (such datasets also have ``num_features = D``);
    * ``in_memory``: ``load_batch`` serves a whole batch cheaply (from memory, a memory map
      or by rendering on the device); if False, batches are decoded item by item in
      DataLoader worker processes;
    * ``labels``: the ground truth (N, C) int8 (1 present, -1 absent, 0 unknown), available
      without decoding any image, so label protocols run on labels alone;
    * ``classes``: the C class names, in label-column order.
    """

    kind: str
    in_memory: bool
    labels: Tensor
    classes: list[str]

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> tuple[Tensor, int]: ...

    def load_batch(self, index: Tensor, device: torch.device | str = "cpu") -> Tensor: ...


class DatasetBase(torch.utils.data.Dataset):
    """Defaults of :class:`LabelledDataset`: image items decoded one at a time."""

    kind: ClassVar[str] = "images"
    in_memory: ClassVar[bool] = False

    def load_batch(self, index: Tensor, device: torch.device | str = "cpu") -> Tensor:
        """The items ``index`` stacked into one batch on ``device``."""
        return torch.stack([self[int(i)][0] for i in index]).to(device)


def check_dataset(dataset: object, name: str = "dataset") -> None:
    """Check that ``dataset`` offers every member of :class:`LabelledDataset` with the right
    type and consistent sizes; a TypeError or ValueError names the member."""
    missing = [m for m in ("kind", "in_memory", "labels", "classes", "__len__", "__getitem__", "load_batch")
               if not hasattr(dataset, m)]
    if missing:
        raise TypeError(f"{name} ({type(dataset).__name__}) lacks {', '.join(missing)}: a dataset must offer "
                        "kind, in_memory, labels, classes, __len__, __getitem__ and load_batch "
                        "(mlrobust.data.DatasetBase supplies defaults)")
    if dataset.kind not in KINDS:
        raise ValueError(f"{name}.kind must be one of {KINDS}, got {dataset.kind!r}")
    labels = dataset.labels
    if not isinstance(labels, Tensor) or labels.dim() != 2:
        raise TypeError(f"{name}.labels must be a tensor of shape (N, C), got {type(labels).__name__} "
                        f"{tuple(getattr(labels, 'shape', ()))}")
    if labels.shape[0] != len(dataset):
        raise ValueError(f"{name} has {len(dataset)} items but {labels.shape[0]} label rows")
    if len(dataset.classes) != labels.shape[1]:
        raise ValueError(f"{name} has {len(dataset.classes)} class names but {labels.shape[1]} label columns")
    if dataset.kind == "features" and not isinstance(getattr(dataset, "num_features", None), int):
        raise TypeError(f"{name} holds feature maps and must say their depth in num_features (an int)")
