"""The book's figures: one function per figure, each returning a closed matplotlib Figure.

The first is shown in :ref:`sec-welcome-picture`; each figure function names the section that shows it.

Chapters show a figure with :func:`benign_attention.display.show` (the package's one display
convention, explained there); the explorers' frames go through :func:`benign_attention.display.png`.

This module only draws: the numbers a figure shows come from :mod:`benign_attention.analysis`,
:mod:`benign_attention.theory` or the runs themselves; the explorers' figures are in
:mod:`benign_attention.explorer_figures`. Sections follow the chapters. Shared style (colours of
token types and regimes) lives at the top; the layout every figure shares (the widths of the book's
column and of a phone, the decorator that closes every figure and draws its phone layout, panels
and legends) in :mod:`benign_attention.figure_layout`.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap, LogNorm
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator

from . import analysis, theory
from .data import token_noise
from .display import COLORS
from .figure_layout import MAX_WIDTH, closed_figure, legend_below, phone_layout, subplots  # noqa: F401
from .metrics import TOKEN_GROUPS
from .theory import REGIMES, classify_regime, evaluate_query, existence_accuracies, existence_query
from .validation import check_grid_axis, check_map, check_map_panels, check_maps

#: One colour per token type (:math:`x_1`, :math:`x_2`, :math:`x_3`, irrelevant) and per regime, used by every figure
#: (from the book's colour code, ``display.COLORS``).
TOKEN_COLORS = {g: COLORS[g] for g in TOKEN_GROUPS}
TOKEN_LABELS = dict(zip(TOKEN_GROUPS, ("$x_1$ (relevant)", "$x_2$ (weak, true class)",
                                       "$x_3$ (weak, other class)", "irrelevant $x_4..x_T$")))
REGIME_COLORS = {r: COLORS[r] for r in ("not overfitting", "benign", "harmful")}


#: The regime colours as a colour map over the indices of ``theory.REGIMES`` (0, 1, 2).
REGIME_CMAP = ListedColormap([REGIME_COLORS[r] for r in REGIMES])


def regime_handles():
    """Legend handles of the three regimes, in the book's regime colours."""
    return [Patch(color=REGIME_COLORS[r], label=r) for r in REGIMES]


def band(ax, x, values, color, label=None):
    """Mean over the first axis of ``values`` (seeds, E) with a min-max band."""
    values = np.asarray(values, float)
    ax.plot(x, np.nanmean(values, 0), color=color, label=label)
    ax.fill_between(x, np.nanmin(values, 0), np.nanmax(values, 0), color=color, alpha=0.2, lw=0)


def accuracy_loss_panels(ax_acc, ax_loss, steps, hist, titles=("accuracy", "loss"), fontsize=8):
    """Accuracy (train on observed and clean labels, test) and loss (train, test) over steps."""
    ax_acc.plot(steps, hist["train_acc"], color=COLORS["train"], label="train, observed labels")
    ax_acc.plot(steps, hist["train_clean_acc"], color=COLORS["train_clean"], ls="--", label="train, clean labels")
    ax_acc.plot(steps, hist["test_acc"], color=COLORS["test"], ls=":", lw=2, label="test")
    ax_acc.set(xlabel="gradient step", ylabel="accuracy", title=titles[0], ylim=(0.45, 1.04))
    ax_acc.legend(fontsize=fontsize, loc="lower right")
    ax_loss.plot(steps, hist["train_loss"], color=COLORS["train"], label="train loss")
    ax_loss.plot(steps, hist["test_loss"], color=COLORS["test"], ls=":", lw=2, label="test loss")
    ax_loss.set(xlabel="gradient step", ylabel="mean logistic loss", title=titles[1])
    ax_loss.legend(fontsize=fontsize)


# --- Welcome, The setting, A benign solution exists -------------------------------------------


def _token_type(T):
    """Index into TOKEN_GROUPS of each position 0..T-1 (x_1, x_2, x_3, then irrelevant)."""
    return np.minimum(np.arange(T), 3)


def _type_boxes(ax, values, types):
    """Box plots of ``values`` (n, T) by token type (``types``: ``_token_type(T)``), in the type colours."""
    bp = ax.boxplot([values[:, types == k].ravel() for k in range(4)], patch_artist=True, widths=0.6)
    for patch, g in zip(bp["boxes"], TOKEN_GROUPS):
        patch.set_facecolor(TOKEN_COLORS[g])
    ax.set_xticks(range(1, 5), ["$x_1$", "$x_2$", "$x_3$", "$x_{4..T}$"])


def _stack_attention(ax, steps, attention, title):
    """Stacked area of one sample's attention (E, T) grouped by token type."""
    groups = np.concatenate([attention[:, :3], attention[:, 3:].sum(1, keepdims=True)], 1)
    ax.stackplot(steps, groups.T, colors=[TOKEN_COLORS[g] for g in TOKEN_GROUPS],
                 labels=[TOKEN_LABELS[g] for g in TOKEN_GROUPS], alpha=0.85)
    ax.set(xlabel="gradient step", ylabel="attention", ylim=(0, 1), xlim=(steps[0], steps[-1]), title=title)


