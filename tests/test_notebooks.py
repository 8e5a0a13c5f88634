"""Chapter bookkeeping: MyST chapters, their paired notebooks, the Colab cell and the table of contents.

Each chapter is a jupytext MyST file ``book/NN_name.md`` (the source of truth) with an output-free
``book/NN_name.ipynb`` beside it (what Binder and Colab open). ``make sync`` keeps them paired.
"""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import jupytext
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
COLAB_MARKERS = ('"google.colab" in sys.modules', "%pip install")


def _front_matter(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---"):
        return {}
    end = text.find("\n---", 3)
    return yaml.safe_load(text[3:end]) or {} if end > 0 else {}


def _is_notebook(path: Path) -> bool:
    meta = _front_matter(path)
    return "jupytext" in meta or "kernelspec" in meta


CHAPTERS = sorted(p for p in BOOK.glob("*.md") if _is_notebook(p))
NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))


def _ids(paths):
    return [p.name for p in paths]


def _toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    return [str(Path(f).with_suffix("")) for f in files]


def _cells(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def test_there_is_at_least_one_chapter():
    assert CHAPTERS, "no jupytext chapter found in book/"


@pytest.mark.parametrize("md", CHAPTERS, ids=_ids(CHAPTERS))
def test_chapter_is_paired_with_an_ipynb(md: Path):
    nb_path = md.with_suffix(".ipynb")
    assert nb_path.exists(), f"{md.name} has no paired {nb_path.name}: run `make sync`"
    formats = _front_matter(md).get("jupytext", {}).get("formats", "")
    assert "ipynb" in formats and "md:myst" in formats, (
        f"{md.name}: jupytext header must declare `formats: ipynb,md:myst` (got {formats!r})"
    )


@pytest.mark.parametrize("md", CHAPTERS, ids=_ids(CHAPTERS))
def test_pair_has_not_drifted(md: Path):
    nb_path = md.with_suffix(".ipynb")
    if not nb_path.exists():
        pytest.skip("no pair (reported by test_chapter_is_paired_with_an_ipynb)")
    from_md = _cells(jupytext.read(md))
    from_nb = _cells(jupytext.read(nb_path))
    if from_md != from_nb:
        for i, (a, b) in enumerate(zip(from_md, from_nb)):
            if a != b:
                pytest.fail(
                    f"{md.name} and {nb_path.name} differ at cell {i} "
                    f"({a[0]}: {a[1][:60]!r} vs {b[0]}: {b[1][:60]!r}): run `make sync`"
                )
        pytest.fail(f"{md.name} has {len(from_md)} cells, {nb_path.name} has {len(from_nb)}: run `make sync`")


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_has_no_outputs(nb_path: Path):
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    dirty = [
        i
        for i, cell in enumerate(nb["cells"])
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, f"{nb_path.name}: cells {dirty} hold outputs or execution counts (clear them, then `make sync`)"


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_every_notebook_has_a_myst_source(nb_path: Path):
    assert nb_path.with_suffix(".md").exists(), f"{nb_path.name} has no MyST source {nb_path.stem}.md"


@pytest.mark.parametrize("md", CHAPTERS, ids=_ids(CHAPTERS))
def test_chapter_has_the_colab_install_cell(md: Path):
    nb = jupytext.read(md)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{md.name} has no code cell"
    first = code[0]
    assert all(m in first.source for m in COLAB_MARKERS), (
        f"{md.name}: the first code cell must install the package in Colab only "
        f"(`if \"google.colab\" in sys.modules: %pip install ...`)"
    )
    assert "remove-cell" in first.metadata.get("tags", []), f"{md.name}: the Colab cell must be tagged remove-cell"


@pytest.mark.parametrize("md", CHAPTERS, ids=_ids(CHAPTERS))
def test_chapter_is_in_the_toc(md: Path):
    entry = str(md.relative_to(ROOT).with_suffix(""))
    assert entry in _toc_files(), f"{md.name} is not listed in _toc.yml"


def test_every_toc_entry_exists():
    missing = [
        f
        for f in _toc_files()
        if not any((ROOT / f).with_suffix(ext).exists() for ext in (".md", ".ipynb", ".rst"))
    ]
    assert not missing, f"_toc.yml lists files that do not exist: {missing}"


#: Chapter code stays narrow (the book's column, and d2l's habit); captions in cell metadata and
#: the Colab cell's `%pip install` URL line are not code a reader reads.
MAX_CODE_COLUMNS = 88


@pytest.mark.parametrize("md", CHAPTERS, ids=_ids(CHAPTERS))
def test_chapter_code_lines_fit_in_88_columns(md: Path):
    nb = jupytext.read(md)
    long = [(i, len(line), line) for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
            for line in cell.source.splitlines()
            if len(line) > MAX_CODE_COLUMNS and not line.strip().startswith("%pip install")]
    assert not long, (f"{md.name}: code lines over {MAX_CODE_COLUMNS} columns (cell, length, line): "
                      + "; ".join(f"{i}, {n}: {line.strip()[:60]}..." for i, n, line in long))


_EVAL_NAME = re.compile(r"\{eval\}`(?:f\"\{)?G\.([A-Za-z_][A-Za-z0-9_]*)")
_GLUE_NAME = re.compile(r"""\bglue\(\s*["']([A-Za-z_][A-Za-z0-9_]*)["']""")


@pytest.mark.parametrize("md", CHAPTERS, ids=_ids(CHAPTERS))
def test_every_inline_number_is_glued_above_it(md: Path):
    """A reader in JupyterLab runs a chapter top to bottom, and jupyterlab-myst evaluates a markdown
    cell's {eval} expressions when the cell runs: a number glued only further down shows an error
    there (the Binder test finds this after minutes; this finds it at once). Names glued under a
    computed name (glue(f"...")) are not checked."""
    nb = jupytext.read(md)
    literal = {m for cell in nb.cells if cell.cell_type == "code" for m in _GLUE_NAME.findall(cell.source)}
    glued, late = set(), []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            glued |= set(_GLUE_NAME.findall(cell.source))
        else:
            late += [(i, name) for name in _EVAL_NAME.findall(cell.source)
                     if name in literal and name not in glued]
    assert not late, f"{md.name}: numbers shown before the cell that glues them (cell, name): {late}"


# --- Chapter shape: Overview, labelled sections, Summary, Exercises with folded solutions ---------

SHAPE = ("Overview", "Summary", "Exercises")   # required `##` sections, in this order
_FENCE = re.compile(r"^(`{3,}|~{3,})")
_LABEL = re.compile(r"^\(sec-[A-Za-z0-9_-]+\)=$")


def _headings(md: Path) -> list[tuple[int, str, bool]]:
    """The `##` headings outside fenced blocks: (line number, title, has a `(sec-...)=` label
    on the line just above)."""
    lines = md.read_text(encoding="utf-8").splitlines()
    out, fence = [], None
    for k, line in enumerate(lines):
        stripped = line.strip()
        if fence is not None:
            if stripped == fence:
                fence = None
            continue
        opener = _FENCE.match(stripped)
        if opener:
            fence = opener.group(1)
            continue
        if line.startswith("## "):
            out.append((k + 1, line[3:].strip(), k > 0 and bool(_LABEL.match(lines[k - 1].strip()))))
    return out


@pytest.mark.parametrize("md", CHAPTERS, ids=_ids(CHAPTERS))
def test_chapter_has_overview_summary_and_exercises_in_order(md: Path):
    titles = [title for _, title, _ in _headings(md)]
    missing = [name for name in SHAPE if name not in titles]
    assert not missing, f"{md.name}: no `## {missing[0]}` section (chapter shape: {' -> '.join(SHAPE)})"
    where = [titles.index(name) for name in SHAPE]
    assert where == sorted(where), f"{md.name}: sections must come in the order {' -> '.join(SHAPE)}"
    assert titles[-2:] == ["Summary", "Exercises"], f"{md.name}: Summary and Exercises must end the chapter"


@pytest.mark.parametrize("md", CHAPTERS, ids=_ids(CHAPTERS))
def test_every_section_has_a_label(md: Path):
    bare = [f"line {k}: {title}" for k, title, labelled in _headings(md) if not labelled]
    assert not bare, f"{md.name}: `##` sections without a `(sec-...)=` label above them: {bare}"


@pytest.mark.parametrize("md", CHAPTERS, ids=_ids(CHAPTERS))
def test_chapter_has_exercises_with_folded_solutions(md: Path):
    text = md.read_text(encoding="utf-8")
    exercises = re.findall(r"^```\{exercise\}.*\n:label: (ex-[\w-]+)$", text, flags=re.M)
    solutions = re.findall(r"^```\{solution(?:-start)?\} (ex-[\w-]+)\n:class: dropdown$", text, flags=re.M)
    all_solutions = re.findall(r"^```\{solution(?:-start)?\} (\S+)", text, flags=re.M)
    assert len(all_solutions) == len(solutions), f"{md.name}: every solution needs `:class: dropdown`"
    assert set(solutions) <= set(exercises), f"{md.name}: solutions to unknown exercises"
    assert len(set(exercises) & set(solutions)) >= 2, f"{md.name}: needs at least 2 exercises with solutions"
    starts, ends = text.count("```{solution-start}"), text.count("```{solution-end}")
    assert starts == ends, f"{md.name}: {starts} solution-start but {ends} solution-end"
    exercises_at = text.index("\n## Exercises\n")
    assert all(text.index(f":label: {label}\n") > exercises_at for label in exercises), (
        f"{md.name}: exercises belong in the Exercises section")


@pytest.mark.parametrize("md", CHAPTERS, ids=_ids(CHAPTERS))
def test_figure_captions_are_one_line(md: Path):
    """A caption is one unbroken paragraph (jupytext round trips once broke them mid-sentence)."""
    for cell in jupytext.read(md).cells:
        figure = cell.metadata.get("mystnb", {}).get("figure")
        if figure:
            caption = figure.get("caption", "")
            assert caption.strip() and "\n" not in caption, (
                f"{md.name}: caption of {figure.get('name')!r} is empty or holds a line break")


def _static_call(node) -> bool:
    """A call with the keyword ``static=True`` (how a chapter asks for a static twin)."""
    return isinstance(node, ast.Call) and any(
        k.arg == "static" and isinstance(k.value, ast.Constant) and k.value.value is True for k in node.keywords)


def _twin_cells(md: Path):
    """(cell, shows a twin, every twin built in it has alt text) for the chapter's code cells."""
    cells, names = [], set()
    for cell in jupytext.read(md).cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:                      # IPython magics: not a twin cell
            continue
        calls = [n for n in ast.walk(tree) if _static_call(n)]
        names |= {t.id for n in tree.body if isinstance(n, ast.Assign) and _static_call(n.value)
                  for t in n.targets if isinstance(t, ast.Name)}
        last = tree.body[-1] if tree.body else None
        shows = isinstance(last, ast.Expr) and (
            _static_call(last.value) or (isinstance(last.value, ast.Name) and last.value.id in names))
        cells.append((cell, shows, all(any(k.arg == "alt" for k in c.keywords) for c in calls)))
    return cells


@pytest.mark.parametrize("md", CHAPTERS, ids=_ids(CHAPTERS))
def test_static_twins_are_named_captioned_figures_with_alt_text(md: Path):
    """Every static twin gets its own alt text, and the cell that shows it is a named, captioned
    figure (the caption says what to drag and what to watch)."""
    for cell, shows, has_alt in _twin_cells(md):
        assert has_alt, f"{md.name}: a static twin without its own alt text: {cell.source[:60]!r}"
        if shows:
            figure = cell.metadata.get("mystnb", {}).get("figure", {})
            assert figure.get("name") and figure.get("caption"), (
                f"{md.name}: the cell showing a twin must be a named, captioned figure: {cell.source[:60]!r}")


def test_the_book_shows_its_static_twins_as_figures():
    shown = [md.name for md in CHAPTERS for _, shows, _ in _twin_cells(md) if shows]
    assert len(shown) >= 5, f"expected the five static twins of chapters 4, 6 and 9, found {shown}"


@pytest.mark.parametrize("md", sorted(BOOK.glob("*.md")), ids=lambda p: p.name)
def test_table_cells_write_norms_with_lvert(md: Path):
    r"""Inside a Markdown table, ``\|`` is the escaped column bar, so ``$\|\mu\|$`` renders as
    :math:`|\mu|` (single bars), not the norm the prose writes: tables use ``\lVert\mu\rVert``."""
    bad = [(i, line[:80]) for i, line in enumerate(md.read_text(encoding="utf-8").splitlines(), 1)
           if line.startswith("|") and any("\\|" in m for m in re.findall(r"\$[^$]+\$", line))]
    assert not bad, f"{md.name}: \\| inside maths in a table row (write \\lVert ... \\rVert): {bad}"
