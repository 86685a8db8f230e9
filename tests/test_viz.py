"""The book's interactive figure: the protocol explorer's widgets follow the protocol."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from mlrobust import labels  # noqa: E402
from mlrobust.viz import protocol_explorer  # noqa: E402

pytest.importorskip("ipywidgets")


def _widgets(box):  # VBox([HBox([protocol, parameter, seed]), output])
    return box.children[0].children


@pytest.fixture
def y() -> torch.Tensor:
    return torch.where(torch.rand(6, 5, generator=torch.Generator().manual_seed(0)) < 0.3, 1, -1).to(torch.int8)


def test_the_slider_resets_when_the_parameter_means_something_else(y: torch.Tensor) -> None:
    calls: list[tuple[str, float | None]] = []

    def spy(name, fn):
        def run(y, seed, **kw):
            calls.append((name, next(iter(kw.values()), None)))
            return fn(y, seed=seed, **kw)
        return run

    box = protocol_explorer(y, {
        "partial": (spy("partial", labels.partial), "known", 0.1),
        "dense": (spy("dense", labels.dense), "known", 0.2),
        "noisy": (spy("noisy", labels.noisy), "clean", 0.8),
        "single_positive": (spy("single_positive", labels.single_positive), None),
    })
    protocol, value, seed = _widgets(box)
    assert (value.description, value.value, calls) == ("known", 0.1, [("partial", 0.1)])
    value.value = 0.35
    protocol.value = "dense"  # the same parameter, the same meaning: the user's value stays
    assert value.value == 0.35 and calls[-1] == ("dense", 0.35)
    protocol.value = "noisy"  # a share known is not a share clean: back to noisy's default
    assert (value.description, value.value) == ("clean", 0.8)
    assert calls[-1] == ("noisy", 0.8) and ("noisy", 0.35) not in calls  # drawn once, at 0.8
    protocol.value = "single_positive"
    assert value.disabled and value.description == "(none)" and calls[-1] == ("single_positive", None)
    protocol.value = "partial"  # back from no parameter: partial's default again
    assert (value.disabled, value.value, calls[-1]) == (False, 0.1, ("partial", 0.1))
    n = len(calls)
    seed.value = 3
    assert len(calls) == n + 1


@pytest.mark.parametrize("spec, message", [
    ((labels.partial,), r"protocols\['p'\] must be \(fn, parameter name or None\[, default\]\)"),
    (("partial", "known"), r"protocols\['p'\] must be"),
    ((labels.partial, "known", 1.5), r"protocols\['p'\]: the default 1.5 is outside"),
])
def test_a_malformed_protocol_is_named(y: torch.Tensor, spec: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        protocol_explorer(y, {"p": spec})
