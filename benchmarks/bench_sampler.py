"""The gram engine's sampler against the exact engine: grid time, cost against d, whole-process time.

Parts (all on the CPU, in one process unless said otherwise; no cache):

* ``grid``: the 39 x 39 (d, ||mu||) grid of the phase diagram (d 250..5000, ||mu|| 5..100, n=20, 1000
  steps). The exact engine as ``run_grid`` runs it today (final step recorded, 10^3 test sequences),
  then the gram engine with the same recording (10^3 and 10^4 test sequences per cell) and with every
  10th step recorded (train and test metrics at each, 10^3 test sequences).
* ``dims``: one default run (n=20, T=8, 1000 steps, every 10th step recorded, 10^3 test sequences) with
  the sampler at d = 10^2 .. 10^6; the slope of log time against log d.
* ``floor``: the least time the 39 x 39 grid can take with this recursion, from the measured
  throughput of its kernels (see :func:`floor`).
* ``init``: kaiming-uniform against Gaussian W_0 of the same variance at the paper's d = 2000, paired
  by data seed (24 seeds), with the exact engine.
* ``process``: whole-process wall and CPU time of a default run (d=2000, test metrics every 10 steps)
  started from a fresh interpreter: ``sample_runs`` (numpy only) against ``train`` with the exact engine,
  and against the authors' ``main.py`` when AUTHORS_REPO and AUTHORS_PYTHON are set (see :data:`AUTHORS`).

Run: .venv/bin/python benchmarks/bench_sampler.py [grid] [grid_pair] [floor] [dims] [init] [process]  (default: all)
Writes benign_attention/results/benchmarks/sampler_2core.json (merged with what is there; it ships with
the package, and chapter 7c reads it).
"""
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "benign_attention" / "results" / "benchmarks" / "sampler_2core.json"
GRID = {"d": list(range(250, 5001, 125)), "signal_norm": [float(v) for v in np.arange(5, 100.01, 2.5)]}


def _grid_time(engine, n_test, record_every=None):
    from benign_attention import run_grid

    t = time.perf_counter()
    res = run_grid(GRID, base=dict(n_test=n_test), steps=1000, record_every=record_every, engine=engine,
                   progress=False)
    wall = time.perf_counter() - t
    return dict(engine=engine, n_test=n_test, record_every=record_every, wall_s=round(wall, 2),
                recorded_steps=len(res.steps),
                train_loss_range=[round(float(x), 4) for x in (res.final("train_loss").min(), res.final("train_loss").max())],
                test_loss_range=[round(float(x), 4) for x in (res.final("test_loss").min(), res.final("test_loss").max())])


GRID_RUNS = [("exact", 1000, None), ("gram", 1000, None), ("gram", 10000, None), ("gram", 1000, 10)]


def grid():
    rows = []
    for engine, n_test, every in GRID_RUNS:
        rows.append(_grid_time(engine, n_test, every))
        print(rows[-1], flush=True)
        _save({"grid_39x39": rows})
    return {"grid_39x39": rows, "grid_ratio_final_step_1e3": round(rows[0]["wall_s"] / rows[1]["wall_s"], 2),
            "grid_not_run": "gram with 10^4 test sequences and test metrics at every 10th step: the test draw "
                            "costs O(E N T) per cell (101 x 10^4 x 8 scores), about 10x the 10^3 row's test part"}


def grid_pair():
    """A second side-by-side measurement: exact and gram, 10^3 test sequences, final step only."""
    load = [round(x, 2) for x in os.getloadavg()]
    rows = [_grid_time("exact", 1000), _grid_time("gram", 1000)]
    for r in rows:
        print(r, flush=True)
    return {"grid_39x39_pair": {"load_average_at_start": load, "rows": rows,
                                "ratio_exact_over_gram": round(rows[0]["wall_s"] / rows[1]["wall_s"], 2)}}


def floor():
    """What the 39 x 39 grid costs at the least, from the kernels it is made of (float32, one BLAS thread
    per worker, two workers). A GD step of one run is six m x m (or nT x m) multiply-add passes:
    G alpha, C v and C^T g are shared by a family's runs (one matrix product for the family), while
    Z^T G alpha, Z c and folding the rank-one updates into Z are passes over each run's own Z. The
    floor assumes no Python overhead and perfect use of both cores, at the throughput each kernel is
    measured to reach here, for 39 x 39 cells x 1000 steps."""
    from threadpoolctl import threadpool_limits

    R, m, nT, block, steps, cells, workers = 39, 162, 160, 16, 1000, 39 * 39, 2
    rng = np.random.default_rng(0)
    f32 = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    Z, G, x, Al, Cl = f32(R, m, m), f32(m, m), f32(R, m), f32(R, m, block), f32(R, block, m)

    def rate(fn, fma, reps=300):
        fn()
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        return fma * reps / (time.perf_counter() - t)

    with threadpool_limits(1, user_api="blas"):
        shared = rate(lambda: x @ G, R * m * m)
        per_run = rate(lambda: (x[:, None, :] @ Z)[:, 0], R * m * m)
        fold = rate(lambda: Al @ Cl, R * m * m * block, reps=30)
    fma_shared, fma_run = 3 * m * max(m, nT), 2 * m * m      # per run and step; the fold adds m * m
    seconds = cells * steps * (fma_shared / shared + fma_run / per_run + m * m / fold) / workers
    return {"grid_floor": {"multiply_adds_per_run_step": fma_shared + fma_run + m * m,
                           "gfma_per_s_one_core": {"shared_matrix_product": round(shared / 1e9, 2),
                                                   "batched_per_run_matvec": round(per_run / 1e9, 2),
                                                   "batched_rank_16_fold": round(fold / 1e9, 2)},
                           "floor_s_39x39_two_cores": round(seconds, 2),
                           "load_average": [round(v, 2) for v in os.getloadavg()]}}