@closed_figure
def welcome_overview(run, ds, clean_index=None, noisy_index=None):
    """:ref:`sec-welcome-picture`: one training run at a glance (2 x 2 panels).

    Accuracy over steps (on the observed labels, on the clean labels, on the test set); training and
    test loss; the attention of one clean and one noisy training sample over steps by token type."""
    clean_index = int(np.flatnonzero(~ds.noisy)[0]) if clean_index is None else clean_index
    noisy_index = int(np.flatnonzero(ds.noisy)[0]) if noisy_index is None else noisy_index
    fig, axes = subplots(2, 2, width=4.6, height=3.1)
    h, s = run.history, run.steps
    accuracy_loss_panels(axes[0, 0], axes[0, 1], s, h, fontsize=8)
    ax = axes[0, 1]
    ax.axhline(np.log1p(np.exp(-1 / np.sqrt(2))), color="0.5", lw=0.8, ls="--",
               label=r"$\log(1+e^{-1/\sqrt{2}})$")
    ax.legend(fontsize=8)
    attention = h["train_attention"]
    _stack_attention(axes[1, 0], s, attention[:, clean_index], f"clean training sample {clean_index}")
    _stack_attention(axes[1, 1], s, attention[:, noisy_index], f"noisy training sample {noisy_index}")
    legend_below(fig, ax=axes[1, 1])
    return fig


def _asinh_axis(ax, axis, ticks):
    """An asinh axis (linear around 0, logarithmic far from it, smooth) labelled at ``ticks`` only."""
    getattr(ax, f"set_{axis}scale")("asinh", linear_width=1.0)
    label = lambda t, _: f"{t:g}" if abs(t) < 100 else f"${'-' if t < 0 else ''}10^{{{np.log10(abs(t)):.0f}}}$"
    for setter, value in (("major_locator", FixedLocator(ticks)), ("major_formatter", FuncFormatter(label)),
                          ("minor_locator", NullLocator())):
        getattr(getattr(ax, f"{axis}axis"), f"set_{setter}")(value)


@closed_figure
def token_geometry(ds, samples=(0, 1, 2, 3)):
    r""":ref:`sec-setting-tokens`: real tokens of a few training sequences (3 panels).

    (a) projections :math:`(\langle x_t, \mu_{+1}\rangle, \langle x_t, \mu_{-1}\rangle) / \lVert\mu\rVert`
    coloured by token type, marker by clean class, on asinh axes (linear near 0, where the weak tokens sit
    apart from the irrelevant ones, logarithmic beyond);
    (b) noise norms :math:`\lVert\epsilon_t\rVert` of all training tokens by type against :math:`\sigma\sqrt d`;
    (c) head values :math:`Y^* \nu^\top x_t` of all training tokens by type against :math:`\pm 1/\sqrt2`,
    :math:`\pm\rho/\sqrt2`."""
    fig, axes = subplots(3, 1, width=4.0, height=3.4)
    types = _token_type(ds.T)
    norm = np.linalg.norm(ds.mu_pos)
    ax = axes[0, 0]
    for i in samples:
        marker = "o" if ds.y_clean[i] > 0 else "s"
        for t in range(ds.T):
            g = TOKEN_GROUPS[types[t]]
            ax.scatter(ds.X[i, t] @ ds.mu_pos / norm, ds.X[i, t] @ ds.mu_neg / norm, s=28,
                       marker=marker, color=TOKEN_COLORS[g], edgecolor="k", lw=0.3, alpha=0.85)
    for g in TOKEN_GROUPS:
        ax.scatter([], [], color=TOKEN_COLORS[g], label=TOKEN_LABELS[g], s=20)
    ax.scatter([], [], marker="o", color="w", edgecolor="k", label="$y^*=+1$")
    ax.scatter([], [], marker="s", color="w", edgecolor="k", label="$y^*=-1$")
    ax.set(xlabel=r"$\langle x_t, \mu_{+1}\rangle / \|\mu\|$", ylabel=r"$\langle x_t, \mu_{-1}\rangle / \|\mu\|$",
           title=f"(a) tokens of {len(samples)} sequences")
    _asinh_axis(ax, "x", [-2, 0, 2, 5, 10, 20, 50])  # linear near 0, where the weak tokens sit apart
    _asinh_axis(ax, "y", [-2, 0, 2, 5, 10, 20, 50])  # from the irrelevant ones; logarithmic out to x_1
    ax = axes[0, 1]
    _type_boxes(ax, np.linalg.norm(token_noise(ds), axis=-1), types)
    ax.axhline(ds.config.get("sigma", 1.0) * np.sqrt(ds.d), color="k", ls="--", lw=0.8, label=r"$\sigma\sqrt{d}$")
    ax.set(ylabel=r"noise norm $\|\epsilon_t\|$", title="(b) noise norms")
    legend_below(fig, ax=list(axes[0, :2]), ncol=4)
    ax = axes[0, 2]
    _type_boxes(ax, ds.y_clean[:, None] * (ds.X @ ds.nu), types)
    for v in (1, ds.config["rho"], -ds.config["rho"]):
        ax.axhline(v / np.sqrt(2), color="0.4", ls=":", lw=0.8)
    ax.set(ylabel=r"head value $y^*\,\nu^\top x_t$", title="(c) head values")
    return fig


