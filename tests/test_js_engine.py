"""The sampler engine's JavaScript port (``benign_attention/js/gram.js``) against the Python core.

* **Same numbers.** Sampled runs exported by :func:`benign_attention.gram.export_scenario` (the
  low-dimensional inputs and the Python core's metrics) are run by the JS core in headless chromium:
  train and test metrics and attention agree to 1e-10, in every regime and with d < nT.
* **Same law.** The JS sampler (its own generator) and the Python sampler over 200 seeds each: the
  means of test loss, attention on x3 of noisy sequences and four more metrics agree within three
  combined standard errors; two-sample KS p-values are reported. Fixed seeds: deterministic.
* The generator's and the sampler's moments, determinism, common random numbers, argument errors.

The module is served from its folder on 127.0.0.1; every other request is aborted and fails the test.
Run with ``-s`` to see the tables. The browser tests are marked ``browser`` (``make test-browser``).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from benign_attention import analysis, gram
from benign_attention.theory import classify_regime

try:  # tests/ on sys.path (pytest's rootdir insertion) or the repository root
    from browser.harness import CHROMIUM, launch_chromium, serve
except ImportError:  # pragma: no cover
    from tests.browser.harness import CHROMIUM, launch_chromium, serve

ROOT = Path(__file__).resolve().parents[1]
JS_DIR = ROOT / "benign_attention" / "js"

#: name -> (config, steps, record_every). Small n, T (the paper's n = 20, T = 8 at d = 2000 once), seeds whose
#: run ends in the regime it is named after (test_scenarios_cover_the_regimes); eta = 0 checks the path
#: without noisy sequences.
SCENARIOS = {
    "benign": (dict(n=10, T=5, d=400, signal_norm=40.0, n_test=60, seed=0), 1000, 50),
    "harmful": (dict(n=10, T=5, d=150, signal_norm=2.0, n_test=60, seed=0), 1000, 50),
    "not overfitting": (dict(n=10, T=5, d=150, signal_norm=36.0, n_test=60, seed=0), 1000, 50),
    "d < nT": (dict(n=10, T=5, d=40, signal_norm=12.0, n_test=60, seed=5), 400, 20),
    "paper n=20 T=8 d=2000": (dict(n=20, T=8, d=2000, signal_norm=20.0, n_test=100, seed=1), 1000, 50),
    "eta = 0": (dict(n=10, T=5, d=150, signal_norm=12.0, eta=0.0, n_test=60, seed=4), 300, 30),
}
TOL = 1e-10


def _scenario(name):
    cfg, steps, every = SCENARIOS[name]
    rec = gram.record_steps_of(steps, every)
    prob, = gram.sample_problems([cfg], test_record=len(rec))
    return gram.export_scenario(prob, steps, record_steps=rec)


def _nan(x):
    """Nested lists with None (JSON's NaN) as a float array."""
    return np.array(x, dtype=float)


# ------------------------------------------------------------------ export (no browser)


def test_export_scenario_is_strict_json_with_the_python_results():
    cfg = dict(n=6, T=4, d=60, n_test=20, seed=2)
    prob, = gram.sample_problems([cfg], test_record=3)
    sc = gram.export_scenario(prob, steps=40, record_steps=[0, 20, 40])
    back = json.loads(json.dumps(sc, allow_nan=False))
    n, T, m, N = back["n"], back["T"], back["m"], back["n_test"]
    assert (n, T, N) == (6, 4, 20) and m == prob.m == 2 + n * T
    shapes = {"C": (n * T, m), "G": (m, m), "Omega": (m, m), "z": (n, T), "y": (n,), "y_clean": (n,),
              "noisy": (n,), "nu_B": (m,), "test_coef": (N, T, 2), "dirs_B": (2, m), "test_xi": (N, T, 4),
              "test_y": (N,)}
    for k, shape in shapes.items():
        assert np.shape(back[k]) == shape, k
    assert back["record_steps"] == [0, 20, 40] and back["steps"] == 40 and back["lr"] == gram.LR
    assert back["joint"] is False and back["config"]["d"] == 60
    (hist,), _ = gram.run_problems([prob], 40, gram.LR, [0, 20, 40], per_sample=False, joint=False)
    assert set(back["expected"]) == set(hist)
    for k, v in hist.items():
        np.testing.assert_array_equal(_nan(back["expected"][k]), v, err_msg=k)


def test_export_scenario_nan_is_null_and_errors_are_named():
    prob, = gram.sample_problems([dict(n=4, T=3, d=30, n_test=5, eta=0.0, seed=1)], test_record=2)
    sc = gram.export_scenario(prob, steps=10, record_steps=[0, 10])
    assert sc["expected"]["attn_noisy"] == [[None] * 4] * 2  # no noisy sequence
    json.dumps(sc, allow_nan=False)
    with pytest.raises(ValueError, match="test_record >= 3"):
        gram.export_scenario(prob, steps=10, record_steps=[0, 5, 10])
    with pytest.raises(TypeError, match="GramProblem"):
        gram.export_scenario({"C": 1}, steps=10)
    from benign_attention import make_dataset
    from benign_attention.data import init_W

    ds = make_dataset(n=4, T=3, d=20, n_test=5, seed=0)
    explicit = gram.from_arrays(ds.X, ds.y, ds.y_clean, ds.noisy, ds.nu, init_W(20, 0, init="gaussian"),
                                ds.X_test, ds.y_test)
    with pytest.raises(ValueError, match="law form"):
        gram.export_scenario(explicit, steps=10)
    with pytest.raises(ValueError, match="lr"):
        gram.export_scenario(prob, steps=10, lr=0.0, record_steps=[0, 10])


def test_module_ships_and_reaches_the_book():
    """Package data (pyproject) and a static path of the book build (book/_ext/bookfixes.py)."""
    import fnmatch
    import sys
    import tomllib
    import types

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "benign_attention"]
    assert any(fnmatch.fnmatch("js/gram.js", p) for p in patterns), patterns
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    try:
        bookfixes = pytest.importorskip("bookfixes")
    finally:
        sys.path.remove(str(ROOT / "book" / "_ext"))
    config = types.SimpleNamespace(html_static_path=[])
    bookfixes._add_static_path(None, config)
    assert str(JS_DIR) in config.html_static_path and (JS_DIR / "gram.js").is_file()


