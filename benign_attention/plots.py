"""The book's figures: one function per figure, each returning a closed matplotlib Figure.

The first is shown in :ref:`sec-welcome-picture`; each figure function names the section that shows it.

Chapters show a figure with :func:`benign_attention.display.show` (the package's one display
convention, explained there); the explorers' frames go through :func:`benign_attention.display.png`.

This module only draws: the numbers a figure shows come from :mod:`benign_attention.analysis`,
:mod:`benign_attention.theory` or the runs themselves. Sections follow the chapters. Shared style
(colours of token types and regimes) lives at the top.
"""
from __future__ import annotations

import matplotlib  # noqa: F401

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from . import analysis  # noqa: E402
from .metrics import TOKEN_GROUPS  # noqa: E402
from .validation import ArgumentTypeError, check_array  # noqa: E402

#: One colour per token type (x_1, x_2, x_3, irrelevant) and per regime, used by every figure.
TOKEN_COLORS = dict(zip(TOKEN_GROUPS, ("#1f77b4", "#2ca02c", "#d62728", "#7f7f7f")))
TOKEN_LABELS = dict(zip(TOKEN_GROUPS, ("$x_1$ (relevant)", "$x_2$ (weak, true class)",
                                       "$x_3$ (weak, other class)", "irrelevant $x_4..x_T$")))
REGIME_COLORS = {"not overfitting": "#9467bd", "benign": "#2ca02c", "harmful": "#d62728"}


#: Widest figure in inches: at ``display.CSS_DPI`` it fits the book's text column, so text of 7 pt or
#: more stays at least ``display.MIN_TEXT_PX`` high on the page (``display.figure_problems`` checks).
MAX_WIDTH = 7.2


def subplots(ncols=1, nrows=1, width=4.2, height=3.2, **kw):
    """``plt.subplots`` with panels of ``width`` x ``height`` inches, shrunk to ``MAX_WIDTH`` (7.2 in)."""
    shrink = min(1.0, MAX_WIDTH / (width * ncols))
    return plt.subplots(nrows, ncols, figsize=(width * ncols * shrink, height * nrows * max(shrink, 0.75)),
                        squeeze=False, constrained_layout=True, **kw)


def legend_below(fig, handles=None, labels=None, ncol=4, fontsize=8, ax=None):
    """One legend for the whole figure, below the panels (never over data). Without ``handles`` it
    collects the labelled artists of ``ax`` (default: the first axes)."""
    if handles is None:
        handles, labels = (ax or fig.axes[0]).get_legend_handles_labels()
    kw = {} if labels is None else {"labels": labels}
    return fig.legend(handles=handles, loc="outside lower center", ncol=min(ncol, len(handles)),
                      fontsize=fontsize, frameon=False, **kw)


def band(ax, x, values, color, label=None):
    """Mean over the first axis of ``values`` (seeds, E) with a min-max band."""
    values = np.asarray(values, float)
    ax.plot(x, np.nanmean(values, 0), color=color, label=label)
    ax.fill_between(x, np.nanmin(values, 0), np.nanmax(values, 0), color=color, alpha=0.2, lw=0)


def accuracy_loss_panels(ax_acc, ax_loss, steps, hist, titles=("accuracy", "loss"), fontsize=8):
    """Accuracy (train on observed and clean labels, test) and loss (train, test) over steps."""
    ax_acc.plot(steps, hist["train_acc"], color="k", label="train, observed labels")
    ax_acc.plot(steps, hist["train_clean_acc"], color="#ff7f0e", ls="--", label="train, clean labels")
    ax_acc.plot(steps, hist["test_acc"], color="#1f77b4", ls=":", lw=2, label="test")
    ax_acc.set(xlabel="gradient step", ylabel="accuracy", title=titles[0], ylim=(0.45, 1.04))
    ax_acc.legend(fontsize=fontsize, loc="lower right")
    ax_loss.plot(steps, hist["train_loss"], color="k", label="train loss")
    ax_loss.plot(steps, hist["test_loss"], color="#1f77b4", ls=":", lw=2, label="test loss")
    ax_loss.set(xlabel="gradient step", ylabel="mean logistic loss", title=titles[1])
    ax_loss.legend(fontsize=fontsize)


# --- Welcome, The setting, A benign solution exists -------------------------------------------


def _token_type(T):
    """Index into TOKEN_GROUPS of each position 0..T-1 (x_1, x_2, x_3, then irrelevant)."""
    return np.minimum(np.arange(T), 3)


def _stack_attention(ax, steps, attention, title):
    """Stacked area of one sample's attention (E, T) grouped by token type."""
    groups = np.concatenate([attention[:, :3], attention[:, 3:].sum(1, keepdims=True)], 1)
    ax.stackplot(steps, groups.T, colors=[TOKEN_COLORS[g] for g in TOKEN_GROUPS],
                 labels=[TOKEN_LABELS[g] for g in TOKEN_GROUPS], alpha=0.85)
    ax.set(xlabel="gradient step", ylabel="attention", ylim=(0, 1), xlim=(steps[0], steps[-1]), title=title)


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
    plt.close(fig)  # the display convention: see benign_attention.display
    return fig


def token_noise(ds):
    """Noise part eps of every training token (n, T, d): x_t minus its signal (needs ``rho`` in config).

    Shown in :ref:`sec-setting-tokens`.
    """
    from .data import signal_coefficients
    coef = signal_coefficients(ds.y_clean, ds.T, ds.config["rho"])
    return ds.X - (coef[..., :1] * ds.mu_pos + coef[..., 1:] * ds.mu_neg)


