"""The encoder pages' bookkeeping: the small tables that :ref:`sec-encoder-dynamics`,
:ref:`sec-encoder-seeds`, :ref:`sec-encoder-boundary`, :ref:`sec-encoder-d4000` and the benchmark
report of :ref:`sec-encoder-benchmark` read off runs and stored results, so that each page cell is one
call. Nothing here trains or times anything: every function summarises what it is given.
"""
from __future__ import annotations

import numpy as np

from ..analysis import attention_by_type, boundary_crossing
from ..display import glue
from .grid import RECORD_KEYS, load_grid

__all__ = ["glue_table", "final_metrics", "seed_cells", "grid_crossings", "boundary_summary",
           "offset_summary", "benchmark_summary"]


def glue_table(prefix, table):
    """Glue every value of a table for the prose: ``table[row][column]`` under
    ``f"{prefix}_{row}_{column}"`` (spaces in names become ``_``), or a flat ``{name: value}`` under
    ``f"{prefix}_{name}"``.

    Parameters
    ----------
    prefix : str
        The start of every glued name.
    table : dict
        ``{row: {column: value}}`` or ``{name: value}``.

    Returns
    -------
    None
        (So that a page cell ending in this call displays nothing.)
    """
    for row, value in table.items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for column, v in items:
            name = f"{prefix}_{row}" if column is None else f"{prefix}_{row}_{column}"
            name = name.replace(" ", "_")
            glue(name, v)


def final_metrics(runs):
    """The last recorded step of each encoder run, with its [CLS] attention by token type.

    Parameters
    ----------
    runs : dict
        ``{name: (EncoderRun, Dataset)}``, each run trained on its dataset.

    Returns
    -------
    dict
        ``{name: {metric: value}}`` with ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``,
        the mean attention of the clean samples on ``x_1`` (``clean_x1``) and on the irrelevant tokens
        (``clean_irr``), of the noisy samples on ``x_2``, ``x_3`` and the irrelevant tokens
        (``noisy_x2``, ``noisy_x3``, ``noisy_irr``), and the run's wall time in ``minutes``.
    """
    out = {}
    for name, (run, ds) in runs.items():
        noisy = attention_by_type(run, ds.noisy)[-1]
        clean = attention_by_type(run, ~ds.noisy)[-1]
        out[name] = {
            "train_loss": float(run.final("train_loss")), "train_acc": float(run.final("train_acc")),
            "test_loss": float(run.final("test_loss")), "test_acc": float(run.final("test_acc")),
            "clean_x1": float(clean[0]), "clean_irr": float(clean[3]),
            "noisy_x2": float(noisy[1]), "noisy_x3": float(noisy[2]), "noisy_irr": float(noisy[3]),
            "minutes": float(run.seconds) / 60,
        }
    return out


def seed_cells(folder, cells, seeds):
    """Final metrics of some cells of the stored encoder grid, per seed.

    Parameters
    ----------
    folder : str or pathlib.Path
        The grid's folder (:func:`~benign_attention.encoder.grid.load_grid`).
    cells : list of (int, float)
        The cells ``(d, ||mu||)``.
    seeds : iterable of int
        The seeds to read; a seed that lacks a cell is left out of that cell's entry.

    Returns
    -------
    dict
        ``{(d, mu): {seed: {key: value}}}`` for every key of
        :data:`~benign_attention.encoder.grid.RECORD_KEYS`.
    """
    out = {tuple(c): {} for c in cells}
    for seed in seeds:
        D, MU, maps, _ = load_grid(folder, keys=RECORD_KEYS, seed=seed)
        for d, mu in out:
            i, j = np.flatnonzero(D == d), np.flatnonzero(MU == mu)
            if len(i) and len(j) and np.isfinite(maps["test_loss"][i[0], j[0]]):
                out[d, mu][seed] = {k: float(v[i[0], j[0]]) for k, v in maps.items()}
    return out