# ------------------------------------------------------------------ the browser


@pytest.fixture(scope="module")
def js():
    """A chromium page with the module imported as ``window.g``; ``js(expression_fn, arg)`` evaluates."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: apt-get install -y chromium")
    blocked, errors = [], []
    with serve(JS_DIR) as origin, launch_chromium() as browser:
        page = browser.new_page()
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(origin + "/")
                   else (blocked.append(route.request.url), route.abort()))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(origin + "/")
        page.evaluate("async () => { window.g = await import('/gram.js'); }")
        yield page.evaluate
        assert not blocked, f"requests left the machine: {blocked}"
        assert not errors, f"console errors: {errors}"


RUN_JS = """(sc) => {
  const res = g.run(g.problemFromJSON(sc), { steps: sc.steps, lr: sc.lr, recordSteps: sc.record_steps });
  const plain = (v) => (Array.isArray(v) ? v.map((x) => (typeof x === "number" ? x : Array.from(x))) : Array.from(v));
  return Object.fromEntries(Object.entries(res).map(([k, v]) => [k, plain(v)]));
}"""


@pytest.fixture(scope="module")
def same_numbers(js):
    """name -> (max |JS - Python| per metric, the Python regime at the last step)."""
    table = {}
    for name in SCENARIOS:
        sc = _scenario(name)
        got = js(RUN_JS, sc)
        assert got["steps"] == sc["record_steps"]
        diffs = {}
        for k, want in sc["expected"].items():
            a, b = _nan(want), np.asarray(got[k], dtype=float)
            assert a.shape == b.shape, k
            assert np.array_equal(np.isnan(a), np.isnan(b)), f"{name}/{k}: NaN in other places"
            diffs[k] = float(np.nanmax(np.abs(a - b))) if np.isfinite(a).any() else 0.0
        e = sc["expected"]
        regime = classify_regime(e["train_acc"][-1], test_loss=e["test_loss"][-1])
        table[name] = (diffs, regime, sc["m"])
    print("\nJS core vs Python core: max |difference| over the recorded steps")
    for name, (diffs, regime, m) in table.items():
        print(f"{name:24s} m={m:3d} {regime:16s} " + "  ".join(f"{k}={v:.1e}" for k, v in diffs.items()))
    return table


@pytest.mark.browser
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_same_numbers_as_python(same_numbers, name):
    diffs, _, _ = same_numbers[name]
    bad = {k: v for k, v in diffs.items() if not v <= TOL}
    assert not bad, f"{name}: JS differs from Python by more than {TOL}: {bad}"


@pytest.mark.browser
def test_scenarios_cover_the_regimes(same_numbers):
    regimes = {name: r for name, (_, r, _) in same_numbers.items()}
    for name in ("benign", "harmful", "not overfitting"):
        assert regimes[name] == name, regimes
    assert regimes["paper n=20 T=8 d=2000"] == "benign", regimes
    assert SCENARIOS["d < nT"][0]["d"] < 10 * 5 and same_numbers["d < nT"][2] == 40  # m = d: the whole space


LAW_SEEDS = 200
LAW_STEPS, LAW_REC = 1000, [100, 1000]
#: The scenarios' settings (n = 10, T = 5): mostly benign, mostly harmful, and d < nT. Python's sample_runs draws
#: the two recorded steps' test scores jointly (joint=None with E = 2), the JS core each step with its own
#: normals: the same law at each step, which is all the compared metrics need.
LAW_SETTINGS = {"benign": dict(n=10, T=5, d=400, signal_norm=40.0, eta=0.2, n_test=60),
                "harmful": dict(n=10, T=5, d=150, signal_norm=2.0, eta=0.2, n_test=60),
                "d < nT": dict(n=10, T=5, d=40, signal_norm=12.0, eta=0.2, n_test=60)}
LAW_METRICS = ("test_loss", "attn_x3_noisy", "test_acc", "train_loss@100", "train_loss@1000", "attn_x1_clean")

LAW_JS = """({cfg, seeds, steps, rec}) => {
  const out = [];
  for (const seed of seeds) {
    const r = g.run(g.sample(cfg, seed, { testRecord: rec.length }), { steps, recordSteps: rec });
    out.push([r.test_loss[1], r.attn_noisy[1][2], r.test_acc[1], r.train_loss[0], r.train_loss[1], r.attn_clean[1][0]]);
  }
  return out;
}"""


@pytest.fixture(scope="module")
def same_law(js):
    """setting -> metric -> (Python mean, JS mean, combined standard error, KS p-value)."""
    table = {}
    for name, cfg in LAW_SETTINGS.items():
        sr = gram.sample_runs(seeds=range(LAW_SEEDS), steps=LAW_STEPS, record_steps=LAW_REC, **cfg)
        h = sr.history
        py = np.stack([h["test_loss"][:, 1], h["attn_noisy"][:, 1, 2], h["test_acc"][:, 1], h["train_loss"][:, 0],
                       h["train_loss"][:, 1], h["attn_clean"][:, 1, 0]], 1)
        jsv = np.asarray(js(LAW_JS, dict(cfg=cfg, seeds=list(range(10**6, 10**6 + LAW_SEEDS)), steps=LAW_STEPS,
                                         rec=LAW_REC)))
        assert jsv.shape == py.shape and np.isfinite(jsv).all()
        row = {}
        for j, k in enumerate(LAW_METRICS):
            se = math.sqrt(py[:, j].var(ddof=1) / len(py) + jsv[:, j].var(ddof=1) / len(jsv))
            row[k] = (float(py[:, j].mean()), float(jsv[:, j].mean()), se, analysis.ks_two_sample(py[:, j], jsv[:, j])[1])
        table[name] = row
    print(f"\nSame law, {LAW_SEEDS} seeds each: Python sampler mean / JS sampler mean (combined s.e.; KS p)")
    for name, row in table.items():
        print(f"{name:8s} " + "  ".join(f"{k}={a:.4f}/{b:.4f} ({se:.4f}; p={p:.2f})" for k, (a, b, se, p) in row.items()))
    return table


@pytest.mark.browser
@pytest.mark.parametrize("setting", list(LAW_SETTINGS))
def test_same_law_as_python_sampler(same_law, setting):
    for k, (a, b, se, p) in same_law[setting].items():
        assert abs(a - b) <= 3 * se, f"{setting}/{k}: means {a:.4f} (Python) vs {b:.4f} (JS), s.e. {se:.4f}"
        assert p > 1e-3, f"{setting}/{k}: KS p = {p:.2g}"


@pytest.mark.browser
def test_generator_moments(js):
    """Uniforms, normals, gamma and chi-square variates of the xoshiro128** generator: mean and variance
    within 5 standard errors over 2e5 draws (fixed keys: deterministic)."""
    res = js("""() => {
      const r = new g.Rng(7, 1, 2), K = 200000;
      const moments = (f) => { let s = 0, s2 = 0; for (let i = 0; i < K; i++) { const x = f(); s += x; s2 += x * x; }
        const mean = s / K; return [mean, s2 / K - mean * mean]; };
      return { uniform: moments(() => r.uniform()), normal: moments(() => r.normal()),
               gamma03: moments(() => r.gamma(0.3)), gamma1: moments(() => r.gamma(1)), gamma7: moments(() => r.gamma(7.5)),
               chisq3: moments(() => r.chisquare(3)), chisq1998: moments(() => r.chisquare(1998)),
               same: [new g.Rng(5, 2000, 1).uniform(), new g.Rng(5, 2000, 1).uniform(), new g.Rng(5, 2000, 2).uniform(),
                      new g.Rng(2 ** 40 + 5, 2000, 1).uniform()] };
    }""")
    K = 200000
    expect = {"uniform": (0.5, 1 / 12, 1 / 80), "normal": (0.0, 1.0, 2.0), "gamma03": (0.3, 0.3, 6 * 0.3 + 2 * 0.09),
              "gamma1": (1.0, 1.0, 8.0), "gamma7": (7.5, 7.5, 6 * 7.5 + 2 * 56.25),
              "chisq3": (3.0, 6.0, 48 + 72), "chisq1998": (1998.0, 3996.0, 48 * 1998 + 2 * 3996**2)}
    for k, (mean, var, var_of_sq) in expect.items():
        got_mean, got_var = res[k]
        assert abs(got_mean - mean) <= 5 * math.sqrt(var / K), (k, got_mean, mean)
        assert abs(got_var - var) <= 5 * math.sqrt(var_of_sq / K) + 1e-12, (k, got_var, var)
    a, b, c, d = res["same"]
    assert a == b and a != c and a != d


@pytest.mark.browser
def test_normals_have_the_normal_law(js):
    """The ziggurat's normals against numpy's: two-sample KS over 10^5 each, the fourth moment and the
    tail beyond the ziggurat's base layer (R = 3.4426), where its slow branches act."""
    z = np.asarray(js("() => Array.from(new g.Rng(11).fillNormal(new Float64Array(100000)))"))
    ref = np.random.default_rng(11).standard_normal(z.size)
    _, p = analysis.ks_two_sample(z, ref)
    assert p > 1e-3, p
    assert abs((z**4).mean() - 3.0) < 5 * math.sqrt(96 / z.size)
    tail = 2 * 0.5 * math.erfc(3.442619855899 / math.sqrt(2))  # P(|Z| > R)
    assert abs((np.abs(z) > 3.442619855899).mean() - tail) < 5 * math.sqrt(tail / z.size)


