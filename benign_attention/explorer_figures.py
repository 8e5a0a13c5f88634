"""The explorers' figures (:ref:`sec-playground-regime`, :ref:`sec-playground-movie`,
:ref:`sec-playground-phase`), drawn for :mod:`benign_attention.widgets`; their static twins render
through these too.

Each explorer figure is a small class that lays its Figure out once and then changes its artists'
data in place (``update``): the live explorers keep one per panel and re-render it on every slider
move, the static twins render every frame from the same object, so frames share one layout and do
not jitter. The figures are sized for the book's text column (``EXPLORER_WIDTH`` inches = 720 CSS px
at ``display.CSS_DPI``, shown 672 px wide in the column at 1280 px) with text of at least 8.5 pt
(11 CSS px there). Each also has a phone layout (``layout="phone"``): its panels stacked one per
row, ``figure_layout.PHONE_WIDTH`` wide (the column at 390 px), in the same fonts, so that a static
twin carries a second set of frames for phones. Legends sit in a row of their own
below the panels, never over data. The ``explorer_*`` functions return one closed Figure. The
shared style (token and regime colours, the half-planes of the head) comes from
:mod:`benign_attention.plots`.
"""
from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import FormatStrFormatter, NullLocator

from .display import COLORS, CSS_DPI, PHONE_COLUMN_CSS_PX
from .metrics import TOKEN_GROUPS
from .plots import (REGIME_CMAP, REGIME_COLORS, TOKEN_COLORS, TOKEN_LABELS, accuracy_loss_panels, cell_edges,
                    half_planes, regime_handles)
from .theory import REGIMES
from .validation import ArgumentTypeError, check_array, check_grid_axis

#: Width of every explorer figure in inches: the book's text column at display.CSS_DPI.
EXPLORER_WIDTH = 7.2
#: Width in inches of the explorer figures' phone layout: the text column at a 390 px window.
EXPLORER_PHONE_WIDTH = PHONE_COLUMN_CSS_PX / CSS_DPI
#: Font sizes (points) of the explorer figures (both layouts: >= 8.5 pt is >= 11 CSS px in either).
EXPLORER_FONTS = dict(tick=8.5, label=9.0, title=9.5, legend=8.5, suptitle=10.0, note=8.5)
_LAYOUTS = ("wide", "phone")


class _ExplorerFigure:
    """A Figure (not registered with pyplot, so no backend ever shows it on its own) with an Agg
    canvas. The first render lays it out (constrained layout); the layout is then frozen.
    ``layout``: "wide" (:data:`EXPLORER_WIDTH`, panels side by side) or "phone"
    (:data:`EXPLORER_PHONE_WIDTH`, panels stacked; the subclass lays out its grid by ``self.phone``)."""

    def __init__(self, height, nrows, ncols, height_ratios=None, width_ratios=None, layout="wide"):
        if layout not in _LAYOUTS:
            raise ValueError(f"layout must be one of {_LAYOUTS}, got {layout!r}")
        self.layout, self.phone = layout, layout == "phone"
        width = EXPLORER_PHONE_WIDTH if self.phone else EXPLORER_WIDTH
        self.fig = Figure(figsize=(width, height), layout="constrained")
        FigureCanvasAgg(self.fig)
        self.grid = self.fig.add_gridspec(nrows, ncols, height_ratios=height_ratios, width_ratios=width_ratios)
        self._frozen = False

    def _axes(self, spec):
        ax = self.fig.add_subplot(spec)
        ax.tick_params(labelsize=EXPLORER_FONTS["tick"])
        return ax

    def _legend_row(self, spec, handles, ncol, **kw):
        """Legend of ``handles`` in an invisible axes of its own (below the panels)."""
        lax = self.fig.add_subplot(spec)
        lax.axis("off")
        kw = dict(dict(handlelength=2.2, columnspacing=1.2), **kw)
        lax.legend(handles=handles, loc="upper center", ncol=ncol, frameon=False,
                   fontsize=EXPLORER_FONTS["legend"], **kw)
        return lax

    def freeze(self):
        """Lay the figure out once (at the current data) and keep that layout for every later frame."""
        if not self._frozen:
            self.fig.canvas.draw()
            self.fig.set_layout_engine("none")
            self._frozen = True
        return self.fig


def _two_lines(text, sep=", "):
    """``text`` broken at the ``sep`` nearest its middle (unchanged if it has none)."""
    parts = text.split(sep)
    if len(parts) < 2:
        return text
    k = min(range(1, len(parts)), key=lambda j: abs(len(sep.join(parts[:j])) - len(sep.join(parts[j:]))))
    return sep.join(parts[:k]) + sep.rstrip() + "\n" + sep.join(parts[k:])


