"""Explorers (benign_attention.widgets): live panels re-render on change, sliders only offer valid
values and constructors reject invalid ones, checks leave panels as they were, static twins carry
N frames / N labels / 2x PNGs shown at their CSS width / the browser contract, within budget, and
answer the keyboard in chromium. The movie shows the flipped sequences crossing to x_3.
The twins inside the built book are exercised by tests/browser (twin_probe.js)."""
from __future__ import annotations

import base64
import io
import json
import re
from html import escape as html_escape
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from benign_attention import display, explorer_figures, plots, theory, widgets  # noqa: E402
from benign_attention.data import validate_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

PNG = b"\x89PNG\r\n\x1a\n"
# Small settings keep every test quick (the classes are the ones the book uses).
SMALL = dict(d=200, n=10, n_test=50, steps=200)
TWIN_BUDGET = 1_500_000  # bytes per twin (<= 5 MB per chapter with three twins and the figures)


def _frames_of(html):
    """The twin's script arrays: frames (base64 PNG, from their data URLs) and labels."""
    arrays = {k: json.loads(v) for k, v in re.findall(r"var (frames|labels) = (\[.*?\]);", html)}
    assert all(f.startswith("data:image/png;base64,") for f in arrays["frames"])
    arrays["frames"] = [f.split(",", 1)[1] for f in arrays["frames"]]
    return arrays


@pytest.fixture(scope="module")
def regime():
    return widgets.regime_explorer(**SMALL)


def test_regime_explorer_rerenders_on_every_knob(regime):
    changes = {"signal_norm": 3.0, "eta": 0.3, "rho": 0.3, "d": 500, "n": 12, "T": 5, "steps": 300, "seed": 1}
    for name, value in changes.items():
        before_png, before_renders = regime.image.value, regime.renders
        before_hist = regime.result["history"]["train_loss"].copy()
        regime.controls[name].value = value
        assert regime.renders == before_renders + 1, name
        assert regime.result["knobs"][name] == value, name
        assert regime.image.value[:8] == PNG and regime.image.value != before_png, name
        after = regime.result["history"]["train_loss"]
        assert after.shape != before_hist.shape or not np.allclose(after, before_hist), name


def test_regime_explorer_names_the_regime_it_reaches():
    ex = widgets.regime_explorer(d=2000, n=20, n_test=200, steps=1000)
    assert ex.result["regime"] == "benign" and "benign" in ex.status.value
    ex.controls["signal_norm"].value = 2.0  # weak signal: memorises harmfully
    assert ex.result["regime"] == "harmful" and "harmful" in ex.status.value
    tr, te, loss = ex.result["train_acc"], ex.result["test_acc"], ex.result["test_loss"]
    assert theory.classify_regime(tr, te) == "harmful"  # the accuracy rule, as chapter 9 says
    assert theory.classify_regime(tr, test_loss=loss) == "harmful"  # and by the test loss
    assert "test loss" in ex.status.value


def test_live_sliders_only_offer_valid_values(regime):
    c = regime.controls
    assert c["eta"].min == 0 and c["eta"].max <= 0.45
    assert c["T"].min >= 3 and c["n"].min >= 2 and min(c["d"].options) >= 2 and c["rho"].min >= 0
    assert c["signal_norm"].min >= 0  # log slider: ||mu|| = 10**min > 0
    # the extreme corners of every slider are accepted by the engine's validation
    for pick in (min, max):
        knobs = {k: pick(w.options) if hasattr(w, "options") else (10 ** getattr(w, pick.__name__) if k == "signal_norm"
                 else getattr(w, pick.__name__)) for k, w in c.items() if k != "steps"}
        validate_config(**knobs)
    # ipywidgets clamps out-of-range values: an invalid eta cannot be set
    c["eta"].value = 0.9
    assert c["eta"].value <= 0.45
    assert "flipped" in regime.note.value  # the panel explains the eta / T limits


def test_invalid_combination_is_explained_not_raised(regime, monkeypatch):
    def boom(**_):
        raise ValueError("eta must be in [0, 0.5)")

    monkeypatch.setattr(widgets, "regime_result", boom)
    png = regime.image.value
    regime.controls["seed"].value = 3
    assert "not run" in regime.status.value and "eta" in regime.status.value
    assert regime.image.value == png