def token_geometry(ds, samples=(0, 1, 2, 3)):
    """:ref:`sec-setting-tokens`: real tokens of a few training sequences (3 panels).

    (a) projections ``(<x_t, mu_{+}>, <x_t, mu_{-}>) / ||mu||`` coloured by token type, marker by clean class;
    (b) noise norms ||eps_t|| of all training tokens by type against sigma sqrt(d);
    (c) head values y* nu^T x_t of all training tokens by type against +-1/sqrt(2), +-rho/sqrt(2)."""
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
    eps_norm = np.linalg.norm(token_noise(ds), axis=-1)
    ax = axes[0, 1]
    data = [eps_norm[:, types == k].ravel() for k in range(4)]
    bp = ax.boxplot(data, patch_artist=True, widths=0.6)
    for patch, g in zip(bp["boxes"], TOKEN_GROUPS):
        patch.set_facecolor(TOKEN_COLORS[g])
    sigma = ds.config.get("sigma", 1.0)
    ax.axhline(sigma * np.sqrt(ds.d), color="k", ls="--", lw=0.8, label=r"$\sigma\sqrt{d}$")
    ax.set_xticks(range(1, 5), ["$x_1$", "$x_2$", "$x_3$", "$x_{4..T}$"])
    ax.set(ylabel=r"noise norm $\|\epsilon_t\|$", title="(b) noise norms")
    pairs = [hl for a in axes[0, :2] for hl in zip(*a.get_legend_handles_labels())]
    legend_below(fig, [h for h, _ in pairs], [lab for _, lab in pairs], ncol=4)
    ax = axes[0, 2]
    z = ds.y_clean[:, None] * (ds.X @ ds.nu)
    bp = ax.boxplot([z[:, types == k].ravel() for k in range(4)], patch_artist=True, widths=0.6)
    for patch, g in zip(bp["boxes"], TOKEN_GROUPS):
        patch.set_facecolor(TOKEN_COLORS[g])
    rho = ds.config["rho"]
    for v in (1, rho, -rho):
        ax.axhline(v / np.sqrt(2), color="0.4", ls=":", lw=0.8)
    ax.set_xticks(range(1, 5), ["$x_1$", "$x_2$", "$x_3$", "$x_{4..T}$"])
    ax.set(ylabel=r"head value $y^*\,\nu^\top x_t$", title="(c) head values")
    plt.close(fig)  # the display convention: see benign_attention.display
    return fig


def per_sample_loss_floor(ds, X=None, y=None):
    """:prf:ref:`prop-loss-floor`: log(1 + exp(-max_t y_i nu^T x_t^(i))) for every sequence (n,).

    Shown in :ref:`sec-setting-floor`.
    """
    X = ds.X if X is None else X
    y = ds.y if y is None else y
    return np.logaddexp(0.0, -(y[:, None] * (X @ ds.nu)).max(1))


def selecting_query(ds, scale=60.0):
    """A query that selects each sample's best head token, with score ``scale`` on that token and
    0 on the others (``x_t^(i)·q``, least squares; exact when the n*T training tokens are
    linearly independent).

    Shown in :ref:`sec-setting-floor`.
    """
    best = (ds.y[:, None] * (ds.X @ ds.nu)).argmax(1)
    target = np.zeros((ds.n, ds.T))
    target[np.arange(ds.n), best] = scale
    q, *_ = np.linalg.lstsq(ds.X.reshape(-1, ds.d), target.ravel(), rcond=None)
    return q


def _half_planes(ax, lim):
    """Shade where nu^T x > 0 (above the diagonal: output +1) and < 0, on ``(mu_{-}, mu_{+})`` axes."""
    lo, hi = lim
    ax.fill_between([lo, hi], [lo, hi], [hi, hi], color="#1f77b4", alpha=0.08, lw=0)
    ax.fill_between([lo, hi], [lo, lo], [lo, hi], color="#d62728", alpha=0.08, lw=0)
    ax.plot([lo, hi], [lo, hi], color="0.5", lw=0.6)
    ax.set(xlim=lim, ylim=lim)
    ax.set_aspect("equal")


def existence_scatter(ds, cs, titles=None, lim=(-0.45, 1.35)):
    """:prf:ref:`def-construction`: the paper's Figure 1 (train top, test bottom).

    For each sequence, the token with the largest score x_t·q under the construction q(c)
    (``theory.existence_query``), projected on ``(mu_{-}, mu_{+}) / ||mu||^2``; shaded: the head's two output
    half-planes (blue: nu^T x > 0, output +1). Colour: the label used (observed for train, clean for
    test); crosses: noisy training samples."""
    from .theory import evaluate_query, existence_query
    fig, axes = subplots(len(cs), 2, width=3.3, height=3.3)
    norm2 = np.linalg.norm(ds.mu_pos) ** 2
    for k, c in enumerate(cs):
        q = existence_query(ds, c)
        m = evaluate_query(ds, q)
        for row, (X, y, noisy, acc) in enumerate([(ds.X, ds.y, ds.noisy, m["train_acc"]),
                                                   (ds.X_test, ds.y_test, np.zeros(len(ds.y_test), bool), m["test_acc"])]):
            ax = axes[row, k]
            _half_planes(ax, lim)
            top = X[np.arange(len(X)), (X @ q).argmax(1)]
            px, py = top @ ds.mu_neg / norm2, top @ ds.mu_pos / norm2
            for sign, color in ((1, "#1f77b4"), (-1, "#d62728")):
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
    plt.close(fig)  # the display convention: see benign_attention.display
    return fig


def existence_sweep(ds, cs, c_low=None, c_high=None, test_threshold=0.95):
    """:ref:`sec-existence-sweep`: train (observed and clean labels) and test accuracy of
    the construction as c sweeps ``cs``; background: the regime of each c (``theory.classify_regime``);
    dashed lines: the scales c_low and c_high of the chapter's sketch."""
    from .theory import REGIMES, classify_regime, evaluate_query, existence_query
    ms = [evaluate_query(ds, existence_query(ds, c)) for c in cs]
    tr, trc, te = (np.array([float(m[k]) for m in ms]) for k in ("train_acc", "train_clean_acc", "test_acc"))
    regime = classify_regime(tr, te, test_threshold)
    fig, axes = subplots(1, 1, width=6.0, height=3.4)
    ax = axes[0, 0]
    edges = np.sqrt(cs[1:] * cs[:-1])
    edges = np.concatenate([[cs[0]], edges, [cs[-1]]])
    for j, r in enumerate(regime):
        ax.axvspan(edges[j], edges[j + 1], color=REGIME_COLORS[REGIMES[r]], alpha=0.15, lw=0)
    ax.plot(cs, tr, "k-", marker=".", label="train, observed labels")
    ax.plot(cs, trc, color="#ff7f0e", ls="--", label="train, clean labels")
    ax.plot(cs, te, color="#1f77b4", ls=":", lw=2, marker=".", label="test")
    for c, name in ((c_low, r"$c_{\rm low}$"), (c_high, r"$c_{\rm high}$")):
        if c is not None:
            ax.axvline(c, color="k", ls="--", lw=0.8)
            ax.text(c, 0.42, " " + name, fontsize=9)
    for r in REGIMES:
        ax.fill_between([], [], color=REGIME_COLORS[r], alpha=0.3, label=r)
    ax.set(xscale="log", xlabel="memorisation weight $c$", ylabel="accuracy", ylim=(0.4, 1.03),
           xlim=(cs[0], cs[-1]))
    ax.legend(fontsize=8, loc="lower left", ncol=2)
    plt.close(fig)  # the display convention: see benign_attention.display
    return fig


