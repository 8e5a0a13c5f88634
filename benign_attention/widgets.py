r"""Interactive explorers (:ref:`sec-playground-regime` and the next sections): each exists twice, from one code path.

* **live** (``static=False``): an ipywidgets panel that re-runs the exact engine on every change
  (needs a kernel: Binder, Colab, local Jupyter);
* **static twin** (``static=True``): the same figure evaluated over a seeded, precomputed grid of
  values, shipped as a self-contained HTML/JS slider (:class:`StaticTwin`: base64 PNGs in a
  JavaScript array, an inline script wiring an ``<input type=range>``), which works in the published
  HTML book with no kernel and no widget manager, and with the keyboard (also inside JupyterLab).
  Each frame is drawn twice, in the figure's wide layout and in its phone layout (panels stacked,
  the column at 390 px), and a ``<picture>`` shows the phone one in a narrow window
  (:data:`~benign_attention.display.PHONE_MEDIA`), as :func:`~benign_attention.display.show` does
  for figures.

The three explorers:

:func:`regime_explorer`
    knobs :math:`\lVert\mu\rVert`, :math:`d`, :math:`n`, :math:`\eta`, :math:`\rho`, :math:`T`, steps, seed -> accuracy, loss and attention over steps, and the
    regime reached (``theory.classify_regime`` by the accuracy rule, threshold 0.95, as
    :ref:`sec-playground-regime` describes; the live status line also shows the test loss that
    :prf:ref:`def-regime-finite` uses). Live runs use :func:`~benign_attention.sweeps.train_cell`,
    which caches the noise draw and the span projection, so moving :math:`\lVert\mu\rVert`, :math:`\rho` or :math:`\eta` re-runs only
    the low-dimensional loop.
:func:`selection_explorer`
    the token-selection "movie": where every training and test sequence's attention points (its
    attended token on the :math:`(\mu_{-1}, \mu_{+1})` plane) as training proceeds (time slider over recorded steps).
:func:`phase_explorer`
    the :math:`(d, \lVert\mu\rVert)` regime map and the clean test loss (as in :ref:`sec-phase-regimes`), with a
    slider over the training step (one grid run records every step).

Figures are drawn by the *Explorers* section of :mod:`benign_attention.plots`: one figure object per
explorer, laid out once and updated in place. Every PNG goes through :func:`benign_attention.display.png`
conventions: twins at :data:`~benign_attention.display.PIXEL_RATIO` device pixels per CSS pixel and
shown at their CSS size; live frames at :data:`LIVE_PIXEL_RATIO`.

Constructor arguments are validated (``ValueError`` naming the argument and its allowed range: the
range its slider offers); only the sliders themselves clamp.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import io
import itertools
import json
import math
import time
from collections import OrderedDict

import numpy as np

from . import explorer_figures, plots, theory
from .data import check_int, check_number, make_dataset, validate_config
from .display import CSS_DPI, PHONE_MEDIA, PIXEL_RATIO, png
from .engines import train
from .sweeps import run_grid, train_cell
from .validation import ArgumentTypeError, check_choice

__all__ = ["StaticTwin", "regime_explorer", "selection_explorer", "phase_explorer", "fig_to_png",
           "REGIME_DEFAULTS", "SELECTION_DEFAULTS", "PHASE_DEFAULTS"]

#: Defaults of the live regime explorer (the paper's default setting; n_test=200 keeps updates fast).
REGIME_DEFAULTS = dict(signal_norm=20.0, d=2000, n=20, eta=0.2, rho=0.1, T=8, steps=1000, seed=0, n_test=200)
#: Defaults of the token-selection movie. :math:`\rho = 0.2` as in the paper's Figure 1 (at
#: :math:`\rho = 0.1` the weak token :math:`x_3` sits within two noise standard deviations
#: :math:`1/\lVert\mu\rVert` of the noise tokens), :math:`n = 40` so that eight flipped sequences move,
#: :math:`d = 3000` (fits them within 500 steps; :math:`d = 10000` as in Figure 1 needs a 0.8 GB
#: :math:`W_0`), frames over the 2000 steps in which the flipped sequences are fitted.
SELECTION_DEFAULTS = dict(signal_norm=20.0, d=3000, n=40, eta=0.2, rho=0.2, T=8, seed=0, n_test=200,
                          frames=(0, 50, 100, 200, 300, 400, 500, 1000, 2000))
#: Defaults of the phase-diagram explorer. A coarse :math:`(d, \lVert\mu\rVert)` grid, steps recorded for the slider.
PHASE_DEFAULTS = dict(d=(100, 200, 500, 1000, 2000, 4000), signal_norm=(2, 4, 8, 16, 32, 64, 128),
                      eta=0.2, n=20, T=8, rho=0.1, seed=0, n_test=200, frames=(25, 50, 100, 200, 400, 700, 1000))

# Valid ranges offered by the live sliders (every value is accepted by data.validate_config).
D_CHOICES = (100, 200, 500, 1000, 2000, 3000, 5000)
STEP_CHOICES = (100, 200, 300, 500, 1000, 1500, 2000, 3000)
ETA_MAX = 0.45  # eta must be < 0.5; the slider stops at 0.45
MU_RANGE = (1.0, 1000.0)  # the ||mu|| slider is logarithmic: 10**0 .. 10**3
N_RANGE, T_RANGE, SEED_RANGE = (4, 60), (3, 16), (0, 9)
#: Device pixels per CSS pixel of the live explorers' frames. 1 keeps a slider update within the
#: 0.2 s design target on 2 CPU cores (a 2x frame costs about 40 ms more to draw and encode); the
#: static twins use display.PIXEL_RATIO (2).
LIVE_PIXEL_RATIO = 1


# ----------------------------------------------------------------------------------------------
# Argument checks (the sliders' ranges)


def _check_knobs(where, knobs, allowed):
    """Validate keyword knobs against ``allowed`` (name -> ("float", lo, hi) | ("int", lo, hi) |
    ("choice", values)); ValueError names the argument and its range, unknown names a TypeError."""
    out = {}
    for name, value in knobs.items():
        if name not in allowed:
            raise TypeError(f"{where}() got an unexpected keyword argument {name!r}; "
                            f"allowed: {', '.join(sorted(allowed))}")
        kind, *spec = allowed[name]
        if kind == "float":
            out[name] = check_number(name, value, *spec)
        elif kind == "int":
            out[name] = check_int(name, value, *spec)
        elif kind == "ints":
            out[name] = _check_steps(name, value, *spec)
        elif kind == "values":
            out[name] = _check_values(name, value, *spec)
        else:
            if isinstance(value, bool) or value not in spec[0]:
                raise ValueError(f"{name} must be one of {list(spec[0])} (the slider's values), got {value!r}")
            out[name] = spec[0][list(spec[0]).index(value)]
    return out


def _check_steps(name, values, low=0):
    """A non-empty increasing tuple of distinct integer steps >= low."""
    try:
        values = list(values)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of integers >= {low}, got {values!r}") from None
    steps = [check_int(f"{name}[{k}]", v, low) for k, v in enumerate(values)]
    if len(steps) < 2 or sorted(set(steps)) != steps:
        raise ValueError(f"{name} must list at least two distinct integers >= {low} in increasing order, got {values!r}")
    return tuple(steps)


def _check_values(name, values, low, high=None, low_open=False):
    """A tuple of >= 2 distinct numbers in the given range (a grid axis)."""
    try:
        values = list(values)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of numbers, got {values!r}") from None
    out = [check_number(f"{name}[{k}]", v, low, high, low_open=low_open) for k, v in enumerate(values)]
    if len(out) < 2 or len(set(out)) != len(out):
        raise ValueError(f"{name} must list at least two distinct values, got {values!r}")
    return tuple(values)


_FLOAT_KNOBS = dict(signal_norm=("float", *MU_RANGE), eta=("float", 0.0, ETA_MAX), rho=("float", 0.0, 1.0))
_REGIME_KNOBS = dict(_FLOAT_KNOBS, d=("choice", D_CHOICES), n=("int", *N_RANGE), T=("int", *T_RANGE),
                     steps=("choice", STEP_CHOICES), seed=("int", *SEED_RANGE), n_test=("int", 1, 10_000))


# ----------------------------------------------------------------------------------------------
# Static twins


def fig_to_png(fig, pixel_ratio=PIXEL_RATIO) -> bytes:
    """PNG bytes of a matplotlib figure at ``pixel_ratio`` (:func:`benign_attention.display.png`;
    the figure is closed)."""
    return png(fig, pixel_ratio)[0]


_TWIN_COUNT = itertools.count()

_TWIN_TEMPLATE = """<div class="ba-twin" id="{uid}" style="max-width:100%;margin:0.5em 0 1em 0">
<div style="display:flex;align-items:center;gap:0.8em;flex-wrap:wrap;max-width:{width}px">
<label for="{uid}-slider" style="font-weight:600">{name}</label>
<input type="range" class="ba-twin-slider" id="{uid}-slider" min="0" max="{last}" step="1" value="{start}" tabindex="0" style="flex:1 1 16em;max-width:28em" aria-label="{name}" aria-valuetext="{label}">
<span class="ba-twin-label" id="{uid}-label" aria-live="polite" style="font-family:monospace">{label}</span>
</div>
{picture_open}<img class="ba-twin-image" id="{uid}-image" alt="{alt}" width="{width}" height="{height}" style="display:block;width:{width}px;max-width:100%;height:auto" src="{src}">{picture_close}
</div>
<script>
(function () {{
  var frames = {frames};
  var phones = {phones};
  var labels = {labels};
  var root = document.getElementById("{uid}");
  if (!root) return;
  var slider = root.querySelector(".ba-twin-slider");
  var image = root.querySelector(".ba-twin-image");
  var source = root.querySelector(".ba-twin-source");
  var label = root.querySelector(".ba-twin-label");
  var last = frames.length - 1;
  function index() {{ return Math.max(0, Math.min(last, parseInt(slider.value, 10) || 0)); }}
  function show() {{
    var i = index();
    if (source && phones) source.srcset = phones[i];
    image.src = frames[i];
    label.textContent = labels[i];
    slider.setAttribute("aria-valuetext", labels[i]);
  }}
  slider.addEventListener("input", show);
  slider.addEventListener("change", show);
  // The keys a range input answers, handled here and kept from the page: in JupyterLab the
  // notebook's command-mode shortcuts would otherwise take the arrows and move focus away.
  var page = Math.max(1, Math.round(frames.length / 4));
  var moves = {{ArrowRight: 1, ArrowUp: 1, ArrowLeft: -1, ArrowDown: -1, PageUp: page, PageDown: -page}};
  slider.addEventListener("keydown", function (event) {{
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    var i = index(), j;
    if (event.key in moves) j = i + moves[event.key];
    else if (event.key === "Home") j = 0;
    else if (event.key === "End") j = last;
    else return;
    event.preventDefault();
    event.stopPropagation();
    j = Math.max(0, Math.min(last, j));
    if (j !== i) {{
      slider.value = String(j);
      show();
    }}
  }});
}})();
</script>"""


class StaticTwin:
    """A kernel-free slider over precomputed PNG frames (renders as HTML in notebooks and the book).

    ``frames`` PNGs, each either bytes or ``(bytes, (css_width, css_height))`` as returned by
    :func:`benign_attention.display.png`; ``size`` the CSS size to show them at (default: the first
    frame's, else the PNG's pixel size / ``PIXEL_RATIO``). ``labels`` one distinct text per frame,
    ``name`` the slider's caption, ``start`` the initial frame. ``phone``: optionally the same frames
    in a phone layout (same form, one per frame; ``phone_size`` as ``size``), shown instead in a
    window that matches :data:`~benign_attention.display.PHONE_MEDIA`. The HTML is a ``div.ba-twin``
    (unique id) holding ``input[type=range].ba-twin-slider`` (keyboard: arrows, Page Up/Down, Home,
    End), ``img.ba-twin-image`` (with its CSS width; scaled down, never up, in narrower columns;
    with phone frames inside a ``picture.ba-twin-picture`` whose ``source.ba-twin-source`` holds the
    phone frame) and ``.ba-twin-label``, followed by an inline script that swaps the image (and the
    phone source) and the label."""

    def __init__(self, frames, labels, name="value", start=0, alt="explorer frame", size=None, phone=None,
                 phone_size=None):
        labels = [str(x) for x in labels]
        self.frames, self.size = self._frames("frames", frames, size)
        if len(self.frames) < 2 or len(self.frames) != len(labels):
            raise ValueError(f"a twin needs >= 2 frames and one label per frame, got {len(self.frames)} frames "
                             f"and {len(labels)} labels")
        if len(set(labels)) != len(labels):
            raise ValueError(f"twin labels must be distinct, got {labels}")
        self.phone, self.phone_size = (None, None) if phone is None else self._frames("phone", phone, phone_size)
        if self.phone is not None and len(self.phone) != len(self.frames):
            raise ValueError(f"phone must hold one frame per frame ({len(self.frames)}), got {len(self.phone)}")
        self.labels, self.name, self.alt = labels, str(name), str(alt)
        self.start = check_int("start", start, 0, len(self.frames) - 1)
        digest = hashlib.sha256(b"".join(self.frames) + "|".join(labels).encode()).hexdigest()[:10]
        self.uid = f"ba-twin-{digest}-{next(_TWIN_COUNT)}"

    @staticmethod
    def _frames(what, frames, size):
        """(PNG bytes of each frame, CSS size): frames given as bytes or (bytes, css size)."""
        frames = list(frames)
        sizes = [f[1] for f in frames if isinstance(f, tuple)]
        frames = [bytes(f[0]) if isinstance(f, tuple) else bytes(f) for f in frames]
        for k, f in enumerate(frames):
            if not f[:8] == b"\x89PNG\r\n\x1a\n":
                raise ValueError(f"{'frame' if what == 'frames' else what + ' frame'} {k} is not PNG data")
        if size is None and frames:
            size = sizes[0] if sizes else tuple(round(int.from_bytes(frames[0][o:o + 4], "big") / PIXEL_RATIO)
                                                for o in (16, 20))
        if size is not None:
            size = (check_int(f"{what} size[0]", size[0], 1), check_int(f"{what} size[1]", size[1], 1))
        return frames, size

    @property
    def html(self) -> str:
        # every frame a data URL: the book's build (book/_ext/bookfixes.py) turns each into a file
        b64 = ["data:image/png;base64," + base64.b64encode(f).decode("ascii") for f in self.frames]
        phones = None if self.phone is None else ["data:image/png;base64," + base64.b64encode(f).decode("ascii")
                                                  for f in self.phone]
        picture_open = picture_close = ""
        if phones is not None:
            pw, ph = self.phone_size
            picture_open = (f'<picture class="ba-twin-picture"><source class="ba-twin-source" media="{PHONE_MEDIA}" '
                            f'srcset="{phones[self.start]}" width="{pw}" height="{ph}">')
            picture_close = "</picture>"
        return _TWIN_TEMPLATE.format(
            uid=self.uid, name=html.escape(self.name), last=len(b64) - 1, start=self.start,
            label=html.escape(self.labels[self.start]), alt=html.escape(self.alt), src=b64[self.start],
            width=self.size[0], height=self.size[1], picture_open=picture_open, picture_close=picture_close,
            frames=json.dumps(b64), phones=json.dumps(phones),
            labels=json.dumps(self.labels).replace("</", "<\\/"))

    @property
    def nbytes(self) -> int:
        """Size of the HTML (the page weight this twin adds, phone frames included)."""
        return len(self.html.encode())

    def _repr_html_(self):
        return self.html

    def __repr__(self):
        return f"StaticTwin({len(self.frames)} frames, {self.nbytes / 1e3:.0f} kB, id={self.uid!r})"


def _compact(frame):
    """A twin frame ``(png, css size)`` re-encoded with a 256-colour palette (no dithering): the
    explorer figures are flat colours plus antialiasing, which a palette keeps faithfully at about
    a third of the bytes. Pixel size, hence sharpness, is unchanged."""
    from PIL import Image

    data, size = frame
    img = Image.open(io.BytesIO(data)).convert("RGB")
    buf = io.BytesIO()
    img.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(
        buf, format="png", optimize=True)
    return buf.getvalue(), size


def _twin_frame(figure):
    """One twin frame of an explorer figure object: display.png at PIXEL_RATIO, palette-compacted."""
    return _compact(png(figure.fig, close=False))


def _twin_frames(figure, updates):
    """Render one figure object through a sequence of updates: [(png bytes, css size)]."""
    out = []
    for update in updates:
        update(figure)
        out.append(_twin_frame(figure))
    return out


def _twin(make_figure, updates, labels, **kw):
    """A :class:`StaticTwin` of the explorer figure ``make_figure(layout)`` through ``updates``, its
    frames drawn in the wide layout and again in the phone layout."""
    frames = _twin_frames(make_figure("wide"), updates)
    phone = _twin_frames(make_figure("phone"), updates)
    return StaticTwin(frames, labels, phone=phone, **kw)


# ----------------------------------------------------------------------------------------------
# Live scaffolding


def _ipw():
    try:
        import ipywidgets
    except ImportError as exc:  # pragma: no cover - ipywidgets is a dependency
        raise ImportError("live explorers need ipywidgets (pip install ipywidgets)") from exc
    return ipywidgets


_STYLE = {"description_width": "initial"}  # descriptions at their natural width: never cut


def _png_fast(fig, pixel_ratio):
    """PNG of ``fig`` drawn on its Agg canvas at ``CSS_DPI * pixel_ratio`` and encoded with light
    zlib compression (a live frame travels only to the local browser): (bytes, css size)."""
    from PIL import Image

    dpi = CSS_DPI * pixel_ratio
    if fig.dpi != dpi:
        fig.set_dpi(dpi)
    fig.canvas.draw()
    w, h = fig.canvas.get_width_height(physical=True)
    img = Image.frombuffer("RGBA", (w, h), fig.canvas.buffer_rgba(), "raw", "RGBA", 0, 1).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="png", compress_level=1)
    return buf.getvalue(), (round(w / pixel_ratio), round(h / pixel_ratio))


class _Live:
    """Controls + an Image + a status line; ``update()`` recomputes and re-renders.

    Subclasses set ``self.figure`` (an explorer figure object of :mod:`plots`, kept for the panel's
    life and updated in place), ``controls`` (name -> widget) and implement
    ``compute(values) -> (draw, text, result)`` where ``draw(figure)`` updates the figure.
    ``self.widget`` is the ipywidgets box to display; ``self.result`` the last result;
    ``self.defaults`` the control values it was built with."""

    def __init__(self, controls, title, pixel_ratio=LIVE_PIXEL_RATIO, extra=()):
        w = _ipw()
        self.controls, self.pixel_ratio = controls, pixel_ratio
        self.image = w.Image(format="png", layout=w.Layout(max_width="100%", height="auto"))
        self.status = w.HTML()
        self.note = w.HTML()
        self.result = None
        self.renders = 0
        self.timings = []  # (compute seconds, render seconds) of every update
        self._muted = False
        rows = list(controls.values())
        grid = w.GridBox(rows, layout=w.Layout(grid_template_columns="repeat(2, minmax(20em, 1fr))"))
        self.widget = w.VBox([w.HTML(f"<b>{html.escape(title)}</b>"), grid, *extra, self.status, self.note, self.image])
        for c in rows:
            c.observe(self._on_change, names="value")
        self.defaults = self.values()
        self.update()

    def values(self):
        return {k: c.value for k, c in self.controls.items()}

    def _on_change(self, _change):
        if not self._muted:
            self.update()

    def set(self, **values):
        """Set several controls at once and update once."""
        unknown = set(values) - set(self.controls)
        if unknown:
            raise ValueError(f"unknown control(s) {sorted(unknown)}; controls: {list(self.controls)}")
        self._muted = True
        try:
            for k, v in values.items():
                self.controls[k].value = v
        finally:
            self._muted = False
        self.update()

    @contextlib.contextmanager
    def trial(self, **values):
        """Move some controls as a reader would (one update per control), then put every control
        back where it was (one more update): checks leave the panel as the reader left it."""
        saved = self.values()
        try:
            for k, v in values.items():
                if k not in self.controls:
                    raise ValueError(f"unknown control {k!r}; controls: {list(self.controls)}")
                self.controls[k].value = v
            yield self
        finally:
            if self.values() != saved:
                self.set(**saved)

    def update(self):
        t0 = time.perf_counter()
        self.status.value = "<i>computing…</i>"
        try:
            draw, text, result = self.compute(self.values())
        except ValueError as exc:  # a combination the engine rejects: explain, keep the last figure
            self.status.value = f"<span style='color:#d62728'>not run: {html.escape(str(exc))}</span>"
            return
        t1 = time.perf_counter()
        draw(self.figure)
        data, (width, _) = _png_fast(self.figure.fig, self.pixel_ratio)
        self.image.value, self.image.width = data, str(width)
        self.result = result
        self.renders += 1
        t2 = time.perf_counter()
        self.timings.append((t1 - t0, t2 - t1))
        self.status.value = f"{text} <span style='color:#777'>({t2 - t0:.2f} s)</span>"

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


@contextlib.contextmanager
def _one_torch_thread():
    """Run a live update's engine on one torch thread. Its tensors are small (m <= nT + 2 = 162 at
    the defaults), so a second thread gains little on an idle machine, while on a shared one (a
    2-core Binder, a loaded laptop) the two threads wait for each other: measured on 2 busy cores,
    one ||mu|| update's engine took 0.10 s on one thread and 0.20-0.31 s on two."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _regime_text(knobs, regime, tr, te, loss):
    color = plots.REGIME_COLORS[regime]
    return (f"<b style='color:{color}'>{regime}</b>: train accuracy {tr:.2f} (observed labels), "
            f"test loss {loss:.3f}, test accuracy {te:.3f}; "
            f"SNR = ‖μ‖/(σ√d) = {theory.snr(knobs['signal_norm'], knobs['d']):.3g}")


