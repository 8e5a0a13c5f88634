"""The browser checks catch what they claim to: run them on a good and a deliberately bad page."""
from __future__ import annotations

import pytest

from . import harness

pytestmark = pytest.mark.browser


def _svg(colour: str) -> str:
    return (
        "data:image/svg+xml,"
        f"%3Csvg xmlns='http://www.w3.org/2000/svg' width='20' height='10'%3E"
        f"%3Crect width='20' height='10' fill='{colour}'/%3E%3C/svg%3E"
    )


TWIN = """
<div class="ba-twin" id="{id}">
  <input type="range" class="ba-twin-slider" min="0" max="2" step="1" value="0">
  <img class="ba-twin-image" src="{src0}"><span class="ba-twin-label">eta = 0.0</span>
  <script>(function() {{
    const root = document.getElementById("{id}");
    const frames = {frames}; const labels = {labels};
    root.querySelector(".ba-twin-slider").addEventListener("input", (e) => {{
      root.querySelector(".ba-twin-image").src = frames[+e.target.value];
      root.querySelector(".ba-twin-label").textContent = labels[+e.target.value];
    }});
  }})();</script>
</div>"""

GOOD = f"""<!DOCTYPE html><html><head><meta charset="utf-8">
<script>window.MathJax = {{}};</script>
<script defer src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script></head>
<body><h1 id="top">Good</h1><p class="math">\\(x^2 + \\nu^\\top p\\)</p>
<a href="#top">up</a> <a href="bad.html">bad</a> <a href="https://example.org/">outside</a>
<img src="{_svg('red')}">
{TWIN.format(id="t0", src0=_svg("red"), frames=[_svg("red"), _svg("green"), _svg("blue")],
             labels=["eta = 0.0", "eta = 0.1", "eta = 0.2"])}
</body></html>"""

BAD = f"""<!DOCTYPE html><html><head><meta charset="utf-8">
<script src="https://example.com/tracker.js"></script></head>
<body><p>Raw math $x^2$ left unrendered.</p>
<a href="nowhere.html">gone</a> <a href="good.html#nope">no anchor</a>
<img src="missing.png">
<div class="ba-twin"><input type="range" class="ba-twin-slider"><span class="ba-twin-label">x</span></div>
{TWIN.format(id="t1", src0=_svg("red"), frames=[_svg("red"), _svg("red"), _svg("red")],
             labels=["a", "b", "c"])}
<script>console.error("boom");</script>
</body></html>"""


@pytest.fixture(scope="module")
def reports(browser, tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    (site / "good.html").write_text(GOOD)
    (site / "bad.html").write_text(BAD)
    with harness.serve(site) as origin:
        yield {name: harness.load_page(browser, origin, site, f"{name}.html") for name in ("good", "bad")}


def test_good_page_passes_every_check(reports):
    good = reports["good"]
    assert good.math["mjxContainers"] >= 1, good.math
    assert len(good.twins) == 1 and good.twins[0]["positions"][-1]["label"] != "eta = 0.0"
    for check in (harness.check_console, harness.check_requests, harness.check_math, harness.check_images,
                  harness.check_links, harness.check_widgets, harness.check_twins):
        assert check(good) == [], (check.__name__, check(good))


def test_bad_page_fails_each_check_for_the_right_reason(reports):
    bad = reports["bad"]
    assert any("boom" in e for e in harness.check_console(bad))
    assert any("HTTP 404" in e and "missing.png" in e for e in harness.check_console(bad))
    assert any("example.com/tracker.js" in r for r in harness.check_requests(bad))
    assert any("raw TeX" in p for p in harness.check_math(bad))
    assert any("missing.png" in p for p in harness.check_images(bad))
    links = harness.check_links(bad)
    assert any("nowhere.html" in p for p in links) and any("'nope'" in p for p in links), links
    twins = harness.check_twins(bad)
    assert any("twin #0" in p and "missing img.ba-twin-image" in p for p in twins), twins
    assert any("twin #1" in p and "image src did not change" in p for p in twins), twins
    assert bad.save_screenshot(harness.ROOT / "artifacts" / "browser-selftest").exists()