@pytest.mark.browser
def test_sampler_moments_determinism_and_common_random_numbers(js):
    res = js("""() => {
      const r = new g.Rng(3, 0, 0), m = 4, K = 4000, dof = 30, s = 0.5;
      const meanW = new Float64Array(m * m);
      for (let k = 0; k < K; k++) {
        const { L } = g.wishartFactor(r, m, dof, s);
        for (let i = 0; i < m; i++) for (let j = 0; j < m; j++) {
          let x = 0; for (let l = 0; l < m; l++) x += L[i * m + l] * L[j * m + l];
          meanW[i * m + j] += x / K;
        }
      }
      const N = 6, d = 9, sig = 2, meanX = new Float64Array(N * N);
      for (let k = 0; k < K; k++) {
        const { coords, m: w } = g.tokenCoordinates(r, N, d, sig);
        for (let i = 0; i < N; i++) for (let j = 0; j < N; j++) {
          let x = 0; for (let l = 0; l < w; l++) x += coords[i * w + l] * coords[j * w + l];
          meanX[i * N + j] += x / K;
        }
      }
      const cfg = { n: 6, T: 4, d: 50, n_test: 10 };
      const a = g.sample(cfg, 9), b = g.sample(cfg, 9), c = g.sample({ ...cfg, signal_norm: 5, eta: 0.4, rho: 0.3 }, 9);
      const same = (u, v) => u.length === v.length && u.every((x, i) => x === v[i]);
      const flips = (p) => Array.from(p.noisy).reduce((s, x) => s + x, 0);
      return { meanW: Array.from(meanW), meanX: Array.from(meanX), m: a.m,
               deterministic: same(a.C, b.C) && same(a.G, b.G) && same(a.Omega, b.Omega) && same(a.testXi, b.testXi),
               sharedNoise: same(a.G, c.G) && same(a.Omega, c.Omega) && same(a.testXi, c.testXi) && same(a.yClean, c.yClean)
                 && same(Array.from(a.C).filter((_, i) => i % a.m >= 2), Array.from(c.C).filter((_, i) => i % c.m >= 2)),
               flips: [flips(a), flips(c)], otherSeed: same(a.C, g.sample(cfg, 10).C),
               cached: (() => { const cache = new Map(), x = g.sample({ ...cfg, signal_norm: 5 }, 9, { cache }), y = g.sample(cfg, 9, { cache });
                 return cache.size === 1 && x.G === y.G && same(y.C, a.C) && same(y.testXi, a.testXi) && same(y.y, a.y); })(),
               dSmall: g.sample({ n: 4, T: 3, d: 8, n_test: 2 }, 0).m, omegaZero: Array.from(g.sample({ n: 4, T: 3, d: 8, n_test: 2 }, 0).Omega).every((x) => x === 0) };
    }""")
    np.testing.assert_allclose(np.reshape(res["meanW"], (4, 4)), 30 * 0.25 * np.eye(4), atol=0.12)  # E W = dof s^2 I
    np.testing.assert_allclose(np.reshape(res["meanX"], (6, 6)), 9 * 4.0 * np.eye(6), atol=0.6)   # E x.x' = d sigma^2
    assert res["m"] == 2 + 24 and res["deterministic"] and res["sharedNoise"] and not res["otherSeed"]
    assert res["cached"]  # a cached noise draw gives the uncached problem
    assert res["flips"] == [math.ceil(0.2 * 6), math.ceil(0.4 * 6)]
    assert res["dSmall"] == 8 and res["omegaZero"]  # d <= nT + 2: m = d and Omega = 0


