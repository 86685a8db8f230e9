"""The performance record (``python -m mlrobust bench``): its rows, tables and command line.

Tiny sizes and one step each; no assertion on speed (targets live in the record, never in tests).
"""

from __future__ import annotations

import math
from dataclasses import fields

import pytest
import torch

from mlrobust.bench import (BenchResult, BenchSettings, BenchTable, bench_frozen, bench_inference, bench_loading,
                            bench_methods, bench_train_step, format_report, format_table, time_step)
from mlrobust.cli import main
from mlrobust.data import DATASETS, DatasetBase
from mlrobust.methods import BENCH_CASES

TINY = {"batch_size": 4, "image_size": 32, "device": "cpu", "steps": 1, "warmup": 0}
TITLES = ["## Training and inference", "## Frozen layers (model.freeze_at = 2)", "## Data loading and augmentation",
          "## Method step time relative to BCE"]


def _check_row(row: BenchResult, batch_size: int = 4) -> None:
    assert {f.name for f in fields(row)} == {f.name for f in fields(BenchResult)}
    assert row.batch_size == batch_size and row.device == "cpu"
    assert row.images_per_s > 0 and row.step_ms > 0
    assert math.isclose(row.images_per_s, batch_size / (row.step_ms / 1000), rel_tol=1e-9)


def test_time_step_warms_up_then_times_every_step() -> None:
    calls = []
    seconds = time_step(lambda: calls.append(1), torch.device("cpu"), steps=3, warmup=2)
    assert len(calls) == 5 and seconds >= 0
    with pytest.raises(ValueError, match="steps"):
        time_step(lambda: None, torch.device("cpu"), steps=0, warmup=0)


def test_train_and_inference_rows() -> None:
    train = bench_train_step(**TINY, loss="asl")
    infer = bench_inference(**TINY)
    for row in (train, infer):
        _check_row(row)
        assert row.backbone == "cnn_s" and not row.amp and row.channels_last  # CPU: bf16 off, NHWC on
        assert row.ratio_to_bce is None
    assert train.what == "train step (asl)"


def test_frozen_rows_compare_with_training_every_layer() -> None:
    rows = bench_frozen(BenchSettings(**TINY), freeze_at=2, rounds=1)
    assert [r.what for r in rows] == ["train step, every layer", "train step, freeze_at 2",
                                      "train step, freeze_at 2, frozen maps stored"]
    assert rows[0].ratio_to_bce is None and all(r.ratio_to_bce > 0 for r in rows[1:])
    assert all(r.images_per_s > 0 for r in rows)


def test_method_ratios_cover_every_case_and_baseline_has_none(monkeypatch) -> None:
    from mlrobust.methods import cevikalp
    monkeypatch.setattr(cevikalp, "PROPAGATION_BENCH_IMAGES_CPU", 2000)  # a unit test, not a measurement
    rows = bench_methods(BenchSettings(**TINY), rounds=1)
    assert [r.what for r in rows] == [c.label for c in BENCH_CASES.values()]
    assert rows[0].what.startswith("BCE") and rows[0].ratio_to_bce is None
    for row in rows:
        _check_row(row)
    assert all(r.ratio_to_bce > 0 and math.isfinite(r.ratio_to_bce) for r in rows[1:])


def test_method_subset_always_measures_the_baseline_first() -> None:
    rows = bench_methods(BenchSettings(**TINY), ["weldon"], rounds=2)
    assert [r.what for r in rows] == [BENCH_CASES["bce"].label, BENCH_CASES["weldon"].label]
    with pytest.raises(ValueError, match="unknown bench method"):
        bench_methods(BenchSettings(**TINY), ["nope"])


@pytest.mark.parametrize("augment", ["none", "flip", "weak", "strong"])
def test_loading_on_the_embedded_benchmark(augment: str) -> None:
    row = bench_loading("shapescenes", 4, 0, "cpu", 2, augment=augment, warmup=1)
    _check_row(row)
    assert "shapescenes" in row.what and augment in row.what


