"""The 39 x 39 (d, ||mu||) phase diagram at step 1000: wall time and peak memory.

d in {250, 375, ..., 5000}, ||mu|| in {5, 7.5, ..., 100}, n=20, other settings default, 1000 GD
steps, train and test loss at the end (1000 test samples per cell). No cache.
Run: .venv/bin/python benchmarks/bench_phase_diagram.py
"""
import json
import os
import resource
import time

import numpy as np

from benign_attention import run_grid


def main():
    grid = {"d": list(range(250, 5001, 125)), "signal_norm": list(np.arange(5, 100.01, 2.5))}
    t = time.perf_counter()
    res = run_grid(grid, steps=1000, progress=False)
    wall = time.perf_counter() - t
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux
    out = dict(cores=os.cpu_count(), cells=int(np.prod([len(v) for v in grid.values()])), wall_s=wall,
               peak_rss_gb=peak_gb, train_loss_range=[float(res.final("train_loss").min()), float(res.final("train_loss").max())],
               test_loss_range=[float(res.final("test_loss").min()), float(res.final("test_loss").max())])
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
