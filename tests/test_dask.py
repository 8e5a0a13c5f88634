"""Grids run on a real dask.distributed LocalCluster (2 worker processes) equal the same grids run
locally bit for bit, and a worker killed mid-grid loses no finished cell: a rerun completes the grid."""
import json
import os
import threading
import time

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from benign_attention import run_grid  # noqa: E402
from benign_attention.encoder import load_grid, run_encoder_grid  # noqa: E402
from benign_attention.realdata import grid as realdata_grid  # noqa: E402

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
# a tiny real-data grid: breast cancer (bundled with scikit-learn), a short head fit, a few epochs
TINY = dict(datasets=["breast_cancer"], ns=[10, 20], etas=[0.0, 0.2], seeds=[0, 1], progress=False, head_epochs=20)


@pytest.fixture(autouse=True)
def data_folder(monkeypatch):
    if not os.environ.get("BENIGN_ATTENTION_DATA") and os.path.isdir(SHARED):
        monkeypatch.setenv("BENIGN_ATTENTION_DATA", os.path.abspath(SHARED))


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as c:
        yield c


def _same(a, b):
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)  # NaN-aware


def _record(path):
    return json.loads(path.read_text())["record"]


def test_run_grid_on_dask_equals_local(client):
    grid = {"d": [20, 30], "signal_norm": [5.0, 20.0]}
    base = {"n": 6, "T": 4, "n_test": 20}
    local = run_grid(grid, base, steps=30, progress=False, workers=2)  # one torch thread per family, as there
    remote = run_grid(grid, base, steps=30, progress=False, executor=client.get_executor())
    for k in local.data:
        np.testing.assert_array_equal(remote.data[k], local.data[k], err_msg=k)


def test_encoder_grid_on_dask_equals_local(client, tmp_path):
    run_encoder_grid([8, 12], [5.0, 20.0], tmp_path / "local", steps=5)
    run_encoder_grid([8, 12], [5.0, 20.0], tmp_path / "dask", steps=5, executor=client.get_executor())
    a, b = load_grid(tmp_path / "local")[2], load_grid(tmp_path / "dask")[2]
    for k in ("train_loss", "test_loss", "test_acc"):
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_realdata_grid_on_dask_equals_local(client, tmp_path):
    local = realdata_grid.run_realdata_grid(tmp_path / "local", epochs=5, **TINY)
    remote = realdata_grid.run_realdata_grid(tmp_path / "dask", epochs=5, executor=client.get_executor(), **TINY)
    assert len(local) == len(remote) == 8
    for a, b in zip(local, remote):
        a, b = ({k: v for k, v in c.items() if k != "provenance"} for c in (a, b))
        assert _same(a, b), (a["n"], a["eta"], a["seed"])


def _kill_a_worker_mid_grid(client, run, out, pattern="*.json"):
    """Start ``run()`` (a grid into ``out``) in a thread, kill one worker process as soon as a cell
    file appears, wait for the run, and check that no finished cell was lost or changed."""
    client.wait_for_workers(2, timeout=120)  # a worker killed by an earlier test is back
    errors = []

    def first_run():
        try:
            run()
        except Exception as err:  # a lost task may surface as an error: the rerun must recover
            errors.append(err)

    thread = threading.Thread(target=first_run)
    thread.start()
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob(pattern)):
        time.sleep(0.02)
    before = {p.name: p.read_text() for p in out.glob(pattern)}
    assert before, "no cell finished within 120 s"
    victim = next(iter(client.scheduler_info()["workers"]))  # one of the two workers
    try:
        client.run(os._exit, 1, workers=[victim])
    except Exception:
        pass  # the worker died before answering
    thread.join(300)
    assert not thread.is_alive()
    for name, text in before.items():  # no finished cell was lost or changed
        assert (out / name).read_text() == text
    return before


def test_killed_worker_loses_no_encoder_cell(client, tmp_path):
    D, MU, out = [8, 10, 12], [5.0, 10.0, 20.0, 40.0], tmp_path / "killed"
    run = lambda: run_encoder_grid(D, MU, out, steps=150, executor=client.get_executor())  # noqa: E731
    _kill_a_worker_mid_grid(client, run, out)
    run_encoder_grid(D, MU, out, steps=150, executor=client.get_executor())
    assert len(list(out.glob("*.json"))) == len(D) * len(MU) and not list(out.glob(".*"))
    run_encoder_grid([D[0]], MU, tmp_path / "local", steps=150)
    for mu in MU:
        name = f"d{D[0]}_mu{mu:g}_seed0.json"
        assert _record(out / name)["test_loss"] == _record(tmp_path / "local" / name)["test_loss"]


def test_killed_worker_loses_no_realdata_cell(client, tmp_path):
    out, kw = tmp_path / "killed", dict(TINY, epochs=150)
    _kill_a_worker_mid_grid(client, lambda: realdata_grid.run_realdata_grid(out, executor=client.get_executor(), **kw), out)
    assert realdata_grid.run_realdata_grid(out, executor=client.get_executor(), **kw)
    assert len(list(out.glob("*.json"))) == 8 and not list(out.glob(".*"))
    local = realdata_grid.run_realdata_grid(tmp_path / "local", **kw)
    for cell in local:
        name = realdata_grid.cell_path(out, "breast_cancer", cell["n"], cell["eta"], cell["seed"]).name
        assert _same(_record(out / name), _record(tmp_path / "local" / name)), name


def test_killed_worker_loses_no_sweep_cell(client, tmp_path, monkeypatch):
    grid, base = {"d": [20, 30, 40, 50, 60, 70], "signal_norm": [5.0, 20.0]}, {"n": 8, "T": 4, "n_test": 50}
    kw = dict(steps=1500, progress=False, cache_dir=tmp_path / "killed")
    _kill_a_worker_mid_grid(client, lambda: run_grid(grid, base, executor=client.get_executor(), **kw), kw["cache_dir"])
    calls = []
    from benign_attention import sweeps
    real = sweeps._compute_family
    monkeypatch.setattr(sweeps, "_compute_family", lambda cfgs, *a: (calls.append(len(cfgs)), real(cfgs, *a))[1])
    resumed = run_grid(grid, base, **kw)  # every cell was stored by the first run: nothing left to compute
    assert calls == [] and len(list(kw["cache_dir"].glob("*.json"))) == 12
    local = run_grid(grid, base, steps=1500, progress=False, workers=2)  # one torch thread per family, as there
    for k in local.data:
        np.testing.assert_array_equal(resumed.data[k], local.data[k], err_msg=k)
