"""The Colab notebooks (``colab/NN_name.ipynb``, written by ``scripts/colab.py`` on ``make sync``).

Colab renders no MyST, so each chapter also exists as a notebook in plain Markdown. These checks
fail when ``colab/`` is stale (the chapters changed without ``make sync``), when any MyST markup is
left in a converted notebook, when a form cell that shows numbers in the prose does not compile,
and when the book's Colab launch button would not open the converted notebook at the release tag.
"""
from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module            # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


colab = _load("colab_script", ROOT / "scripts" / "colab.py")
BOOK = colab.Book()                       # labels, titles and numbers of the whole book
NOTEBOOKS = colab.build(BOOK)             # {file name: text}, regenerated from book/*.md in memory

#: MyST that Colab would show as raw text.
RAW_MYST = re.compile(
    r"\{eval\}|\{prf:|```\{|^\s*:::|^\s*\([\w.:-]+\)=\s*$|\$\$[ \t]*\([\w.:-]+\)[ \t]*$"
    r"|\{(ref|doc|eq|numref|cite(:\w+)?|py:\w+|glue(:\w+)?|math|download|term|abbr|sub|sup)\}`"
    r"|^:(label|class|tags|name|caption):", re.M)


def _cells(name: str) -> list[dict]:
    return json.loads(NOTEBOOKS[name])["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def _is_form(cell: dict) -> bool:
    return cell["cell_type"] == "code" and cell["metadata"].get("cellView") == "form"


def test_every_chapter_has_a_colab_notebook():
    chapters = colab.chapters()
    assert len(chapters) >= 11
    assert sorted(NOTEBOOKS) == [f"{c}.ipynb" for c in chapters]


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_colab_notebook_is_up_to_date(name):
    path = ROOT / "colab" / name
    assert path.exists(), f"colab/{name} is missing: run make sync"
    assert path.read_text(encoding="utf-8") == NOTEBOOKS[name], f"colab/{name} is stale: run make sync"


def test_no_stale_colab_notebook_left():
    extra = {p.name for p in (ROOT / "colab").glob("*.ipynb")} - set(NOTEBOOKS)
    assert not extra, f"colab/ holds notebooks of no chapter: {sorted(extra)} (make sync removes them)"


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_colab_notebook_has_no_myst_and_no_outputs(name):
    cells = _cells(name)
    assert cells[0]["cell_type"] == "markdown" and f"book/{name[:-6]}.md" in _source(cells[0])
    assert cells[1]["cell_type"] == "code" and "google.colab" in _source(cells[1]), \
        "the Colab install cell comes first"
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
            # of the cells the book hides, the install cell and those that glue numbers stay
            assert "remove-cell" not in cell["metadata"].get("tags", []) or i == 1 or "glue(" in _source(cell)
        if cell["cell_type"] == "markdown" or _is_form(cell):
            raw = RAW_MYST.search(_source(cell))
            assert not raw, f"cell {i} shows raw MyST {raw.group(0)!r}: {_source(cell)[:300]}"


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_form_cells_compile(name):
    forms = [c for c in _cells(name) if _is_form(c)]
    for cell in forms:
        source = _source(cell)
        assert source.startswith("#@title "), "a Colab form cell starts with its title"
        code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
        compile(code, f"{name}: form cell", "exec")


@pytest.mark.parametrize("later", [False, True])
def test_form_cell_shows_the_numbers_of_this_run(later):
    """The f-string of a form cell reads the glued values from display.G, formatted as written."""
    cell = colab.form_cell('The norm is {eval}`f"{G.t_norm:.2f}"` in $\\mathbb{R}^d$, '
                           'with {eval}`G.t_n` samples.', later=later)
    source = cell["source"]
    compile(source, "form cell", "exec")
    fstring = re.search(r'rf""".*?"""', source, re.S).group(0)
    G = SimpleNamespace(t_norm=3.14159, t_n=20)
    assert eval(fstring, {"G": G}) == "The norm is 3.14 in $\\mathbb{R}^d$, with 20 samples."
    assert ("post_run_cell" in source) == later, "only text with numbers from further down waits"


def test_prf_numbers_follow_the_book():
    """sphinx-proof numbers each type across the whole book in _toc.yml's order."""
    t = BOOK.targets
    assert (t["def-data"].number, t["prop-fixed-attention"].number, t["prop-loss-floor"].number) == (1, 1, 2)
    assert t["eq-tokens"].number == 1 and t["fig-welcome-overview"].number == 1
    text = "".join(_source(c) for c in _cells("02_setting.ipynb"))
    assert "**Proposition 2 (Loss floor).**" in text and "**Proof.**" in text and "∎" in text


def test_colab_launch_url_is_pinned_to_the_release_tag():
    lock = _load("lockfile_for_colab", ROOT / "scripts" / "lock.py")
    repo = lock.repository_url().removeprefix("https://github.com/")
    expected = (f"https://colab.research.google.com/github/{repo}/blob/"
                f"v{lock.project()['version']}/colab/02_setting.ipynb")
    assert colab.colab_url("02_setting") == expected


def test_book_rewrites_only_the_colab_launch_link():
    pytest.importorskip("myst_nb")
    bookfixes = _load("bookfixes_for_colab", ROOT / "book" / "_ext" / "bookfixes.py")
    binder = {"type": "link", "text": "Binder", "url": "https://mybinder.org/v2/gh/x/y/main?urlpath=x"}

    def context():
        return {"header_buttons": [{"type": "group", "label": "launch-buttons", "buttons": [
            dict(binder),
            {"type": "link", "text": "Colab",
             "url": "https://colab.research.google.com/github/x/y/blob/main/book/02_setting.ipynb"},
        ]}]}

    ctx = context()
    bookfixes.pin_colab_launch_link(None, "book/02_setting", "page.html", ctx, None)
    buttons = ctx["header_buttons"][0]["buttons"]
    assert buttons[0] == binder
    assert buttons[1]["url"] == colab.colab_url("02_setting")
    ctx = context()
    bookfixes.pin_colab_launch_link(None, "book/notation", "page.html", ctx, None)
    assert ctx == context(), "pages without a Colab notebook keep the theme's link"
