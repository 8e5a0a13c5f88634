"""A short CUDA check of the exact engine (optional: the project never needs a GPU).

Checks, on a CUDA device: (1) exact engine on the GPU (float64) against dense autograd GD on the CPU
at the default setting, 1000 steps: max |delta logit| on train and test tokens; (2) the batched
grid on the GPU against the CPU for a few cells; (3) wall time of the 39 x 39 phase diagram on the GPU.
Run: PYTHONPATH=. python3 benchmarks/cuda_check.py [--out result.json]
"""
import argparse
import json
import time

import numpy as np
import torch

from benign_attention import make_dataset, run_grid, train


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: skipped (see benchmarks/results/cuda_check_h200.json for a measured run)")
        return
    out = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    ds = make_dataset()
    t = time.perf_counter()
    gpu = train(ds, steps=1000, record_every=10, device="cuda")
    torch.cuda.synchronize()
    out["exact_gpu_default_s_first"] = time.perf_counter() - t
    t = time.perf_counter()
    gpu = train(ds, steps=1000, record_every=10, device="cuda")
    torch.cuda.synchronize()
    out["exact_gpu_default_s"] = time.perf_counter() - t
    t = time.perf_counter()
    cpu = train(ds, steps=1000, record_every=10, engine="dense")
    out["dense_cpu_default_s"] = time.perf_counter() - t
    out["max_train_logit_diff"] = float(np.abs(gpu.history["train_logits"] - cpu.history["train_logits"]).max())
    (Wg, pg), (Wc, pc) = gpu.params(), cpu.params()
    out["max_test_logit_diff"] = float(np.abs(ds.X_test @ (Wg @ pg) - ds.X_test @ (Wc @ pc)).max())
    small = dict(grid={"d": [500, 2000], "signal_norm": [5.0, 20.0, 60.0]}, steps=500, progress=False)
    g_gpu = run_grid(device="cuda", **small)
    g_cpu = run_grid(**small)
    out["grid_gpu_vs_cpu_max_diff"] = {k: float(np.nanmax(np.abs(g_gpu.data[k] - g_cpu.data[k]))) for k in g_gpu.data}
    grid = {"d": list(range(250, 5001, 125)), "signal_norm": list(np.arange(5, 100.01, 2.5))}
    t = time.perf_counter()
    pd = run_grid(grid, steps=1000, progress=False, device="cuda")
    torch.cuda.synchronize()
    out["phase_diagram_gpu_s"] = time.perf_counter() - t
    out["phase_diagram_train_loss_range"] = [float(pd.final("train_loss").min()), float(pd.final("train_loss").max())]
    out["phase_diagram_test_loss_range"] = [float(pd.final("test_loss").min()), float(pd.final("test_loss").max())]
    out["ok"] = out["max_train_logit_diff"] <= 1e-8 and out["max_test_logit_diff"] <= 1e-8
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
