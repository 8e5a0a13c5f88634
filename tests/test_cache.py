"""The one cell cache (benign_attention.cache): bit-for-bit round trip, corruption and stale cells
detected, safe under concurrent writers of the same cell."""
import json
import multiprocessing as mp
import warnings
from pathlib import Path

import numpy as np
import pytest

from benign_attention.cache import CacheWarning, CellCache, cell_key

ARRAYS = {"f32": np.array([[0.1, np.nan], [np.inf, -1e-30]], dtype=np.float32),
          "f64": np.array([np.pi, -np.inf, 1e308, 5e-324]), "i64": np.array([-1, 2**62], dtype=np.int64),
          "b": np.array([True, False]), "scalar": np.array(7, dtype=np.int64), "empty": np.zeros((0, 3))}
PARAMS = {"experiment": "test", "d": 8, "lr": 5e-3}


def test_round_trip_is_bit_for_bit(tmp_path):
    cache = CellCache(tmp_path)
    record = {"loss": 0.1 + 0.2, "nested": {"h": [1.0, float("nan")]}, "name": "x"}
    path = cache.save("c", PARAMS, record, ARRAYS, provenance={"device": "cpu"})
    assert path == tmp_path / "c.json" and [p.name for p in tmp_path.iterdir()] == ["c.json"]
    cell = cache.load("c", dict(PARAMS))
    assert cell.params == PARAMS and cell.provenance == {"device": "cpu"}
    assert json.dumps(cell.record, sort_keys=True) == json.dumps(record, sort_keys=True)
    for k, a in ARRAYS.items():
        assert cell.arrays[k].dtype == a.dtype and cell.arrays[k].shape == a.shape
        assert cell.arrays[k].tobytes() == a.tobytes(), k
    assert cache.save("c", PARAMS, record, ARRAYS) == path            # rewriting: same file, default provenance
    assert set(cache.load("c", PARAMS).provenance) >= {"package", "torch", "device", "threads", "date", "commit"}
    assert [c.path.name for c in cache.cells()] == ["c.json"]
    assert cell_key(PARAMS) == cell_key(dict(reversed(PARAMS.items()))) != cell_key(dict(PARAMS, d=9))


def test_source_commit_without_git(monkeypatch):
    """Outside a git checkout (or without git) the commit is the one pip recorded, else a plain
    'unknown' sentence: never None."""
    from benign_attention import cache

    monkeypatch.setattr(cache, "_git", lambda *args: None)
    commit = cache.source_commit()
    assert isinstance(commit, str) and commit
    assert commit.startswith("unknown (benign-attention ") or len(commit) == 40
    assert cache.provenance()["commit"] == commit


@pytest.mark.parametrize("damage", ["garbage", "truncated", "flipped number", "no checksum", "other format"])
def test_corruption_is_detected(tmp_path, damage):
    cache = CellCache(tmp_path, "cache_dir")
    path = cache.save("c", PARAMS, {"loss": 0.25}, ARRAYS)
    text = path.read_text()
    body = json.loads(text)
    if damage == "garbage":
        path.write_bytes(b"\x00\xff not json")
    elif damage == "truncated":
        path.write_text(text[: len(text) // 2])
    elif damage == "flipped number":
        body["arrays"]["f64"]["data"][0] = 3.1415926535897927   # one ulp off
        path.write_text(json.dumps(body))
    elif damage == "no checksum":
        del body["checksum"]
        path.write_text(json.dumps(body))
    else:
        body["format"] = 0
        path.write_text(json.dumps(body))
    with pytest.warns(CacheWarning, match="cache_dir: the cell file .* corrupt"):
        assert cache.load("c", PARAMS) is None
    with pytest.warns(CacheWarning):
        assert cache.cells() == []


def test_stale_parameters_are_not_reused(tmp_path):
    cache = CellCache(tmp_path)
    cache.save("c", PARAMS, {"loss": 0.25})
    with pytest.warns(CacheWarning, match=r"other parameters \(differing: \['lr'\]\)"):
        assert cache.load("c", dict(PARAMS, lr=1e-3)) is None
    assert cache.load("missing", PARAMS) is None                       # absent: None, no warning


def _writer(folder, value, times):
    cache = CellCache(folder)
    for _ in range(times):
        cache.save("c", PARAMS, {"value": value}, {"x": np.full(2000, value, dtype=np.float64)})


def test_concurrent_writers_of_one_cell(tmp_path):
    """Three processes rewrite the same cell while this one reads it: every read is a complete,
    verified cell written by one of them, and no temporary file is left behind."""
    CellCache(tmp_path).save("c", PARAMS, {"value": -1.0}, {"x": np.full(2000, -1.0)})
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(tmp_path, float(v), 60)) for v in range(3)]
    for p in procs:
        p.start()
    seen = set()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)   # a partial or mixed file would warn: fail
        while any(p.is_alive() for p in procs) or not seen:
            cell = CellCache(tmp_path).load("c", PARAMS)
            assert (cell.arrays["x"] == cell.record["value"]).all()
            seen.add(cell.record["value"])
    for p in procs:
        p.join()
        assert p.exitcode == 0
    assert CellCache(tmp_path).load("c", PARAMS).record["value"] in {0.0, 1.0, 2.0}
    assert [p.name for p in tmp_path.iterdir()] == ["c.json"] and len(seen) >= 2


def test_every_stored_result_passes_its_checksum():
    """What the chapters read from benign_attention/results/: every cell file loads, verified, with its provenance."""
    root = Path(__file__).resolve().parents[1] / "benign_attention" / "results"
    # (benchmarks/ holds benchmark reports the chapters show, not cells)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name != "benchmarks")
    assert {p.name for p in folders} >= {"encoder", "encoder_dynamics", "realdata"}
    for folder in folders:
        files = sorted(p for p in folder.glob("*.json") if not p.name.startswith("."))
        with warnings.catch_warnings():
            warnings.simplefilter("error")   # a corrupt file would warn: fail instead
            cells = CellCache(folder).cells()
        assert len(cells) == len(files) > 0, folder.name
        for cell in cells:
            assert {"package", "torch", "threads", "date"} <= set(cell.provenance), cell.path
        assert not list(folder.glob(".*.tmp")), f"{folder.name}: a temporary file of an interrupted write"
