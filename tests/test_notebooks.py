"""Chapter bookkeeping: MyST chapters, their paired notebooks, the Colab cell and the table of contents.

Each chapter is a jupytext MyST file ``book/NN_name.md`` (the source of truth) with an output-free
``book/NN_name.ipynb`` beside it (what Binder and Colab open). ``make sync`` keeps them paired.
"""
from __future__ import annotations

import json
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