def half_planes(ax, lim):
    r"""Shade where :math:`\nu^\top x > 0` (above the diagonal: output :math:`+1`) and :math:`< 0`, on
    :math:`(\mu_{-1}, \mu_{+1})` axes."""
    lo, hi = lim
    ax.fill_between([lo, hi], [lo, hi], [hi, hi], color=COLORS["class +1"], alpha=0.08, lw=0)
    ax.fill_between([lo, hi], [lo, lo], [lo, hi], color=COLORS["class -1"], alpha=0.08, lw=0)
    ax.plot([lo, hi], [lo, hi], color="0.5", lw=0.6)
    ax.set(xlim=lim, ylim=lim)
    ax.set_aspect("equal")


@closed_figure
def existence_scatter(ds, cs, titles=None, lim=(-0.45, 1.35)):
    r""":prf:ref:`def-construction`: the paper's Figure 1 (train top, test bottom).

    For each sequence, the token with the largest score :math:`x_t^\top q` under the construction
    :math:`q(c)` (``theory.existence_query``), projected on :math:`(\mu_{-1}, \mu_{+1}) / \lVert\mu\rVert^2`;
    shaded: the head's two output half-planes (blue: :math:`\nu^\top x > 0`, output :math:`+1`). Colour: the label used (observed for train, clean for
    test); crosses: noisy training samples."""
    fig, axes = subplots(len(cs), 2, width=3.3, height=3.3)
    norm2 = np.linalg.norm(ds.mu_pos) ** 2
    for k, c in enumerate(cs):
        q = existence_query(ds, c)
        m = evaluate_query(ds, q)
        for row, (X, y, noisy, acc) in enumerate([(ds.X, ds.y, ds.noisy, m["train_acc"]),
                                                   (ds.X_test, ds.y_test, np.zeros(len(ds.y_test), bool), m["test_acc"])]):
            ax = axes[row, k]
            half_planes(ax, lim)
            top = X[np.arange(len(X)), (X @ q).argmax(1)]
            px, py = top @ ds.mu_neg / norm2, top @ ds.mu_pos / norm2
            for sign, color in ((1, COLORS["class +1"]), (-1, COLORS["class -1"])):
                for flag, marker, size in ((False, "o", 18), (True, "X", 55)):
                    sel = (y == sign) & (noisy == flag)
                    if sel.any():
                        label = f"$y={sign:+d}$" + (", noisy" if flag else "")
                        ax.scatter(px[sel], py[sel], marker=marker, s=size, color=color,
                                   edgecolor="k", lw=0.3, alpha=0.8, label=label)
            name = "" if titles is None else titles[k] + ", "
            ax.set_title(f"{name}c = {c:g}\n{'train' if row == 0 else 'test'} accuracy {float(acc):.2f}", fontsize=9)
            ax.set(xlabel=r"$\langle x, \mu_{-1}\rangle/\|\mu\|^2$",
                   ylabel=r"$\langle x, \mu_{+1}\rangle/\|\mu\|^2$" if k == 0 else None)
    legend_below(fig, ax=axes[0, 0])
    return fig


@closed_figure
def existence_sweep(ds, cs, c_low=None, c_high=None, test_threshold=0.95):
    r""":ref:`sec-existence-sweep`: train (observed and clean labels) and test accuracy of
    the construction as :math:`c` sweeps ``cs``; background: the regime of each :math:`c`
    (``theory.classify_regime``); dashed lines: the scales :math:`c_{\rm low}` and :math:`c_{\rm high}` of
    the chapter's sketch."""
    acc = existence_accuracies(ds, cs)
    tr, trc, te = (acc[k] for k in ("train_acc", "train_clean_acc", "test_acc"))
    regime = classify_regime(tr, te, test_threshold)
    fig, axes = subplots(1, 1, width=6.0, height=3.4)
    ax = axes[0, 0]
    edges = np.sqrt(cs[1:] * cs[:-1])
    edges = np.concatenate([[cs[0]], edges, [cs[-1]]])
    for j, r in enumerate(regime):
        ax.axvspan(edges[j], edges[j + 1], color=REGIME_COLORS[REGIMES[r]], alpha=0.15, lw=0)
    ax.plot(cs, tr, "-", color=COLORS["train"], marker=".", label="train, observed labels")
    ax.plot(cs, trc, color=COLORS["train_clean"], ls="--", label="train, clean labels")
    ax.plot(cs, te, color=COLORS["test"], ls=":", lw=2, marker=".", label="test")
    for c, name in ((c_low, r"$c_{\rm low}$"), (c_high, r"$c_{\rm high}$")):
        if c is not None:
            ax.axvline(c, color="k", ls="--", lw=0.8)
            ax.text(c, 0.42, " " + name, fontsize=9)
    for r in REGIMES:
        ax.fill_between([], [], color=REGIME_COLORS[r], alpha=0.3, label=r)
    ax.set(xscale="log", xlabel="memorisation weight $c$", ylabel="accuracy", ylim=(0.4, 1.03),
           xlim=(cs[0], cs[-1]))
    legend_below(fig, ax=ax, ncol=3)  # below the axes: inside, it covered the c_low label
    return fig