def test_selection_explorer_time_slider_and_knobs():
    ex = widgets.selection_explorer(d=200, n=10, n_test=40, frames=(5, 20, 80))
    assert ex.result["step"] == 80
    png = ex.image.value
    ex.controls["frame"].value = 5
    assert ex.result["step"] == 5 and ex.image.value != png
    for name, value in {"signal_norm": 5.0, "eta": 0.4, "d": 500, "n": 12, "seed": 1}.items():
        xy, renders = ex.result["train_xy"].copy(), ex.renders
        ex.controls[name].value = value
        assert ex.renders == renders + 1 and ex.result["knobs"][name] == value, name
        assert ex.result["train_xy"].shape != xy.shape or not np.allclose(ex.result["train_xy"], xy), name


def test_selection_test_side_matches_the_dense_query():
    """The test-side query q = W p computed in the token span equals run.params()'s W @ p."""
    from benign_attention import make_dataset, train

    ds = make_dataset(d=150, n=8, n_test=10, seed=2)
    run = train(ds, steps=30, record_every=30)
    W, p = run.params()
    np.testing.assert_allclose(widgets._query(run), W @ p, rtol=1e-8, atol=1e-10)


def test_phase_explorer_step_and_eta():
    ex = widgets.phase_explorer(d=(50, 200), signal_norm=(2, 20, 200), frames=(10, 100), n=10, n_test=40)
    assert ex.result["regime"].shape == (2, 3) and ex.result["step"] == 100
    png = ex.image.value
    ex.controls["step"].value = 10
    assert ex.result["step"] == 10 and ex.image.value != png
    for name, value in {"eta": 0.4, "n": 12}.items():
        grid = ex.result["grid"]
        ex.controls[name].value = value
        assert ex.result["grid"] is not grid, name
        assert not np.array_equal(ex.result["grid"].data["train_loss"], grid.data["train_loss"]), name


@pytest.mark.parametrize("make", ["regime", "selection", "phase"])
def test_static_twin_html_contract(make):
    alt = f"the {make} twin's own alt text <&>"     # each chapter gives its twin its own alt text
    if make == "regime":
        tw = widgets.regime_explorer(static=True, values=(2, 20, 300), d=300, n=10, n_test=50, steps=200, alt=alt)
    elif make == "selection":
        tw = widgets.selection_explorer(static=True, frames=(5, 20, 80), d=200, n=10, n_test=40, alt=alt)
    else:
        tw = widgets.phase_explorer(static=True, d=(50, 200), signal_norm=(2, 20), frames=(10, 50, 100), n=10,
                                    n_test=40, alt=alt)
    html = tw._repr_html_()
    assert f'alt="{html_escape(alt)}"' in html
    n = len(tw.frames)
    arrays = _frames_of(html)
    assert len(arrays["frames"]) == n == len(arrays["labels"]) == 3
    assert len(set(arrays["labels"])) == n and len(set(arrays["frames"])) == n
    for b64 in arrays["frames"]:
        assert base64.b64decode(b64, validate=True)[:8] == PNG
    for cls in ('class="ba-twin"', 'class="ba-twin-slider"', 'class="ba-twin-image"', 'class="ba-twin-label"'):
        assert cls in html
    assert re.search(r'<input type="range" class="ba-twin-slider"[^>]* min="0" max="2" step="1"', html)
    assert f'id="{tw.uid}"' in html and f'getElementById("{tw.uid}")' in html
    assert tw.nbytes < TWIN_BUDGET


def test_twin_phone_frames_are_checked():
    png = display.png(__import__("matplotlib.pyplot").pyplot.figure(figsize=(1, 1)))[0]
    with pytest.raises(ValueError, match="one frame per frame"):
        widgets.StaticTwin([png, png + b"x"], ["a", "b"], phone=[png])
    with pytest.raises(ValueError, match="phone frame 1 is not PNG"):
        widgets.StaticTwin([png, png + b"x"], ["a", "b"], phone=[png, b"GIF89a"])
    tw = widgets.StaticTwin([png, png + b"x"], ["a", "b"])
    assert tw.phone is None and "<picture" not in tw.html and "var phones = null;" in tw.html


