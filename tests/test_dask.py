"""Grids run on a real dask.distributed LocalCluster (2 worker processes) equal the same grids run locally."""
import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from benign_attention import run_grid  # noqa: E402
from benign_attention.encoder import load_grid, run_encoder_grid  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as c:
        yield c


def test_run_grid_on_dask_equals_local(client):
    grid = {"d": [20, 30], "signal_norm": [5.0, 20.0]}
    base = {"n": 6, "T": 4, "n_test": 20}
    local = run_grid(grid, base, steps=30, progress=False, workers=1)
    remote = run_grid(grid, base, steps=30, progress=False, executor=client.get_executor())
    for k in local.data:
        np.testing.assert_array_equal(remote.data[k], local.data[k], err_msg=k)


def test_encoder_grid_on_dask_equals_local(client, tmp_path):
    run_encoder_grid([8, 12], [5.0, 20.0], tmp_path / "local", steps=5)
    run_encoder_grid([8, 12], [5.0, 20.0], tmp_path / "dask", steps=5, executor=client.get_executor())
    a, b = load_grid(tmp_path / "local")[2], load_grid(tmp_path / "dask")[2]
    for k in ("train_loss", "test_loss", "test_acc"):
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
