"""How the book shows things: the package's one display convention (first used in :ref:`sec-welcome-picture`).

**Figures.** Every function in :mod:`benign_attention.plots` builds a matplotlib Figure, *closes*
it and returns it. A closed figure is never shown by a plotting backend on its own, so nothing
depends on which backend a kernel runs (``inline`` in JupyterLab, Binder and Colab, ``Agg`` in a
script or under ``MPLBACKEND=Agg``). A chapter shows a figure explicitly, exactly once, with::

    show(plots.welcome_overview(run, ds))

:func:`show` renders the figure to PNG itself and publishes it as a raw ``image/png`` display
output, so no IPython formatter or matplotlib backend is involved. The PNG has
:data:`PIXEL_RATIO` device pixels per CSS pixel (sharp on high-DPI screens), and its display
metadata asks for a CSS width of ``figure width in inches x`` :data:`CSS_DPI`; pages scale it
down, never up, when the column is narrower. Figures are at most :data:`COLUMN_CSS_PX` wide, so
their text keeps :data:`MIN_TEXT_PX` at 1280 px; for a phone, :func:`show` adds the figure's phone
layout (its panels stacked, :data:`PHONE_COLUMN_CSS_PX` wide) in the same output, as a
``<picture>`` that shows exactly one of the two at any window width. The static twins of :mod:`benign_attention.widgets`
use the same :func:`png` for their frames.

**Numbers.** :func:`glue` hands a number to the prose as a plain Python value, under a name. The
prose reads it with an inline expression on :data:`G` in MyST's ``eval`` role, e.g.
``f"{G.noise_mean:.1f}"`` (or ``G.name`` unformatted). Every place a reader opens a chapter shows the number:

* the built book: MyST-NB glues the value when the chapter is executed, and the book's ``eval``
  role (``book/_ext/bookfixes.py``) reads these two forms as the glued value with that format;
* JupyterLab (Binder, ``make venv``): jupyterlab-myst evaluates the expression in the kernel when
  the markdown cell runs (*Run All*), so the text shows the value this kernel computed.

Where MyST-NB is not installed (a bare Colab kernel) :func:`glue` still fills :data:`G`.
"""
from __future__ import annotations

import io
import warnings

import numpy as np

from .validation import ArgumentTypeError, check_bool, check_number

__all__ = ["CSS_DPI", "PIXEL_RATIO", "COLUMN_CSS_PX", "PHONE_COLUMN_CSS_PX", "PHONE_MEDIA", "MIN_TEXT_PX", "COLORS",
           "FigureWarning", "png", "show", "figure_problems", "glue", "G"]

#: CSS pixels per inch of figure size. A 6.72 in wide figure is laid out 672 CSS px wide, the
#: width of the book's text column at 1280 px, so 8 pt text shows at 11.1 px.
CSS_DPI = 100
#: Device pixels per CSS pixel in every PNG the package makes (2 = sharp on "retina" screens).
PIXEL_RATIO = 2
#: Width of the book's text column at a 1280 px window; wider figures are shown scaled down to it.
COLUMN_CSS_PX = 672
#: Width of the book's text column at a 390 px (phone) window, in CSS px (measured in the built
#: book). A figure's phone layout is drawn this wide (:func:`show`).
PHONE_COLUMN_CSS_PX = 342
#: The CSS media query under which a page shows a figure's phone layout instead of the wide one.
PHONE_MEDIA = "(max-width: 600px)"
#: Smallest text, in CSS px as shown in the column, that :func:`figure_problems` accepts.
MIN_TEXT_PX = 11.0
#: The book's one colour code, used by every figure of the package. The training set with its
#: observed labels is black and with its clean labels purple (dashed); the test set is orange, and
#: its loss brown where test accuracy is in the same panel. Token types: :math:`x_1` blue, :math:`x_2`
#: green, :math:`x_3` red, irrelevant tokens grey. Regimes: not overfitting purple, benign green,
#: harmful red. Classes (:math:`y = +1` blue, :math:`y = -1` red), clean and noisy samples (blue, red), and a single measured series
#: (blue) where no test set or token type is in the figure.
COLORS = {"train": "k", "train_clean": "#9467bd", "test": "#ff7f0e", "test_loss": "#8c564b",
          "x1": "#1f77b4", "x2": "#2ca02c", "x3": "#d62728", "irrelevant": "#7f7f7f",
          "not overfitting": "#9467bd", "benign": "#2ca02c", "harmful": "#d62728",
          "class +1": "#1f77b4", "class -1": "#d62728", "clean": "#1f77b4", "noisy": "#d62728",
          "measured": "#1f77b4"}