def test_twin_ids_are_unique_and_input_is_checked():
    png = widgets.fig_to_png(__import__("matplotlib.pyplot").pyplot.figure(figsize=(1, 1)))
    a = widgets.StaticTwin([png, png + b"x", png + b"y"], ["a", "b", "c"])
    b = widgets.StaticTwin([png, png + b"x", png + b"y"], ["a", "b", "c"])
    assert a.uid != b.uid
    with pytest.raises(ValueError, match="distinct"):
        widgets.StaticTwin([png, png], ["a", "a"])
    with pytest.raises(ValueError, match="PNG"):
        widgets.StaticTwin([b"GIF89a", png], ["a", "b"])
    with pytest.raises(ValueError, match="frames"):
        widgets.StaticTwin([png], ["a"])


def test_twin_labels_cannot_break_out_of_the_script():
    png = widgets.fig_to_png(__import__("matplotlib.pyplot").pyplot.figure(figsize=(1, 1)))
    tw = widgets.StaticTwin([png, png + b"1", png + b"2"], ["</script><b>x", "b", "c"])
    assert "</script><b>" not in tw.html


def test_phase_twin_panel_choice():
    grid = widgets.phase_grid(d=(50, 200), signal_norm=(2, 20), frames=(10, 50, 100), n=10, n_test=40)
    tw = widgets.phase_explorer(static=True, grid=grid, panel="test_loss")
    assert len(tw.frames) == 3 and all(label.startswith("step ") for label in tw.labels)
    with pytest.raises(ValueError, match="panel"):
        widgets.phase_figure(grid, 10, panel="train_acc")


# ----------------------------------------------------------------------------------------------
# Twins: sharp frames shown at their CSS width, sized to the text column, legible, legends outside


def _png_size(data):
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.fixture(scope="module")
def small_twins():
    return dict(
        regime=widgets.regime_explorer(static=True, values=(2, 20, 300), d=300, n=10, n_test=50, steps=200),
        selection=widgets.selection_explorer(static=True, frames=(0, 20, 80), d=200, n=10, n_test=40),
        phase=widgets.phase_explorer(static=True, d=(50, 200, 800), signal_norm=(2, 20, 200), frames=(10, 50, 100),
                                     n=10, n_test=40))


@pytest.mark.parametrize("name", ["regime", "selection", "phase"])
def test_twin_frames_are_2x_and_shown_at_the_column_width(small_twins, name):
    tw = small_twins[name]
    width, height = tw.size
    assert width == round(explorer_figures.EXPLORER_WIDTH * display.CSS_DPI) == 720
    for frame in tw.frames:
        assert _png_size(frame) == (width * display.PIXEL_RATIO, height * display.PIXEL_RATIO)
    img = re.search(r"<img [^>]*>", tw.html).group(0)
    assert f'width="{width}"' in img and f'height="{height}"' in img
    assert "max-width:100%" in img and "height:auto" in img and f"width:{width}px" in img


@pytest.mark.parametrize("name", ["regime", "selection", "phase"])
def test_twins_carry_a_phone_frame_per_frame(small_twins, name):
    """Each twin also carries its frames in the phone layout (the phone column, 342 px, at 2x), in a
    <picture> source for display.PHONE_MEDIA that the script swaps with the image."""
    tw = small_twins[name]
    assert tw.phone is not None and len(tw.phone) == len(tw.frames)
    width, height = tw.phone_size
    assert width == display.PHONE_COLUMN_CSS_PX and height > width
    for frame in tw.phone:
        assert _png_size(frame) == (width * display.PIXEL_RATIO, height * display.PIXEL_RATIO)
    source = re.search(r'<picture class="ba-twin-picture"><source [^>]*>', tw.html).group(0)
    assert f'media="{display.PHONE_MEDIA}"' in source and f'width="{width}" height="{height}"' in source
    phones = json.loads(re.search(r"var phones = (\[.*?\]);", tw.html).group(1))
    assert [base64.b64decode(f.split(",", 1)[1]) for f in phones] == tw.phone
    assert base64.b64encode(tw.phone[tw.start]).decode() in source