def existence_test_bound(ds, q, h=0.2):
    """:prf:ref:`prop-test-guarantee`: for each class y, the bound
    ``sum_{t>=2} Phi_bar((Delta_t - lambda) / (sqrt(2) sigma ||q||)) + 2 T Phi_bar(h / (sigma ||nu||))``
    on the probability that a fresh test sequence of class y is misclassified by W = I, p = q;
    returns the average over the two classes (balanced test labels).

    Shown in :ref:`sec-existence-construction`.
    """
    from math import erfc, log, sqrt
    phi_bar = lambda x: 0.5 * erfc(x / sqrt(2))
    rho, sigma, T = ds.config["rho"], ds.config.get("sigma", 1.0), ds.T
    m, B = 1 / sqrt(2) - h, rho / sqrt(2) + h
    lam = log((T - 1) * B / m)
    s = sigma * np.linalg.norm(q)
    head = 2 * T * phi_bar(h / (sigma * np.linalg.norm(ds.nu)))
    out = []
    for mu_true, mu_other in ((ds.mu_pos, ds.mu_neg), (ds.mu_neg, ds.mu_pos)):
        v = np.zeros((T, ds.d))
        v[0], v[1], v[2] = mu_true, rho * mu_true, rho * mu_other
        delta = (v[0] - v[1:]) @ q
        out.append(sum(phi_bar((dt - lam) / (sqrt(2) * s)) for dt in delta) + head)
    return float(np.mean(out))


# --- Training dynamics, Delayed generalisation ----------------------------------------------

# Helpers first (used by chapters 4-5 and their asserts), then one function per figure.


def _shown_once(fig):
    """Close ``fig`` in pyplot before returning it, so that a notebook shows it once (as the cell's
    value) and not a second time through the inline backend's automatic display."""
    plt.close(fig)  # the display convention: see benign_attention.display
    return fig


def _runs_stack(runs, key, keep=slice(None)):
    return np.stack([np.asarray(r.history[key], float)[keep] for r in runs])


def dynamics_grid(settings, max_step=1000):
    """The paper's training-dynamics experiment over seeds. ``settings``: {title: (runs, datasets)}, one run per seed.

    Columns: settings. Rows: attention of one clean and one noisy training sample (the first of
    each kind in every seed) on x_1, x_2, x_3 and the irrelevant tokens; train and test accuracy;
    test loss. Lines are means over seeds, bands the min-max range.

    Shown in :ref:`sec-dyn-settings`.
    """
    fig, axes = subplots(len(settings), 4, width=3.3, height=2.35)
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
        band(ax, x, _runs_stack(runs, "train_acc", keep), "k", "train (observed labels)")
        band(ax, x, _runs_stack(runs, "test_acc", keep), "#ff7f0e", "test")
        ax.set(ylim=(0.5, 1.02))
        ax = axes[3, c]
        band(ax, x, _runs_stack(runs, "test_loss", keep), "#ff7f0e", "test loss")
        ax.set(xlabel="GD step")
    lims = np.array([ax.get_ylim() for ax in axes[3]])
    for ax in axes[3]:  # one test-loss scale for all settings, so that flat curves look flat
        ax.set_ylim(lims[:, 0].min(), lims[:, 1].max())
    for r, label in enumerate(("a clean sample:\nattention", "a noisy sample:\nattention", "accuracy",
                               "test loss")):
        axes[r, 0].set_ylabel(label)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    more = axes[2, 0].get_legend_handles_labels()
    legend_below(fig, handles + more[0], labels + more[1], ncol=3)
    return _shown_once(fig)


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
        ax.plot(x, run.history["train_acc"][1:], color="k", alpha=0.35 + 0.13 * k, lw=1,
                label="train, observed labels" if k == len(runs) - 1 else None)
        ax.plot(x, run.history["train_clean_acc"][1:], color="#9467bd", ls="--", alpha=0.35 + 0.13 * k,
                lw=1, label="train, clean labels" if k == len(runs) - 1 else None)
    eta = datasets[0].config.get("eta", np.mean([ds.noisy.mean() for ds in datasets]))
    ax.axhline(1 - eta, color="0.6", lw=0.8, ls=":")
    ax.set(title="(a) training accuracy", ylim=(0.7, 1.02))
    ax = axes[0, 1]
    vals = _runs_stack(runs, "attn_noisy")[:, 1:]
    for g, name in enumerate(TOKEN_GROUPS):
        band(ax, x, vals[..., g], TOKEN_COLORS[name], TOKEN_LABELS[name])
    ax.set(title="(b) noisy samples' attention", ylim=(-0.03, 1.03))
    ax = axes[0, 2]
    band(ax, x, _runs_stack(runs, "test_acc")[:, 1:], "#ff7f0e", "test accuracy")
    band(ax, x, _runs_stack(runs, "test_loss")[:, 1:], "#8c564b", "test loss")
    ax.set(title="(c) test set")
    if horizon is not None:
        for ax in axes[0]:
            ax.axvline(horizon, color="0.3", ls=":", lw=1)
    fig.suptitle(title, fontsize=10)
    pairs = [hl for ax in axes[0] for hl in zip(*ax.get_legend_handles_labels())]
    legend_below(fig, [h for h, _ in pairs], [lab for _, lab in pairs], ncol=3)
    for ax in axes[0]:
        ax.set(xscale="log", xlabel="GD step")
    return _shown_once(fig)


