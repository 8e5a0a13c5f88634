"""The gram engine (benign_attention.gram): same numbers as the exact engine on explicit arrays, and the
same law when its sampler replaces the arrays (two-sample KS tests with fixed seeds, so deterministic).

Run with ``-s`` to see the KS p-value table. Sizes are reduced (d <= 150, n = 10, T = 5) to keep the file
well under a minute; the book's chapter ``07c_gram_sampler`` runs the comparison at the paper's d.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from benign_attention import analysis, gram, make_dataset, train, train_many
from benign_attention.data import init_W
from benign_attention.engines import torch_threads

# ------------------------------------------------------------------ same numbers


@pytest.mark.parametrize("d, signal_norm", [(120, 20.0), (120, 5.0), (30, 20.0)])  # d = 30 < nT = 50
def test_same_numbers_as_exact(d, signal_norm):
    ds = make_dataset(n=10, T=5, d=d, signal_norm=signal_norm, n_test=60, seed=4)
    W0 = init_W(d, 11, init="gaussian")
    a = train(ds, steps=400, W0=W0, engine="exact")
    b = train(ds, steps=400, W0=W0, engine="gram")
    assert set(a.history) == set(b.history)
    for k in a.history:
        np.testing.assert_allclose(b.history[k], a.history[k], rtol=0, atol=1e-12, err_msg=k)


def test_train_many_gram_equals_exact():
    dss = [make_dataset(n=6, T=4, d=50, n_test=20, seed=s) for s in range(3)]
    a = train_many(dss, steps=150, init="gaussian")
    b = train_many(dss, steps=150, init="gaussian", engine="gram")
    for ra, rb in zip(a, b):
        assert rb.config["engine"] == "gram"
        for k in ra.history:
            np.testing.assert_allclose(rb.history[k], ra.history[k], rtol=0, atol=1e-12, err_msg=k)


def test_query_norm_from_gram_quantities():
    """||q||^2 = ||v||^2 + alpha^T Omega alpha with Omega = K^T K - G^2 (the law's only extra input)."""
    from benign_attention.engines import exact_gd

    ds = make_dataset(n=6, T=4, d=80, n_test=5, seed=2)
    W0 = init_W(80, 3, init="gaussian")
    _, q, _ = exact_gd(ds, W0, 120)
    prob = gram.from_arrays(ds.X, ds.y, ds.y_clean, ds.noisy, ds.nu, W0)
    _, alpha_h, v_h, _ = gram.gram_gd(prob.C[None], prob.G[None], prob.z[None], prob.y[None], 120, 5e-3, [120])
    flat = ds.X.reshape(-1, 80)
    B = np.linalg.qr(flat.T)[0]
    K = W0 @ (W0.T @ B)
    Omega = K.T @ K - prob.G @ prob.G
    a, v = alpha_h[0, -1], v_h[0, -1]
    np.testing.assert_allclose(B.T @ q, v, atol=1e-12)
    np.testing.assert_allclose(q @ q, v @ v + a @ Omega @ a, rtol=1e-10)


def test_wishart_and_tokens_have_the_right_moments():
    rng = np.random.default_rng(0)
    Gs = np.stack([gram.wishart(rng, 4, 30, 0.5)[0] for _ in range(4000)])
    np.testing.assert_allclose(Gs.mean(0), 30 * 0.25 * np.eye(4), atol=0.12)  # E W = dof s^2 I
    X = np.stack([gram.token_coordinates(rng, 6, 9, 2.0) for _ in range(4000)])
    gramians = X @ X.transpose(0, 2, 1)
    np.testing.assert_allclose(gramians.mean(0), 9 * 4.0 * np.eye(6), atol=0.6)  # E x_i.x_j = d sigma^2 delta


def test_ks_two_sample_matches_known_values():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(300), rng.standard_normal(200)
    D, p = analysis.ks_two_sample(a, b)
    both = np.sort(np.r_[a, b])
    ecdf = lambda s, x: np.searchsorted(np.sort(s), x, "right") / s.size
    assert D == pytest.approx(np.abs(ecdf(a, both) - ecdf(b, both)).max())
    assert 0.05 < p <= 1.0  # same law
    assert analysis.ks_two_sample(a, b + 0.5)[1] < 1e-6  # shifted
    try:
        from scipy.stats import ks_2samp  # an independent implementation, where installed
    except ImportError:
        return
    assert p == pytest.approx(ks_2samp(a, b, method="asymp").pvalue, abs=0.02)


def test_sampler_imports_no_torch():
    code = ("import sys, benign_attention.gram as g; r = g.sample_runs(seeds=[0], d=50, n=4, T=3, n_test=5, "
            "steps=5); assert 'torch' not in sys.modules, 'torch imported'; print(r.final('test_loss'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="init"):
        train(make_dataset(n=4, T=3, d=10, n_test=2), steps=1, init="normal")
    with pytest.raises(ValueError, match="resume"):
        ds = make_dataset(n=4, T=3, d=10, n_test=2)
        train(ds, steps=1, engine="gram", resume=train(ds, steps=1))
    with pytest.raises(ValueError, match="lr"):
        gram.sample_runs(seeds=[0], d=10, n=4, T=3, n_test=2, steps=1, lr=-1)


# ------------------------------------------------------------------ same law

SEEDS = 200
BASE = dict(n=10, T=5, n_test=60, eta=0.2)
STEPS, REC = 300, [100, 300]
#: SNR = ||mu|| / sqrt(d) about 1, 0.26 and 3 (the paper's benign, harmful and not-overfitting ordering),
#: and one setting whose d = 40 is below nT = 50 (the tokens span all of R^d)
SETTINGS = {"benign": dict(d=150, signal_norm=12.0), "harmful": dict(d=150, signal_norm=3.1),
            "not overfitting": dict(d=150, signal_norm=36.0), "d < nT": dict(d=40, signal_norm=12.0)}
METRICS = ("train_loss@100", "train_loss@300", "test_acc", "test_loss", "attn_x1_clean", "attn_x3_noisy")


def _metrics(get):
    return dict(zip(METRICS, (get("train_loss", 0), get("train_loss", 1), get("test_acc", 1), get("test_loss", 1),
                              get("attn_clean", 1)[..., 0], get("attn_noisy", 1)[..., 2])))


@pytest.fixture(scope="module")
def ks_table():
    table = {}
    for name, s in SETTINGS.items():
        cfg = dict(BASE, **s)
        with torch_threads(1):  # 200 small set-ups (QR, products): one thread avoids OpenMP spin-waits
            runs = train_many([make_dataset(seed=k, **cfg) for k in range(SEEDS)], steps=STEPS,
                              record_steps=REC, init="gaussian")
        ex = _metrics(lambda k, i: np.stack([r.history[k][i] for r in runs]))
        sr = gram.sample_runs(seeds=range(10**6, 10**6 + SEEDS), steps=STEPS, record_steps=REC, **cfg)
        sa = _metrics(lambda k, i: sr.history[k][:, i])
        table[name] = {k: (float(ex[k].mean()), float(sa[k].mean()), analysis.ks_two_sample(ex[k], sa[k])[1])
                       for k in METRICS}
    print("\nKS two-sample p-values, exact engine (Gaussian W0) vs sampler, 200 seeds each")
    for name, row in table.items():
        print(f"{name:16s}" + "  ".join(f"{k}={p:.3f}" for k, (_, _, p) in row.items()))
        print(f"{'  means':16s}" + "  ".join(f"{k}={a:.3f}/{b:.3f}" for k, (a, b, _) in row.items()))
    return table


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_same_law_as_exact_engine(ks_table, setting):
    for k, (mean_exact, mean_sampler, p) in ks_table[setting].items():
        assert p > 1e-3, f"{setting}/{k}: KS p = {p:.2g} (means {mean_exact:.4f} vs {mean_sampler:.4f})"


# ------------------------------------------------------------------ wiring into run_grid


def test_run_grid_gram_equals_sample_runs_and_caches_apart(tmp_path):
    from benign_attention import run_grid

    grid = {"signal_norm": [5.0, 20.0]}
    base = dict(n=6, T=4, d=3000, n_test=30, seed=2)
    res = run_grid(grid, base=base, steps=60, engine="gram", dtype="float64", cache_dir=tmp_path)
    ref = gram.sample_runs(configs=[dict(base, signal_norm=m) for m in grid["signal_norm"]], steps=60,
                           record_steps=[60])
    for k in ("train_loss", "test_loss", "test_acc", "attn_noisy"):
        np.testing.assert_array_equal(res.final(k), ref.final(k), err_msg=k)
    again = run_grid(grid, base=base, steps=60, engine="gram", dtype="float64", cache_dir=tmp_path)
    np.testing.assert_array_equal(again.final("test_loss"), res.final("test_loss"))
    exact = run_grid(grid, base=base, steps=60, dtype="float64", cache_dir=tmp_path)
    assert not np.array_equal(exact.final("test_loss"), res.final("test_loss")), "cached apart"
    with pytest.raises(ValueError, match="engine"):
        run_grid(grid, base=base, steps=1, engine="dense")
