"""Tables and figures of the chapter *Benign overfitting in pretrained transformers* (book/08).

All functions take the cell dicts returned by :func:`benign_attention.realdata.finetune.run` (or
read by :func:`benign_attention.realdata.grid.load_results`) or the rows of
:func:`benign_attention.realdata.grid.summarize`.
"""
from __future__ import annotations

from collections import defaultdict
from html import escape

import matplotlib.pyplot as plt
import numpy as np

from ..plots import legend_below

NAMES = {"trec": "TREC (MiniLM)", "mnist": "MNIST (small ViT)", "breast_cancer": "Breast cancer (tabular)"}


def table2_html(rows, datasets=("trec", "mnist", "breast_cancer")) -> str:
    """A Table-2-style HTML table: for each data set and η, 'train loss, test acc %' for every n."""
    ns = sorted({r["n"] for r in rows})
    head = "".join(f"<th>n = {n}</th>" for n in ns)
    body = []
    for d in datasets:
        rs = [r for r in rows if r["dataset"] == d]
        if not rs:
            continue
        for eta in sorted({r["eta"] for r in rs}):
            cells = []
            for n in ns:
                r = next((r for r in rs if r["n"] == n and r["eta"] == eta), None)
                cells.append("<td>–</td>" if r is None else
                             f"<td>{r['train_loss']:.2f}, {100 * r['test_acc']:.1f}</td>")
            label = f"{NAMES[d]} (baseline {100 * rs[0]['baseline']:.1f})"
            body.append(f"<tr><td>{escape(label)}</td><td>{eta:g}</td>{''.join(cells)}</tr>")
    return (f"<table><thead><tr><th>data set (baseline %)</th><th>η</th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def plot_noise_sweep(rows, datasets=("trec", "mnist", "breast_cancer")):
    """Test accuracy (top) and final training loss on the noisy labels (bottom) against η."""
    datasets = [d for d in datasets if any(r["dataset"] == d for r in rows)]
    fig, axes = plt.subplots(2, len(datasets), figsize=(min(3.6 * len(datasets), 7.2), 5.4), squeeze=False, sharex=True)
    for j, d in enumerate(datasets):
        rs = [r for r in rows if r["dataset"] == d]
        for k, n in enumerate(sorted({r["n"] for r in rs})):
            g = sorted((r for r in rs if r["n"] == n), key=lambda r: r["eta"])
            eta = [r["eta"] for r in g]
            acc = np.array([[r["test_acc_min"], r["test_acc"], r["test_acc_max"]] for r in g])
            axes[0, j].plot(eta, acc[:, 1], "o-", color=f"C{k}", label=f"n = {n}")
            axes[0, j].fill_between(eta, acc[:, 0], acc[:, 2], color=f"C{k}", alpha=0.15)
            axes[1, j].plot(eta, [r["train_loss"] for r in g], "o-", color=f"C{k}")
        axes[0, j].axhline(rs[0]["baseline"], color="k", ls="--", lw=1, label="baseline")
        axes[0, j].set_title(NAMES[d], fontsize=10)
        axes[1, j].set_xlabel("label noise η")
    axes[0, 0].set_ylabel("test accuracy")
    axes[1, 0].set_ylabel("final training loss\n(noisy labels)")
    fig.set_layout_engine("constrained")
    legend_below(fig, ax=axes[0, 0])
    plt.close(fig)  # the display convention: see benign_attention.display
    return fig


def plot_max_attention(cells, n, datasets=("trec", "mnist", "breast_cancer")):
    """Mean max [CLS] attention of the training samples over epochs, for each η (mean over seeds)."""
    cells = [c for c in cells if c["n"] == n]
    datasets = [d for d in datasets if any(c["dataset"] == d for c in cells)]
    fig, axes = plt.subplots(1, len(datasets), figsize=(min(3.6 * len(datasets), 7.2), 3.0), squeeze=False)
    for j, d in enumerate(datasets):
        by_eta = defaultdict(list)
        for c in cells:
            if c["dataset"] == d:
                by_eta[c["eta"]].append(c)
        for k, eta in enumerate(sorted(by_eta)):
            cs = by_eta[eta]
            ep = np.array(cs[0]["history"]["epoch"])
            att = np.mean([c["history"]["train_max_attention"] for c in cs], axis=0)
            axes[0, j].plot(ep, att, color=f"C{k}", label=f"η = {eta:g}")
        axes[0, j].set_title(f"{NAMES[d]}\nn = {n}", fontsize=10)
        axes[0, j].set_xlabel("epoch")
    axes[0, 0].set_ylabel("mean max [CLS] attention")
    fig.set_layout_engine("constrained")
    legend_below(fig, ax=axes[0, 0])
    plt.close(fig)  # the display convention: see benign_attention.display
    return fig
