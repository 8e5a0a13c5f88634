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


# --- Training dynamics, Delayed generalisation ----------------------------------------------


# --- The phase diagram, Under the hood ----------------------------------------------------------


# --- Explorers (static twins render through these too) -------------------------------------------