def _figures():
    steps = np.arange(0, 201, 10)
    e = len(steps)
    hist = dict(train_acc=np.linspace(0.8, 1, e), train_clean_acc=np.full(e, 0.8), test_acc=np.full(e, 0.97),
                train_loss=np.linspace(0.7, 0.45, e), test_loss=np.linspace(0.7, 0.42, e),
                attn_clean=np.full((e, 4), 0.25), attn_noisy=np.full((e, 4), 0.25))
    regime = explorer_figures.RegimeFigure()
    regime.update(steps, hist, "benign", "title")
    frame = widgets.selection_frames(frames=(0, 30), d=200, n=10, n_test=40)[-1]
    selection = explorer_figures.SelectionFigure(frame["knobs"]["rho"])
    selection.update(frame)
    d, mu = (100, 400, 1600, 6400), (2, 8, 32, 128)
    phase = explorer_figures.PhaseFigure(d, mu, "test loss", (0.4, 0.7))
    phase.update(np.tile([2, 1, 1, 0], (4, 1)), np.full((4, 4), 0.5), "step 10")
    return dict(regime=regime, selection=selection, phase=phase)


@pytest.mark.parametrize("name", ["regime", "selection", "phase"])
def test_explorer_figures_fit_the_column_with_legible_text(name):
    from matplotlib.text import Text

    fig = _figures()[name].fig
    assert fig.get_figwidth() == pytest.approx(explorer_figures.EXPLORER_WIDTH)
    fig.canvas.draw()
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    assert len(texts) > 10
    small = [(t.get_text(), t.get_fontsize()) for t in texts if t.get_fontsize() < 8]
    assert not small  # >= 8 pt = 11 CSS px at display.CSS_DPI (the column at 1280 px)


@pytest.mark.parametrize("name", ["regime", "selection", "phase"])
def test_explorer_legends_do_not_cover_data(name):
    figure = _figures()[name]
    fig = figure.fig
    fig.canvas.draw()
    data_axes = [ax for ax in fig.axes if ax.axison and (ax.lines or ax.collections)]
    legends = [lg for ax in fig.axes for lg in [ax.get_legend()] if lg is not None] + list(fig.legends)
    assert legends
    for lg in legends:
        box = lg.get_window_extent()
        for ax in data_axes:
            assert not box.overlaps(ax.get_window_extent()), (name, lg.get_texts()[0].get_text())


def test_twin_frames_are_palette_pngs_within_budget(small_twins):
    from PIL import Image

    for tw in small_twins.values():
        assert Image.open(io.BytesIO(tw.frames[0])).mode == "P"  # 256 colours: a third of the bytes
        assert tw.nbytes < TWIN_BUDGET


# ----------------------------------------------------------------------------------------------
# The token-selection movie shows the flipped sequences moving to x_3


def test_movie_flipped_sequences_cross_to_x3_and_test_points_stay_on_their_side():
    frames = widgets.selection_frames()  # the chapter's default settings
    first, last = frames[0], frames[-1]
    noisy, y = first["noisy"], first["train_y"]
    side = lambda xy: np.sign(xy[:, 1] - xy[:, 0])  # noqa: E731 - +1 above the diagonal: output +1
    y_true = np.where(noisy, -y, y)
    assert noisy.sum() == 8
    assert (side(first["train_xy"][noisy]) == y_true[noisy]).all()   # start: their true class's side
    assert (side(last["train_xy"][noisy]) == y[noisy]).all()         # end: the observed label's side
    rho = first["knobs"]["rho"]
    x3 = np.where(y_true[noisy, None] > 0, [rho, 0.0], [0.0, rho])   # where x_3 of their true class sits
    dist = lambda fr: np.linalg.norm(fr["train_xy"][noisy] - x3, axis=1)  # noqa: E731
    assert dist(last).max() < 0.15 < dist(first).min()
    assert first["noisy_fitted"] == 0 and last["noisy_fitted"] == 8 and last["noisy_x3"] > 0.8
    for fr in frames:  # test points never cross the decision boundary
        assert (side(fr["test_xy"]) == fr["test_y"]).all() and fr["test_acc"] == 1.0


