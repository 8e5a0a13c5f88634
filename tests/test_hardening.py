"""Hardening 2 (issue 23): one table of cases per defect class, each fixed at its root.

1. no hang: fork-based process pools after torch used threads are refused, the package's own pools never fork;
2. executors: results matched to cells by identity (futures), counts checked, clear errors;
3. divergence: every trainer follows the one rule (NaN metrics, ``diverged_at``, DivergenceWarning);
4. validate before mutating (``sgd_step``, labels, dtypes, lr for the dtype);
5. numerics at the edges (g_inverse, first_passage, late_linear_fit, boundary_crossing, sigma = 0,
   log_schedule, tiny signal_norm);
6. stored results read back right (settings never merged, duplicates, shapes, foreign files, full disk, .tmp);
7. display, plots and widgets check their arguments.

Each row is ``(id, call, expected)`` where expected is a value check, an exception type with a word
its message must contain, or a warning class.
"""
from __future__ import annotations

import concurrent.futures as cf
import errno
import json
import multiprocessing
import multiprocessing.pool
import os
import subprocess
import sys
import textwrap
import time
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch

import benign_attention as ba
from benign_attention import analysis, display, encoder, explorer_figures, parallel, plots, sweeps, theory
from benign_attention.cache import CacheWarning, CellCache
from benign_attention.engines import DivergenceWarning, log_schedule
from benign_attention.parallel import ExecutorError
from benign_attention.validation import ArgumentTypeError

ROOT = Path(__file__).resolve().parents[1]
BASE = dict(n=6, T=4, d=12, n_test=5)
GRID = {"signal_norm": [5.0, 20.0], "seed": [0, 1]}


def _outcome(fn):
    """('ok', value) or (exception type, message), warnings recorded."""
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        try:
            return "ok", fn(), w
        except Exception as err:  # noqa: BLE001 - the table says which
            return type(err), str(err), w


def check_row(fn, expect):
    kind, value, w = _outcome(fn)
    if isinstance(expect, tuple) and isinstance(expect[0], type) and issubclass(expect[0], BaseException):
        exc, word = expect
        assert kind != "ok", f"no error; returned {value!r}"
        assert issubclass(kind, exc), f"{kind.__name__}: {value}"
        assert word.lower() in value.lower(), value
        return
    assert kind == "ok", f"{kind.__name__ if isinstance(kind, type) else kind}: {value}"
    if isinstance(expect, type) and issubclass(expect, Warning):
        assert any(issubclass(x.category, expect) for x in w), [str(x.message) for x in w]
        return
    expect(value, w)


@lru_cache(None)
def local_grid():
    return ba.run_grid(GRID, BASE, steps=4, progress=False)


def same_as_local(result, w):
    for k, v in local_grid().data.items():
        np.testing.assert_array_equal(result.data[k], v)


# ------------------------------------------------------------------------------------------------
# 1. No hang: a fork-based pool after torch used threads is refused (or finishes), always within 60 s.

HANG_SCRIPT = textwrap.dedent(r"""
    import concurrent.futures as cf, json, multiprocessing as mp, sys, tempfile, time
    import torch
    import benign_attention as ba
    from benign_attention import encoder, parallel
    from benign_attention.realdata import grid as rgrid

    GRID, BASE = {"signal_norm": [5.0, 20.0]}, dict(n=6, T=4, d=12, n_test=5)

    def attempt(name, fn):
        t = time.time()
        try:
            fn()
            out[name] = ["finished", round(time.time() - t, 1), ""]
        except Exception as err:
            out[name] = [type(err).__name__, round(time.time() - t, 1), str(err)]
        print(name, out[name], flush=True)

    if __name__ == "__main__":
        out = {}
        ctx = mp.get_context("fork")
        early = cf.ProcessPoolExecutor(1, mp_context=ctx)
        attempt("fork pool, fresh process", lambda: ba.run_grid(GRID, BASE, steps=3, progress=False, executor=early))
        torch.set_num_threads(2)                        # torch uses threads in this process
        ba.train(ba.make_dataset(n=6, T=4, d=300, n_test=5), steps=3)
        torch.linalg.qr(torch.randn(400, 400)); torch.ones(1 << 22).add_(1)
        ref = ba.run_grid(GRID, BASE, steps=3, progress=False)
        late = cf.ProcessPoolExecutor(1, mp_context=ctx)
        attempt("fork pool after threads: run_grid", lambda: ba.run_grid(GRID, BASE, steps=3, progress=False, executor=late))
        tmp = tempfile.mkdtemp()
        attempt("fork pool after threads: run_encoder_grid",
                lambda: encoder.run_encoder_grid([6], [5.0], tmp, steps=1, executor=late))
        attempt("fork pool after threads: run_realdata_grid",
                lambda: rgrid.run_realdata_grid(tmp, ["breast_cancer"], [10], [0.2], [0], epochs=1, executor=late))
        attempt("fork pool started before threads", lambda: ba.run_grid(GRID, BASE, steps=3, progress=False, executor=early))
        with parallel.process_pool(1) as own:
            def same():
                got = ba.run_grid(GRID, BASE, steps=3, progress=False, executor=own)
                assert all((got.data[k] == ref.data[k]).all() for k in ref.data)
            attempt("package process_pool after threads", same)
        early.shutdown()
        json.dump(out, sys.stdout)
""")

