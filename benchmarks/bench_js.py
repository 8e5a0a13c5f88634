"""The JavaScript sampler engine (benign_attention/js/gram.js) in headless chromium: the time of one update.

An update is what a reader's knob change costs: ``sample`` (draw the run's low-dimensional quantities)
then ``run`` (1000 GD steps, train and test metrics every 10th step, 10^3 test sequences) at the default
setting (n=20, T=8, d=2000, m = 162). Parts:

* ``update``: the first (cold: the JIT has not compiled anything yet) and the median of the next runs,
  each with its own seed, split into sample and run, and the GD loop alone (no metrics);
* ``block``: the GD loop alone against the number of steps whose rank-one updates are folded at once
  (1 folds every step);
* ``d``: the update at d = 10^3 .. 10^5 (the live explorer's range; the cost does not grow with d).

The module is served from its folder on 127.0.0.1 and every other request is aborted. The machine is
shared: other jobs may run at the same time, so the times are upper bounds (the load average is saved).

Run: .venv/bin/python benchmarks/bench_js.py [--runs 7]
Writes benign_attention/results/benchmarks/js_2core.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from browser.harness import CHROMIUM, launch_chromium, serve  # noqa: E402

JS_DIR = ROOT / "benign_attention" / "js"
OUT = ROOT / "benign_attention" / "results" / "benchmarks" / "js_2core.json"
TARGET_S = 0.3

TIME_JS = """async ({cfg, seeds, opts}) => {
  const out = [];
  for (const seed of seeds) {
    const t0 = performance.now();
    const p = g.sample(cfg, seed);
    const t1 = performance.now();
    const r = g.run(p, opts);
    const t2 = performance.now();
    out.push({ sample_ms: t1 - t0, run_ms: t2 - t1, update_ms: t2 - t0, final_test_loss: r.test_loss ? r.test_loss.at(-1) : null });
    await new Promise((ok) => setTimeout(ok, 0));  // let the page breathe between runs
  }
  return out;
}"""

GD_JS = """async ({cfg, seed, runs, block}) => {
  const p = g.sample(cfg, seed), ms = [];
  for (let k = 0; k < runs; k++) {
    const t0 = performance.now();
    g.run(p, { test: false, recordSteps: [], block });
    ms.push(performance.now() - t0);
    await new Promise((ok) => setTimeout(ok, 0));
  }
  return ms;
}"""


def _median(rows, key):
    return round(statistics.median(r[key] for r in rows), 1)


def main(runs=7):
    load_start = os.getloadavg()
    blocked = []
    with serve(JS_DIR) as origin, launch_chromium() as browser:
        page = browser.new_page()
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(origin + "/")
                   else (blocked.append(route.request.url), route.abort()))
        page.goto(origin + "/")
        page.evaluate("async () => { window.g = await import('/gram.js'); }")
        facts = page.evaluate("() => ({ cores: navigator.hardwareConcurrency, agent: navigator.userAgent })")
        default = {}
        rows = page.evaluate(TIME_JS, dict(cfg={}, seeds=list(range(runs + 1)), opts={}))
        warm = rows[1:]
        update = {
            "setting": "n=20, T=8, d=2000, n_test=1000, 1000 steps, metrics every 10th step (101 records), m=162",
            "cold_ms": {k: round(rows[0][k], 1) for k in ("sample_ms", "run_ms", "update_ms")},
            "runs": len(warm),
            "median_sample_ms": _median(warm, "sample_ms"),
            "median_run_ms": _median(warm, "run_ms"),
            "median_update_ms": _median(warm, "update_ms"),
            "update_ms": [round(r["update_ms"], 1) for r in warm],
        }
        gd = page.evaluate(GD_JS, dict(cfg={}, seed=0, runs=runs, block=16))
        update["median_gd_only_ms"] = round(statistics.median(gd), 1)
        update["meets_target"] = update["median_update_ms"] / 1000 <= TARGET_S
        print("update", json.dumps(update), flush=True)
        block = {}
        for b in (1, 4, 8, 16, 32, 64):
            block[str(b)] = round(statistics.median(page.evaluate(GD_JS, dict(cfg={}, seed=0, runs=max(3, runs // 2),
                                                                              block=b))), 1)
        print("block", block, flush=True)
        dims = {}
        for d in (1000, 10000, 100000):
            r = page.evaluate(TIME_JS, dict(cfg={"d": d}, seeds=list(range(100, 100 + max(3, runs // 2))), opts={}))
            dims[str(d)] = {"median_update_ms": _median(r, "update_ms"), "median_sample_ms": _median(r, "sample_ms")}
        print("d", dims, flush=True)
        version = browser.version
    assert not blocked, f"requests left the machine: {blocked}"
    result = {
        "what": "JS sampler engine (benign_attention/js/gram.js) in headless chromium: one update = sample + run",
        "target_s_per_update": TARGET_S,
        "cores": os.cpu_count(),
        "navigator_hardware_concurrency": facts["cores"],
        "chromium": version,
        "user_agent": facts["agent"],
        "machine": platform.machine(),
        "cpu": _cpu_name(),
        "load_average_at_start": [round(x, 2) for x in load_start],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "note": "shared 2-core machine: other jobs ran at the same time, so times are upper bounds",
        "update": update,
        "gd_only_ms_by_block": block,
        "update_by_d": dims,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return result


def _cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=7, help="timed runs after the cold one (default 7)")
    main(ap.parse_args().runs)