def grid_crossings(folder, d_values, thresholds, seeds):
    """Where the stored grid's test loss falls below each threshold, per seed, at each ``d``.

    Parameters
    ----------
    folder : str or pathlib.Path
        The grid's folder.
    d_values : sequence of int
        The rows to report (NaN where a seed has no row).
    thresholds : tuple of float
        Test-loss levels.
    seeds : iterable of int
        The seeds.

    Returns
    -------
    crossing : dict
        ``{(threshold, seed): array over d_values}`` of the interpolated ``||mu||``
        (:func:`~benign_attention.analysis.boundary_crossing`).
    hours : float
        Hours summed over the cells of the seeds other than 0.

    Raises
    ------
    ValueError
        A seed's first column is not above every threshold (a crossing would lie outside its grid).
    """
    crossing, hours = {}, 0.0
    for seed in seeds:
        Ds, MUs, m, recs = load_grid(folder, seed=seed)
        first = m["test_loss"][:, 0]
        if not (first[np.isfinite(first)] > max(thresholds)).all():
            raise ValueError(f"seed {seed}: the test loss at ||mu|| = {MUs[0]:g} is not above every threshold")
        for th in thresholds:
            at = dict(zip(Ds.tolist(), boundary_crossing(m["test_loss"], MUs, th, above=False)))
            crossing[th, seed] = np.array([at.get(d, np.nan) for d in np.asarray(d_values).tolist()])
        if seed:
            hours += sum(r["seconds"] for r in recs) / 3600
    return crossing, hours


def boundary_summary(d_values, crossing, low=0.41, high=0.1, seeds=(0, 1, 2)):
    """The figures of :ref:`sec-encoder-boundary`, read off :func:`grid_crossings`.

    Parameters
    ----------
    d_values : sequence of int
        The grid's ``d`` (must include 2000, 2500, 3000, 4000 and 5000, and values after 4000).
    crossing : dict
        ``{(threshold, seed): array}`` from :func:`grid_crossings`.
    low, high : float
        The two thresholds (the paper's lowest colour, and a low test loss).
    seeds : tuple of int
        Seed 0 (the whole grid) first.

    Returns
    -------
    dict
        Scalars, by name: the ``d`` computed for every seed (``rows``, ``d_first``, ``d_last``);
        at ``low``, the crossings at the first and last of those (``low_first_lo/hi``,
        ``low_last_lo/hi``), seed 0's below 15 (up to ``s0_small_d``, from ``s0_small_lo`` to
        ``s0_small_hi``), seed 0 at 2000, 2500, 3000, 4000 and 5000 (``s0_<d>``) and the other seeds at 2000
        (``others_2000_lo/hi``); the gap ``high`` minus ``low`` on the shared rows (``gap_lo``,
        ``gap_hi``) and everywhere both exist (``gap_min_all``); the falls of seed 0's ``high``
        crossing (``falls``); the largest seed spread at ``high`` and its ``d`` (``spread_max``,
        ``spread_d``); for each threshold ``t`` in ``("low", "high")`` the rise across the shared rows
        (``t_rise``: least last crossing minus largest first), how far seed 0 stands above the other
        seeds at 2500 (``t_s0_2500_above``) and above its neighbours at 4000 (``t_s0_4000_above``).
    """
    D = np.asarray(d_values)
    C = {th: np.array([crossing[th, s] for s in seeds]) for th in (low, high)}
    lo, hi = C[low], C[high]
    rows = np.isfinite(hi).all(axis=0)
    first, last = np.flatnonzero(rows)[[0, -1]]
    idx = {d: int(np.flatnonzero(D == d)[0]) for d in (2000, 2500, 3000, 4000, 5000)}
    s0 = lo[0]
    k15 = int(np.argmax(s0 >= 15))
    gap = (hi - lo)[:, rows]
    both = np.isfinite(hi) & np.isfinite(lo)
    spread = np.nanmax(hi[:, rows], axis=0) - np.nanmin(hi[:, rows], axis=0)
    out = {
        "rows": ", ".join(str(int(d)) for d in D[rows]), "n_rows": int(rows.sum()),
        "d_first": int(D[first]), "d_last": int(D[last]),
        "low_first_lo": float(np.nanmin(lo[:, first])), "low_first_hi": float(np.nanmax(lo[:, first])),
        "low_last_lo": float(np.nanmin(lo[:, last])), "low_last_hi": float(np.nanmax(lo[:, last])),
        "s0_small_d": int(D[k15 - 1]), "s0_small_lo": float(s0[:k15].min()), "s0_small_hi": float(s0[:k15].max()),
        "others_2000_lo": float(np.nanmin(lo[1:, idx[2000]])), "others_2000_hi": float(np.nanmax(lo[1:, idx[2000]])),
        "gap_lo": float(gap.min()), "gap_hi": float(gap.max()), "gap_min_all": float((hi - lo)[both].min()),
        "falls": int(np.sum(np.diff(hi[0]) < 0)),
        "spread_max": float(spread.max()), "spread_d": int(D[rows][np.argmax(spread)]),
    }
    out.update({f"s0_{d}": float(s0[i]) for d, i in idx.items()})
    for t, Ct in (("low", lo), ("high", hi)):
        i25, i40 = idx[2500], idx[4000]
        out[f"{t}_rise"] = float(np.nanmin(Ct[:, last]) - np.nanmax(Ct[:, first]))
        out[f"{t}_s0_2500_above"] = float(Ct[0, i25] - np.nanmax(Ct[1:, i25]))
        out[f"{t}_s0_4000_above"] = float(Ct[0, i40] - max(Ct[0, i40 - 1], Ct[0, i40 + 1]))
    return out


