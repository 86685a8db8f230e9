"""The rendered book, as a reader sees it (tools/check_book.py, `make check-book`).

The HTML is built from the committed notebooks with execution off (about 10 s) and checked
page by page for each kind of defect: code lines over 88 columns, Markdown tables printed as
text, stray True/dict outputs, display equations too wide for the column, figures without a
caption or with text shrunk below legibility, package source shown with its docstrings, and
parameter, import and plotting cells left expanded. With Chromium installed, each page is also
measured in the browser at 1300 px (nothing may be cut off). The checks themselves are tested
on small pages that hold each defect, and the chapter lists of the introduction and the README
against _toc.yml.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # a dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


pytest.importorskip("bs4")
check_book = _load("check_book")

#: Defects known today, each waiting for its chapter's owner or its refresh: (page, kind) -> why.
#: Such a test is an expected failure; once the defect is gone it fails until its line here is
#: removed.
PENDING: dict[tuple[str, str], str] = {}
HTML_KINDS = [k for k in check_book.KINDS if k != "clipped"]


def _pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc.get("parts", []) for c in part.get("chapters", [])]
    return [Path(f).name for f in files]


def _expect_none(found: list, page: str, kind: str) -> None:
    if (page, kind) in PENDING:
        if found:
            pytest.xfail(PENDING[(page, kind)])
        pytest.fail(f"{page} no longer has {kind} defects: remove ({page!r}, {kind!r}) from PENDING")
    assert not found, "\n".join(str(d) for d in found)


@pytest.fixture(scope="module")
def html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("jupyter_book")
    return check_book.build(tmp_path_factory.mktemp("book"))


@pytest.fixture(scope="module")
def defects(html: Path) -> list:
    return check_book.check_html(html)


def test_every_page_is_built(html: Path) -> None:
    assert [p.stem for p in check_book.pages(html)] == _pages()


@pytest.mark.parametrize("kind", HTML_KINDS)
@pytest.mark.parametrize("page", _pages())
def test_page_has_no_defect(defects: list, page: str, kind: str) -> None:
    _expect_none([d for d in defects if d.page == page and d.kind == kind], page, kind)


@pytest.mark.parametrize("page", _pages())
def test_nothing_is_cut_off_in_a_browser(html: Path, page: str) -> None:
    exe = check_book.browser()
    if exe is None:
        pytest.skip("no Chromium installed (apt-get install chromium): the page is not measured")
    found, height = check_book.check_in_browser(exe, html / "book" / f"{page}.html")
    assert height > 500
    _expect_none(found, page, "clipped")


# --------------------------------------------------------------------------- the checks

CELL = '<div class="cell docutils container{tags}"><div class="cell_input docutils container">' \
       '<div class="highlight-ipython3 notranslate"><div class="highlight"><pre>{code}</pre></div></div></div>' \
       '<div class="cell_output docutils container">{output}</div></div>'


def _page(*cells: str) -> str:
    return "<html><body><article>" + "".join(cells) + "</article></body></html>"


def _cell(code: str = "x = 1", output: str = "", tags: str = "") -> str:
    return CELL.format(code=code, output=output, tags="".join(f" tag_{t}" for t in tags.split()))


def _text(kind: str, text: str) -> str:
    return f'<div class="output {kind}"><pre>{text}</pre></div>'


FIGURE = ('<figure class="align-default"><img alt="_images/a.png" src="../_images/a.png" />'
          '<figcaption><p>{caption}</p></figcaption></figure>')
DOCSTRING = ('<div class="output text_html"><div class="highlight"><pre><span class="k">def</span> f():\n'
             '    <span class="sd">"""Docs."""</span>\n    return 1</pre></div></div>')
WIDE_MATH = (r'<div class="math notranslate nohighlight">\[CP = \frac{1}{C}\sum_c \frac{TP_c}{TP_c + FP_c},'
             r'\quad CR = \frac{1}{C^+}\sum_{c:\,P_c>0} \frac{TP_c}{TP_c + FN_c},\quad CF1 = '
             r'\frac{2\,CP\,CR}{CP + CR},\]</div>')
BROKEN_MATH = (r'<div class="math notranslate nohighlight">\[\begin{aligned} CP &= \frac{1}{C}\sum_c '
               r'\frac{TP_c}{TP_c + FP_c}, & OP &= \frac{\sum_c TP_c}{\sum_c (TP_c + FP_c)}, \\[6pt] '
               r'CF1 &= \frac{2\,CP\,CR}{CP + CR}, & OF1 &= \frac{2\,OP\,OR}{OP + OR}, \end{aligned}\]</div>')


@pytest.mark.parametrize("kind, html", [
    ("code-width", _cell("y = " + "1 + " * 20 + "12345")),  # 89 columns
    ("raw-table", _cell(output=_text("stream", "| a | b |\n|---|---|\n| 1 | 2 |\n"))),
    ("raw-table", "<table><tr><td>the $|C$</td></tr></table>"),
    ("stray-output", _cell(output=_text("text_plain", "True"))),
    ("stray-output", _cell(output=_text("text_plain", "{'n_images': 4.0,\n 'n_classes': 5.0}"))),
    ("stray-output", _cell(output=_text("stream", "done\n{'CP': 95.0, 'CR': 55.0}\n"))),
    ("math-width", WIDE_MATH),
    ("figure-caption", _cell(output=FIGURE.format(caption="") + " ", tags="hide-input")),
    ("figure-caption", _cell(output='<img src="../_images/a.png" />', tags="hide-input")),
    ("docstring", _cell("show_source(f)", DOCSTRING)),
    ("collapsed", _cell("scale = 'quick'", tags="parameters")),
    ("collapsed", _cell("# set-up\nimport torch\nfrom mlrobust import labels")),
    ("collapsed", _cell("fig, ax = plt.subplots()", FIGURE.format(caption="A figure."))),
])
def test_each_check_finds_its_defect(kind: str, html: str) -> None:
    found = check_book.check_page(_page(html), "page")
    assert [d.kind for d in found] == [kind], found


def test_a_page_without_defects_passes() -> None:
    page = _page(_cell("y = " + "1 + " * 20 + "1234"),  # 88 columns
                 _cell("scale = 'quick'", tags="parameters hide-input"),
                 _cell("import torch", tags="remove-input"),
                 _cell("fig, ax = plt.subplots()", FIGURE.format(caption="A figure."), tags="hide-input"),
                 _cell("markdown_table(...)", '<table><tr><td>|Ĉ - C|</td><td>1</td></tr></table>'),
                 _cell("print(stats)", _text("stream", "CP 95.00   CR 55.00\n{not a dict}")),
                 _cell("claims.ours(...);"),
                 _cell("show_source(f)", DOCSTRING.replace('<span class="sd">"""Docs."""</span>\n', "")),
                 BROKEN_MATH)
    assert check_book.check_page(page, "page") == []


@pytest.mark.parametrize("tex, mathjax_px", [
    (r"abcdefghij", 96.4),
    (r"CP = \frac{1}{C}\sum_c \frac{TP_c}{TP_c + FP_c}", 223.9),
    (r"CR = \frac{1}{C^+}\sum_{c:\,P_c>0}\frac{TP_c}{TP_c + FN_c}", 258.7),
    (r"CF1 = \frac{2\,CP\,CR}{CP + CR}", 163.5),
    (r"\ell(\x, \y) = -\frac{1}{C} \sum_{c=1}^{C} \Big[\ind{y_c = 1} \log \sig(x_c)"
     r"+ \ind{y_c = -1} \log\big(1 - \sig(x_c)\big)\Big],", 538.0),
    (r"L_+ = -(1 - p)^{\gamma_+} \log p, \qquad L_- = -p_m^{\gamma_-} \log(1 - p_m), \qquad"
     r"p_m = \max(p - m, 0),", 678.0),
])
def test_tex_width_is_close_to_mathjax(tex: str, mathjax_px: float) -> None:
    """Widths measured on MathJax 3 in Chromium, as the book configures it."""
    (line,) = check_book.display_math_lines(tex)
    assert check_book.tex_width(line) == pytest.approx(mathjax_px, rel=0.1)


# --------------------------------------------------------------------------- chapter lists


def _toc_chapters() -> set[str]:
    return {p for p in _pages() if re.fullmatch(r"ch\d\d_\w+", p)}


def test_intro_and_readme_list_exactly_the_chapters_that_exist() -> None:
    """The introduction's table links every chapter of a paper and marks the others 'coming';
    the README links every chapter and nothing else."""
    intro = (ROOT / "book" / "intro.md").read_text()
    rows = [line for line in intro.splitlines() if re.match(r"\| .*\{cite:t\}", line)]
    assert len(rows) == 5, "the introduction's table of the five papers"
    linked = set()
    for row in rows:
        chapter = row.split("|")[1].strip()
        target = re.fullmatch(r"\{doc\}`\d+ <(ch\d\d_\w+)>`", chapter)
        assert target or chapter == "*coming*", f"intro.md: {row[:80]}"
        linked |= {target.group(1)} if target else set()
    assert linked == _toc_chapters() - {"ch01_problem"}
    readme = (ROOT / "README.md").read_text()
    assert set(re.findall(r"\]\(book/(ch\d\d_\w+)\.ipynb\)", readme)) == _toc_chapters()
    assert readme.count("*coming*") == intro.count("| *coming* |")


def test_tex_width_reads_a_backslash_before_a_newline_and_at_the_end() -> None:
    """A control space written as a backslash and a line break, or a trailing backslash,
    is text the estimator must read, not a crash."""
    assert check_book.tex_width("a\\\nb") == pytest.approx(check_book.tex_width("a\\ b"))
    assert check_book.tex_width("ab\\") == pytest.approx(check_book.tex_width("ab"))
