"""Train/test loss of the one-layer encoder after 1000 SGD steps over a (d, ||mu||) grid.

One json per cell in results/encoder/ (atomic write, resumable: finished cells are skipped), with
provenance (torch version, device, threads, date, wall time). Cells run from the cheapest (small d).

Run:  .venv/bin/python scripts/encoder_grid.py --d 250 500 1000 2000 --mu 5 10 15 20 30 50 100 --threads 1
"""
import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benign_attention import make_dataset  # noqa: E402
from benign_attention.encoder import train_encoder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1] / "results" / "encoder"


def cell_path(out, d, mu, seed):
    return Path(out) / f"d{int(d)}_mu{float(mu):g}_seed{int(seed)}.json"


def run_cell(d, mu, seed=0, steps=1000, lr=5e-3, mlp_dim=2000, dtype="float32", out=ROOT):
    """Train one cell and write its json atomically; return the record."""
    ds = make_dataset(d=int(d), signal_norm=float(mu), seed=int(seed))
    run = train_encoder(ds, steps=steps, lr=lr, record_every=steps, test_every=steps, mlp_dim=mlp_dim,
                        seed=seed, dtype=dtype)
    att = run.history["train_attention"][-1]
    rec = {
        "d": int(d), "signal_norm": float(mu), "seed": int(seed), "steps": steps, "lr": lr, "mlp_dim": mlp_dim,
        "dtype": dtype, "n": ds.n, "T": ds.T, "n_test": ds.n_test, "data_fingerprint": ds.fingerprint,
        **{k: float(run.history[k][-1]) for k in ("train_loss", "train_acc", "train_clean_acc", "test_loss",
                                                   "test_acc")},
        "noisy_attention_x3": float(att[ds.noisy, 2].mean()), "clean_attention_x1": float(att[~ds.noisy, 0].mean()),
        "seconds": run.seconds,
        "provenance": {"torch": torch.__version__, "device": "cpu", "threads": torch.get_num_threads(),
                       "cpu": platform.processor() or platform.machine(),
                       "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")},
    }
    path = cell_path(out, d, mu, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(rec, f, indent=1)
    os.replace(tmp, path)
    return rec


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--d", type=int, nargs="+", default=[250, 500, 1000, 2000])
    ap.add_argument("--mu", type=float, nargs="+", default=[5, 10, 15, 20, 30, 50, 100])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    for d in sorted(args.d):
        for mu in args.mu:
            path = cell_path(args.out, d, mu, args.seed)
            if path.exists():
                continue
            rec = run_cell(d, mu, args.seed, args.steps, out=args.out)
            print(f"d={d} mu={mu:g}: train {rec['train_loss']:.3f} test {rec['test_loss']:.3f} "
                  f"({rec['seconds']:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
