"""Check the rendered book for what a reader sees: build the HTML from the committed
notebooks (no execution), look for the defects below in every page, and take a headless
Chromium screenshot of each page for a person to look at.

    python tools/check_book.py                # build, check, screenshots in _build/screenshots/
    python tools/check_book.py --no-browser   # build and check only (what tests/ runs)
    python tools/check_book.py --html DIR     # check an HTML tree built before (no build)

The checks on the HTML (no browser needed; tests/test_rendered_book.py runs them):

code-width       a line of a code cell (or of a code block in the text) over 88 columns: the
                 column shows 88 (the code font shrinks a little where it is narrower,
                 book/_static/mlrobust.css), so a longer line is cut off
raw-table        a Markdown table printed as text (lines "| a | b |") instead of displayed, or
                 a table cell holding a stray "$" (an unescaped "|" split its math)
stray-output     a cell whose only result is True/False/None or a raw dict repr
math-width       a display equation with a line wider than the text column at 1300 px
                 (692 px, 622 px beside an equation number): estimated from its TeX, since
                 MathJax only runs in a browser; break it with aligned/split and \\
figure-caption   a figure in a cell's output without a caption
figure-font      a figure so wide that the column shrinks its text: matplotlib's default
                 10-pt text would show below 9.5 px (the figure's width in inches and its
                 dpi are in the image file; the column shows 700 px at 1300 px)
docstring        package source shown with its docstring (show_source hides them)
collapsed        a parameters, import or plotting cell whose input is not collapsed
                 (hide-input or remove-input)

With a browser (Chromium; --no-browser or none installed skips it) each page is also
measured after MathJax has typeset it, at the width of a common laptop window (1300 px):

clipped          a code block, display equation or table wider than its box at that width
"""

from __future__ import annotations

import argparse
import ast
import html as htmllib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import build_book  # noqa: E402  (the staging and jupyter-book call of `make book`)

CHECK = ROOT / "_build" / "check"
SCREENSHOTS = ROOT / "_build" / "screenshots"
#: Columns of a code line that the text column shows without cutting it off.
CODE_COLUMNS = 88
#: Browser window width of the measurements and screenshots (a common laptop window, where
#: the theme's text column is at its narrowest with both sidebars shown).
WINDOW = 1300
#: Width of that column for display math in px: 692, and 622 beside an equation number.
MATH_PX = {"plain": 692, "numbered": 622}
#: Share of that width an equation may take by the estimate of :func:`tex_width`, which is
#: within about 5 % of the browser on this book's equations.
MATH_MARGIN = 0.95
#: Width at which a figure is shown in the text column at :data:`WINDOW`, in px.
FIGURE_PX = 700
#: Smallest on-screen size, in px, of a figure's 10-pt text (matplotlib's default size).
FIGURE_TEXT_PX = 9.5
KINDS = ("code-width", "raw-table", "stray-output", "math-width", "figure-caption", "figure-font",
         "docstring", "collapsed", "clipped")
HIDDEN = ("tag_hide-input", "tag_remove-input", "tag_remove-cell")


@dataclass(frozen=True)
class Defect:
    page: str
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.page}: {self.kind}: {self.detail}"


# --------------------------------------------------------------------------- build


def build(dest: Path = CHECK) -> Path:
    """Stage _config.yml, _toc.yml and book/ with the committed notebooks (their outputs as
    they are; nothing is executed) under ``dest``/src and render it with the same
    jupyter-book call as `make book`; returns the HTML folder."""
    skip = tuple(p for p in build_book.STAGE_IGNORE if p != "*.ipynb")
    src = dest / "src"
    build_book.mirror(build_book.book_files(src, skip), src)
    return build_book.jupyter_book(src, dest)