# --- Training dynamics, Delayed generalisation ----------------------------------------------


def _runs_stack(runs, key, keep=slice(None)):
    return np.stack([np.asarray(r.history[key], float)[keep] for r in runs])


@closed_figure
def dynamics_grid(settings, max_step=1000):
    r"""The paper's training-dynamics experiment over seeds. ``settings``: {title: (runs, datasets)}, one run per seed.

    Columns: settings. Rows: attention of one clean and one noisy training sample (the first of
    each kind in every seed) on :math:`x_1`, :math:`x_2`, :math:`x_3` and the irrelevant tokens; train and test accuracy;
    test loss. Lines are means over seeds, bands the min-max range.

    Shown in :ref:`sec-dyn-settings`.
    """
    fig, axes = subplots(len(settings), 4, width=3.3, height=2.35, order="column", phone_height=1.8)
    rows = ("a clean sample:\nattention", "a noisy sample:\nattention", "accuracy", "test loss")
    for c, (title, (runs, datasets)) in enumerate(settings.items()):
        keep = runs[0].steps <= max_step
        x = runs[0].steps[keep]
        for r, kind in enumerate(("clean", "noisy")):
            idx = [int(np.flatnonzero(ds.noisy == (kind == "noisy"))[0]) for ds in datasets]
            vals = np.stack([analysis.sample_attention(run, i)[keep] for run, i in zip(runs, idx)])
            ax = axes[r, c]
            for g, name in enumerate(TOKEN_GROUPS):
                band(ax, x, vals[..., g], TOKEN_COLORS[name], TOKEN_LABELS[name])
            ax.set(ylim=(-0.03, 1.03), title=title if r == 0 else None)
        ax = axes[2, c]
        band(ax, x, _runs_stack(runs, "train_acc", keep), COLORS["train"], "train (observed labels)")
        band(ax, x, _runs_stack(runs, "test_acc", keep), COLORS["test"], "test")
        ax.set(ylim=(0.5, 1.02))
        ax = axes[3, c]
        band(ax, x, _runs_stack(runs, "test_loss", keep), COLORS["test"], "test loss")
        ax.set(xlabel="GD step")
    lims = np.array([ax.get_ylim() for ax in axes[3]])
    for ax in axes[3]:  # one test-loss scale for all settings, so that flat curves look flat
        ax.set_ylim(lims[:, 0].min(), lims[:, 1].max())
    for r, label in enumerate(rows):
        for ax in axes[r] if phone_layout() else axes[r, :1]:  # stacked: every panel says what it is
            ax.set_ylabel(label)
    if phone_layout():
        for c, title in enumerate(settings):
            for r in range(1, 4):
                axes[r, c].set_title(title)
    legend_below(fig, ax=[axes[0, 0], axes[2, 0]], ncol=3)
    return fig


