"""The browser harness: a local static server, request routing, page probing and the checks.

Every request a page makes is routed. Requests to the local server pass; the CDN files the book
references (MathJax 3, require.js, the Jupyter widgets HTML manager) are answered from local npm
copies in tests/browser/vendor/node_modules (``make vendor``); anything else is aborted and
reported as a failure of the page that asked for it. Each ``check_*`` returns a list of problems
(empty when the page passes), so test_pages.py and the self-test share them.
"""
from __future__ import annotations

import contextlib
import functools
import http.server
import json
import re
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
HTML = ROOT / "_build" / "html"
VENDOR = HERE / "vendor" / "node_modules"
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
PAGE_PROBE_JS = (HERE / "page_probe.js").read_text()
TWIN_PROBE_JS = (HERE / "twin_probe.js").read_text()

# Console errors that are not the book's fault. Keep this list short, each entry explained.
# (Empty: the two errors the stock toolchain printed on every page are fixed at the source in
# _config.yml / book/_ext/bookfixes.py instead of being allowed here.)
CONSOLE_ALLOW: list[str] = []

# CDN hosts whose npm-style paths map onto the vendored node_modules:
#   https://cdn.jsdelivr.net/npm/<pkg>@<version>/<file>, https://unpkg.com/<pkg>@<version>/<file>
NPM_CDNS = {"cdn.jsdelivr.net": "/npm/", "unpkg.com": "/"}
# Other CDN files, by host and path pattern -> vendored file.
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
        return None, "not local and not a known CDN"
    spec = path[len(prefix):]
    m = re.match(r"^((?:@[^/@]+/)?[^/@]+)(?:@([^/]+))?/(.+)$", spec)
    if not m:
        return None, f"cannot parse npm path {spec!r}"
    package, version, file = m.groups()
    manifest = VENDOR / package / "package.json"
    if not manifest.exists():
        return None, f"npm package {package} is not vendored (add it to VENDOR_PKGS in the Makefile)"
    have = json.loads(manifest.read_text())["version"]
    want_major = re.match(r"^[\^~]?(\d+)", version or "")
    if want_major and want_major.group(1) != have.split(".")[0]:
        return None, f"{package}@{version} requested but {have} is vendored"
    return VENDOR / package / file, ""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@contextlib.contextmanager
