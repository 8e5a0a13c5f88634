"""Live explorer update latency at default settings (design target: <= 0.3 s per update).

Drives the live regime explorer the way a reader does: moves the ||mu|| slider (re-runs only the
low-dimensional loop: the noise draw and projection are cached by ``train_cell``) and, separately,
the seed slider (a new data set: draw, QR projection, loop). Reports the median over several
updates, split into engine time and rendering time, with the core count and load. A benchmark, not
a timed test: run ``python benchmarks/bench_widgets.py`` (``make bench``).
"""
from __future__ import annotations

import os
import statistics
import time

import matplotlib

matplotlib.use("Agg")

import torch  # noqa: E402

from benign_attention import widgets  # noqa: E402
from benign_attention.sweeps import train_cell  # noqa: E402

REPEATS = int(os.environ.get("BENCH_REPEATS", "7"))


CPU = []  # process CPU seconds of each timed call (a load-independent proxy on a shared machine)


def timed(fn):
    t, c = time.perf_counter(), time.process_time()
    fn()
    CPU.append(time.process_time() - c)
    return time.perf_counter() - t


def cpu_median(k):
    """Median CPU seconds of the last k timed calls."""
    return statistics.median(CPU[-k:])


def main():
    print(f"cores: {os.cpu_count()} (torch threads {torch.get_num_threads()}), "
          f"load average {os.getloadavg()[0]:.1f}")
    ex = widgets.regime_explorer()  # defaults: widgets.REGIME_DEFAULTS (paper's setting, n_test=200)
    knobs = dict(widgets.REGIME_DEFAULTS)
    steps = knobs.pop("steps")
    mus = [15.0, 25.0, 20.0, 30.0, 18.0, 22.0, 20.0, 12.0, 40.0]
    slider = [timed(lambda v=v: setattr(ex.controls["signal_norm"], "value", v)) for v in mus[:REPEATS]]
    slider_cpu = cpu_median(len(slider))
    engine = [timed(lambda v=v: train_cell(steps=steps, record_every=steps // 50, **dict(knobs, signal_norm=v)))
              for v in mus[:REPEATS]]
    engine_cpu = cpu_median(len(engine))
    steps_, hist, regime, kn = widgets.regime_result()
    # the live path: a new figure drawn with the first update's axes positions (no layout pass)
    render = [timed(lambda: ex._render(widgets.regime_figure(steps_, hist, regime, kn)))
              for _ in range(REPEATS)]
    render_cpu = cpu_median(len(render))
    seeds = [timed(lambda s=s: setattr(ex.controls["seed"], "value", s)) for s in range(1, 1 + min(REPEATS, 4))]
    seeds_cpu = cpu_median(len(seeds))
    med = statistics.median
    print(f"regime explorer, ||mu|| slider (cached draw): median {med(slider):.3f} s per update "
          f"over {len(slider)} (engine {med(engine):.3f} s + figure {med(render):.3f} s); "
          f"process CPU {slider_cpu:.3f} s per update (engine {engine_cpu:.3f} s + figure {render_cpu:.3f} s)")
    print(f"regime explorer, seed slider (new data set): median {med(seeds):.3f} s per update over {len(seeds)}; "
          f"process CPU {seeds_cpu:.3f} s")
    mv = widgets.selection_explorer()
    frame = [timed(lambda f=f: setattr(mv.controls["frame"], "value", f)) for f in widgets.SELECTION_DEFAULTS["frames"][:REPEATS]]
    print(f"token-selection movie, time slider (re-draw only): median {med(frame):.3f} s per update; "
          f"process CPU {cpu_median(len(frame)):.3f} s")
    print("target: <= 0.3 s per update at default settings")


if __name__ == "__main__":
    main()
