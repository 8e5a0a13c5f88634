"""Browser fixtures: the built book served on 127.0.0.1, Debian's chromium driven by Playwright.

Each page is loaded once per session (``page_report``); the tests in test_pages.py assert on the
report. The harness itself (routing, probing, checks) lives in harness.py.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from .harness import CHROMIUM, HTML, VENDOR, PageReport, launch_chromium, load_page, serve


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
    """``page_report(name)``: the PageReport of one built page (loaded once, then cached)."""
    cache: dict[str, PageReport] = {}

    def get(name: str) -> PageReport:
        if name not in cache:
            cache[name] = load_page(browser, book_server, HTML, name)
        return cache[name]

    return get