def pages(html: Path) -> list[Path]:
    """The book's pages, in _toc.yml order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc.get("parts", []) for c in part.get("chapters", [])]
    return [html / f"{f}.html" for f in files if (html / f"{f}.html").is_file()]


# --------------------------------------------------------------------------- TeX width

_MACROS: dict[str, Any] = (yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["config"]
                           ["mathjax3_config"]["tex"]["macros"])


def _group(tex: str, i: int) -> tuple[str, int]:
    """The argument starting at ``tex[i]`` (a {...} group, a command or one character) and
    the index after it."""
    while i < len(tex) and tex[i] == " ":
        i += 1
    if i >= len(tex):
        return "", i
    if tex[i] == "{":
        depth = 0
        for j in range(i, len(tex)):
            depth += {"{": 1, "}": -1}.get(tex[j], 0)
            if depth == 0:
                return tex[i + 1:j], j + 1
        return tex[i + 1:], len(tex)
    if tex[i] == "\\":
        m = re.match(r"\\([A-Za-z]+\*?|.)", tex[i:])
        return m.group(0), i + len(m.group(0))
    return tex[i], i + 1


def expand_macros(tex: str) -> str:
    """The book's notation macros (_config.yml) replaced by their definitions."""
    out, i = [], 0
    while i < len(tex):
        m = re.match(r"\\([A-Za-z]+)", tex[i:])
        if m and m.group(1) in _MACROS:
            body, i = _MACROS[m.group(1)], i + len(m.group(0))
            if isinstance(body, list):
                body, n_args = body
                for k in range(1, n_args + 1):
                    arg, i = _group(tex, i)
                    body = body.replace(f"#{k}", arg)
            out.append(expand_macros(body) + " ")
        else:
            out.append(tex[i])
            i += 1
    return "".join(out)


#: Widths in px at the page's 16 px font, measured in Chromium on MathJax 3 (CHTML) as this
#: book configures it (MathJax draws its 1 em as about 20 px of the page).
_SPACE = {"quad": 20.3, "qquad": 40.6, ",": 3.4, ":": 4.5, ";": 5.6, " ": 5.0, "\n": 5.0, "!": -3.4}
_DELIMITERS = {"left", "right", "big", "Big", "bigg", "Bigg", "bigl", "bigr", "Bigl", "Bigr", "bigm", "Bigm"}
_INVISIBLE = {"nonumber", "notag", "displaystyle", "textstyle", "limits", "nolimits"}
_ROMAN = {"text", "mathrm", "operatorname", "textrm", "textit", "mathit", "textbf", "mathsf", "mathtt"}
_SAME = {"hat", "tilde", "bar", "vec", "widehat", "widetilde", "overline", "underline", "boldsymbol",
         "mathbf", "mathbb", "mathcal", "mathfrak", "mathscr", "bm"}
_BIG_OPERATORS = {"sum": 29.4, "prod": 29.4, "coprod": 29.4, "bigcup": 25.0, "bigcap": 25.0}
_NAMED = {"log", "exp", "ln", "max", "min", "sup", "inf", "lim", "det", "sin", "cos", "tan", "arg",
          "argmax", "argmin", "Pr"}
_RELATIONS = {"in", "notin", "ne", "neq", "le", "leq", "ge", "geq", "approx", "equiv", "sim", "simeq",
              "to", "mapsto", "subset", "subseteq", "propto", "ll", "gg", "coloneqq", "mid"}
_ARROWS = {"Rightarrow", "Leftarrow", "Longrightarrow", "Longleftarrow", "Leftrightarrow",
           "Longleftrightarrow", "implies", "iff", "rightarrow", "leftarrow", "longrightarrow"}
_BINARY = {"cdot", "times", "pm", "mp", "circ", "ast", "star", "cup", "cap", "setminus", "odot", "otimes",
           "oplus", "wedge", "vee", "bullet"}
_SCRIPT = 0.72  # sub- and superscripts (MathJax's script size, about 0.71)


def _roman(text: str) -> float:
    return sum(5.0 if ch == " " else 15.0 if ch.isupper() else 10.2 if ch.isdigit() else 8.6 for ch in text)


