"""Browser fixtures: serve _build/html on 127.0.0.1 and drive Debian's chromium with Playwright.

Nothing leaves the machine: every request is routed. Requests to the local server pass; the CDN
files the book references (MathJax 3, require.js, the Jupyter widgets HTML manager) are answered
from local npm copies in tests/browser/vendor/node_modules (``make vendor``); anything else is
aborted and reported as a failure of the page that asked for it.

Each page is loaded once (``page_report``); the tests in test_pages.py then assert on the report.
"""
from __future__ import annotations

import functools
import http.server
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
VENDOR = Path(__file__).resolve().parent / "vendor" / "node_modules"
ARTIFACTS = ROOT / "artifacts" / "browser"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
PAGE_TIMEOUT_MS = 60_000

# CDN hosts whose npm-style paths map onto the vendored node_modules:
#   https://cdn.jsdelivr.net/npm/<pkg>@<version>/<file>, https://unpkg.com/<pkg>@<version>/<file>
NPM_CDNS = {"cdn.jsdelivr.net": "/npm/", "unpkg.com": "/"}
# Other CDN files, by exact host and path pattern -> vendored file.
OTHER_CDN_FILES = {
    ("cdnjs.cloudflare.com", re.compile(r"^/ajax/libs/require\.js/2\.[0-9.]+/require(\.min)?\.js$")): "requirejs/require.js",
}


def vendored_file(url: str) -> tuple[Path | None, str]:
    """The local file standing in for a CDN URL, or (None, why not)."""
    parts = urlsplit(url)
    host, path = parts.hostname or "", parts.path
    for (cdn_host, pattern), rel in OTHER_CDN_FILES.items():
        if host == cdn_host and pattern.match(path):
            return VENDOR / rel, ""
    prefix = NPM_CDNS.get(host)
    if prefix is None or not path.startswith(prefix):
        return None, "not a known CDN"
    spec = path[len(prefix):]
    m = re.match(r"^((?:@[^/@]+/)?[^/@]+)(?:@([^/]+))?/(.+)$", spec)
    if not m:
        return None, f"cannot parse npm path {spec!r}"
    package, version, file = m.groups()
    pkg_dir = VENDOR / package
    manifest = pkg_dir / "package.json"
    if not manifest.exists():
        return None, f"npm package {package} is not vendored (add it to VENDOR_PKGS in the Makefile)"
    have = json.loads(manifest.read_text())["version"]
    want_major = re.match(r"^[\^~]?(\d+)", version or "")
    if want_major and want_major.group(1) != have.split(".")[0]:
        return None, f"{package}@{version} requested, {have} vendored"
    return pkg_dir / file, ""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture(scope="session")
def html_root() -> Path:
    if not (HTML / "index.html").exists():
        pytest.fail(f"{HTML} has no built book: run `make book` (or `make test`) first")
    return HTML


@pytest.fixture(scope="session")
def server(html_root):
    handler = functools.partial(_QuietHandler, directory=str(html_root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: apt-get install -y chromium")
    if not VENDOR.exists():
        pytest.fail(f"{VENDOR} missing: run `make vendor`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@dataclass
class PageReport:
    """What loading one page showed."""

    name: str
    console_errors: list[str] = field(default_factory=list)
    blocked_requests: list[str] = field(default_factory=list)
    math: dict = field(default_factory=dict)
    images: list[dict] = field(default_factory=list)
    hrefs: list[str] = field(default_factory=list)
    twins: list[dict] = field(default_factory=list)
    widgets: dict = field(default_factory=dict)
    screenshot: bytes = b""

    def save_screenshot(self) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        out = ARTIFACTS / (self.name.replace("/", "__").removesuffix(".html") + ".png")
        out.write_bytes(self.screenshot)
        return out


def _route(report: PageReport, origin: str):
    def handle(route):
        url = route.request.url
        if url.startswith(origin + "/") or url == origin:
            return route.continue_()
        local, why = vendored_file(url)
        if local is not None and local.is_file():
            return route.fulfill(path=str(local))
        report.blocked_requests.append(f"{url} ({why or 'vendored file missing: ' + str(local)})")
        return route.abort()

    return handle


MATH_JS = Path(__file__).with_name("page_probe.js").read_text()


@pytest.fixture(scope="session")
def page_report(browser, server):
    """Load a page once and collect everything the checks need (cached per page)."""
    cache: dict[str, PageReport] = {}

    def load(name: str) -> PageReport:
        if name in cache:
            return cache[name]
        report = PageReport(name)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
        context.route("**/*", _route(report, server))
        page = context.new_page()
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        page.on("console", lambda m: m.type == "error" and report.console_errors.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: report.console_errors.append(f"uncaught: {e}"))
        page.on(
            "response",
            lambda r: r.status >= 400 and report.console_errors.append(f"HTTP {r.status}: {r.url}"),
        )
        try:
            page.goto(f"{server}/{name}", wait_until="load")
            try:
                page.wait_for_load_state("networkidle", timeout=15_000)
            except Exception:  # a page that keeps polling is still checked
                pass
            probe = page.evaluate(MATH_JS)
            report.math = probe["math"]
            report.images = probe["images"]
            report.hrefs = probe["hrefs"]
            report.widgets = probe["widgets"]
            report.screenshot = page.screenshot(full_page=True)
            report.twins = page.evaluate(TWIN_JS)
        except Exception as exc:  # the page could not even be probed: every check fails with this
            report.console_errors.append(f"probe failed: {exc}")
            report.math = {"error": str(exc)}
            try:
                report.screenshot = page.screenshot(full_page=True)
            except Exception:
                pass
        finally:
            context.close()
        cache[name] = report
        return report

    return load


TWIN_JS = Path(__file__).with_name("twin_probe.js").read_text()
