r"""The full real-data grid of :ref:`sec-realdata-grid` — resumable::

    python -m benign_attention.realdata.grid --out benign_attention/results/realdata

runs every data set × :math:`n \in \{20, 200, 1000\}` (where the fine-tuning pool is large enough) ×
:math:`\eta \in \{0, 0.1, 0.2\}` × seeds {0, 1, 2} for 2000 epochs (full-batch Adam, lr 1e-3) and stores one file
per cell in the book's one cell cache (:class:`~benign_attention.cache.CellCache`: atomic write,
checksummed, with provenance). A cell stored with the same parameters is skipped; a corrupt or partial
one warns and is recomputed. ``--scheduler tcp://HOST:8786`` runs the cells on a Dask cluster.
"""
from __future__ import annotations

import argparse
import warnings
from collections import defaultdict
from collections.abc import Mapping
from functools import partial
from pathlib import Path

import numpy as np

from .._version import __version__
from ..cache import Cell, CellCache, CellGrid, provenance
from ..engines import DivergenceWarning
from ..validation import (ArgumentTypeError, check_cache_dir, check_executor, check_int, check_int_array,
                          check_number, check_path)
from .datasets import DATASETS, MAX_SEED, check_dataset

#: keyword arguments run_realdata_grid passes on to :func:`~benign_attention.realdata.finetune.prepare`
PREPARE_KW = ("pool_size", "head_size", "test_size", "head_epochs", "seed", "device", "threads")

DEFAULTS = dict(ns=(20, 200, 1000), etas=(0.0, 0.1, 0.2), seeds=(0, 1, 2), epochs=2000, lr=1e-3)


#: The file name of a cell, over its parameters (:class:`~benign_attention.cache.CellGrid`).
CELL_NAME = "{dataset}_n{n}_eta{eta:g}_seed{seed}"


def _cell_name(dataset, n, eta, seed):
    return CELL_NAME.format(dataset=dataset, n=int(n), eta=float(eta), seed=int(seed))


def cell_path(out, dataset, n, eta, seed) -> Path:
    """The file of the cell (dataset, n, eta, seed) in the folder ``out`` (``~`` expanded).

    Parameters
    ----------
    out : str or Path
        The cell folder of :func:`run_realdata_grid`.
    dataset : str
        One of :data:`~benign_attention.realdata.datasets.DATASETS`.
    n, eta, seed
        Training-set size (integer >= 1), label-noise rate in [0, 1), fine-tuning seed (integer >= 0).
    """
    check_dataset(dataset)
    n, eta = check_int("n", n, 1), check_number("eta", eta, 0.0, 1.0, high_open=True)
    return CellCache(out, "out").path(_cell_name(dataset, n, eta, check_int("seed", seed, 0)))


def _settings(epochs, lr, prepare_kw):
    """The training settings of a cell's parameters (``{"experiment": "realdata", <cell>, **settings}``,
    :meth:`~benign_attention.cache.CellGrid.params`)."""
    settings = dict(epochs=int(epochs), lr=float(lr), version=__version__)
    prep = {k: v for k, v in sorted(prepare_kw.items()) if k not in ("device", "threads")}
    if prep:  # the default preparation (the committed grid) records none
        settings["prepare"] = prep
    return settings


def _cells(dataset, n, eta, seed, epochs, lr):
    """The one cell of a job (dataset, n, eta, seed, epochs, lr)."""
    return [dict(dataset=dataset, n=int(n), eta=float(eta), seed=int(seed))]


_PREPARED: dict = {}   # this process's last prepared data set (one: it can be large)


def _prepared(dataset, root, prepare_kw):
    from . import finetune

    key = (dataset, None if root is None else str(root), tuple(sorted(prepare_kw.items())))
    if key not in _PREPARED:
        _PREPARED.clear()
        _PREPARED[key] = finetune.prepare(dataset, root, **prepare_kw)
    return _PREPARED[key]


def _compute_cell(root, prepare_kw, dataset, n, eta, seed, epochs, lr):
    """A job: fine-tune one cell where the executor sends it (None if n is larger than the data
    set's fine-tuning pool)."""
    from . import finetune

    prep = _prepared(dataset, root, prepare_kw)
    if n > len(prep.pool):
        return [None]
    cell = finetune.run(prep, int(n), float(eta), seed=int(seed), epochs=int(epochs), lr=float(lr))
    return [Cell({}, dict(cell, info=prep.info), provenance=provenance(prep.head_w.device, 1))]  # one torch thread


