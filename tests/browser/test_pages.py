"""Every page of the built book, opened in a real browser (Debian's chromium via Playwright).

Run with ``pytest tests -m browser`` after ``make book`` and ``make vendor`` (``make test`` does all).
Each check is its own test, parametrised by page, so a failure names the page and the reason; a
full-page screenshot of the failing page lands in artifacts/browser/<page>.png.
"""
from __future__ import annotations

import re
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from .conftest import HTML

pytestmark = pytest.mark.browser

# Pages not worth a browser: Sphinx's generated index and search pages, and redirect stubs.
SKIP_PAGES = {"genindex.html", "search.html"}

# Console errors that are not the book's fault. Keep this list short, each entry explained.
CONSOLE_ALLOW = [
    # (none yet)
]


def _is_redirect_stub(path: Path) -> bool:
    head = path.read_text(encoding="utf-8", errors="replace")[:600].lower()
    return 'http-equiv="refresh"' in head and "<body" not in head


def _pages() -> list[str]:
    if not HTML.exists():
        return ["<no _build/html: run make book>"]
    pages = []
    for p in sorted(HTML.rglob("*.html")):
        rel = p.relative_to(HTML).as_posix()
        if rel.split("/")[0] in {"_static", "_sources", "_images"} or rel in SKIP_PAGES:
            continue
        if _is_redirect_stub(p):
            continue
        pages.append(rel)
    return pages


PAGES = _pages()


class _Ids(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k == "id" or (k == "name" and tag == "a"):
                self.ids.add(v)


@lru_cache(maxsize=None)
def _ids_of(path: Path) -> frozenset[str]:
    parser = _Ids()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return frozenset(parser.ids)


def _fail(report, message: str):
    shot = report.save_screenshot() if report.screenshot else None
    pytest.fail(f"{report.name}: {message}" + (f"\n(screenshot: {shot})" if shot else ""), pytrace=False)


def test_book_was_built():
    assert HTML.exists() and (HTML / "index.html").exists(), "no _build/html: run `make book`"
    assert PAGES and not PAGES[0].startswith("<"), "the built book has no pages"


def test_root_redirect_targets_exist():
    for stub in [p for p in HTML.rglob("*.html") if _is_redirect_stub(p)]:
        target = re.search(r'url=([^"\']+)', stub.read_text(encoding="utf-8"), re.I)
        assert target, f"{stub.name}: redirect without url"
        assert (stub.parent / target.group(1).strip()).exists(), f"{stub.name} redirects to missing {target.group(1)}"


@pytest.mark.parametrize("name", PAGES)
def test_no_console_errors(page_report, name):
    report = page_report(name)
    errors = [e for e in report.console_errors if not any(re.search(a, e) for a in CONSOLE_ALLOW)]
    if errors:
        _fail(report, "console errors:\n  " + "\n  ".join(errors))


@pytest.mark.parametrize("name", PAGES)
def test_no_requests_leave_the_machine(page_report, name):
    report = page_report(name)
    if report.blocked_requests:
        _fail(report, "requests neither local nor vendored (aborted):\n  " + "\n  ".join(report.blocked_requests))


@pytest.mark.parametrize("name", PAGES)
def test_math_is_rendered(page_report, name):
    report = page_report(name)
    math = report.math
    if "error" in math:
        _fail(report, f"page could not be probed: {math['error']}")
    problems = []
    if math["mathElements"] and not math["mathjaxScript"]:
        problems.append(f"{math['mathElements']} math elements but no MathJax script")
    if math["mathjaxScript"]:
        if not math["mathjaxStarted"]:
            problems.append(f"MathJax did not start: {math['startupError']}")
        elif math["mathElements"] and not math["mjxContainers"]:
            problems.append("MathJax ran but produced no mjx-container")
    if math["mjxErrors"]:
        problems.append(f"MathJax errors: {math['mjxErrors']}")
    if math["rawTex"]:
        problems.append(f"raw TeX left in the visible text: {math['rawTex']}")
    if problems:
        _fail(report, "; ".join(problems))


@pytest.mark.parametrize("name", PAGES)
def test_images_load(page_report, name):
    report = page_report(name)
    broken = [img["src"] for img in report.images if not img["complete"] or img["naturalWidth"] == 0]
    if broken:
        _fail(report, f"{len(broken)} image(s) did not load: {broken}")


@pytest.mark.parametrize("name", PAGES)
def test_internal_links_resolve(page_report, server, name):
    report = page_report(name)
    broken = []
    for href in report.hrefs:
        parts = urlsplit(href)
        if f"{parts.scheme}://{parts.netloc}" != server:
            continue  # external links are not followed (no network here)
        target = HTML / unquote(parts.path).lstrip("/")
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            broken.append(f"{href} -> missing file {target.relative_to(HTML)}")
            continue
        anchor = unquote(parts.fragment)
        if anchor and target.suffix == ".html" and anchor not in _ids_of(target):
            broken.append(f"{href} -> no id {anchor!r} in {target.relative_to(HTML)}")
    if broken:
        _fail(report, "broken internal links:\n  " + "\n  ".join(broken))


@pytest.mark.parametrize("name", PAGES)
def test_jupyter_widgets_render(page_report, name):
    report = page_report(name)
    views, rendered = report.widgets.get("views", 0), report.widgets.get("rendered", 0)
    if views and rendered < views:
        _fail(report, f"{views} Jupyter widget view(s) in the HTML but {rendered} rendered")


@pytest.mark.parametrize("name", PAGES)
def test_static_twins_respond_to_their_slider(page_report, name):
    report = page_report(name)
    bad = [t for t in report.twins if t["problems"]]
    if bad:
        lines = [f"twin #{t['index']}{' (id ' + t['id'] + ')' if t['id'] else ''}: {'; '.join(t['problems'])}" for t in bad]
        _fail(report, "static twin(s) broken:\n  " + "\n  ".join(lines))
