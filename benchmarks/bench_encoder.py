"""One-layer encoder: the literal reference module vs the fast [CLS]-only path, side by side in one process.

Paper scale: n=20, T=8, d=2000, mlp_dim=2000, float32, full-batch SGD on all parameters (lr 5e-3).
Each path runs a few training steps (forward, backward, SGD update; no test evaluation) after one
warm-up step; the per-step time is extrapolated to the paper's 1000 steps.
Run: .venv/bin/python benchmarks/bench_encoder.py [--ref-steps 5 --fast-steps 50]
"""
import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benign_attention import make_dataset  # noqa: E402
from benign_attention.encoder import fast_forward, make_encoder, step_flops  # noqa: E402


def time_steps(path, ds, steps, mlp_dim, lr=5e-3):
    model = make_encoder(ds.d, mlp_dim, seed=0, dtype="float32")
    X, y = torch.tensor(ds.X, dtype=torch.float32), torch.tensor(ds.y, dtype=torch.float32)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    losses, times, cpu, update = [], [], [], []
    for step in range(steps + 1):  # step 0 is a warm-up, not timed
        t, c = time.perf_counter(), time.process_time()
        logits = fast_forward(model, X)[0] if path == "fast" else model(X)[0]
        loss = torch.nn.functional.softplus(-y * logits).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        u = time.perf_counter()
        opt.step()
        u = time.perf_counter() - u
        losses.append(loss.item())
        if step:
            update.append(u)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
    return float(np.median(times)), float(np.median(cpu)), losses, float(np.median(update))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--d", type=int, default=2000)
    ap.add_argument("--mlp-dim", type=int, default=2000)
    ap.add_argument("--ref-steps", type=int, default=5)
    ap.add_argument("--fast-steps", type=int, default=50)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "encoder_2core.json"))
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = make_dataset(n=20, T=8, d=args.d, signal_norm=20.0, n_test=1)
    load = os.getloadavg()[0]
    ref_s, ref_cpu, ref_losses, _ = time_steps("reference", ds, args.ref_steps, args.mlp_dim)
    fast_s, fast_cpu, fast_losses, update_s = time_steps("fast", ds, args.fast_steps, args.mlp_dim)
    params = sum(p.numel() for p in make_encoder(ds.d, args.mlp_dim, seed=0).parameters())
    k = min(len(ref_losses), len(fast_losses))
    res = {
        "cores": len(os.sched_getaffinity(0)), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "load_average_at_start": load, "load_average_at_end": os.getloadavg()[0],
        "note": "wall times are on a machine shared with other jobs (see load averages); "
                "process CPU time per step is less sensitive to that",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "n": 20, "T": 8, "d": args.d, "mlp_dim": args.mlp_dim, "dtype": "float32",
        "reference_steps_timed": args.ref_steps, "fast_steps_timed": args.fast_steps,
        "reference_s_per_step": ref_s, "fast_s_per_step": fast_s,
        "reference_1000_steps_s_extrapolated": 1000 * ref_s, "fast_1000_steps_s_extrapolated": 1000 * fast_s,
        "ratio": ref_s / fast_s,
        # The floor no contraction order removes: SGD reads and writes every parameter each step.
        "parameters": params, "sgd_update_s_per_step": update_s,
        "sgd_update_share_of_fast_step": update_s / fast_s,
        "reference_cpu_s_per_step": ref_cpu, "fast_cpu_s_per_step": fast_cpu, "cpu_ratio": ref_cpu / fast_cpu,
        "forward_multiply_adds_reference": step_flops(20, 8, args.d, args.mlp_dim, "reference"),
        "forward_multiply_adds_fast": step_flops(20, 8, args.d, args.mlp_dim, "fast"),
        "max_train_loss_difference_float32": float(np.max(np.abs(np.subtract(ref_losses[:k], fast_losses[:k])))),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
