"""The package reference (book/api/) and the links between docstrings and chapters.

* every label a docstring cites (``:ref:`label```, ``:prf:ref:`label```) is defined in the book, so
  a reader can go from the reference to the chapter that explains the idea;
* every module's docstring cites at least one label;
* the reference documents every public name: each module has a page section (``automodule``) and
  each public function, class and ``__all__`` constant an ``auto*`` entry, so a new public function
  without an entry fails here (the book build with ``-n`` then checks that each entry resolves).

Public: a function or class defined in the module whose name does not start with ``_``, and the
names in ``__all__`` that the module defines itself (constants included).
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import benign_attention

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
API = BOOK / "api"
PACKAGE = ROOT / "benign_attention"

CITE = re.compile(r":(?:prf:)?ref:`(?:[^`<]*<)?([^`<>]+?)>?`")
LABEL = re.compile(r"^\s*\(([^()\s]+)\)=\s*$|^\s*:label:\s*(\S+)\s*$", re.M)
DIRECTIVE = re.compile(r"^\.\. (automodule|currentmodule|autofunction|autoclass|autoexception|autodata)::\s*([\w.]+)", re.M)


def _modules() -> list[str]:
    """Every module of the package except private ones (``_jupyter_hooks``) and package inits."""
    names = []
    for info in pkgutil.walk_packages(benign_attention.__path__, "benign_attention."):
        if any(part.startswith("_") for part in info.name.split(".")) or info.ispkg:
            continue
        names.append(info.name)
    return sorted(names)


MODULES = _modules()

# Module docstrings that do not cite the book yet, and why (strict: remove the entry once they do).
NO_CITATION_YET: dict[str, str] = {}


def _public(module) -> set[str]:
    names = set()
    for name, obj in vars(module).items():
        if name.startswith("_"):
            continue
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == module.__name__:
            names.add(name)
    for name in getattr(module, "__all__", ()):
        obj = getattr(module, name)
        if not (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismodule(obj)):
            names.add(name)  # a constant the module exports
    return names


def _book_labels() -> set[str]:
    labels = set()
    for md in BOOK.rglob("*.md"):
        for a, b in LABEL.findall(md.read_text(encoding="utf-8")):
            labels.add(a or b)
    return labels


def _documented() -> tuple[set[str], set[str]]:
    """(modules with an automodule, fully qualified names with an auto* entry) in book/api/*.md."""
    modules, names = set(), set()
    for md in sorted(API.glob("*.md")):
        current = None
        for kind, target in DIRECTIVE.findall(md.read_text(encoding="utf-8")):
            if kind in ("automodule", "currentmodule"):
                current = target
                if kind == "automodule":
                    modules.add(target)
            else:
                assert current, f"{md.name}: {kind}:: {target} before any currentmodule"
                names.add(target if target.startswith("benign_attention.") else f"{current}.{target}")
    return modules, names


def test_there_are_modules_and_labels():
    assert "benign_attention.engines" in MODULES and "benign_attention.realdata.finetune" in MODULES
    assert {"def-data", "prop-g-law", "sec-setting-tokens"} <= _book_labels()


def test_every_cited_label_exists_in_the_book():
    labels = _book_labels()
    missing = []
    for py in sorted(PACKAGE.rglob("*.py")):
        for cited in CITE.findall(py.read_text(encoding="utf-8")):
            if cited not in labels:
                missing.append(f"{py.relative_to(ROOT)}: {cited}")
    assert not missing, "docstrings cite labels the book does not define:\n  " + "\n  ".join(missing)


@pytest.mark.parametrize("name", [
    pytest.param(m, marks=pytest.mark.xfail(reason=NO_CITATION_YET[m], strict=True)) if m in NO_CITATION_YET else m
    for m in MODULES])
def test_module_docstring_cites_the_book(name):
    doc = importlib.import_module(name).__doc__ or ""
    assert CITE.search(doc), f"{name}: the module docstring cites no book label (:ref:`sec-...`)"


@pytest.mark.parametrize("name", MODULES)
def test_reference_documents_every_public_name(name):
    modules, documented = _documented()
    assert name in modules, f"book/api/*.md has no `.. automodule:: {name}`"
    module = importlib.import_module(name)
    missing = sorted(n for n in _public(module) if f"{name}.{n}" not in documented)
    assert not missing, f"{name}: public names without a reference entry in book/api/*.md: {missing}"


def test_reference_entries_exist():
    """An entry for a name that was removed or renamed is an error too (autodoc would only warn)."""
    _, documented = _documented()
    stale = []
    for qualified in sorted(documented):
        module_name, attr = qualified.rsplit(".", 1)
        if not hasattr(importlib.import_module(module_name), attr):
            stale.append(qualified)
    assert not stale, f"book/api/*.md documents names that do not exist: {stale}"


def test_reference_pages_are_in_the_toc():
    toc = (ROOT / "_toc.yml").read_text(encoding="utf-8")
    pages = sorted(p.relative_to(ROOT).with_suffix("").as_posix() for p in API.glob("*.md"))
    missing = [p for p in pages if f"file: {p}\n" not in toc]
    assert not missing, f"_toc.yml does not list {missing}"


def test_top_level_exports_are_documented():
    """``benign_attention.X`` re-exports: documented under the module that defines them."""
    _, documented = _documented()
    for pkg in (benign_attention, importlib.import_module("benign_attention.realdata")):
        for name in pkg.__all__:
            obj = getattr(pkg, name)
            home = getattr(obj, "__module__", None) if (inspect.isfunction(obj) or inspect.isclass(obj)) else None
            if home is None:  # a constant: find the submodule that defines it
                home = next(m for m in MODULES if m.startswith(pkg.__name__) and name in
                            getattr(importlib.import_module(m), "__all__", vars(importlib.import_module(m))))
            assert f"{home}.{name}" in documented, f"{pkg.__name__}.{name} ({home}) has no reference entry"


def test_bare_section_links_do_not_point_at_headings_with_math():
    """A bare {ref}`sec-x` takes the heading's text as link text, and Sphinx drops the math
    rendering there: the page would show raw TeX (``\\|\\mu\\|``). Such links need explicit text."""
    pages = sorted(BOOK.rglob("*.md"))
    headings = {}
    for md in pages:
        lines = md.read_text(encoding="utf-8").splitlines()
        for k, line in enumerate(lines[:-1]):
            m = re.match(r"^\((sec-[\w-]+)\)=$", line)
            if m:
                headings[m.group(1)] = lines[k + 1]
    bad = [f"{md.name}: {label} -> {headings[label]!r}" for md in pages
           for label in re.findall(r"\{ref\}`(sec-[\w-]+)`", md.read_text(encoding="utf-8"))
           if "$" in headings.get(label, "")]
    assert not bad, f"bare links to headings with math (give them link text): {bad}"


def test_reference_summaries_are_whole_sentences():
    """The reference's summary tables show each docstring's first sentence, which autosummary cuts
    at the first ". ": a cut inside inline code (``x . q``) broke the build, and one at "..." read
    as a fragment ("Steps 0, k, 2k, .")."""
    from docutils.frontend import get_default_settings
    from docutils.parsers.rst import Parser
    from docutils.utils import new_document
    from sphinx.ext.autosummary import extract_summary

    document = new_document("summary", get_default_settings(Parser))
    bad = []
    for name in MODULES:
        module = importlib.import_module(name)
        for attr, obj in vars(module).items():
            if attr.startswith("_") or getattr(obj, "__module__", None) != name:
                continue
            summary = extract_summary((inspect.getdoc(obj) or "").splitlines(), document)
            if summary.count("``") % 2 or summary.endswith((" .", "...")):
                bad.append(f"{name}.{attr}: {summary!r}")
    assert not bad, f"summaries cut in the wrong place: {bad}"


def _plain_rst(text: str) -> str:
    """``text`` without inline literals, roles and interpreted text (what Sphinx does not parse further)."""
    text = re.sub(r"``.*?``", "", text, flags=re.S)
    text = re.sub(r"(:[\w:.-]+:)?`[^`]*`_?", "", text)
    return text


def test_docstrings_have_no_stray_rst_markup():
    """Two defects that broke the ``-W`` build: ``|x|`` in a docstring is an RST substitution
    reference (write it as inline code), and a class attribute's comment (``#:``) whose first line has
    "words: more words" is read by napoleon as "type: description" (a reference to a class named
    by the words)."""
    from sphinx.pycode import ModuleAnalyzer

    documented = _documented()[1]
    substitution = re.compile(r"(?<![|\w])\|[^\s|]([^|\n]*[^\s|])?\|(?![|\w])")
    bad = []
    for name in MODULES:
        module = importlib.import_module(name)
        objects = [(attr, obj) for attr, obj in vars(module).items()
                   if not attr.startswith("_") and getattr(obj, "__module__", None) == name]
        objects += [(f"{attr}.{m}", member) for attr, obj in objects if inspect.isclass(obj)
                    for m, member in vars(obj).items() if not m.startswith("_")]
        docs = [(attr, inspect.getdoc(obj) or "") for attr, obj in objects
                if inspect.isfunction(obj) or inspect.isclass(obj) or isinstance(obj, property)]
        docs.append(("(module)", module.__doc__ or ""))
        for attr, doc in docs:
            if substitution.search(_plain_rst(doc)):
                bad.append(f"{name}.{attr}: |...| is an RST substitution: {substitution.search(_plain_rst(doc))[0]!r}")
        for (cls, attr), lines in ModuleAnalyzer.for_module(name).find_attr_docs().items():
            if cls.startswith("_") or attr.startswith("_") or not cls and f"{name}.{attr}" not in documented:
                continue  # napoleon reads the comments of documented data and class attributes as "type: text"
            first = _plain_rst(lines[0] if lines else "")
            if re.match(r"^[^:]*\S: ", first) or substitution.search(_plain_rst(" ".join(lines))):
                bad.append(f"{name}.{cls + '.' if cls else ''}{attr}: attribute comment {lines[0]!r}")
    assert not bad, "docstrings Sphinx misreads:\n" + "\n".join(bad)


def test_docstrings_with_maths_keep_their_backslashes():
    """A docstring that is not raw turns the backslash of ``\\alpha``, ``\\times`` or ``\\nu`` into a
    control character or a tab (``\\a``, ``\\t``, ``\\n`` are Python escapes), which MathJax then shows
    as an error or as a broken formula. Every docstring with maths must keep its LaTeX intact."""
    bad = []
    for name in MODULES:
        module = importlib.import_module(name)
        objects = [(attr, obj) for attr, obj in vars(module).items()
                   if getattr(obj, "__module__", None) == name and (inspect.isfunction(obj) or inspect.isclass(obj))]
        objects += [(f"{attr}.{m}", member) for attr, obj in objects if inspect.isclass(obj)
                    for m, member in vars(obj).items() if inspect.isfunction(member) or isinstance(member, property)]
        for attr, obj in [("(module)", module), *objects]:
            doc = obj.__doc__ or ""
            if re.search(r"[\x00-\x08\x0b-\x1f]", doc) or (":math:" in doc or ".. math::" in doc) and "\t" in doc:
                bad.append(f"{name}.{attr}")
    assert not bad, "docstrings with escaped LaTeX (make them raw strings, r\"\"\"...\"\"\"):\n" + "\n".join(bad)
