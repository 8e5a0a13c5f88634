"""Why the encoder grid's d = 4000 column (seed 0) has test accuracy 0.502 for every ||mu|| <= 35.

Trains the encoder at d = 4000, ||mu|| = 20 (mlp_dim 2000, lr 5e-3, 1000 steps, float32, one torch
thread: the grid cell's settings) from three (data seed, initialisation seed) pairs: (0, 0), the grid
cell itself, (0, 1) and (1, 0). Every 50 steps it records the train and test loss, the test accuracy
and the spread of the outputs (logits) on the 1000 test sequences: their mean, standard deviation and
the share above 0, and the mean |logit| on the training set.

One cell file per pair in benign_attention/results/encoder_offset/ (the book's cell cache: atomic,
checksummed, with provenance); a pair already stored is skipped. Chapter 07b reads them.

Run: .venv/bin/python scripts/encoder_offset.py    (about 2 minutes per pair on one free core)
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benign_attention import make_dataset  # noqa: E402
from benign_attention.cache import CellCache, provenance  # noqa: E402
from benign_attention.encoder import LR, MLP_DIM, fast_forward, make_encoder, sgd_step  # noqa: E402

ROOT = Path(__file__).resolve().parents[1] / "benign_attention" / "results" / "encoder_offset"
PAIRS = [(0, 0), (0, 1), (1, 0)]   # (data seed, initialisation seed)


def params(d, mu, data_seed, init_seed, steps):
    return {"experiment": "encoder_offset", "d": d, "signal_norm": mu, "data_seed": data_seed,
            "init_seed": init_seed, "steps": steps, "lr": LR, "mlp_dim": MLP_DIM, "dtype": "float32"}


def run(d, mu, data_seed, init_seed, steps, every):
    ds = make_dataset(d=d, signal_norm=mu, seed=data_seed)
    model = make_encoder(d, MLP_DIM, seed=init_seed)
    X, y = torch.tensor(ds.X, dtype=torch.float32), torch.tensor(ds.y, dtype=torch.float32)
    Xt, yt = torch.tensor(ds.X_test, dtype=torch.float32), torch.tensor(ds.y_test, dtype=torch.float32)
    keys = ("train_loss", "test_loss", "test_acc", "test_logit_mean", "test_logit_sd", "test_positive",
            "train_logit_abs")
    hist, rec = {k: [] for k in keys}, []
    start = time.perf_counter()
    for step in range(steps + 1):
        if step % every == 0 or step == steps:
            with torch.no_grad():
                lt, _ = fast_forward(model, Xt)
                lo, _ = fast_forward(model, X)
            rec.append(step)
            hist["train_loss"].append(F.softplus(-y * lo).mean().item())
            hist["test_loss"].append(F.softplus(-yt * lt).mean().item())
            hist["test_acc"].append((torch.sign(lt) == yt).float().mean().item())
            hist["test_logit_mean"].append(lt.mean().item())
            hist["test_logit_sd"].append(lt.std().item())
            hist["test_positive"].append((lt > 0).float().mean().item())
            hist["train_logit_abs"].append(lo.abs().mean().item())
        if step < steps:
            sgd_step(model, X, y, LR)
    arrays = {"steps": np.asarray(rec), **{k: np.asarray(v) for k, v in hist.items()}}
    return arrays, time.perf_counter() - start


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--out", default=str(ROOT))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    store = CellCache(args.out, "out")
    for data_seed, init_seed in PAIRS:
        name, p = f"d4000_mu20_data{data_seed}_init{init_seed}", params(4000, 20.0, data_seed, init_seed, args.steps)
        if store.load(name, p) is not None:
            print(f"{name}: stored", flush=True)
            continue
        arrays, seconds = run(4000, 20.0, data_seed, init_seed, args.steps, args.every)
        store.save(name, p, record={"seconds": seconds}, arrays=arrays, provenance=provenance("cpu", 1))
        print(f"{name}: test acc {arrays['test_acc'][-1]:.3f}, test logits {arrays['test_logit_mean'][-1]:.3f} "
              f"+- {arrays['test_logit_sd'][-1]:.3f} ({seconds:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
