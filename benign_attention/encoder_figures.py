r"""The figures of the chapter *A full transformer encoder* (:ref:`sec-encoder-overview`): the
encoder's training dynamics, its :math:`(d, \lVert\mu\rVert)` loss maps and the boundary they draw. Drawing only:
the runs come from :mod:`benign_attention.encoder`, the attention summaries from
:func:`~benign_attention.analysis.attention_by_type`, and the figure conventions (sizes, colours,
legends below the panels, closed figures) from :mod:`benign_attention.plots`."""
from __future__ import annotations

import numpy as np

from .analysis import attention_by_type
from .display import COLORS
from .metrics import TOKEN_GROUPS
from .figure_layout import closed_figure, legend_below, phone_layout, subplots
from .plots import TOKEN_COLORS, TOKEN_LABELS

__all__ = ["encoder_dynamics", "encoder_loss_maps", "encoder_boundary"]


@closed_figure
def encoder_dynamics(settings):
    """``settings``: {title: (run, ds)}. Columns: settings. Rows: mean [CLS] attention of the clean
    and of the noisy training samples by token type; train (observed labels) and test accuracy;
    train and test loss (log scale). :ref:`sec-encoder-dynamics` (an
    :class:`~benign_attention.encoder.train.EncoderRun` and its data set per setting)."""
    if not isinstance(settings, dict) or not settings:
        raise ValueError("settings must be a non-empty dict {title: (run, ds)}")
    fig, axes = subplots(len(settings), 4, width=2.4, height=1.75, order="column", phone_height=1.8)
    phone = phone_layout()
    for c, (title, (run, ds)) in enumerate(settings.items()):
        if not phone:  # three titles side by side: the setting's numbers on a line of their own
            title = title.replace(" (", "\n(", 1)
        x = run.steps
        for r, noisy in enumerate((False, True)):
            ax = axes[r, c]
            att = attention_by_type(run, ds.noisy == noisy)
            for g, name in enumerate(TOKEN_GROUPS):
                ax.plot(x, att[:, g], color=TOKEN_COLORS[name], label=TOKEN_LABELS[name])
            ax.plot(x, att[:, 4], color="k", ls=":", label="[CLS] itself")
            ax.set(ylim=(-0.03, 1.03), title=title if r == 0 or phone else None)
        ax = axes[2, c]
        ax.plot(x, run.history["train_acc"], color=COLORS["train"], label="train (observed labels)")
        t = np.isfinite(run.history["test_acc"])
        ax.plot(x[t], run.history["test_acc"][t], color=COLORS["test"], label="test")
        ax.set(ylim=(0.4, 1.03), title=title if phone else None)
        ax = axes[3, c]
        ax.plot(x, run.history["train_loss"], color="k")
        ax.plot(x[t], run.history["test_loss"][t], color=COLORS["test"])
        ax.set(yscale="log", xlabel="SGD step", title=title if phone else None)
    for r, label in enumerate(("clean samples:\nattention", "noisy samples:\nattention", "accuracy", "loss")):
        for ax in axes[r] if phone else axes[r, :1]:  # stacked: every panel says what it is
            ax.set_ylabel(label)
    for ax in axes.flat:
        ax.tick_params(which="both", labelsize=8.5 if phone else 8)
        ax.title.set_fontsize(9 if phone else 8)
        ax.yaxis.label.set_fontsize(9 if phone else 8)
        ax.xaxis.label.set_fontsize(9 if phone else 8)
    h, lab = axes[0, 0].get_legend_handles_labels()
    h2, lab2 = axes[2, 0].get_legend_handles_labels()
    legend_below(fig, h + h2, lab + lab2, ncol=4, fontsize=8)
    return fig