def tex_width(tex: str, script: bool = False) -> float:
    """The width, in px at the page's 16 px font, of one line of display math as MathJax
    draws it, from its TeX (the notation macros expanded first): letters, digits and symbols
    at their measured widths, relations and binary operators with their spacing (none in a
    sub- or superscript, which the caller scales by ``_SCRIPT``), fractions as their wider
    part, limits below a sum as wide as they are. Within about 5 % of the browser on this
    book's equations (single symbols are rougher): enough to flag a line too long for the
    text column without a browser."""
    w, i = 0.0, 0

    def arg() -> str:
        nonlocal i
        group, i = _group(tex, i)
        return group

    while i < len(tex):
        c = tex[i]
        if c == "{":
            w += tex_width(arg(), script)
        elif c in "_^":
            i += 1
            w += _SCRIPT * tex_width(arg(), True)
        elif c == "\\":
            match = re.match(r"\\([A-Za-z]+\*?|.)", tex[i:], re.S)  # a backslash-newline is a space
            if match is None:  # a lone backslash at the end
                break
            name = match.group(1)
            i += len(name) + 1
            if name in _SPACE:
                w += _SPACE[name]
            elif name in _DELIMITERS:
                arg()
                w += 9.5
            elif name in _INVISIBLE:
                pass
            elif name in ("label", "tag"):
                arg()
            elif name in ("frac", "dfrac", "tfrac", "binom"):
                num, den = arg(), arg()
                w += max(tex_width(num, script), tex_width(den, script)) + 9
            elif name in _ROMAN:
                w += _roman(arg())
            elif name in _SAME:
                w += tex_width(arg(), script) * (1.2 if name in ("mathbf", "boldsymbol", "bm") else 1.0)
            elif name in _BIG_OPERATORS or name == "operatorname*":
                body = _BIG_OPERATORS.get(name) or _roman(arg())
                limits = [0.0]
                while i < len(tex) and tex[i] in "_^ ":
                    if tex[i] == " ":
                        i += 1
                        continue
                    i += 1
                    limits.append(_SCRIPT * tex_width(arg(), True))
                w += max(body, *limits) + 3.4
            elif name in _NAMED:
                w += (_roman(name) + 3.4)
            elif name in _RELATIONS:
                w += (15.5 if script else 27.5)
            elif name in _ARROWS:
                w += ((33.0 if name.startswith("Long") else 20.0) + (0 if script else 11.0))
            elif name in _BINARY:
                w += (8.0 if script else 18.0)
            elif name in ("{", "}", "|"):
                w += 10.0
            else:  # a Greek letter or another symbol
                w += 12.0
        elif c in "=<>":
            w, i = w + (15.5 if script else 27.5), i + 1
        elif c in "+-":
            w, i = w + (15.5 if script else 25.0), i + 1
        elif c in ",;":
            w, i = w + 8.6, i + 1
        elif c.isspace() or c in "}&":
            i += 1
        else:
            width = (15.1 if c.isupper() else 9.6 if c.isalpha() else 10.2 if c.isdigit()
                     else 5.6 if c == "|" else 8.0)
            w, i = w + width, i + 1
    return w


def display_math_lines(tex: str) -> list[str]:
    """The lines of a display equation (split at \\\\), without delimiters and environments."""
    tex = tex.strip()
    tex = re.sub(r"^\\\[|\\\]$", "", tex)
    tex = re.sub(r"\\(begin|end)\{[A-Za-z*]+\}(\{[^}]*\})?", "", tex)
    lines = re.split(r"\\\\(?:\[[^\]]*\])?", expand_macros(tex))  # a line break, maybe \\[6pt]
    return [line for line in lines if line.strip()]


# --------------------------------------------------------------------------- HTML checks


def _soup(text: str) -> Any:
    from bs4 import BeautifulSoup

    return BeautifulSoup(text, "html.parser")


def _classes(tag: Any) -> list[str]:
    return tag.get("class") or []


def _is_dict_repr(text: str) -> bool:
    text = text.strip()
    if not (text.startswith("{") and text.endswith("}")):
        return False
    try:
        return isinstance(ast.literal_eval(text), dict)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return bool(re.match(r"\{\s*(['\"][^'\"]*['\"]|\d+)\s*:", text))


def check_code_width(soup: Any) -> list[tuple[str, str]]:
    found = []
    for pre in soup.select("div.highlight pre"):
        if pre.find_parent("div", class_="cell_output"):
            continue  # outputs: package source and printed text wrap (mlrobust.css)
        for line in pre.get_text().splitlines():
            if len(line) > CODE_COLUMNS:
                found.append(("code-width", f"{len(line)} columns: {line.strip()[:60]}"))
    return found


def check_raw_tables(soup: Any) -> list[tuple[str, str]]:
    found = []
    for out in soup.select("div.cell_output div.output"):
        if not {"stream", "text_plain"} & set(_classes(out)):
            continue
        rows = [line for line in out.get_text().splitlines() if re.fullmatch(r"\s*\|.*\|\s*", line)]
        if rows:
            found.append(("raw-table", f"{len(rows)} printed table rows: {rows[0].strip()[:60]}"))
    for td in soup.select("table td, table th"):
        if "$" in td.get_text():
            found.append(("raw-table", f"unrendered math in a table cell: {td.get_text().strip()[:60]}"))
    return found


