"""Tables and figures of the pretrained-transformer experiment (:ref:`sec-realdata-grid`, :ref:`sec-realdata-attention`).

All functions take the cell dicts returned by :func:`benign_attention.realdata.finetune.run` (or
read by :func:`benign_attention.realdata.grid.load_results`) or the rows of
:func:`benign_attention.realdata.grid.summarize`.
"""
from __future__ import annotations

from collections import defaultdict
from html import escape

import numpy as np

from ..figure_layout import closed_figure, legend_below, phone_layout, subplots

NAMES = {"trec": "TREC (MiniLM)", "mnist": "MNIST (small ViT)", "breast_cancer": "Breast cancer (tabular)"}


def table2_html(rows, datasets=("trec", "mnist", "breast_cancer"), names=None) -> str:
    """A Table-2-style HTML table: for each data set and η, 'train loss, test acc %' for every n.
    ``names``: the row label of each data set (default ``NAMES``; e.g. to add a row of the paper's)."""
    names = NAMES if names is None else {**NAMES, **names}
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
            label = f"{names[d]} (baseline {100 * rs[0]['baseline']:.1f})"
            body.append(f"<tr><td>{escape(label)}</td><td>{eta:g}</td>{''.join(cells)}</tr>")
    return (f"<table><thead><tr><th>data set (baseline %)</th><th>η</th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


@closed_figure
def plot_noise_sweep(rows, datasets=("trec", "mnist", "breast_cancer")):
    """Test accuracy (top) and final training loss on the noisy labels (bottom) against η."""
    datasets = [d for d in datasets if any(r["dataset"] == d for r in rows)]
    fig, axes = subplots(len(datasets), 2, width=3.6, height=2.7, order="column",
                         sharex=not phone_layout())  # stacked: every panel keeps its own η ticks
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
    for ax in axes[0] if phone_layout() else axes[0, :1]:  # stacked: every panel says what it is
        ax.set_ylabel("test accuracy")
    for j, ax in enumerate(axes[1] if phone_layout() else axes[1, :1]):
        ax.set_ylabel("final training loss\n(noisy labels)")
        if phone_layout():
            ax.set_title(NAMES[datasets[j]], fontsize=10)
    legend_below(fig, ax=axes[0, 0])
    return fig


@closed_figure
def plot_max_attention(cells, n, datasets=("trec", "mnist", "breast_cancer")):
    """Mean max [CLS] attention of the training samples over epochs, for each η (mean over seeds,
    band: min to max over seeds)."""
    cells = [c for c in cells if c["n"] == n]
    datasets = [d for d in datasets if any(c["dataset"] == d for c in cells)]
    fig, axes = subplots(len(datasets), width=3.6, height=3.0)
    for j, d in enumerate(datasets):
        by_eta = defaultdict(list)
        for c in cells:
            if c["dataset"] == d:
                by_eta[c["eta"]].append(c)
        for k, eta in enumerate(sorted(by_eta)):
            cs = by_eta[eta]
            ep = np.array(cs[0]["history"]["epoch"])
            att = np.array([c["history"]["train_max_attention"] for c in cs])
            axes[0, j].plot(ep, att.mean(0), color=f"C{k}", label=f"η = {eta:g}")
            if len(cs) > 1:  # the seed spread: min to max over seeds
                axes[0, j].fill_between(ep, att.min(0), att.max(0), color=f"C{k}", alpha=0.15, lw=0)
        axes[0, j].set_title(f"{NAMES[d]}\nn = {n}", fontsize=10)
        axes[0, j].set_xlabel("epoch")
    for ax in axes[0] if phone_layout() else axes[0, :1]:
        ax.set_ylabel("mean max [CLS] attention")
    legend_below(fig, ax=axes[0, 0])
    return fig


def _by_cell(cells):
    """{(dataset, n, eta): {seed: cell}}."""
    groups = defaultdict(dict)
    for c in cells:
        groups[(c["dataset"], c["n"], c["eta"])][c["seed"]] = c
    return groups


def seed_spread(cells) -> list[dict]:
    """For each (dataset, n, eta): the number of seeds and mean and sample standard deviation
    (ddof = 1; NaN for one seed) over seeds of the final training loss and test accuracy."""
    rows = []
    for (d, n, eta), by_seed in sorted(_by_cell(cells).items()):
        row = dict(dataset=d, n=n, eta=eta, seeds=len(by_seed),
                   baseline=next(iter(by_seed.values()))["baseline"])
        for key in ("train_loss", "test_acc"):
            v = np.array([c["final"][key] for c in by_seed.values()], float)
            row[key], row[key + "_sd"] = float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else float("nan")
        rows.append(row)
    return rows


def table2_spread_html(cells, datasets=("trec", "mnist", "breast_cancer")) -> str:
    """Like :func:`table2_html`, with the seed spread: 'train loss ± sd' over 'test acc % ± sd' (two
    lines, so that the table fits a page's column) for every n, and the number of seeds of each row."""
    rows = seed_spread(cells)
    ns = sorted({r["n"] for r in rows})
    head = "".join(f"<th>n = {n}</th>" for n in ns)
    body = []
    for d in datasets:
        rs = [r for r in rows if r["dataset"] == d]
        for eta in sorted({r["eta"] for r in rs}):
            tds, seeds = [], set()
            for n in ns:
                r = next((r for r in rs if r["n"] == n and r["eta"] == eta), None)
                if r is None:
                    tds.append("<td>–</td>")
                    continue
                seeds.add(r["seeds"])
                tds.append(f"<td>{r['train_loss']:.2f} ± {r['train_loss_sd']:.2f}<br>"
                           f"{100 * r['test_acc']:.1f} ± {100 * r['test_acc_sd']:.1f}</td>")
            label = f"{escape(NAMES[d])}<br>(baseline {100 * rs[0]['baseline']:.1f})"
            body.append(f"<tr><td>{label}</td><td>{eta:g}</td>"
                        f"<td>{min(seeds)}{'' if len(seeds) == 1 else f'–{max(seeds)}'}</td>{''.join(tds)}</tr>")
    return (f"<table><thead><tr><th>data set (baseline %)</th><th>η</th><th>seeds</th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def noise_cost(cells) -> list[dict]:
    """Cost of label noise at the same n, paired by seed: test accuracy (points) of the eta = 0 run
    minus that of the eta > 0 run with the same seed (same samples, same initial query/key).
    Returns per (dataset, n, eta > 0) the per-seed costs and their mean, sd (ddof = 1), min, max."""
    groups = _by_cell(cells)
    rows = []
    for (d, n, eta), by_seed in sorted(groups.items()):
        clean = groups.get((d, n, 0.0), {})
        seeds = sorted(s for s in by_seed if s in clean)
        if eta == 0 or not seeds:
            continue
        cost = np.array([100 * (clean[s]["final"]["test_acc"] - by_seed[s]["final"]["test_acc"])
                         for s in seeds])
        rows.append(dict(dataset=d, n=n, eta=eta, seeds=len(seeds), costs=cost.tolist(),
                         mean=float(cost.mean()), sd=float(cost.std(ddof=1)) if cost.size > 1 else float("nan"),
                         min=float(cost.min()), max=float(cost.max())))
    return rows


def noise_cost_html(rows, eta=0.2, paper=None, datasets=("trec", "mnist", "breast_cancer")) -> str:
    """Table of :func:`noise_cost` at one ``eta``: 'mean ± sd' over '[min, max] (seeds)' points for
    every n (two lines, so that the table fits a page's column).
    ``paper``: optional {dataset: {n: points}} shown in an extra row per data set."""
    rows = [r for r in rows if r["eta"] == eta]
    ns = sorted({r["n"] for r in rows})
    head = "".join(f"<th>n = {n}</th>" for n in ns)
    body = []
    for d in datasets:
        rs = {r["n"]: r for r in rows if r["dataset"] == d}
        if not rs:
            continue
        tds = "".join("<td>–</td>" if n not in rs else
                      f"<td>{rs[n]['mean']:.1f} ± {rs[n]['sd']:.1f}<br>[{rs[n]['min']:.1f}, {rs[n]['max']:.1f}]"
                      f" ({rs[n]['seeds']})</td>" for n in ns)
        body.append(f"<tr><td>{escape(NAMES[d])}</td>{tds}</tr>")
        if paper and d in paper:
            tds = "".join(f"<td>{paper[d][n]:.1f}</td>" if n in paper[d] else "<td>–</td>" for n in ns)
            body.append(f"<tr><td>{escape('paper, ' + NAMES[d].split(' (')[0])}</td>{tds}</tr>")
    return (f"<table><thead><tr><th>cost of η = {eta:g} (points; seeds)</th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


#: The provenance fields that :func:`provenance_rows` groups the cells by.
PROVENANCE_FIELDS = ("device", "torch", "threads", "date", "commit")


def provenance_rows(cells, datasets=("trec", "mnist", "breast_cancer")) -> list[dict]:
    """The cells grouped by data set and by what their files record in ``PROVENANCE_FIELDS``
    (device, torch, threads, date, commit; a field a file lacks, or holds as null, is None here:
    nothing is filled in). One row per group:
    ``dataset``, ``cells`` (how many), ``seeds`` and ``ns`` (sorted lists) and the fields."""
    groups = defaultdict(list)
    for c in cells:
        prov = c.get("provenance") or {}
        groups[(c["dataset"], *(prov.get(k) for k in PROVENANCE_FIELDS))].append(c)
    order = {d: i for i, d in enumerate(datasets)}
    rows = []
    for key, cs in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], len(order)), kv[0][0],
                                                          min(c["seed"] for c in kv[1]))):
        rows.append(dict(dataset=key[0], cells=len(cs), seeds=sorted({c["seed"] for c in cs}),
                         ns=sorted({c["n"] for c in cs}), **dict(zip(PROVENANCE_FIELDS, key[1:]))))
    return rows


