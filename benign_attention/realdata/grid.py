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
from collections import defaultdict
from pathlib import Path

import numpy as np

from .. import __version__
from .data import DATASETS, check_dataset

DEFAULTS = dict(ns=(20, 200, 1000), etas=(0.0, 0.1, 0.2), seeds=(0, 1, 2), epochs=2000, lr=1e-3)


def cell_path(out, dataset, n, eta, seed) -> Path:
    return Path(out) / f"{dataset}_n{n}_eta{eta:g}_seed{seed}.json"


def read_cell(path, **params) -> dict | None:
    """The cell stored at ``path`` if it is complete and was made with ``params``; else None."""
    try:
        cell = json.loads(Path(path).read_text())
        ok = cell.get("version") == __version__ and "final" in cell and all(
            cell.get(k) == v for k, v in params.items())
        return cell if ok else None
    except (OSError, ValueError, AttributeError):
        return None


def write_json_atomic(path, obj) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def run_grid(out, datasets=DATASETS, ns=DEFAULTS["ns"], etas=DEFAULTS["etas"], seeds=DEFAULTS["seeds"],
             epochs=DEFAULTS["epochs"], lr=DEFAULTS["lr"], root=None, progress=True, **prepare_kw) -> list[dict]:
    """Run (or resume) the grid; returns all cells. Cells with n larger than the pool are skipped."""
    from tqdm.auto import tqdm

    from .finetune import prepare, run

    for d in datasets:
        check_dataset(d)
    cells = [(d, n, float(e), s) for d in datasets for n in ns for e in etas for s in seeds]
    results, bar = [], tqdm(total=len(cells), disable=not progress, desc="realdata grid")
    for dataset in datasets:
        prep = None
        for (d, n, eta, seed) in [c for c in cells if c[0] == dataset]:
            params = dict(dataset=d, n=int(n), eta=eta, seed=int(seed), epochs=int(epochs), lr=float(lr))
            path = cell_path(out, d, n, eta, seed)
            cell = read_cell(path, **params)
            if cell is None:
                prep = prep or prepare(dataset, root, **prepare_kw)
                if n > len(prep.pool):
                    bar.update()
                    continue
                bar.set_postfix_str(f"{d} n={n} eta={eta:g} seed={seed}")
                cell = run(prep, int(n), eta, seed=int(seed), epochs=int(epochs), lr=float(lr))
                import platform, torch
                cell.update(version=__version__, info=prep.info, torch=torch.__version__,
                            threads=torch.get_num_threads(), machine=platform.machine(),
                            device=str(prep.head_w.device))
                write_json_atomic(path, cell)
            results.append(cell)
            bar.update()
    bar.close()
    return results


def load_results(out) -> list[dict]:
    """Every complete cell json in ``out`` (empty list if the folder does not exist)."""
    cells = []
    for p in sorted(Path(out).glob("*.json")):
        c = read_cell(p)
        if c is not None and "dataset" in c:
            cells.append(c)
    return cells


def summarize(cells) -> list[dict]:
    """Mean (and min/max) over seeds of the final metrics for each (dataset, n, eta)."""
    groups = defaultdict(list)
    for c in cells:
        groups[(c["dataset"], c["n"], c["eta"])].append(c)
    rows = []
    for (d, n, eta), cs in sorted(groups.items()):
        row = dict(dataset=d, n=n, eta=eta, seeds=len(cs), epochs=cs[0]["epochs"], baseline=cs[0]["baseline"])
        for k in ("train_loss", "train_acc_noisy", "train_acc_clean", "memorised", "test_acc", "test_max_attention",
                  "train_max_attention"):
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
