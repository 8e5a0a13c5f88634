"""Every page of the built book, opened in a real browser (Debian's chromium via Playwright).

Run with ``pytest tests -m browser`` after ``make book`` and ``make vendor`` (``make test`` does all).
Each check is its own test, parametrised by page (and, for layout, by width: 1280 px and a 390 px
phone), so a failure names the page and the reason; a full-page screenshot of the failing page
lands in artifacts/browser/<page>.png (<page>-390.png for the phone width). The page list is
harness.book_pages, shared with `make shots` (tests/browser/shots.py).
"""
from __future__ import annotations

import re

import pytest

from . import harness
from .harness import HTML, WIDTHS, is_redirect_stub

pytestmark = pytest.mark.browser


def _pages() -> list[str]:
    if not HTML.exists():
        return ["<no _build/html: run make book>"]
    return harness.book_pages(HTML)


PAGES = _pages()


def _check(page_report, name: str, check, what: str, width: int = harness.DESKTOP_WIDTH):
    report = page_report(name, width)
    problems = check(report)
    if problems:
        shot = report.save_screenshot()
        at = "" if width == harness.DESKTOP_WIDTH else f" at {width} px"
        pytest.fail(
            f"{name}{at}: {what}:\n  " + "\n  ".join(problems) + (f"\n(screenshot: {shot})" if shot else ""),
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


def test_figures_are_image_files_not_inline_data():
    """Every figure published as a ``<picture>`` (wide and phone PNG) points at files in ``_images``
    after the build (book/_ext/bookfixes.py), neither lazily loaded nor decoded asynchronously (with
    either, full-page captures at 390 px showed blank figures); inline data URLs made each chapter
    weigh megabytes."""
    inline, missing, pictures = [], [], 0
    for page in HTML.rglob("*.html"):
        for pic in re.findall(r'<picture class="ba-figure">.*?</picture>', page.read_text(encoding="utf-8"), re.S):
            pictures += 1
            if "data:image" in pic or "loading=" in pic or "decoding=" in pic:
                inline.append(str(page.relative_to(HTML)))
            for src in re.findall(r'(?:src|srcset)="([^"]+)"', pic):
                if not (page.parent / src).exists():
                    missing.append(f"{page.relative_to(HTML)}: {src}")
        for twin in re.findall(r'<div class="ba-twin" id="[^"]*".*?</script>', page.read_text(encoding="utf-8"), re.S):
            if "data:image" in twin:  # a static twin's frames are files too (book/_ext/bookfixes.py)
                inline.append(str(page.relative_to(HTML)) + " (static twin)")
    assert pictures > 20, f"only {pictures} figures with a phone layout in the book"
    assert not inline, f"pictures with inline data or deferred loading: {sorted(set(inline))[:5]}"
    assert not missing, f"pictures pointing at missing files: {missing[:5]}"


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


@pytest.mark.parametrize("name", PAGES)
def test_figures_are_shown(page_report, name):
    """Every captioned figure (and every figure the chapter source declares) is an <img> that
    loaded, at least 200x150 px; no figure was printed as "<Figure size ...>" text; there are at
    least as many images (static-twin frames included) as figure captions."""
    _check(page_report, name, harness.check_figures, "figures missing")


@pytest.mark.parametrize("name", PAGES)
def test_images_are_sharp(page_report, name):
    """At 1280 px every raster image has >= 2 image pixels per CSS pixel (high-DPI screens)."""
    _check(page_report, name, harness.check_image_sharpness, "images not high-DPI")


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", PAGES)
def test_images_keep_their_aspect_ratio(page_report, name, width):
    _check(page_report, name, harness.check_image_aspect, "images distorted", width)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", PAGES)
def test_figure_text_stays_legible(page_report, name, width):
    """Every visible figure is shown large enough that its 11 px text stays at least 9 px: on a
    390 px phone a wide figure shows its phone layout, at 1280 px no figure outgrows the column."""
    _check(page_report, name, harness.check_figure_text_scale, "figure text shrunk below 9 px", width)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", PAGES)
def test_math_is_never_clipped(page_report, name, width):
    """Display and inline math fit their box or scroll with a visible scrollbar; equation numbers
    do not cover equations; the page does not scroll sideways. At a laptop and a phone width."""
    _check(page_report, name, harness.check_math_layout, "math cut off or hidden", width)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", PAGES)
def test_punctuation_stays_with_math_and_overflow_is_cued(page_report, name, width):
    """A ')' or '.' after inline math never starts a line; a box that scrolls sideways shows a cue
    at the edge with more content, a box that fits shows none (found by fresh-eyes readers)."""
    _check(page_report, name, harness.check_line_breaks_and_cues, "line breaks or scroll cues", width)


@pytest.mark.parametrize("name", PAGES)
def test_no_raw_latex_in_text(page_report, name):
    """Sidebar, titles (tab and print), headings, link text, prose and cell outputs show no TeX
    source outside MathJax-rendered math."""
    _check(page_report, name, harness.check_raw_tex, "raw LaTeX in visible text")


def test_launch_buttons_open_the_paired_notebook():
    """Binder opens book/<chapter>.ipynb; Colab opens colab/<chapter>.ipynb (the chapter in plain
    Markdown, scripts/colab.py) at the release tag. Both files exist."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("colab_for_pages", harness.ROOT / "scripts" / "colab.py")
    colab = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = colab
    spec.loader.exec_module(colab)
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
        for service, pattern, want, ok in (
                ("Binder", r'href="(https://mybinder\.org/[^"]+)"', f"book/{md.stem}.ipynb",
                 lambda link, want: link.endswith(want)),
                ("Colab", r'href="(https://colab\.research\.google\.com/[^"]+)"', f"colab/{md.stem}.ipynb",
                 lambda link, want: link == colab.colab_url(md.stem))):
            links = re.findall(pattern, html)
            if not links:
                problems.append(f"{page.name}: no {service} launch button")
            elif not all(ok(link, want) for link in links):
                problems.append(f"{page.name}: {service} opens {links[0]}, not {want}")
            if not (harness.ROOT / want).exists():
                problems.append(f"{page.name}: {service} opens {want}, which is not in the repository")
    assert not problems, "\n".join(problems)