def check_stray_outputs(soup: Any) -> list[tuple[str, str]]:
    found = []
    for out in soup.select("div.cell_output div.output"):
        classes = set(_classes(out))
        text = out.get_text().strip()
        if "text_plain" in classes and text in ("True", "False", "None"):
            found.append(("stray-output", f"a cell shows {text}"))
        elif {"text_plain", "stream"} & classes:
            if _is_dict_repr(text) or any(_is_dict_repr(line) for line in text.splitlines()):
                found.append(("stray-output", f"raw dict: {text[:60]}"))
    return found


def check_math_width(soup: Any) -> list[tuple[str, str]]:
    found = []
    for div in soup.select("div.math"):
        numbered = div.find("span", class_="eqno") is not None
        for eqno in div.find_all("span", class_="eqno"):
            eqno.extract()
        limit = MATH_PX["numbered" if numbered else "plain"]
        for line in display_math_lines(div.get_text()):
            width = tex_width(line)
            if width > MATH_MARGIN * limit:
                found.append(("math-width", f"about {width:.0f} px for {limit} px: {' '.join(line.split())[:60]}"))
    return found


def check_figure_captions(soup: Any) -> list[tuple[str, str]]:
    found = []
    for img in soup.select("div.cell_output img"):
        figure = img.find_parent("figure")
        caption = figure.find("figcaption") if figure else None
        if caption is None or not caption.get_text().strip():
            found.append(("figure-caption", f"image {img.get('src', '')[:60]}"))
    return found


def check_figure_fonts(soup: Any, folder: Path) -> list[tuple[str, str]]:
    """Figures whose 10-pt text the column shrinks below :data:`FIGURE_TEXT_PX`."""
    from PIL import Image

    found = []
    for img in soup.select("div.cell_output img"):
        path = folder / img.get("src", "")
        if not path.is_file():
            continue
        with Image.open(path) as im:
            width, dpi = im.size[0], im.info.get("dpi")
        if not dpi or not dpi[0]:
            continue  # not a matplotlib figure: no text size to speak of
        shown = min(width, FIGURE_PX)
        text_px = 10 / 72 * float(dpi[0]) * shown / width
        if text_px < FIGURE_TEXT_PX:
            found.append(("figure-font", f"10-pt text shows at {text_px:.1f} px "
                                         f"({width / float(dpi[0]):.1f} in wide): {path.name}"))
    return found


def check_docstrings(soup: Any) -> list[tuple[str, str]]:
    found = []
    for block in soup.select("div.cell_output div.highlight"):
        if block.select("span.sd"):  # pygments' class of a docstring
            first = block.get_text().strip().splitlines()[0]
            found.append(("docstring", f"source shown with its docstring: {first[:60]}"))
    return found


def _hidden(cell: Any) -> bool:
    return bool(set(HIDDEN) & set(_classes(cell)))


def check_collapsed(soup: Any) -> list[tuple[str, str]]:
    found = []
    for cell in soup.select("div.cell"):
        if _hidden(cell):
            continue
        source = cell.select_one("div.cell_input pre")
        code = source.get_text() if source else ""
        first = next((s.strip() for s in code.splitlines() if s.strip() and not s.startswith("#")), "")
        if "tag_parameters" in _classes(cell):
            found.append(("collapsed", "the parameters cell"))
        elif re.match(r"(import|from)\s+\S+(\s+import)?\b", first):
            found.append(("collapsed", f"an import cell: {first[:60]}"))
        elif cell.select("div.cell_output img"):
            found.append(("collapsed", f"a plotting cell: {first[:60]}"))
    return found


HTML_CHECKS = (check_code_width, check_raw_tables, check_stray_outputs, check_math_width,
               check_figure_captions, check_docstrings, check_collapsed)


def check_page(text: str, page: str, folder: Path | None = None) -> list[Defect]:
    """The defects of one rendered page (its HTML text); with the page's ``folder`` its
    images are checked too."""
    soup = _soup(text)
    main = soup.select_one("article") or soup
    found = [(kind, detail) for check in HTML_CHECKS for kind, detail in check(main)]
    if folder is not None:
        found += check_figure_fonts(main, folder)
    return [Defect(page, kind, detail) for kind, detail in found]


def check_html(html: Path) -> list[Defect]:
    """The defects of every page of the book built in ``html``."""
    return [d for page in pages(html) for d in check_page(page.read_text(), page.stem, page.parent)]


# --------------------------------------------------------------------------- browser