def test_movie_test_side_attention_matches_the_engine():
    from benign_attention import make_dataset, train

    knobs = dict(d=200, n=10, n_test=30, seed=3)
    fr = widgets.selection_frames(frames=(0, 40), **knobs)[-1]
    full = {k: v for k, v in widgets.SELECTION_DEFAULTS.items() if k != "frames"}
    run = train(make_dataset(**dict(full, **knobs)), steps=40, record_every=40)
    np.testing.assert_allclose(fr["test_x1"], run.final("attn_test")[0], rtol=1e-9)
    np.testing.assert_allclose(fr["train_acc"], run.final("train_acc"))


# ----------------------------------------------------------------------------------------------
# Checks leave live panels as the reader left them; constructors validate; labels are not cut


def test_trial_restores_the_panel():
    ex = widgets.regime_explorer(**SMALL)
    before = dict(values=ex.values(), png=ex.image.value, regime=ex.result["regime"])
    with ex.trial(signal_norm=2.0, eta=0.4) as panel:
        assert panel.values()["signal_norm"] == 2.0 and panel.result["knobs"]["eta"] == 0.4
    assert ex.values() == before["values"] == ex.defaults
    assert ex.result["regime"] == before["regime"] and ex.image.value == before["png"]
    with pytest.raises(ValueError, match="unknown control"):
        with ex.trial(nope=1):
            pass
    assert ex.values() == before["values"]


def test_chapters_move_live_panels_only_inside_trial():
    """A chapter cell that sets a live control outside ``with panel.trial(...)`` would leave the
    panel in a state its prose does not describe (after Run All the reader sees it)."""
    for md in sorted((ROOT / "book").glob("[0-9]*.md")):
        for line in md.read_text().splitlines():
            assert not re.search(r"\.controls\[[^]]+\]\.value\s*=", line), (md.name, line)


def test_live_descriptions_are_not_cut():
    ex = widgets.regime_explorer(**SMALL)
    mv = widgets.selection_explorer(d=200, n=10, n_test=40, frames=(5, 20))
    ph = widgets.phase_explorer(d=(50, 200), signal_norm=(2, 20), frames=(10, 20), n=10, n_test=40)
    for panel in (ex, mv, ph):
        for name, c in panel.controls.items():
            assert c.style.description_width == "initial", name


@pytest.mark.parametrize("make, kwargs, match", [
    ("regime", dict(eta=0.7), r"eta must be a finite number in \[0, 0.45\]"),
    ("regime", dict(n=2), r"n must be an integer in \[4, 60\]"),
    ("regime", dict(signal_norm=0.5), r"signal_norm must be a finite number in \[1, 1000\]"),
    ("regime", dict(rho=1.5), r"rho must be a finite number in \[0, 1\]"),
    ("regime", dict(T=2), r"T must be an integer in \[3, 16\]"),
    ("regime", dict(d=1234), r"d must be one of \[100, .*5000\]"),
    ("regime", dict(steps=7), r"steps must be one of"),
    ("regime", dict(seed=12), r"seed must be an integer in \[0, 9\]"),
    ("selection", dict(eta=0.5), r"eta must be a finite number in \[0, 0.45\]"),
    ("selection", dict(n=100), r"n must be an integer in \[4, 60\]"),
    ("selection", dict(frames=(20, 10)), r"frames must list at least two distinct integers"),
    ("selection", dict(frames=(0, -5)), r"frames\[1\] must be an integer >= 0"),
    ("phase", dict(eta=0.9), r"eta must be a finite number in \[0, 0.45\]"),
    ("phase", dict(n=3), r"n must be an integer in \[4, 60\]"),
    ("phase", dict(signal_norm=(0, 5)), r"signal_norm\[0\] must be a finite number in \(0, inf\)"),
    ("phase", dict(d=(100,)), r"d must list at least two distinct values"),
])
def test_constructors_reject_out_of_range_arguments(make, kwargs, match):
    fn = dict(regime=widgets.regime_explorer, selection=widgets.selection_explorer, phase=widgets.phase_explorer)[make]
    with pytest.raises(ValueError, match=match):
        fn(**kwargs)


