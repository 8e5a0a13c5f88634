"""The encoder's fast path equals the literal reference module in float64 (outputs, attention, every gradient)."""
import numpy as np
import pytest
import torch

from benign_attention import make_dataset
from benign_attention.encoder import EncoderReference, fast_forward, make_encoder, step_flops, train_encoder


def _grads(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {k: p.grad.detach().clone() for k, p in model.named_parameters()}


@pytest.mark.parametrize("n,T,d,mlp_dim", [(1, 1, 1, 1), (3, 2, 5, 7), (5, 8, 16, 12), (20, 8, 40, 64), (4, 12, 96, 30)])
def test_fast_equals_reference(n, T, d, mlp_dim):
    torch.manual_seed(n * 1000 + d)
    model = make_encoder(d, mlp_dim, seed=d, dtype="float64")
    with torch.no_grad():  # move LayerNorm affine parameters away from (1, 0) so that they are exercised
        for m in (model.ln1, model.ln2, model.ln_f):
            m.weight.add_(0.3 * torch.randn(d, dtype=torch.float64))
            m.bias.add_(0.3 * torch.randn(d, dtype=torch.float64))
    X = 2.0 * torch.randn(n, T, d, dtype=torch.float64)
    y = torch.where(torch.rand(n) < 0.5, -1.0, 1.0).to(torch.float64)
    ref_logits, A = model(X)
    fast_logits, s = fast_forward(model, X)
    assert A.shape == (n, T + 1, T + 1) and s.shape == (n, T + 1)
    np.testing.assert_allclose(fast_logits.detach(), ref_logits.detach(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(s.detach(), A[:, 0].detach(), rtol=1e-12, atol=1e-14)
    g_ref = _grads(model, torch.nn.functional.softplus(-y * model(X)[0]).mean())
    g_fast = _grads(model, torch.nn.functional.softplus(-y * fast_forward(model, X)[0]).mean())
    assert set(g_ref) == set(g_fast) == {k for k, _ in model.named_parameters()}
    for k in g_ref:
        scale = max(1.0, g_ref[k].abs().max().item())
        np.testing.assert_allclose(g_fast[k], g_ref[k], rtol=0, atol=1e-12 * scale, err_msg=k)


def test_training_paths_agree():
    ds = make_dataset(n=6, T=4, d=24, n_test=10, seed=3)
    a = train_encoder(ds, steps=15, record_every=5, mlp_dim=16, dtype="float64", path="fast")
    b = train_encoder(ds, steps=15, record_every=5, mlp_dim=16, dtype="float64", path="reference")
    np.testing.assert_array_equal(a.steps, [0, 5, 10, 15])
    for k in a.history:
        np.testing.assert_allclose(a.history[k], b.history[k], rtol=1e-10, atol=1e-12, err_msg=k)
    assert a.history["train_attention"].shape == (4, 6, 4)
    assert a.history["test_attention"].shape == (4, 4)


def test_default_init_and_seed():
    m1, m2 = make_encoder(8, 4, seed=1), make_encoder(8, 4, seed=1)
    for (k, p), (_, q) in zip(m1.named_parameters(), m2.named_parameters()):
        assert torch.equal(p, q), k
    assert m1.cls.dtype == torch.float32
    state = torch.random.get_rng_state()
    make_encoder(8, 4, seed=2)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched


def test_step_flops_ratio():
    ref, fast = step_flops(20, 8, 2000, 2000, "reference"), step_flops(20, 8, 2000, 2000)
    assert 13 < ref / fast < 16  # about (T + 1) (3 d^2 + 2 d mlp) / (d^2 + 2 d mlp) = 15


@pytest.mark.parametrize("kw,name", [({"steps": -1}, "steps"), ({"lr": 0}, "lr"), ({"path": "slow"}, "path"),
                                     ({"dtype": "int8"}, "dtype"), ({"record_every": 0}, "record_every")])
def test_train_validation(kw, name):
    ds = make_dataset(n=4, T=3, d=5, n_test=4)
    with pytest.raises(ValueError, match=name):
        train_encoder(ds, **kw)


def test_validation():
    with pytest.raises(ValueError, match="d"):
        EncoderReference(0)
    with pytest.raises(ValueError, match="mlp_dim"):
        make_encoder(4, mlp_dim=0)
    with pytest.raises(ValueError, match="model"):
        fast_forward(torch.nn.Linear(2, 2), torch.zeros(1, 1, 2))
    with pytest.raises(ValueError, match="path"):
        step_flops(1, 1, 1, 1, "other")


def test_encoder_grid_resumes(tmp_path):
    from benign_attention.encoder import load_grid, run_encoder_grid
    first = run_encoder_grid([6], [5.0, 20.0], tmp_path, steps=3)
    assert len(first) == 2 and {r["provenance"]["threads"] for r in first} == {1}
    assert run_encoder_grid([6], [5.0, 20.0], tmp_path, steps=3) == []   # nothing left to do
    (tmp_path / "d6_mu20_seed0.json").unlink()
    again = run_encoder_grid([6], [5.0, 20.0], tmp_path, steps=3)
    assert [r["signal_norm"] for r in again] == [20.0] and again[0]["test_loss"] == first[1]["test_loss"]
    D, MU, maps, recs = load_grid(tmp_path)
    assert D.tolist() == [6] and MU.tolist() == [5.0, 20.0] and np.isfinite(maps["test_loss"]).all()
    run_encoder_grid([6, 7], [5.0], tmp_path, seed=1, steps=3)   # another seed: kept apart
    assert load_grid(tmp_path)[0].tolist() == [6] and len(load_grid(tmp_path)[3]) == 2
    D1, MU1, maps1, recs1 = load_grid(tmp_path, seed=1)
    assert D1.tolist() == [6, 7] and MU1.tolist() == [5.0] and {r["seed"] for r in recs1} == {1}
    with pytest.raises(ValueError, match="executor"):
        run_encoder_grid([6], [5.0], tmp_path, executor=object())


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 2e-5)])
@pytest.mark.parametrize("onednn", [True, False])
def test_sgd_step_equals_optimizer_step(dtype, tol, onednn, monkeypatch):
    """Five fused steps (factored in-place updates of the big weights) against five steps of
    torch.optim.SGD on the reference module: every parameter and loss, float64 and float32, with and
    without oneDNN products."""
    from benign_attention import encoder
    if onednn and not encoder.model.ONEDNN:
        pytest.skip("this torch build has no oneDNN")
    monkeypatch.setattr(encoder.model, "ONEDNN", onednn)
    tdt = getattr(torch, dtype)
    ds = make_dataset(n=7, T=5, d=24, n_test=1, seed=3, signal_norm=5.0)
    X, y = torch.tensor(ds.X, dtype=tdt), torch.tensor(ds.y, dtype=tdt)
    ref, fast = make_encoder(24, 40, seed=1, dtype=dtype), make_encoder(24, 40, seed=1, dtype=dtype)
    opt = torch.optim.SGD(ref.parameters(), lr=0.05)
    for _ in range(5):
        loss_ref = torch.nn.functional.softplus(-y * ref(X)[0]).mean()
        opt.zero_grad()
        loss_ref.backward()
        opt.step()
        loss, logits, s = encoder.sgd_step(fast, X, y, 0.05)
        assert abs(loss.item() - loss_ref.item()) < tol
        assert logits.shape == (7,) and s.shape == (7, 6) and not loss.requires_grad
    moved = 0.0
    for (k, p), q, p0 in zip(ref.named_parameters(), fast.parameters(), make_encoder(24, 40, seed=1).parameters()):
        scale = max(1.0, p.abs().max().item())
        np.testing.assert_allclose(q.detach(), p.detach(), rtol=0, atol=tol * scale, err_msg=k)
        moved = max(moved, (p.detach().float() - p0).abs().max().item())
    assert moved > 1e-3  # the steps did move the parameters


