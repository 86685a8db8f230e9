"""Claims that can fail: paired effects over seeds, and the strict check against the text."""

from __future__ import annotations

import math

import pytest

from mlrobust.claims import BORDERLINE, Claims, Effect, paired


def test_paired_effect_is_per_seed_difference() -> None:
    e = paired([30.0, 31.0, 29.0], [33.0, 35.0, 31.0])
    assert e.diffs == (3.0, 4.0, 2.0) and e.mean == pytest.approx(3.0) and e.sd == pytest.approx(1.0)
    assert e.detected(+1) and not e.detected(-1)
    assert str(e) == "+3.00 ± 1.00 (n=3)"
    with pytest.raises(ValueError, match="one value per seed on both sides, got 2 and 3"):
        paired([1.0, 2.0], [1.0, 2.0, 3.0])


def test_an_effect_smaller_than_its_spread_is_not_detected() -> None:
    e = paired([30.0, 30.0, 30.0], [30.5, 29.0, 31.5])  # mean +0.33, sd 1.26
    assert not e.detected(+1) and not e.detected(-1)
    assert e.within(2.0) and not e.within(1.0)
    assert math.isnan(Effect(()).mean)


def test_strict_claims_raise_when_the_measurement_contradicts_the_text() -> None:
    claims = Claims(strict=True)
    assert claims.paper("b beats a", paired([1.0, 1.0], [2.0, 2.5]).detected(), measured="+1.25", paper="+2")
    assert not claims.ours("c beats a", False, expect=False)
    with pytest.raises(AssertionError, match="says this claim holds.*b beats c"):
        claims.paper("b beats c", False)
    with pytest.raises(AssertionError, match="does not hold"):
        claims.ours("c loses", True, expect=False)
    lenient = Claims(strict=False)
    assert not lenient.paper("b beats c", False)


def test_tables_keep_the_papers_claims_apart_from_ours() -> None:
    claims = Claims(strict=False)
    claims.paper("partial-BCE beats BCE", True, measured="+1.0 ± 0.2", paper="+1.5")
    claims.ours("gain is a learning-rate effect", False, measured="+0.1 ± 0.4")
    paper = claims.table("paper", caption="ShapeScenes quick, seeds 0-2").data
    ours = claims.table("ours").data
    assert "partial-BCE beats BCE" in paper and "learning-rate" not in paper and "reproduced?" in paper
    assert "learning-rate" in ours and "partial-BCE" not in ours and "**no**" in ours
    with pytest.raises(ValueError, match="kind must be 'paper' or 'ours'"):
        claims.table("mine")


def test_a_lenient_table_marks_the_verdicts_that_depart_from_the_text() -> None:
    claims = Claims(strict=False)
    claims.paper("as the text says", True)
    claims.paper("against the text", False)
    claims.ours("against the text, the other way", True, expect=False)
    paper, ours = claims.table("paper").data, claims.table("ours").data
    assert "| yes |" in paper and "**no** (the text says yes)" in paper
    assert "yes (the text says no)" in ours


def test_a_verdict_near_its_boundary_is_borderline() -> None:
    # mean 1.0, sd 1.0: on the boundary of "detected"; mean 3.0, sd 1.0: decisive
    edge, clear = Effect((0.0, 1.0, 2.0)), Effect((2.0, 3.0, 4.0))
    assert not edge.detected() and edge.detected().borderline
    assert clear.detected() and not clear.detected().borderline
    assert not clear.detected(-1).borderline  # far on the side that fails
    assert edge.within(2.4).borderline and not edge.within(4.0).borderline
    # a small effect with a smaller spread: 0.16 ± 0.09 is near its boundary too
    small = Effect((0.06, 0.18, 0.24))
    assert small.detected() and small.detected().borderline
    assert not Effect((1.0,)).detected().borderline  # one seed: no spread to be near
    assert BORDERLINE == 0.5


def test_strict_claims_report_a_borderline_contradiction_instead_of_raising() -> None:
    claims = Claims(strict=True)
    assert not claims.paper("b beats a, barely", Effect((0.0, 1.0, 2.0)).detected())  # no raise
    with pytest.raises(AssertionError, match="clearly"):
        claims.paper("b beats a, clearly", Effect((-1.0, 0.0, 1.0)).detected())
    with pytest.raises(AssertionError, match="within"):
        claims.ours("no difference within 0.5", Effect((0.0, 1.0, 2.0)).within(0.5))
    assert "**no** (borderline; the text says yes)" in claims.table("paper").data
