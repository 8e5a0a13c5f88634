"""Interactive explorers (chapter *Playground*): each exists twice, from one code path.

* **live** (``static=False``): an ipywidgets panel that re-runs the exact engine on every change
  (needs a kernel: Binder, Colab, local Jupyter);
* **static twin** (``static=True``): the same figure function evaluated over a seeded, precomputed
  grid of values, shipped as a self-contained HTML/JS slider (:class:`StaticTwin`: base64 PNGs in a
  JavaScript array, an inline script wiring an ``<input type=range>``), which works in the published
  HTML book with no kernel and no widget manager.

The three explorers:

:func:`regime_explorer`
    knobs ||mu||, d, n, eta, rho, T, steps, seed -> accuracy, loss and attention over steps, and the
    regime reached (``theory.classify_regime``). Live runs use :func:`~benign_attention.sweeps.train_cell`,
    which caches the noise draw and the span projection, so moving ||mu||, rho or eta re-runs only the
    low-dimensional loop.
:func:`selection_explorer`
    the token-selection "movie": the most-attended token of every training and test sequence on the
    (mu_-, mu_+) plane as training proceeds (time slider over recorded steps).
:func:`phase_explorer`
    the (d, ||mu||) regime map and test accuracy, with a slider over the training step (one
    :func:`~benign_attention.sweeps.run_grid` call records every step).

Figures are drawn by the *Explorers* section of :mod:`benign_attention.plots`.
"""
from __future__ import annotations

import base64
import hashlib
import html
import io
import itertools
import json
import math
import time

import numpy as np

from . import plots, theory
from .data import check_int, check_number, make_dataset
from .engines import train
from .sweeps import run_grid, train_cell

__all__ = ["StaticTwin", "regime_explorer", "selection_explorer", "phase_explorer", "fig_to_png",
           "REGIME_DEFAULTS", "SELECTION_DEFAULTS", "PHASE_DEFAULTS"]

#: Defaults of the live regime explorer (the paper's default setting; n_test=200 keeps updates fast).
REGIME_DEFAULTS = dict(signal_norm=20.0, d=2000, n=20, eta=0.2, rho=0.1, T=8, steps=1000, seed=0, n_test=200)
#: Defaults of the token-selection movie (frames at these steps).
SELECTION_DEFAULTS = dict(signal_norm=20.0, d=2000, n=20, eta=0.2, rho=0.1, T=8, seed=0, n_test=200,
                          frames=(10, 30, 60, 100, 200, 400, 700, 1000))
#: Defaults of the phase-diagram explorer: a coarse (d, ||mu||) grid, steps recorded for the slider.
PHASE_DEFAULTS = dict(d=(100, 200, 500, 1000, 2000, 4000), signal_norm=(2, 4, 8, 16, 32, 64, 128),
                      eta=0.2, n=20, T=8, rho=0.1, seed=0, n_test=200, frames=(25, 50, 100, 200, 400, 700, 1000))

# Valid ranges offered by the live sliders (every value is accepted by data.validate_config).
D_CHOICES = (100, 200, 500, 1000, 2000, 3000, 5000)
STEP_CHOICES = (100, 200, 300, 500, 1000, 1500, 2000, 3000)
ETA_MAX = 0.45  # eta must be < 0.5; the slider stops at 0.45
TWIN_DPI = 80


# ----------------------------------------------------------------------------------------------
# Static twins