def _label(ax, xlabel=None, ylabel=None, title=None):
    fs = EXPLORER_FONTS
    if xlabel is not None:
        ax.set_xlabel(xlabel, fontsize=fs["label"])
    if ylabel is not None:
        ax.set_ylabel(ylabel, fontsize=fs["label"])
    if title is not None:
        ax.set_title(title, fontsize=fs["title"])


class RegimeFigure(_ExplorerFigure):
    """:ref:`sec-playground-regime`, regime explorer: one run at a glance (3 panels, legends below).

    ``update()`` takes ``hist`` with ``(E,)`` ``train_acc``, ``train_clean_acc``, ``test_acc``,
    ``train_loss``, ``test_loss`` and ``(E, 4)`` ``attn_clean`` / ``attn_noisy`` (a
    :class:`~benign_attention.engines.Run` history or one cell of a
    :class:`~benign_attention.sweeps.GridResult`). (a) accuracy, (b) loss, (c) mean attention by token
    type on clean (solid) and noisy (dashed) training samples. ``regime`` (a name of
    ``theory.REGIMES``) colours the title. ``layout="phone"``: (a), (b), their legend, (c), its
    legend, one per row, and the title on two lines."""

    def __init__(self, layout="wide"):
        if layout == "phone":
            super().__init__(7.4, 5, 1, height_ratios=(1.0, 1.0, 0.32, 1.0, 0.42), layout=layout)
            spots = dict(acc=self.grid[0, 0], loss=self.grid[1, 0], att=self.grid[3, 0],
                         legend=self.grid[2, 0], token_legend=self.grid[4, 0])
        else:
            super().__init__(3.15, 2, 3, height_ratios=(1.0, 0.3), layout=layout)
            spots = dict(acc=self.grid[0, 0], loss=self.grid[0, 1], att=self.grid[0, 2],
                         legend=self.grid[1, 0:2], token_legend=self.grid[1, 2])
        acc, loss, att = (self._axes(spots[k]) for k in ("acc", "loss", "att"))
        zero = np.zeros(2)
        accuracy_loss_panels(acc, loss, zero, dict(train_acc=zero, train_clean_acc=zero, test_acc=zero,
                                                   train_loss=zero, test_loss=zero))
        handles = acc.get_legend_handles_labels()[0]
        for ax in (acc, loss):
            ax.get_legend().remove()
        handles[0].set_label("train, observed labels")
        handles[2].set_label("test (clean labels)")
        self.acc_lines, self.loss_lines = list(acc.lines), list(loss.lines)
        loss.yaxis.set_major_formatter(FormatStrFormatter("%.2f"))  # fixed tick-label width
        self.att_lines = []
        for g in TOKEN_GROUPS:
            self.att_lines.append((att.plot([], [], color=TOKEN_COLORS[g])[0],
                                   att.plot([], [], color=TOKEN_COLORS[g], ls="--")[0]))
        att.set(ylim=(0, 1))
        for ax, title, ylabel in ((acc, "(a) accuracy", "accuracy"), (loss, "(b) loss", "mean logistic loss"),
                                  (att, "(c) attention", "mean attention")):
            _label(ax, "gradient step", ylabel, title)
        self._legend_row(spots["legend"], handles, ncol=2,
                         **(dict(handlelength=1.6, columnspacing=0.8) if self.phone else {}))
        token_handles = [Line2D([], [], color=TOKEN_COLORS[g], label=TOKEN_LABELS[g]) for g in TOKEN_GROUPS]
        token_handles += [Line2D([], [], color="k", label="clean samples"),
                          Line2D([], [], color="k", ls="--", label="noisy samples")]
        self._legend_row(spots["token_legend"], token_handles, ncol=2, handlelength=1.6, columnspacing=0.8)
        self.axes = (acc, loss, att)
        self.title = self.fig.suptitle("", fontsize=EXPLORER_FONTS["suptitle"])

    def update(self, steps, hist, regime=None, title=None):
        s = np.asarray(steps, float)
        for line, key in zip(self.acc_lines, ("train_acc", "train_clean_acc", "test_acc")):
            line.set_data(s, np.asarray(hist[key], float))
        for line, key in zip(self.loss_lines, ("train_loss", "test_loss")):
            line.set_data(s, np.asarray(hist[key], float))
        clean, noisy = np.asarray(hist["attn_clean"], float), np.asarray(hist["attn_noisy"], float)
        for k, (solid, dashed) in enumerate(self.att_lines):
            solid.set_data(s, clean[:, k])
            dashed.set_data(s, noisy[:, k])  # all NaN (invisible) when no label is flipped
        acc, loss, att = self.axes
        for ax in self.axes:
            ax.set_xlim(s[0], s[-1] if s[-1] > s[0] else s[0] + 1)
        lo = float(np.nanmin([np.nanmin(hist["train_loss"]), np.nanmin(hist["test_loss"])]))
        hi = float(np.nanmax([np.nanmax(hist["train_loss"]), np.nanmax(hist["test_loss"])]))
        pad = max(0.02 * (hi - lo), 1e-3)
        loss.set_ylim(lo - pad, hi + pad)
        if self.phone and title:  # the knobs on two balanced lines, the regime on a third
            title = _two_lines(title)
        self.title.set_text(("\n" if self.phone else " | ").join(
            x for x in (title, regime and f"regime: {regime}") if x))
        self.title.set_color(REGIME_COLORS.get(regime, "k"))
        return self.freeze()