def serve(directory: Path):
    """Serve ``directory`` on 127.0.0.1 (a free port) from a thread; yields the origin URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@contextlib.contextmanager
def launch_chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class PageReport:
    """What loading one page showed."""

    name: str
    origin: str
    root: Path
    console_errors: list[str] = field(default_factory=list)
    blocked_requests: list[str] = field(default_factory=list)
    probe_error: str | None = None
    math: dict = field(default_factory=dict)
    images: list[dict] = field(default_factory=list)
    hrefs: list[str] = field(default_factory=list)
    widgets: dict = field(default_factory=dict)
    twins: list[dict] = field(default_factory=list)
    screenshot: bytes = b""

    def save_screenshot(self, folder: Path = ARTIFACTS) -> Path | None:
        if not self.screenshot:
            return None
        folder.mkdir(parents=True, exist_ok=True)
        out = folder / (self.name.replace("/", "__").removesuffix(".html") + ".png")
        out.write_bytes(self.screenshot)
        return out


def load_page(browser, origin: str, root: Path, name: str) -> PageReport:
    """Open ``origin/name`` in a fresh context, with every request routed, and probe it."""
    report = PageReport(name, origin, root)

    def route(r):
        url = r.request.url
        if url == origin or url.startswith(origin + "/"):
            return r.continue_()
        local, why = vendored_file(url)
        if local is not None and local.is_file():
            return r.fulfill(path=str(local))
        report.blocked_requests.append(f"{url} ({why or 'vendored file missing: ' + str(local)})")
        return r.abort()

    context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
    context.route("**/*", route)
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    page.on("console", lambda m: m.type == "error" and report.console_errors.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: report.console_errors.append(f"uncaught: {e}"))
    page.on("response", lambda r: r.status >= 400 and report.console_errors.append(f"HTTP {r.status}: {r.url}"))
    try:
        page.goto(f"{origin}/{name}", wait_until="load")
        with contextlib.suppress(Exception):  # a page that keeps polling is still checked
            page.wait_for_load_state("networkidle", timeout=15_000)
        probe = page.evaluate(PAGE_PROBE_JS)
        report.math, report.images = probe["math"], probe["images"]
        report.hrefs, report.widgets = probe["hrefs"], probe["widgets"]
        report.screenshot = page.screenshot(full_page=True)
        report.twins = page.evaluate(TWIN_PROBE_JS)
    except Exception as exc:  # the page could not even be probed: every check reports it
        report.probe_error = f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(Exception):
            report.screenshot = page.screenshot(full_page=True)
    finally:
        context.close()
    return report


# --------------------------------------------------------------------------------------------
# Checks: each returns a list of problems.


def _probe_failed(report: PageReport) -> list[str]:
    return [f"page could not be probed: {report.probe_error}"] if report.probe_error else []


def check_console(report: PageReport) -> list[str]:
    return [e for e in report.console_errors if not any(re.search(a, e) for a in CONSOLE_ALLOW)]


def check_requests(report: PageReport) -> list[str]:
    return [f"request aborted: {r}" for r in report.blocked_requests]


def check_math(report: PageReport) -> list[str]:
    if report.probe_error:
        return _probe_failed(report)
    math, problems = report.math, []
    if math["mathElements"] and not math["mathjaxScript"]:
        problems.append(f"{math['mathElements']} math element(s) but no MathJax script")
    if math["mathjaxScript"]:
        if not math["mathjaxStarted"]:
            problems.append(f"MathJax did not start: {math['startupError']}")
        elif math["mathElements"] and not math["mjxContainers"]:
            problems.append("MathJax ran but produced no mjx-container")
    if math["mjxErrors"]:
        problems.append(f"MathJax errors: {math['mjxErrors']}")
    if math["rawTex"]:
        problems.append(f"raw TeX left in the visible text: {math['rawTex']}")
    return problems


def check_images(report: PageReport) -> list[str]:
    if report.probe_error:
        return _probe_failed(report)
    return [f"image did not load: {img['src']!r}" for img in report.images if not img["complete"] or img["naturalWidth"] == 0]


class _Ids(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if v and (k == "id" or (k == "name" and tag == "a")):
                self.ids.add(v)


@lru_cache(maxsize=None)
def ids_of(path: Path) -> frozenset[str]:
    parser = _Ids()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return frozenset(parser.ids)


def check_links(report: PageReport) -> list[str]:
    """Every local href points at an existing file, and its #anchor at an existing id there."""
    if report.probe_error:
        return _probe_failed(report)
    broken = []
    for href in report.hrefs:
        parts = urlsplit(href)
        if f"{parts.scheme}://{parts.netloc}" != report.origin:
            continue  # external links are not followed (no network here)
        target = report.root / unquote(parts.path).lstrip("/")
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            broken.append(f"{href} -> missing file {unquote(parts.path)}")
            continue
        anchor = unquote(parts.fragment)
        if anchor and target.suffix == ".html" and anchor not in ids_of(target):
            broken.append(f"{href} -> no id {anchor!r} in {target.relative_to(report.root)}")
    return broken


def check_widgets(report: PageReport) -> list[str]:
    views, rendered = report.widgets.get("views", 0), report.widgets.get("rendered", 0)
    if views and rendered < views:
        return [f"{views} Jupyter widget view(s) in the HTML but {rendered} rendered"]
    return []


def check_twins(report: PageReport) -> list[str]:
    if report.probe_error:
        return _probe_failed(report)
    return [
        f"twin #{t['index']}{' (id ' + t['id'] + ')' if t['id'] else ''}: {'; '.join(t['problems'])}"
        for t in report.twins
        if t["problems"]
    ]


def is_redirect_stub(path: Path) -> bool:
    head = path.read_text(encoding="utf-8", errors="replace")[:600].lower()
    return 'http-equiv="refresh"' in head and "<body" not in head