# ----------------------------------------------------------------------------------------------
# 1. Regime explorer


def regime_result(record_every=10, **knobs):
    """Run one cell with :func:`~benign_attention.sweeps.train_cell`; returns (steps, history, regime name, knobs)."""
    knobs = dict(REGIME_DEFAULTS, **knobs)
    steps = knobs.pop("steps")
    run = train_cell(steps=steps, record_every=record_every, **knobs)
    regime = theory.classify_regime(run.final("train_acc"), run.final("test_acc"))
    return run.steps, run.history, regime, dict(knobs, steps=steps)


def _regime_title(knobs):
    return (f"‖μ‖={knobs['signal_norm']:g}, d={knobs['d']}, n={knobs['n']}, η={knobs['eta']:g}, "
            f"ρ={knobs['rho']:g}, T={knobs['T']}, seed={knobs['seed']}")


def regime_figure(steps, hist, regime, knobs):
    """One closed regime-explorer Figure (:class:`~benign_attention.explorer_figures.RegimeFigure`)."""
    return explorer_figures.explorer_regime(steps, hist, regime, title=_regime_title(knobs))


class RegimeExplorer(_Live):
    """Live regime explorer (see :func:`regime_explorer`)."""

    def __init__(self, **knobs):
        w = _ipw()
        k = dict(REGIME_DEFAULTS, **_check_knobs("regime_explorer", knobs, _REGIME_KNOBS))
        validate_config(**{kk: v for kk, v in k.items() if kk != "steps"})
        self.n_test = k["n_test"]
        self.figure = explorer_figures.RegimeFigure()
        opts = dict(continuous_update=False, style=_STYLE)
        controls = {
            "signal_norm": w.FloatLogSlider(value=k["signal_norm"], base=10, min=math.log10(MU_RANGE[0]),
                                            max=math.log10(MU_RANGE[1]), step=0.05, description="‖μ‖",
                                            readout_format=".3g", **opts),
            "eta": w.FloatSlider(value=k["eta"], min=0.0, max=ETA_MAX, step=0.05, description="η (noise)", **opts),
            "rho": w.FloatSlider(value=k["rho"], min=0.0, max=1.0, step=0.05, description="ρ (weak signal)", **opts),
            "d": w.SelectionSlider(options=list(D_CHOICES), value=k["d"], description="d", **opts),
            "n": w.IntSlider(value=k["n"], min=N_RANGE[0], max=N_RANGE[1], step=2, description="n", **opts),
            "T": w.IntSlider(value=k["T"], min=T_RANGE[0], max=T_RANGE[1], description="T (tokens)", **opts),
            "steps": w.SelectionSlider(options=list(STEP_CHOICES), value=k["steps"], description="GD steps", **opts),
            "seed": w.IntSlider(value=k["seed"], min=SEED_RANGE[0], max=SEED_RANGE[1], description="seed", **opts),
        }
        super().__init__(controls, "Regime explorer: drag a knob, the exact engine re-trains")

    def compute(self, v):
        with _one_torch_thread():
            steps, hist, regime, knobs = regime_result(record_every=max(1, v["steps"] // 50),
                                                       n_test=self.n_test, **v)
        n_noisy = math.ceil(v["eta"] * v["n"] - 1e-9)
        self.note.value = (f"<span style='color:#777'>{n_noisy} of n={v['n']} training labels flipped "
                           f"(⌈ηn⌉); η < 0.5 and T ≥ 3 are required, so the sliders stop at η = {ETA_MAX} "
                           f"and T = 3; d ≤ {D_CHOICES[-1]} keeps an update interactive.</span>")
        tr, te = float(hist["train_acc"][-1]), float(hist["test_acc"][-1])
        loss = float(hist["test_loss"][-1])
        draw = lambda fig: fig.update(steps, hist, regime, _regime_title(knobs))  # noqa: E731
        return (draw, _regime_text(knobs, regime, tr, te, loss),
                dict(regime=regime, train_acc=tr, test_acc=te, test_loss=loss, steps=steps, history=hist,
                     knobs=knobs))


def regime_twin(vary="signal_norm", values=(2, 5, 10, 20, 50, 100, 300), start=None, alt=None, **knobs):
    """Static twin of the regime explorer: one frame per value of knob ``vary`` (a member knob,
    ``signal_norm``/``rho``/``eta``, runs as one batched :func:`~benign_attention.sweeps.run_grid`; other knobs one cell each).
    ``alt``: the image's alt text (default: a generic description of the panels)."""
    if vary not in _KNOB_NAMES or vary == "step":
        raise ValueError(f"vary must be one of {[k for k in _KNOB_NAMES if k != 'step']}, got {vary!r}")
    k = dict(REGIME_DEFAULTS, **knobs)
    steps = check_int("steps", k.pop("steps"), 1)
    values = list(values)
    base = {kk: vv for kk, vv in k.items() if kk != vary}
    grid = run_grid({vary: values}, base=base, steps=steps, record_every=max(1, steps // 100),
                    dtype=__import__("torch").float64, progress=False)
    updates, labels = [], []
    for j, v in enumerate(values):
        hist = {key: grid.data[key][j] for key in grid.data}
        regime = theory.classify_regime(hist["train_acc"][-1], hist["test_acc"][-1])
        knobs_j = dict(base, **{vary: v}, steps=steps)
        updates.append(lambda fig, h=hist, r=regime, kj=knobs_j: fig.update(grid.steps, h, r, _regime_title(kj)))
        labels.append(f"{_KNOB_NAMES.get(vary, vary)} = {v:g}: {regime}")
    if start is None:
        start = int(np.argmin([abs(v - REGIME_DEFAULTS.get(vary, values[0])) for v in values]))
    return _twin(explorer_figures.RegimeFigure, updates, labels, name=_KNOB_NAMES.get(vary, vary),
                 start=start, alt=alt or "regime explorer: accuracy, loss and attention over gradient steps")


_KNOB_NAMES = {"signal_norm": "‖μ‖", "eta": "η", "rho": "ρ", "d": "d", "n": "n", "T": "T", "step": "step"}


def regime_explorer(static=False, **kw):
    """The regime explorer. ``static=False``: a live ipywidgets panel (:class:`RegimeExplorer`; knobs
    as keyword defaults, each within its slider's range). ``static=True``: its :func:`regime_twin`
    (keywords ``vary``, ``values``, ``start`` and fixed knobs). Shown in :ref:`sec-playground-regime`;
    a knob outside its slider's range raises ValueError naming it."""
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


def _softmax(a):
    a = a - a.max(-1, keepdims=True)
    e = np.exp(a)
    return e / e.sum(-1, keepdims=True)


_SELECTION_CACHE: "OrderedDict[tuple, list]" = OrderedDict()


def selection_frames(frames=SELECTION_DEFAULTS["frames"], **knobs):
    r"""Train once, in chunks ending at each step of ``frames`` (``train(..., resume=run)``), and
    record per frame where every sequence's attention points: its *attended token*
    :math:`\hat x = \sum_t s_t x_t` (:math:`s` its attention) projected on
    :math:`(\mu_{-1}, \mu_{+1}) / \lVert\mu\rVert^2`, for the training sequences (from the run's attention)
    and the test sequences (softmax of the scores :math:`x_t^\top q` with :math:`q = Wp` from the run's
    state, computed in the token span: :math:`O(dm)` per frame, never the :math:`d \times d` matrix).

    Returns a list of frame dicts for :class:`~benign_attention.explorer_figures.SelectionFigure`: ``step``, ``train_xy`` ``(n, 2)``,
    ``train_path`` (frames so far, ``n``, 2), ``train_y`` (observed), ``noisy``, ``test_xy``, ``test_y``,
    accuracies, ``noisy_fitted`` (flipped labels fitted), ``noisy_x3`` (mean attention of the flipped
    sequences on :math:`x_3`), ``test_x1`` (mean test attention on :math:`x_1`) and ``knobs``. The last two results are cached (the live movie reuses the twin's)."""
    k = {kk: v for kk, v in dict(SELECTION_DEFAULTS, **knobs).items() if kk != "frames"}
    frames = _check_steps("frames", frames)
    key = (frames, tuple(sorted(k.items())))
    if key in _SELECTION_CACHE:
        _SELECTION_CACHE.move_to_end(key)
        return _SELECTION_CACHE[key]
    ds = make_dataset(**k)
    norm2 = float(ds.mu_pos @ ds.mu_pos)
    basis = np.stack([ds.mu_neg, ds.mu_pos], -1) / norm2  # (d, 2)
    train_tok, test_tok = ds.X @ basis, ds.X_test @ basis  # every token projected: (n, T, 2), (N, T, 2)
    out, path, run, done = [], [], None, 0
    for s in frames:
        run = train(ds, steps=s - done, record_steps=[s - done], resume=run)
        done = s
        att = run.final("train_attention")
        xy = np.einsum("nt,ntk->nk", att, train_tok)
        path.append(xy)
        test_att = _softmax(ds.X_test @ _query(run))
        fitted = np.sign(run.final("train_outputs")) == ds.y
        out.append(dict(step=s, train_xy=xy, train_path=np.stack(path), train_y=ds.y, noisy=ds.noisy,
                        test_xy=np.einsum("nt,ntk->nk", test_att, test_tok), test_y=ds.y_test,
                        train_acc=float(run.final("train_acc")), test_acc=float(run.final("test_acc")),
                        test_x1=float(test_att[:, 0].mean()), noisy_fitted=int(fitted[ds.noisy].sum()),
                        noisy_x3=float(att[ds.noisy, 2].mean()) if ds.noisy.any() else float("nan"),
                        knobs=k))
    _SELECTION_CACHE[key] = out
    while len(_SELECTION_CACHE) > 2:
        _SELECTION_CACHE.popitem(last=False)
    return out


def _frame_label(fr):
    n_noisy = int(np.sum(fr["noisy"]))
    flipped = f", {fr['noisy_fitted']}/{n_noisy} flipped fitted" if n_noisy else ""
    return f"step {fr['step']}: train acc {fr['train_acc']:.2f}{flipped}, test acc {fr['test_acc']:.2f}"


_SELECTION_D_CHOICES = tuple(sorted(set(D_CHOICES) | {10_000}))
_SELECTION_KNOBS = dict(_FLOAT_KNOBS, d=("choice", _SELECTION_D_CHOICES), n=("int", *N_RANGE),
                        T=("int", *T_RANGE), seed=("int", *SEED_RANGE), n_test=("int", 1, 10_000),
                        frames=("ints", 0))


class SelectionExplorer(_Live):
    """Live token-selection movie (see :func:`selection_explorer`)."""

    def __init__(self, **knobs):
        w = _ipw()
        k = dict(SELECTION_DEFAULTS, **_check_knobs("selection_explorer", knobs, _SELECTION_KNOBS))
        self.frame_steps = k.pop("frames")
        validate_config(**k)
        self.fixed = {kk: k[kk] for kk in ("rho", "T", "n_test")}
        self.figure = explorer_figures.SelectionFigure(k["rho"])
        self._cache_key, self._frames = None, None
        slow = dict(continuous_update=False, style=_STYLE)
        controls = {
            "frame": w.SelectionSlider(options=list(self.frame_steps), value=self.frame_steps[-1],
                                       description="step", continuous_update=True, style=_STYLE),
            "signal_norm": w.FloatLogSlider(value=k["signal_norm"], base=10, min=math.log10(MU_RANGE[0]),
                                            max=math.log10(MU_RANGE[1]), step=0.05, description="‖μ‖",
                                            readout_format=".3g", **slow),
            "eta": w.FloatSlider(value=k["eta"], min=0.0, max=ETA_MAX, step=0.05, description="η (noise)", **slow),
            "d": w.SelectionSlider(options=list(_SELECTION_D_CHOICES), value=k["d"], description="d", **slow),
            "n": w.IntSlider(value=k["n"], min=N_RANGE[0], max=N_RANGE[1], step=2, description="n", **slow),
            "seed": w.IntSlider(value=k["seed"], min=SEED_RANGE[0], max=SEED_RANGE[1], description="seed", **slow),
        }
        super().__init__(controls, "Token-selection movie: where each sequence's attention points")

    def compute(self, v):
        v = dict(v)
        frame = v.pop("frame")
        key = tuple(sorted(v.items()))
        if key != self._cache_key:  # data knobs changed: re-train (the time slider only re-draws)
            self._frames = selection_frames(self.frame_steps, **self.fixed, **v)
            self._cache_key = key
        fr = self._frames[self.frame_steps.index(frame)]
        return (lambda fig: fig.update(fr)), _frame_label(fr), fr


def selection_twin(frames=SELECTION_DEFAULTS["frames"], start=None, alt=None, **knobs):
    """Static twin of the token-selection movie: a time slider over ``frames`` (``alt``: the image's
    alt text, default a generic description)."""
    knobs = _check_knobs("selection_explorer", knobs, _SELECTION_KNOBS)
    data = selection_frames(frames, **knobs)
    start = len(data) - 1 if start is None else start
    rho = data[0]["knobs"]["rho"]
    updates = [lambda fig, fr=fr: fig.update(fr) for fr in data]
    return _twin(lambda layout: explorer_figures.SelectionFigure(rho, layout=layout), updates,
                 [_frame_label(fr) for fr in data], name="step", start=start,
                 alt=alt or "attended token of each training and test sequence on the (mu_-1, mu_+1) plane")


def selection_explorer(static=False, **kw):
    """The token-selection movie: live (:class:`SelectionExplorer`) or its :func:`selection_twin`.

    Shown in :ref:`sec-playground-movie`; a knob outside its slider's range raises ValueError naming it.
    """
    return selection_twin(**kw) if static else SelectionExplorer(**kw)


# ----------------------------------------------------------------------------------------------
# 3. Phase-diagram explorer

_PHASE_KNOBS = dict(d=("values", 2, None), signal_norm=("values", 0.0, None, True), frames=("ints", 1),
                    eta=("float", 0.0, ETA_MAX), n=("int", *N_RANGE), T=("int", 3), rho=("float", 0.0),
                    seed=("int", 0), n_test=("int", 1, 10_000))


def phase_grid(d=PHASE_DEFAULTS["d"], signal_norm=PHASE_DEFAULTS["signal_norm"], frames=PHASE_DEFAULTS["frames"],
               cache_dir=None, **knobs):
    r"""One :func:`~benign_attention.sweeps.run_grid` over :math:`(d, \lVert\mu\rVert)` recording every step of ``frames``."""
    base = {k: v for k, v in dict(PHASE_DEFAULTS, **knobs).items() if k not in ("d", "signal_norm", "frames")}
    frames = _check_steps("frames", frames, 1)
    return run_grid({"d": list(d), "signal_norm": list(signal_norm)}, base=base, steps=frames[-1],
                    record_steps=frames, cache_dir=cache_dir, progress=False)


class _PhaseRunner:
    """The live phase explorer's grid runs: one :func:`~benign_attention.sweeps.run_grid` per value of
    d (one family: every ||mu||) in two threads with one torch thread each, reporting each finished
    family (for a progress bar).
    With ``engine="exact"``, ``reuse_draws`` keeps each family's noise draw and token-span projection,
    so the eta slider re-runs only the low-dimensional loops, and results equal :func:`phase_grid`'s
    (the same grid mechanism, engine, dtype and cells). With ``engine="gram"`` each family is drawn by
    the sampler (:mod:`~benign_attention.gram`): no d-dimensional set-up at all, so a new n costs what a
    new eta costs; the cells agree with the exact engine's in law (Gaussian W_0), not draw by draw."""

    def run(self, axes, frames, base, on_family=None, workers=2, engine="exact"):
        from concurrent.futures import ThreadPoolExecutor, as_completed

        from .sweeps import GridResult

        ds, mus, frames = list(axes["d"]), list(axes["signal_norm"]), [int(f) for f in frames]
        how = dict(reuse_draws=True) if engine == "exact" else dict(engine="gram")

        def family(d):
            return run_grid({"signal_norm": mus}, base=dict(base, d=d), steps=frames[-1], record_steps=frames,
                            progress=False, workers=1, **how)

        results = {}
        with _one_torch_thread(), ThreadPoolExecutor(max(1, min(workers, len(ds)))) as pool:
            futures = {pool.submit(family, d): d for d in ds}
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                if on_family is not None:
                    on_family(len(results), len(ds), futures[fut])
        first = results[ds[0]]
        data = {k: np.stack([results[d].data[k] for d in ds]) for k in first.data}
        return GridResult({"d": ds, "signal_norm": mus}, first.steps, data)


def _phase_vlim(grid, panel):
    if panel == "test_acc":
        return (0.5, 1.0)
    vals = grid.data[panel]
    return (float(np.nanmin(vals)), float(np.nanmax(vals)))


def _check_panel(panel):
    return check_choice("panel", panel, ("test_acc", "test_loss"))


def _check_phase_grid(grid, name="grid"):
    """``grid`` if it is a phase grid: a :class:`~benign_attention.sweeps.GridResult` whose axes are
    exactly ``d`` then ``signal_norm`` and that recorded train and test accuracy and test loss."""
    from .sweeps import GridResult

    if not isinstance(grid, GridResult):
        raise ArgumentTypeError(f"{name} must be a GridResult from run_grid (or phase_grid), got {type(grid).__name__}")
    if list(grid.axes) != ["d", "signal_norm"]:
        raise ValueError(f"{name} must have the axes ['d', 'signal_norm'] in that order (a phase diagram), got "
                         f"{list(grid.axes)}; run it with run_grid({{'d': [...], 'signal_norm': [...]}}, ...)")
    missing = [k for k in ("train_acc", "test_acc", "test_loss") if k not in grid.data]
    if missing:
        raise ValueError(f"{name} must have recorded {missing}")
    return grid


def _phase_regime(grid, step, loss_threshold=theory.LOSS_THRESHOLD):
    """(index of the recorded step closest to ``step``, regime indices of every cell there, by the
    loss rule of :func:`~benign_attention.theory.classify_regime`)."""
    i = int(np.argmin(np.abs(grid.steps - step)))
    return i, theory.classify_regime(grid.data["train_acc"][..., i], test_loss=grid.data["test_loss"][..., i],
                                     loss_threshold=loss_threshold)


def phase_figure(grid, step, title=None, loss_threshold=theory.LOSS_THRESHOLD, panel="test_loss", figure=None):
    r"""The phase map of ``grid`` at the recorded step closest to ``step``; (figure, regime indices).
    Regimes by the loss rule of :prf:ref:`def-regime-finite` (harmful: every label fitted and clean
    test loss :math:`\ge` ``loss_threshold``).
    ``panel``: the right panel, "test_loss" (colour scale over the whole grid and every recorded
    step, so frames compare; the quantity of :ref:`sec-phase-regimes`) or "test_acc" (0.5 to 1).
    ``figure``: a :class:`~benign_attention.explorer_figures.PhaseFigure` of this grid to update in place (default: a new one,
    returned closed)."""
    _check_panel(panel)
    grid = _check_phase_grid(grid)
    step = check_number("step", step)
    i, regime = _phase_regime(grid, step, loss_threshold)
    label = panel.replace("_", " ")
    if figure is None:
        figure = explorer_figures.PhaseFigure(grid.axes["d"], grid.axes["signal_norm"], label, _phase_vlim(grid, panel))
    else:
        figure.value_mesh.set_clim(*_phase_vlim(grid, panel))
    fig = figure.update(regime, grid.data[panel][..., i], title=title or f"step {int(grid.steps[i])}")
    return fig, regime


def _phase_label(grid, step, regime):
    counts = np.bincount(np.asarray(regime).ravel(), minlength=3)
    return f"step {step}: " + ", ".join(f"{c} {r}" for r, c in zip(theory.REGIMES, counts))


class PhaseExplorer(_Live):
    """Live phase-diagram explorer (see :func:`phase_explorer`)."""

    def __init__(self, grid=None, panel="test_loss", engine=None, **knobs):
        w = _ipw()
        k = dict(PHASE_DEFAULTS, **_check_knobs("phase_explorer", knobs, _PHASE_KNOBS))
        self.panel = _check_panel(panel)
        # the engine of new (eta, n) grids: by default the sampler, or the exact engine when the first grid
        # is given (it comes from the exact engine's phase_grid, and every grid of one explorer should agree)
        engine = ("exact" if grid is not None else "gram") if engine is None else engine
        self.engine = check_choice("engine", engine, ("exact", "gram"))
        self.axes = dict(d=list(k.pop("d")), signal_norm=list(k.pop("signal_norm")))
        self.frame_steps = tuple(k.pop("frames"))
        self.fixed = {kk: k[kk] for kk in ("T", "rho", "n_test", "seed")}
        self._runner, self._grids = _PhaseRunner(), OrderedDict()  # (eta, n) -> grid
        if grid is not None:
            grid = _check_phase_grid(grid)  # reuse a grid computed with these knobs (e.g. the static twin's)
            self.axes = {a: list(grid.axes[a]) for a in ("d", "signal_norm")}
            self.frame_steps = tuple(int(s) for s in grid.steps)
            self._grids[(k["eta"], k["n"])] = grid
        self.figure = explorer_figures.PhaseFigure(self.axes["d"], self.axes["signal_norm"], self.panel.replace("_", " "))
        slow = dict(continuous_update=False, style=_STYLE)
        controls = {
            "step": w.SelectionSlider(options=list(self.frame_steps), value=self.frame_steps[-1],
                                      description="step", continuous_update=True, style=_STYLE),
            "eta": w.FloatSlider(value=k["eta"], min=0.0, max=ETA_MAX, step=0.05, description="η (noise)", **slow),
            "n": w.IntSlider(value=k["n"], min=N_RANGE[0], max=N_RANGE[1], step=2, description="n", **slow),
        }
        self.progress = w.IntProgress(value=0, min=0, max=len(self.axes["d"]), description="grid",
                                      style=_STYLE, layout=w.Layout(visibility="hidden", width="24em"))
        super().__init__(controls, "Phase diagram: regime over (d, ‖μ‖)", extra=(self.progress,))

    def _grid(self, eta, n):
        key = (eta, n)
        if key in self._grids:
            self._grids.move_to_end(key)
            return self._grids[key]
        bar = self.progress
        bar.value, bar.layout.visibility = 0, "visible"

        def on_family(done, total, d):
            bar.value = done
            self.status.value = f"<i>computing… {done}/{total} values of d done (last: d = {d})</i>"

        try:
            grid = self._runner.run(self.axes, self.frame_steps, dict(self.fixed, eta=eta, n=n), on_family,
                                    engine=self.engine)
        finally:
            bar.layout.visibility = "hidden"
        self._grids[key] = grid
        while len(self._grids) > 16:
            self._grids.popitem(last=False)
        return grid

    def compute(self, v):
        grid = self._grid(v["eta"], v["n"])  # eta or n changed: re-run (cached); the step slider only re-draws
        title = f"η={v['eta']:g}, n={v['n']}, step {v['step']}"
        regime = _phase_regime(grid, v["step"])[1]
        draw = lambda fig: phase_figure(grid, v["step"], title=title, panel=self.panel, figure=fig)  # noqa: E731
        return draw, _phase_label(grid, v["step"], regime), dict(regime=regime, grid=grid, step=v["step"])


def phase_twin(start=None, grid=None, loss_threshold=theory.LOSS_THRESHOLD, panel="test_loss", alt=None,
               **knobs):
    """Static twin of the phase-diagram explorer: a slider over the recorded training steps (one
    grid run; pass ``grid`` to reuse one with axes ``d`` and ``signal_norm``; ``alt``: the image's
    alt text, default a generic description)."""
    _check_panel(panel)
    knobs = _check_knobs("phase_explorer", knobs, _PHASE_KNOBS)
    grid = phase_grid(**knobs) if grid is None else _check_phase_grid(grid)
    eta, n = dict(PHASE_DEFAULTS, **knobs)["eta"], dict(PHASE_DEFAULTS, **knobs)["n"]
    labels, updates = [], []
    for s in grid.steps:
        labels.append(_phase_label(grid, int(s), _phase_regime(grid, s, loss_threshold)[1]))
        updates.append(lambda fig, s=s: phase_figure(grid, s, title=f"η={eta:g}, n={n}, step {int(s)}",
                                                     loss_threshold=loss_threshold, panel=panel, figure=fig))
    start = len(labels) - 1 if start is None else start
    return _twin(lambda layout: explorer_figures.PhaseFigure(grid.axes["d"], grid.axes["signal_norm"],
                                                             panel.replace("_", " "), _phase_vlim(grid, panel),
                                                             layout=layout),
                 updates, labels, name="step", start=start, alt=alt or "regime map over (d, signal norm)")


def phase_explorer(static=False, **kw):
    """The phase-diagram explorer: live (:class:`PhaseExplorer`) or its :func:`phase_twin`.

    The live explorer's ``engine`` (``"gram"`` or ``"exact"``) computes the grid of each new (eta, n).
    By default it is the gram sampler (no d-dimensional set-up: a slider move re-runs 42 small loops),
    or the exact engine when a first ``grid`` is given, so that every map of one explorer comes from
    one engine. The static twin always uses the exact engine (:func:`phase_grid`).

    Shown in :ref:`sec-playground-phase`; a knob outside its slider's range raises ValueError naming it.
    """
    return phase_twin(**kw) if static else PhaseExplorer(**kw)