def explorer_regime(steps, hist, regime=None, title=None, layout="wide"):
    """:ref:`sec-playground-regime`, regime explorer: one closed Figure (see :class:`RegimeFigure`;
    ``layout``: "wide" or "phone")."""
    return RegimeFigure(layout).update(steps, hist, regime, title)


#: Sequence kinds of the token-selection movie: (observed label, noisy?) -> colour, marker, size, label.
_SEQ_STYLE = {(1, False): (COLORS["class +1"], "o", 14, "$y=+1$, clean"),
              (-1, False): (COLORS["class -1"], "o", 14, "$y=-1$, clean"),
              (1, True): (COLORS["class +1"], "X", 70, "$y=+1$, label flipped"),
              (-1, True): (COLORS["class -1"], "X", 70, "$y=-1$, label flipped")}
#: Token-type landmarks of the movie: where a sequence sits when it attends to one token of that type.
_LANDMARK_STYLE = dict(x1=("*", 150, r"$x_1 = \mu_{y^*}$ (relevant)"),
                       x3=("D", 60, r"$x_3 = \rho\,\mu_{-y^*}$: at $(\rho, 0)$ if $y^*\!=\!+1$"),
                       irrelevant=("s", 60, "irrelevant (noise only)"))


class SelectionFigure(_ExplorerFigure):
    r""":ref:`sec-playground-movie`, token-selection movie: what every sequence's attention reads.

    Each sequence is drawn at its *attended token* :math:`\hat x = \sum_t s_t x_t` (:math:`s` its
    attention), projected on :math:`(\mu_{-1}, \mu_{+1}) / \lVert\mu\rVert^2`. The head's output is
    :math:`\nu^\top \hat x`, so the diagonal is exactly the decision boundary (shaded: the two output
    half-planes; blue: output :math:`+1`). The paper's Figure 1 uses
    the same plane but plots each sequence's most-attended token, under a hand-built query.
    Hollow markers: the token-type landmarks, where a sequence sits when it attends to a single token
    of that type (:math:`x_1` at distance one along its class, :math:`x_3` at :math:`\rho` along the other
    class, noise at the origin). (a) training sequences (colour: observed label; crosses: flipped labels, with their path
    so far), (b) a zoom on the weak-token corner of (a), (c) test sequences (colour: clean label).
    ``update()`` takes a frame dict of ``widgets.selection_frames``. ``layout="phone"``: (a), (b),
    (c) one per row, then the legend in two columns."""

    def __init__(self, rho, lim=(-0.2, 1.2), zoom=None, layout="wide"):
        if layout == "phone":
            super().__init__(9.4, 5, 1, height_ratios=(1.0, 1.0, 1.0, 0.2, 0.24), layout=layout)
            spots = [self.grid[k, 0] for k in range(3)]
        else:
            super().__init__(3.55, 2, 3, height_ratios=(1.0, 0.24), layout=layout)
            spots = [self.grid[0, k] for k in range(3)]
        self.rho = float(rho)
        zoom = (-0.12, max(0.3, self.rho + 0.16)) if zoom is None else zoom  # x_3 +- 3 noise sd (1/||mu||)
        axes = [self._axes(spot) for spot in spots]
        self.axes = axes
        self.scatter, self.trails = {}, {}
        for k, (ax, limits) in enumerate(zip(axes, (lim, zoom, lim))):
            half_planes(ax, limits)
            self._landmarks(ax)
            side = "test" if k == 2 else "train"
            kinds = [(1, False), (-1, False)] + ([(1, True), (-1, True)] if side == "train" else [])
            if side == "train":
                self.trails[k] = ax.add_collection(LineCollection([], lw=0.9, alpha=0.6, zorder=3))
            for kind in kinds:
                color, marker, size, _ = _SEQ_STYLE[kind]
                self.scatter[k, kind] = ax.scatter(np.empty(0), np.empty(0), marker=marker, s=size * (1.3 if k == 1 else 1),
                                                   color=color, edgecolor="k", lw=0.35, alpha=0.8, zorder=4)
            _label(ax, r"$\langle \hat x, \mu_{-1}\rangle/\|\mu\|^2$",
                   r"$\langle \hat x, \mu_{+1}\rangle/\|\mu\|^2$" if k == 0 or self.phone else None)
        axes[0].add_patch(Rectangle((zoom[0], zoom[0]), zoom[1] - zoom[0], zoom[1] - zoom[0], fill=False,
                                    ec="0.3", lw=0.8, ls=":", zorder=5))
        handles = [Line2D([], [], ls="", marker=m, ms=np.sqrt(s), color=c, mec="k", mew=0.35, label=lab)
                   for (c, m, s, lab) in _SEQ_STYLE.values()]
        handles += [Line2D([], [], ls="", marker=m, ms=np.sqrt(s) * 0.8, mfc="none", mec="0.2", label=lab)
                    for m, s, lab in _LANDMARK_STYLE.values()]
        if self.phone:  # the sequences in two columns, the landmarks (long labels) in one
            self._legend_row(self.grid[3, 0], handles[:4], ncol=2, handlelength=1.2, columnspacing=0.8)
            self._legend_row(self.grid[4, 0], handles[4:], ncol=1, handlelength=1.2)
        else:
            self._legend_row(self.grid[1, :], handles, ncol=4, handlelength=1.2)
        self.titles = [ax.set_title("", fontsize=EXPLORER_FONTS["title"]) for ax in axes]
        self.title = self.fig.suptitle("", fontsize=EXPLORER_FONTS["suptitle"])

    def _landmarks(self, ax):
        r = self.rho
        spots = dict(x1=[(0, 1), (1, 0)], x3=[(r, 0), (0, r)], irrelevant=[(0, 0)])
        for kind, pts in spots.items():
            marker, size, _ = _LANDMARK_STYLE[kind]
            pts = np.asarray(pts, float)
            ax.scatter(pts[:, 0], pts[:, 1], marker=marker, s=size, facecolor="none", edgecolor="0.2",
                       lw=0.9, zorder=2)

    def update(self, frame, title=None):
        sides = dict(train=(frame["train_xy"], frame["train_y"], np.asarray(frame["noisy"], bool)),
                     test=(frame["test_xy"], frame["test_y"], np.zeros(len(frame["test_y"]), bool)))
        for (k, kind), coll in self.scatter.items():
            xy, y, noisy = sides["test" if k == 2 else "train"]
            sel = (np.asarray(y) == kind[0]) & (noisy == kind[1])
            coll.set_offsets(np.asarray(xy, float)[sel] if sel.any() else np.empty((0, 2)))
        path = frame.get("train_path")  # (frames so far, n, 2): the flipped sequences' paths
        noisy = sides["train"][2]
        if path is not None and noisy.any():
            path = np.asarray(path, float)[:, noisy]
            segs = [path[:, j] for j in range(path.shape[1])]
            colors = [_SEQ_STYLE[(int(y), True)][0] for y in np.asarray(frame["train_y"])[noisy]]
        else:
            segs, colors = [], []
        for lc in self.trails.values():
            lc.set_segments(segs)
            lc.set_color(colors)
        n_noisy, fitted = int(noisy.sum()), frame.get("noisy_fitted")
        flipped = f", {fitted} of {n_noisy} flipped labels fitted" if fitted is not None and n_noisy else ""
        self.titles[0].set_text(f"(a) training: accuracy {float(frame['train_acc']):.2f}")
        self.titles[1].set_text("(b) zoom on (a): the weak tokens")
        self.titles[2].set_text(f"(c) test: accuracy {float(frame['test_acc']):.2f}")
        self.title.set_text(title or f"step {frame['step']}{flipped}")
        return self.freeze()


