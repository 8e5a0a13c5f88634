"""Data invariants of the paper's distribution and of data sets built from arrays."""
import math

import numpy as np
import pytest

from benign_attention.data import Dataset, init_W, make_dataset


@pytest.fixture(scope="module")
def ds():
    return make_dataset(n=20, T=8, d=300, rho=0.3, signal_norm=7.0, eta=0.2, n_test=200, seed=3)


def test_shapes_and_token_structure(ds):
    assert ds.X.shape == (20, 8, 300) and ds.X_test.shape == (200, 8, 300)
    eps = ds.X.copy()
    pos = ds.y_clean > 0
    mu = np.where(pos[:, None], ds.mu_pos, ds.mu_neg)
    other = np.where(pos[:, None], ds.mu_neg, ds.mu_pos)
    eps[:, 0] -= mu
    eps[:, 1] -= 0.3 * mu
    eps[:, 2] -= 0.3 * other
    # what is left is pure noise: mean 0, variance sigma^2 = 1, no signal left on e_1/e_2
    assert abs(eps.mean()) < 0.02 and abs(eps.var() - 1) < 0.02
    assert abs(eps[:, :, :2].mean()) < 0.2
    assert np.allclose(ds.mu_pos, 7.0 * np.eye(300)[0]) and np.allclose(ds.mu_neg, 7.0 * np.eye(300)[1])
    # head: nu . mu = +-1/sqrt(2)
    assert np.isclose(ds.nu @ ds.mu_pos, 1 / math.sqrt(2)) and np.isclose(ds.nu @ ds.mu_neg, -1 / math.sqrt(2))


@pytest.mark.parametrize("n,eta", [(20, 0.2), (20, 0.15), (21, 0.1), (40, 0.49), (10, 0.0), (7, 0.3)])
def test_balance_and_exact_flips(n, eta):
    ds = make_dataset(n=n, d=10, eta=eta, n_test=5, seed=1)
    assert (ds.y_clean > 0).sum() == math.ceil(n / 2)
    k = math.ceil(eta * n)
    assert ds.noisy.sum() == k
    flipped_pos = (ds.noisy & (ds.y_clean > 0)).sum()
    assert flipped_pos == math.ceil(k / 2) and (ds.noisy & (ds.y_clean < 0)).sum() == k // 2
    assert np.array_equal(ds.y, np.where(ds.noisy, -ds.y_clean, ds.y_clean))


def test_same_seed_identical_and_test_set_independent():
    a = make_dataset(d=50, n_test=30, seed=5)
    b = make_dataset(d=50, n_test=30, seed=5)
    for k in ("X", "y", "y_clean", "noisy", "X_test", "y_test"):
        assert np.array_equal(getattr(a, k), getattr(b, k))
    c = make_dataset(d=50, n_test=30, seed=6)
    assert not np.array_equal(a.X, c.X)
    # no test sequence equals (or correlates with) a training sequence (the official code's bug)
    assert not any(np.array_equal(x, t) for x in a.X for t in a.X_test)
    tr = a.X[:, 3:].reshape(a.n, -1)  # irrelevant tokens: pure noise
    te = a.X_test[:, 3:].reshape(a.n_test, -1)
    corr = (tr / np.linalg.norm(tr, axis=1, keepdims=True)) @ (te / np.linalg.norm(te, axis=1, keepdims=True)).T
    assert np.abs(corr).max() < 0.5
    # the test draw does not change when the training size changes
    d = make_dataset(n=30, d=50, n_test=30, seed=5)
    assert np.array_equal(a.X_test, d.X_test)


def test_noise_shared_across_signal_knobs():
    a = make_dataset(d=40, signal_norm=5, rho=0.1, eta=0.1, seed=2, n_test=10)
    b = make_dataset(d=40, signal_norm=50, rho=0.4, eta=0.3, seed=2, n_test=10)
    assert np.array_equal(a.X[:, 3:], b.X[:, 3:]) and np.array_equal(a.y_clean, b.y_clean)
    assert np.all(b.noisy[a.noisy])  # flips are nested in eta


def test_init_W():
    W = init_W(400, 0)
    assert W.shape == (400, 400) and np.abs(W).max() <= 1 / 20 and np.array_equal(W, init_W(400, 0))
    assert abs(W.var() - (1 / 20) ** 2 / 3) < 1e-4


@pytest.mark.parametrize("kw,msg", [
    (dict(eta=0.5), "eta"), (dict(eta=-0.1), "eta"), (dict(T=2), "T"), (dict(rho=-1), "rho"),
    (dict(d=1), "d"), (dict(n=1), "n"), (dict(n_test=0), "n_test"), (dict(signal_norm=0), "signal_norm"),
    (dict(signal_norm=float("nan")), "signal_norm"), (dict(sigma=float("inf")), "sigma"), (dict(seed=-1), "seed"),
    (dict(n=2.5), "n"), (dict(d="big"), "d"),
])
def test_bad_knobs_raise_naming_knob_and_range(kw, msg):
    with pytest.raises(ValueError) as e:
        make_dataset(**kw)
    text = str(e.value)
    assert text.startswith(msg + " ") and ("[" in text or "(" in text or ">=" in text)


def test_from_arrays_roundtrip_and_validation():
    ds = make_dataset(d=20, n_test=10, seed=0)
    own = Dataset.from_arrays(ds.X, ds.y, ds.mu_pos, ds.mu_neg, noisy=ds.noisy, X_test=ds.X_test, y_test=ds.y_test)
    assert np.array_equal(own.y_clean, ds.y_clean) and np.allclose(own.nu, ds.nu)
    bad = ds.X.copy()
    bad[0, 0, 0] = np.nan
    cases = [
        (dict(X=bad), "X must be finite"), (dict(X=ds.X[:, :2]), "T >= 3"), (dict(X=ds.X[0]), "X must be a 3-d"),
        (dict(y=ds.y[:-1]), "y must have shape"), (dict(y=ds.y * 2), "y must contain"),
        (dict(noisy=ds.noisy.astype(int)), "noisy must be a boolean"), (dict(mu_pos=ds.mu_pos[:-1]), "mu_pos must have shape"),
        (dict(X_test=ds.X_test[:, :, :5]), "X_test must have shape"), (dict(mu_neg=ds.mu_pos), "must differ"),
    ]
    base = dict(X=ds.X, y=ds.y, mu_pos=ds.mu_pos, mu_neg=ds.mu_neg, noisy=ds.noisy, X_test=ds.X_test, y_test=ds.y_test)
    for change, msg in cases:
        with pytest.raises(ValueError, match=msg):
            Dataset.from_arrays(**dict(base, **change))
