"""Browser fixtures: the built book served on 127.0.0.1, Debian's chromium driven by Playwright.

Each page is loaded once per session and width (``page_report``); the tests in test_pages.py assert on the
report. The harness itself (routing, probing, checks) lives in harness.py.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from .harness import CHROMIUM, DESKTOP_WIDTH, HTML, VENDOR, PageReport, launch_chromium, load_page, serve


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: apt-get install -y chromium")
    if not VENDOR.exists():
        pytest.fail(f"{VENDOR} missing: run `make vendor`")
    with launch_chromium() as b:
        yield b


@pytest.fixture(scope="session")
def book_server():
    if not (HTML / "index.html").exists():
        pytest.fail(f"{HTML} has no built book: run `make book` (or `make test`) first")
    with serve(HTML) as origin:
        yield origin


@pytest.fixture(scope="session")
def page_report(browser, book_server):
    """``page_report(name, width=1280)``: the PageReport of one built page opened ``width`` px
    wide (loaded once per width, then cached)."""
    cache: dict[tuple[str, int], PageReport] = {}

    def get(name: str, width: int = DESKTOP_WIDTH) -> PageReport:
        if (name, width) not in cache:
            cache[name, width] = load_page(browser, book_server, HTML, name, width=width)
        return cache[name, width]

    return get