def explorer_selection(frame, title=None, layout="wide"):
    """:ref:`sec-playground-movie`, token-selection movie: one closed Figure (see :class:`SelectionFigure`;
    ``layout``: "wide" or "phone")."""
    return SelectionFigure(frame["knobs"]["rho"], layout=layout).update(frame, title)


class PhaseFigure(_ExplorerFigure):
    r""":ref:`sec-playground-phase`, phase-diagram explorer: the :math:`(d, \lVert\mu\rVert)` map at one step (2 panels).

    (a) the regime of each cell (indices into ``theory.REGIMES``; legend below); (b) a per-cell value
    named ``panel`` (e.g. "test loss") on the fixed colour scale ``vlim``. Axes are logarithmic
    when a grid spans more than a factor 25 (geometric cell edges), else linear. ``layout="phone"``:
    (a), its legend, then (b), one per row."""

    def __init__(self, d_values, mu_values, panel="test loss", vlim=(0.5, 1.0), layout="wide"):
        x, y = check_grid_axis("d_values", d_values, log=True), check_grid_axis("mu_values", mu_values, log=True)
        vlim = check_array("vlim", vlim, shape=(2,))
        if not vlim[0] < vlim[1]:
            raise ValueError(f"vlim must be (low, high) with low < high, got {tuple(vlim)}")
        if not isinstance(panel, str):
            raise ArgumentTypeError(f"panel must be a string (the name of the values shown), got {type(panel).__name__}")
        if layout == "phone":
            super().__init__(6.2, 3, 1, height_ratios=(1.0, 0.1, 1.2), layout=layout)
            spots = dict(regime=self.grid[0, 0], value=self.grid[2, 0], legend=self.grid[1, 0])
        else:
            super().__init__(3.3, 2, 2, height_ratios=(1.0, 0.12), layout=layout)
            spots = dict(regime=self.grid[0, 0], value=self.grid[0, 1], legend=self.grid[1, 0])
        xlog, ylog = bool(x.max() > 25 * x.min()), bool(y.max() > 25 * y.min())
        ex, ey = cell_edges(x, xlog), cell_edges(y, ylog)
        self.shape = (len(x), len(y))
        blank = np.zeros((len(y), len(x)))
        reg_ax, val_ax = self._axes(spots["regime"]), self._axes(spots["value"])
        self.regime_mesh = reg_ax.pcolormesh(ex, ey, blank, cmap=REGIME_CMAP, vmin=-0.5, vmax=len(REGIMES) - 0.5,
                                             shading="flat")
        self.value_mesh = val_ax.pcolormesh(ex, ey, blank, cmap="viridis", vmin=vlim[0], vmax=vlim[1], shading="flat")
        # on a phone the colour bar goes below its panel, so that both maps get the full width
        cbar = self.fig.colorbar(self.value_mesh, ax=val_ax, orientation="horizontal" if self.phone else "vertical",
                                 **(dict(aspect=30, pad=0.02) if self.phone else {}))
        cbar.ax.tick_params(labelsize=EXPLORER_FONTS["tick"])
        cbar.set_label(panel, fontsize=EXPLORER_FONTS["label"])
        for ax, title in ((reg_ax, "(a) regime"), (val_ax, f"(b) clean {panel}")):
            ax.set(xlim=(ex[0], ex[-1]), ylim=(ey[0], ey[-1]))
            for log, values, axis, set_scale in ((xlog, x, ax.xaxis, ax.set_xscale), (ylog, y, ax.yaxis, ax.set_yscale)):
                if log:  # plain numbers at the grid values, not powers of ten
                    set_scale("log")
                    axis.set_ticks(values, [f"{v:g}" for v in values])
                    axis.set_minor_locator(NullLocator())
            _label(ax, "dimension $d$", r"signal norm $\|\mu\|$" if ax is reg_ax or self.phone else None, title)
        self._legend_row(spots["legend"], regime_handles(), ncol=3,
                         handlelength=1.2, columnspacing=0.9)
        self.axes = (reg_ax, val_ax)
        self.title = self.fig.suptitle("", fontsize=EXPLORER_FONTS["suptitle"])

    def update(self, regime, values, title=None):
        regime, values = np.asarray(regime, float), np.asarray(values, float)
        if regime.shape != self.shape or values.shape != self.shape:
            raise ValueError(f"regime and values must have shape (len(d), len(mu)) = {self.shape}, "
                             f"got {regime.shape} and {values.shape}")
        self.regime_mesh.set_array(regime.T)
        self.value_mesh.set_array(values.T)
        self.title.set_text(title or "")
        return self.freeze()


def explorer_phase(d_values, mu_values, regime, values, title=None, panel="test loss", vlim=(0.5, 1.0),
                   layout="wide"):
    """:ref:`sec-playground-phase`, phase-diagram explorer: one closed Figure (see :class:`PhaseFigure`;
    ``layout``: "wide" or "phone")."""
    return PhaseFigure(d_values, mu_values, panel, vlim, layout=layout).update(regime, values, title)
