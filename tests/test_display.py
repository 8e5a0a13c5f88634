"""The display convention (benign_attention.display): every figure is one high-DPI PNG output,
whatever matplotlib backend the kernel runs."""
import ast
import base64
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from benign_attention import display

BOOK = Path(__file__).resolve().parents[1] / "book"

CELL = """
import matplotlib.pyplot as plt
from benign_attention.display import show
fig, ax = plt.subplots(figsize=(4, 3))
ax.plot([0, 1], [0, 1]); ax.set_title("a line")
plt.close(fig)
show(fig)
"""


@pytest.mark.parametrize("backend", ["Agg", "module://matplotlib_inline.backend_inline", None])
def test_show_emits_one_hidpi_png_under_any_backend(backend, monkeypatch):
    if backend is None:
        monkeypatch.delenv("MPLBACKEND", raising=False)
    else:
        monkeypatch.setenv("MPLBACKEND", backend)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CELL)])
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    outputs = nb.cells[0].outputs
    pngs = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == 1, outputs
    assert not any("Figure size" in o.get("data", {}).get("text/plain", "") for o in outputs)
    data = base64.b64decode(pngs[0]["data"]["image/png"])
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    meta = pngs[0]["metadata"]["image/png"]
    assert meta == {"width": 400}
    assert (width, height) == (400 * display.PIXEL_RATIO, 300 * display.PIXEL_RATIO)
    assert display.PIXEL_RATIO >= 2


def test_png_size_and_bad_input():
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(2, 1))
    data, css = display.png(fig)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and css == (200, 100)
    assert not plt.fignum_exists(fig.number)
    with pytest.raises(ValueError, match="pixel_ratio"):
        display.png(plt.figure(), pixel_ratio=10)
    with pytest.raises(TypeError, match="matplotlib Figure"):
        display.show("not a figure")
    with pytest.raises(ValueError, match="glue name"):
        display.glue("", 1)


def test_every_chapter_figure_cell_uses_show():
    """A captioned figure cell (mystnb.figure metadata) must end in show(...), the convention."""
    found = 0
    for md in sorted(BOOK.glob("[0-9]*.md")):
        for cell in re.findall(r"```\{code-cell\} ipython3\n(.*?)```", md.read_text(), re.S):
            if not cell.startswith("---\n") or "figure:" not in cell.split("\n---\n", 1)[0]:
                continue
            code = cell.split("\n---\n", 1)[1].strip()
            if "static=True" in code or code.endswith("twin"):
                continue  # static twins are HTML, not figures
            found += 1
            last = ast.parse(code).body[-1]
            assert (isinstance(last, ast.Expr) and isinstance(last.value, ast.Call)
                    and getattr(last.value.func, "id", None) == "show"), (md.name, code[-200:])
    assert found >= 18


def _panels(ncols=2, width=6.0):
    import matplotlib.pyplot as plt

    return plt.subplots(1, ncols, figsize=(width, 2.5), constrained_layout=True)


def test_figure_problems_passes_a_clean_figure():
    import numpy as np

    fig, axes = _panels()
    for ax in axes:
        ax.plot(np.arange(10), np.arange(10), label="rising")
        ax.set(title="short", xlabel="x")
        ax.legend(loc="lower right")
    assert display.figure_problems(fig) == []


@pytest.mark.parametrize("defect, expected", [
    ("legend over a line", "covers data"),
    ("legend over a band", "covers data"),
    ("legend over an image", "covers data"),
    ("tiny text", "smaller than"),
    ("wide figure", "smaller than"),
    ("cut title", "cut off"),
    ("overlapping titles", "overlap"),
])
def test_figure_problems_finds_each_defect(defect, expected):
    import numpy as np

    fig, axes = _panels(ncols=3 if defect == "overlapping titles" else 2,
                        width=12.0 if defect == "wide figure" else 6.0)
    ax = axes[0]
    x = np.linspace(0, 1, 50)
    if defect == "legend over a line":
        ax.plot(x, np.full_like(x, 0.9), label="flat")
        ax.set_ylim(0, 1)
        ax.legend(loc="upper center")
    elif defect == "legend over a band":
        ax.fill_between(x, 0, 1, label="band")
        ax.legend(loc="center")
    elif defect == "legend over an image":
        ax.pcolormesh(np.random.default_rng(0).random((5, 5)))
        ax.plot([0, 1], [0, 1], label="curve")
        ax.legend(loc="upper left")
    elif defect == "tiny text":
        ax.set_title("tiny", fontsize=5)
    elif defect == "wide figure":
        ax.legend(handles=ax.plot(x, x, label="a"), fontsize=7, loc="lower right")
    elif defect == "cut title":
        axes[1].set_title("a title far too long to fit inside its half of a small figure ever")
    elif defect == "overlapping titles":
        for a in axes:
            a.set_title("a long title that runs into the next one")
    problems = display.figure_problems(fig)
    assert any(expected in p for p in problems), problems