class _DiskLike(DatasetBase):
    """A dataset read item by item (``in_memory`` False): it goes through the DataLoader path."""

    def __init__(self, n: int, image_size: int) -> None:
        self.images = torch.randint(0, 256, (n, 3, image_size, image_size), dtype=torch.uint8)
        self.labels = torch.ones(n, 2, dtype=torch.int8)
        self.classes = ["a", "b"]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], i


def test_loading_any_registered_dataset_through_the_dataloader(monkeypatch) -> None:
    factory = lambda split, *, root, image_size, n, seed: _DiskLike(3, image_size)  # noqa: E731
    monkeypatch.setitem(DATASETS, "disk_like", factory)
    row = bench_loading("disk_like", 4, 1, "cpu", 2, augment="weak", warmup=1, data_root="/nowhere")
    _check_row(row)  # 3 images, 12 needed: the order repeats


def test_loading_rejects_an_unknown_policy() -> None:
    with pytest.raises(ValueError, match="augmentation policy"):
        bench_loading("shapescenes", 4, 0, "cpu", 1, augment="wild")


def test_report_heads_every_table_with_device_torch_and_settings() -> None:
    row = BenchResult("x", "cnn_s", 32, 4, "cpu", False, False, 100.0, 40.0)
    ratio = BenchResult("y", "cnn_s", 32, 4, "cpu", False, False, 90.0, 44.4, ratio_to_bce=1.11)
    tables = [BenchTable("A", {"batch_size": 4, "compile": False}, [row]),
              BenchTable("B", {"workers": 0}, [row, ratio], "a note", 1.5)]
    text = format_report(tables, "cpu")
    assert "## A" in text and "## B" in text and "a note" in text
    assert text.count("Device: ") == 2 and text.count(f"torch {torch.__version__}") == 2
    assert "Settings: batch_size=4, compile=off" in text and "Settings: workers=0" in text
    assert "load average 1.50" in text
    assert "ratio_to_bce" in text.split("## B")[1] and "ratio_to_bce" not in text.split("## B")[0]
    assert "| 1.11" in text
    full = format_table([row, ratio])  # every field by default; no ratio: an empty cell
    assert all(f.name in full for f in fields(BenchResult))
    assert full.splitlines()[2].rstrip().endswith("|              |")


def test_cli_writes_the_whole_record(tmp_path, capsys) -> None:
    out = tmp_path / "sub" / "bench.md"
    args = ["bench", "--steps", "1", "--warmup", "0", "--batch-size", "4", "--device", "cpu", "--rounds", "1",
            "--methods", "asl,galc", "--augment", "flip", "--output", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    text = out.read_text()
    assert text == printed
    for title in TITLES:
        assert title in text
    assert text.count("Device: ") == len(TITLES) and "Settings: backbone=cnn_s" in text
    for what in ("train step (bce)", "inference", "frozen maps stored", "render shapescenes", "augment flip",
                 BENCH_CASES["galc"].label):
        assert what in text


def test_cli_skips_tables_and_reports_bad_names(tmp_path, capsys) -> None:
    args = ["bench", "--steps", "1", "--warmup", "0", "--batch-size", "4", "--device", "cpu"]
    assert main([*args, "--methods", "none", "--augment", "", "--frozen", "0"]) == 0
    text = capsys.readouterr().out
    assert TITLES[0] in text and not any(title in text for title in TITLES[1:])
    assert main([*args, "--methods", "asl,nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main([*args, "--augment", "wild"]) == 2
    assert "wild" in capsys.readouterr().err


def test_cli_loading_from_a_dataset_on_disk_with_loader_options(tmp_path, capsys) -> None:
    from _fake_datasets import write_fake_coco

    root = write_fake_coco(tmp_path / "coco", n_train=40, n_val=8, size=24)
    out = tmp_path / "bench.md"
    assert main(["bench", "--steps", "2", "--warmup", "0", "--methods", "none", "--augment", "flip",
                 "--batch-size", "8", "--dataset", "coco", "--data-root", str(root), "--arg", "keep_empty=false",
                 "--output", str(out)]) == 0
    text = out.read_text()
    assert "load coco, augment flip, 0 workers" in text and "keep_empty=off" in text
    assert main(["bench", "--methods", "none", "--dataset", "coco", "--data-root", str(root), "--arg", "nope"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