def test_constructors_reject_unknown_arguments():
    with pytest.raises(TypeError, match="unexpected keyword argument 'mu'"):
        widgets.regime_explorer(mu=20)
    with pytest.raises(TypeError, match="record_every"):
        widgets.selection_explorer(record_every=5)


# ----------------------------------------------------------------------------------------------
# Phase explorer: grid runs per family with progress, same numbers as run_grid


def test_phase_runner_matches_run_grid_and_reports_progress():
    axes = dict(d=[50, 200], signal_norm=[2, 20, 200])
    base = dict(n=10, n_test=40, eta=0.2, T=8, rho=0.1, seed=0)
    ref = widgets.phase_grid(**axes, frames=(10, 100), **base)
    seen = []
    got = widgets._PhaseRunner().run(axes, (10, 100), base, on_family=lambda k, total, d: seen.append((k, total)))
    assert seen == [(1, 2), (2, 2)]
    np.testing.assert_array_equal(got.steps, ref.steps)
    for key in ("train_loss", "test_loss", "train_acc", "test_acc"):
        np.testing.assert_allclose(got.data[key], ref.data[key], rtol=1e-6, atol=1e-7)


def test_phase_explorer_progress_and_memo():
    ex = widgets.phase_explorer(d=(50, 200), signal_norm=(2, 20), frames=(10, 100), n=10, n_test=40)
    grid = ex.result["grid"]
    ex.controls["n"].value = 12
    assert ex.progress.value == ex.progress.max == 2 and ex.progress.layout.visibility == "hidden"
    ex.controls["n"].value = 10  # back to a computed (eta, n): no re-run
    assert ex.result["grid"] is grid


# ----------------------------------------------------------------------------------------------
# Keyboard: the twin's slider answers the keys itself and keeps them from the page (JupyterLab)

KEY_PAGE = """<!doctype html><html><head><meta charset="utf-8"></head><body>
<h1 id="heading" tabindex="-1">Heading</h1>
<script>
  // Stands in for JupyterLab's command-mode shortcuts: a document-level keydown listener (bubbling)
  // that takes the arrow keys and moves the focus to a heading.
  window.pageKeys = [];
  document.addEventListener("keydown", function (e) {
    window.pageKeys.push(e.key);
    if (e.key.startsWith("Arrow")) { document.getElementById("heading").focus(); e.preventDefault(); }
  });
</script>
TWIN
</body></html>"""


def test_twin_slider_answers_the_keyboard_in_chromium(tmp_path):
    pytest.importorskip("playwright")
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip("chromium not installed")
    from playwright.sync_api import sync_playwright

    import matplotlib.pyplot as plt

    frames = []
    for k in range(5):
        fig = plt.figure(figsize=(2, 1))
        fig.text(0.5, 0.5, f"frame {k}")
        frames.append(display.png(fig))
    tw = widgets.StaticTwin(frames, [f"label {k}" for k in range(5)], name="step", start=0)
    page_file = tmp_path / "twin.html"
    page_file.write_text(KEY_PAGE.replace("TWIN", tw.html))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.goto(page_file.as_uri())
            slider = page.locator(".ba-twin-slider")
            state = lambda: page.evaluate(  # noqa: E731
                """() => { const r = document.querySelector('.ba-twin');
                 return { value: r.querySelector('.ba-twin-slider').value,
                          label: r.querySelector('.ba-twin-label').textContent,
                          src: r.querySelector('.ba-twin-image').getAttribute('src').slice(-40),
                          aria: r.querySelector('.ba-twin-slider').getAttribute('aria-valuetext'),
                          focus: document.activeElement.className, page: window.pageKeys.slice() }; }""")
            s0 = state()
            slider.focus()
            expected = [("ArrowRight", "1"), ("ArrowRight", "2"), ("ArrowLeft", "1"), ("End", "4"), ("ArrowUp", "4"),
                        ("Home", "0"), ("ArrowDown", "0"), ("PageUp", "1"), ("PageDown", "0")]
            prev = s0
            for key, value in expected:
                slider.press(key)
                now = state()
                assert now["value"] == value, (key, now)
                assert now["label"] == f"label {value}" == now["aria"], (key, now)
                assert (now["src"] != prev["src"]) == (value != prev["value"]), key
                assert now["focus"] == "ba-twin-slider", (key, now)  # focus did not jump to the heading
                prev = now
            assert prev["page"] == []  # no key reached the page's (JupyterLab's) shortcuts
            assert s0["label"] == "label 0" and s0["aria"] == "label 0"
        finally:
            browser.close()