def test_glue_fills_G_for_the_prose():
    """The prose reads glued values as G.name (inline expressions); a missing name says why."""
    from benign_attention.display import G, glue

    glue("test_g_value", __import__("numpy").float64(0.25))
    assert G.test_g_value == 0.25 and type(G.test_g_value) is float
    assert f"{G.test_g_value:.1f}" == "0.2"
    with pytest.raises(AttributeError, match="nothing is glued under 'test_g_missing'"):
        G.test_g_missing
    with pytest.raises(AttributeError, match="glue"):
        G.x = 1
    with pytest.raises(ValueError, match="identifier"):
        glue("not-an-identifier", 1)
    assert "test_g_value" in dir(G)


# --- Every figure the book draws, on small inputs: legible at 1280 px and on a phone ----------------

def _figure_battery():
    """{"function" or "function:case": zero-argument callable drawing that figure} for every figure
    function of the package, on small inputs shaped like the chapters' (their labels and titles)."""
    import numpy as np

    from benign_attention import encoder_figures as ef
    from benign_attention import explorer_figures as xf
    from benign_attention import log_schedule, make_dataset, plots, theory, train
    from benign_attention.cache import stored
    from benign_attention.encoder import load_grid, train_encoder
    from benign_attention.realdata import grid, report

    rng = np.random.default_rng(0)
    ds = make_dataset(d=150, n=8, n_test=20, seed=2)
    run = train(ds, steps=40, record_every=10)
    dss = [make_dataset(d=150, n=8, n_test=20, seed=s) for s in range(2)]
    runs = [train(d, steps=40, record_every=10) for d in dss]
    long_ds = [make_dataset(d=1000, n=8, n_test=20, seed=s) for s in range(2)]
    long_runs = [train(d, steps=600, record_steps=log_schedule(600, 14)) for d in long_ds]  # fits at ~440
    D, MU = np.arange(250, 5001, 125), np.arange(5.0, 100.01, 2.5)  # the phase diagram's 39 x 39
    loss, reg = rng.random((len(D), len(MU))), rng.integers(0, 3, (len(D), len(MU)))
    fit = np.where(rng.random(loss.shape) < 0.2, np.inf, 10 ** rng.uniform(1, 4, loss.shape))
    curves = [dict(x=D, y=1.5 * D ** 0.25, label=r"$\|\mu\| = b\, d^{1/4}$", color="w")]
    SNR, N = np.geomspace(0.05, 2, 9), np.array([10, 20, 40, 80])
    taus = np.r_[0, np.geomspace(1e-2, 1e6, 100)]
    x_law = theory.g_inverse(theory.g(np.array([-2.0, 0.0, 2.0]), 8) + 0.1 * taus[:, None], 8)
    levels = np.arange(8.0, 15.0)
    times = 10 ** (levels[None] / 4 + rng.random((3, len(levels))) * 0.1)
    tau = np.arange(0.0, 1000, 20)
    d_enc, mu_enc, enc_maps, _ = load_grid(stored("encoder"))
    enc_ds = make_dataset(d=60, n=8, n_test=20, seed=0)
    enc_run = train_encoder(enc_ds, steps=20, mlp_dim=16, record_every=5, test_every=10)
    enc_settings = {f"{k} (d={d}, ‖μ‖={m:g})": (enc_run, enc_ds)
                    for k, (d, m) in {"benign": (200, 20.0), "harmful": (500, 5.0), "large signal": (100, 100.0)}.items()}
    crossing = {f"seed {s}": np.asarray(d_enc, float) ** 0.25 * (s + 2) for s in (0, 1, 2)}
    cells = grid.load_results(stored("realdata"))
    hist = {k: run.history[k] for k in ("train_acc", "train_clean_acc", "test_acc", "train_loss", "test_loss",
                                        "attn_clean", "attn_noisy")}
    n = ds.n
    frame = dict(step=40, train_xy=rng.random((n, 2)), train_path=rng.random((3, n, 2)), train_y=ds.y,
                 noisy=ds.noisy, test_xy=rng.random((20, 2)), test_y=ds.y_test, train_acc=1.0, test_acc=0.9,
                 noisy_fitted=1, knobs=dict(rho=0.1))
    d_label, mu_label = "token dimension $d$", r"signal strength $\|\mu\|$"
    return {
        "welcome_overview": lambda: plots.welcome_overview(run, ds),
        "token_geometry": lambda: plots.token_geometry(ds, samples=[0, 1, 2, 3]),
        "existence_scatter": lambda: plots.existence_scatter(
            ds, [0.0, 0.05, 10.0], titles=["(a) no memorisation", "(b) benign", "(c) harmful"]),
        "existence_sweep": lambda: plots.existence_sweep(ds, np.logspace(-4, 1, 41), c_low=1e-3, c_high=1.0),
        "dynamics_grid": lambda: plots.dynamics_grid(
            {k: (runs, dss) for k in ("benign", "harmful", "large signal")}, max_step=40),
        "long_run": lambda: plots.long_run(long_runs, long_ds, horizon=300),
        "g_law": lambda: plots.g_law(taus, x_law, x_law, 8),
        "delayed_generalisation": lambda: plots.delayed_generalisation(long_runs, mark_fit=True),
        "g_linear": lambda: plots.g_linear(tau, [tau * 1e-3 + rng.random((3, len(tau))) for _ in range(2)], 300),
        "gap_times": lambda: plots.gap_times(levels, times, times * 1.1, window=(1e2, 1e3)),
        "heat_maps": lambda: plots.heat_maps(D, MU, [loss, loss], ["train loss, step 1000", "test loss, step 1000"],
                                             d_label, mu_label, curves=curves),
        "heat_maps:log axes": lambda: plots.heat_maps(
            np.geomspace(250, 1e5, 7).round(-1), np.geomspace(5, 100, 7), [loss[:7, :7]] * 2,
            ["train loss, step 1000", "test loss, step 1000"], "$d$", "$\\|\\mu\\|$", curves=curves,
            xlog=True, ylog=True),
        "regime_maps": lambda: plots.regime_maps(
            D, MU, [reg, reg], [r"(a) test loss $\geq 0.5$", r"(b) test accuracy $< 0.95$"], d_label, mu_label,
            curves=curves + [dict(x=[D[0], D[-1]], y=[40, 40], color="k", ls=":",
                                  label=r"untrained accuracy $= \theta$")]),
        "regime_maps:three steps": lambda: plots.regime_maps(
            D, MU, [reg] * 3, [f"step {s}" for s in (100, 300, 1000)], d_label, mu_label),
        "fitting_time_maps": lambda: plots.fitting_time_maps([dict(
            x=D, y=MU, steps=fit, title=r"$(d, \|\mu\|)$ plane, $n = 20$", xlabel=d_label, ylabel=mu_label)],
            unfitted_label="not fitted by step 10000"),
        "fitting_time_maps:(SNR, n)": lambda: plots.fitting_time_maps([dict(
            x=SNR, y=N, steps=fit[:9, :4], title="$(\\mathrm{SNR}, n)$ plane, $d = 2000$", xlabel="SNR",
            ylabel="$n$", xlog=True)], unfitted_label="not fitted by step 3000"),
        "boundaries_in_time": lambda: plots.boundaries_in_time(
            D, {s: 1.5 * D ** 0.25 * f for s, f in ((100, 1.3), (300, 1.1), (1000, 1.0))}, d_label,
            r"$\|\mu\|_h(d)$", reference=dict(x=D, y=1.5 * D ** 0.25, label=r"$b\, d^{1/4}$")),
        "plane_summary": lambda: plots.plane_summary(
            SNR, N, loss[:9, :4], reg[:9, :4], "SNR", "$n$",
            curves=[dict(x=np.full(2, 0.3), y=[-1e3, 1e3], color="k", ls=":", label=r"$b\, d^{-1/4}$")]),
        "engine_timings": lambda: plots.engine_timings(
            [250, 500, 1000, 2000, 4000], {"exact (set-up included)": np.geomspace(1e-4, 1e-3, 5),
                                           "dense engine, X(Wp)": np.geomspace(1e-3, 1e-1, 5)}),
        "seed_spread": lambda: plots.seed_spread(
            [5.0, 10.0, 20.0, 40.0], {f"$\\eta = {e}$": rng.random((4, 4)) for e in (0.0, 0.1, 0.2)},
            xlabel="signal norm $\\|\\mu\\|$", ylabel="test accuracy"),
        "cost_growth": lambda: plots.cost_growth({d_label: ([500, 4000, 32000], [1.0, 3.0, 20.0])}),
        "cost_growth:four knobs": lambda: plots.cost_growth(
            {k: ([10, 100, 1000, 10000], [1.0, 2.0, 8.0, 60.0]) for k in ("$n$", "$d$", "$T$", "steps")}),
        "encoder_dynamics": lambda: ef.encoder_dynamics(enc_settings),
        "encoder_loss_maps": lambda: ef.encoder_loss_maps(d_enc, mu_enc, enc_maps["train_loss"],
                                                          enc_maps["test_loss"]),
        "encoder_boundary": lambda: ef.encoder_boundary(d_enc, crossing),
        "encoder_boundary:two thresholds": lambda: ef.encoder_boundary(d_enc, [crossing, crossing],
                                                                       threshold=[0.41, 0.1]),
        "plot_noise_sweep": lambda: report.plot_noise_sweep(grid.summarize(cells)),
        "plot_max_attention": lambda: report.plot_max_attention(cells, n=200),
        "explorer_regime": lambda layout="wide": xf.explorer_regime(
            run.steps, hist, "benign", title="‖μ‖=20, d=2000, n=20, η=0.2, ρ=0.1, T=8, seed=0", layout=layout),
        "explorer_selection": lambda layout="wide": xf.explorer_selection(frame, layout=layout),
        "explorer_phase": lambda layout="wide": xf.explorer_phase(
            np.array([100, 200, 500, 1000, 2000, 4000]), np.array([2, 4, 8, 16, 32, 64, 128]), reg[:6, :7],
            loss[:6, :7], title="η=0.2, n=20, step 1000", layout=layout),
        "explorer_phase:the chapter's grid": lambda layout="wide": xf.explorer_phase(
            D, MU, reg, loss, title="η=0.2, n=20, step 1000", layout=layout),
    }


