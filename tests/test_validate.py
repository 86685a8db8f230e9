"""Label-matrix validation: every bad input is refused with a message that names the
argument and says what was expected (issue 13, item 3: labels that look like {0, 1})."""

from __future__ import annotations

import pytest
import torch

from mlrobust import metrics
from mlrobust._validate import check_labels

_Y = torch.tensor([[1, -1, 1], [-1, 1, -1]], dtype=torch.int8)

BAD_LABELS = [
    # (case, labels, keyword arguments, error type, text the message must hold)
    ("bool matrix", _Y == 1, {}, TypeError, r"y_true is a bool tensor.*y_true\.to\(torch\.int8\) \* 2 - 1"),
    ("bool even when marked", _Y == 1, {"zero_means": "unknown"}, TypeError, r"y_true is a bool tensor"),
    ("0/1 int8 matrix", (_Y == 1).to(torch.int8), {}, ValueError,
     r"y_true holds only 0s and 1s \(no -1\).*zero_means='unknown'"),
    ("0/1 int64 matrix", (_Y == 1).long(), {}, ValueError, r"y_true holds only 0s and 1s"),
    ("0/1 float matrix", (_Y == 1).float(), {}, ValueError, r"y_true holds only 0s and 1s"),
    ("value 2", torch.tensor([[2, 0, 1]]), {}, ValueError, r"y_true must hold values in \{-1, 0, 1\}.*found 2"),
    ("NaN", torch.tensor([[float("nan"), 1.0]]), {}, ValueError, r"y_true contains NaN"),
    ("unknown where none allowed", torch.tensor([[0, 1, -1]]), {"allow_unknown": False}, ValueError,
     r"y_true must hold values in \{-1, 1\}; found 0"),
    ("1-D", torch.tensor([1, -1]), {}, ValueError, r"y_true must have shape \(N, C\), got shape \(2,\)"),
    ("wrong class count", _Y, {"num_classes": 4}, ValueError, r"y_true must have 4 columns"),
    ("not a tensor", [[1, -1]], {}, TypeError, r"y_true must be a torch.Tensor.*got list"),
    ("unknown mark", _Y, {"zero_means": "absent"}, ValueError, r"zero_means must be one of \(None, 'unknown'\)"),
]


@pytest.mark.parametrize("case, y, kwargs, error, message", BAD_LABELS, ids=[c[0] for c in BAD_LABELS])
def test_bad_labels_are_refused_naming_the_argument(case: str, y: object, kwargs: dict, error: type,
                                                    message: str) -> None:
    with pytest.raises(error, match=message):
        check_labels(y, "y_true", **kwargs)


@pytest.mark.parametrize("y", [
    torch.tensor([[1, -1], [-1, 1]], dtype=torch.int8),   # fully known
    torch.tensor([[1, 0], [-1, 0]], dtype=torch.int8),    # partial
    torch.zeros(2, 3, dtype=torch.int8),                  # nothing known (a masked batch)
    torch.ones(2, 3, dtype=torch.int8),                   # every class present
    torch.zeros(0, 3, dtype=torch.int8),                  # empty
], ids=["full", "partial", "all-unknown", "all-present", "empty"])
def test_unambiguous_labels_pass(y: torch.Tensor) -> None:
    check_labels(y, "y")


def test_a_marked_zero_one_matrix_passes() -> None:
    positives_only = torch.tensor([[1, 0, 0], [0, 0, 1]], dtype=torch.int8)  # e.g. single positive, rest unknown
    check_labels(positives_only, "y", zero_means="unknown")


def test_zero_one_check_skips_device_tensors_like_the_value_check() -> None:
    check_labels(torch.empty(2, 3, dtype=torch.int8, device="meta"), "y")  # would fail if read


def test_metrics_refuse_the_issue_example() -> None:
    """``metrics.evaluate(x, y == 1)`` reported mAP 100: now an error naming ``y``."""
    logits = torch.randn(_Y.shape)
    with pytest.raises(TypeError, match=r"\by is a bool tensor"):
        metrics.evaluate(logits, _Y == 1)
    with pytest.raises(ValueError, match=r"\by holds only 0s and 1s"):
        metrics.evaluate(logits, (_Y == 1).to(torch.int8))