@closed_figure
def long_run(runs, datasets, title="large signal", horizon=None):
    """A long run on log-spaced records: train accuracy of every seed (observed and clean labels),
    the noisy samples' mean attention on each token type (band over seeds), test accuracy and loss.
    ``horizon``: a step to mark with a dotted vertical line in every panel (e.g. the end of the
    paper's runs). ``title`` goes into the figure's alt text.

    Shown in :ref:`sec-dyn-large-long`.
    """
    x = runs[0].steps[1:]
    fig, axes = subplots(3, 1, width=3.4, height=4.0)
    ax = axes[0, 0]
    for k, run in enumerate(runs):
        ax.plot(x, run.history["train_acc"][1:], color=COLORS["train"], alpha=0.35 + 0.13 * k, lw=1,
                label="train, observed labels" if k == len(runs) - 1 else None)
        ax.plot(x, run.history["train_clean_acc"][1:], color=COLORS["train_clean"], ls="--", alpha=0.35 + 0.13 * k,
                lw=1, label="train, clean labels" if k == len(runs) - 1 else None)
    eta = datasets[0].config.get("eta", np.mean([ds.noisy.mean() for ds in datasets]))
    ax.axhline(1 - eta, color="0.6", lw=0.8, ls=":")
    ax.set_title("(a) training accuracy", fontsize=10)
    ax.set(ylim=(0.7, 1.02))
    ax = axes[0, 1]
    vals = _runs_stack(runs, "attn_noisy")[:, 1:]
    for g, name in enumerate(TOKEN_GROUPS):
        band(ax, x, vals[..., g], TOKEN_COLORS[name], TOKEN_LABELS[name])
    ax.set_title("(b) noisy samples' attention", fontsize=10)
    ax.set(ylim=(-0.03, 1.03))
    ax = axes[0, 2]
    band(ax, x, _runs_stack(runs, "test_acc")[:, 1:], COLORS["test"], "test accuracy")
    ax.set_ylabel("test accuracy", color=COLORS["test"])
    loss_ax = ax.twinx()  # accuracy and loss have their own labelled scales
    band(loss_ax, x, _runs_stack(runs, "test_loss")[:, 1:], COLORS["test_loss"], "test loss")
    loss_ax.set_ylabel("test loss", color=COLORS["test_loss"])
    ax.set_title("(c) test set", fontsize=10)
    if horizon is not None:
        for ax in axes[0]:
            ax.axvline(horizon, color="0.3", ls=":", lw=1)
    fig.suptitle(title, fontsize=10)
    legend_below(fig, ax=[*axes[0], loss_ax], ncol=3)
    for ax in axes[0]:
        ax.set(xscale="log", xlabel="GD step")
    return fig


@closed_figure
def delayed_generalisation(runs, mark_fit=False):
    r"""Test loss, test margin and test-side attention on :math:`x_1` over a long run (log step axis; mean and
    min-max band over seeds). The grey span covers the steps at which the seeds first fit every
    training label, the dashed line is their median. With ``mark_fit``, a dotted horizontal line in
    each panel marks the seed mean of the value at each seed's fitting step, so that the change
    before fitting and the change after it can be read off separately.

    Shown in :ref:`sec-delay-long`.
    """
    x = runs[0].steps[1:]
    fits = np.array([analysis.first_fit_step(r) for r in runs])
    fig, axes = subplots(3, 1, width=3.4, height=3.0)
    panels = [("test_loss", "test loss"), ("test_margin", "test margin $E[y f(X)]$"),
              ("attn_test", "test attention on $x_1$")]
    for ax, (key, label) in zip(axes[0], panels):
        vals = _runs_stack(runs, key)[:, 1:]
        if key == "attn_test":
            vals = vals[..., 0]
        band(ax, x, vals, COLORS["test"] if key != "attn_test" else TOKEN_COLORS["x1"])  # the title names it
        ax.axvspan(np.nanmin(fits), np.nanmax(fits), color="0.85", lw=0)
        ax.axvline(np.nanmedian(fits), color="k", ls="--", lw=0.9, label="train labels fitted")
        if mark_fit:
            at_fit = [np.ravel(r.at(key, f))[0] for r, f in zip(runs, fits)]
            ax.axhline(np.mean(at_fit), color="0.3", ls=":", lw=1, label="value at fitting")
        ax.set(xscale="log", xlabel="GD step", title=label)
    if mark_fit:
        legend_below(fig, ax=axes[0, 0], ncol=3)
    else:
        axes[0, 0].legend(fontsize=8)
    return fig


@closed_figure
def g_linear(steps, g_values, start, names=("clean samples: $g(\\Lambda)$", "noisy samples: $g(\\Gamma)$")):
    r"""Mean over samples of :math:`g(\text{gap})` against the step (linear axes) for each array in
    ``g_values`` ``(seeds, E)``; band over seeds and, dashed, the least-squares line on steps
    :math:`\ge` ``start``.

    Shown in :ref:`sec-delay-runs`.
    """
    fig, axes = subplots(len(g_values), 1, width=3.9)
    steps = np.asarray(steps, float)
    for ax, vals, name in zip(axes[0], g_values, names):
        band(ax, steps, vals, COLORS["clean" if "clean" in name else "noisy"], name)
        slope, intercept, r2 = analysis.late_linear_fit(steps, np.nanmean(vals, 0), start)
        late = steps >= start
        ax.plot(steps[late], slope * steps[late] + intercept, "k--", lw=1,
                label=f"line fitted on steps $\\geq$ {start:g} ($R^2$ = {r2:.4f})")
        ax.set(xlabel="GD step $\\tau$", title=name)
    legend_below(fig, ax=list(axes[0]), ncol=2)
    return fig