class FigureWarning(UserWarning):
    """A figure that a reader cannot read well (see :func:`figure_problems`)."""


def _check_figure(fig):
    from matplotlib.figure import Figure

    if not isinstance(fig, Figure):
        raise ArgumentTypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")


def png(fig, pixel_ratio=PIXEL_RATIO, close=True):
    """PNG of a matplotlib figure at ``CSS_DPI * pixel_ratio`` dots per inch.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    pixel_ratio : float
        Device pixels per CSS pixel, a number in [0.5, 4] (default :data:`PIXEL_RATIO`; numpy and
        torch scalars are accepted, bools are not).
    close : bool
        Close the figure afterwards (default True): True or False (or 1/0), nothing else.

    Returns
    -------
    tuple
        ``(data, (css_width, css_height))``: the PNG bytes and the size in CSS pixels at which it
        is meant to be shown (its pixel size divided by ``pixel_ratio``).

    Raises
    ------
    ValueError
        ``fig`` is not a matplotlib Figure, ``pixel_ratio`` is out of range or ``close`` is not a
        bool (:class:`~benign_attention.validation.ArgumentTypeError` for a wrong kind).
    """
    import matplotlib.pyplot as plt

    _check_figure(fig)
    pixel_ratio = check_number("pixel_ratio", pixel_ratio, 0.5, 4)   # any real number type; never a bool
    close = check_bool("close", close)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=CSS_DPI * pixel_ratio, facecolor="white")
    if close:
        plt.close(fig)
    data = buf.getvalue()
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return data, (round(width / pixel_ratio), round(height / pixel_ratio))


def show(fig, alt=None, phone=None):
    """Show ``fig`` once in the running notebook as a high-DPI PNG (see the module docstring).

    In a Jupyter kernel (JupyterLab, Binder, Colab, nbmake, the book build) the PNG is published
    as a display output whose ``text/plain`` part is ``alt`` (default: the figure's axes titles).
    Outside IPython nothing is displayed. The figure is closed either way; returns None, so a
    cell ending in ``show(...)`` adds no second output.

    **Phones.** A figure wider than :data:`PHONE_COLUMN_CSS_PX` that has a phone layout (``phone``,
    or the ``fig.phone_variant`` that every function of :mod:`benign_attention.plots` attaches) is
    published with both: the output's ``text/html`` part is a ``<picture>`` whose ``<img>`` is the
    wide PNG and whose ``<source>`` (media :data:`PHONE_MEDIA`) is the phone PNG, each with the same
    ``alt`` text and its CSS size, so a browser shows exactly one of them, the phone one in a
    narrow window. The ``image/png`` part stays the wide PNG, for frontends without HTML.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        A figure, e.g. one returned by a function of :mod:`benign_attention.plots`.
    alt : str, optional
        Text alternative of the image.
    phone : matplotlib.figure.Figure or bool, optional
        The phone layout of ``fig`` (default: ``fig.phone_variant()`` if ``fig`` has one); False:
        publish the wide PNG alone.

    Raises
    ------
    ValueError
        ``fig`` or ``phone`` is not a matplotlib Figure or ``alt`` not a string
        (:class:`~benign_attention.validation.ArgumentTypeError`).

    Warns
    -----
    FigureWarning
        For each problem :func:`figure_problems` finds, in the wide figure (text column
        :data:`COLUMN_CSS_PX`) and in the phone one (:data:`PHONE_COLUMN_CSS_PX`).
    """
    import matplotlib.pyplot as plt

    _check_figure(fig)
    if phone is not None and phone is not False:
        _check_figure(phone)
    if alt is not None and not isinstance(alt, str):
        raise ArgumentTypeError(f"alt must be a string or None, got {type(alt).__name__}")
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with the book extra
        get_ipython = lambda: None  # noqa: E731
    if get_ipython() is None:
        plt.close(fig)
        if phone is not None and phone is not False:
            plt.close(phone)
        return None
    from IPython.display import display

    if alt is None:
        titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
        alt = "figure: " + "; ".join(titles) if titles else "figure"
    if phone is None:
        variant = getattr(fig, "phone_variant", None)
        phone = variant() if callable(variant) and fig.get_figwidth() * CSS_DPI > PHONE_COLUMN_CSS_PX else False
    problems = figure_problems(fig)
    if phone is not False:
        problems += [f"phone layout: {p}" for p in figure_problems(phone, column_px=PHONE_COLUMN_CSS_PX)]
    for problem in problems:
        warnings.warn(problem, FigureWarning, stacklevel=2)
    data, (width, height) = png(fig)
    bundle = {"image/png": data, "text/plain": alt}
    if phone is not False:
        bundle["text/html"] = _picture_html(data, (width, height), *png(phone), alt)
    display(bundle, metadata={"image/png": {"width": width}}, raw=True)  # height follows the aspect ratio
    return None


