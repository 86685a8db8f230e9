"""Chapter helpers: parameters per scale and dataset, and the claims checker."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlrobust.notebook import Claims, resolve_parameters

PARAMS = """
quick: {dataset: shapescenes, n_train: 100, lr: 0.1}
full: {dataset: shapescenes, n_train: 82000, lr: 0.01}
datasets:
  coco: {n_train: 0}
"""


def test_resolve_parameters_scale_dataset_and_explicit(tmp_path: Path) -> None:
    (tmp_path / "ch.yaml").write_text(PARAMS)
    given = {"dataset": None, "n_train": None, "lr": None}
    assert resolve_parameters("ch", "quick", given, tmp_path) == {"dataset": "shapescenes", "n_train": 100, "lr": 0.1}
    assert resolve_parameters("ch", "full", given, tmp_path)["n_train"] == 82000
    coco = resolve_parameters("ch", "full", {**given, "dataset": "coco"}, tmp_path)
    assert coco == {"dataset": "coco", "n_train": 0, "lr": 0.01}
    assert resolve_parameters("ch", "quick", {**given, "dataset": "coco"}, tmp_path)["n_train"] == 100
    assert resolve_parameters("ch", "full", {**given, "dataset": "coco", "n_train": 5}, tmp_path)["n_train"] == 5
    with pytest.raises(ValueError, match=r"scale must be one of \['full', 'quick'\]"):
        resolve_parameters("ch", "datasets", given, tmp_path)
    with pytest.raises(ValueError, match=r"only in the notebook \['epochs'\]"):
        resolve_parameters("ch", "quick", {**given, "epochs": None}, tmp_path)
    (tmp_path / "ch.yaml").write_text(PARAMS + "  voc2007: {epochs: 3}\n")
    with pytest.raises(ValueError, match=r"\[datasets\]\[voc2007\] sets unknown parameters \['epochs'\]"):
        resolve_parameters("ch", "full", {**given, "dataset": "voc2007"}, tmp_path)


def test_claims_strict_raises_lenient_reports() -> None:
    strict = Claims(strict=True)
    assert strict.check(2 > 1, "two beats one")
    with pytest.raises(AssertionError, match=r"claim does not hold: one beats two \(1 vs 2\)"):
        strict.check(1 > 2, "one beats two", "1 vs 2")
    lenient = Claims(strict=False)
    assert not lenient.check(False, "does not hold", 0.5)
    assert lenient.check(True, "holds")
    table = lenient.table().data
    assert "| does not hold | **no** | 0.5 |" in table and "| holds | yes |  |" in table
