"""Every page of the built book, opened in a real browser (Debian's chromium via Playwright).

Run with ``pytest tests -m browser`` after ``make book`` and ``make vendor`` (``make test`` does all).
Each check is its own test, parametrised by page, so a failure names the page and the reason; a
full-page screenshot of the failing page lands in artifacts/browser/<page>.png.
"""
from __future__ import annotations

import re

import pytest

from . import harness
from .harness import HTML, is_redirect_stub

pytestmark = pytest.mark.browser

# Sphinx's generated index and search pages carry no book content.
SKIP_PAGES = {"genindex.html", "search.html"}


def _pages() -> list[str]:
    if not HTML.exists():
        return ["<no _build/html: run make book>"]
    pages = []
    for p in sorted(HTML.rglob("*.html")):
        rel = p.relative_to(HTML).as_posix()
        if rel.split("/")[0] in {"_static", "_sources", "_images"} or rel in SKIP_PAGES or is_redirect_stub(p):
            continue
        pages.append(rel)
    return pages


PAGES = _pages()


def _check(page_report, name: str, check, what: str):
    report = page_report(name)
    problems = check(report)
    if problems:
        shot = report.save_screenshot()
        pytest.fail(
            f"{name}: {what}:\n  " + "\n  ".join(problems) + (f"\n(screenshot: {shot})" if shot else ""),
            pytrace=False,
        )


def test_book_was_built():
    assert (HTML / "index.html").exists(), "no _build/html: run `make book`"
    assert PAGES and not PAGES[0].startswith("<"), "the built book has no pages"


def test_redirect_stubs_point_at_existing_pages():
    for stub in [p for p in HTML.rglob("*.html") if is_redirect_stub(p)]:
        target = re.search(r'url=([^"\']+)', stub.read_text(encoding="utf-8"), re.I)
        assert target, f"{stub.relative_to(HTML)}: redirect without url"
        assert (stub.parent / target.group(1).strip()).exists(), (
            f"{stub.relative_to(HTML)} redirects to missing {target.group(1)}"
        )


@pytest.mark.parametrize("name", PAGES)
def test_no_console_errors(page_report, name):
    _check(page_report, name, harness.check_console, "console errors")


@pytest.mark.parametrize("name", PAGES)
def test_no_request_leaves_the_machine(page_report, name):
    _check(page_report, name, harness.check_requests, "requests neither local nor vendored")


@pytest.mark.parametrize("name", PAGES)
def test_math_is_rendered(page_report, name):
    _check(page_report, name, harness.check_math, "math not rendered")


@pytest.mark.parametrize("name", PAGES)
def test_images_load(page_report, name):
    _check(page_report, name, harness.check_images, "broken images")


@pytest.mark.parametrize("name", PAGES)
def test_internal_links_resolve(page_report, name):
    _check(page_report, name, harness.check_links, "broken internal links")


@pytest.mark.parametrize("name", PAGES)
def test_jupyter_widgets_render(page_report, name):
    _check(page_report, name, harness.check_widgets, "Jupyter widgets not rendered")


@pytest.mark.parametrize("name", PAGES)
def test_static_twins_respond_to_their_slider(page_report, name):
    _check(page_report, name, harness.check_twins, "static twin broken")


def test_launch_buttons_open_the_paired_notebook():
    """Binder and Colab buttons on each chapter page open book/<chapter>.ipynb, which exists."""
    chapters = [p for p in (harness.ROOT / "book").glob("*.md") if p.read_text(encoding="utf-8").startswith("---")
                and "kernelspec:" in p.read_text(encoding="utf-8").split("\n---", 1)[0]]
    assert chapters
    problems = []
    for md in chapters:
        page = HTML / "book" / f"{md.stem}.html"
        if not page.exists():
            problems.append(f"{md.name}: no built page {page.relative_to(HTML)}")
            continue
        html = page.read_text(encoding="utf-8")
        want = f"book/{md.stem}.ipynb"
        for service, pattern in (("Binder", r'href="(https://mybinder\.org/[^"]+)"'),
                                 ("Colab", r'href="(https://colab\.research\.google\.com/[^"]+)"')):
            links = re.findall(pattern, html)
            if not links:
                problems.append(f"{page.name}: no {service} launch button")
            elif not all(link.endswith(want) for link in links):
                problems.append(f"{page.name}: {service} opens {links[0]}, not {want}")
        if not (harness.ROOT / want).exists():
            problems.append(f"{page.name}: launch buttons open {want}, which is not in the repository")
    assert not problems, "\n".join(problems)
