"""The training engine: one loop (:class:`Trainer`), methods, hooks, checkpoints."""

from .batches import Batch, epoch_order
from .checkpoint import atomic_save, atomic_write_text, load_checkpoint
from .trainer import Hook, Method, NonFiniteLossError, SupervisedMethod, Trainer, build_optimizer, build_schedule
from .utils import derive_seed, environment_report, progress_enabled, resolve_device

__all__ = [
    "Batch", "epoch_order", "atomic_save", "atomic_write_text", "load_checkpoint", "Hook", "Method",
    "NonFiniteLossError", "SupervisedMethod", "Trainer", "build_optimizer", "build_schedule", "derive_seed",
    "environment_report", "progress_enabled", "resolve_device",
]