def _figure_functions():
    """Every figure function of the package: the decorated ones (figure_layout.closed_figure) and the
    explorers' ``explorer_*``."""
    import inspect

    from benign_attention import encoder_figures, explorer_figures, plots
    from benign_attention.realdata import report

    names = set()
    for module in (plots, encoder_figures, explorer_figures, report):
        for name, obj in vars(module).items():
            if inspect.isfunction(obj) and obj.__module__ == module.__name__ and (
                    hasattr(obj, "__wrapped__") or name.startswith("explorer_")):
                names.add(name)
    return names


@pytest.fixture(scope="module")
def figure_battery():
    return _figure_battery()


def test_the_battery_covers_every_figure_function(figure_battery):
    covered = {key.split(":")[0] for key in figure_battery}
    assert _figure_functions() - covered == set(), "figure functions without a case in _figure_battery"
    assert len(covered) >= 26


BATTERY_KEYS = ["welcome_overview", "token_geometry", "existence_scatter", "existence_sweep", "dynamics_grid",
                "long_run", "g_law", "delayed_generalisation", "g_linear", "gap_times", "heat_maps",
                "heat_maps:log axes", "regime_maps", "regime_maps:three steps", "fitting_time_maps",
                "fitting_time_maps:(SNR, n)", "boundaries_in_time", "plane_summary", "engine_timings",
                "seed_spread", "cost_growth", "cost_growth:four knobs", "encoder_dynamics", "encoder_loss_maps",
                "encoder_boundary", "encoder_boundary:two thresholds", "plot_noise_sweep", "plot_max_attention",
                "explorer_regime", "explorer_selection", "explorer_phase", "explorer_phase:the chapter's grid"]