def delayed_generalisation(runs, mark_fit=False):
    """Test loss, test margin and test-side attention on x_1 over a long run (log step axis; mean and
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
        band(ax, x, vals, "#ff7f0e" if key != "attn_test" else TOKEN_COLORS["x1"], label)
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
    return _shown_once(fig)


def g_linear(steps, g_values, start, names=("clean samples: $g(\\Lambda)$", "noisy samples: $g(\\Gamma)$")):
    """Mean over samples of g(gap) against the step (linear axes) for each array in ``g_values``
    (seeds, E); band over seeds and, dashed, the least-squares line on steps >= ``start``.

    Shown in :ref:`sec-delay-runs`.
    """
    fig, axes = subplots(len(g_values), 1, width=3.9)
    steps = np.asarray(steps, float)
    for ax, vals, name in zip(axes[0], g_values, names):
        band(ax, steps, vals, "#1f77b4" if "clean" in name else "#d62728", name)
        slope, intercept, r2 = analysis.late_linear_fit(steps, np.nanmean(vals, 0), start)
        late = steps >= start
        ax.plot(steps[late], slope * steps[late] + intercept, "k--", lw=1,
                label=f"line fitted on steps $\\geq$ {start:g} ($R^2$ = {r2:.4f})")
        ax.set(xlabel="GD step $\\tau$", title=name)
    pairs = [hl for ax in axes[0] for hl in zip(*ax.get_legend_handles_labels())]
    legend_below(fig, [h for h, _ in pairs], [lab for _, lab in pairs], ncol=2)
    return _shown_once(fig)


def passage_times(steps, gaps, mask, levels, start=None, stop=np.inf, T=None):
    """Geometric mean over the samples in ``mask`` of the first step at which a sample's gap
    (column of ``gaps`` (E, n)) reaches each level (NaN if one never does). With ``start`` and
    ``T``: instead the times predicted by each sample's g-law line, the least-squares fit of
    g(gap) against the step on ``start`` <= step <= ``stop``: tau_L = (g(L) - intercept) / slope.

    Shown in :ref:`sec-delay-runs`.
    """
    from .theory import g

    times = []
    for i in np.flatnonzero(np.asarray(mask, bool)):
        if start is None:
            times.append(analysis.first_passage(steps, gaps[:, i], levels))
        else:
            slope, intercept, _ = analysis.late_linear_fit(steps, g(gaps[:, i], T), start, stop)
            times.append((g(np.asarray(levels, float), T) - intercept) / slope)
    with np.errstate(invalid="ignore"):
        return np.exp(np.log(np.stack(times)).mean(0))


def gap_times(levels, times, predicted, window=None, label="clean samples, $\\Lambda$"):
    """Steps for the gap to first reach L (log scale): measured (mean and range over seeds of the
    per-seed geometric mean over samples), the g-law prediction (dashed), a line of slope 1 in
    log-time, time proportional to e^L (dotted), through the last measured point, and shaded the
    ``window`` of steps (start, stop) the prediction was fitted on.

    Shown in :ref:`sec-delay-runs`.
    """
    fig, axes = subplots(1, 1, width=4.8)
    ax = axes[0, 0]
    if window is not None:
        ax.axhspan(*window, color="0.9", lw=0, label="steps used for the fit")
    levels = np.asarray(levels, float)
    band(ax, levels, times, "#1f77b4", f"{label}: measured")
    ax.plot(levels, np.exp(np.nanmean(np.log(predicted), 0)), "k--", lw=1, label="g-law prediction")
    last = np.exp(np.nanmean(np.log(times[:, -1])))
    ax.plot(levels, last * np.exp(levels - levels[-1]), ":", color="0.4", label="$\\propto e^{\\bar x}$")
    ax.set(yscale="log", xlabel="gap level $\\bar x$", ylabel="first step with gap $\\geq \\bar x$")
    ax.legend(fontsize=8)
    return _shown_once(fig)


def g_law(taus, x_numeric, x_theory, T):
    """The logit-gap ODE: numerical solutions (solid) and ``g^{-1}(g(x_0) + c tau)`` (dots), log time axis.

    Shown in :ref:`sec-delay-law`.
    """
    fig, axes = subplots(2, 1, width=3.9)
    ax = axes[0, 0]
    xs = np.linspace(-4, 12, 400)
    ax.plot(xs, 2 * xs + 2 * np.sinh(xs - np.log(T)), label="$g(x)$")
    ax.plot(xs, np.exp(xs) / T, ls="--", label="$e^x / T$")
    ax.set(yscale="symlog", xlabel="gap $x$", title=f"$g(x) = 2x + 2\\sinh(x - \\log T)$, T = {T}")
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    for k in range(x_numeric.shape[1]):
        ax.plot(taus[1:], x_numeric[1:, k], lw=2, alpha=0.6)
        ax.plot(taus[1::8], x_theory[1::8, k], "k.", ms=3)
    ax.set(xscale="log", xlabel="time $\\tau$", ylabel="gap $x(\\tau)$", title="ODE (lines) vs $g^{-1}$ (dots)")
    return _shown_once(fig)



# --- The phase diagram, Under the hood ----------------------------------------------------------


def _edges(v):
    """Cell edges around the grid values ``v`` (midpoints; a one-point axis gets a cell of half-width
    |v|/2, or 1/2 at 0)."""
    v = np.asarray(v, float)
    if v.size == 1:
        h = 0.5 * (abs(v[0]) if v[0] != 0 else 1.0)
        return np.r_[v[0] - h, v[0] + h]
    mid = (v[1:] + v[:-1]) / 2
    return np.r_[v[0] - (mid[0] - v[0]), mid, v[-1] + (v[-1] - mid[-1])]


def _log_edges(v):
    """Geometric cell edges around the positive grid values ``v`` (a one-point axis: a factor e^(1/2)
    either side)."""
    lv = np.log(np.asarray(v, float))
    return np.exp(np.r_[lv[0] - 0.5, lv[0] + 0.5] if lv.size == 1 else _edges(lv))


def _axis(name, v, log=False):
    """The grid values of a map axis, checked: finite numbers, at least one, > 0 on a log axis."""
    a = check_array(name, v, ndim=1)
    if a.size == 0:
        raise ValueError(f"{name} must hold at least one grid value")
    if log and np.any(a <= 0):
        raise ValueError(f"{name} must be > 0 on a logarithmic axis, got a minimum of {a.min():g}")
    return a


def _map(name, m, x, y):
    """A map over the grid (x, y) as a float array of shape (len(x), len(y)) (NaN allowed: blank cells)."""
    return check_array(name, m, shape=(len(x), len(y)), finite=False)


def _maps(name, maps, titles, x, y):
    if isinstance(maps, (str, bytes)) or not hasattr(maps, "__iter__"):
        raise ArgumentTypeError(f"{name} must be a list of maps, each (len(x), len(y)) = ({len(x)}, {len(y)})")
    maps = [_map(f"{name}[{i}]", m, x, y) for i, m in enumerate(maps)]
    if not maps:
        raise ValueError(f"{name} must hold at least one map")
    titles = list(titles) if not isinstance(titles, str) else [titles]
    if len(titles) != len(maps):
        raise ValueError(f"titles must give one title per map ({len(maps)}), got {len(titles)}")
    return maps, titles


def _overlay(ax, curves):
    for c in curves or ():
        ax.plot(c["x"], c["y"], color=c.get("color", "k"), ls=c.get("ls", "--"), lw=1.6, label=c.get("label"))


def _map_axes(ax, x, y, title, xlabel, ylabel, curves, xlog, ylog):
    """Limits, labels, overlaid curves and log scales of one (x, y) map panel."""
    _overlay(ax, curves)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel, xlim=(_edges(x)[0], _edges(x)[-1]),
           ylim=(_edges(y)[0], _edges(y)[-1]))
    if xlog:
        ax.set_xscale("log")
    if ylog:
        ax.set_yscale("log")


def heat_maps(x, y, maps, titles, xlabel, ylabel, curves=None, cmap="viridis", xlog=False, ylog=False):
    """Heat maps ``maps`` (each (len(x), len(y))) side by side, x horizontal and y vertical, each with
    its own colour bar; ``curves`` (dicts with x, y, label, colour, ls) are drawn on every panel.

    Shown in :ref:`the phase diagram's grid <sec-phase-grid>`.
    """
    x, y = _axis("x", x, xlog), _axis("y", y, ylog)
    maps, titles = _maps("maps", maps, titles, x, y)
    fig, axes = subplots(len(maps), width=4.6, height=3.6)
    for ax, m, title in zip(axes[0], maps, titles):
        im = ax.pcolormesh(_edges(x), _edges(y), np.asarray(m, float).T, cmap=cmap, shading="flat")
        fig.colorbar(im, ax=ax, shrink=0.9)
        _map_axes(ax, x, y, title, xlabel, ylabel, curves, xlog, ylog)
    if curves:
        legend_below(fig)
    plt.close(fig)  # the display convention: see benign_attention.display
    return fig


def regime_maps(x, y, regimes, titles, xlabel, ylabel, curves=None, xlog=False, ylog=False):
    """Categorical maps of :func:`~benign_attention.theory.classify_regime` indices (each (len(x), len(y)))
    in the book's regime colours.

    Shown in :ref:`sec-phase-regimes`.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from .theory import REGIMES

    cmap = ListedColormap([REGIME_COLORS[r] for r in REGIMES])
    x, y = _axis("x", x, xlog), _axis("y", y, ylog)
    regimes, titles = _maps("regimes", regimes, titles, x, y)
    fig, axes = subplots(len(regimes), width=4.0, height=3.6)
    for ax, reg, title in zip(axes[0], regimes, titles):
        ax.pcolormesh(_edges(x), _edges(y), np.asarray(reg, float).T, cmap=cmap, vmin=-0.5, vmax=2.5,
                      shading="flat")
        _map_axes(ax, x, y, title, xlabel, ylabel, curves, xlog, ylog)
    handles = [Patch(color=REGIME_COLORS[r], label=r) for r in REGIMES]
    legend_below(fig, handles + fig.axes[0].get_legend_handles_labels()[0], ncol=3)
    plt.close(fig)  # the display convention: see benign_attention.display
    return fig


