"""Claims a chapter makes, checked on its own measurements.

Two kinds of claim, kept apart in every chapter's closing tables:

* **the paper's claims** — "partial-BCE beats the BCE", as the paper states it; the row says
  whether it is *reproduced* here, beside the paper's number;
* **our observations** — what the book finds that the paper did not say (a control, a
  cause, a counter-finding).

Every comparison is a paired effect over seeds (:func:`paired`: the per-seed difference
b - a of two settings run with the same seeds), reported as mean ± standard deviation. An
effect is *detected* when its mean exceeds its spread in the claimed direction
(:meth:`Effect.detected`); "no detectable difference" is stated with a bound
(:meth:`Effect.within`). A claim holds or not; the chapter's text says which it expects, and
with ``strict`` (the quick scale at its preset parameters, which CI runs:
:func:`mlrobust.notebook.claims_checked`) a measurement that disagrees with the text raises,
so a broken method fails the build. Elsewhere the tables report, marking each verdict that
departs from the text.

A verdict is **borderline** (:class:`Verdict`) when its measurement lies near the test's
boundary: closer than half the larger of the effect's spread and the effect itself. The last
bits of another machine kind move a paired mean over three seeds by a fraction of both
(measured between two CPU kinds: 0.5 points on a spread of 1.0; 0.1 points on an effect of
0.16 ± 0.09), so such a verdict can flip with the machine. A borderline verdict that departs
from the text is reported, marked, and not raised: the build fails on a decisive
contradiction only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Effect", "Verdict", "paired", "Claims", "BORDERLINE"]

#: a verdict is borderline when its margin is smaller than this share of its scale
BORDERLINE = 0.5


class Verdict:
    """The outcome of a test on an :class:`Effect`: true when it holds. ``margin`` is how far
    the measurement lies from the test's boundary (positive on the side that holds) and
    ``scale`` the larger of the effect's spread and its absolute mean; the verdict is
    :attr:`borderline` when the margin is smaller than ``BORDERLINE * scale``. With one seed
    (no spread) nothing is borderline."""

    __slots__ = ("holds", "margin", "scale")

    def __init__(self, holds: bool, margin: float, scale: float) -> None:
        self.holds, self.margin, self.scale = bool(holds), float(margin), float(scale)

    def __bool__(self) -> bool:
        return self.holds

    @property
    def borderline(self) -> bool:
        return self.scale > 0 and abs(self.margin) < BORDERLINE * self.scale

    def __repr__(self) -> str:
        return f"Verdict(holds={self.holds}, margin={self.margin:+.3g}, scale={self.scale:.3g})"


@dataclass(frozen=True)
class Effect:
    """Per-seed differences of a paired comparison (``b - a``) and their summary."""

    diffs: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def mean(self) -> float:
        return float(np.mean(self.diffs)) if self.diffs else math.nan

    @property
    def sd(self) -> float:
        """Sample standard deviation over seeds (0 for a single seed)."""
        return float(np.std(self.diffs, ddof=1)) if self.n > 1 else 0.0

    def detected(self, direction: int = 1) -> Verdict:
        """The effect goes the claimed way (``direction`` +1: b > a, -1: b < a) by more than
        its spread: ``direction * mean > sd`` (with one seed: ``direction * mean > 0``)."""
        margin = direction * self.mean - self.sd
        return Verdict(margin > 0, margin, self._scale)

    def within(self, bound: float) -> Verdict:
        """No detectable difference larger than ``bound``: ``|mean| + sd < bound``."""
        margin = bound - abs(self.mean) - self.sd
        return Verdict(margin > 0, margin, self._scale)

    @property
    def _scale(self) -> float:
        """How far a machine's last bits can move a verdict's margin (see :class:`Verdict`)."""
        return max(self.sd, abs(self.mean)) if self.n > 1 else 0.0

    def __str__(self) -> str:
        return f"{self.mean:+.2f} ± {self.sd:.2f} (n={self.n})"


def paired(a: Sequence[float], b: Sequence[float]) -> Effect:
    """The paired effect of setting ``b`` over setting ``a``: b - a seed by seed."""
    if len(a) != len(b):
        raise ValueError(f"paired comparison needs one value per seed on both sides, got {len(a)} and {len(b)}")
    return Effect(tuple(float(y) - float(x) for x, y in zip(a, b)))


@dataclass
class _Row:
    kind: str  # "paper" or "ours"
    claim: str
    holds: bool
    expected: bool
    measured: str
    paper: str
    borderline: bool = False


class Claims:
    """The claims of a chapter: :meth:`paper` and :meth:`ours` record one each and, with
    ``strict``, raise when the measurement contradicts what the chapter says (``expect``)."""

    def __init__(self, strict: bool) -> None:
        self.strict = bool(strict)
        self.rows: list[_Row] = []

    def _record(self, kind: str, claim: str, holds: Any, expect: bool, measured: Any, paper: str) -> bool:
        borderline = bool(getattr(holds, "borderline", False))
        holds = bool(holds)
        row = _Row(kind, claim, holds, bool(expect), "" if measured is None else str(measured), paper, borderline)
        self.rows.append(row)
        if self.strict and holds != row.expected and not borderline:
            said = "holds" if row.expected else "does not hold"
            raise AssertionError(f"the chapter says this claim {said}, but the measurement disagrees: {claim} "
                                 f"(measured: {row.measured})")
        return holds

    def paper(self, claim: str, holds: Any, *, expect: bool = True, measured: Any = None, paper: str = "") -> bool:
        """A claim of the paper (``paper``: its number or wording); ``holds``: whether it is
        reproduced here; ``expect``: what the chapter's text says."""
        return self._record("paper", claim, holds, expect, measured, paper)

    def ours(self, claim: str, holds: Any, *, expect: bool = True, measured: Any = None) -> bool:
        """An observation of ours, with the measurement behind it."""
        return self._record("ours", claim, holds, expect, measured, "")

    def table(self, kind: str, caption: str = "") -> Any:
        """A Markdown table of the claims of one ``kind`` ("paper" or "ours")."""
        from .notebook import markdown_table  # a display helper; the claims themselves need no notebook

        if kind not in ("paper", "ours"):
            raise ValueError(f"kind must be 'paper' or 'ours', got {kind!r}")
        rows = [r for r in self.rows if r.kind == kind]

        def verdict(r: _Row) -> str:
            said = ("" if r.holds == r.expected else
                    f" ({'borderline; ' if r.borderline else ''}the text says {'yes' if r.expected else 'no'})")
            return ("yes" if r.holds else "**no**") + said

        if kind == "paper":
            return markdown_table(["the paper's claim", "paper", "ours (paired Δ ± sd)", "reproduced?"],
                                  [[r.claim, r.paper, r.measured, verdict(r)] for r in rows], caption=caption)
        return markdown_table(["our observation", "measured", "holds?"],
                              [[r.claim, r.measured, verdict(r)] for r in rows], caption=caption)