def test_battery_keys_are_listed(figure_battery):
    assert sorted(figure_battery) == sorted(BATTERY_KEYS)


@pytest.mark.parametrize("key", BATTERY_KEYS)
def test_every_figure_is_legible_wide_and_on_a_phone(figure_battery, key):
    """Text >= MIN_TEXT_PX (11 px) in the 672 px column at 1280 px, nothing cut off, no overlapping
    labels, no legend over data; and the same for the phone layout in the 342 px column, which
    show() publishes beside every figure wider than that column. The explorers' figures (the static
    twins of chapters 4, 6 and 9) are drawn for the column (720 px, shown at 672) and, with
    layout="phone", for the phone column, whose frames a twin shows in a narrow window."""
    import matplotlib.pyplot as plt

    fig = figure_battery[key]()
    assert fig.get_figwidth() * display.CSS_DPI <= display.COLUMN_CSS_PX or key.startswith("explorer_")
    assert display.figure_problems(fig) == []
    if key.startswith("explorer_"):
        phone = figure_battery[key](layout="phone")
        assert phone.get_figwidth() * display.CSS_DPI <= display.PHONE_COLUMN_CSS_PX + 0.5
        assert display.figure_problems(phone, column_px=display.PHONE_COLUMN_CSS_PX) == []
        return
    assert callable(fig.phone_variant)
    if fig.get_figwidth() * display.CSS_DPI > display.PHONE_COLUMN_CSS_PX:
        phone = fig.phone_variant()
        assert phone.get_figwidth() * display.CSS_DPI <= display.PHONE_COLUMN_CSS_PX + 0.5
        assert display.figure_problems(phone, column_px=display.PHONE_COLUMN_CSS_PX) == []
        assert not plt.fignum_exists(phone.number)


