"""The playground's explorers as a reader meets them: in a real JupyterLab, after *Run All*.

A JupyterLab server runs on 127.0.0.1 over a temporary copy of ``book/09_playground.ipynb`` (so
autosave never touches the checkout); chromium opens it, runs every cell, then for each live
explorer moves every slider one notch from the keyboard and waits for the figure and the status
line to change. It also checks that Run All leaves the explorers in their documented start state,
that no slider label is cut, and that the static twins take arrow keys inside JupyterLab.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from .harness import CHROMIUM, jupyter_lab, launch_chromium

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = "09_playground.ipynb"
TOKEN = "benign-attention-test"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if shutil.which("jupyter-lab", path=str(Path(sys.executable).parent)) is None:
        pytest.fail("jupyterlab is not installed in this environment (it is in the `book` extra)")
    root = tmp_path_factory.mktemp("lab")
    shutil.copy(ROOT / "book" / NOTEBOOK, root / NOTEBOOK)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(root / ".jupyter"), JUPYTER_RUNTIME_DIR=str(root / ".rt"))
    with jupyter_lab(root, Path(sys.executable).parent / "jupyter-lab", env, TOKEN) as url:
        yield url


@pytest.fixture(scope="module")
def notebook_page(lab):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: apt-get install -y chromium")
    with launch_chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(lab)
                   else route.abort())
        page.goto(f"{lab}/lab/tree/{NOTEBOOK}?token={TOKEN}")
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
        page.wait_for_function("() => document.body.innerText.includes('Idle')", timeout=90_000)
        page.click("text=Run >> nth=0")  # the Run menu, then its "Run All Cells" item
        page.click('li[data-command="runmenu:run-all"]')
        # Every code cell has run once its prompt shows a number (not "[*]" or "[ ]").
        page.wait_for_function(
            """() => { const p = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
                           .map(e => e.textContent.trim());
                       return p.length > 0 && p.every(t => /^\\[\\d+\\]:$/.test(t)); }""",
            timeout=400_000, polling=1000)
        page.wait_for_function("() => document.querySelectorAll('.widget-image img, img.widget-image')"
                               ".length >= 3", timeout=60_000)
        yield page


EXPLORERS_JS = """() => [...document.querySelectorAll('.jp-OutputArea-output .widget-vbox')]
    .filter(b => b.parentElement.closest('.widget-vbox') === null && b.querySelector('.widget-slider, .widget-hslider'))
    .map((b, k) => { b.dataset.explorer = k; return {
        title: b.querySelector('b') ? b.querySelector('b').textContent : '',
        sliders: b.querySelectorAll('.widget-slider, .widget-hslider').length}; })"""


def _state(page, k):
    return page.evaluate(
        """k => { const b = document.querySelector(`[data-explorer="${k}"]`);
                  const img = b.querySelector('img');
                  return {src: img ? img.src : null, text: b.innerText}; }""", k)


def test_run_all_shows_three_live_explorers(notebook_page):
    explorers = notebook_page.evaluate(EXPLORERS_JS)
    assert len(explorers) == 3, explorers


def test_run_all_leaves_the_regime_explorer_at_its_default(notebook_page):
    from benign_attention.widgets import REGIME_DEFAULTS

    notebook_page.evaluate(EXPLORERS_JS)
    text = _state(notebook_page, 0)["text"]
    want = f"{REGIME_DEFAULTS['signal_norm']:g}"
    readouts = notebook_page.evaluate(
        """() => [...document.querySelector('[data-explorer="0"]').querySelectorAll('.widget-slider, .widget-hslider')]
                 .map(s => [s.querySelector('.widget-label').textContent,
                            (s.querySelector('.widget-readout') || {}).textContent || ''])""")
    mu = [r for label, r in readouts if "μ" in label or "mu" in label.lower()]
    assert mu, (readouts, text[:300])
    assert float(mu[0]) == float(want), f"after Run All the ‖μ‖ slider reads {mu[0]}, its default is {want}"


def test_no_slider_label_is_cut(notebook_page):
    cut = notebook_page.evaluate(
        """() => [...document.querySelectorAll('.jp-OutputArea-output .widget-label')]
                 .filter(l => l.offsetParent !== null && l.scrollWidth > l.clientWidth + 1)
                 .map(l => l.textContent)""")
    assert not cut, f"slider labels cut off: {cut}"


def test_every_live_slider_updates_the_figure(notebook_page):
    page = notebook_page
    explorers = page.evaluate(EXPLORERS_JS)
    stuck = []
    for k, explorer in enumerate(explorers):
        for j in range(explorer["sliders"]):
            before = _state(page, k)
            handle = page.locator(f'[data-explorer="{k}"] .widget-slider, [data-explorer="{k}"] .widget-hslider'
                                  ).nth(j).locator(".noUi-handle, input[type=range]").first
            handle.focus()
            at_end = handle.evaluate("h => h.getAttribute('aria-valuenow') !== null && "
                                     "h.getAttribute('aria-valuenow') === h.getAttribute('aria-valuemax')")
            handle.press("ArrowLeft" if at_end else "ArrowRight")
            deadline = time.time() + 60
            while time.time() < deadline:
                after = _state(page, k)
                if after["src"] != before["src"] and after["text"] != before["text"]:
                    break
                time.sleep(0.25)
            else:
                label = page.locator(f'[data-explorer="{k}"] .widget-label').nth(j).text_content()
                stuck.append(f"{explorer['title']!r}: slider {label!r} did not update the figure and status")
    assert not stuck, "\n".join(stuck)


def test_static_twins_take_arrow_keys_in_jupyterlab(notebook_page):
    page = notebook_page
    n = page.locator(".jp-OutputArea-output .ba-twin-slider").count()
    assert n >= 3, f"{n} static twins rendered in JupyterLab"
    failed = []
    for k in range(n):
        slider = page.locator(".jp-OutputArea-output .ba-twin-slider").nth(k)
        slider.scroll_into_view_if_needed()
        slider.focus()
        label = slider.locator("xpath=ancestor::div[contains(@class,'ba-twin')][1]//*[contains(@class,"
                               "'ba-twin-label')]")
        before = label.text_content()
        at_end = slider.evaluate("s => s.value === s.max")
        page.keyboard.press("ArrowLeft" if at_end else "ArrowRight")
        time.sleep(0.3)
        focused = slider.evaluate("s => document.activeElement === s")
        if label.text_content() == before or not focused:
            failed.append(f"twin {k}: label {before!r} -> {label.text_content()!r}, focus kept: {focused}")
    assert not failed, "\n".join(failed)
