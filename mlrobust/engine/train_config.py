"""The training loop's settings: optimisation, schedule, precision and bookkeeping.

It lives in the engine because the loop reads it; :mod:`mlrobust.config` composes it into
an experiment's config as the ``train`` section.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..options import Options, check

__all__ = ["TrainConfig", "OPTIMIZERS", "SCHEDULES"]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("onecycle", "cosine", "step", "constant")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass
class TrainConfig(Options):
    """Optimisation, schedule, precision and bookkeeping of one training run."""

    section = "train"

    epochs: int = 8
    batch_size: int = 64
    optimizer: str = "sgd"  # "sgd", "adam" or "adamw"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    schedule: str = "onecycle"  # "onecycle", "cosine", "step" or "constant"
    lr_steps: list[int] = field(default_factory=list)  # "step": epochs at which lr is divided by 10
    warmup: float = 0.2  # "onecycle": share of steps spent warming up
    seed: int = 0  # model initialisation, data order, augmentation, dropout (each its own stream)
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    amp: bool = True  # bf16 autocast on CUDA (ignored on the CPU)
    channels_last: bool = True  # NHWC images and conv weights (CUDA and CPU)
    compile: bool = False
    # with model.freeze_at: the frozen layers' output computed once per training image and mirror
    # image, shared by every run on those images (engine.frozen_cache; augment 'none' or 'flip',
    # else ignored); the same result, faster; memory 2 x images x map size
    cache_frozen: bool = False
    grad_clip: float | None = None  # clip the gradient norm to this value (> 0); None: no clipping
    eval_every: int = 0  # evaluate on the validation set every n epochs (0: never)
    eval_batch_size: int = 256
    progress: bool | None = None  # None: on in an interactive session, off in CI / papermill
    checkpoint: bool = True  # write checkpoint.pt at the end of each epoch

    def validate(self) -> None:
        k = self.key
        check(self.epochs >= 1, k("epochs"), self.epochs, ">= 1")
        check(self.batch_size >= 2, k("batch_size"), self.batch_size, ">= 2 (BatchNorm needs two samples)")
        check(self.eval_batch_size >= 1, k("eval_batch_size"), self.eval_batch_size, ">= 1")
        check(self.lr > 0, k("lr"), self.lr, "> 0")
        check(self.momentum >= 0, k("momentum"), self.momentum, ">= 0")
        check(self.weight_decay >= 0, k("weight_decay"), self.weight_decay, ">= 0")
        check(self.optimizer in OPTIMIZERS, k("optimizer"), self.optimizer, _choices(OPTIMIZERS))
        check(self.schedule in SCHEDULES, k("schedule"), self.schedule, _choices(SCHEDULES))
        check(all(s >= 1 for s in self.lr_steps), k("lr_steps"), self.lr_steps, "epochs >= 1")
        check(0.0 <= self.warmup < 1.0, k("warmup"), self.warmup, "in [0, 1)")
        check(self.eval_every >= 0, k("eval_every"), self.eval_every, ">= 0")
        check(self.grad_clip is None or self.grad_clip > 0, k("grad_clip"), self.grad_clip,
              "> 0 or None (no clipping)")
        check(bool(_DEVICE.match(self.device)), k("device"), self.device, "'auto', 'cpu', 'mps', 'cuda' or 'cuda:N'")


def _choices(names: tuple[str, ...]) -> str:
    quoted = [repr(n) for n in names]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]