def _picture_html(wide, wide_size, phone, phone_size, alt):
    """The ``<picture>`` that :func:`show` publishes for a figure with a phone layout: the wide PNG
    ``wide`` in the ``<img>``, the phone PNG ``phone`` in a ``<source>`` for :data:`PHONE_MEDIA`,
    both as data URLs with their CSS sizes (``(width, height)``, as returned by :func:`png`) and
    ``alt`` as the image's text alternative. The image is scaled down, never up, to its column."""
    import base64
    from html import escape

    def url(data):
        return "data:image/png;base64," + base64.b64encode(data).decode("ascii")

    (w, h), (pw, ph) = wide_size, phone_size
    return (f'<picture class="ba-figure"><source media="{PHONE_MEDIA}" srcset="{url(phone)}" width="{pw}" '
            f'height="{ph}"><img src="{url(wide)}" alt="{escape(alt)}" width="{w}" height="{h}" '
            f'style="max-width:100%;height:auto"></picture>')


def _text_px(fig, column_px=COLUMN_CSS_PX):
    """CSS px per point of font size once the figure is shown in a text column ``column_px`` wide."""
    width_css = fig.get_figwidth() * CSS_DPI
    return CSS_DPI / 72 * min(1.0, column_px / width_css)


def _data_points(ax, artist, renderer):
    """Display-space points (k, 2) of a data artist, lines densely resampled; None for area artists
    that cover a region (handled by their extent)."""
    from matplotlib.collections import PathCollection, PolyCollection
    from matplotlib.lines import Line2D

    if isinstance(artist, Line2D):
        xy = artist.get_xydata()
        if len(xy) == 0 or artist.get_transform() != ax.transData:
            return np.empty((0, 2))  # axhline/axvline and other reference lines span the axes
        xy = artist.get_transform().transform(np.asarray(xy, float))
        xy = xy[np.isfinite(xy).all(1)]
        if artist.get_linestyle() not in ("None", "", " ") and len(xy) > 1:
            t = np.linspace(0, 1, 20)[:, None]
            segs = xy[:-1, None, :] * (1 - t) + xy[1:, None, :] * t
            xy = np.concatenate([xy, segs.reshape(-1, 2)])
        return xy
    if isinstance(artist, PathCollection):
        return artist.get_offset_transform().transform(np.asarray(artist.get_offsets(), float))
    if isinstance(artist, PolyCollection):
        return None
    return np.empty((0, 2))


def _labels(fig):
    """The drawn titles and axis labels of ``fig`` (not tick labels)."""
    texts = [getattr(fig, name, None) for name in ("_suptitle", "_supxlabel", "_supylabel")]
    for ax in fig.axes:
        texts += [ax.title, getattr(ax, "_left_title", None), getattr(ax, "_right_title", None),
                  ax.xaxis.label, ax.yaxis.label]
    return [t for t in texts if t is not None and t.get_visible() and t.get_text().strip()]


