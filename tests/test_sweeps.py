"""Grid sweeps: equal to single runs, cached atomically, resumable, corruption detected."""
import json

import numpy as np
import pytest
import torch

from benign_attention import make_dataset, run_grid, train
from benign_attention import sweeps

GRID = {"d": [40, 60], "signal_norm": [3.0, 12.0], "eta": [0.0, 0.2]}
BASE = dict(n=6, n_test=30)


def _grid(tmp_path, **kw):
    return run_grid(GRID, base=BASE, steps=120, record_every=40, cache_dir=tmp_path, progress=False,
                    dtype=torch.float64, **kw)


def test_cells_equal_single_runs(tmp_path):
    res = _grid(tmp_path, workers=2)
    assert res.data["test_loss"].shape == (2, 2, 2, 4)
    for i, d in enumerate(GRID["d"]):
        for j, sn in enumerate(GRID["signal_norm"]):
            for k, eta in enumerate(GRID["eta"]):
                single = train(make_dataset(d=d, signal_norm=sn, eta=eta, **BASE), steps=120, record_every=40)
                for key in res.data:
                    assert np.allclose(res.data[key][i, j, k], single.history[key], atol=1e-12, equal_nan=True), key
    assert np.allclose(res.final("train_loss"), res.data["train_loss"][..., -1])


def test_float32_agrees_to_plotting_precision():
    kw = dict(grid={"signal_norm": [5.0, 20.0]}, base=dict(d=500, n_test=200), steps=400, progress=False)
    a = run_grid(dtype=torch.float32, **kw)
    b = run_grid(dtype=torch.float64, **kw)
    for key in ("train_loss", "test_loss", "attn_clean", "attn_noisy"):
        assert np.allclose(a.data[key], b.data[key], atol=2e-4, equal_nan=True), key


def test_killed_sweep_resumes_only_unfinished_cells(tmp_path, monkeypatch):
    real = sweeps._compute_family
    calls = []

    def dying(cfgs, *args):
        if len(calls) == 1:
            raise KeyboardInterrupt("killed")
        calls.append(len(cfgs))
        return real(cfgs, *args)

    monkeypatch.setattr(sweeps, "_compute_family", dying)
    with pytest.raises(KeyboardInterrupt):
        _grid(tmp_path, workers=1)
    assert len(list(tmp_path.glob("*.json"))) == 4  # one family (d=40) of 4 cells finished
    assert not list(tmp_path.glob("*.tmp*"))
    calls.clear()
    monkeypatch.setattr(sweeps, "_compute_family", lambda cfgs, *a: (calls.append(len(cfgs)), real(cfgs, *a))[1])
    resumed = _grid(tmp_path, workers=1)
    assert calls == [4]  # only the unfinished family
    calls.clear()
    again = _grid(tmp_path, workers=1)
    assert calls == [] and all(np.array_equal(again.data[k], resumed.data[k], equal_nan=True) for k in again.data)


def test_corrupt_or_foreign_cache_files_are_recomputed(tmp_path, monkeypatch):
    first = _grid(tmp_path)
    files = sorted(tmp_path.glob("*.json"))
    files[0].write_bytes(b"not json")  # garbage
    files[1].write_bytes(files[1].read_bytes()[:200])  # truncated
    body = json.loads(files[2].read_text())  # valid json with a tampered array: checksum mismatch
    body["arrays"]["train_loss"]["data"][0] += 1
    files[2].write_text(json.dumps(body))
    calls = []
    real = sweeps._compute_family
    monkeypatch.setattr(sweeps, "_compute_family", lambda cfgs, *a: (calls.append(len(cfgs)), real(cfgs, *a))[1])
    with pytest.warns(sweeps.CacheWarning, match="corrupt") as rec:
        second = _grid(tmp_path)
    assert len(rec) == 3
    assert calls and all(c == 4 for c in calls)  # families with a bad cell are recomputed whole
    for k in first.data:  # ... so the repaired sweep equals the clean one exactly (same batches)
        assert np.array_equal(first.data[k], second.data[k], equal_nan=True), k


def test_bad_grid_arguments():
    with pytest.raises(ValueError, match="grid knob 'lr' unknown"):
        run_grid({"lr": [1e-3]}, progress=False)
    with pytest.raises(ValueError, match="eta must"):
        run_grid({"eta": [0.7]}, base=BASE, progress=False)
    with pytest.raises(ValueError, match=r"grid\['d'\] must list"):
        run_grid({"d": []}, progress=False)


def test_train_cell_reuses_the_draw_and_equals_train():
    from benign_attention.sweeps import _BASES, train_cell

    _BASES.clear()
    for sn, eta in [(5.0, 0.2), (15.0, 0.0), (5.0, 0.2)]:
        cell = train_cell(steps=60, record_every=20, d=50, n=6, n_test=20, signal_norm=sn, eta=eta, seed=4)
        single = train(make_dataset(d=50, n=6, n_test=20, signal_norm=sn, eta=eta, seed=4), steps=60, record_every=20)
        for key in single.history:
            assert np.allclose(cell.history[key], single.history[key], atol=1e-12, equal_nan=True), key
    assert len(_BASES) == 1