@pytest.mark.browser
def test_folding_block_changes_only_round_off(js):
    """Folding the rank-one updates every 1, 3, 16 or 1000 steps gives the same run (odd m = 9 included)."""
    diffs = js("""() => {
      const out = [];
      for (const [cfg, steps] of [[{ n: 4, T: 3, d: 9, n_test: 20 }, 200], [{ n: 6, T: 4, d: 300, n_test: 20 }, 200]]) {
        const p = g.sample(cfg, 3), runs = [1, 3, 16, 1000].map((block) => g.run(p, { steps, block }));
        let mx = 0;
        for (const r of runs) for (const k of ["train_loss", "test_loss", "test_margin"]) r[k].forEach((x, e) => { mx = Math.max(mx, Math.abs(x - runs[0][k][e])); });
        out.push([p.m, mx]);
      }
      return out;
    }""")
    assert [m for m, _ in diffs] == [9, 26]
    assert all(d <= 1e-12 for _, d in diffs), diffs


@pytest.mark.browser
def test_bad_arguments_are_named(js):
    msgs = js("""() => {
      const p = g.sample({ n: 4, T: 3, d: 20, n_test: 3 }, 0, { testRecord: 2 });
      const tries = [() => g.run(p, { steps: -1 }), () => g.run(p, { lr: 0 }), () => g.run(p, { steps: 10, recordSteps: [0, 11] }),
        () => g.run(p, { steps: 10, recordSteps: [0, 5, 10] }), () => g.sample({ eta: 0.5 }), () => g.sample({ n: 1.5 }),
        () => g.sample({}, -1), () => g.run({ ...p, G: new Float64Array(p.m * p.m), L: undefined }, { steps: 1 })];
      return tries.map((f) => { try { f(); return "no error"; } catch (e) { return `${e.name}: ${e.message}`; } });
    }""")
    for msg, word in zip(msgs, ["steps", "lr", "record steps", "test normals", "eta", "n must", "seed", "positive definite"]):
        assert msg.startswith("RangeError") and word in msg, (word, msg)
