"""How every figure of the book is laid out: for the text column, and stacked for a phone.

The figure functions of :mod:`benign_attention.plots` (first shown in :ref:`sec-welcome-picture`),
:mod:`benign_attention.encoder_figures` and :mod:`benign_attention.realdata.report` draw their panels
with :func:`subplots` and :func:`legend_below` and are decorated with :func:`closed_figure`. So
each takes ``layout="wide"`` (default: panels side by side, at most :data:`MAX_WIDTH`, the column
at 1280 px) or ``layout="phone"`` (panels stacked one per row, :data:`PHONE_WIDTH` wide, the column
at 390 px), and a wide figure carries ``fig.phone_variant``, which
:func:`benign_attention.display.show` publishes beside it. Text of 8 pt or more is then at least
``display.MIN_TEXT_PX`` (11 px) on the page in both (``display.figure_problems`` checks).
"""
from __future__ import annotations

import contextvars
import functools

import matplotlib.pyplot as plt
import numpy as np

from .display import COLUMN_CSS_PX, CSS_DPI, PHONE_COLUMN_CSS_PX


#: Widest figure in inches, the book's text column at a 1280 px window (``display.COLUMN_CSS_PX``
#: at ``display.CSS_DPI``), so that text of 8 pt or more is shown at least ``display.MIN_TEXT_PX``
#: (11 px) high on the page (``display.figure_problems`` checks).
MAX_WIDTH = COLUMN_CSS_PX / CSS_DPI
#: Width in inches of every figure's phone layout (``layout="phone"``), the text column at a 390 px
#: window (``display.PHONE_COLUMN_CSS_PX``), so that 8 pt text is shown at 11 px there too.
PHONE_WIDTH = PHONE_COLUMN_CSS_PX / CSS_DPI
#: Font sizes (points) of the phone layout. Its panels are narrow, so titles and labels are set a
#: little smaller than matplotlib's defaults, never under 8 pt (11 px on a phone).
PHONE_FONTS = {"font.size": 9.0, "axes.titlesize": 9.5, "axes.labelsize": 9.0, "xtick.labelsize": 8.5,
               "ytick.labelsize": 8.5, "legend.fontsize": 8.5, "figure.titlesize": 10.0}
_LAYOUTS = ("wide", "phone")
_LAYOUT = contextvars.ContextVar("benign_attention_figure_layout", default="wide")


def phone_layout():
    """True while a figure function draws its phone layout (``layout="phone"``, see
    :func:`closed_figure`): one panel per row, :data:`PHONE_WIDTH` wide. Figure functions use it to
    label every stacked panel and to fold legends into fewer columns."""
    return _LAYOUT.get() == "phone"


def closed_figure(draw):
    """Decorator of every figure function: the display convention (see :mod:`benign_attention.display`).
    The Figure it returns is closed in pyplot, so a notebook shows it once, as the cell's value, and
    not a second time through the inline backend's automatic display.

    It also gives every figure function a keyword ``layout``: ``"wide"`` (default) lays the panels
    out side by side for the book's text column (:data:`MAX_WIDTH`); ``"phone"`` stacks them one per
    row, :data:`PHONE_WIDTH` wide, in :data:`PHONE_FONTS`. A wide figure carries
    ``fig.phone_variant``, a callable that draws the same figure in the phone layout, so that
    :func:`~benign_attention.display.show` publishes both and a phone shows the stacked one."""
    @functools.wraps(draw)
    def closed(*args, layout="wide", **kwargs):
        if layout not in _LAYOUTS:
            raise ValueError(f"layout must be one of {_LAYOUTS}, got {layout!r}")
        token = _LAYOUT.set(layout)
        try:
            with plt.rc_context(PHONE_FONTS if layout == "phone" else {}):
                fig = draw(*args, **kwargs)
        finally:
            _LAYOUT.reset(token)
        plt.close(fig)
        if layout == "wide":
            fig.phone_variant = functools.partial(closed, *args, layout="phone", **kwargs)
        return fig
    return closed


def subplots(ncols=1, nrows=1, width=4.2, height=3.2, order="row", phone_height=None, **kw):
    """``plt.subplots`` with panels of ``width`` x ``height`` inches, shrunk to :data:`MAX_WIDTH`.

    Returns ``(fig, axes)``, ``axes`` a (nrows, ncols) array. In the phone layout
    (:func:`phone_layout`) the panels are stacked one per row, :data:`PHONE_WIDTH` wide, in the
    ``order`` of the grid, ``"row"`` (row after row) or ``"column"``, each ``phone_height`` inches
    high (default: the panel's aspect ratio, 2.1 to 3 in); ``axes`` keeps its (nrows, ncols) shape,
    so a figure function draws both layouts with the same code."""
    if phone_layout():
        n = ncols * nrows
        panel_height = phone_height or float(np.clip(height * PHONE_WIDTH / width, 2.1, 3.0))
        fig, stacked = plt.subplots(n, 1, figsize=(PHONE_WIDTH, panel_height * n), squeeze=False,
                                    constrained_layout=True, **kw)
        index = np.arange(n).reshape(nrows, ncols) if order == "row" else np.arange(n).reshape(ncols, nrows).T
        axes = stacked[:, 0][index]
        for ax in axes.flat:  # tick labels are made at draw time, after the rc context: fix their size
            ax.tick_params(labelsize=PHONE_FONTS["xtick.labelsize"])
        return fig, axes
    shrink = min(1.0, MAX_WIDTH / (width * ncols))
    return plt.subplots(nrows, ncols, figsize=(width * ncols * shrink, height * nrows * max(shrink, 0.75)),
                        squeeze=False, constrained_layout=True, **kw)


def legend_below(fig, handles=None, labels=None, ncol=4, fontsize=8, ax=None):
    """One legend for the whole figure, below the panels (never over data). Without ``handles`` it
    collects the labelled artists of ``ax`` (default: the first axes; a sequence: all of them).
    In the phone layout the entries fold into two columns (one when a label is long)."""
    if handles is None:
        axes = ax if isinstance(ax, (list, tuple, np.ndarray)) else [ax or fig.axes[0]]
        handles, labels = [sum(hl, []) for hl in zip(*(a.get_legend_handles_labels() for a in axes))]
    kw = {} if labels is None else {"labels": labels}
    if not phone_layout():
        return fig.legend(handles=handles, loc="outside lower center", ncol=min(ncol, len(handles)),
                          fontsize=fontsize, frameon=False, **kw)
    fontsize = max(fontsize, PHONE_FONTS["legend.fontsize"])
    for columns in range(min(ncol, 2, len(handles)), 0, -1):  # two columns if they fit the width, else one
        legend = fig.legend(handles=handles, loc="outside lower center", ncol=columns, fontsize=fontsize,
                            frameon=False, **kw)
        if columns == 1 or legend.get_window_extent(fig.canvas.get_renderer()).width <= 0.98 * fig.bbox.width:
            return legend
        legend.remove()