def plane_summary(x, y, test_loss, regime, xlabel, ylabel, curves=None, xlog=True):
    """Two panels over a (x, y) plane: the test loss heat map and the regime map (indices of
    :func:`~benign_attention.theory.classify_regime`), with optional overlaid ``curves``.

    Shown in :ref:`sec-phase-time`.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from .theory import REGIMES

    x, y = _axis("x", x, xlog), _axis("y", y)
    test_loss, regime = _map("test_loss", test_loss, x, y), _map("regime", regime, x, y)
    fig, axes = subplots(2, width=4.4, height=3.6)
    ex, ey = (_log_edges(x) if xlog else _edges(x)), _edges(y)
    im = axes[0, 0].pcolormesh(ex, ey, np.asarray(test_loss, float).T, cmap="viridis", shading="flat")
    fig.colorbar(im, ax=axes[0, 0], shrink=0.9)
    cmap = ListedColormap([REGIME_COLORS[r] for r in REGIMES])
    axes[0, 1].pcolormesh(ex, ey, np.asarray(regime, float).T, cmap=cmap, vmin=-0.5, vmax=2.5, shading="flat")
    for ax, title in zip(axes[0], ("test loss", "regime")):
        _overlay(ax, curves)
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel, xlim=(ex[0], ex[-1]), ylim=(ey[0], ey[-1]))
        if xlog:
            ax.set_xscale("log")
    handles = [Patch(color=REGIME_COLORS[r], label=r) for r in REGIMES]
    legend_below(fig, handles + fig.axes[0].get_legend_handles_labels()[0], ncol=3)
    plt.close(fig)  # the display convention: see benign_attention.display
    return fig


def fitting_time_maps(panels, unfitted_label="not fitted by the end of the run"):
    """Maps of the step from which every training label stays fitted
    (:func:`~benign_attention.theory.fitting_step`), one panel per dict with ``x``, ``y``, ``steps``
    ((len(x), len(y)), ``inf`` where never fitted), ``title``, ``xlabel``, ``ylabel`` and optional
    ``xlog``. Shared logarithmic colour scale; cells not fitted within the run are grey.

    Shown in :ref:`sec-phase-not-yet`.
    """
    from matplotlib.colors import ListedColormap, LogNorm
    from matplotlib.patches import Patch

    if not isinstance(panels, (list, tuple)) or not panels or not all(isinstance(p, dict) for p in panels):
        raise ArgumentTypeError("panels must be a non-empty list of dicts with x, y, steps, xlabel and ylabel")
    for i, p in enumerate(panels):
        missing = [k for k in ("x", "y", "steps", "xlabel", "ylabel") if k not in p]
        if missing:
            raise ValueError(f"panels[{i}] is missing {missing}")
        x, y = _axis(f"panels[{i}]['x']", p["x"], p.get("xlog", False)), _axis(f"panels[{i}]['y']", p["y"])
        _map(f"panels[{i}]['steps']", p["steps"], x, y)
    fig, axes = subplots(len(panels), width=4.4, height=3.6)
    finite = np.concatenate([np.ravel(p["steps"])[np.isfinite(np.ravel(p["steps"]))] for p in panels])
    if finite.size == 0:
        finite = np.array([1.0])   # nothing fitted anywhere: every cell grey
    norm = LogNorm(vmin=max(float(finite.min()), 1.0), vmax=float(finite.max()))
    for ax, p in zip(axes[0], panels):
        x, y, st = (np.asarray(p[k], float) for k in ("x", "y", "steps"))
        ex = _log_edges(x) if p.get("xlog") else _edges(x)
        ey = _edges(y)
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
    plt.close(fig)  # the display convention: see benign_attention.display
    return fig


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
    ax.legend(fontsize=8)
    plt.close(fig)  # the display convention: see benign_attention.display
    return fig


def engine_timings(d, seconds_per_step, xlabel="token dimension $d$"):
    """Time per GD step against d on log-log axes; ``seconds_per_step`` maps engine name -> values
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
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    plt.close(fig)  # the display convention: see benign_attention.display
    return fig