def test_sgd_step_non_contiguous_input_and_validation():
    from benign_attention.encoder import sgd_step
    model, twin = make_encoder(6, 5, seed=0), make_encoder(6, 5, seed=0)
    X = torch.randn(3, 4, 12)[:, :, ::2]                       # a strided view, shape (3, 4, 6)
    y = torch.tensor([1.0, -1.0, 1.0])
    a = sgd_step(model, X, y, 0.1)
    b = sgd_step(twin, X.contiguous(), y, 0.1)
    assert torch.equal(a[0], b[0])
    with pytest.raises(ValueError, match="lr"):
        sgd_step(model, X, y, 0)
    with pytest.raises(ValueError, match="y"):
        sgd_step(model, X, y[:2], 0.1)
    with pytest.raises(ValueError, match="X"):
        sgd_step(model, X[:, :, :5], y, 0.1)
    with pytest.raises(ValueError, match="model"):
        sgd_step(torch.nn.Linear(2, 2), X, y, 0.1)


def test_save_and_load_runs(tmp_path):
    from benign_attention.encoder import load_runs, save_run
    ds = make_dataset(n=6, T=4, d=12, n_test=5, seed=1)
    run = train_encoder(ds, steps=6, record_every=2, test_every=4, mlp_dim=8)
    save_run(run, tmp_path, "small")
    (tmp_path / "not_a_run.json").write_text("{}")   # corrupt: warned about and left out
    with pytest.warns(UserWarning, match="corrupt"):
        back = load_runs(tmp_path)
    assert list(back) == ["small"]
    b = back["small"]
    np.testing.assert_array_equal(b.steps, run.steps)
    assert set(b.history) == set(run.history) and b.seconds == run.seconds and b.config == run.config
    for k, v in run.history.items():   # NaN (test metrics between evaluations) included
        np.testing.assert_array_equal(b.history[k], v, err_msg=k)
    with pytest.raises(ValueError, match="run"):
        save_run({"steps": []}, tmp_path, "x")
    with pytest.raises(ValueError, match="folder"):
        load_runs(tmp_path / "missing")


