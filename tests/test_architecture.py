"""The package's layers: every module imports only modules of its own layer or below, so the
engine never depends on configs, methods never on experiments, and there are no import loops.

    0  _validate, _version, registry, seeding, options, atomic, progress, parallel
    1  labels, losses, metrics
    2  data, models
    3  engine
    4  config
    5  methods
    6  experiments
    7  bench, cli, claims, notebook, viz, __main__
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mlrobust"

LAYERS = {
    "_validate": 0, "_version": 0, "registry": 0, "seeding": 0, "options": 0, "atomic": 0, "progress": 0,
    "parallel": 0,
    "labels": 1, "losses": 1, "metrics": 1,
    "data": 2, "models": 2,
    "engine": 3,
    "config": 4,
    "methods": 5,
    "experiments": 6, "pretrained": 6,
    "bench": 7, "cli": 7, "claims": 7, "notebook": 7, "viz": 7, "__main__": 7, "__init__": 7,
}


def _top(module: str) -> str:
    """The package-level unit of a dotted module name inside mlrobust (``engine.trainer`` ->
    ``engine``)."""
    return module.split(".")[0]


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported mlrobust unit) for every import in the file, relative or absolute,
    at any depth (imports inside functions count too)."""
    package = path.relative_to(PACKAGE).with_suffix("").parts[:-1]  # the file's package inside mlrobust
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - (node.level - 1)])
                if node.module:
                    names = [".".join(base + [node.module])]
                else:  # "from . import x": the package itself, or x at the top level
                    names = [".".join(base)] if base else [a.name for a in node.names]
            elif node.module and node.module.startswith("mlrobust"):
                names = [node.module.removeprefix("mlrobust").lstrip(".") or "__init__"]
            else:
                continue
            found += [(node.lineno, n) for n in names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name.removeprefix("mlrobust").lstrip(".") or "__init__")
                      for a in node.names if a.name.startswith("mlrobust")]
    return found


FILES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_higher_layer(path: Path) -> None:
    rel = path.relative_to(PACKAGE)
    unit = rel.parts[0].removesuffix(".py")
    own = LAYERS[unit]
    for line, imported in _imports(path):
        target = _top(imported)
        assert target in LAYERS, f"{rel}:{line} imports mlrobust.{imported}, which has no layer in this test"
        assert LAYERS[target] <= own, (f"{rel}:{line} (layer {own}, {unit}) imports mlrobust.{imported} "
                                       f"(layer {LAYERS[target]}): an upward import")


def test_every_unit_has_a_layer() -> None:
    units = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in FILES}
    assert units <= set(LAYERS), f"units without a layer: {sorted(units - set(LAYERS))}"


def test_the_parser_sees_relative_and_absolute_imports(tmp_path: Path) -> None:
    probe = PACKAGE / "engine" / "trainer.py"
    targets = {_top(t) for _, t in _imports(probe)}
    assert {"metrics", "data", "engine", "_validate"} <= targets
    assert "config" not in targets


def test_the_version_is_stated_once_in_the_package_and_in_pyproject() -> None:
    import re

    import mlrobust

    pyproject = (PACKAGE.parent / "pyproject.toml").read_text()
    assert re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1) == mlrobust.__version__
