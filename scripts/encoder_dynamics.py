"""The encoder's dynamics in the paper's three settings at paper scale (mlp_dim = 2000, 1000 SGD steps,
metrics and attention every 10 steps, test loss on 1000 clean samples every 10 steps).

One cell file per setting in benign_attention/results/encoder_dynamics/ (atomic, checksummed, with provenance); a
setting already stored with the same parameters is skipped. Chapter 07b shows them.

Run: .venv/bin/python scripts/encoder_dynamics.py [--threads 2]
"""
import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benign_attention import make_dataset  # noqa: E402
from benign_attention.encoder import load_runs, save_run, train_encoder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1] / "benign_attention" / "results" / "encoder_dynamics"
# The paper's three settings for the encoder, as the authors' plotting notebook lists them (plot.ipynb in
# keitaroskmt/benign-attention, at commit 425cbd4): (2000, 20) benign, (5000, 5) harmful, (1000, 100) large signal.
SETTINGS = {"benign": (2000, 20.0), "harmful": (5000, 5.0), "large_signal": (1000, 100.0)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    done = load_runs(args.out) if Path(args.out).is_dir() else {}
    for name, (d, mu) in SETTINGS.items():
        want = dict(d=d, signal_norm=mu, seed=args.seed)
        if name in done and all(done[name].config.get(k) == v for k, v in want.items()):
            print(f"{name}: stored", flush=True)
            continue
        t = time.perf_counter()
        ds = make_dataset(d=d, signal_norm=mu, seed=args.seed)
        run = train_encoder(ds, steps=1000, record_every=10, test_every=10, mlp_dim=2000, seed=args.seed)
        save_run(run, args.out, name)
        print(f"{name} (d={d}, mu={mu:g}): train {run.final('train_loss'):.4f} test {run.final('test_loss'):.3f} "
              f"test acc {run.final('test_acc'):.3f} ({time.perf_counter() - t:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