def figure_problems(fig, column_px=COLUMN_CSS_PX):
    """What would make ``fig`` hard to read in the book; an empty list when nothing.

    * text smaller than :data:`MIN_TEXT_PX` CSS pixels once the figure is shown in a text column
      ``column_px`` CSS px wide (default :data:`COLUMN_CSS_PX`, the column at a 1280 px window;
      :data:`PHONE_COLUMN_CSS_PX` for a phone layout);
    * text that sticks out of the figure (cut off in the PNG);
    * titles or axis labels that overlap each other;
    * a legend drawn inside an axes over that axes' data: plotted points or line segments, scatter
      markers, filled areas (bands, stacks) or images.

    :func:`show` warns (:class:`FigureWarning`) about each; the book's tests fail on such warnings.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    column_px : float
        Width in CSS px of the column the figure is shown in (wider figures are scaled down to it).

    Returns
    -------
    list of str
    """
    from matplotlib.collections import PolyCollection, QuadMesh
    from matplotlib.image import AxesImage
    from matplotlib.text import Text

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    _check_figure(fig)
    column_px = check_number("column_px", column_px, 100, 4000)
    problems = []
    renderer = FigureCanvasAgg(fig).get_renderer()  # a closed figure may have no drawing canvas
    fig.draw(renderer)
    scale = _text_px(fig, column_px)
    small = sorted({(round(t.get_fontsize() * scale, 1), t.get_text()[:30]) for t in fig.findobj(Text)
                    if t.get_visible() and t.get_text().strip() and t.get_fontsize() * scale < MIN_TEXT_PX})
    if small:
        problems.append(f"text shown smaller than {MIN_TEXT_PX:g} px in a {column_px:g} px column "
                        f"(figure {fig.get_figwidth():.1f} in wide): "
                        + ", ".join(f"{px} px {text!r}" for px, text in small[:5]))
    tight = fig.get_tightbbox(renderer)  # what is drawn, in inches (tick labels out of view excluded)
    over = np.array([-tight.x0, -tight.y0, tight.x1 - fig.get_figwidth(), tight.y1 - fig.get_figheight()])
    if (over * fig.dpi > 1).any():
        sides = [f"{side} by {px:.0f} px" for side, px in zip(("left", "bottom", "right", "top"), over * CSS_DPI)
                 if px * fig.dpi > CSS_DPI]
        problems.append("text or artists cut off at the figure's edge: " + ", ".join(sides))
    labels = [(t, t.get_window_extent(renderer)) for t in _labels(fig)]
    clash = sorted({f"{a.get_text()[:25]!r} / {b.get_text()[:25]!r}" for k, (a, box_a) in enumerate(labels)
                    for b, box_b in labels[k + 1:] if box_a.overlaps(box_b)})
    if clash:
        problems.append("titles or axis labels overlap: " + ", ".join(clash[:4]))
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is None or not legend.get_visible():
            continue
        box = legend.get_window_extent(renderer)
        if not box.overlaps(ax.get_window_extent(renderer)):
            continue  # placed outside the axes
        covered = []
        for artist in [*ax.lines, *ax.collections, *ax.images]:
            if not artist.get_visible() or artist in legend.get_children():
                continue
            label = str(artist.get_label())
            if isinstance(artist, (AxesImage, QuadMesh)):
                if artist.get_window_extent(renderer).overlaps(box):
                    covered.append(label)
                continue
            points = _data_points(ax, artist, renderer)
            if points is None and isinstance(artist, PolyCollection):
                gx, gy = np.meshgrid(np.linspace(box.x0, box.x1, 9), np.linspace(box.y0, box.y1, 9))
                grid = np.column_stack([gx.ravel(), gy.ravel()])
                transform = artist.get_transform()
                if any(path.contains_points(grid, transform=transform).any() for path in artist.get_paths()):
                    covered.append(label)
                continue
            inside = ((points[:, 0] >= box.x0) & (points[:, 0] <= box.x1)
                      & (points[:, 1] >= box.y0) & (points[:, 1] <= box.y1))
            if inside.any():
                covered.append(label)
        if covered:
            title = ax.get_title() or ax.get_ylabel() or "an axes"
            problems.append(f"the legend in {title!r} covers data ({', '.join(sorted(set(covered)))[:120]})")
    return problems


class Glued:
    """The values :func:`glue` handed to the prose, by name: ``G.name`` (see the module docstring).

    A name that nothing has glued yet raises ``AttributeError`` saying so (in JupyterLab, run the
    cells above the paragraph first)."""

    def __init__(self):
        object.__setattr__(self, "_values", {})

    def __getattr__(self, name):
        values = object.__getattribute__(self, "_values")
        if name in values:
            return values[name]
        raise AttributeError(f"nothing is glued under {name!r} yet: run the cells above this text first")

    def __setattr__(self, name, value):
        raise AttributeError("G is filled by glue(name, value), not by assignment")

    def __dir__(self):
        return sorted(object.__getattribute__(self, "_values"))


#: Every glued value of this kernel, by name (the prose reads it in inline expressions).
G = Glued()


def glue(name, value):
    """Hand ``value`` to the prose under ``name`` (read there as ``G.name``), not displayed.

    numpy and torch scalars become Python ``int``/``float``/``bool`` first (their ``repr`` would
    otherwise leak into the text as ``np.float64(0.5)``). Where MyST-NB is absent it only fills :data:`G`.

    Parameters
    ----------
    name : str
        The key the prose uses, a Python identifier.
    value : object
        Typically a number.

    Raises
    ------
    ValueError
        ``name`` is not a Python identifier.
    """
    if not isinstance(name, str):
        raise ArgumentTypeError(f"glue name must be a string, got {type(name).__name__} {name!r}")
    if not name.isidentifier():
        raise ValueError(f"glue name must be a Python identifier (the prose reads G.<name>), got {name!r}")
    item = getattr(value, "item", None)
    if item is not None:
        size = value.numel() if callable(getattr(value, "numel", None)) else getattr(value, "size", None)
        if size == 1:
            value = item()
    G._values[name] = value
    try:
        from myst_nb import glue as _myst_glue
    except ImportError:
        return None
    _myst_glue(name, value, display=False)
    return None
