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


def _range(lo, hi, fmt="{:.1f}") -> str:
    """'lo–hi', or one value where both agree (one seed); '–' where there is none."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "–"
    return fmt.format(lo) if fmt.format(lo) == fmt.format(hi) else f"{fmt.format(lo)}–{fmt.format(hi)}"


def fitted_html(rows, eta=0.2, datasets=("trec", "mnist", "breast_cancer")) -> str:
    """Table of how far the noisy labels are fitted at one ``eta`` (:ref:`sec-realdata-grid`): for each
    data set and n, the training accuracy on the noisy labels and the share of the *flipped* labels
    that the run predicts (both in %, smallest–largest over seeds; one value where the seeds agree).

    Parameters
    ----------
    rows : list of dict
        Rows of :func:`benign_attention.realdata.grid.summarize`.
    eta : float
        The noise rate shown.
    datasets : tuple of str
        The data sets, in the order of the table.

    Returns
    -------
    str
        An HTML table.
    """
    body = []
    for d in datasets:
        for r in sorted((r for r in rows if r["dataset"] == d and r["eta"] == eta), key=lambda r: r["n"]):
            noisy = _range(100 * r["train_acc_noisy_min"], 100 * r["train_acc_noisy_max"])
            flipped = _range(100 * r["memorised_min"], 100 * r["memorised_max"], "{:.0f}")
            body.append(f"<tr><td>{escape(NAMES.get(d, d))}</td><td>{r['n']}</td><td>{r['seeds']}</td>"
                        f"<td>{noisy}</td><td>{flipped}</td></tr>")
    return (f"<table><thead><tr><th>data set (η = {eta:g})</th><th>n</th><th>seeds</th>"
            "<th>noisy labels fitted (%)</th><th>flipped labels fitted (%)</th></tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def pretraining_html(records) -> str:
    """Table of how the small backbones were pretrained, from the json files beside their weights
    (:ref:`sec-realdata-step1`): the samples they were pretrained on, the held-out samples and the
    accuracy on them (%), and the seed.

    Parameters
    ----------
    records : dict
        {backbone name: the dict read from its json file} (keys ``pretrain_size``, ``test_size``,
        ``test_accuracy``, ``seed``).

    Returns
    -------
    str
        An HTML table.
    """
    body = "".join(f"<tr><td>{escape(name)}</td><td>{r['pretrain_size']:,}</td><td>{r['test_size']:,}</td>"
                   f"<td>{100 * r['test_accuracy']:.1f}</td><td>{r['seed']}</td></tr>"
                   for name, r in records.items())
    return ("<table><thead><tr><th>backbone</th><th>pretrained on</th><th>held out</th>"
            "<th>held-out accuracy (%)</th><th>seed</th></tr></thead>"
            f"<tbody>{body}</tbody></table>")


def attention_summary(cells, tokens, n=200, eta=0.2, datasets=("trec", "mnist", "breast_cancer")) -> list[dict]:
    """The [CLS] attention of the stored runs, per data set (:ref:`sec-realdata-attention`).

    Parameters
    ----------
    cells : list of dict
        Cell dicts of :func:`benign_attention.realdata.finetune.run` or
        :func:`benign_attention.realdata.grid.load_results`.
    tokens : dict
        {data set: mean number of tokens T of its samples}; ``1/T`` is uniform attention.
    n : int
        The training-set size whose runs give the start and end values; pairs are counted over
        all runs with at least ``n`` samples.
    eta : float
        The noise rate compared with ``eta = 0``.
    datasets : tuple of str
        The data sets, in order (those without a run at ``n`` are left out).

    Returns
    -------
    list of dict
        One row per data set: ``dataset``, ``tokens``, ``uniform`` (1/T), ``start`` (mean max
        attention at epoch 0, mean over the runs at ``n``), ``end_clean`` and ``end_noisy`` (its
        final value at ``eta = 0`` and at ``eta``, mean over seeds), ``pairs`` (runs at ``eta`` with
        at least ``n`` samples whose seed also ran at ``eta = 0``) and ``higher`` (how many of those
        end above their ``eta = 0`` partner).
    """
    final = {(c["dataset"], c["n"], c["eta"], c["seed"]): c["final"]["train_max_attention"] for c in cells}
    out = []
    for d in datasets:
        at_n = [c for c in cells if c["dataset"] == d and c["n"] == n]
        if not at_n:
            continue
        keys = [k for k in final if k[0] == d and k[1] >= n and k[2] == eta and (d, k[1], 0.0, k[3]) in final]

        def end(e):
            v = [c["final"]["train_max_attention"] for c in at_n if c["eta"] == e]
            return float(np.mean(v)) if v else float("nan")
        out.append(dict(dataset=d, tokens=float(tokens[d]), uniform=1 / float(tokens[d]),
                        start=float(np.mean([c["history"]["train_max_attention"][0] for c in at_n])),
                        end_clean=end(0.0), end_noisy=end(eta), pairs=len(keys),
                        higher=int(sum(final[k] > final[d, k[1], 0.0, k[3]] for k in keys))))
    return out


def attention_html(summary, n=200, eta=0.2) -> str:
    """Table of :func:`attention_summary` (data sets as columns): the mean number of tokens and
    ``1/T``, the mean max [CLS] attention at the start and at the end (at ``eta = 0`` and at
    ``eta``), and in how many seed pairs the noisier run ends higher.

    Parameters
    ----------
    summary : list of dict
        Rows of :func:`attention_summary`.
    n, eta : int, float
        The values :func:`attention_summary` was called with (for the row labels).

    Returns
    -------
    str
        An HTML table.
    """
    lines = [("mean tokens T", lambda r: f"{r['tokens']:.1f}"), ("uniform, 1/T", lambda r: f"{r['uniform']:.2f}"),
             (f"start (n = {n})", lambda r: f"{r['start']:.2f}"),
             (f"end, η = 0 (n = {n})", lambda r: f"{r['end_clean']:.2f}"),
             (f"end, η = {eta:g} (n = {n})", lambda r: f"{r['end_noisy']:.2f}"),
             (f"η = {eta:g} ends higher (pairs, n ≥ {n})", lambda r: f"{r['higher']} of {r['pairs']}")]
    head = "".join(f"<th>{escape(NAMES.get(r['dataset'], r['dataset']))}</th>" for r in summary)
    body = "".join(f"<tr><td>{escape(label)}</td>{''.join(f'<td>{cell(r)}</td>' for r in summary)}</tr>"
                   for label, cell in lines)
    return f"<table><thead><tr><th>mean max [CLS] attention</th>{head}</tr></thead><tbody>{body}</tbody></table>"


def check_noise_claims(rows, cost, paper_cost) -> None:
    """Check what :ref:`sec-realdata-grid` says about the stored grid; raise ``AssertionError``
    naming the first claim that fails.

    Parameters
    ----------
    rows : list of dict
        Rows of :func:`benign_attention.realdata.grid.summarize` for the full grid.
    cost : list of dict
        Rows of :func:`noise_cost` for the same cells.
    paper_cost : dict
        {data set: {n: cost of eta = 0.2 in the paper's Table 2, in points}} (TREC at least).
    """
    R = {(r["dataset"], r["n"], r["eta"]): r for r in rows}
    C = {(r["dataset"], r["n"], r["eta"]): r for r in cost}
    trec = [r for r in rows if r["dataset"] == "trec"]
    assert all(r["train_acc_noisy_min"] == 1.0 for r in trec if r["n"] <= 200), \
        "TREC, n <= 200: every seed fits every noisy label"
    assert all(r["memorised_min"] == 1.0 for r in trec if r["eta"] > 0 and r["n"] <= 200), \
        "TREC, n <= 200: every seed fits every flipped label"
    assert 0.99 <= R["trec", 1000, 0.2]["train_acc_noisy_min"] and R["trec", 1000, 0.2]["train_acc_noisy_max"] < 1, \
        "TREC, n = 1000, eta = 0.2: every seed leaves a few (at most 1%) labels unfitted"
    tc = [C["trec", n, 0.2] for n in (20, 200, 1000)]
    assert all(c["mean"] > paper_cost["trec"][n] for c, n in zip(tc, (20, 200, 1000))), \
        "TREC: on average noise costs more than in the paper at every n"
    assert tc[0]["mean"] < tc[1]["mean"] < tc[2]["mean"], "TREC: the mean cost grows with n"
    assert tc[1]["min"] < tc[0]["max"] and tc[2]["min"] < tc[1]["max"], \
        "TREC: the seed ranges of neighbouring n overlap"
    assert all(R["trec", n, 0.0]["test_acc_min"] > R["trec", n, 0.0]["baseline"] for n in (200, 1000)), \
        "TREC: clean re-trained runs beat the head-only baseline at n >= 200"
    assert R["trec", 1000, 0.0]["test_acc_min"] > R["trec", 1000, 0.0]["baseline"] + 0.05, \
        "TREC: by several points at n = 1000"
    assert R["mnist", 20, 0.0]["test_acc_max"] < R["mnist", 20, 0.0]["baseline"] - 0.02, \
        "MNIST: clean re-trained runs fall below the baseline at n = 20"
    assert (R["trec", 200, 0.2]["memorised"] > R["mnist", 200, 0.2]["memorised"]
            > R["breast_cancer", 200, 0.2]["memorised"]), \
        "flipped labels fitted (n = 200, eta = 0.2): TREC > MNIST > breast cancer"
    mn = [r for r in rows if r["dataset"] == "mnist" and r["eta"] > 0 and r["n"] >= 200]
    assert all(0.05 < r["memorised"] < 0.35 and r["train_acc_noisy_max"] < 1 for r in mn), \
        "MNIST: a minority of the flipped labels is fitted, never all"
    assert all(r["mean"] < 5 for r in cost if r["dataset"] == "mnist"), "MNIST: noise costs a few points"
    bc = [r for r in rows if r["dataset"] == "breast_cancer" and r["eta"] > 0]
    assert all(r["memorised_max"] <= 0.2 for r in bc), "breast cancer: almost no flipped label fitted"
    assert all(abs(r["mean"]) < 1 for r in cost if r["dataset"] == "breast_cancer"), \
        "breast cancer: noise moves test accuracy by less than one point"


def check_attention_claims(cells, summary, full_grid=True, n=200) -> None:
    """Check what :ref:`sec-realdata-attention` says about the [CLS] attention; raise
    ``AssertionError`` naming the first claim that fails.

    Parameters
    ----------
    cells : list of dict
        The cell dicts :func:`attention_summary` read.
    summary : list of dict
        Its rows.
    full_grid : bool
        Whether ``cells`` is the stored grid (2000 epochs, several seeds); the live runs are
        checked only for concentration.
    n : int
        The training-set size of ``summary``.
    """
    att = [c["history"]["train_max_attention"] for c in cells]
    assert all(a[-1] > a[0] for a in att), "in every run the [CLS] attention concentrates"
    if not full_grid:
        return

    def at(h, epoch):
        return h["train_max_attention"][int(np.argmin(np.abs(np.array(h["epoch"]) - epoch)))]
    assert all(c["history"]["train_max_attention"][-1] > at(c["history"], 1500) for c in cells if c["n"] == n), \
        "still rising after 1500 epochs"
    s = {r["dataset"]: r for r in summary}
    assert all(s[d]["higher"] == s[d]["pairs"] for d in ("trec", "mnist")), \
        "TREC and MNIST: in every pair the noisier run ends higher"
    assert s["breast_cancer"]["higher"] >= s["breast_cancer"]["pairs"] - 1, "breast cancer: all pairs but one"
    uniform = {r["dataset"]: r["uniform"] for r in summary}
    assert all(c["history"]["train_max_attention"][0] < 1.3 * uniform[c["dataset"]]
               for c in cells if c["n"] == n and c["dataset"] in uniform), \
        "near uniform at the start: within 30% of 1/T at the mean number of tokens"