def test_onednn_failure_falls_back_to_the_default_matmul(monkeypatch):
    from benign_attention import encoder
    if not encoder.model.ONEDNN:
        pytest.skip("this torch build has no oneDNN")

    def broken(*args, **kwargs):
        raise RuntimeError("no such kernel here")

    monkeypatch.setattr(encoder.model, "ONEDNN", True)
    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", broken)
    X, y = torch.randn(3, 4, 6), torch.tensor([1.0, -1.0, 1.0])
    a, b = make_encoder(6, 5, seed=0), make_encoder(6, 5, seed=0)
    loss = encoder.sgd_step(a, X, y, 0.1)[0]
    assert encoder.model.ONEDNN is False   # switched off for the rest of the session
    assert torch.equal(loss, encoder.sgd_step(b, X, y, 0.1)[0])


def test_train_from_given_initial_weights():
    ds = make_dataset(n=6, T=4, d=12, n_test=5, seed=2)
    start = make_encoder(12, 8, seed=5)
    before = {k: v.clone() for k, v in start.state_dict().items()}
    seeded = train_encoder(ds, steps=4, record_every=2, mlp_dim=8, seed=5)
    for given in (start.state_dict(), start, {k: v.numpy() for k, v in start.state_dict().items()}):
        run = train_encoder(ds, steps=4, record_every=2, mlp_dim=8, seed=0, init_state=given)
        for k in seeded.history:   # the given weights, not seed 0's: the seed-5 run exactly
            np.testing.assert_array_equal(run.history[k], seeded.history[k], err_msg=k)
        assert run.config["init_state"] == "given" and "init_state" not in seeded.config
    for k, v in start.state_dict().items():   # copied, never trained in place
        assert torch.equal(v, before[k]), k
    start64 = make_encoder(12, 8, seed=5, dtype="float64")   # float64 weights train in float64 unrounded
    run64 = train_encoder(ds, steps=2, mlp_dim=8, dtype="float64", init_state=start64, path="reference")
    ref64 = train_encoder(ds, steps=2, mlp_dim=8, dtype="float64", seed=5, path="reference")
    np.testing.assert_array_equal(run64.history["train_loss"], ref64.history["train_loss"])


def test_init_state_validation():
    ds = make_dataset(n=4, T=3, d=5, n_test=4)
    good = make_encoder(5, 3).state_dict()
    cases = [([1.0, 2.0], "init_state must be a dict"),
             ({k: v for k, v in good.items() if k != "cls"}, r"missing \['cls'\]"),
             (dict(good, extra=torch.zeros(1)), r"unknown \['extra'\]"),
             (make_encoder(5, 7).state_dict(), "mlp_dim=7"),
             (make_encoder(6, 3).state_dict(), r"init_state\['cls'\] must have shape \(5,\)"),
             (dict(good, cls=torch.full((5,), float("nan"))), "finite"),
             (dict(good, cls="zeros"), r"init_state\['cls'\]")]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            train_encoder(ds, steps=1, mlp_dim=3, init_state=bad)


