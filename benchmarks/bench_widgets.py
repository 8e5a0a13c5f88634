"""Live explorer update latency at default settings (design target: <= 0.2 s per update).

Drives the live explorers the way a reader does and reports, per kind of update, the median wall
time over several updates and the process CPU time (a load-independent proxy on a shared machine):

* regime explorer, ||mu|| slider: re-runs only the low-dimensional loop (the noise draw and the
  projection are cached by ``train_cell``), then updates the explorer's one figure in place and
  encodes a PNG at ``widgets.LIVE_PIXEL_RATIO``; split into engine and figure time (the explorer
  records both for every update). The same updates are also timed with 2x frames.
* regime explorer, seed slider: a new data set (draw, QR projection, loop).
* token-selection movie, time slider: re-draw only.
* phase explorer: step slider (re-draw only), eta and n sliders (the grid re-runs, with a progress
  bar per value of d), on the gram sampler (the live default) and, side by side, on the exact engine
  (``*_exact``: eta re-runs only the loops, draws and projections cached; n re-runs everything).

``wall_s`` is the median, ``wall_min_s`` the fastest update (closest to an unloaded machine when
other processes share the cores; compare ``load_average_*`` with ``cores``).

Writes ``benchmarks/results/widgets_<cores>core.json`` (with the core count and load average) and
prints it. A benchmark, not a timed test: ``python benchmarks/bench_widgets.py`` (``make bench``).
"""
from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import torch  # noqa: E402

from benign_attention import widgets  # noqa: E402

REPEATS = int(os.environ.get("BENCH_REPEATS", "7"))
RESULTS = Path(__file__).resolve().parent / "results"


def timed(set_value):
    """(wall seconds, process CPU seconds) of one slider move."""
    t, c = time.perf_counter(), time.process_time()
    set_value()
    return time.perf_counter() - t, time.process_time() - c


def drive(explorer, control, values):
    """Move ``control`` through ``values``; medians of wall, CPU, and the explorer's own engine
    (compute) and figure (draw + PNG) times of those updates."""
    explorer.timings.clear()
    runs = [timed(lambda v=v: setattr(explorer.controls[control], "value", v)) for v in values]
    med = statistics.median
    out = dict(updates=len(runs), wall_s=med(r[0] for r in runs), wall_min_s=min(r[0] for r in runs),
               cpu_s=med(r[1] for r in runs))
    if explorer.timings:
        out.update(engine_s=med(t[0] for t in explorer.timings), figure_s=med(t[1] for t in explorer.timings))
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def main():
    out = dict(cores=os.cpu_count(), torch_threads=torch.get_num_threads(),
               load_average_start=round(os.getloadavg()[0], 2), live_pixel_ratio=widgets.LIVE_PIXEL_RATIO,
               target_s=0.2)
    ex = widgets.regime_explorer()  # defaults: widgets.REGIME_DEFAULTS (paper's setting, n_test=200)
    mus = [15.0, 25.0, 20.0, 30.0, 18.0, 22.0, 20.0, 12.0, 40.0][:REPEATS]
    out["regime_mu_slider"] = drive(ex, "signal_norm", mus)
    ex.pixel_ratio = 2
    out["regime_mu_slider_2x_frames"] = drive(ex, "signal_norm", [16.0, 24.0, 19.0, 28.0, 17.0, 23.0, 21.0][:REPEATS])
    ex.pixel_ratio = widgets.LIVE_PIXEL_RATIO
    out["regime_seed_slider"] = drive(ex, "seed", list(range(1, 1 + min(REPEATS, 4))))
    mv = widgets.selection_explorer()
    frames = list(widgets.SELECTION_DEFAULTS["frames"])
    out["movie_time_slider"] = drive(mv, "frame", (frames[:-1] + frames[::-1])[:REPEATS])
    ph = widgets.phase_explorer()
    steps = list(widgets.PHASE_DEFAULTS["frames"])
    out["phase_step_slider"] = drive(ph, "step", steps[:-1][:REPEATS])
    out["phase_eta_slider"] = drive(ph, "eta", [0.25, 0.3, 0.35])
    out["phase_n_slider"] = drive(ph, "n", [22, 24, 26])
    ex_ph = widgets.phase_explorer(engine="exact")  # side by side: the same sliders on the exact engine
    out["phase_eta_slider_exact"] = drive(ex_ph, "eta", [0.25, 0.3, 0.35])
    out["phase_n_slider_exact"] = drive(ex_ph, "n", [22, 24, 26])
    out["load_average_end"] = round(os.getloadavg()[0], 2)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"widgets_{out['cores']}core.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