def init():
    """Kaiming-uniform against Gaussian W_0 (same variance) at the paper's d, paired by data seed,
    exact engine, 1000 steps, 500 test sequences."""
    from benign_attention import make_dataset, train

    keys = ("train_loss", "test_loss", "test_acc", "test_margin")
    seeds = range(24)
    vals = {init: np.array([[train(make_dataset(seed=s, n_test=500), init=init, record_steps=[1000]).final(k)
                             for k in keys] for s in seeds]) for init in ("uniform", "gaussian")}
    diff = vals["gaussian"] - vals["uniform"]
    return {"init_d2000": {"seeds": len(seeds), "keys": keys,
                           "mean_uniform": vals["uniform"].mean(0).round(5).tolist(),
                           "mean_gaussian": vals["gaussian"].mean(0).round(5).tolist(),
                           "mean_paired_diff": diff.mean(0).round(5).tolist(),
                           "se_paired_diff": (diff.std(0, ddof=1) / np.sqrt(len(seeds))).round(5).tolist(),
                           "max_abs_paired_diff": np.abs(diff).max(0).round(5).tolist(),
                           "seed_sd_uniform": vals["uniform"].std(0, ddof=1).round(5).tolist()}}


def dims():
    from benign_attention.gram import sample_runs

    ds = [10**k for k in range(2, 7)]
    times = []
    for d in ds:
        reps = []
        for rep in range(3):
            t = time.perf_counter()
            sample_runs(seeds=[rep], d=d, steps=1000, record_every=10)
            reps.append(time.perf_counter() - t)
        times.append(float(np.median(reps)))
        print(d, times[-1], flush=True)
    slope = float(np.polyfit(np.log(ds), np.log(times), 1)[0])
    slope_big = float(np.polyfit(np.log(ds[1:]), np.log(times[1:]), 1)[0])
    return {"cost_vs_d": {"d": ds, "median_s_of_3": [round(t, 4) for t in times], "slope_loglog": round(slope, 3),
                          "slope_loglog_d_ge_1e3": round(slope_big, 3),
                          "note": "d = 100 < nT + 2 = 162: the span is all of R^d (m = 100), a smaller problem"}}


PROCESS = {
    "gram_sample_runs": "from benign_attention.gram import sample_runs; sample_runs(seeds=[0], steps=1000, "
                        "record_every=10)",
    "exact_train": "from benign_attention import make_dataset, train; train(make_dataset(seed=0), steps=1000, "
                   "record_every=10)",
}


#: The authors' experiment (keitaroskmt/benign-attention, ``main.py``: 1000 full-batch steps at d = 2000,
#: train and test metrics every 10 steps, 1000 test sequences) runs when AUTHORS_REPO names a checkout of it
#: and AUTHORS_PYTHON an interpreter with its requirements (torch, hydra-core 1.3.2, wandb 0.19.9, pandas);
#: wandb runs offline, hydra writes into a temporary folder.
AUTHORS = (os.environ.get("AUTHORS_REPO"), os.environ.get("AUTHORS_PYTHON"))


def _process(code):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    if code == "authors":
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([AUTHORS[1], "main.py", f"hydra.run.dir={tmp}/out"], check=True, cwd=AUTHORS[0],
                           capture_output=True,
                           env=dict(os.environ, WANDB_MODE="offline", WANDB_DIR=tmp, WANDB_SILENT="true"))
    else:
        subprocess.run([sys.executable, "-c", code], check=True,
                       env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1])))
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def process():
    out = {}
    todo = dict(PROCESS, **({"authors_main": "authors"} if all(AUTHORS) else {}))
    for name, code in todo.items():
        runs = [_process(code) for _ in range(3)]
        out[name] = {"wall_s": [round(w, 3) for w, _ in runs], "cpu_s": [round(c, 3) for _, c in runs],
                     "median_wall_s": round(float(np.median([w for w, _ in runs])), 3)}
        print(name, out[name], flush=True)
    out["ratio_median_wall_exact_over_gram"] = round(out["exact_train"]["median_wall_s"]
                                                      / out["gram_sample_runs"]["median_wall_s"], 2)
    if "authors_main" in out:
        for name in ("gram_sample_runs", "exact_train"):
            out[f"ratio_median_wall_authors_over_{name}"] = round(out["authors_main"]["median_wall_s"]
                                                                 / out[name]["median_wall_s"], 1)
            out[f"ratio_median_cpu_authors_over_{name}"] = round(
                float(np.median(out["authors_main"]["cpu_s"]) / np.median(out[name]["cpu_s"])), 1)
    return {"whole_process": out}


def _save(part):
    result = json.loads(OUT.read_text()) if OUT.exists() else {}
    result.update(part)
    OUT.write_text(json.dumps(result, indent=1) + "\n")


def main(parts):
    result = json.loads(OUT.read_text()) if OUT.exists() else {}
    result.update(cores=os.cpu_count(), device="cpu", machine=platform.machine(), python=platform.python_version(),
                  numpy=np.__version__, load_average_at_start=[round(x, 2) for x in os.getloadavg()],
                  note="shared 2-core machine: other jobs ran at the same time, so times are upper bounds")
    for part in parts:
        t = time.perf_counter()
        result.update(globals()[part]())
        result.setdefault("part_wall_s", {})[part] = round(time.perf_counter() - t, 1)
        result["load_average_at_end_of_" + part] = [round(x, 2) for x in os.getloadavg()]
        OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:] or ["dims", "process", "init", "floor", "grid"])