def test_small_text_fails_at_11_px():
    """8 pt in a 7.2 in figure is 10.4 px in the 672 px column: too small since MIN_TEXT_PX = 11;
    a wide figure's default 10 pt ticks are too small in the phone column."""
    import matplotlib.pyplot as plt

    assert display.MIN_TEXT_PX == 11
    fig, ax = plt.subplots(figsize=(7.2, 3), constrained_layout=True)
    ax.set_title("eight points", fontsize=8)
    assert any("smaller than 11 px" in p for p in display.figure_problems(fig))
    ax.set_title("eight and a half points", fontsize=8.5)
    assert display.figure_problems(fig) == []
    assert any("smaller than 11 px in a 342 px column" in p
               for p in display.figure_problems(fig, column_px=display.PHONE_COLUMN_CSS_PX))
    with pytest.raises(ValueError, match="column_px"):
        display.figure_problems(fig, column_px=0)


def test_layout_keyword():
    import numpy as np

    from benign_attention import plots

    from benign_attention.figure_layout import PHONE_WIDTH

    x = np.arange(5.0)
    fig = plots.seed_spread(x + 1, {"a": np.ones((2, 5))}, "x", "y", layout="phone")
    assert fig.get_figwidth() == pytest.approx(PHONE_WIDTH)
    assert not hasattr(fig, "phone_variant")
    with pytest.raises(ValueError, match="layout"):
        plots.seed_spread(x + 1, {"a": np.ones((2, 5))}, "x", "y", layout="tall")


def test_log_axes_are_not_zoomed_into_noise():
    """A nearly flat cost spans at least ``min_decades`` decades of time; the timing plot labels
    only the measured d, with no minor labels to collide."""
    import numpy as np

    from benign_attention import plots

    x = [1e2, 1e3, 1e4]
    for decades in (1.0, 2.0):
        lo, hi = plots.cost_growth({"$d$": (x, [0.3, 0.2, 0.25])}, min_decades=decades).axes[0].get_ylim()
        assert np.log10(hi / lo) == pytest.approx(decades)
    lo, hi = plots.cost_growth({"$d$": (x, [1e-3, 1.0, 1e3])}).axes[0].get_ylim()
    assert hi / lo > 1e6                                   # wide data keep their own range
    fig = plots.engine_timings([250, 500, 1000], {"a": [1e-3, 2e-3, 3e-3]})
    fig.canvas.draw()
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["250", "500", "1000"]
    assert not [t for t in ax.get_xminorticklabels() if t.get_text()]


PHONE_CELL = """
import numpy as np
from benign_attention import plots
from benign_attention.display import show
x = np.arange(1.0, 6.0)
show(plots.cost_growth({k: (x * 10, x ** 2) for k in ("$n$", "$d$")}), alt="two panels")
show(plots.cost_growth({"$n$": (x * 10, x ** 2)}))
"""


def test_show_publishes_a_phone_layout_in_a_picture():
    """A figure wider than the phone column: text/html is a <picture> whose <img> (alt text, CSS
    size) is the wide PNG and whose <source> for the phone media query is the phone PNG; image/png
    stays the wide PNG. A figure that fits a phone (3.4 in) is published alone."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(PHONE_CELL)])
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    wide, narrow = nb.cells[0].outputs
    assert not any(o.get("name") == "stderr" for o in nb.cells[0].outputs)
    html = wide["data"]["text/html"]
    assert html.count("<img ") == 1 and html.count("<source ") == 1
    assert f'media="{display.PHONE_MEDIA}"' in html and 'alt="two panels"' in html
    assert f'width="{wide["metadata"]["image/png"]["width"]}"' in html
    phone = re.search(r'<source [^>]*srcset="data:image/png;base64,([^"]+)" width="(\d+)"', html)
    data = base64.b64decode(phone.group(1))
    assert int.from_bytes(data[16:20], "big") == int(phone.group(2)) * display.PIXEL_RATIO
    assert int(phone.group(2)) <= display.PHONE_COLUMN_CSS_PX
    assert base64.b64decode(wide["data"]["image/png"]) in base64.b64decode(
        re.search(r'<img src="data:image/png;base64,([^"]+)"', html).group(1)) * 1
    assert wide["data"]["text/plain"] == "two panels"
    assert "text/html" not in narrow["data"] and "image/png" in narrow["data"]
