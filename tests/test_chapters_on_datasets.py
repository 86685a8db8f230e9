"""Every chapter runs end to end on a real-format dataset (a small fake COCO), at the smoke
scale: the path a reader takes with ``make full DATASET=coco DATA_ROOT=...``. The claims are
reported, not checked, at this scale (they are checked at the quick scale by nbval)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from _fake_datasets import write_fake_coco
from test_book import CHAPTERS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fake_coco(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_coco(tmp_path_factory.mktemp("coco"))


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_runs_on_coco_layout(notebook: Path, fake_coco: Path, tmp_path: Path) -> None:
    import jupytext
    import papermill as pm

    source = ROOT / "book" / "py" / f"{notebook.stem}.py"
    work = tmp_path / notebook.name
    jupytext.write(jupytext.read(source), work)
    os.environ.setdefault("MLROBUST_PROGRESS", "0")
    names = set(yaml.safe_load((ROOT / "book" / "params" / f"{notebook.stem}.yaml").read_text())["smoke"])
    parameters = {"scale": "smoke", "data_root": str(fake_coco)}
    if "dataset" in names:  # a chapter: the whole chapter on the dataset
        parameters.update(dataset="coco", output_dir=str(tmp_path / "runs"))
    else:  # the full-scale page: data loading from the dataset
        parameters.update(loading_dataset="coco")
    pm.execute_notebook(str(work), str(work), kernel_name="mlrobust", cwd=str(ROOT / "book"), progress_bar=False,
                        parameters=parameters)
