"""The exact engine against dense autograd GD, hand-derived gradients, and robustness."""
import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings, strategies as st

from benign_attention import AttentionModel, make_dataset, train, train_many
from benign_attention.theory import analytic_gradients


def _query(run):
    W, p = run.params()
    return W @ p


def _max_logit_gap(ds, r1, r2):
    train_gap = np.abs(r1.history["train_logits"] - r2.history["train_logits"]).max()
    q1, q2 = _query(r1), _query(r2)
    test_gap = np.abs(ds.X_test @ q1 - ds.X_test @ q2).max()
    return train_gap, test_gap


def test_exact_equals_dense_default_setting_1000_steps():
    ds = make_dataset()  # n=20, T=8, d=2000, rho=0.1, ||mu||=20, eta=0.2
    ex = train(ds, steps=1000, engine="exact", record_every=50)
    de = train(ds, steps=1000, engine="dense", record_every=50)
    train_gap, test_gap = _max_logit_gap(ds, ex, de)
    assert train_gap <= 1e-8 and test_gap <= 1e-8, (train_gap, test_gap)
    # every recorded metric agrees, including the test set metrics computed from q = K alpha - B w
    for k in ex.history:
        assert np.allclose(ex.history[k], de.history[k], atol=1e-10, equal_nan=True), k
    assert np.abs(ex.history["train_logits"][-1]).max() > 1  # the run went somewhere


# Beyond the stable step size GD on tiny d turns chaotic and any two float implementations drift
# apart exponentially from round-off alone (seen: x100 every 10 steps), which is not what this tests.
@settings(max_examples=12, deadline=None)
@given(n=st.integers(2, 7), T=st.integers(3, 6), d=st.integers(2, 40), rho=st.floats(0, 1),
       signal_norm=st.floats(0.5, 30), eta=st.floats(0, 0.49), seed=st.integers(0, 10**6),
       lr=st.floats(1e-3, 0.05))
def test_exact_equals_dense_random_small_settings(n, T, d, rho, signal_norm, eta, seed, lr):
    # stay in the stable step-size range: lr * ||mu||^2 at most the paper's default 5e-3 * 20^2 = 2
    assume(lr * signal_norm**2 <= 2.0)
    ds = make_dataset(n=n, T=T, d=d, rho=rho, signal_norm=signal_norm, eta=eta, n_test=7, seed=seed)
    ex = train(ds, steps=150, lr=lr, engine="exact", record_every=30)
    de = train(ds, steps=150, lr=lr, engine="dense", record_every=30)
    scale = 1 + np.abs(de.history["train_logits"]).max()
    train_gap, test_gap = _max_logit_gap(ds, ex, de)
    assert train_gap <= 1e-8 * scale and test_gap <= 1e-8 * (1 + np.abs(ds.X_test @ _query(de)).max())


def test_hand_derived_gradients_equal_autograd():
    ds = make_dataset(n=6, T=5, d=25, eta=0.2, n_test=3, seed=4)
    rng = np.random.default_rng(0)
    W, p = rng.normal(size=(25, 25)) / 5, rng.normal(size=25)
    model = AttentionModel(ds.nu, W=W, p=p)
    out, _ = model(torch.tensor(ds.X))
    loss = torch.nn.functional.softplus(-torch.tensor(ds.y) * out).mean()
    loss.backward()
    gW, gp = analytic_gradients(ds, W, p)
    assert np.allclose(gW, model.W.grad.numpy(), atol=1e-13) and np.allclose(gp, model.p.grad.numpy(), atol=1e-13)
    assert np.linalg.matrix_rank(gW, tol=1e-10) == 1  # rank-one W update
    gW0, gp0 = analytic_gradients(ds, W, np.zeros(25))  # at p = 0 W gets no gradient
    assert np.abs(gW0).max() == 0 and np.abs(gp0).max() > 0


def test_model_matches_engine_scores_and_uniform_start():
    ds = make_dataset(n=4, d=30, n_test=5, seed=1)
    run = train(ds, steps=40, record_every=40)
    W, p = run.params()
    out, att = AttentionModel(ds.nu, W=W, p=p)(torch.tensor(ds.X))
    assert np.allclose(att.detach().numpy(), run.history["train_attention"][-1], atol=1e-12)
    assert np.allclose(out.detach().numpy(), run.history["train_outputs"][-1], atol=1e-12)
    assert np.allclose(run.history["train_attention"][0], 1 / ds.T)


def test_explicit_W0_and_resume():
    ds = make_dataset(n=6, d=20, n_test=5, seed=2)
    W0 = np.random.default_rng(1).normal(size=(20, 20)) * 0.3
    for engine in ("exact", "dense"):
        full = train(ds, steps=60, W0=W0, engine=engine, record_every=20)
        half = train(ds, steps=30, W0=W0, engine=engine, record_every=30)
        rest = train(ds, steps=30, resume=half, record_every=15)
        assert list(rest.steps) == [30, 45, 60]
        assert np.allclose(rest.history["train_logits"][-1], full.history["train_logits"][-1], atol=1e-10)
        assert np.allclose(rest.final("test_loss"), full.final("test_loss"), atol=1e-12)
    other = train(ds, steps=60, record_every=20)
    assert not np.allclose(other.final("train_logits"), full.final("train_logits"))