#: Run in the page once MathJax has typeset it: the page height, and every code block and
#: display equation wider than its box, written to an attribute of <body> for --dump-dom.
MEASURE_JS = r"""
(function () {
  function text(el) { return el.textContent.trim().split('\n')[0].slice(0, 60); }
  function measure() {
    var r = {height: document.documentElement.scrollHeight, code: [], math: []};
    document.querySelectorAll('div.highlight pre').forEach(function (p) {
      if (p.scrollWidth > p.clientWidth + 1) r.code.push([p.scrollWidth, p.clientWidth, text(p)]);
    });
    r.table = [];
    document.querySelectorAll('div.pst-scrollable-table-container').forEach(function (box) {
      if (box.scrollWidth > box.clientWidth + 1) r.table.push([box.scrollWidth, box.clientWidth, text(box)]);
    });
    document.querySelectorAll('div.math').forEach(function (box) {
      var m = box.querySelector('mjx-container');
      if (!m) return;
      var width = Math.max(m.scrollWidth, (m.firstElementChild || m).getBoundingClientRect().width);
      if (width > m.clientWidth + 1 || m.getBoundingClientRect().right > box.getBoundingClientRect().right + 1)
        r.math.push([Math.round(width), m.clientWidth, box.id || text(box)]);
    });
    document.body.setAttribute('data-check-book', JSON.stringify(r));
  }
  function typeset() {
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) MathJax.startup.promise.then(measure);
    else measure();
  }
  if (document.readyState === 'complete') typeset(); else window.addEventListener('load', typeset);
})();
"""


def browser() -> str | None:
    """The Chromium (or Chrome) executable, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _chromium(exe: str, *args: str, timeout: float = 120) -> str:
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--mute-audio",
           "--virtual-time-budget=30000", *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=timeout).stdout


def measure(exe: str, page: Path, width: int = WINDOW) -> dict[str, Any]:
    """Open a copy of ``page`` with :data:`MEASURE_JS` added (beside it, so its links work)
    at ``width`` and return the measurements."""
    with tempfile.NamedTemporaryFile("w", suffix=".html", prefix=".measure-", dir=page.parent,
                                     delete=False) as tmp:
        tmp.write(page.read_text().replace("</body>", f"<script>{MEASURE_JS}</script></body>"))
    try:
        dom = _chromium(exe, f"--window-size={width},1000", "--dump-dom", Path(tmp.name).as_uri())
    finally:
        Path(tmp.name).unlink()
    m = re.search(r'data-check-book="([^"]*)"', dom)
    if m is None:
        raise RuntimeError(f"{page.name}: the page did not report its measurements")
    return json.loads(htmllib.unescape(m.group(1)))


def check_in_browser(exe: str, page: Path, width: int = WINDOW) -> tuple[list[Defect], int]:
    """The code blocks, equations and tables cut off at ``width``, and the page's height."""
    r = measure(exe, page, width)
    return [Defect(page.stem, "clipped", f"{what} {w} px in a {box} px box at {width} px: {text}")
            for what, key in (("code", "code"), ("equation", "math"), ("table", "table"))
            for w, box, text in r[key]], r["height"]


def screenshot(exe: str, page: Path, png: Path, height: int, width: int = WINDOW) -> Path:
    """A screenshot of the whole page (``height`` px tall)."""
    png.parent.mkdir(parents=True, exist_ok=True)
    _chromium(exe, f"--window-size={width},{height}", f"--screenshot={png}", page.as_uri())
    return png


# --------------------------------------------------------------------------- main


def report(defects: list[Defect], n_pages: int) -> str:
    counts = Counter(d.kind for d in defects)
    lines = [str(d) for d in defects]
    lines.append(f"{n_pages} pages: " + ", ".join(f"{k} {counts.get(k, 0)}" for k in KINDS))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--html", type=Path, help="check this built HTML folder instead of building")
    p.add_argument("--no-browser", action="store_true", help="HTML checks only: no measurement, no screenshots")
    p.add_argument("--screenshots", type=Path, default=SCREENSHOTS, help="folder of the screenshots")
    args = p.parse_args(argv)
    html = args.html if args.html else build()
    found = check_html(html)
    exe = None if args.no_browser else browser()
    if exe is None and not args.no_browser:
        print("no chromium found (apt-get install chromium): no measurement in a browser, no screenshots")
    for page in pages(html) if exe else []:
        clipped, height = check_in_browser(exe, page)
        found += clipped
        png = screenshot(exe, page, args.screenshots / f"{page.stem}.png", height)
        print(f"screenshot {png.relative_to(ROOT) if png.is_relative_to(ROOT) else png} ({WINDOW} x {height} px)")
    print(report(found, len(pages(html))))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