@closed_figure
def encoder_loss_maps(d_values, mu_values, train_loss, test_loss, title=""):
    r"""Train and test loss maps (each ``(len(d_values), len(mu_values))``) after training, one column per
    :math:`d` and one row per :math:`\lVert\mu\rVert` in grid order (not to scale); NaN cells (not computed) are left blank.
    The encoder grid of :ref:`sec-encoder-grid` (:func:`~benign_attention.encoder.grid.load_grid`)."""
    shape = (len(d_values), len(mu_values))
    for name, m in (("train_loss", train_loss), ("test_loss", test_loss)):
        if np.shape(m) != shape:
            raise ValueError(f"{name} must have shape (len(d_values), len(mu_values)) = {shape}, "
                             f"got {np.shape(m)}")
    fig, axes = subplots(2, width=3.6, height=3.0)
    xi, yi = np.arange(len(d_values)), np.arange(len(mu_values))
    for ax, m, name in zip(axes[0], (train_loss, test_loss), ("train loss", "test loss")):
        im = ax.pcolormesh(np.r_[xi - 0.5, xi[-1] + 0.5], np.r_[yi - 0.5, yi[-1] + 0.5],
                           np.ma.masked_invalid(np.asarray(m, float).T), cmap="viridis", shading="flat")
        fig.colorbar(im, ax=ax, shrink=0.9)
        ax.set_xticks(xi, [str(int(v)) for v in d_values], fontsize=8, rotation=90)
        every = 1 if len(mu_values) <= 14 else 2   # labels that do not run together
        ax.set_yticks(yi[::every], [f"{v:g}" for v in mu_values][::every], fontsize=8)
        ax.set(xlabel="$d$", ylabel=r"$\|\mu\|$", title=f"{name}{title}")
    return fig


@closed_figure
def encoder_boundary(d_values, boundaries, threshold=0.1):
    r"""The signal strength at which the test loss crosses ``threshold``, against :math:`d`: ``boundaries``
    is ``{label: values}`` with one value per entry of ``d_values`` (NaN where not computed), one line
    with markers per label (e.g. per seed). Several thresholds side by side, one panel each: a list
    of thresholds and a list of such dicts, one per threshold (the panels share their y axis).
    Shown in :ref:`sec-encoder-grid`."""
    d_values = np.asarray(d_values, float)
    several = isinstance(threshold, (list, tuple))
    thresholds, panels = (list(threshold), boundaries) if several else ([threshold], [boundaries])
    if several and (not isinstance(panels, (list, tuple)) or len(panels) != len(thresholds)):
        raise ValueError(f"boundaries must be a list of {len(thresholds)} dicts, one per threshold, got "
                         f"{type(panels).__name__}")
    for t in thresholds:
        if isinstance(t, bool) or not isinstance(t, (int, float, np.number)) or not np.isfinite(t):
            raise ValueError(f"threshold must be a finite number (or a list of them), got {t!r}")
    for panel in panels:
        if not isinstance(panel, dict) or not panel:
            raise ValueError("boundaries must be a non-empty dict {label: one value per d}")
        for label, b in panel.items():
            if np.shape(b) != d_values.shape:
                raise ValueError(f"boundaries[{label!r}] must have one value per d ({len(d_values)}), "
                                 f"got shape {np.shape(b)}")
    fig, axes = subplots(len(panels), width=4.2 if len(panels) == 1 else 3.4, height=2.8, sharey=True,
                         phone_height=2.8)
    for ax, panel, t in zip(axes[0], panels, thresholds):
        for (label, b), marker in zip(panel.items(), "os^vDP"):
            b = np.asarray(b, float)
            ok = np.isfinite(b)
            ax.plot(d_values[ok], b[ok], marker=marker, ms=5, lw=1, label=label)
        ax.set(xlabel="$d$", title=f"test loss = {t:g}" if several else None)
    axes[0, 0].set_ylabel(r"$\|\mu\|$ where the test loss crosses" if several
                          else rf"$\|\mu\|$ where test loss = {threshold:g}")
    legend_below(fig, *axes[0, 0].get_legend_handles_labels(), ncol=len(panels[0]), fontsize=8)
    return fig
