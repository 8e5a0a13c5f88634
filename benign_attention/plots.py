"""The book's figures: one function per figure, each returning a matplotlib Figure.

Sections follow the chapters. Shared style (colours of token types and regimes) lives at the top.
"""
from __future__ import annotations

import matplotlib  # noqa: F401

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .metrics import TOKEN_GROUPS  # noqa: E402

#: One colour per token type (x_1, x_2, x_3, irrelevant) and per regime, used by every figure.
TOKEN_COLORS = dict(zip(TOKEN_GROUPS, ("#1f77b4", "#2ca02c", "#d62728", "#7f7f7f")))
TOKEN_LABELS = dict(zip(TOKEN_GROUPS, ("$x_1$ (relevant)", "$x_2$ (weak, true class)",
                                       "$x_3$ (weak, other class)", "irrelevant $x_4..x_T$")))
REGIME_COLORS = {"not overfitting": "#9467bd", "benign": "#2ca02c", "harmful": "#d62728"}


def _fig(ncols=1, nrows=1, width=4.2, height=3.2, **kw):
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False,
                        constrained_layout=True, **kw)


def band(ax, x, values, color, label=None):
    """Mean over the first axis of ``values`` (seeds, E) with a min-max band."""
    values = np.asarray(values, float)
    ax.plot(x, np.nanmean(values, 0), color=color, label=label)
    ax.fill_between(x, np.nanmin(values, 0), np.nanmax(values, 0), color=color, alpha=0.2, lw=0)


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
    """Chapter *Welcome*: one training run at a glance (2 x 2 panels).

    Accuracy over steps (on the observed labels, on the clean labels, on the test set); training and
    test loss; the attention of one clean and one noisy training sample over steps by token type."""
    clean_index = int(np.flatnonzero(~ds.noisy)[0]) if clean_index is None else clean_index
    noisy_index = int(np.flatnonzero(ds.noisy)[0]) if noisy_index is None else noisy_index
    fig, axes = _fig(2, 2, width=4.6, height=3.1)
    h, s = run.history, run.steps
    ax = axes[0, 0]
    ax.plot(s, h["train_acc"], color="k", label="train, observed labels")
    ax.plot(s, h["train_clean_acc"], color="#ff7f0e", ls="--", label="train, clean labels")
    ax.plot(s, h["test_acc"], color="#1f77b4", ls=":", lw=2, label="test")
    ax.set(xlabel="gradient step", ylabel="accuracy", title="accuracy", ylim=(0.5, 1.04))
    ax.legend(fontsize=8, loc="lower right")
    ax = axes[0, 1]
    ax.plot(s, h["train_loss"], color="k", label="train loss")
    ax.plot(s, h["test_loss"], color="#1f77b4", ls=":", lw=2, label="test loss")
    ax.axhline(np.log1p(np.exp(-1 / np.sqrt(2))), color="0.5", lw=0.8, ls="--",
               label=r"$\log(1+e^{-1/\sqrt{2}})$")
    ax.set(xlabel="gradient step", ylabel="mean logistic loss", title="loss")
    ax.legend(fontsize=8)
    attention = h["train_attention"]
    _stack_attention(axes[1, 0], s, attention[:, clean_index], f"clean training sample {clean_index}")
    _stack_attention(axes[1, 1], s, attention[:, noisy_index], f"noisy training sample {noisy_index}")
    axes[1, 1].legend(fontsize=7, loc="center right")
    return fig


def token_noise(ds):
    """Noise part eps of every training token (n, T, d): x_t minus its signal (needs ``rho`` in config)."""
    from .data import signal_coefficients
    coef = signal_coefficients(ds.y_clean, ds.T, ds.config["rho"])
    return ds.X - (coef[..., :1] * ds.mu_pos + coef[..., 1:] * ds.mu_neg)