def _plain_log_ticks(axis, values=None):
    """Label a log axis with plain numbers (at ``values`` if given) and no minor labels."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator

    if values is not None:
        axis.set_major_locator(FixedLocator(np.asarray(values, float)))
    else:
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


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
    plt.close(fig)  # the display convention: see benign_attention.display
    return fig


def cost_growth(panels, ylabel="seconds per run"):
    """One log-log panel per knob: run time against the knob's value, with the fitted power law;
    ``panels`` maps an axis label to ``(values, seconds)`` (:ref:`sec-own-synthetic`)."""
    fig, axes = subplots(len(panels), width=2.2, height=2.6, sharey=True)
    for ax, (label, (x, t)) in zip(axes[0], panels.items()):
        x, t = np.asarray(x, float), np.asarray(t, float)
        slope, icept = np.polyfit(np.log(x), np.log(t), 1)
        ax.loglog(x, t, "o", color="k")
        ax.loglog(x, np.exp(icept) * x ** slope, "-", color="#1f77b4", lw=1)
        ax.set_title(f"slope {slope:.2f}", fontsize=9)
        ax.set_xlabel(label)
        _plain_log_ticks(ax.xaxis, x)
        _plain_log_ticks(ax.yaxis)
        ax.grid(True, which="major", alpha=0.3)
    axes[0, 0].set_ylabel(ylabel)
    plt.close(fig)  # the display convention: see benign_attention.display
    return fig


# --- Explorers (static twins render through these too) -------------------------------------------
#
# Each explorer figure is a small class that lays its Figure out once and then changes its artists'
# data in place (``update``): the live explorers keep one per panel and re-render it on every slider
# move, the static twins render every frame from the same object, so frames share one layout and
# do not jitter. The figures are sized for the book's text column (EXPLORER_WIDTH inches = 720 CSS
# px at display.CSS_DPI) with text of at least 8 pt (11 CSS px). Legends sit in a row of their
# own below the panels, never over data. The ``explorer_*`` functions return one closed Figure.

#: Width of every explorer figure in inches: the book's text column at display.CSS_DPI.
EXPLORER_WIDTH = 7.2
#: Font sizes (points) of the explorer figures.
EXPLORER_FONTS = dict(tick=8.0, label=8.5, title=9.0, legend=8.0, suptitle=9.5, note=8.0)


class _ExplorerFigure:
    """A Figure (not registered with pyplot, so no backend ever shows it on its own) with an Agg
    canvas. The first render lays it out (constrained layout); the layout is then frozen."""

    def __init__(self, height, nrows, ncols, height_ratios=None, width_ratios=None):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.fig = Figure(figsize=(EXPLORER_WIDTH, height), layout="constrained")
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

    ``update()`` takes ``hist`` with (E,) ``train_acc``, ``train_clean_acc``, ``test_acc``,
    ``train_loss``, ``test_loss`` and (E, 4) ``attn_clean`` / ``attn_noisy`` (a
    :class:`~benign_attention.engines.Run` history or one cell of a
    :class:`~benign_attention.sweeps.GridResult`). (a) accuracy, (b) loss, (c) mean attention by token
    type on clean (solid) and noisy (dashed) training samples. ``regime`` (a name of
    ``theory.REGIMES``) colours the title."""

    def __init__(self):
        from matplotlib.lines import Line2D
        from matplotlib.ticker import FormatStrFormatter

        super().__init__(3.15, 2, 3, height_ratios=(1.0, 0.3))
        acc, loss, att = (self._axes(self.grid[0, k]) for k in range(3))
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
        self._legend_row(self.grid[1, 0:2], handles, ncol=2)
        token_handles = [Line2D([], [], color=TOKEN_COLORS[g], label=TOKEN_LABELS[g]) for g in TOKEN_GROUPS]
        token_handles += [Line2D([], [], color="k", label="clean samples"),
                          Line2D([], [], color="k", ls="--", label="noisy samples")]
        self._legend_row(self.grid[1, 2], token_handles, ncol=2, handlelength=1.6, columnspacing=0.8)
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
        self.title.set_text(" | ".join(x for x in (title, regime and f"regime: {regime}") if x))
        self.title.set_color(REGIME_COLORS.get(regime, "k"))
        return self.freeze()