def _span(values):
    """'0–2' for consecutive integers, else '0, 2, 5'."""
    if len(values) > 1 and values == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}–{values[-1]}"
    return ", ".join(str(v) for v in values)


def provenance_html(cells, datasets=("trec", "mnist", "breast_cancer")) -> str:
    """Table of :func:`provenance_rows`: what the stored cell files record about where, when, with
    which torch and from which commit they were computed ('—' where a file records nothing)."""
    head = "".join(f"<th>{k}</th>" for k in ("cells", "files", *PROVENANCE_FIELDS))
    body = []
    for r in provenance_rows(cells, datasets):
        fields = "".join(f"<td>{'—' if r[k] is None else escape(str(r[k]))}</td>" for k in PROVENANCE_FIELDS)
        name = escape(NAMES.get(r["dataset"], r["dataset"]).split(" (")[0])
        body.append(f"<tr><td>{name}<br>seeds {_span(r['seeds'])}; n = {', '.join(map(str, r['ns']))}</td>"
                    f"<td>{r['cells']}</td>{fields}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def baselines_html(preps, official_head=None) -> str:
    """Table of step 1 for the prepared data sets ``preps`` ({name: Prepared}): the baseline test
    accuracy (%), how many clean samples trained the head, how many of them form the fine-tuning
    pool, and the test size. ``official_head``: optional {name: head-set size in the official code},
    shown in a last column."""
    extra = "" if official_head is None else "<th>head set, official code</th>"
    body = []
    for name, p in preps.items():
        info = p.info
        last = "" if official_head is None else f"<td>{official_head.get(name, '–'):,}</td>"
        body.append(f"<tr><td>{escape(NAMES.get(name, name))}</td><td>{100 * p.baseline:.1f}</td>"
                    f"<td>{info['head_size']:,}</td><td>{info['pool_size']:,}</td><td>{info['test_size']:,}</td>"
                    f"{last}</tr>")
    return ("<table><thead><tr><th>data set</th><th>baseline (%)</th><th>head trained on</th>"
            f"<th>fine-tuning pool (part of it)</th><th>test</th>{extra}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")
