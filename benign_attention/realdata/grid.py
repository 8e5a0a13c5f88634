"""The full real-data grid of the chapter *Benign overfitting in pretrained transformers* — resumable.

    python -m benign_attention.realdata.grid --out results/realdata

runs every data set × n ∈ {20, 200, 1000} (where the fine-tuning pool is large enough) ×
η ∈ {0, 0.1, 0.2} × seeds {0, 1, 2} for 2000 epochs (full-batch Adam, lr 1e-3) and writes one json
per cell, atomically (temp file + ``os.replace``). A cell whose file exists, parses and matches its
parameters and the package version is skipped; a corrupt or partial one is recomputed.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import warnings
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .. import __version__
from ..validation import (ArgumentTypeError, check_cache_dir, check_int, check_int_array, check_number, check_path,
                          check_progress, dir_is_writable)
from .data import DATASETS, MAX_SEED, check_dataset

#: keyword arguments run_grid passes on to :func:`~benign_attention.realdata.finetune.prepare`
PREPARE_KW = ("pool_size", "head_size", "test_size", "head_epochs", "seed", "device", "threads")

DEFAULTS = dict(ns=(20, 200, 1000), etas=(0.0, 0.1, 0.2), seeds=(0, 1, 2), epochs=2000, lr=1e-3)


def cell_path(out, dataset, n, eta, seed) -> Path:
    """Where the cell (dataset, n, eta, seed) is stored under the folder ``out`` (``~`` expanded)."""
    check_dataset(dataset)
    n, eta = check_int("n", n, 1), check_number("eta", eta, 0.0, 1.0, high_open=True)
    return check_path("out", out) / f"{dataset}_n{n}_eta{eta:g}_seed{check_int('seed', seed, 0)}.json"


def read_cell(path, **params) -> dict | None:
    """The cell stored at ``path`` if it is complete and was made with ``params``; else None."""
    path = check_path("path", path)
    try:
        cell = json.loads(Path(path).read_text())
        ok = cell.get("version") == __version__ and "final" in cell and all(
            cell.get(k) == v for k, v in params.items())
        return cell if ok else None
    except (OSError, ValueError, AttributeError):
        return None


def write_json_atomic(path, obj) -> None:
    """Write ``obj`` as json to ``path`` via a temp file and ``os.replace`` (never a partial file)."""
    path = check_path("path", path)
    try:
        text = json.dumps(obj)
    except (TypeError, ValueError) as err:
        raise ArgumentTypeError(f"obj must be json-serialisable ({err})") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def run_grid(out, datasets=DATASETS, ns=DEFAULTS["ns"], etas=DEFAULTS["etas"], seeds=DEFAULTS["seeds"],
             epochs=DEFAULTS["epochs"], lr=DEFAULTS["lr"], root=None, progress=None, **prepare_kw) -> list[dict]:
    """Run (or resume) the grid; returns all cells. Cells with n larger than the pool are skipped.

    ``out`` the folder of the cell files (``~`` expanded; checked before any work, and it must be
    writable when cells remain to be computed); ``datasets`` a list of names from :data:`DATASETS`;
    ``ns`` (integers >= 1), ``etas`` (numbers in [0, 1)) and ``seeds`` (integers >= 0) lists;
    ``prepare_kw`` any of :data:`PREPARE_KW`. A cell file that cannot be written warns and the cell is
    still returned. ``progress``: a progress bar: True, False or None (the default:
    automatic - a bar only on a terminal and only once the work has run for 2 s; see
    :func:`~benign_attention.validation.check_progress`).
    """
    from tqdm.auto import tqdm

    from . import finetune

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
    progress = check_progress("progress", progress)
    for k in prepare_kw:
        if k not in PREPARE_KW:
            raise ValueError(f"prepare_kw key {k!r} unknown; allowed: {PREPARE_KW}")
    cells = [(d, n, float(e), s) for d in datasets for n in ns for e in etas for s in seeds]
    todo = [c for c in cells if read_cell(cell_path(out, *c), **dict(
        dataset=c[0], n=c[1], eta=c[2], seed=c[3], epochs=epochs, lr=lr)) is None]
    if todo and not dir_is_writable(out):
        raise ValueError(f"out {str(out)!r} is not writable, and {len(todo)} cells remain to be computed")
    results, bar = [], tqdm(total=len(cells), desc="realdata grid", **progress)
    for dataset in datasets:
        prep = None
        for (d, n, eta, seed) in [c for c in cells if c[0] == dataset]:
            params = dict(dataset=d, n=int(n), eta=eta, seed=int(seed), epochs=int(epochs), lr=float(lr))
            path = cell_path(out, d, n, eta, seed)
            cell = read_cell(path, **params)
            if cell is None:
                prep = prep or finetune.prepare(dataset, root, **prepare_kw)
                if n > len(prep.pool):
                    bar.update()
                    continue
                bar.set_postfix_str(f"{d} n={n} eta={eta:g} seed={seed}")
                cell = finetune.run(prep, int(n), eta, seed=int(seed), epochs=int(epochs), lr=float(lr))
                import platform, torch
                cell.update(version=__version__, info=prep.info, torch=torch.__version__,
                            threads=torch.get_num_threads(), machine=platform.machine(),
                            device=str(prep.head_w.device))
                try:
                    write_json_atomic(path, cell)
                except OSError as err:
                    warnings.warn(f"out: could not write the cell file {str(path)!r} ({err}); the cell is "
                                  f"returned but not stored", RuntimeWarning, stacklevel=2)
            results.append(cell)
            bar.update()
    bar.close()
    return results


def load_results(out) -> list[dict]:
    """Every complete cell json in ``out`` (empty list if the folder does not exist)."""
    out = check_path("out", out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out {str(out)!r} is a file, not a folder of cell files")
    cells = []
    for p in sorted(out.glob("*.json")):
        c = read_cell(p)
        if c is not None and "dataset" in c:
            cells.append(c)
    return cells


_FINAL = ("train_loss", "train_acc_noisy", "train_acc_clean", "memorised", "test_acc", "test_max_attention",
          "train_max_attention")


def summarize(cells) -> list[dict]:
    """Mean (and min/max) over seeds of the final metrics for each (dataset, n, eta)."""
    if isinstance(cells, (str, bytes, Mapping)) or not hasattr(cells, "__iter__"):
        raise ArgumentTypeError(f"cells must be a list of cell dicts (from run_grid or load_results), got "
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
    ap = argparse.ArgumentParser(description="Run the real-data grid (resumable, one json per cell).")
    ap.add_argument("--out", default="results/realdata")
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    ap.add_argument("--ns", nargs="+", type=int, default=list(DEFAULTS["ns"]))
    ap.add_argument("--etas", nargs="+", type=float, default=list(DEFAULTS["etas"]))
    ap.add_argument("--seeds", nargs="+", type=int, default=list(DEFAULTS["seeds"]))
    ap.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    ap.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    ap.add_argument("--device", default="cpu", help="torch device for the fine-tuning, e.g. cuda")
    a = ap.parse_args(argv)
    cells = run_grid(a.out, a.datasets, a.ns, a.etas, a.seeds, a.epochs, a.lr, device=a.device)
    for r in summarize(cells):
        print(f"{r['dataset']:>13} n={r['n']:<5} eta={r['eta']:<4} train loss {r['train_loss']:.3f} "
              f"test acc {r['test_acc']:.3f} (baseline {r['baseline']:.3f}) max attn {r['train_max_attention']:.2f}")


if __name__ == "__main__":
    main()
