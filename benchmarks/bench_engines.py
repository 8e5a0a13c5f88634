"""Exact engine vs the paper-style dense implementation, side by side in one process, same data.

Default run: n=20, T=8, d=2000, 1000 GD steps, evaluation every 10 steps on 1000 test samples.
The dense baseline evaluates (X @ W) @ p left to right with autograd, as the paper's code does.
Run: .venv/bin/python benchmarks/bench_engines.py [--steps 1000]
Prints the result; with the default settings also writes it to
benign_attention/results/benchmarks/engines_2core.json (it ships with the package; chapter 7 reads it).
"""
import argparse
import json
import os
import time

import numpy as np
import torch

from benign_attention import make_dataset, train
from benign_attention.data import init_W


def dense_left_to_right(ds, W0, steps, lr, every):
    """The paper's way: logits = (X @ W) @ p, autograd on W and p, test evaluation every `every` steps."""
    X, Xt = torch.tensor(ds.X), torch.tensor(ds.X_test)
    y, yt, nu = torch.tensor(ds.y), torch.tensor(ds.y_test), torch.tensor(ds.nu)
    W = torch.tensor(W0, requires_grad=True)
    p = torch.zeros(ds.d, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([W, p], lr=lr)
    test_loss = []
    for step in range(steps + 1):
        if step % every == 0 or step == steps:
            with torch.no_grad():
                f = (torch.softmax((Xt @ W) @ p, -1) * (Xt @ nu)).sum(-1)
                test_loss.append(torch.nn.functional.softplus(-yt * f).mean().item())
        if step == steps:
            break
        f = (torch.softmax((X @ W) @ p, -1) * (X @ nu)).sum(-1)
        loss = torch.nn.functional.softplus(-y * f).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return np.array(test_loss)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    ds = make_dataset()
    W0 = init_W(ds.d, 0)
    exact_times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        run = train(ds, steps=args.steps, W0=W0, record_every=10)
        exact_times.append(time.perf_counter() - t)
    t = time.perf_counter()
    dense_loss = dense_left_to_right(ds, W0, args.steps, 5e-3, 10)
    dense_time = time.perf_counter() - t
    gap = float(np.abs(dense_loss - run.history["test_loss"]).max())
    out = dict(cores=os.cpu_count(), torch_threads=torch.get_num_threads(), steps=args.steps,
               exact_s=min(exact_times), dense_left_to_right_s=dense_time,
               ratio=dense_time / min(exact_times), max_test_loss_difference=gap)
    print(json.dumps(out, indent=1))
    if args.steps == 1000:
        from pathlib import Path

        path = Path(__file__).resolve().parents[1] / "benign_attention" / "results" / "benchmarks" / "engines_2core.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(out, indent=1) + "\n")
        os.replace(tmp, path)


if __name__ == "__main__":
    main()