def fig_to_png(fig, dpi=TWIN_DPI) -> bytes:
    """PNG bytes of a matplotlib figure (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


_TWIN_COUNT = itertools.count()

_TWIN_TEMPLATE = """<div class="ba-twin" id="{uid}" style="max-width:100%;margin:0.5em 0 1em 0">
<div style="display:flex;align-items:center;gap:0.8em;flex-wrap:wrap">
<label for="{uid}-slider" style="font-weight:600">{name}</label>
<input type="range" class="ba-twin-slider" id="{uid}-slider" min="0" max="{last}" step="1" value="{start}" style="flex:1 1 16em;max-width:28em" aria-label="{name}">
<span class="ba-twin-label" id="{uid}-label" style="font-family:monospace">{label}</span>
</div>
<img class="ba-twin-image" id="{uid}-image" alt="{alt}" style="max-width:100%;height:auto" src="data:image/png;base64,{src}">
</div>
<script>
(function () {{
  var frames = {frames};
  var labels = {labels};
  var root = document.getElementById("{uid}");
  if (!root) return;
  var slider = root.querySelector(".ba-twin-slider");
  var image = root.querySelector(".ba-twin-image");
  var label = root.querySelector(".ba-twin-label");
  function show() {{
    var i = Math.max(0, Math.min(frames.length - 1, parseInt(slider.value, 10) || 0));
    image.src = "data:image/png;base64," + frames[i];
    label.textContent = labels[i];
  }}
  slider.addEventListener("input", show);
  slider.addEventListener("change", show);
}})();
</script>"""


class StaticTwin:
    """A kernel-free slider over precomputed PNG frames (renders as HTML in notebooks and the book).

    ``frames`` PNG bytes, ``labels`` one distinct text per frame, ``name`` the slider's caption,
    ``start`` the initial frame. The HTML is a ``div.ba-twin`` (unique id) holding
    ``input[type=range].ba-twin-slider``, ``img.ba-twin-image`` and ``.ba-twin-label``, followed by an
    inline script that swaps the image and the label when the slider moves."""

    def __init__(self, frames, labels, name="value", start=0, alt="explorer frame"):
        frames, labels = list(frames), [str(x) for x in labels]
        if len(frames) < 2 or len(frames) != len(labels):
            raise ValueError(f"a twin needs >= 2 frames and one label per frame, got {len(frames)} frames "
                             f"and {len(labels)} labels")
        if len(set(labels)) != len(labels):
            raise ValueError(f"twin labels must be distinct, got {labels}")
        for k, f in enumerate(frames):
            if not bytes(f[:8]) == b"\x89PNG\r\n\x1a\n":
                raise ValueError(f"frame {k} is not PNG data")
        self.frames, self.labels, self.name, self.alt = frames, labels, str(name), str(alt)
        self.start = check_int("start", start, 0, len(frames) - 1)
        digest = hashlib.sha256(b"".join(frames) + "|".join(labels).encode()).hexdigest()[:10]
        self.uid = f"ba-twin-{digest}-{next(_TWIN_COUNT)}"

    @property
    def html(self) -> str:
        b64 = [base64.b64encode(f).decode("ascii") for f in self.frames]
        return _TWIN_TEMPLATE.format(
            uid=self.uid, name=html.escape(self.name), last=len(b64) - 1, start=self.start,
            label=html.escape(self.labels[self.start]), alt=html.escape(self.alt), src=b64[self.start],
            frames=json.dumps(b64), labels=json.dumps(self.labels).replace("</", "<\\/"))

    @property
    def nbytes(self) -> int:
        """Size of the HTML (the page weight this twin adds)."""
        return len(self.html.encode())

    def _repr_html_(self):
        return self.html

    def __repr__(self):
        return f"StaticTwin({len(self.frames)} frames, {self.nbytes / 1e3:.0f} kB, id={self.uid!r})"


def twin(figure_fn, values, label_fn, name, start=0, dpi=TWIN_DPI, alt="explorer frame") -> StaticTwin:
    """A :class:`StaticTwin` whose frame k is ``figure_fn(values[k])`` and label ``label_fn(values[k])``."""
    values = list(values)
    return StaticTwin([fig_to_png(figure_fn(v), dpi) for v in values], [label_fn(v) for v in values],
                      name=name, start=start, alt=alt)


# ----------------------------------------------------------------------------------------------
# Live scaffolding


def _ipw():
    try:
        import ipywidgets
    except ImportError as exc:  # pragma: no cover - ipywidgets is a dependency
        raise ImportError("live explorers need ipywidgets (pip install ipywidgets)") from exc
    return ipywidgets


class _Live:
    """Controls + an Image + a status line; ``update()`` recomputes and re-renders.

    Subclasses set ``controls`` (name -> widget) and implement ``compute(values) -> (fig, text)``.
    ``self.widget`` is the ipywidgets box to display; ``self.result`` the last result."""

    def __init__(self, controls, title, dpi=80):
        w = _ipw()
        self.controls, self.dpi = controls, dpi
        self.image = w.Image(format="png", layout=w.Layout(max_width="100%", height="auto"))
        self.status = w.HTML()
        self.note = w.HTML()
        self.result = None
        self.renders = 0
        self._positions = None
        rows = list(controls.values())
        grid = w.GridBox(rows, layout=w.Layout(grid_template_columns="repeat(2, minmax(18em, 1fr))"))
        self.widget = w.VBox([w.HTML(f"<b>{html.escape(title)}</b>"), grid, self.status, self.note, self.image])
        for c in rows:
            c.observe(self._on_change, names="value")
        self.update()

    def values(self):
        return {k: c.value for k, c in self.controls.items()}

    def _on_change(self, _change):
        self.update()

    def update(self):
        t0 = time.perf_counter()
        self.status.value = "<i>computing…</i>"
        try:
            fig, text, result = self.compute(self.values())
        except ValueError as exc:  # a combination the engine rejects: explain, keep the last figure
            self.status.value = f"<span style='color:#d62728'>not run: {html.escape(str(exc))}</span>"
            return
        self.image.value = self._render(fig)
        self.result = result
        self.renders += 1
        self.status.value = f"{text} <span style='color:#777'>({time.perf_counter() - t0:.2f} s)</span>"

    def _render(self, fig):
        """PNG of ``fig``. The first figure is laid out by matplotlib's constrained layout; later
        figures (same panels) reuse its axes positions, which halves the rendering time."""
        if self._positions is not None and len(fig.axes) == len(self._positions):
            fig.set_layout_engine("none")
            for ax, pos in zip(fig.axes, self._positions):
                ax.set_position(pos)
            return fig_to_png(fig, self.dpi)
        png = fig_to_png(fig, self.dpi)
        self._positions = [ax.get_position() for ax in fig.axes]
        return png

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


def _regime_text(knobs, regime, tr, te):
    color = plots.REGIME_COLORS[regime]
    return (f"<b style='color:{color}'>{regime}</b>: train accuracy {tr:.2f} (observed labels), "
            f"test accuracy {te:.3f}; SNR = ‖μ‖/(σ√d) = {theory.snr(knobs['signal_norm'], knobs['d']):.3g}")


# ----------------------------------------------------------------------------------------------
# 1. Regime explorer


def regime_result(record_every=10, **knobs):
    """Run one cell with :func:`train_cell`; returns (steps, history, regime name, knobs)."""
    knobs = dict(REGIME_DEFAULTS, **knobs)
    steps = knobs.pop("steps")
    run = train_cell(steps=steps, record_every=record_every, **knobs)
    regime = theory.classify_regime(run.final("train_acc"), run.final("test_acc"))
    return run.steps, run.history, regime, dict(knobs, steps=steps)


def _regime_title(knobs):
    return (f"‖μ‖={knobs['signal_norm']:g}, d={knobs['d']}, n={knobs['n']}, η={knobs['eta']:g}, "
            f"ρ={knobs['rho']:g}, T={knobs['T']}, seed={knobs['seed']}")


def regime_figure(steps, hist, regime, knobs):
    return plots.explorer_regime(steps, hist, regime, title=_regime_title(knobs))


class RegimeExplorer(_Live):
    """Live regime explorer (see :func:`regime_explorer`)."""

    def __init__(self, record_every=10, **knobs):
        w = _ipw()
        k = dict(REGIME_DEFAULTS, **knobs)
        self.record_every, self.n_test = record_every, k["n_test"]
        slow = dict(continuous_update=False, style={"description_width": "7em"})
        fast = dict(continuous_update=False, style={"description_width": "7em"})
        controls = {
            "signal_norm": w.FloatLogSlider(value=k["signal_norm"], base=10, min=0, max=3, step=0.05,
                                            description="‖μ‖", readout_format=".3g", **fast),
            "eta": w.FloatSlider(value=k["eta"], min=0.0, max=ETA_MAX, step=0.05, description="η (noise)", **fast),
            "rho": w.FloatSlider(value=k["rho"], min=0.0, max=1.0, step=0.05, description="ρ (weak signal)", **fast),
            "d": w.SelectionSlider(options=list(D_CHOICES), value=k["d"], description="d", **slow),
            "n": w.IntSlider(value=k["n"], min=4, max=60, step=2, description="n", **slow),
            "T": w.IntSlider(value=k["T"], min=3, max=16, description="T (tokens)", **slow),
            "steps": w.SelectionSlider(options=list(STEP_CHOICES), value=k["steps"], description="GD steps", **slow),
            "seed": w.IntSlider(value=k["seed"], min=0, max=9, description="seed", **slow),
        }
        super().__init__(controls, "Regime explorer: drag a knob, the exact engine re-trains")

    def compute(self, v):
        steps, hist, regime, knobs = regime_result(record_every=max(1, v["steps"] // 50),
                                                   n_test=self.n_test, **v)
        n_noisy = math.ceil(v["eta"] * v["n"] - 1e-9)
        self.note.value = (f"<span style='color:#777'>{n_noisy} of n={v['n']} training labels flipped "
                           f"(⌈ηn⌉); η < 0.5 and T ≥ 3 are required, so the sliders stop at η = {ETA_MAX} "
                           f"and T = 3; d ≤ {D_CHOICES[-1]} keeps an update interactive.</span>")
        tr, te = float(hist["train_acc"][-1]), float(hist["test_acc"][-1])
        return (regime_figure(steps, hist, regime, knobs), _regime_text(knobs, regime, tr, te),
                dict(regime=regime, train_acc=tr, test_acc=te, steps=steps, history=hist, knobs=knobs))


def regime_twin(vary="signal_norm", values=(2, 5, 10, 20, 50, 100, 300), start=None, dpi=TWIN_DPI, **knobs):
    """Static twin of the regime explorer: one frame per value of knob ``vary`` (a member knob,
    signal_norm/rho/eta, runs as one batched :func:`run_grid`; other knobs one cell each)."""
    k = dict(REGIME_DEFAULTS, **knobs)
    steps = k.pop("steps")
    values = list(values)
    base = {kk: vv for kk, vv in k.items() if kk != vary}
    grid = run_grid({vary: values}, base=base, steps=steps, record_every=max(1, steps // 100),
                    dtype=__import__("torch").float64, progress=False)
    frames, labels = [], []
    for j, v in enumerate(values):
        hist = {key: grid.data[key][j] for key in grid.data}
        regime = theory.classify_regime(hist["train_acc"][-1], hist["test_acc"][-1])
        knobs_j = dict(base, **{vary: v}, steps=steps)
        frames.append(fig_to_png(regime_figure(grid.steps, hist, regime, knobs_j), dpi))
        labels.append(f"{_KNOB_NAMES.get(vary, vary)} = {v:g}: {regime}")
    if start is None:
        start = int(np.argmin([abs(v - REGIME_DEFAULTS.get(vary, values[0])) for v in values]))
    return StaticTwin(frames, labels, name=_KNOB_NAMES.get(vary, vary), start=start,
                      alt="regime explorer: accuracy, loss and attention over gradient steps")


_KNOB_NAMES = {"signal_norm": "‖μ‖", "eta": "η", "rho": "ρ", "d": "d", "n": "n", "T": "T", "step": "step"}


def regime_explorer(static=False, **kw):
    """The regime explorer. ``static=False``: a live ipywidgets panel (:class:`RegimeExplorer`; knobs
    as keyword defaults). ``static=True``: its :func:`regime_twin` (keywords ``vary``, ``values``,
    ``start``, ``dpi`` and fixed knobs)."""
    return regime_twin(**kw) if static else RegimeExplorer(**kw)


# ----------------------------------------------------------------------------------------------
# 2. Token-selection movie


def _query(run):
    """q = W p of an exact-engine run's current state without materialising W (d x d):
    with p = A alpha and W = W_0 - B (I - Z)^T A^T, q = K alpha - B (I - Z)^T G alpha."""
    import torch

    prob = run.state["problem"]
    m = prob.B.shape[1]
    alpha, Z = run.state["alpha"].double()[:m], run.state["Z"].double()[:m, :m]
    K, B, G = prob.K.double()[:, :m], prob.B.double(), prob.G.double()[:m, :m]
    q = K @ alpha - B @ ((torch.eye(m, dtype=torch.float64) - Z).T @ (G @ alpha))
    return q.numpy()


def selection_frames(frames=SELECTION_DEFAULTS["frames"], **knobs):
    """Train once, in chunks ending at each step of ``frames`` (``train(..., resume=run)``), and
    record per frame the most-attended token of every training sequence (from the run's attention)
    and of every test sequence (argmax of x_t . q with q = W p from the run's state, computed in the
    token span: cost O(d m) per frame, never the d x d matrix). Returns a list of frame dicts for
    :func:`plots.explorer_selection`."""
    k = {kk: v for kk, v in dict(SELECTION_DEFAULTS, **knobs).items() if kk != "frames"}
    frames = sorted({check_int("frame step", f, 1) for f in frames})
    ds = make_dataset(**k)
    norm2 = float(ds.mu_pos @ ds.mu_pos)
    proj = lambda tok: np.stack([tok @ ds.mu_neg, tok @ ds.mu_pos], -1) / norm2
    out, run, done = [], None, 0
    for s in frames:
        run = train(ds, steps=s - done, record_steps=[s - done], resume=run)
        done = s
        att = run.final("train_attention")
        top = ds.X[np.arange(ds.n), att.argmax(1)]
        q = _query(run)
        test_top = ds.X_test[np.arange(len(ds.X_test)), (ds.X_test @ q).argmax(1)]
        out.append(dict(step=s, train_xy=proj(top), train_y=ds.y, noisy=ds.noisy, test_xy=proj(test_top),
                        test_y=ds.y_test, train_acc=float(run.final("train_acc")),
                        test_acc=float(run.final("test_acc")), knobs=k))
    return out


def _frame_label(fr):
    return f"step {fr['step']}: train acc {fr['train_acc']:.2f}, test acc {fr['test_acc']:.2f}"


class SelectionExplorer(_Live):
    """Live token-selection movie (see :func:`selection_explorer`)."""

    def __init__(self, frames=SELECTION_DEFAULTS["frames"], **knobs):
        w = _ipw()
        k = dict(SELECTION_DEFAULTS, **knobs)
        k.pop("frames")
        self.fixed = {kk: k[kk] for kk in ("rho", "T", "n_test")}
        self.frame_steps = tuple(frames)
        self._cache_key, self._frames = None, None
        slow = dict(continuous_update=False, style={"description_width": "7em"})
        controls = {
            "frame": w.SelectionSlider(options=list(self.frame_steps), value=self.frame_steps[-1],
                                       description="step", continuous_update=True,
                                       style={"description_width": "7em"}),
            "signal_norm": w.FloatLogSlider(value=k["signal_norm"], base=10, min=0, max=3, step=0.05,
                                            description="‖μ‖", readout_format=".3g", **slow),
            "eta": w.FloatSlider(value=k["eta"], min=0.0, max=ETA_MAX, step=0.05, description="η (noise)", **slow),
            "d": w.SelectionSlider(options=list(D_CHOICES), value=k["d"], description="d", **slow),
            "n": w.IntSlider(value=k["n"], min=4, max=60, step=2, description="n", **slow),
            "seed": w.IntSlider(value=k["seed"], min=0, max=9, description="seed", **slow),
        }
        super().__init__(controls, "Token-selection movie: which token each sequence attends to")

    def compute(self, v):
        v = dict(v)
        frame = v.pop("frame")
        key = tuple(sorted(v.items()))
        if key != self._cache_key:  # data knobs changed: re-train (the time slider only re-draws)
            self._frames = selection_frames(self.frame_steps, **self.fixed, **v)
            self._cache_key = key
        fr = self._frames[self.frame_steps.index(frame)]
        return plots.explorer_selection(fr), _frame_label(fr), fr


def selection_twin(frames=SELECTION_DEFAULTS["frames"], start=None, dpi=TWIN_DPI, **knobs):
    """Static twin of the token-selection movie: a time slider over ``frames``."""
    data = selection_frames(frames, **knobs)
    start = len(data) - 1 if start is None else start
    return StaticTwin([fig_to_png(plots.explorer_selection(fr), dpi) for fr in data],
                      [_frame_label(fr) for fr in data], name="step", start=start,
                      alt="most-attended token of each training and test sequence")


def selection_explorer(static=False, **kw):
    """The token-selection movie: live (:class:`SelectionExplorer`) or its :func:`selection_twin`."""
    return selection_twin(**kw) if static else SelectionExplorer(**kw)


# ----------------------------------------------------------------------------------------------
# 3. Phase-diagram explorer


def phase_grid(d=PHASE_DEFAULTS["d"], signal_norm=PHASE_DEFAULTS["signal_norm"], frames=PHASE_DEFAULTS["frames"],
               cache_dir=None, **knobs):
    """One :func:`run_grid` over (d, ||mu||) recording every step of ``frames``."""
    base = {k: v for k, v in dict(PHASE_DEFAULTS, **knobs).items() if k not in ("d", "signal_norm", "frames")}
    frames = sorted({check_int("frame step", f, 1) for f in frames})
    return run_grid({"d": list(d), "signal_norm": list(signal_norm)}, base=base, steps=frames[-1],
                    record_steps=frames, cache_dir=cache_dir, progress=False)


def phase_figure(grid, step, title=None, test_threshold=0.95, panel="test_acc"):
    """The phase map of ``grid`` at the recorded step closest to ``step``; (figure, regime indices).
    ``panel``: the right panel, "test_acc" (colour scale 0.5..1) or "test_loss" (colour scale over
    the whole grid and every recorded step, so frames compare)."""
    if panel not in ("test_acc", "test_loss"):
        raise ValueError(f"panel must be 'test_acc' or 'test_loss', got {panel!r}")
    i = int(np.argmin(np.abs(grid.steps - step)))
    regime = theory.classify_regime(grid.data["train_acc"][..., i], grid.data["test_acc"][..., i], test_threshold)
    vals = grid.data[panel]
    vlim = (0.5, 1.0) if panel == "test_acc" else (float(np.nanmin(vals)), float(np.nanmax(vals)))
    fig = plots.explorer_phase(grid.axes["d"], grid.axes["signal_norm"], regime, vals[..., i],
                               title=title or f"step {int(grid.steps[i])}",
                               panel=panel.replace("_", " "), vlim=vlim)
    return fig, regime


def _phase_label(grid, step, regime):
    counts = np.bincount(np.asarray(regime).ravel(), minlength=3)
    return f"step {step}: " + ", ".join(f"{c} {r}" for r, c in zip(theory.REGIMES, counts))


class PhaseExplorer(_Live):
    """Live phase-diagram explorer (see :func:`phase_explorer`)."""

    def __init__(self, grid=None, **knobs):
        w = _ipw()
        k = dict(PHASE_DEFAULTS, **knobs)
        self.axes = dict(d=k.pop("d"), signal_norm=k.pop("signal_norm"))
        self.frame_steps = tuple(k.pop("frames"))
        self.fixed = {kk: k[kk] for kk in ("T", "rho", "n_test", "seed")}
        self._cache_key, self._grid = None, None
        if grid is not None:  # reuse a grid computed with these knobs (e.g. the static twin's)
            self.axes = {a: list(grid.axes[a]) for a in ("d", "signal_norm")}
            self.frame_steps = tuple(int(s) for s in grid.steps)
            self._cache_key, self._grid = (k["eta"], k["n"]), grid
        slow = dict(continuous_update=False, style={"description_width": "7em"})
        controls = {
            "step": w.SelectionSlider(options=list(self.frame_steps), value=self.frame_steps[-1],
                                      description="step", continuous_update=True,
                                      style={"description_width": "7em"}),
            "eta": w.FloatSlider(value=k["eta"], min=0.0, max=ETA_MAX, step=0.05, description="η (noise)", **slow),
            "n": w.IntSlider(value=k["n"], min=4, max=60, step=2, description="n", **slow),
        }
        super().__init__(controls, "Phase diagram: regime over (d, ‖μ‖)")

    def compute(self, v):
        key = (v["eta"], v["n"])
        if key != self._cache_key:  # eta or n changed: re-run the grid (the step slider only re-draws)
            self._grid = phase_grid(**self.axes, frames=self.frame_steps, eta=v["eta"], n=v["n"], **self.fixed)
            self._cache_key = key
        fig, regime = phase_figure(self._grid, v["step"], title=f"η={v['eta']:g}, n={v['n']}, step {v['step']}")
        return fig, _phase_label(self._grid, v["step"], regime), dict(regime=regime, grid=self._grid, step=v["step"])


def phase_twin(start=None, dpi=TWIN_DPI, grid=None, test_threshold=0.95, panel="test_acc", **knobs):
    """Static twin of the phase-diagram explorer: a slider over the recorded training steps (one
    grid run; pass ``grid`` to reuse one with axes ``d`` and ``signal_norm``)."""
    grid = phase_grid(**knobs) if grid is None else grid
    frames, labels = [], []
    eta, n = dict(PHASE_DEFAULTS, **knobs)["eta"], dict(PHASE_DEFAULTS, **knobs)["n"]
    for s in grid.steps:
        fig, regime = phase_figure(grid, s, title=f"η={eta:g}, n={n}, step {int(s)}",
                                   test_threshold=test_threshold, panel=panel)
        frames.append(fig_to_png(fig, dpi))
        labels.append(_phase_label(grid, int(s), regime))
    start = len(frames) - 1 if start is None else start
    return StaticTwin(frames, labels, name="step", start=start, alt="regime map over (d, signal norm)")


def phase_explorer(static=False, **kw):
    """The phase-diagram explorer: live (:class:`PhaseExplorer`) or its :func:`phase_twin`."""
    return phase_twin(**kw) if static else PhaseExplorer(**kw)