def run_realdata_grid(out, datasets=DATASETS, ns=DEFAULTS["ns"], etas=DEFAULTS["etas"], seeds=DEFAULTS["seeds"],
             epochs=DEFAULTS["epochs"], lr=DEFAULTS["lr"], root=None, progress=None, executor=None,
             **prepare_kw) -> list[dict]:
    """Run (or resume) the real-data grid; returns all its cells.

    Parameters
    ----------
    out : str or Path
        The cell folder (``~`` expanded; checked before any work, and it must be writable when cells
        remain to be computed): the book's one cell cache, :class:`~benign_attention.cache.CellCache`.
        Cells stored with the same parameters are reused; corrupt ones warn
        (:class:`~benign_attention.cache.CacheWarning`) and are computed again.
    datasets : list of str
        Names from :data:`~benign_attention.realdata.datasets.DATASETS`.
    ns, etas, seeds : list
        Training-set sizes (integers >= 1; cells with n larger than the pool are skipped), label-noise
        rates in [0, 1) and seeds (integers >= 0).
    epochs, lr
        Full-batch Adam epochs and learning rate.
    root : str or Path, optional
        The data folder.
    progress : bool or None
        A progress bar: True, False or None (the default: automatic - a bar only on a terminal and
        only once the work has run for 2 s; see :func:`~benign_attention.validation.check_progress`).
    executor : concurrent.futures.Executor, optional
        Where the cells run: None runs them here, one after the other; any ``concurrent.futures``-style
        executor (``submit`` returning futures: :func:`~benign_attention.parallel.process_pool`, a ``dask.distributed`` Client's
        ``get_executor()``) runs them there, each worker preparing each data set once. Each cell is
        stored where it runs, so ``out`` must be a folder the workers share. The cells are the same
        numbers wherever they run. See :ref:`sec-encoder-cluster`.
    **prepare_kw
        Any of :data:`PREPARE_KW`, passed to :func:`~benign_attention.realdata.finetune.prepare`.

    Returns
    -------
    list of dict
        The cells (each with its ``provenance``), in grid order. A cell file that cannot be written
        warns and the cell is still returned.
    """
    executor = check_executor("executor", executor)
    out = check_cache_dir("out", out, writable=False)
    if isinstance(datasets, str) or not hasattr(datasets, "__iter__"):
        raise ArgumentTypeError(f"datasets must be a list of names from {DATASETS}, got {datasets!r}")
    datasets = [check_dataset(d, f"datasets[{i}]") for i, d in enumerate(datasets)]
    ns = [int(n) for n in check_int_array("ns", ns, 1)]
    if isinstance(etas, (str, bytes)) or not hasattr(etas, "__iter__"):
        raise ArgumentTypeError(f"etas must be a list of numbers in [0, 1), got {etas!r}")
    etas = [check_number(f"etas[{i}]", e, 0.0, 1.0, high_open=True) for i, e in enumerate(etas)]
    root = None if root is None else check_path("root", root)
    seeds = [int(s) for s in check_int_array("seeds", seeds, 0, MAX_SEED)]
    epochs, lr = check_int("epochs", epochs, 0), check_number("lr", lr, 0.0, low_open=True)
    for k in prepare_kw:
        if k not in PREPARE_KW:
            raise ValueError(f"prepare_kw key {k!r} unknown; allowed: {PREPARE_KW}")
    compute = partial(_compute_cell, None if root is None else str(root), dict(prepare_kw))
    grid = CellGrid("realdata", _settings(epochs, lr, prepare_kw), _cells, compute, CellCache(out, "out"),
                    CELL_NAME, in_worker=True)
    jobs = [(d, n, float(e), s, epochs, float(lr)) for d in datasets for n in ns for e in etas for s in seeds]
    _PREPARED.clear()
    try:
        results = [got[0] for got, _ in grid.run(jobs, executor, progress, desc="realdata grid")]
    finally:
        _PREPARED.clear()
    results = [None if c is None else dict(c.record, provenance=c.provenance) for c in results]
    bad = [job[:4] for job, r in zip(jobs, results) if r is not None and r.get("diverged_at") is not None]
    if bad:
        warnings.warn(DivergenceWarning(f"realdata.grid.run_realdata_grid: training diverged (NaN/inf loss) with lr={lr:g} in "
                                        f"{len(bad)} of {len(jobs)} cells (e.g. {bad[0]}); their metrics are NaN. "
                                        f"Lower lr."), stacklevel=2)
    return [r for r in results if r is not None]


