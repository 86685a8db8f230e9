"""Chapter helpers: parameters per scale and dataset, and the claims checker."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlrobust.notebook import resolve_parameters

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


@pytest.mark.parametrize("given, message", [
    ({"n_train": "100"},
     r"parameter 'n_train' must be int \(its 'quick' value in .*ch.yaml is 100\), got '100' of type str"),
    ({"n_train": 1.5}, r"parameter 'n_train' must be int .*got 1.5 of type float"),
    ({"n_train": True}, r"parameter 'n_train' must be int .*got True of type bool"),
    ({"lr": "fast"}, r"parameter 'lr' must be int or float .*got 'fast' of type str"),
    ({"dataset": 3}, r"parameter 'dataset' must be str .*got 3 of type int"),
], ids=["str for int", "float for int", "bool for int", "str for float", "int for str"])
def test_a_wrong_type_fails_at_once_naming_the_parameter(tmp_path: Path, given: dict, message: str) -> None:
    (tmp_path / "ch.yaml").write_text(PARAMS)
    with pytest.raises(TypeError, match=message):
        resolve_parameters("ch", "quick", {"dataset": None, "n_train": None, "lr": None, **given}, tmp_path)


def test_int_for_float_and_anything_for_an_optional_preset(tmp_path: Path) -> None:
    (tmp_path / "ch.yaml").write_text(PARAMS + "  voc2007: {lr: null}\n")
    given = {"dataset": None, "n_train": None, "lr": 1}
    assert resolve_parameters("ch", "quick", given, tmp_path)["lr"] == 1
    voc = resolve_parameters("ch", "full", {**given, "dataset": "voc2007", "lr": "auto"}, tmp_path)
    assert voc["lr"] == "auto"  # None in the preset: any value


def test_params_found_from_any_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """book/ (make lab), the repository root (README's papermill command), a folder below
    book/, and the staged _build/src/book all find the chapter's file."""
    from mlrobust.notebook import find_params_dir

    params = tmp_path / "book" / "params"
    params.mkdir(parents=True)
    (params / "ch.yaml").write_text(PARAMS)
    for cwd in (tmp_path, tmp_path / "book", params):
        monkeypatch.chdir(cwd)
        assert find_params_dir("ch") == params
    monkeypatch.chdir(tmp_path / "book" / "params")
    assert resolve_parameters("ch", "quick", {"dataset": None, "n_train": None, "lr": None})["n_train"] == 100
    monkeypatch.chdir(tmp_path)
    assert find_params_dir("ch01_problem") == Path(__file__).resolve().parents[1] / "book" / "params"  # the package's
    with pytest.raises(FileNotFoundError, match=r"no parameter file nowhere.yaml"):
        find_params_dir("nowhere")


def test_an_injected_unknown_parameter_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """papermill only warns about ``-p epocs 3``; the chapter refuses it."""
    import IPython

    class Shell:
        user_ns = {"In": ["", "# Parameters (papermill) ...\nscale = 'quick'\n",
                          "# Parameters\nscale = \"full\"\nepocs = 3\n"]}

    monkeypatch.setattr(IPython, "get_ipython", lambda: Shell())
    (tmp_path / "ch.yaml").write_text(PARAMS)
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['epocs'\] passed to ch .*'lr', 'n_train'"):
        resolve_parameters("ch", "full", {"dataset": None, "n_train": None, "lr": None}, tmp_path)
    Shell.user_ns["In"][-1] = "# Parameters\nscale = \"full\"\nlr = 0.5\n"
    assert resolve_parameters("ch", "full", {"dataset": None, "n_train": None, "lr": 0.5}, tmp_path)["lr"] == 0.5


def test_markdown_table_escapes_pipes_and_shows_its_caption() -> None:
    from mlrobust.notebook import markdown_table

    text = markdown_table(["|Ĉ − C|", "mAP"], [["a|b", 41.126]], caption="ShapeScenes, quick, seeds 0-2").data
    lines = text.splitlines()
    assert lines[0] == "**ShapeScenes, quick, seeds 0-2**"
    assert lines[2] == "| \\|Ĉ − C\\| | mAP |" and lines[4] == "| a\\|b | 41.13 |"
    # every row has exactly as many unescaped separators as the header
    assert {line.replace("\\|", "").count("|") for line in lines[2:]} == {3}


SOURCE_WITH_DOCSTRINGS = '''    @register("x")
    class Pooling(Base):
        """The class's docstring,
        over two lines."""

        scale = 2  # a class attribute stays

        def forward(self, x):
            """Its method's docstring."""
            text = """a string that is not a docstring"""
            return x * self.scale

        def only_a_docstring(self):
            """Nothing else in this body."""

        def inline(self): return 1  # no docstring at all

        def same_line(self):
            """kept: code follows on its line"""; return 2
'''


def test_without_docstrings_drops_only_docstrings() -> None:
    import ast
    import textwrap

    from mlrobust.notebook import without_docstrings

    out = without_docstrings(SOURCE_WITH_DOCSTRINGS)
    for gone in ("The class's docstring", "over two lines", "Its method's docstring", "Nothing else"):
        assert gone not in out
    assert '"""a string that is not a docstring"""' in out and "scale = 2  # a class attribute stays" in out
    assert "            ...\n" in out  # the emptied body stays valid Python
    assert '"""kept: code follows on its line"""; return 2' in out
    assert out.startswith('    @register("x")\n    class Pooling(Base):\n        scale = 2')  # indentation kept
    ast.parse(textwrap.dedent(out))


def test_show_source_hides_docstrings_unless_asked() -> None:
    from mlrobust import labels
    from mlrobust.notebook import show_source

    short, full = show_source(labels.partial).data, show_source(labels.partial, docstrings=True).data
    assert '"""' not in short and '"""' in full
    assert short.splitlines()[-1] == full.splitlines()[-1] and len(short) < len(full)


def test_claims_are_checked_only_at_the_quick_presets(tmp_path: Path) -> None:
    from mlrobust.notebook import claims_checked

    (tmp_path / "ch.yaml").write_text(PARAMS.replace("lr: 0.1}", "lr: 0.1, output_dir: runs/ch}")
                                      .replace("lr: 0.01}", "lr: 0.01, output_dir: runs/full}"))
    given = {"dataset": None, "n_train": None, "lr": None, "output_dir": None}
    quick = resolve_parameters("ch", "quick", given, tmp_path)
    assert claims_checked("ch", "quick", quick, tmp_path)
    assert claims_checked("ch", "quick", {**quick, "output_dir": "elsewhere"}, tmp_path)  # where, not what
    assert not claims_checked("ch", "quick", {**quick, "lr": 0.3}, tmp_path)  # an exercise's change
    assert not claims_checked("ch", "quick", {**quick, "dataset": "coco"}, tmp_path)
    full = resolve_parameters("ch", "full", given, tmp_path)
    assert not claims_checked("ch", "full", full, tmp_path)


def test_the_environment_turns_claims_into_a_report(tmp_path: Path, monkeypatch) -> None:
    from mlrobust.notebook import CLAIMS_VARIABLE, claims_checked

    (tmp_path / "ch.yaml").write_text(PARAMS)
    given = {"dataset": None, "n_train": None, "lr": None}
    quick = resolve_parameters("ch", "quick", given, tmp_path)
    monkeypatch.setenv(CLAIMS_VARIABLE, "strict")  # any other value keeps the presets strict
    assert claims_checked("ch", "quick", quick, tmp_path)
    monkeypatch.setenv(CLAIMS_VARIABLE, "report")
    assert not claims_checked("ch", "quick", quick, tmp_path)


def test_list_parameters_parse_and_name_a_bad_entry() -> None:
    from mlrobust.notebook import floats, ints

    assert floats("0.1, 0.5,1") == [0.1, 0.5, 1.0] and floats(0.3) == [0.3]
    assert ints("50,10") == [50, 10]
    with pytest.raises(ValueError, match=r"lr_factors: 'x' is not a number"):
        floats("1,x", "lr_factors")
    with pytest.raises(ValueError, match=r"single_caps: '2.5' is not an integer"):
        ints("50,2.5", "single_caps")
