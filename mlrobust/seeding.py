"""Derived seeds: one run seed, many independent random streams."""

from __future__ import annotations

import numpy as np

__all__ = ["derive_seed"]


def derive_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (e.g. run seed and epoch), via numpy's SeedSequence,
    so that nearby inputs give unrelated streams."""
    state = np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)
    return int(state[0]) >> 1