def test_encoder_grid_passes_lr_and_mlp_dim(tmp_path):
    from benign_attention.encoder import encoder_cell, load_grid, run_encoder_grid
    (rec,) = run_encoder_grid([6], [5.0], tmp_path, steps=2, lr=0.01, mlp_dim=4)
    assert (rec["lr"], rec["mlp_dim"]) == (0.01, 4)
    direct = train_encoder(make_dataset(d=6, signal_norm=5.0), steps=2, lr=0.01, mlp_dim=4, record_every=2)
    assert rec["test_loss"] == direct.final("test_loss") and rec["train_loss"] == direct.final("train_loss")
    run_encoder_grid([6], [5.0], tmp_path, steps=2)   # the paper's setting: the old name, kept apart
    names = sorted(p.name for p in tmp_path.glob("*.json"))
    assert names == ["d6_mu5_lr0.01_mlp4_seed0.json", "d6_mu5_seed0.json"]
    assert run_encoder_grid([6], [5.0], tmp_path, steps=2, lr=0.01, mlp_dim=4) == []   # found again
    assert encoder_cell(6, 5.0, tmp_path, steps=2, lr=0.01, mlp_dim=4)["test_loss"] == rec["test_loss"]
    with pytest.raises(ValueError, match="mlp_dim="):
        load_grid(tmp_path)   # two settings: never merged
    assert load_grid(tmp_path, mlp_dim=4)[3][0]["lr"] == 0.01
    assert load_grid(tmp_path, lr=0.005)[3][0]["mlp_dim"] == 2000
    for kw, name in (({"lr": 0}, "lr"), ({"lr": 1e39}, "lr"), ({"mlp_dim": 0}, "mlp_dim"), ({"mlp_dim": 2.5}, "mlp_dim")):
        with pytest.raises(ValueError, match=name):
            run_encoder_grid([6], [5.0], tmp_path, steps=2, **kw)


def test_report_glue_table_and_final_metrics():
    from benign_attention.display import G
    from benign_attention.encoder.report import final_metrics, glue_table

    ds = make_dataset(n=6, T=4, d=16, n_test=10, seed=0)
    run = train_encoder(ds, steps=20, record_every=10, mlp_dim=8)
    table = final_metrics({"tiny run": (run, ds)})
    row = table["tiny run"]
    assert row["train_loss"] == run.final("train_loss") and row["test_acc"] == run.final("test_acc")
    assert set(row) >= {"clean_x1", "clean_irr", "noisy_x2", "noisy_x3", "noisy_irr", "minutes"}
    assert glue_table("t_enc", table) is None and G.t_enc_tiny_run_train_loss == row["train_loss"]
    glue_table("t_enc", {"flat": 3})
    assert G.t_enc_flat == 3


def test_report_reads_the_stored_results():
    import json

    from benign_attention.cache import CellCache, stored
    from benign_attention.encoder import load_grid
    from benign_attention.encoder.report import (benchmark_summary, boundary_summary, grid_crossings,
                                                 offset_summary, seed_cells)

    cells = seed_cells(stored("encoder"), [(2000, 20.0), (250, 1e9)], (0, 1))
    D, MU, maps, _ = load_grid(stored("encoder"))
    i, j = np.flatnonzero(D == 2000)[0], np.flatnonzero(MU == 20.0)[0]
    assert cells[2000, 20.0][0]["test_acc"] == maps["test_acc"][i, j] and cells[250, 1e9] == {}
    crossing, hours = grid_crossings(stored("encoder"), D, (0.41, 0.1), (0, 1, 2))
    assert crossing[0.41, 0].shape == D.shape and np.isfinite(crossing[0.41, 0]).all() and hours > 0
    b = boundary_summary(D, crossing)
    assert b["n_rows"] == 5 and b["d_first"] < b["d_last"] and b["gap_min_all"] > 0
    assert b["s0_3000"] == crossing[0.41, 0][np.flatnonzero(D == 3000)[0]]
    off = offset_summary(CellCache(stored("encoder_offset")).cells())
    assert list(off)[0] == "data0_init0" and off["data0_init0"]["settled"] > 0
    bench = json.loads(stored("benchmarks/encoder_2core.json").read_text())
    s = benchmark_summary(bench)
    assert s["ratio"] == bench["ratio"] and s["ms_fast"] == 1000 * bench["s_per_step_median"]["fast"]
    assert s["ratio_lo"] <= s["ratio"] <= s["ratio_hi"] and s["traffic_ms_lo"] <= s["traffic_ms_hi"]
