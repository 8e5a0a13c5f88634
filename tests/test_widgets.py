"""Explorers (benign_attention.widgets): live panels re-render on change, sliders only offer valid
values, static twins carry N frames / N labels / valid PNGs / the browser contract, within budget.
The browser side of the twins (slider moves the image and label in chromium) is in tests/browser."""
from __future__ import annotations

import base64
import json
import re

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from benign_attention import theory, widgets  # noqa: E402
from benign_attention.data import validate_config  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"
# Small settings keep every test quick (the classes are the ones the book uses).
SMALL = dict(d=200, n=10, n_test=50, steps=200)
TWIN_BUDGET = 1_500_000  # bytes per twin (<= 5 MB per chapter with three twins and the figures)


def _frames_of(html):
    arrays = re.findall(r"var (frames|labels) = (\[.*?\]);", html)
    return {k: json.loads(v) for k, v in arrays}


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
    tr, te = ex.result["train_acc"], ex.result["test_acc"]
    assert theory.classify_regime(tr, te) == "harmful"


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
    if make == "regime":
        tw = widgets.regime_explorer(static=True, values=(2, 20, 300), d=300, n=10, n_test=50, steps=200)
    elif make == "selection":
        tw = widgets.selection_explorer(static=True, frames=(5, 20, 80), d=200, n=10, n_test=40)
    else:
        tw = widgets.phase_explorer(static=True, d=(50, 200), signal_norm=(2, 20), frames=(10, 50, 100), n=10, n_test=40)
    html = tw._repr_html_()
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