def token_geometry(ds, samples=(0, 1, 2, 3)):
    """Chapter *The setting*: real tokens of a few training sequences (3 panels).

    (a) projections (<x_t, mu_+>, <x_t, mu_->) / ||mu|| coloured by token type, marker by clean class;
    (b) noise norms ||eps_t|| of all training tokens by type against sigma sqrt(d);
    (c) head values y* nu^T x_t of all training tokens by type against +-1/sqrt(2), +-rho/sqrt(2)."""
    fig, axes = _fig(3, 1, width=4.0, height=3.4)
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
           title=f"(a) tokens of {len(samples)} training sequences")
    ax.legend(fontsize=6.5, loc="upper right")
    eps_norm = np.linalg.norm(token_noise(ds), axis=-1)
    ax = axes[0, 1]
    data = [eps_norm[:, types == k].ravel() for k in range(4)]
    bp = ax.boxplot(data, patch_artist=True, widths=0.6)
    for patch, g in zip(bp["boxes"], TOKEN_GROUPS):
        patch.set_facecolor(TOKEN_COLORS[g])
    sigma = ds.config.get("sigma", 1.0)
    ax.axhline(sigma * np.sqrt(ds.d), color="k", ls="--", lw=0.8, label=r"$\sigma\sqrt{d}$")
    ax.set_xticks(range(1, 5), ["$x_1$", "$x_2$", "$x_3$", "$x_{4..T}$"])
    ax.set(ylabel=r"noise norm $\|\epsilon_t\|$", title="(b) noise norms of all training tokens")
    ax.legend(fontsize=8)
    ax = axes[0, 2]
    z = ds.y_clean[:, None] * (ds.X @ ds.nu)
    bp = ax.boxplot([z[:, types == k].ravel() for k in range(4)], patch_artist=True, widths=0.6)
    for patch, g in zip(bp["boxes"], TOKEN_GROUPS):
        patch.set_facecolor(TOKEN_COLORS[g])
    rho = ds.config["rho"]
    for v in (1, rho, -rho):
        ax.axhline(v / np.sqrt(2), color="0.4", ls=":", lw=0.8)
    ax.set_xticks(range(1, 5), ["$x_1$", "$x_2$", "$x_3$", "$x_{4..T}$"])
    ax.set(ylabel=r"head value $y^*\,\nu^\top x_t$", title=r"(c) head values (lines: $1, \pm\rho$ over $\sqrt{2}$)")
    return fig


def per_sample_loss_floor(ds, X=None, y=None):
    """Proposition *loss floor*: log(1 + exp(-max_t y_i nu^T x_t^(i))) for every sequence (n,)."""
    X = ds.X if X is None else X
    y = ds.y if y is None else y
    return np.logaddexp(0.0, -(y[:, None] * (X @ ds.nu)).max(1))


def selecting_query(ds, scale=60.0):
    """A query q with x_t^(i) . q = scale on each sample's best head token and 0 on the others
    (least squares; exact when the n*T training tokens are linearly independent)."""
    best = (ds.y[:, None] * (ds.X @ ds.nu)).argmax(1)
    target = np.zeros((ds.n, ds.T))
    target[np.arange(ds.n), best] = scale
    q, *_ = np.linalg.lstsq(ds.X.reshape(-1, ds.d), target.ravel(), rcond=None)
    return q


def _half_planes(ax, lim):
    """Shade where nu^T x > 0 (above the diagonal: output +1) and < 0, on (mu_-, mu_+) axes."""
    lo, hi = lim
    ax.fill_between([lo, hi], [lo, hi], [hi, hi], color="#1f77b4", alpha=0.08, lw=0)
    ax.fill_between([lo, hi], [lo, lo], [lo, hi], color="#d62728", alpha=0.08, lw=0)
    ax.plot([lo, hi], [lo, hi], color="0.5", lw=0.6)
    ax.set(xlim=lim, ylim=lim)
    ax.set_aspect("equal")


def existence_scatter(ds, cs, titles=None, lim=(-0.45, 1.35)):
    """Chapter *A benign solution exists*: the paper's Figure 1 (train top, test bottom).

    For each sequence, the token with the largest score x_t . q under the construction q(c)
    (``theory.existence_query``), projected on (mu_-, mu_+) / ||mu||^2; shaded: the head's two output
    half-planes (blue: nu^T x > 0, output +1). Colour: the label used (observed for train, clean for
    test); crosses: noisy training samples."""
    from .theory import evaluate_query, existence_query
    fig, axes = _fig(len(cs), 2, width=3.3, height=3.3)
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
    axes[0, 0].legend(fontsize=6.5, loc="lower left")
    return fig


def existence_sweep(ds, cs, c_low=None, c_high=None, test_threshold=0.95):
    """Chapter *A benign solution exists*: train (observed and clean labels) and test accuracy of
    the construction as c sweeps ``cs``; background: the regime of each c (``theory.classify_regime``);
    dashed lines: the scales c_low and c_high of the chapter's sketch."""
    from .theory import REGIMES, classify_regime, evaluate_query, existence_query
    ms = [evaluate_query(ds, existence_query(ds, c)) for c in cs]
    tr, trc, te = (np.array([float(m[k]) for m in ms]) for k in ("train_acc", "train_clean_acc", "test_acc"))
    regime = classify_regime(tr, te, test_threshold)
    fig, axes = _fig(1, 1, width=6.0, height=3.4)
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
    ax.legend(fontsize=7, loc="lower left", ncol=2)
    return fig


def existence_test_bound(ds, q, h=0.2):
    """Proposition *test guarantee*: for each class y, the bound
    sum_{t>=2} Phi_bar((Delta_t - lambda) / (sqrt(2) sigma ||q||)) + 2 T Phi_bar(h / (sigma ||nu||))
    on the probability that a fresh test sequence of class y is misclassified by W = I, p = q;
    returns the average over the two classes (balanced test labels)."""
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


# --- The phase diagram, Under the hood ----------------------------------------------------------


# --- Explorers (static twins render through these too) -------------------------------------------