def load_results(out) -> list[dict]:
    """Every stored real-data cell in the folder ``out``, whatever its parameters.

    Returns the cells' records (each with its ``provenance``), sorted by file name; an empty list if
    the folder does not exist. Partial or corrupt files are left out with a
    :class:`~benign_attention.cache.CacheWarning`."""
    return [dict(c.record, provenance=c.provenance) for c in CellCache(out, "out").cells()
            if c.params.get("experiment") == "realdata"]


_FINAL = ("train_loss", "train_acc_noisy", "train_acc_clean", "memorised", "test_acc", "test_max_attention",
          "train_max_attention")


def summarize(cells) -> list[dict]:
    """Mean (and min/max) over seeds of the final metrics for each (dataset, n, eta)."""
    if isinstance(cells, (str, bytes, Mapping)) or not hasattr(cells, "__iter__"):
        raise ArgumentTypeError(f"cells must be a list of cell dicts (from run_realdata_grid or load_results), got "
                                f"{type(cells).__name__}")
    cells = list(cells)
    need = ("dataset", "n", "eta", "epochs", "baseline", "final")
    for i, c in enumerate(cells):
        if not isinstance(c, Mapping):
            raise ArgumentTypeError(f"cells[{i}] must be a cell dict, got {type(c).__name__}")
        missing = [k for k in need if k not in c] + [f"final.{k}" for k in _FINAL if k not in c.get("final", {})]
        if missing:
            raise ValueError(f"cells[{i}] is not a complete cell: missing {missing}")
    groups = defaultdict(list)
    for c in cells:
        groups[(c["dataset"], c["n"], c["eta"])].append(c)
    rows = []
    for (d, n, eta), cs in sorted(groups.items()):
        row = dict(dataset=d, n=n, eta=eta, seeds=len(cs), epochs=cs[0]["epochs"], baseline=cs[0]["baseline"])
        for k in _FINAL:
            v = np.array([c["final"][k] for c in cs], dtype=float)
            row[k] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
            row[k + "_min"], row[k + "_max"] = (float(np.nanmin(v)), float(np.nanmax(v))) if np.isfinite(v).any() else (float("nan"),) * 2
        rows.append(row)
    return rows


def main(argv=None):
    """The command line of the module docstring (``--out``, the grid's axes, ``--device``,
    ``--scheduler``): runs or resumes the grid and prints one summary line per setting."""
    ap = argparse.ArgumentParser(description="Run the real-data grid (resumable, one file per cell).")
    ap.add_argument("--out", default="benign_attention/results/realdata")
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    ap.add_argument("--ns", nargs="+", type=int, default=list(DEFAULTS["ns"]))
    ap.add_argument("--etas", nargs="+", type=float, default=list(DEFAULTS["etas"]))
    ap.add_argument("--seeds", nargs="+", type=int, default=list(DEFAULTS["seeds"]))
    ap.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    ap.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    ap.add_argument("--device", default="cpu", help="torch device for the fine-tuning, e.g. cuda")
    ap.add_argument("--scheduler", default=None,
                    help="address of a dask.distributed scheduler whose workers share --out (default: run here)")
    a = ap.parse_args(argv)
    executor = None
    if a.scheduler:
        from dask.distributed import Client
        executor = Client(a.scheduler).get_executor()
    cells = run_realdata_grid(a.out, a.datasets, a.ns, a.etas, a.seeds, a.epochs, a.lr, device=a.device, executor=executor)
    for r in summarize(cells):
        print(f"{r['dataset']:>13} n={r['n']:<5} eta={r['eta']:<4} train loss {r['train_loss']:.3f} "
              f"test acc {r['test_acc']:.3f} (baseline {r['baseline']:.3f}) max attn {r['train_max_attention']:.2f}")


if __name__ == "__main__":
    main()