def explorer_regime(steps, hist, regime=None, title=None):
    """:ref:`sec-playground-regime`, regime explorer: one closed Figure (see :class:`RegimeFigure`)."""
    return RegimeFigure().update(steps, hist, regime, title)


#: Sequence kinds of the token-selection movie: (observed label, noisy?) -> colour, marker, size, label.
_SEQ_STYLE = {(1, False): ("#1f77b4", "o", 14, "$y=+1$, clean"), (-1, False): ("#d62728", "o", 14, "$y=-1$, clean"),
              (1, True): ("#1f77b4", "X", 70, "$y=+1$, label flipped"),
              (-1, True): ("#d62728", "X", 70, "$y=-1$, label flipped")}
#: Token-type landmarks of the movie: where a sequence sits when it attends to one token of that type.
_LANDMARK_STYLE = dict(x1=("*", 150, r"$x_1 = \mu_{y^*}$ (relevant)"),
                       x3=("D", 60, r"$x_3 = \rho\,\mu_{-y^*}$: at $(\rho, 0)$ if $y^*\!=\!+1$"),
                       irrelevant=("s", 60, "irrelevant (noise only)"))


class SelectionFigure(_ExplorerFigure):
    """:ref:`sec-playground-movie`, token-selection movie: what every sequence's attention reads.

    Each sequence is drawn at its *attended token* z = sum_t s_t x_t (s its attention), projected on
    ``(mu_{-1}, mu_{+1}) / ||mu||^2``. The head's output is nu^T z, so the diagonal is exactly the decision
    boundary (shaded: the two output half-planes; blue: output +1, as in the paper's Figure 1).
    Hollow markers: the token-type landmarks, where a sequence sits when it attends to a single token
    of that type (x_1 at distance one along its class, x_3 at rho along the other class, noise at the
    origin). (a) training sequences (colour: observed label; crosses: flipped labels, with their path
    so far), (b) a zoom on the weak-token corner of (a), (c) test sequences (colour: clean label).
    ``update()`` takes a frame dict of ``widgets.selection_frames``."""

    def __init__(self, rho, lim=(-0.2, 1.2), zoom=None):
        from matplotlib.collections import LineCollection
        from matplotlib.lines import Line2D
        from matplotlib.patches import Rectangle

        super().__init__(3.55, 2, 3, height_ratios=(1.0, 0.24))
        self.rho = float(rho)
        zoom = (-0.12, max(0.3, self.rho + 0.16)) if zoom is None else zoom  # x_3 +- 3 noise sd (1/||mu||)
        axes = [self._axes(self.grid[0, k]) for k in range(3)]
        self.axes = axes
        self.scatter, self.trails = {}, {}
        for k, (ax, limits) in enumerate(zip(axes, (lim, zoom, lim))):
            _half_planes(ax, limits)
            self._landmarks(ax)
            side = "test" if k == 2 else "train"
            kinds = [(1, False), (-1, False)] + ([(1, True), (-1, True)] if side == "train" else [])
            if side == "train":
                self.trails[k] = ax.add_collection(LineCollection([], lw=0.9, alpha=0.6, zorder=3))
            for kind in kinds:
                color, marker, size, _ = _SEQ_STYLE[kind]
                self.scatter[k, kind] = ax.scatter(np.empty(0), np.empty(0), marker=marker, s=size * (1.3 if k == 1 else 1),
                                                   color=color, edgecolor="k", lw=0.35, alpha=0.8, zorder=4)
            _label(ax, r"$\langle z, \mu_{-1}\rangle/\|\mu\|^2$",
                   r"$\langle z, \mu_{+1}\rangle/\|\mu\|^2$" if k == 0 else None)
        axes[0].add_patch(Rectangle((zoom[0], zoom[0]), zoom[1] - zoom[0], zoom[1] - zoom[0], fill=False,
                                    ec="0.3", lw=0.8, ls=":", zorder=5))
        handles = [Line2D([], [], ls="", marker=m, ms=np.sqrt(s), color=c, mec="k", mew=0.35, label=lab)
                   for (c, m, s, lab) in _SEQ_STYLE.values()]
        handles += [Line2D([], [], ls="", marker=m, ms=np.sqrt(s) * 0.8, mfc="none", mec="0.2", label=lab)
                    for m, s, lab in _LANDMARK_STYLE.values()]
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


def explorer_selection(frame, title=None):
    """:ref:`sec-playground-movie`, token-selection movie: one closed Figure (see :class:`SelectionFigure`)."""
    return SelectionFigure(frame["knobs"]["rho"]).update(frame, title)


def _cell_edges(v, log):
    v = np.asarray(v, float)
    return _log_edges(v) if log else _edges(v)


