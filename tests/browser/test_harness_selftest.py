"""The browser checks catch what they claim to: run them on a good and a deliberately bad page."""
from __future__ import annotations

import base64
import struct
import zlib

import pytest

from . import harness

pytestmark = pytest.mark.browser


def _svg(colour: str) -> str:
    return (
        "data:image/svg+xml,"
        f"%3Csvg xmlns='http://www.w3.org/2000/svg' width='20' height='10'%3E"
        f"%3Crect width='20' height='10' fill='{colour}'/%3E%3C/svg%3E"
    )


def _png(width: int, height: int) -> str:
    """A data: URL of a plain grey PNG of ``width`` x ``height`` pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return "data:image/png;base64," + base64.b64encode(png).decode()


# The theme's math layout (pydata-sphinx-theme 0.17), which clips long math; the good page adds
# the book's fix, book/_static/bookfixes.css, on top.
THEME_MATH_CSS = """<style>
div.math, span.math { align-items: center; display: flex; max-width: 100%; overflow: hidden; }
span.math { align-items: baseline; display: inline-flex; }
div.math { flex-direction: row-reverse; gap: .5em; }
div.math mjx-container { flex-grow: 1; overflow: auto; }
.box { width: 300px; overflow: hidden; border: 1px solid #888; padding: 0 8px; }
</style>"""
LONG_MATH = r"""<div class="box" id="long-math">
<div class="math notranslate nohighlight" id="equation-long"><span class="eqno">(1)</span>\[
x_1 = \mu_{Y^*} + \epsilon_1, \qquad x_2 = \rho\,\mu_{Y^*} + \epsilon_2, \qquad
x_3 = \rho\,\mu_{-Y^*} + \epsilon_3, \qquad x_t = \epsilon_t \quad (4 \le t \le T).\]</div>
<p>Proof. <span class="math notranslate nohighlight">\(\frac{1}{s(1-s)} = \frac{(e^x + T)^2}{T e^x}
= \frac{e^x}{T} + 2 + \frac{T}{e^x} = 2 + e^{x - \log T} + e^{-(x - \log T)}\)</span> so.</p>
</div>"""

# A formula that fills its line: a ")" after it wraps onto a line of its own unless bookfixes.js
# binds it to the formula.
PUNCT = r"""<p id="punct" style="width: 64px">aa <span class="math notranslate nohighlight"
style="display: inline-block; width: 58px">\(x\)</span>).</p>"""

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

GOOD = f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>Good</title>
<script>window.MathJax = {{}};</script>
<script defer src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>
{THEME_MATH_CSS}<link rel="stylesheet" href="bookfixes.css"><script src="bookfixes.js"></script></head>
<body><h1 id="top">Good</h1><p class="math">\\(x^2 + \\nu^\\top p\\)</p>
<figure id="fig-good"><img src="{_png(400, 300)}" style="width: 200px; height: 150px;">
<figcaption><span class="caption-number">Fig. 1 </span>A figure at 2x.</figcaption></figure>
{LONG_MATH}
{PUNCT}
<div class="cell_output"><pre>dense engine, X(Wp): 1.0 ms</pre></div>
<a href="#top">up</a> <a href="bad.html">bad</a> <a href="https://example.org/">outside</a>
<img src="{_svg('red')}">
{TWIN.format(id="t0", src0=_svg("red"), frames=[_svg("red"), _svg("green"), _svg("blue")],
             labels=["eta = 0.0", "eta = 0.1", "eta = 0.2"])}
</body></html>"""

