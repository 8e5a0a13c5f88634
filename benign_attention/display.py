"""How the book shows things: the package's one display convention.

**Figures.** Every function in :mod:`benign_attention.plots` builds a matplotlib Figure, *closes*
it and returns it. A closed figure is never shown by a plotting backend on its own, so nothing
depends on which backend a kernel runs (``inline`` in JupyterLab, Binder and Colab, ``Agg`` in a
script or under ``MPLBACKEND=Agg``). A chapter shows a figure explicitly, exactly once, with::

    show(plots.welcome_overview(run, ds))

:func:`show` renders the figure to PNG itself and publishes it as a raw ``image/png`` display
output, so no IPython formatter or matplotlib backend is involved. The PNG has
:data:`PIXEL_RATIO` device pixels per CSS pixel (sharp on high-DPI screens), and its display
metadata asks for a CSS width of ``figure width in inches x`` :data:`CSS_DPI`; pages scale it
down, never up, when the column is narrower. The static twins of :mod:`benign_attention.widgets`
use the same :func:`png` for their frames.

**Numbers.** :func:`glue` hands a number to the prose (MyST-NB's ``{glue:text}`` role) as a plain
Python value. Where MyST-NB is not installed (a bare Colab kernel) it does nothing, so a chapter
runs anywhere.
"""
from __future__ import annotations

import io

__all__ = ["CSS_DPI", "PIXEL_RATIO", "png", "show", "glue"]

#: CSS pixels per inch of figure size: a 7.2 in wide figure is laid out 720 CSS px wide, about the
#: width of the book's text column at 1280 px, so 9 pt text shows at 12.5 px.
CSS_DPI = 100
#: Device pixels per CSS pixel in every PNG the package makes (2 = sharp on "retina" screens).
PIXEL_RATIO = 2


def png(fig, pixel_ratio=PIXEL_RATIO, close=True):
    """PNG of a matplotlib figure at ``CSS_DPI * pixel_ratio`` dots per inch.

    Returns ``(data, (css_width, css_height))``: the PNG bytes and the size in CSS pixels at which
    it is meant to be shown (its pixel size divided by ``pixel_ratio``). The figure is closed
    unless ``close=False``."""
    import matplotlib.pyplot as plt

    if not (isinstance(pixel_ratio, (int, float)) and 0.5 <= pixel_ratio <= 4):
        raise ValueError(f"pixel_ratio must be a number in [0.5, 4], got {pixel_ratio!r}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=CSS_DPI * pixel_ratio, facecolor="white")
    if close:
        plt.close(fig)
    data = buf.getvalue()
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return data, (round(width / pixel_ratio), round(height / pixel_ratio))


def show(fig, alt=None):
    """Show ``fig`` once in the running notebook as a high-DPI PNG (see the module docstring).

    In a Jupyter kernel (JupyterLab, Binder, Colab, nbmake, the book build) the PNG is published
    as a display output whose ``text/plain`` part is ``alt`` (default: the figure's axes titles).
    Outside IPython nothing is displayed. The figure is closed either way; returns None, so a
    cell ending in ``show(...)`` adds no second output."""
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    if not isinstance(fig, Figure):
        raise TypeError(f"show expects a matplotlib Figure, got {type(fig).__name__}")
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with the book extra
        get_ipython = lambda: None  # noqa: E731
    if get_ipython() is None:
        plt.close(fig)
        return None
    from IPython.display import display

    if alt is None:
        titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
        alt = "figure: " + "; ".join(titles) if titles else "figure"
    data, (width, height) = png(fig)
    display({"image/png": data, "text/plain": alt},
            metadata={"image/png": {"width": width, "height": height}}, raw=True)
    return None


def glue(name, value):
    """Hand ``value`` to the prose under ``name`` (MyST-NB ``{glue:text}`name```), not displayed.

    numpy and torch scalars become Python ``int``/``float``/``bool`` first (their ``repr`` would
    otherwise leak into the text as ``np.float64(0.5)``). Does nothing where MyST-NB is absent."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"glue name must be a non-empty string, got {name!r}")
    item = getattr(value, "item", None)
    if item is not None:
        size = value.numel() if callable(getattr(value, "numel", None)) else getattr(value, "size", None)
        if size == 1:
            value = item()
    try:
        from myst_nb import glue as _myst_glue
    except ImportError:
        return None
    _myst_glue(name, value, display=False)
    return None