class PhaseFigure(_ExplorerFigure):
    """:ref:`sec-playground-phase`, phase-diagram explorer: the (d, ||mu||) map at one step (2 panels).

    (a) the regime of each cell (indices into ``theory.REGIMES``; legend below); (b) a per-cell value
    named ``panel`` (e.g. "test loss") on the fixed colour scale ``vlim``. Axes are logarithmic
    when a grid spans more than a factor 25 (geometric cell edges), else linear."""

    def __init__(self, d_values, mu_values, panel="test loss", vlim=(0.5, 1.0)):
        from matplotlib.colors import ListedColormap
        from matplotlib.patches import Patch
        from matplotlib.ticker import NullLocator

        from .theory import REGIMES

        x, y = _axis("d_values", d_values, log=True), _axis("mu_values", mu_values, log=True)
        vlim = check_array("vlim", vlim, shape=(2,))
        if not vlim[0] < vlim[1]:
            raise ValueError(f"vlim must be (low, high) with low < high, got {tuple(vlim)}")
        if not isinstance(panel, str):
            raise ArgumentTypeError(f"panel must be a string (the name of the values shown), got {type(panel).__name__}")
        super().__init__(3.3, 2, 2, height_ratios=(1.0, 0.12))
        xlog, ylog = bool(x.max() > 25 * x.min()), bool(y.max() > 25 * y.min())
        ex, ey = _cell_edges(x, xlog), _cell_edges(y, ylog)
        self.shape = (len(x), len(y))
        blank = np.zeros((len(y), len(x)))
        reg_ax, val_ax = self._axes(self.grid[0, 0]), self._axes(self.grid[0, 1])
        cmap = ListedColormap([REGIME_COLORS[r] for r in REGIMES])
        self.regime_mesh = reg_ax.pcolormesh(ex, ey, blank, cmap=cmap, vmin=-0.5, vmax=len(REGIMES) - 0.5,
                                             shading="flat")
        self.value_mesh = val_ax.pcolormesh(ex, ey, blank, cmap="viridis", vmin=vlim[0], vmax=vlim[1], shading="flat")
        cbar = self.fig.colorbar(self.value_mesh, ax=val_ax)
        cbar.ax.tick_params(labelsize=EXPLORER_FONTS["tick"])
        cbar.set_label(panel, fontsize=EXPLORER_FONTS["label"])
        for ax, title in ((reg_ax, "(a) regime"), (val_ax, f"(b) clean {panel}")):
            ax.set(xlim=(ex[0], ex[-1]), ylim=(ey[0], ey[-1]))
            for log, values, axis, set_scale in ((xlog, x, ax.xaxis, ax.set_xscale), (ylog, y, ax.yaxis, ax.set_yscale)):
                if log:  # plain numbers at the grid values, not powers of ten
                    set_scale("log")
                    axis.set_ticks(values, [f"{v:g}" for v in values])
                    axis.set_minor_locator(NullLocator())
            _label(ax, "dimension $d$", r"signal norm $\|\mu\|$" if ax is reg_ax else None, title)
        self._legend_row(self.grid[1, 0], [Patch(color=REGIME_COLORS[r], label=r) for r in REGIMES], ncol=3,
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


def explorer_phase(d_values, mu_values, regime, values, title=None, panel="test loss", vlim=(0.5, 1.0)):
    """:ref:`sec-playground-phase`, phase-diagram explorer: one closed Figure (see :class:`PhaseFigure`)."""
    return PhaseFigure(d_values, mu_values, panel, vlim).update(regime, values, title)


# --- The transformer encoder (chapter *A full transformer encoder*; moved here from the encoder package) ---


def encoder_dynamics(settings):
    """``settings``: {title: (run, ds)}. Columns: settings. Rows: mean [CLS] attention of the clean
    and of the noisy training samples by token type; train (observed labels) and test accuracy;
    train and test loss (log scale). :ref:`sec-encoder-dynamics` (an
    :class:`~benign_attention.encoder.train.EncoderRun` and its data set per setting)."""
    if not isinstance(settings, dict) or not settings:
        raise ValueError("settings must be a non-empty dict {title: (run, ds)}")
    fig, axes = subplots(len(settings), 4, width=2.4, height=1.75)
    for c, (title, (run, ds)) in enumerate(settings.items()):
        x = run.steps
        for r, noisy in enumerate((False, True)):
            ax = axes[r, c]
            att = analysis.attention_by_type(run, ds.noisy == noisy)
            for g, name in enumerate(TOKEN_GROUPS):
                ax.plot(x, att[:, g], color=TOKEN_COLORS[name], label=TOKEN_LABELS[name])
            ax.plot(x, att[:, 4], color="k", ls=":", label="[CLS] itself")
            ax.set(ylim=(-0.03, 1.03), title=title if r == 0 else None)
        ax = axes[2, c]
        ax.plot(x, run.history["train_acc"], color="k", label="train (observed labels)")
        t = np.isfinite(run.history["test_acc"])
        ax.plot(x[t], run.history["test_acc"][t], color="#ff7f0e", label="test")
        ax.set(ylim=(0.4, 1.03))
        ax = axes[3, c]
        ax.plot(x, run.history["train_loss"], color="k")
        ax.plot(x[t], run.history["test_loss"][t], color="#ff7f0e")
        ax.set(yscale="log", xlabel="SGD step")
    for r, label in enumerate(("clean samples:\nattention", "noisy samples:\nattention", "accuracy", "loss")):
        axes[r, 0].set_ylabel(label)
    for ax in axes.flat:
        ax.tick_params(labelsize=8)
        ax.title.set_fontsize(8)
        ax.yaxis.label.set_fontsize(8)
        ax.xaxis.label.set_fontsize(8)
    h, lab = axes[0, 0].get_legend_handles_labels()
    h2, lab2 = axes[2, 0].get_legend_handles_labels()
    legend_below(fig, h + h2, lab + lab2, ncol=4, fontsize=8)
    plt.close(fig)  # the display convention: see benign_attention.display
    return fig


def encoder_loss_maps(d_values, mu_values, train_loss, test_loss, title=""):
    """Train and test loss maps (each (len(d_values), len(mu_values))) after training, one column per
    d and one row per ||mu|| in grid order (not to scale); NaN cells (not computed) are left blank.
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
    plt.close(fig)  # the display convention: see benign_attention.display
    return fig


def encoder_boundary(d_values, boundaries, threshold=0.1):
    """The signal strength at which the test loss crosses ``threshold``, against d: ``boundaries``
    is ``{label: values}`` with one value per entry of ``d_values`` (NaN where not computed), one line
    with markers per label (e.g. per seed). Shown in :ref:`sec-encoder-grid`."""
    d_values = np.asarray(d_values, float)
    if not isinstance(boundaries, dict) or not boundaries:
        raise ValueError("boundaries must be a non-empty dict {label: one value per d}")
    for label, b in boundaries.items():
        if np.shape(b) != d_values.shape:
            raise ValueError(f"boundaries[{label!r}] must have one value per d ({len(d_values)}), got shape {np.shape(b)}")
    fig, axes = subplots(1, width=4.2, height=2.8)
    ax = axes[0, 0]
    for (label, b), marker in zip(boundaries.items(), "os^vDP"):
        b = np.asarray(b, float)
        ok = np.isfinite(b)
        ax.plot(d_values[ok], b[ok], marker=marker, ms=5, lw=1, label=label)
    ax.set(xlabel="$d$", ylabel=rf"$\|\mu\|$ where test loss = {threshold:g}")
    legend_below(fig, *ax.get_legend_handles_labels(), ncol=len(boundaries), fontsize=8)
    plt.close(fig)  # the display convention: see benign_attention.display
    return fig
