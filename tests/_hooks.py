"""Hooks shared by the tests of resumed runs."""

from __future__ import annotations

from mlrobust.engine import Hook, Trainer


class Interrupt(Hook):
    """Simulates a crash at the start of a given epoch (after the previous epoch's
    checkpoint); ``-1`` never fires, so a resumed run keeps the same hook list."""

    def __init__(self, at_epoch: int) -> None:
        self.at_epoch = at_epoch

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        if epoch == self.at_epoch:
            raise KeyboardInterrupt
