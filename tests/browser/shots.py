"""Full-page screenshots of every built page, at a laptop and a phone width.

    python -m tests.browser.shots [PAGE ...] [--widths 1280 390] [--out artifacts/shots]

(``make shots``.) Shoots the book already built in _build/html (``make book``); it does not build.
Each page of harness.book_pages (the same list the browser tests check) is opened in the browser
the tests use (Debian's chromium, CDN scripts served from tests/browser/vendor, nothing reaches
the network) at each width (390 px emulates a phone), waited for until MathJax has typeset and
every image has loaded (page_probe.js), then shot full length into
``<out>/<page>-<width>.png``, e.g. artifacts/shots/02_setting-1280.png. Scrollbars inside the page
are drawn, as a desktop browser draws them, so math that scrolls shows that it does (the page's own
scrollbar is not: the column is laid out at the full width, as in the tests).

Problems met on the way (console errors, requests that were blocked, MathJax not finishing) are
printed, not fatal: the browser tests are where they fail.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .harness import (
    HTML,
    PAGE_PROBE_JS,
    ROOT,
    VENDOR,
    WIDTHS,
    PageReport,
    book_pages,
    launch_chromium,
    open_page,
    page_stem,
    serve,
)

OUT = ROOT / "artifacts" / "shots"
MAX_SHOT_HEIGHT = 16_000  # px; Chromium cannot draw a taller viewport in one piece


def shoot(browser, origin: str, name: str, width: int, out: Path) -> list[str]:
    """Screenshot page ``name`` at ``width`` px into ``out``; returns the problems seen."""
    report = PageReport(name, origin, HTML, width=width)
    problems: list[str] = []
    with open_page(browser, origin, name, width=width, report=report) as page:
        # Scrollbars are drawn (math that scrolls shows it), except the page's own: the column is
        # laid out at the full width, as in the browser tests.
        page.add_style_tag(content="html { scrollbar-width: none; }")
        probe = page.evaluate(PAGE_PROBE_JS)  # waits for MathJax, images and web fonts
        math = probe["math"]
        if math["mathjaxScript"] and not math["mathjaxStarted"]:
            problems.append(f"MathJax did not finish: {math['startupError']}")
        problems += [f"image did not load: {i['src']}" for i in probe["images"] if not i["naturalWidth"]]
        # Playwright's full_page screenshots hide every scrollbar; a viewport as tall as the page
        # keeps them. (Past Chromium's largest texture, fall back to full_page.)
        height = 0
        for _ in range(5):  # until the height is stable (a taller viewport can reflow the page)
            new_height = page.evaluate("() => document.documentElement.scrollHeight")
            if new_height == height or new_height > MAX_SHOT_HEIGHT:
                break
            height = new_height
            page.set_viewport_size({"width": width, "height": height})
            page.wait_for_timeout(200)
        page.screenshot(path=str(out), full_page=height == 0 or new_height > MAX_SHOT_HEIGHT)
    return report.console_errors + [f"blocked: {r}" for r in report.blocked_requests] + problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pages", nargs="*", help="pages to shoot (default: every page), e.g. book/02_setting.html")
    parser.add_argument("--widths", type=int, nargs="+", default=list(WIDTHS), help="viewport widths in px")
    parser.add_argument("--out", type=Path, default=OUT, help=f"output folder (default {OUT.relative_to(ROOT)})")
    args = parser.parse_args(argv)

    if not (HTML / "index.html").exists():
        print(f"{HTML} has no built book: run `make book` first", file=sys.stderr)
        return 2
    if not VENDOR.exists():
        print(f"{VENDOR} missing: run `make vendor`", file=sys.stderr)
        return 2
    pages = book_pages(HTML)
    if args.pages:
        unknown = [p for p in args.pages if p not in pages]
        if unknown:
            print(f"not built pages: {unknown}; pages are: {pages}", file=sys.stderr)
            return 2
        pages = args.pages
    args.out.mkdir(parents=True, exist_ok=True)

    start, shots, warnings = time.monotonic(), 0, 0
    with launch_chromium(scrollbars=True) as browser, serve(HTML) as origin:
        for name in pages:
            for width in args.widths:
                out = args.out / f"{page_stem(name)}-{width}.png"
                t0 = time.monotonic()
                try:
                    problems = shoot(browser, origin, name, width, out)
                except Exception as exc:  # one bad page does not stop the others
                    problems = [f"no screenshot: {type(exc).__name__}: {exc}"]
                else:
                    shots += 1
                warnings += bool(problems)
                print(f"{out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}  "
                      f"({time.monotonic() - t0:.1f} s)", flush=True)
                for p in problems[:10]:
                    print(f"    warning: {p}")
    print(f"{shots} screenshots of {len(pages)} pages in {time.monotonic() - start:.0f} s"
          + (f"; {warnings} with warnings" if warnings else ""))
    return 0 if shots == len(pages) * len(args.widths) else 1


if __name__ == "__main__":
    sys.exit(main())
