"""The training engine: one loop (:class:`Trainer`), the method and hook interfaces,
batches with views, checkpoints, distributed helpers."""

from .batches import Batch, FeatureViewMaker, ViewMaker, epoch_order
from .checkpoint import atomic_save, atomic_write_text, load_checkpoint
from .method import Hook, Method
from .train_config import TrainConfig
from .trainer import NonFiniteLossError, Trainer, build_optimizer, build_schedule
from .utils import derive_seed, environment_report, numerics_fingerprint, progress_enabled, resolve_device

__all__ = [
    "Batch", "ViewMaker", "FeatureViewMaker", "epoch_order", "atomic_save", "atomic_write_text", "load_checkpoint", "Hook", "Method",
    "TrainConfig", "NonFiniteLossError", "Trainer", "build_optimizer", "build_schedule", "derive_seed",
    "environment_report", "numerics_fingerprint", "progress_enabled", "resolve_device",
]