def offset_summary(cells):
    """The last recorded step of the runs of ``scripts/encoder_offset.py`` (:ref:`sec-encoder-d4000`).

    Parameters
    ----------
    cells : iterable of Cell
        The stored cells (``CellCache(stored("encoder_offset")).cells()``), each with ``data_seed``
        and ``init_seed`` among its parameters and recorded arrays over steps.

    Returns
    -------
    dict
        ``{"data<data_seed>_init<init_seed>": {key: value}}`` for every recorded array (its last
        value), plus ``settled``: the first recorded step from which the test accuracy no longer
        changes. Sorted by (data seed, initialisation seed).
    """
    out = {}
    for c in sorted(cells, key=lambda c: (c.params["data_seed"], c.params["init_seed"])):
        a = c.arrays
        row = {k: float(np.asarray(v)[-1]) for k, v in a.items() if k != "steps"}
        acc = np.asarray(a["test_acc"])
        moved = np.flatnonzero(acc != acc[-1])
        row["settled"] = int(np.asarray(a["steps"])[moved[-1] + 1]) if len(moved) else int(a["steps"][0])
        out[f"data{c.params['data_seed']}_init{c.params['init_seed']}"] = row
    return out


def benchmark_summary(bench):
    """The figures of the encoder benchmark (``benchmarks/bench_encoder.py``) that
    :ref:`sec-encoder-benchmark` reports.

    Parameters
    ----------
    bench : dict
        The benchmark's json (``stored("benchmarks/encoder_2core.json")``).

    Returns
    -------
    dict
        Milliseconds per step, median over processes, of each variant (``ms_<variant>``); the
        median ratio and its range over processes (``ratio``, ``ratio_lo``, ``ratio_hi``) and how
        many processes reached 10 (``at_10``, as "k of m"); each path's range over processes
        (``fast_lo``, ``fast_hi``, ``ref_lo``, ``ref_hi``, ms) and relative spread
        (``spread_fast``, ``spread_ref``); the ablation ratios (``ratio_order``, ``ratio_mkl``,
        ``ratio_dnn``); oneDNN's gain on the fast step (``dnn_gain``); the copy bandwidth range
        (``bw_lo``, ``bw_hi``, GB/s); the size of one big float32 block (``block_mb``), the traffic
        of the five blocks per step (read, read again, read and write: ``traffic_mb``) and its time
        at the bandwidth range (``traffic_ms_lo``, ``traffic_ms_hi``); ``threads``, ``processes``
        and ``blas``.
    """
    ms = {k: 1000 * v for k, v in bench["s_per_step_median"].items()}
    ratios = bench["ratio_each_process"]
    each = bench["s_per_step_each_process"]
    bw = [b for p in bench["copy_bandwidth_gb_s_each_process"] for b in p]
    block_mb = bench["d"] * bench["mlp_dim"] * 4 / 1e6
    traffic_mb = 5 * block_mb * 4
    out = {f"ms_{k}": v for k, v in ms.items()}
    out.update(
        ratio=bench["ratio"], ratio_lo=min(ratios), ratio_hi=max(ratios),
        at_10=f"{sum(r >= 10 for r in ratios)} of {len(ratios)}",
        fast_lo=1000 * min(each["fast"]), fast_hi=1000 * max(each["fast"]),
        ref_lo=1000 * min(each["reference"]), ref_hi=1000 * max(each["reference"]),
        spread_fast=max(each["fast"]) / min(each["fast"]) - 1,
        spread_ref=max(each["reference"]) / min(each["reference"]) - 1,
        ratio_order=bench["ratio_contraction_order_alone"],
        ratio_mkl=bench["ratio_same_kernels_default_matmul"],
        ratio_dnn=bench["ratio_same_kernels_onednn"],
        dnn_gain=ms["fast_default_matmul"] / ms["fast"],
        bw_lo=min(bw), bw_hi=max(bw), block_mb=block_mb, traffic_mb=traffic_mb,
        traffic_ms_lo=traffic_mb / max(bw), traffic_ms_hi=traffic_mb / min(bw),
        threads=bench["torch_threads"], processes=bench["processes"], blas=bench["blas"].upper(),
    )
    return out