def test_train_many_equals_single_runs():
    dss = [make_dataset(n=6, d=30, n_test=9, seed=s, signal_norm=5 + s) for s in range(3)]
    many = train_many(dss, steps=80, record_every=40, progress=False)
    for ds, r in zip(dss, many):
        single = train(ds, steps=80, record_every=40)
        for k in r.history:
            assert np.allclose(r.history[k], single.history[k], atol=1e-12, equal_nan=True), k


@pytest.mark.parametrize("kw,msg", [
    (dict(lr=0), "lr must"), (dict(lr=float("nan")), "lr must"), (dict(lr=-1), "lr must"),
    (dict(steps=-1), "steps must"), (dict(engine="adam"), "engine must"), (dict(record_every=0), "record_every must"),
    (dict(W0=np.zeros((3, 3))), "W0 must"), (dict(W0=np.full((10, 10), np.inf)), "W0 must"),
    (dict(record_steps=[5, 500]), "record_steps must"),
])
def test_bad_training_arguments(kw, msg):
    ds = make_dataset(n=4, d=10, n_test=3)
    with pytest.raises(ValueError, match=msg):
        train(ds, **dict(dict(steps=20), **kw))


def test_extreme_settings_stay_finite():
    huge = make_dataset(n=6, d=50, signal_norm=1e4, n_test=20, seed=0)
    for engine in ("exact", "dense"):
        r = train(huge, steps=300, engine=engine, record_every=100)
        assert all(np.all(np.isfinite(v)) for k, v in r.history.items() if k != "attn_noisy")
    long = train(make_dataset(n=6, d=12, n_test=20, seed=1), steps=100_000, lr=5e-2, record_every=10_000)
    assert all(np.all(np.isfinite(v)) for k, v in long.history.items() if k != "attn_noisy" or long.config["eta"])
    assert long.final("train_loss") < long.history["train_loss"][0]


def test_numpy_exact_gd_equals_dense_engine():
    """The chapter's numpy recursion (engines.exact_gd) is dense GD: same scores, query and W."""
    from benign_attention.data import init_W
    from benign_attention.engines import exact_gd

    ds = make_dataset(d=300, n_test=50, seed=3)
    W0 = init_W(ds.d, 3)
    a, q, W = exact_gd(ds, W0, 120)
    dense = train(ds, steps=120, W0=W0, engine="dense", record_steps=[0, 120])
    Wd, pd_ = dense.params()
    assert np.abs(a - dense.final("train_logits")).max() <= 1e-10
    assert np.abs(ds.X_test @ (q - Wd @ pd_)).max() <= 1e-10
    assert np.abs(W - Wd).max() <= 1e-12
    a0, q0, W0_back = exact_gd(ds, W0, 0)
    assert not a0.any() and not q0.any() and np.allclose(W0_back, W0, atol=1e-13)


def test_one_pair_of_verbs_reads_every_result():
    """Run, GridResult and EncoderRun read a metric with the same final(key) / at(key, step)."""
    from benign_attention import run_grid
    from benign_attention.encoder import train_encoder

    ds = make_dataset(n=6, T=4, d=12, n_test=5, seed=1, signal_norm=5.0)
    run = train(ds, steps=20, record_every=10)
    grid = run_grid({"signal_norm": [5.0]}, base=dict(n=6, T=4, d=12, n_test=5, seed=1),
                    steps=20, record_every=10, dtype=torch.float64)
    enc = train_encoder(ds, steps=20, record_every=10, mlp_dim=8)
    for result, pick in ((run, lambda v: v), (grid, lambda v: v[0]), (enc, lambda v: v)):
        assert not hasattr(result, "get")
        assert np.array_equal(pick(result.final("train_loss")), pick(result.at("train_loss", 20)))
        assert np.array_equal(pick(result.at("train_loss", 9)), pick(result.at("train_loss", 10)))
        with pytest.raises(ValueError, match="key"):
            result.final("nope")
        with pytest.raises(ValueError, match="step"):
            result.at("train_loss", "late")
    assert np.allclose(grid.final("train_loss")[0], run.final("train_loss"), rtol=1e-10)


@pytest.mark.parametrize("tty", [False, True])
def test_progress_default_is_automatic(tty, monkeypatch, capsys):
    """progress=None (the default everywhere): a bar only on a terminal, and only after 2 s."""
    import sys

    from benign_attention.validation import PROGRESS_DELAY, check_progress

    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty, raising=False)
    assert check_progress("progress", None) == {"disable": not tty, "delay": PROGRESS_DELAY}
    assert check_progress("progress", True) == {"disable": False, "delay": 0.0}
    assert check_progress("progress", False) == {"disable": True, "delay": 0.0}
    import inspect

    from benign_attention import run_grid
    from benign_attention.realdata import grid as rgrid

    for fn in (train, train_many, run_grid, rgrid.run_realdata_grid):
        assert inspect.signature(fn).parameters["progress"].default is None, fn.__qualname__
    # short calls stay quiet with the default, on a terminal too (the bar would wait 2 s)
    ds = make_dataset(n=6, T=4, d=12, n_test=5, seed=1)
    capsys.readouterr()
    train(ds, steps=30)
    train_many([ds], steps=30)
    assert "GD steps" not in capsys.readouterr().err
