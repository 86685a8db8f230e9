"""The conda environment agrees with pyproject.toml, and the Python floor is honoured."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def _normalise(req: str) -> str:
    return req.replace(" ", "").lower()


def _pyproject_requirements() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    return {_normalise(r) for r in reqs}


def _conda_pip_requirements() -> tuple[set[str], list[str]]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = [d for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_section) == 1, "environment.yml must have exactly one pip: section"
    items = pip_section[0]["pip"]
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    return {_normalise(r) for r in items if not r.startswith("-e")}, conda


def test_environment_yml_lists_exactly_the_pyproject_requirements() -> None:
    pip_reqs, _ = _conda_pip_requirements()
    expected = _pyproject_requirements()
    assert pip_reqs == expected, (f"missing from environment.yml: {sorted(expected - pip_reqs)}; "
                                  f"not in pyproject.toml: {sorted(pip_reqs - expected)}")


def test_environment_yml_installs_the_package_and_a_supported_python() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_items = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e ." in pip_items
    _, conda = _conda_pip_requirements()
    python = next(d for d in conda if d.startswith("python"))
    floor = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert floor.lstrip(">=") in python, f"conda pins {python!r} but pyproject requires {floor!r}"


def test_lock_file_matches_pyproject() -> None:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    (root_pkg,) = [p for p in lock["package"] if p["name"] == "mlrobust"]
    locked = {_normalise(d["name"]) for d in root_pkg.get("dependencies", [])}
    for extra in root_pkg.get("optional-dependencies", {}).values():
        locked |= {_normalise(d["name"]) for d in extra}
    declared = {_normalise(r.split(">")[0].split("<")[0].split("=")[0].split("[")[0]) for r in _pyproject_requirements()}
    assert declared == locked, f"uv.lock is stale: run `uv lock` (declared {sorted(declared ^ locked)})"