@closed_figure
def gap_times(levels, times, predicted, window=None, label="clean samples, $\\Lambda$"):
    r"""Steps for the gap to first reach a level :math:`\bar x` (log scale): measured (mean and range over
    seeds of the per-seed geometric mean over samples), the g-law prediction (dashed), a line of slope 1
    in log-time, time proportional to :math:`e^{\bar x}` (dotted), through the last measured point, and shaded the
    ``window`` of steps ``(start, stop)`` the prediction was fitted on.

    Shown in :ref:`sec-delay-runs`.
    """
    fig, axes = subplots(1, 1, width=4.8, phone_height=3.3)
    ax = axes[0, 0]
    if window is not None:
        ax.axhspan(*window, color="0.9", lw=0, label="steps used for the fit")
    levels = np.asarray(levels, float)
    band(ax, levels, times, COLORS["measured"], f"{label}: measured")
    ax.plot(levels, np.exp(np.nanmean(np.log(predicted), 0)), "k--", lw=1, label="g-law prediction")
    last = np.exp(np.nanmean(np.log(times[:, -1])))
    ax.plot(levels, last * np.exp(levels - levels[-1]), ":", color="0.4", label="$\\propto e^{\\bar x}$")
    ax.set(yscale="log", xlabel="gap level $\\bar x$", ylabel="first step with gap $\\geq \\bar x$")
    _corner_legend(fig, ax)
    return fig


def _corner_legend(fig, ax):
    """The legend in a free corner of ``ax``; below the panel in the phone layout (no free corner)."""
    return legend_below(fig, ax=ax, ncol=1) if phone_layout() else ax.legend(fontsize=8)


@closed_figure
def g_law(taus, x_numeric, x_theory, T):
    r"""The logit-gap ODE: numerical solutions (solid) and :math:`g^{-1}(g(x_0) + c\tau)` (dots), log time axis.

    Shown in :ref:`sec-delay-law`.
    """
    fig, axes = subplots(2, 1, width=3.9)
    ax = axes[0, 0]
    xs = np.linspace(-4, 12, 400)
    ax.plot(xs, theory.g(xs, T), label="$g(x)$")
    ax.plot(xs, np.exp(xs) / T, ls="--", label="$e^x / T$")
    _asinh_axis(ax, "y", [-1e3, -1e2, -10, 0, 10, 1e2, 1e3, 1e4])  # smooth: symlog drew false kinks
    ax.set(xlabel="gap $x$", title=f"$g(x) = 2x + 2\\sinh(x - \\log T)$, T = {T}")
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    for k in range(x_numeric.shape[1]):
        ax.plot(taus[1:], x_numeric[1:, k], lw=2, alpha=0.6)
        ax.plot(taus[1::8], x_theory[1::8, k], "k.", ms=3)
    ax.set(xscale="log", xlabel="time $\\tau$", ylabel="gap $x(\\tau)$", title="ODE (lines) vs $g^{-1}$ (dots)")
    return fig


# --- The phase diagram, Under the hood ----------------------------------------------------------


def cell_edges(v, log=False):
    r"""Cell edges around the grid values ``v``: midpoints, and a one-point axis gets a cell of
    half-width :math:`|v|/2` (:math:`1/2` at 0). With ``log``: geometric midpoints of positive values, and a
    factor :math:`e^{1/2}` either side of a one-point axis. Used by every map (:ref:`the phase grid <sec-phase-grid>`)."""
    v = np.asarray(v, float)
    if log:
        lv = np.log(v)
        return np.exp(np.r_[lv[0] - 0.5, lv[0] + 0.5] if lv.size == 1 else cell_edges(lv))
    if v.size == 1:
        h = 0.5 * (abs(v[0]) if v[0] != 0 else 1.0)
        return np.r_[v[0] - h, v[0] + h]
    mid = (v[1:] + v[:-1]) / 2
    return np.r_[v[0] - (mid[0] - v[0]), mid, v[-1] + (v[-1] - mid[-1])]


def _overlay(ax, curves):
    for c in curves or ():
        ax.plot(c["x"], c["y"], color=c.get("color", "k"), ls=c.get("ls", "--"), lw=1.6, label=c.get("label"))


def _map_axes(ax, x, y, title, xlabel, ylabel, curves, xlog, ylog):
    """Limits, labels, overlaid curves and log scales of one (x, y) map panel."""
    _overlay(ax, curves)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel, xlim=(cell_edges(x)[0], cell_edges(x)[-1]),
           ylim=(cell_edges(y)[0], cell_edges(y)[-1]))
    if xlog:
        ax.set_xscale("log")
    if ylog:
        ax.set_yscale("log")


@closed_figure
def heat_maps(x, y, maps, titles, xlabel, ylabel, curves=None, cmap="viridis", xlog=False, ylog=False):
    """Heat maps ``maps`` (each (len(x), len(y))) side by side, x horizontal and y vertical, each with
    its own colour bar; ``curves`` (dicts with x, y, label, color, ls) are drawn on every panel.

    Shown in :ref:`the phase diagram's grid <sec-phase-grid>`.
    """
    x, y = check_grid_axis("x", x, xlog), check_grid_axis("y", y, ylog)
    maps, titles = check_maps("maps", maps, titles, x, y)
    fig, axes = subplots(len(maps), width=4.6, height=3.6)
    for ax, m, title in zip(axes[0], maps, titles):
        im = ax.pcolormesh(cell_edges(x), cell_edges(y), np.asarray(m, float).T, cmap=cmap, shading="flat")
        fig.colorbar(im, ax=ax, shrink=0.9)
        _map_axes(ax, x, y, title, xlabel, ylabel, curves, xlog, ylog)
    if curves:
        legend_below(fig)
    return fig


