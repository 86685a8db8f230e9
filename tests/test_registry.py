"""The name -> implementation registries shared by models, data, protocols and methods."""

import pytest

from mlrobust.data import DATASETS, POLICIES
from mlrobust.labels import PROTOCOLS
from mlrobust.losses import LOSSES
from mlrobust.methods import BENCH_CASES, METHODS
from mlrobust.models import BACKBONES, HEADS, POOLINGS
from mlrobust.registry import Registry


def test_register_lookup_and_errors() -> None:
    reg: Registry = Registry("widget")

    @reg.register("a")
    def make_a() -> str:
        return "a"

    assert reg.register("b", str.upper) is str.upper
    assert reg.lookup("a") is make_a and sorted(reg) == ["a", "b"]
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        reg.register("a", make_a)
    with pytest.raises(ValueError, match=r"unknown widget 'c'; valid: \['a', 'b'\]"):
        reg.lookup("c")


def test_the_package_registries_hold_their_built_in_entries() -> None:
    assert {"cnn_s", "cnn_m"} <= set(BACKBONES)
    assert {"gap", "max"} <= set(POOLINGS) and {"gap", "classmap"} <= set(HEADS)
    assert "shapescenes" in DATASETS and {"supervised", "curriculum", "gold_correction"} <= set(METHODS)
    assert {"bce", "partial_bce", "asl", "bn_bce"} <= set(LOSSES) and {"flip", "weak", "strong"} <= set(POLICIES)
    assert list(BENCH_CASES)[0] == "bce" and {"partial_bce", "weldon", "gnn", "galc"} <= set(BENCH_CASES)
    assert {"full", "partial", "dense", "noisy", "single_positive", "symmetric_noise", "frequency_corruption",
            "semi_supervised"} <= set(PROTOCOLS)