PHONE_PAGE = """<!doctype html><html><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="margin:0 24px">TWIN</body></html>"""


@pytest.mark.parametrize("width", [390, 1280])
def test_twin_shows_its_phone_frames_in_a_narrow_window(tmp_path, width):
    """At 390 px the twin's image is the phone frame (its natural width is the phone column's at 2x)
    and moving the slider swaps it for the next phone frame; at 1280 px it is the wide frame."""
    pytest.importorskip("playwright")
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip("chromium not installed")
    from playwright.sync_api import sync_playwright

    import matplotlib.pyplot as plt

    def frame(k, size):
        fig = plt.figure(figsize=size)
        fig.text(0.5, 0.5, f"frame {k}")
        return display.png(fig)

    phone_in = display.PHONE_COLUMN_CSS_PX / display.CSS_DPI
    tw = widgets.StaticTwin([frame(k, (7.2, 3)) for k in range(3)], [f"label {k}" for k in range(3)],
                            phone=[frame(k, (phone_in, 5)) for k in range(3)], name="step", start=0)
    page_file = tmp_path / "twin.html"
    page_file.write_text(PHONE_PAGE.replace("TWIN", tw.html))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": width, "height": 800})
            page.goto(page_file.as_uri())
            shown = """async () => { const img = document.querySelector('.ba-twin-image');
                if (!img.complete) await new Promise((r) => img.addEventListener('load', r, { once: true }));
                return [img.currentSrc.slice(-60), img.naturalWidth, img.clientWidth]; }"""
            src0, natural, client = page.evaluate(shown)
            wide = width > 600
            expected = (720 if wide else display.PHONE_COLUMN_CSS_PX) * display.PIXEL_RATIO
            assert natural == expected, (width, natural)
            assert client == (min(720, width - 48) if wide else display.PHONE_COLUMN_CSS_PX), client
            page.locator(".ba-twin-slider").focus()
            page.locator(".ba-twin-slider").press("ArrowRight")
            page.wait_for_timeout(100)
            src1, natural1, _ = page.evaluate(shown)
            assert src1 != src0 and natural1 == expected
            want = base64.b64encode(tw.frames[1] if wide else tw.phone[1]).decode()[-60:]
            assert src1 == want
        finally:
            browser.close()


def test_phase_explorer_engine():
    """The live phase explorer runs new grids with the sampler by default, with the exact engine when
    its first grid is given (one engine per explorer), and rejects an unknown engine."""
    ex = widgets.phase_explorer(d=(50, 200), signal_norm=(2, 20), frames=(10, 100), n=10, n_test=40)
    assert ex.engine == "gram"
    ref = widgets._PhaseRunner().run(ex.axes, ex.frame_steps, dict(ex.fixed, eta=0.2, n=10), engine="gram")
    np.testing.assert_allclose(ex.result["grid"].data["test_loss"], ref.data["test_loss"], rtol=1e-6)
    grid = widgets.phase_grid(d=(50, 200), signal_norm=(2, 20), frames=(10, 100), n=10, n_test=40)
    assert widgets.phase_explorer(grid=grid, n=10, n_test=40).engine == "exact"
    with pytest.raises(ValueError, match="engine"):
        widgets.phase_explorer(d=(50, 200), signal_norm=(2, 20), frames=(10, 100), n=10, engine="fast")