HANG_CASES = [  # (scenario, outcome, word in the message)
    ("fork pool, fresh process", "finished", ""),
    ("fork pool after threads: run_grid", "ValueError", "fork"),
    ("fork pool after threads: run_encoder_grid", "ValueError", "fork"),
    ("fork pool after threads: run_realdata_grid", "ValueError", "fork"),
    ("fork pool started before threads", "finished", ""),
    ("package process_pool after threads", "finished", ""),
]


@pytest.fixture(scope="module")
def hang_results(tmp_path_factory):
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork start method on this platform")
    script = tmp_path_factory.mktemp("hang") / "hang.py"
    script.write_text(HANG_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    start = time.time()
    try:
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env,
                              cwd=script.parent)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"a grid with a fork-based pool hung (> 60 s); output so far: {err.stdout}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["_seconds"] = time.time() - start
    return out


@pytest.mark.parametrize("scenario,outcome,word", HANG_CASES, ids=[c[0] for c in HANG_CASES])
def test_no_hang(hang_results, scenario, outcome, word):
    got, seconds, message = hang_results[scenario]
    assert got == outcome, message
    assert word in message
    assert hang_results["_seconds"] < 60


def test_package_pools_never_fork():
    assert parallel.start_method() in ("forkserver", "spawn")
    with parallel.process_pool(1) as pool:
        assert pool._mp_context.get_start_method() != "fork"
        assert not parallel.forks(pool)
    assert parallel.forks(cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")))


# ------------------------------------------------------------------------------------------------
# 2. Executors: identity via futures, counts checked, clear errors.


class ReorderingMap(cf.ThreadPoolExecutor):
    """A map that returns results reversed and drops one: no longer used by the package."""

    def map(self, fn, *its, **kw):
        return list(super().map(fn, *its))[::-1][1:]


class SwappingSubmit(cf.ThreadPoolExecutor):
    """Every future holds the result of the previous job (a wrong executor)."""

    def __init__(self):
        super().__init__(1)
        self.last = None

    def submit(self, fn, *args, **kw):
        fut = super().submit(fn, *args, **kw)
        prev, self.last = self.last, fut
        return prev or fut


class NotFutures(cf.ThreadPoolExecutor):
    def submit(self, fn, *args, **kw):
        return fn(*args, **kw)


class Cancelling(cf.ThreadPoolExecutor):
    def submit(self, fn, *args, **kw):
        fut = cf.Future()
        fut.cancel()
        return fut


class WrongShape(cf.ThreadPoolExecutor):
    def submit(self, fn, *args, **kw):
        return super().submit(lambda *a: dict(fn(*a), results=[{}] * len(a[0])), *args)


class OnlyMap:
    def map(self, fn, *its):
        return map(fn, *its)


def _shut():
    ex = cf.ThreadPoolExecutor(1)
    ex.shutdown()
    return ex


def _broken():
    ex = cf.ThreadPoolExecutor(1)
    ex._broken = "a worker died"
    return ex


def _grid(ex):
    def call():
        executor = ex() if callable(ex) else ex
        try:
            return ba.run_grid(GRID, BASE, steps=4, progress=False, executor=executor)
        finally:   # no job left running into the next test (warnings.catch_warnings is process-global)
            if callable(getattr(executor, "shutdown", None)) and not isinstance(executor, multiprocessing.pool.Pool):
                executor.shutdown(wait=True)
            elif isinstance(executor, multiprocessing.pool.Pool):
                executor.terminate()
    return call


EXECUTOR_CASES = [
    ("thread pool", _grid(lambda: cf.ThreadPoolExecutor(2)), same_as_local),
    ("map that reorders and drops", _grid(lambda: ReorderingMap(2)), same_as_local),
    ("submit that swaps results", _grid(SwappingSubmit), (ExecutorError, "other cells")),
    ("submit that returns no future", _grid(lambda: NotFutures(1)), (ExecutorError, "future")),
    ("cancelled futures", _grid(lambda: Cancelling(1)), (ExecutorError, "no result")),
    ("results of the wrong shape", _grid(lambda: WrongShape(1)), (ExecutorError, "not a cell")),
    ("shut-down executor", _grid(_shut), (ValueError, "shut down")),
    ("broken executor", _grid(_broken), (ValueError, "broken")),
    ("multiprocessing.Pool", _grid(lambda: multiprocessing.pool.ThreadPool(1)),
     (ArgumentTypeError, "multiprocessing.Pool")),
    ("object with only map", _grid(OnlyMap), (ArgumentTypeError, "submit")),
    ("a string", _grid("pool"), (ArgumentTypeError, "executor")),
    ("encoder grid, shut-down executor",
     lambda: encoder.run_encoder_grid([6], [5.0], "/nonexistent-never-written", executor=_shut()),
     (ValueError, "shut down")),
]


@pytest.mark.parametrize("call,expect", [c[1:] for c in EXECUTOR_CASES], ids=[c[0] for c in EXECUTOR_CASES])
def test_executors(call, expect):
    check_row(call, expect)


def test_encoder_grid_swapped_results_are_caught(tmp_path):
    class Swap(cf.ThreadPoolExecutor):
        def submit(self, fn, d, mu):
            return super().submit(fn, d, 20.0 if mu == 5.0 else 5.0)

    with Swap(1) as ex, pytest.raises(ExecutorError, match="returned the result of"):
        encoder.run_encoder_grid([6], [5.0, 20.0], tmp_path, steps=1, executor=ex)


# ------------------------------------------------------------------------------------------------
# 3. Divergence: one rule for every trainer.


@lru_cache(None)
def DS():
    return ba.make_dataset(n=6, T=4, d=10, n_test=5, seed=1)


@lru_cache(None)
def PREP():
    from benign_attention.realdata import finetune
    return finetune.prepare("breast_cancer", pool_size=30, test_size=20, head_epochs=0)


def _finetune(lr):
    from benign_attention.realdata import finetune
    return finetune.run(PREP(), 10, 0.2, epochs=3, lr=lr, log_every=1, eval_every=2)


@lru_cache(None)
def BIG():
    return ba.make_dataset(n=6, T=4, d=20, n_test=5, signal_norm=1000.0)


BIG_KNOBS = dict(n=6, T=4, d=20, n_test=5, signal_norm=1000.0)
F32 = torch.float32
TRAINERS = {  # name -> (call(diverge) -> result, final accuracies, diverged_at)
    "train exact": (lambda bad: ba.train(BIG() if bad else DS(), steps=30, lr=1e36 if bad else 1e-3, dtype=F32),
                    lambda r: [r.final("train_acc"), r.final("test_acc")], lambda r: r.diverged_at),
    "train dense": (lambda bad: ba.train(BIG() if bad else DS(), steps=30, lr=1e36 if bad else 1e-3, dtype=F32,
                                         engine="dense"),
                    lambda r: [r.final("train_acc"), r.final("test_acc")], lambda r: r.diverged_at),
    "train_many": (lambda bad: ba.train_many([BIG() if bad else DS()], steps=30, lr=1e36 if bad else 1e-3, dtype=F32,
                                             progress=False)[0],
                   lambda r: [r.final("train_acc")], lambda r: r.diverged_at),
    "run_grid": (lambda bad: ba.run_grid({"signal_norm": [1000.0]}, dict(n=6, T=4, d=20, n_test=5), steps=30,
                                         lr=1e36 if bad else 1e-3, progress=False),
                 lambda r: list(r.final("train_acc").ravel()), lambda r: 0 if r.diverged.all() else None),
    "train_cell": (lambda bad: sweeps.train_cell(steps=30, lr=1e36 if bad else 1e-3, dtype=F32, **BIG_KNOBS),
                   lambda r: [r.final("train_acc")], lambda r: r.diverged_at),
    "train_encoder fast": (lambda bad: encoder.train_encoder(DS(), steps=3, lr=1e30 if bad else 1e-3, record_every=1,
                                                             mlp_dim=8),
                           lambda r: [r.final("train_acc"), r.final("test_acc")], lambda r: r.diverged_at),
    "train_encoder reference": (lambda bad: encoder.train_encoder(DS(), steps=3, lr=1e30 if bad else 1e-3,
                                                                  record_every=1, mlp_dim=8, path="reference"),
                                lambda r: [r.final("train_acc"), r.final("test_acc")], lambda r: r.diverged_at),
    "train_encoder float64": (lambda bad: encoder.train_encoder(DS(), steps=3, lr=1e200 if bad else 1e-3,
                                                                record_every=1, mlp_dim=8, dtype="float64"),
                              lambda r: [r.final("train_acc")], lambda r: r.diverged_at),
    "finetune.run": (lambda bad: _finetune(1e30 if bad else 1e-3),
                     lambda r: [r["final"][k] for k in ("train_acc_noisy", "train_acc_clean", "test_acc")],
                     lambda r: r["diverged_at"]),
}


@pytest.mark.parametrize("name", list(TRAINERS))
def test_divergence_one_rule(name):
    call, accs, at = TRAINERS[name]
    kind, result, w = _outcome(lambda: call(True))
    assert kind == "ok", result
    assert any(issubclass(x.category, DivergenceWarning) for x in w), f"{name}: no DivergenceWarning"
    assert at(result) is not None
    assert all(np.isnan(a) for a in accs(result)), f"{name}: a diverged run reports accuracies {accs(result)}"


@pytest.mark.parametrize("name", list(TRAINERS))
def test_no_divergence_no_warning(name):
    call, accs, at = TRAINERS[name]
    kind, result, w = _outcome(lambda: call(False))
    assert kind == "ok", result
    assert not any(issubclass(x.category, DivergenceWarning) for x in w)
    assert at(result) is None and all(np.isfinite(accs(result)))


def test_encoder_grid_warns_for_diverged_cells(tmp_path, monkeypatch):
    real = encoder.train_encoder
    monkeypatch.setattr(encoder.grid, "train_encoder", lambda ds, **kw: real(ds, **dict(kw, lr=1e30, mlp_dim=4)))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        recs = encoder.run_encoder_grid([6], [5.0], tmp_path, steps=2)
    assert any(issubclass(x.category, DivergenceWarning) and "run_encoder_grid" in str(x.message) for x in w)
    assert recs[0]["diverged_at"] is not None and np.isnan(recs[0]["train_acc"])


# ------------------------------------------------------------------------------------------------
# 4. Validate before mutating.


def _model_and_data():
    m = encoder.make_encoder(6, 8, seed=0, dtype="float32")
    X = torch.randn(4, 3, 6, generator=torch.Generator().manual_seed(0))
    return m, X, torch.tensor([1.0, -1.0, 1.0, -1.0])


def _with(X, i, v):
    X = X.clone()
    X.view(-1)[i] = v
    return X


SGD_CASES = [  # id, (X, y, lr) from (X, y), error, word
    ("one NaN in X", lambda X, y: (_with(X, 5, float("nan")), y, 0.1), ValueError, "X must be finite"),
    ("one inf in X", lambda X, y: (_with(X, 0, float("inf")), y, 0.1), ValueError, "X must be finite"),
    ("label 0", lambda X, y: (X, torch.tensor([1.0, 0.0, 1.0, -1.0]), 0.1), ValueError, "only the labels"),
    ("label 2", lambda X, y: (X, torch.tensor([1.0, 2.0, 1.0, -1.0]), 0.1), ValueError, "only the labels"),
    ("NaN label", lambda X, y: (X, torch.tensor([1.0, float("nan"), 1.0, -1.0]), 0.1), ValueError, "labels"),
    ("X float64, model float32", lambda X, y: (X.double(), y, 0.1), TypeError, "dtype"),
    ("y float64, model float32", lambda X, y: (X, y.double(), 0.1), TypeError, "dtype"),
    ("y int64", lambda X, y: (X, y.long(), 0.1), TypeError, "dtype"),
    ("lr beyond float32", lambda X, y: (X, y, 1e39), ValueError, "lr"),
    ("lr NaN", lambda X, y: (X, y, float("nan")), ValueError, "lr"),
    ("lr 0", lambda X, y: (X, y, 0.0), ValueError, "lr"),
    ("lr a string", lambda X, y: (X, y, "0.1"), TypeError, "lr"),
    ("y of the wrong length", lambda X, y: (X, y[:3], 0.1), ValueError, "y must be"),
    ("X of the wrong width", lambda X, y: (X[..., :5], y, 0.1), ValueError, "X must have shape"),
]


@pytest.mark.parametrize("make,exc,word", [c[1:] for c in SGD_CASES], ids=[c[0] for c in SGD_CASES])
def test_sgd_step_validates_before_mutating(make, exc, word):
    m, X, y = _model_and_data()
    before = {k: p.detach().clone() for k, p in m.named_parameters()}
    with pytest.raises(exc, match=word):
        encoder.sgd_step(m, *make(X, y))
    for k, p in m.named_parameters():
        assert torch.equal(p, before[k]), f"{k} changed"


OTHER_MUTATION_CASES = [
    ("fast_forward mixed dtype", lambda: encoder.fast_forward(_model_and_data()[0], _model_and_data()[1].double()),
     (TypeError, "dtype")),
    ("train_encoder lr beyond float32", lambda: encoder.train_encoder(DS(), steps=1, lr=1e39, mlp_dim=4),
     (ValueError, "lr")),
    ("train_encoder lr fine in float64", lambda: encoder.train_encoder(DS(), steps=1, lr=1e39, mlp_dim=4,
                                                                       dtype="float64"),
     lambda r, w: r.diverged_at is not None),
    ("batch_metrics label 0", lambda: ba.metrics.batch_metrics(torch.zeros(2, 3), torch.zeros(2, 3), [1.0, 0.0]),
     (ValueError, "labels")),
    ("batch_metrics clean label 3", lambda: ba.metrics.batch_metrics(torch.zeros(2, 3), torch.zeros(2, 3), [1.0, -1.0],
                                                             [3.0, 1.0], torch.tensor([False, True])),
     (ValueError, "y_clean")),
    ("sgd_step good input steps", lambda: encoder.sgd_step(*_model_and_data(), 0.1),
     lambda r, w: np.isfinite(float(r[0]))),
]


@pytest.mark.parametrize("call,expect", [c[1:] for c in OTHER_MUTATION_CASES], ids=[c[0] for c in OTHER_MUTATION_CASES])
def test_validate_first(call, expect):
    check_row(call, expect)


# ------------------------------------------------------------------------------------------------
# 5. Numerics at the edges: each function's contract.


def _g_roundtrip(T, lo, hi):
    x = np.linspace(lo, hi, 401)
    back = theory.g_inverse(theory.g(x, T), T)
    return np.max(np.abs(back - x) / np.maximum(1, np.abs(x)))


def _close(want, tol=0.0):
    def check(got, w):
        np.testing.assert_allclose(np.asarray(got, float), np.asarray(want, float), rtol=tol, atol=tol, equal_nan=True)
    return check


def _is(pred):
    def check(got, w):
        assert pred(got), got
    return check


NUMERIC_CASES = [
    ("g_inverse round trip T=8 x in [-50, 50]", lambda: _g_roundtrip(8, -50, 50), _is(lambda e: e < 1e-14)),
    ("g_inverse round trip T=3 x in [-700, 700]", lambda: _g_roundtrip(3, -700, 700), _is(lambda e: e < 1e-14)),
    ("g_inverse round trip T=0.5", lambda: _g_roundtrip(0.5, -300, 300), _is(lambda e: e < 1e-14)),
    ("g_inverse round trip T=1e6", lambda: _g_roundtrip(1e6, -300, 300), _is(lambda e: e < 1e-14)),
    ("g_inverse broadcast T", lambda: theory.g_inverse(theory.g(np.array([-9.0, 0.0, 9.0]), [3, 8, 20]), [3, 8, 20]),
     _close([-9.0, 0.0, 9.0], 1e-14)),
    ("g_inverse at g(log T) = 2 log T", lambda: theory.g_inverse(2 * np.log(8), 8), _close(np.log(8), 1e-15)),
    ("g_inverse +-inf, NaN", lambda: theory.g_inverse([np.inf, -np.inf, np.nan], 8), _close([np.inf, -np.inf, np.nan])),
    ("g_inverse T = 0", lambda: theory.g_inverse(1.0, 0), (ValueError, "T must be > 0")),
    ("g_inverse iters = 0", lambda: theory.g_inverse(1.0, 8, iters=0), (ValueError, "iters")),
    ("first_passage unsorted steps", lambda: analysis.first_passage([0, 10, 5], [0, 1, 2], [1.5]),
     (ValueError, "strictly increasing")),
    ("first_passage repeated step", lambda: analysis.first_passage([0, 5, 5], [0, 1, 2], [1.5]),
     (ValueError, "strictly increasing")),
    ("first_passage NaN before the crossing", lambda: analysis.first_passage([0, 1, 2, 3], [0, np.nan, 2, 3], [1.0]),
     _close([1.0])),
    ("first_passage NaN at the start", lambda: analysis.first_passage([0, 1, 2], [np.nan, 2, 3], [1.0]), _close([1.0])),
    ("first_passage all NaN", lambda: analysis.first_passage([0, 1], [np.nan, np.nan], [1.0]), _close([np.nan])),
    ("first_passage inf value", lambda: analysis.first_passage([0, 1, 2], [0, 1, np.inf], [5.0]), _close([2.0])),
    ("first_passage never", lambda: analysis.first_passage([0, 1], [0, 1], [5.0]), _close([np.nan])),
    ("first_passage interpolates", lambda: analysis.first_passage([0, 10], [0, 2], [0.5, 0.0]), _close([2.5, 0.0])),
    ("late_linear_fit constant y", lambda: analysis.late_linear_fit([0, 1, 2, 3], [3, 3, 3, 3], 0),
     _is(lambda r: r[2] == 1.0 and abs(r[0]) < 1e-12)),
    ("late_linear_fit constant 0.1", lambda: analysis.late_linear_fit(np.arange(7.0), np.full(7, 0.1), 0),
     _is(lambda r: r[2] == 1.0)),
    ("late_linear_fit one x", lambda: analysis.late_linear_fit([1, 1, 1], [1, 2, 3], 0), (ValueError, "distinct")),
    ("late_linear_fit noisy line", lambda: analysis.late_linear_fit([0, 1, 2, 3], [0, 1.1, 1.9, 3], 0),
     _is(lambda r: 0.98 < r[2] < 1.0)),
    ("boundary_crossing NaN before the crossing",
     lambda: analysis.boundary_crossing([[0.9, np.nan, 0.2]], [1, 2, 3], 0.5, above=False), _close([1 + 2 * 4 / 7], 1e-12)),
    ("boundary_crossing NaN first",
     lambda: analysis.boundary_crossing([[np.nan, 0.3, 0.1]], [1, 2, 3], 0.5, above=False), _close([2.0])),
    ("boundary_crossing crossing interpolated",
     lambda: analysis.boundary_crossing([[1.0, 0.0]], [10, 20], 0.5, above=False), _close([15.0])),
    ("boundary_crossing decreasing levels", lambda: analysis.boundary_crossing([[1.0, 0.0]], [20, 10], 0.5),
     (ValueError, "strictly increasing")),
    ("fixed_attention_accuracy sigma 0, signal > 0", lambda: theory.fixed_attention_accuracy([1 / 3] * 3, 0.1, 5, 0),
     _close(1.0)),
    ("fixed_attention_accuracy sigma 0, signal < 0",
     lambda: theory.fixed_attention_accuracy([0.0, 0.0, 1.0], 0.5, 5, 0), _close(0.0)),
    ("fixed_attention_accuracy sigma 0, no signal", lambda: theory.fixed_attention_accuracy([1 / 3] * 3, 0.1, 0, 0),
     _close(0.5)),
    ("fixed_attention_accuracy tiny sigma = limit", lambda: theory.fixed_attention_accuracy([1 / 3] * 3, 0.1, 5, 1e-300),
     _close(1.0)),
    ("wrong_label_best_token sigma 0", lambda: theory.wrong_label_best_token(0.1, 20, 8, 0),
     _is(lambda p: p == {"x1": 0.0, "x2": 0.0, "x3": 1.0, "irrelevant": 0.0})),
    ("wrong_label_best_token sigma 0, rho 0 ties", lambda: theory.wrong_label_best_token(0.0, 20, 8, 0),
     _is(lambda p: np.isclose(p["x3"], 1 / 7) and np.isclose(sum(p.values()), 1))),
    ("wrong_label_best_token no signal", lambda: theory.wrong_label_best_token(0.1, 0, 8),
     _is(lambda p: np.isclose(p["x1"], 1 / 8) and np.isclose(sum(p.values()), 1))),
    ("wrong_label_best_token tiny signal = limit", lambda: theory.wrong_label_best_token(0.1, 1e-300, 8),
     _is(lambda p: np.isclose(sum(p.values()), 1) and all(np.isfinite(list(p.values()))))),
    ("wrong_label_best_token T 2.5", lambda: theory.wrong_label_best_token(0.1, 20, 2.5), (ValueError, "T")),
    ("log_schedule(0)", lambda: log_schedule(0), _close([0])),
    ("log_schedule(1)", lambda: log_schedule(1), _close([0, 1])),
    ("log_schedule within [0, steps] for all small steps",
     lambda: all(log_schedule(s, n)[-1] == s and np.all(np.diff(log_schedule(s, n)) > 0)
                 for s in range(0, 40) for n in (2, 5, 60)), _is(bool)),
    ("signal_norm 1e-7", lambda: ba.make_dataset(n=4, T=3, d=4, signal_norm=1e-7), (ValueError, "signal_norm")),
    ("signal_norm 1e-300", lambda: ba.make_dataset(n=4, T=3, d=4, signal_norm=1e-300), (ValueError, "1e-06")),
    ("signal_norm at the floor: finite head and run",
     lambda: ba.train(ba.make_dataset(n=4, T=3, d=4, n_test=3, signal_norm=1e-6), steps=3),
     _is(lambda r: np.isfinite(r.final("train_loss")) and not r.diverged)),
    ("head of tiny user signals", lambda: ba.data.head_vector([1e-200, 0], [0, 1e-200]),
     _is(lambda nu: np.all(np.isfinite(nu)) and np.isclose(nu[0], 1 / np.sqrt(2) * 1e200))),
    ("head of subnormal user signals", lambda: ba.data.head_vector([1e-320, 0], [0, 1e-320]), (ValueError, "overflow")),
    ("head of huge user signals", lambda: ba.data.head_vector([1e300, 0], [0, 1e300]),
     _is(lambda nu: np.all(np.isfinite(nu)) and nu[0] > 0)),
]


@pytest.mark.parametrize("call,expect", [c[1:] for c in NUMERIC_CASES], ids=[c[0] for c in NUMERIC_CASES])
def test_numerics_at_the_edges(call, expect):
    check_row(call, expect)


def test_book_uses_of_g_inverse():
    """Chapter 5 solves g(x(tau)) = g(x0) + beta tau (and its shifted variant): the new inverse
    agrees with the ODE solution and inverts g to round-off on the chapter's range."""
    T, beta = 8, 0.05
    x0 = np.array([-3.0, -1.0, 0.5, 2.0])
    taus = np.r_[0, np.geomspace(1e-2, 1e6, 300)]
    law = theory.g_inverse(theory.g(x0, T) + beta * taus[:, None], T)
    ode = analysis.integrate_gap_ode(x0, beta, T, taus[:40])
    np.testing.assert_allclose(law[:40], ode, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(theory.g(law, T), theory.g(x0, T) + beta * taus[:, None], rtol=1e-13)
    shift = np.log(T / (T - 1))
    law_equal = theory.g_inverse(theory.g(x0 + shift, T) + beta * taus[:, None], T) - shift
    assert np.all(np.isfinite(law_equal)) and np.all(np.diff(law_equal, axis=0) >= 0)


# ------------------------------------------------------------------------------------------------
# 6. Stored results read back right.


def _encoder_folder(tmp_path, steps_by_d):
    for d, steps in steps_by_d.items():
        encoder.run_encoder_grid([d], [5.0], tmp_path, steps=steps)
    return tmp_path


def _store_foreign(folder):
    CellCache(folder, "out").save("d6_mu7_seed0", {"experiment": "other"}, record={"x": 1})
    return folder


def _sweep_with_bad_shape(tmp_path):
    ba.run_grid({"signal_norm": [5.0]}, BASE, steps=4, progress=False, cache_dir=tmp_path)
    store = CellCache(tmp_path, "cache_dir")
    (cell,) = store.cells()
    arrays = dict(cell.arrays, train_loss=np.zeros(3))
    store.save(cell.path.stem, cell.params, cell.record, arrays, cell.provenance)   # valid checksum
    return ba.run_grid({"signal_norm": [5.0]}, BASE, steps=4, progress=False, cache_dir=tmp_path)


def _run_with_bad_shape(tmp_path):
    run = encoder.train_encoder(DS(), steps=2, lr=1e-3, record_every=1, mlp_dim=4)
    encoder.save_run(run, tmp_path, "good")
    store = CellCache(tmp_path, "out")
    encoder.save_run(run, tmp_path, "bad")
    cell = store.load("bad", run.config)
    store.save("bad", cell.params, cell.record, dict(cell.arrays, **{"history.train_loss": np.zeros(7)}))
    return encoder.load_runs(tmp_path)


def _full_disk(tmp_path, monkeypatch):
    def no_space(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(CellCache, "save", no_space)
    return encoder.encoder_cell(6, 5.0, tmp_path, steps=1, mlp_dim=4)


def _stale_tmp(tmp_path, age):
    tmp = tmp_path / ".d6_mu5_seed0.json.abc123.tmp"
    tmp.write_text('{"partial": ')
    os.utime(tmp, (time.time() - age, time.time() - age))
    encoder.run_encoder_grid([6], [5.0], tmp_path, steps=1)
    return tmp.exists()


STORED_CASES = [
    ("load_grid of 2- and 3-step cells", lambda p, m: encoder.load_grid(_encoder_folder(p, {6: 2, 7: 3})),
     (ValueError, "pass steps=")),
    ("load_grid steps=2 picks one setting",
     lambda p, m: encoder.load_grid(_encoder_folder(p, {6: 2, 7: 3}), steps=2),
     _is(lambda r: list(r[0]) == [6] and r[2]["train_loss"].shape == (1, 1))),
    ("load_grid bad key", lambda p, m: encoder.load_grid(_encoder_folder(p, {6: 1}), keys=["nope"]), (ValueError, "keys")),
    ("load_grid keys a string", lambda p, m: encoder.load_grid(_encoder_folder(p, {6: 1}), keys="train_loss"),
     (TypeError, "keys")),
    ("load_grid a foreign file", lambda p, m: encoder.load_grid(_store_foreign(_encoder_folder(p, {6: 1}))),
     CacheWarning),
    ("load_grid another record key",
     lambda p, m: encoder.load_grid(_encoder_folder(p, {6: 1}), keys=["noisy_attention_x3"]),
     _is(lambda r: r[2]["noisy_attention_x3"].shape == (1, 1))),
    ("run_encoder_grid repeated values", lambda p, m: encoder.run_encoder_grid([6, 6], [5.0, 5, 5.0], p, steps=1),
     _is(lambda recs: len(recs) == 1)),
    ("run_encoder_grid colliding names", lambda p, m: encoder.run_encoder_grid([6], [5.0000001, 5.0000002], p, steps=1),
     (ValueError, "share one cell file")),
    ("run_encoder_grid a scalar mu_values", lambda p, m: encoder.run_encoder_grid([6], 5.0, p, steps=1),
     (TypeError, "mu_values")),
    ("sweep cell: valid checksum, wrong shape", lambda p, m: _sweep_with_bad_shape(p), CacheWarning),
    ("sweep cell: wrong shape recomputed right", lambda p, m: _sweep_with_bad_shape(p),
     _is(lambda r: r.data["train_loss"].shape == (1, 1) and np.isfinite(r.data["train_loss"]).all())),
    ("load_runs: a run of the wrong shape", lambda p, m: _run_with_bad_shape(p), CacheWarning),
    ("load_runs: keeps the good run", lambda p, m: _run_with_bad_shape(p), _is(lambda runs: list(runs) == ["good"])),
    ("load_runs a foreign file", lambda p, m: encoder.load_runs(_store_foreign(p)), _is(lambda runs: runs == {})),
    ("encoder_cell on a full disk keeps its result", lambda p, m: _full_disk(p, m), CacheWarning),
    ("encoder_cell on a full disk returns the record", lambda p, m: _full_disk(p, m), _is(lambda r: r["d"] == 6)),
    ("a stale .tmp of a killed write is removed", lambda p, m: _stale_tmp(p, 3600), _is(lambda exists: not exists)),
    ("a fresh .tmp (a writer at work) is kept", lambda p, m: _stale_tmp(p, 0), _is(lambda exists: exists)),
    ("CellCache.clean max_age -1", lambda p, m: CellCache(p).clean(-1), (ValueError, "max_age")),
]


@pytest.mark.parametrize("call,expect", [c[1:] for c in STORED_CASES], ids=[c[0] for c in STORED_CASES])
def test_stored_results(call, expect, tmp_path, monkeypatch):
    check_row(lambda: call(tmp_path, monkeypatch), expect)


# ------------------------------------------------------------------------------------------------
# 7. Display, plots and widgets take only what they can show.


def _fig():
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [0, 1])
    plt.close(fig)
    return fig


def _open_after_png(close):
    import matplotlib.pyplot as plt
    fig = plt.figure(figsize=(2, 1.5))
    display.png(fig, close=close)
    still = plt.fignum_exists(fig.number)
    plt.close(fig)
    return still


@lru_cache(None)
def PHASE():
    return ba.run_grid({"d": [10, 20], "signal_norm": [5.0, 20.0]}, dict(n=6, T=4, n_test=5), steps=2,
                       record_steps=[0, 2], progress=False)


@lru_cache(None)
def NO_D():
    return ba.run_grid({"signal_norm": [5.0, 20.0]}, BASE, steps=2, progress=False)


def _widgets():
    from benign_attention import widgets
    return widgets


def _figure(value, w):
    from matplotlib.figure import Figure
    assert isinstance(value, Figure)


ONE = np.ones((1, 1))
DISPLAY_CASES = [
    ("png pixel_ratio True", lambda: display.png(_fig(), pixel_ratio=True), (TypeError, "pixel_ratio")),
    ("png pixel_ratio np.float32(2)", lambda: display.png(_fig(), pixel_ratio=np.float32(2)),
     _is(lambda r: r[1][0] == 200)),
    ("png pixel_ratio torch scalar", lambda: display.png(_fig(), pixel_ratio=torch.tensor(1.0)),
     _is(lambda r: r[1][0] == 200)),
    ("png pixel_ratio 0.4", lambda: display.png(_fig(), pixel_ratio=0.4), (ValueError, "[0.5, 4]")),
    ("png pixel_ratio NaN", lambda: display.png(_fig(), pixel_ratio=float("nan")), (ValueError, "pixel_ratio")),
    ("png close 'no'", lambda: display.png(_fig(), close="no"), (TypeError, "close")),
    ("png close None", lambda: display.png(_fig(), close=None), (TypeError, "close")),
    ("png close=False keeps it open", lambda: _open_after_png(False), _is(bool)),
    ("png close=True closes it", lambda: _open_after_png(True), _is(lambda still: not still)),
    ("png of a non-figure", lambda: display.png("fig"), (TypeError, "Figure")),
    ("show alt a number", lambda: display.show(_fig(), alt=3), (TypeError, "alt")),
    ("glue name a number", lambda: display.glue(3, 1.0), (TypeError, "glue name")),
    ("glue name blank", lambda: display.glue("  ", 1.0), (ValueError, "glue name")),
    ("heat_maps one-point axes", lambda: plots.heat_maps([5.0], [2.0], [ONE], ["t"], "x", "y"), _figure),
    ("heat_maps one-point log axes", lambda: plots.heat_maps([5.0], [2.0], [ONE], ["t"], "x", "y", xlog=True, ylog=True),
     _figure),
    ("heat_maps one-point axis at 0", lambda: plots.heat_maps([0.0], [1, 2], [np.ones((1, 2))], ["t"], "x", "y"), _figure),
    ("heat_maps empty axis", lambda: plots.heat_maps([], [2.0], [np.ones((0, 1))], ["t"], "x", "y"),
     (ValueError, "at least one")),
    ("heat_maps map of the wrong shape", lambda: plots.heat_maps([1, 2], [1, 2], [np.ones((2, 3))], ["t"], "x", "y"),
     (ValueError, "maps[0] must have shape (2, 2)")),
    ("heat_maps titles missing", lambda: plots.heat_maps([1], [1], [ONE, ONE], ["t"], "x", "y"), (ValueError, "titles")),
    ("heat_maps log axis <= 0", lambda: plots.heat_maps([0.0, 1.0], [1], [np.ones((2, 1))], ["t"], "x", "y", xlog=True),
     (ValueError, "> 0")),
    ("heat_maps NaN axis", lambda: plots.heat_maps([np.nan], [1], [ONE], ["t"], "x", "y"), (ValueError, "x must be finite")),
    ("regime_maps one-point axes", lambda: plots.regime_maps([5.0], [2.0], [ONE], ["t"], "x", "y"), _figure),
    ("plane_summary one-point axes", lambda: plots.plane_summary([5.0], [2.0], ONE, ONE, "x", "y"), _figure),
    ("plane_summary wrong regime shape", lambda: plots.plane_summary([5.0], [2.0], ONE, np.ones((2, 1)), "x", "y"),
     (ValueError, "regime")),
    ("fitting_time_maps one-point, nothing fitted",
     lambda: plots.fitting_time_maps([dict(x=[1.0], y=[2.0], steps=np.full((1, 1), np.inf), xlabel="a", ylabel="b")]),
     _figure),
    ("fitting_time_maps missing key", lambda: plots.fitting_time_maps([dict(x=[1.0], y=[2.0])]), (ValueError, "missing")),
    ("explorer_phase one cell", lambda: explorer_figures.explorer_phase([100], [20], ONE, ONE), _figure),
    ("explorer_phase negative d", lambda: explorer_figures.explorer_phase([-1, 2], [20], np.ones((2, 1)), np.ones((2, 1))),
     (ValueError, "d_values")),
    ("explorer_phase vlim reversed", lambda: explorer_figures.explorer_phase([100], [20], ONE, ONE, vlim=(1, 0)), (ValueError, "vlim")),
    ("phase_figure on a grid without d", lambda: _widgets().phase_figure(NO_D(), 2), (ValueError, "axes ['d', 'signal_norm']")),
    ("phase_figure on a string", lambda: _widgets().phase_figure("grid", 2), (TypeError, "GridResult")),
    ("phase_figure step a string", lambda: _widgets().phase_figure(PHASE(), "2"), (TypeError, "step")),
    ("phase_figure panel a number", lambda: _widgets().phase_figure(PHASE(), 2, panel=3), (TypeError, "panel")),
    ("phase_figure good grid", lambda: _widgets().phase_figure(PHASE(), 2), _is(lambda r: r[1].shape == (2, 2))),
    ("phase_twin on a grid without d", lambda: _widgets().phase_twin(grid=NO_D()), (ValueError, "axes")),
    ("PhaseExplorer on a grid without d", lambda: _widgets().PhaseExplorer(grid=NO_D()), (ValueError, "axes")),
    ("PhaseExplorer on a string", lambda: _widgets().PhaseExplorer(grid="grid"), (TypeError, "GridResult")),
]


@pytest.mark.parametrize("call,expect", [c[1:] for c in DISPLAY_CASES], ids=[c[0] for c in DISPLAY_CASES])
def test_display_plots_widgets(call, expect):
    check_row(call, expect)


ALL_TABLES = {"no hang": HANG_CASES, "executors": EXECUTOR_CASES, "divergence": list(TRAINERS),
              "validate before mutating": SGD_CASES + OTHER_MUTATION_CASES, "numerics": NUMERIC_CASES,
              "stored results": STORED_CASES, "display/plots/widgets": DISPLAY_CASES}
