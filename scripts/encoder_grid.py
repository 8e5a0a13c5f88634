"""Train/test loss of the one-layer encoder after 1000 SGD steps over a (d, ||mu||) grid.

One json per cell in benign_attention/results/encoder/ (atomic write, resumable: finished cells are skipped), with
provenance (torch version, device, threads, date, wall time). Cells run from the cheapest (small d).

The stored grid (the defaults): d in {250, 500, 750, 1000, 1500, 2000, 2500, 3000, 4000, 5000} and
||mu|| in {5, 7.5, ..., 50, 60, 70, 80, 100}, 230 cells on the paper's lattice, about an hour on 2 cores.

Run locally:    .venv/bin/python scripts/encoder_grid.py [--d ... --mu ...]
On a Dask cluster (the output folder must be shared with the workers):
                .venv/bin/python scripts/encoder_grid.py --scheduler tcp://HOST:8786 --d $(seq 250 125 5000) ...
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benign_attention.encoder import LR, MLP_DIM, run_encoder_grid  # noqa: E402

ROOT = Path(__file__).resolve().parents[1] / "benign_attention" / "results" / "encoder"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--d", type=int, nargs="+", default=[250, 500, 750, 1000, 1500, 2000, 2500, 3000, 4000, 5000])
    ap.add_argument("--mu", type=float, nargs="+", default=[5 + 2.5 * i for i in range(19)] + [60, 70, 80, 100])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--lr", type=float, default=LR, help="SGD learning rate (default: the paper's)")
    ap.add_argument("--mlp-dim", type=int, default=MLP_DIM, help="width of the feed-forward block (default: the paper's)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per cell")
    ap.add_argument("--scheduler", default=None, help="address of a dask.distributed scheduler (default: run here)")
    ap.add_argument("--out", default=str(ROOT))
    args = ap.parse_args(argv)
    executor = None
    if args.scheduler:
        from dask.distributed import Client
        executor = Client(args.scheduler).get_executor()

    records = run_encoder_grid(args.d, args.mu, args.out, args.seed, args.steps, args.threads, executor, progress=True,
                               lr=args.lr, mlp_dim=args.mlp_dim)
    for rec in records:
        print(f"d={rec['d']} mu={rec['signal_norm']:g}: train {rec['train_loss']:.3f} test {rec['test_loss']:.3f} "
              f"({rec['seconds']:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