@closed_figure
def regime_maps(x, y, regimes, titles, xlabel, ylabel, curves=None, xlog=False, ylog=False):
    """Categorical maps of :func:`~benign_attention.theory.classify_regime` indices (each (len(x), len(y)))
    in the book's regime colours.

    Shown in :ref:`sec-phase-regimes`.
    """
    x, y = check_grid_axis("x", x, xlog), check_grid_axis("y", y, ylog)
    regimes, titles = check_maps("regimes", regimes, titles, x, y)
    fig, axes = subplots(len(regimes), width=4.0, height=3.6)
    for ax, reg, title in zip(axes[0], regimes, titles):
        ax.pcolormesh(cell_edges(x), cell_edges(y), np.asarray(reg, float).T, cmap=REGIME_CMAP, vmin=-0.5, vmax=2.5,
                      shading="flat")
        _map_axes(ax, x, y, title, xlabel, ylabel, curves, xlog, ylog)
    legend_below(fig, regime_handles() + fig.axes[0].get_legend_handles_labels()[0], ncol=3)
    return fig


@closed_figure
def plane_summary(x, y, test_loss, regime, xlabel, ylabel, curves=None, xlog=True):
    """Two panels over a (x, y) plane: the test loss heat map and the regime map (indices of
    :func:`~benign_attention.theory.classify_regime`), with optional overlaid ``curves``.

    Shown in :ref:`sec-phase-time`.
    """
    x, y = check_grid_axis("x", x, xlog), check_grid_axis("y", y)
    test_loss, regime = check_map("test_loss", test_loss, x, y), check_map("regime", regime, x, y)
    fig, axes = subplots(2, width=4.4, height=3.6)
    ex, ey = cell_edges(x, xlog), cell_edges(y)
    im = axes[0, 0].pcolormesh(ex, ey, np.asarray(test_loss, float).T, cmap="viridis", shading="flat")
    fig.colorbar(im, ax=axes[0, 0], shrink=0.9)
    axes[0, 1].pcolormesh(ex, ey, np.asarray(regime, float).T, cmap=REGIME_CMAP, vmin=-0.5, vmax=2.5, shading="flat")
    for ax, title in zip(axes[0], ("test loss", "regime")):
        _overlay(ax, curves)
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel, xlim=(ex[0], ex[-1]), ylim=(ey[0], ey[-1]))
        if xlog:
            ax.set_xscale("log")
    legend_below(fig, regime_handles() + fig.axes[0].get_legend_handles_labels()[0], ncol=3)
    return fig


@closed_figure
def fitting_time_maps(panels, unfitted_label="not fitted by the end of the run"):
    """Maps of the step from which every training label stays fitted
    (:func:`~benign_attention.theory.fitting_step`), one panel per dict with ``x``, ``y``, ``steps``
    ((len(x), len(y)), ``inf`` where never fitted), ``title``, ``xlabel``, ``ylabel`` and optional
    ``xlog``. Shared logarithmic colour scale; cells not fitted within the run are grey.

    Shown in :ref:`sec-phase-not-yet`.
    """
    check_map_panels("panels", panels, "steps")
    fig, axes = subplots(len(panels), width=4.4, height=3.6)
    finite = np.concatenate([np.ravel(p["steps"])[np.isfinite(np.ravel(p["steps"]))] for p in panels])
    if finite.size == 0:
        finite = np.array([1.0])   # nothing fitted anywhere: every cell grey
    norm = LogNorm(vmin=max(float(finite.min()), 1.0), vmax=float(finite.max()))
    for ax, p in zip(axes[0], panels):
        x, y, st = (np.asarray(p[k], float) for k in ("x", "y", "steps"))
        ex = cell_edges(x, p.get("xlog", False))
        ey = cell_edges(y)
        ax.pcolormesh(ex, ey, np.where(np.isfinite(st), np.nan, 0.0).T, cmap=ListedColormap(["0.65"]),
                      shading="flat")
        im = ax.pcolormesh(ex, ey, np.where(np.isfinite(st), st, np.nan).T, cmap="viridis", norm=norm,
                           shading="flat")
        ax.set(title=p.get("title"), xlabel=p["xlabel"], ylabel=p["ylabel"], xlim=(ex[0], ex[-1]),
               ylim=(ey[0], ey[-1]))
        if p.get("xlog"):
            ax.set_xscale("log")
        if len(y) <= 12:  # few rows: label the values that were run, not a continuous axis
            ax.set_yticks(y, [f"{v:g}" for v in y])
    fig.colorbar(im, ax=list(axes[0]), shrink=0.9, label="step: all labels fitted")
    legend_below(fig, [Patch(color="0.65", label=unfitted_label)], ncol=1)
    return fig