BAD = f"""<!DOCTYPE html><html><head><meta charset="utf-8">
<title>Exact dynamics in \\(m \\le nT\\) dimensions</title>
<script src="https://example.com/tracker.js"></script>
<script>window.MathJax = {{}};</script>
<script defer src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>
{THEME_MATH_CSS}</head>
<body><p>Raw math $x^2$ left unrendered.</p>
<figure id="fig-as-text"><div class="cell_output"><div class="output text_plain"><pre>&lt;Figure size 920x620 with 4 Axes&gt;</pre></div></div>
<figcaption><span class="caption-number">Fig. 1 </span>Printed, not shown.</figcaption></figure>
<figure id="fig-1x"><img src="{_png(400, 300)}" style="width: 400px; height: 100px;">
<figcaption><span class="caption-number">Fig. 2 </span>1x and squashed.</figcaption></figure>
<figure id="fig-tiny"><img src="{_png(120, 90)}" style="width: 60px; height: 45px;">
<figcaption><span class="caption-number">Fig. 3 </span>Too small.</figcaption></figure>
<figure id="fig-caption-only"><figcaption><span class="caption-number">Fig. 4 </span>No image at all.</figcaption></figure>
<figure><figcaption><span class="caption-number">Fig. 5 </span>Nor here.</figcaption></figure>
<figure><figcaption><span class="caption-number">Fig. 6 </span>Nor here.</figcaption></figure>
{LONG_MATH}
{PUNCT}
<p id="short-wide">a <span class="math notranslate nohighlight ba-wide-inline">\\(x + y\\)</span> b</p>
<p>See <a href="#fig-1x">Under the hood: exact dynamics in m \\le nT dimensions</a>.</p>
<div class="cell_output"><pre>dense engine, $X(Wp)$: 1.0 ms</pre></div>
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
    for fix in ("bookfixes.css", "bookfixes.js"):
        (site / fix).write_text((harness.ROOT / "book" / "_static" / fix).read_text())
    (site / "bad.html").write_text(BAD)
    with harness.serve(site) as origin:
        yield {name: harness.load_page(browser, origin, site, f"{name}.html") for name in ("good", "bad")}


def test_good_page_passes_every_check(reports):
    good = reports["good"]
    assert good.math["mjxContainers"] >= 1, good.math
    assert len(good.twins) == 1 and good.twins[0]["positions"][-1]["label"] != "eta = 0.0"
    assert [f["id"] for f in good.layout["figures"]] == ["fig-good"] and good.layout["mathCount"] >= 3
    for check in (harness.check_console, harness.check_requests, harness.check_math, harness.check_images,
                  harness.check_links, harness.check_widgets, harness.check_twins, harness.check_image_sharpness,
                  harness.check_image_aspect, harness.check_math_layout, harness.check_raw_tex,
                  harness.check_line_breaks_and_cues):
        assert check(good) == [], (check.__name__, check(good))
    assert harness.check_figures(good, declared=["fig-good"]) == []


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
    figures = harness.check_figures(bad, declared=["fig-as-text", "fig-1x", "fig-tiny", "fig-caption-only", "fig-gone"])
    assert any("printed as text" in p and "<Figure size 920x620" in p for p in figures), figures
    assert any("'fig-as-text'" in p and "holds no <img>" in p for p in figures), figures
    assert any("'fig-caption-only'" in p and "holds no <img>" in p for p in figures), figures
    assert any("'fig-tiny'" in p and "120x90 px, smaller than 200x150" in p for p in figures), figures
    assert any("6 figure caption(s) but only 4 image(s)" in p for p in figures), figures
    assert any("declares figure 'fig-gone'" in p for p in figures), figures
    assert not any("'fig-1x'" in p for p in figures), figures
    sharp = harness.check_image_sharpness(bad)
    assert any("fig-1x" in p and "1.00 image px per CSS px" in p for p in sharp), sharp
    aspect = harness.check_image_aspect(bad)
    assert any("fig-1x" in p and "width/height 4.00 instead of 1.33" in p for p in aspect) and len(aspect) == 1, aspect
    math = harness.check_math_layout(bad)
    assert any("display math in #equation-long" in p and "not always visible" in p for p in math), math
    assert any("inline math in #long-math" in p and "cut off by (overflow-x: hidden) span.math" in p for p in math), math
    breaks = harness.check_line_breaks_and_cues(bad)
    assert any('")" after the inline math in #punct' in p for p in breaks), breaks
    assert any("#equation-long" in p and "without a cue" in p for p in breaks), breaks
    assert any("#short-wide" in p and "was made a scroll box" in p for p in breaks), breaks
    tex = harness.check_raw_tex(bad)
    assert any(p.startswith("document title:") and "\\le" in p for p in tex), tex
    assert any(p.startswith("link:") and "m \\le nT" in p for p in tex), tex
    assert any(p.startswith("cell output:") and "$X(Wp)$" in p for p in tex), tex
    assert bad.save_screenshot(harness.ROOT / "artifacts" / "browser-selftest").exists()


# A figure published by display.show with its phone layout (a <picture>), and one without: the
# wide one alone is drawn 672 px wide, so a 390 px phone shrinks its 11 px text to about 6 px.
SCALE = f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>Scale</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body {{ margin: 0 16px; }} article {{ max-width: 672px; }} figure {{ margin: 0; }} img {{ max-width: 100%; height: auto; }}</style>
</head><body><article class="bd-article">
<figure id="fig-both"><div class="cell_output"><picture class="ba-figure">
<source media="(max-width: 600px)" srcset="{_png(684, 1000)}" width="342" height="500">
<img src="{_png(1344, 600)}" alt="two panels" width="672" height="300" style="max-width:100%;height:auto">
</picture></div><figcaption>With a phone layout.</figcaption></figure>
<figure id="fig-wide-only"><div class="cell_output"><img src="{_png(1344, 600)}" alt="wide" style="width: 672px">
</div><figcaption>Without.</figcaption></figure>
</article></body></html>"""


def test_figure_text_scale_check(browser, tmp_path):
    (tmp_path / "scale.html").write_text(SCALE)
    with harness.serve(tmp_path) as origin:
        wide, phone = (harness.load_page(browser, origin, tmp_path, "scale.html", width=w) for w in harness.WIDTHS)
    assert harness.check_figure_text_scale(wide) == [], harness.check_figure_text_scale(wide)
    both = [i for i in phone.layout["images"] if i["picture"]]
    assert len(both) == 1 and both[0]["naturalWidth"] == 684 and both[0]["clientWidth"] == 342, both
    problems = harness.check_figure_text_scale(phone)
    assert len(problems) == 1 and "no phone layout" in problems[0] and "text shows at 5.9 px" in problems[0], problems
