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
import socket
import subprocess
import threading
import time
import urllib.request
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
# The widths every page is checked (and shot) at: a laptop and a phone. Below PHONE_BELOW px a
# browser context emulates a phone (mobile viewport, touch, overlay scrollbars).
DESKTOP_WIDTH, PHONE_WIDTH = 1280, 390
WIDTHS = (DESKTOP_WIDTH, PHONE_WIDTH)
PHONE_BELOW = 600
PAGE_PROBE_JS = (HERE / "page_probe.js").read_text()
TWIN_PROBE_JS = (HERE / "twin_probe.js").read_text()
LAYOUT_PROBE_JS = (HERE / "layout_probe.js").read_text()

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
def jupyter_lab(root: Path, exe, env: dict, token: str, args=()):
    """``jupyter lab`` (the executable ``exe``) serving ``root`` on 127.0.0.1 with ``token``, no
    browser, no news or update checks; yields its URL once it answers, and stops it afterwards.
    Its log is ``root/lab.log``."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(root / "lab.log", "w")
    proc = subprocess.Popen(
        [str(exe), "--no-browser", "--allow-root", f"--port={port}", "--ServerApp.ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--LabApp.news_url=",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", *args],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"jupyter lab exited: {(root / 'lab.log').read_text()[-2000:]}")
                time.sleep(0.5)
        else:
            raise RuntimeError("jupyter lab did not start within 60 s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@contextlib.contextmanager
def launch_chromium(scrollbars: bool = False):
    """Headless Debian chromium. Playwright hides scrollbars in headless mode; ``scrollbars=True``
    shows them (as a desktop browser with classic scrollbars would), for screenshots."""
    browser = _playwright().chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
                                            ignore_default_args=["--hide-scrollbars"] if scrollbars else None)
    try:
        yield browser
    finally:
        browser.close()


_PLAYWRIGHT = []


def _playwright():
    """One Playwright driver per process: its sync API refuses a second one while the first runs,
    and the page tests, the JupyterLab tests and the install tests each open browsers."""
    if not _PLAYWRIGHT:
        import atexit

        from playwright.sync_api import sync_playwright

        _PLAYWRIGHT.append(sync_playwright().start())
        atexit.register(_PLAYWRIGHT[0].stop)
    return _PLAYWRIGHT[0]


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
    layout: dict = field(default_factory=dict)
    width: int = DESKTOP_WIDTH
    screenshot: bytes = b""

    def save_screenshot(self, folder: Path = ARTIFACTS) -> Path | None:
        if not self.screenshot:
            return None
        folder.mkdir(parents=True, exist_ok=True)
        suffix = "" if self.width == DESKTOP_WIDTH else f"-{self.width}"
        out = folder / (page_stem(self.name) + suffix + ".png")
        out.write_bytes(self.screenshot)
        return out


def _router(origin: str, blocked: list[str]):
    """A Playwright route handler: local requests pass, CDN files come from vendor/, others abort."""

    def route(r):
        url = r.request.url
        if url == origin or url.startswith(origin + "/"):
            return r.continue_()
        local, why = vendored_file(url)
        if local is not None and local.is_file():
            return r.fulfill(path=str(local))
        blocked.append(f"{url} ({why or 'vendored file missing: ' + str(local)})")
        return r.abort()

    return route


@contextlib.contextmanager
def open_page(browser, origin: str, name: str, width: int = DESKTOP_WIDTH, height: int = 900,
              report: PageReport | None = None):
    """``origin/name`` loaded in a fresh context ``width`` px wide, every request routed.

    Below PHONE_BELOW px the context emulates a phone (mobile viewport, touch, overlay
    scrollbars). Console errors and blocked requests go to ``report`` when one is given. The page
    has fired ``load`` (and, within 15 s, reached network idle), but MathJax and images may still
    be working: evaluate PAGE_PROBE_JS, which waits for both, before looking at the page.
    """
    report = report if report is not None else PageReport(name, origin, HTML)
    phone = width < PHONE_BELOW
    context = browser.new_context(viewport={"width": width, "height": height}, is_mobile=phone, has_touch=phone,
                                  service_workers="block")
    context.route("**/*", _router(origin, report.blocked_requests))
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    page.on("console", lambda m: m.type == "error" and report.console_errors.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: report.console_errors.append(f"uncaught: {e}"))
    page.on("response", lambda r: r.status >= 400 and report.console_errors.append(f"HTTP {r.status}: {r.url}"))
    try:
        page.goto(f"{origin}/{name}", wait_until="load")
        with contextlib.suppress(Exception):  # a page that keeps polling is still checked
            page.wait_for_load_state("networkidle", timeout=15_000)
        yield page
    finally:
        context.close()


def load_page(browser, origin: str, root: Path, name: str, width: int = DESKTOP_WIDTH) -> PageReport:
    """Open ``origin/name`` at ``width`` px, with every request routed, and probe it."""
    report = PageReport(name, origin, root, width=width)
    try:
        with open_page(browser, origin, name, width=width, report=report) as page:
            try:
                probe = page.evaluate(PAGE_PROBE_JS)
                report.math, report.images = probe["math"], probe["images"]
                report.hrefs, report.widgets = probe["hrefs"], probe["widgets"]
                report.layout = page.evaluate(LAYOUT_PROBE_JS)
                report.screenshot = page.screenshot(full_page=True)
                report.twins = page.evaluate(TWIN_PROBE_JS)
            except Exception:
                with contextlib.suppress(Exception):
                    report.screenshot = page.screenshot(full_page=True)
                raise
    except Exception as exc:  # the page could not even be probed: every check reports it
        report.probe_error = f"{type(exc).__name__}: {exc}"
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


# Figures: a shown figure is a real image, at least this big (natural px) ...
MIN_FIGURE_PX = (200, 150)
# ... drawn with at least this many image pixels per CSS pixel at the desktop width (high-DPI:
# benign_attention.display makes every PNG at 2x), less a small tolerance for rounding ...
MIN_PIXEL_RATIO, PIXEL_RATIO_TOLERANCE = 2.0, 0.03
# ... and never stretched or squashed by more than this (relative change of width/height).
MAX_ASPECT_CHANGE = 0.02
FIGURE_REPR = "<Figure size"


def _layout(report: PageReport) -> dict:
    return report.layout or {"figures": [], "captions": 0, "images": [], "figureReprText": [], "math": [],
                             "rawTex": [], "pageOverflow": 0}


def _img_name(img: dict) -> str:
    return f"{'static-twin frame' if img['twin'] else 'image'} {img['src']} in {img['where']}"


def check_figures(report: PageReport, declared: list[str | None] | None = None) -> list[str]:
    """Every figure is an image that loaded, none was printed as matplotlib's text repr.

    - no text ``<Figure size ...`` anywhere on the page (a figure printed instead of shown);
    - every <figure> with a caption holds an <img> that loaded, at least MIN_FIGURE_PX big;
    - the page has at least as many images (static-twin frames included) as figure captions;
    - every figure the chapter source declares (``declared``: names, None for an unnamed one; by
      default read from the page's book/*.md by ``declared_figures``) is a <figure> on the page.
    """
    if report.probe_error:
        return _probe_failed(report)
    lay, problems = _layout(report), []
    for where in lay["figureReprText"]:
        problems.append(f"a figure was printed as text instead of shown as an image: {where}")
    min_w, min_h = MIN_FIGURE_PX
    for fig in lay["figures"]:
        if fig["caption"] is None:
            continue
        name = f"<figure id={fig['id']!r}> ({fig['caption'][:50]!r})"
        if not fig["images"]:
            problems.append(f"{name} holds no <img>" + (" but the text '<Figure size ...'" if fig["reprText"] else ""))
        for img in fig["images"]:
            if not img["complete"] or img["naturalWidth"] == 0:
                problems.append(f"{name}: image {img['src']} did not load")
            elif img["naturalWidth"] < min_w or img["naturalHeight"] < min_h:
                problems.append(f"{name}: image {img['src']} is {img['naturalWidth']}x{img['naturalHeight']} px, "
                                f"smaller than {min_w}x{min_h}")
    if len(lay["images"]) < lay["captions"]:
        problems.append(f"{lay['captions']} figure caption(s) but only {len(lay['images'])} image(s) on the page")
    if declared is None:
        declared = declared_figures(report.name)
    ids = {f["id"] for f in lay["figures"] if f["id"]}
    for fig_name in declared:
        if fig_name and fig_name not in ids:
            problems.append(f"the chapter source declares figure {fig_name!r}; the page has no <figure id={fig_name!r}>")
    captioned = sum(1 for f in lay["figures"] if f["caption"] is not None)
    if len(declared) > captioned:
        problems.append(f"the chapter source declares {len(declared)} figure(s); the page shows {captioned}")
    return problems


def check_image_sharpness(report: PageReport) -> list[str]:
    """Every raster image in the article has >= 2 image pixels per CSS pixel as laid out."""
    if report.probe_error:
        return _probe_failed(report)
    problems = []
    for img in _layout(report)["images"]:
        if img["svg"] or not img["visible"] or not img["clientWidth"] or not img["naturalWidth"]:
            continue
        ratio = img["naturalWidth"] / img["clientWidth"]
        if ratio < MIN_PIXEL_RATIO * (1 - PIXEL_RATIO_TOLERANCE):
            problems.append(f"{_img_name(img)}: {img['naturalWidth']} px wide, shown {img['clientWidth']} CSS px wide "
                            f"at {report.width} px: {ratio:.2f} image px per CSS px, needs {MIN_PIXEL_RATIO:g}")
    return problems


def check_image_aspect(report: PageReport) -> list[str]:
    """No image in the article is drawn stretched or squashed."""
    if report.probe_error:
        return _probe_failed(report)
    problems = []
    for img in _layout(report)["images"]:
        if not (img["visible"] and img["clientWidth"] and img["clientHeight"] and img["naturalWidth"] and img["naturalHeight"]):
            continue
        natural = img["naturalWidth"] / img["naturalHeight"]
        shown = img["clientWidth"] / img["clientHeight"]
        # one CSS px of rounding in either direction is not a distortion
        slack = max(1 / img["clientWidth"], 1 / img["clientHeight"])
        if abs(shown / natural - 1) > MAX_ASPECT_CHANGE + slack:
            problems.append(f"{_img_name(img)}: {img['naturalWidth']}x{img['naturalHeight']} px drawn "
                            f"{img['clientWidth']}x{img['clientHeight']} at {report.width} px "
                            f"(width/height {shown:.2f} instead of {natural:.2f}: "
                            f"{'squashed' if shown < natural else 'stretched'} sideways)")
    return problems


# Figure text: benign_attention.display draws every figure's text at >= 11 CSS px at its design
# width (the PNG's width / PIXEL_RATIO, e.g. 672 px wide, or 358 px for its phone layout); shown
# narrower, the text shrinks with the image. It must stay at least MIN_FIGURE_TEXT_PX.
FIGURE_TEXT_PX, MIN_FIGURE_TEXT_PX, FIGURE_PIXEL_RATIO = 11.0, 9.0, 2


def check_figure_text_scale(report: PageReport) -> list[str]:
    """Every visible figure a chapter cell drew (a raster image in a cell output, static-twin frames
    included; widget images excluded) is shown at least MIN_FIGURE_TEXT_PX / FIGURE_TEXT_PX of its
    design width (natural width / FIGURE_PIXEL_RATIO), so that its 11 px text is never drawn smaller
    than 9 px: at 390 px a wide figure or twin needs its phone layout (a <picture> source), at
    1280 px a figure must not be wider than the column."""
    if report.probe_error:
        return _probe_failed(report)
    problems = []
    for img in _layout(report)["images"]:
        if (img["svg"] or not img.get("output") or not img["visible"] or not img["clientWidth"]
                or not img["naturalWidth"]):
            continue
        design = img["naturalWidth"] / FIGURE_PIXEL_RATIO
        text = FIGURE_TEXT_PX * min(1.0, img["clientWidth"] / design)
        if text < MIN_FIGURE_TEXT_PX - 0.05:
            problems.append(f"{_img_name(img)}: drawn {design:.0f} CSS px wide, shown {img['clientWidth']} px wide at "
                            f"{report.width} px, so its {FIGURE_TEXT_PX:g} px text shows at {text:.1f} px "
                            f"(needs {MIN_FIGURE_TEXT_PX:g}; "
                            + ("its <picture> has no phone source for this width)" if img.get("picture")
                               else "no phone layout: show() publishes one for a figure with fig.phone_variant)"))
    return problems


def check_math_layout(report: PageReport) -> list[str]:
    """Math is never cut off, never spills out of its box, never scrolls out of sight without a
    visible scrollbar, and no equation number covers its equation; the page never scrolls sideways."""
    if report.probe_error:
        return _probe_failed(report)
    lay = _layout(report)
    problems = [f"at {report.width} px: {m}" for m in lay["math"]]
    if lay["pageOverflow"] > 1:
        problems.append(f"at {report.width} px the page scrolls sideways by {lay['pageOverflow']} px")
    return problems


def check_line_breaks_and_cues(report: PageReport) -> list[str]:
    """No punctuation mark right after inline math starts a line of its own; every box that scrolls
    sideways fades the edge with more content (and no box that fits does), by a mask, never a
    painted cover (covers drew white panels inside tinted boxes)."""
    if report.probe_error:
        return _probe_failed(report)
    lay = _layout(report)
    return [f"at {report.width} px: {m}" for m in lay.get("punctuation", []) + lay.get("cues", [])]


def check_raw_tex(report: PageReport) -> list[str]:
    """No TeX (``$``, ``\\le``, ``\\mathbb``, ``^{``...) in text the reader sees outside rendered math:
    the sidebar, titles, headings, link text, prose and printed cell output."""
    if report.probe_error:
        return _probe_failed(report)
    return list(_layout(report)["rawTex"])


# Figures declared in a chapter's MyST source: a code cell's ``mystnb: figure:`` metadata, or a
# figure / glue:figure directive.
_CELL_META = re.compile(r"^```\{code-cell\}[^\n]*\n---\n(.*?)\n---\n", re.M | re.S)
_FIG_DIRECTIVE = re.compile(r"^(?:`{3,}|:{3,})\{(?:figure|glue:figure)\}[^\n]*\n((?::[^\n]*\n)*)", re.M)


def declared_figures(name: str, root: Path = ROOT) -> list[str | None]:
    """Names (None where unnamed) of the figures that page ``name``'s MyST source declares."""
    source = root / Path(name).with_suffix(".md")
    if not source.is_file():
        return []
    import yaml

    text, names = source.read_text(encoding="utf-8"), []
    for meta in _CELL_META.findall(text):
        with contextlib.suppress(yaml.YAMLError):
            figure = ((yaml.safe_load(meta) or {}).get("mystnb") or {}).get("figure")
            if figure is not None:
                names.append(figure.get("name") if isinstance(figure, dict) else None)
    for options in _FIG_DIRECTIVE.findall(text):
        m = re.search(r"^:name:\s*(\S+)", options, re.M)
        names.append(m.group(1) if m else None)
    return names


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


# --------------------------------------------------------------------------------------------
# The pages: one list for the browser tests and `make shots`.

# Sphinx's generated index and search pages carry no book content.
SKIP_PAGES = {"genindex.html", "search.html"}


def book_pages(html: Path = HTML) -> list[str]:
    """Every content page of the built book, relative to ``html`` (no redirect stubs or indices)."""
    pages = []
    for p in sorted(html.rglob("*.html")):
        rel = p.relative_to(html).as_posix()
        if rel.split("/")[0] in {"_static", "_sources", "_images"} or rel in SKIP_PAGES or is_redirect_stub(p):
            continue
        pages.append(rel)
    return pages


def page_stem(name: str) -> str:
    """A file-name stem for a page: ``book/02_setting.html`` -> ``02_setting``."""
    return name.removesuffix(".html").removeprefix("book/").replace("/", "__")