@closed_figure
def boundaries_in_time(x, curves_by_step, xlabel, ylabel, reference=None):
    """Boundary curves (dict step -> y values over x, NaN where absent) of several training times on
    one panel, darker = later; ``reference`` an optional dashed curve dict (x, y, label).

    Shown in :ref:`sec-phase-time`.
    """
    fig, axes = subplots(1, width=5.0, height=3.6)
    ax = axes[0, 0]
    steps = sorted(curves_by_step)
    for k, s in enumerate(steps):
        shade = plt.cm.Blues(0.35 + 0.65 * k / max(len(steps) - 1, 1))
        ax.plot(x, curves_by_step[s], "o-", ms=3, color=shade, label=f"step {s}")
    if reference is not None:
        ax.plot(reference["x"], reference["y"], "k--", label=reference.get("label"))
    ax.set(xlabel=xlabel, ylabel=ylabel)
    _corner_legend(fig, ax)
    return fig


@closed_figure
def engine_timings(d, seconds_per_step, xlabel="token dimension $d$"):
    r"""Time per GD step against :math:`d` on log-log axes; ``seconds_per_step`` maps engine name -> values
    (NaN where not measured).

    Shown in :ref:`the timing section <sec-exact-speed>`.
    """
    fig, axes = subplots(1, width=5.0, height=3.6)
    ax = axes[0, 0]
    for name, t in seconds_per_step.items():
        t = np.asarray(t, float)
        ok = np.isfinite(t)
        ax.loglog(np.asarray(d)[ok], t[ok], "o-", label=name)
    ax.set(xlabel=xlabel, ylabel="seconds per GD step")
    _plain_log_ticks(ax.xaxis, d)  # the measured d only: minor labels (3 x 10^2, ...) collide
    ax.grid(True, which="both", alpha=0.3)
    _corner_legend(fig, ax)
    return fig


def _plain_log_ticks(axis, values=None):
    """Label a log axis with plain numbers (at ``values`` if given) and no minor labels."""
    if values is not None:
        axis.set_major_locator(FixedLocator(np.asarray(values, float)))
    else:
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


@closed_figure
def seed_spread(x, curves, xlabel, ylabel, xlog=True):
    """Mean over seeds with a min-max band, one curve per label; ``curves`` maps a label to an array
    (seeds, len(x)) (:ref:`sec-own-synthetic`)."""
    fig, axes = subplots(1, width=5.0, height=3.4)
    ax = axes[0, 0]
    for (label, values), color in zip(curves.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        band(ax, x, values, color, label=label)
        ax.plot(x, np.nanmean(np.asarray(values, float), 0), "o", color=color, ms=4)
    ax.set(xlabel=xlabel, ylabel=ylabel, xscale="log" if xlog else "linear")
    if xlog:
        _plain_log_ticks(ax.xaxis, x)
    ax.grid(True, alpha=0.3)
    legend_below(fig, ncol=len(curves))
    return fig


@closed_figure
def cost_growth(panels, ylabel="seconds per run", min_decades=1.0):
    """One log-log panel per knob: run time against the knob's value, with the fitted power law;
    ``panels`` maps an axis label to ``(values, seconds)`` (:ref:`sec-own-synthetic`). The shared
    time axis spans at least ``min_decades`` decades (widened about its geometric centre), so that
    a flat cost looks flat rather than zoomed into noise."""
    fig, axes = subplots(len(panels), width=2.2 if len(panels) > 1 else 3.4, height=2.6, sharey=True)
    for ax, (label, (x, t)) in zip(axes[0], panels.items()):
        x, t = np.asarray(x, float), np.asarray(t, float)
        slope, icept = np.polyfit(np.log(x), np.log(t), 1)
        ax.loglog(x, t, "o", color="k")
        ax.loglog(x, np.exp(icept) * x ** slope, "-", color=COLORS["measured"], lw=1)
        ax.set_title(f"slope {slope:.2f}", fontsize=9)
        ax.set_xlabel(label)
        _plain_log_ticks(ax.xaxis, x)
        if np.allclose(np.log10(x), np.round(np.log10(x))) and x.max() / x.min() > 1e3:  # decades: 10^k
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"$10^{{{round(np.log10(v))}}}$"))
        _plain_log_ticks(ax.yaxis)
        ax.grid(True, which="major", alpha=0.3)
    lo, hi = axes[0, 0].get_ylim()
    if hi / lo < 10.0 ** min_decades:
        centre = np.sqrt(lo * hi)
        axes[0, 0].set_ylim(centre / 10 ** (min_decades / 2), centre * 10 ** (min_decades / 2))
    axes[0, 0].set_ylabel(ylabel)
    return fig
