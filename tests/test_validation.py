"""Table-driven checks of every public entry point against bad inputs and faults.

Each row of ``CASES`` is one input and its expected outcome:

* ``raises(covers, fn, exc, name)`` - ``fn`` raises ``exc`` (ValueError, TypeError or the loaders'
  DataError) from inside the package (never from deep in torch/numpy) and the message names ``name``;
* ``ok(covers, fn, check)`` - ``fn`` returns the correct result (``check`` asserts it);
* ``warns(covers, fn, warning, check)`` - ``fn`` warns and returns a result that says what happened.

``covers`` names the public function the row exercises; :func:`test_every_public_function_is_covered`
checks that every public function of the package (except widgets/plots/display) has at least one row.
A hypothesis property test at the end checks that numeric knobs behave identically whatever type
carries them.
"""
from __future__ import annotations

import functools
import gzip
import inspect
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import benign_attention as ba
from benign_attention import display, encoder, encoder_figures
from benign_attention import analysis, cache, data, engines, metrics, model, sweeps, theory, validation
from benign_attention.engines import DivergenceWarning
from benign_attention.realdata import backbones as rm
from benign_attention.realdata import datasets as rd
from benign_attention.realdata import finetune as ft
from benign_attention.realdata import grid as rg
from benign_attention.validation import ArgumentTypeError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PACKAGE = str(Path(ba.__file__).resolve().parent)


@pytest.fixture(autouse=True)
def data_folder(monkeypatch):
    """Point the real-data loaders at ../shared/data when BENIGN_ATTENTION_DATA is unset."""
    if not os.environ.get("BENIGN_ATTENTION_DATA") and SHARED.is_dir():
        monkeypatch.setenv("BENIGN_ATTENTION_DATA", str(SHARED))


def _real_data(sub):
    return (rd.data_dir() / sub).is_dir() or (not os.environ.get("BENIGN_ATTENTION_DATA") and (SHARED / sub).is_dir())


# ----------------------------------------------------------------------------------------------
# Small objects the rows use (built once).


@functools.lru_cache(None)
def DS(seed=1, d=10):
    return ba.make_dataset(n=6, T=4, d=d, n_test=5, seed=seed)


@functools.lru_cache(None)
def RUN(engine="exact"):
    return ba.train(DS(), steps=20, record_every=10, engine=engine)


@functools.lru_cache(None)
def MANY():
    return ba.train_many([DS()], steps=10, progress=False)[0]


@functools.lru_cache(None)
def PREP():
    return ft.prepare("breast_cancer", pool_size=30, test_size=20, head_epochs=0)


@functools.lru_cache(None)
def ENC():
    return rm.Encoder("vit", 10, dim=8, depth=1, heads=2, mlp=8, patch=7)


@functools.lru_cache(None)
def HF_VIT():
    import transformers

    cfg = transformers.ViTConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8,
                                 image_size=8, patch_size=4, num_channels=1)
    return transformers.ViTModel(cfg, add_pooling_layer=False).eval()


def IMAGES():
    return rd.from_images(np.random.default_rng(0).random((6, 8, 8)), [0, 1] * 3)


def _arrays(**change):
    ds = DS()
    kw = dict(X=ds.X, y=ds.y, mu_pos=ds.mu_pos, mu_neg=ds.mu_neg, noisy=ds.noisy, X_test=ds.X_test, y_test=ds.y_test)
    kw.update(change)
    return kw


def _with_nan(a, index=(0, 0, 0)):
    b = np.array(a, dtype=float)
    b[index] = np.nan
    return b


GRID_KW = dict(base=dict(n=4, T=3, d=6, n_test=3), steps=5, progress=False)


def _grid(**kw):
    return ba.run_grid(**dict(dict(grid={"signal_norm": [2.0, 4.0]}, **GRID_KW), **kw))


def _idx(arr):
    return bytes([0, 0, 8, arr.ndim]) + np.array(arr.shape, ">u4").tobytes() + arr.astype(np.uint8).tobytes()


# ----------------------------------------------------------------------------------------------
# The table.


@dataclass
class Case:
    covers: str
    fn: object
    kind: str
    exc: type | None = None
    name: str | None = None
    check: object = None
    id: str = ""
    skip: str | None = None


CASES: list[Case] = []


def raises(covers, fn, exc, name, id=None, skip=None):
    CASES.append(Case(covers, fn, "raises", exc, name, id=id or f"{covers}:{name}:{len(CASES)}", skip=skip))


def ok(covers, fn, check=None, id=None, skip=None):
    CASES.append(Case(covers, fn, "ok", check=check, id=id or f"{covers}:ok:{len(CASES)}", skip=skip))


def warns(covers, fn, warning, check=None, id=None):
    CASES.append(Case(covers, fn, "warns", warning, check=check, id=id or f"{covers}:warns:{len(CASES)}"))


V, T = ValueError, TypeError
mk = lambda **kw: (lambda e: ba.make_dataset(**dict(dict(n=6, T=4, d=10, n_test=5), **kw)))

# --- data.make_dataset / validate_config: every knob, every kind of bad value
raises("data.make_dataset", mk(n=True), T, "n")
raises("data.make_dataset", mk(n=2.5), V, "n")
raises("data.make_dataset", mk(n=1), V, "n")
raises("data.make_dataset", mk(n=np.nan), V, "n")
raises("data.make_dataset", mk(T=2), V, "T")
raises("data.make_dataset", mk(d=None), T, "d")
raises("data.make_dataset", mk(d="big"), T, "d")
raises("data.make_dataset", mk(d=torch.tensor([10, 11])), T, "d")
raises("data.make_dataset", mk(eta=0.5), V, "eta")
raises("data.make_dataset", mk(eta=np.nan), V, "eta")
raises("data.make_dataset", mk(eta="0.3"), T, "eta")
raises("data.make_dataset", mk(rho=-0.1), V, "rho")
raises("data.make_dataset", mk(rho=1 + 0j), T, "rho")
raises("data.make_dataset", mk(rho=np.complex128(0.1)), T, "rho")
raises("data.make_dataset", mk(signal_norm=0), V, "signal_norm")
raises("data.make_dataset", mk(signal_norm=np.array([1.0, 2.0])), T, "signal_norm")
raises("data.make_dataset", mk(sigma=np.inf), V, "sigma")
raises("data.make_dataset", mk(n_test=0), V, "n_test")
raises("data.make_dataset", mk(seed=-1), V, "seed")
raises("data.make_dataset", mk(seed=np.True_), T, "seed")
raises("data.make_dataset", mk(seed=torch.tensor(True)), T, "seed")
raises("data.validate_config", lambda e: data.validate_config(n=20, eta=[0.1]), T, "eta")
ok("data.make_dataset", mk(n=10, eta=np.float32(0.3)), lambda ds: ds.noisy.sum() == 3, id="float32-eta-flips-3-of-10")
ok("data.make_dataset", mk(n=10, eta=torch.tensor(0.3)),
   lambda ds: np.array_equal(ds.y, ba.make_dataset(n=10, T=4, d=10, n_test=5, eta=0.3).y))
ok("data.make_dataset", mk(n=np.int32(6), d=torch.tensor(10), T=np.array(4), seed=np.uint8(0), signal_norm=np.float32(7.5)),
   lambda ds: np.array_equal(ds.X, mk(seed=0, signal_norm=7.5)(None).X))
ok("data.make_dataset", mk(n=6.0, d=np.float64(10.0)), lambda ds: ds.n == 6 and ds.d == 10, id="integral-floats-ok")


def _write_into(e):
    ds = mk()(e)
    with pytest.raises(ValueError, match="read-only"):
        ds.X[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="read-only"):
        ds.y[0] = 0
    return ds


ok("data.Dataset", _write_into, lambda ds: np.isfinite(ds.X).all(), id="dataset-arrays-read-only")

# --- Dataset.from_arrays and direct construction
fa = lambda **change: (lambda e: data.Dataset.from_arrays(**_arrays(**change)))
raises("data.Dataset.from_arrays", fa(X=DS().X.astype(complex) + 1j), T, "X")
raises("data.Dataset.from_arrays", fa(X=_with_nan(DS().X)), V, "X")
raises("data.Dataset.from_arrays", fa(X=DS().X[0]), V, "X")
raises("data.Dataset.from_arrays", fa(X=[[[1.0, 2.0]], [[1.0]]]), T, "X")
raises("data.Dataset.from_arrays", fa(X=None), T, "X")
raises("data.Dataset.from_arrays", fa(y=(DS().y > 0).astype(float)), V, "y")
raises("data.Dataset.from_arrays", fa(y=DS().y[:-1]), V, "y")
raises("data.Dataset.from_arrays", fa(y=["a"] * 6), T, "y")
raises("data.Dataset.from_arrays", fa(noisy=DS().noisy.astype(int)), V, "noisy")
raises("data.Dataset.from_arrays", fa(mu_pos=DS().mu_pos[:-1]), V, "mu_pos")
raises("data.Dataset.from_arrays", fa(mu_neg=DS().mu_pos), V, "mu_neg")
raises("data.Dataset.from_arrays", fa(y_test=None), V, "X_test")
raises("data.Dataset.from_arrays", fa(X_test=DS().X_test[:, :, :5]), V, "X_test")
raises("data.Dataset.from_arrays", lambda e: data.Dataset.from_arrays(**_arrays(), config=[1]), T, "config")


def _copied(e):
    X = np.array(DS().X)
    ds = data.Dataset.from_arrays(**_arrays(X=X))
    X[0, 0, 0] = np.nan  # the caller's array changes afterwards ...
    return ds


ok("data.Dataset.from_arrays", _copied, lambda ds: np.isfinite(ds.X).all() and not ds.X.flags.writeable)
ok("data.Dataset.from_arrays", lambda e: data.Dataset.from_arrays(**{k: torch.as_tensor(np.array(v)) for k, v in _arrays().items()}),
   lambda ds: ds.fingerprint == data.Dataset.from_arrays(**_arrays()).fingerprint, id="from-tensors")
raises("data.Dataset", lambda e: data.Dataset(_with_nan(DS().X), DS().y, DS().y_clean, DS().noisy, None, None,
                                              DS().mu_pos, DS().mu_neg), V, "X")
raises("data.Dataset", lambda e: data.Dataset(DS().X, DS().y, -DS().y_clean, DS().noisy, None, None,
                                              DS().mu_pos, DS().mu_neg), V, "y_clean")
ok("data.Dataset", lambda e: __import__("copy").deepcopy(DS()),
   lambda ds: not ds.X.flags.writeable and ds.fingerprint == DS().fingerprint, id="deepcopy-stays-frozen")
ok("data.Dataset", lambda e: __import__("pickle").loads(__import__("pickle").dumps(DS())),
   lambda ds: not ds.X.flags.writeable and not ds.noisy.flags.writeable, id="pickle-stays-frozen")
ok("data.Dataset.fingerprint", lambda e: (mk(seed=3)(e), mk(seed=3)(e), mk(seed=4)(e)),
   lambda t: t[0].fingerprint == t[1].fingerprint != t[2].fingerprint)
raises("data.head_vector", lambda e: data.head_vector(np.ones(3), np.ones(3)), V, "mu_pos")
raises("data.head_vector", lambda e: data.head_vector([1.0, 0.0], [0.0, 1.0, 0.0]), V, "mu_neg")
raises("data.init_W", lambda e: ba.init_W(1, 0), V, "d")
raises("data.init_W", lambda e: ba.init_W(5, -1), V, "seed")
raises("data.init_W", lambda e: ba.init_W(5, 0, dtype=np.int64), V, "dtype")
ok("data.init_W", lambda e: ba.init_W(5, 0, dtype="float32"), lambda W: W.dtype == np.float32 and W.shape == (5, 5))
raises("data.noisy_mask", lambda e: data.noisy_mask(np.ones(4), np.arange(4), 0.7), V, "eta")
raises("data.noisy_mask", lambda e: data.noisy_mask(np.ones(4), np.arange(3), 0.2), V, "flip_order")
raises("data.draw_noise", lambda e: data.draw_noise(1, 4, 5, 1.0, 3, 0), V, "n")
raises("data.draw_noise", lambda e: data.draw_noise(4, 4, 5, -1.0, 3, 0), V, "sigma")
raises("data.signal_coefficients", lambda e: data.signal_coefficients(np.ones(3), 2, 0.1), V, "T")
raises("data.assemble", lambda e: data.assemble("draw", 1.0, 0.1, 0.1, {}), T, "draw")
ok("data.check_int", lambda e: data.check_int is validation.check_int and data.check_number is validation.check_number,
   lambda same: same, id="data-re-exports-checks")

# --- validation helpers themselves
# --- what used to be computed in plots: the figures' numbers, and the checks of their maps
ok("data.token_noise", lambda e: data.token_noise(DS()), lambda eps: eps.shape == (6, 4, 10))
ok("theory.per_sample_loss_floor", lambda e: theory.per_sample_loss_floor(DS()), lambda f: f.shape == (6,) and (f > 0).all())
ok("theory.selecting_query", lambda e: theory.selecting_query(DS()), lambda q: q.shape == (10,))
ok("theory.existence_test_bound", lambda e: theory.existence_test_bound(DS(), theory.existence_query(DS(), 1.0)),
   lambda b: b >= 0)
ok("analysis.passage_times", lambda e: analysis.passage_times(np.arange(4.0), np.tile(np.arange(4.0)[:, None], (1, 3)),
                                                              [True, True, False], [1.0, 2.0]), lambda t: np.allclose(t, [1, 2]))
raises("validation.check_grid_axis", lambda e: validation.check_grid_axis("x", []), V, "x")
raises("validation.check_grid_axis", lambda e: validation.check_grid_axis("x", [0.0, 1.0], log=True), V, "x")
raises("validation.check_map", lambda e: validation.check_map("m", np.zeros((2, 2)), [1], [1, 2]), V, "m")
raises("validation.check_maps", lambda e: validation.check_maps("maps", "x", "t", [1], [1]), T, "maps")
raises("validation.check_maps", lambda e: validation.check_maps("maps", [np.zeros((1, 1))], ["a", "b"], [1], [1]), V, "titles")
raises("validation.check_map_panels", lambda e: validation.check_map_panels("panels", {}, "steps"), T, "panels")
raises("validation.check_map_panels", lambda e: validation.check_map_panels("panels", [{}], "steps"), V, "panels[0]")
raises("validation.check_int", lambda e: validation.check_int("k", True, 0), T, "k")
raises("validation.check_int", lambda e: validation.check_int("k", 3.5, 0), V, "k")
ok("validation.check_int", lambda e: validation.check_int("k", torch.tensor(3.0), 0), lambda v: v == 3 and type(v) is int)
raises("validation.check_number", lambda e: validation.check_number("x", torch.tensor([1.0, 2.0])), T, "x")
raises("validation.check_number", lambda e: validation.check_number("x", None), T, "x")
ok("validation.check_number", lambda e: validation.check_number("x", np.float32(0.1)), lambda v: v == 0.1)
ok("validation.as_scalar", lambda e: validation.as_scalar("x", torch.tensor(0.3, dtype=torch.float16)),
   lambda v: v == float(np.float16(0.3)), id="float16-exact-value")
raises("validation.as_scalar", lambda e: validation.as_scalar("x", "1"), T, "x")
raises("validation.check_bool", lambda e: validation.check_bool("flag", "yes"), T, "flag")
raises("validation.check_choice", lambda e: validation.check_choice("mode", "c", ("a", "b")), V, "mode")
raises("validation.check_dtype", lambda e: validation.check_dtype("dtype", torch.int64), V, "dtype")
ok("validation.check_dtype", lambda e: [validation.check_dtype("dtype", v) for v in ("float32", np.float64, "torch.float64")],
   lambda v: v == [torch.float32, torch.float64, torch.float64])
raises("validation.check_device", lambda e: validation.check_device("device", "gpu7"), V, "device")
raises("validation.check_array", lambda e: validation.check_array("a", np.array([1 + 1j])), T, "a")
raises("validation.check_labels", lambda e: validation.check_labels("y", [1, 0], 2), V, "y")
raises("validation.check_int_array", lambda e: validation.check_int_array("steps", [1, 2.5]), V, "steps")
raises("validation.check_path", lambda e: validation.check_path("folder", ""), V, "folder")
raises("validation.check_cache_dir", lambda e: validation.check_cache_dir("folder", Path(__file__)), V, "folder")
ok("validation.readonly", lambda e: validation.readonly(np.zeros(3)), lambda a: not a.flags.writeable)
ok("validation.shared_tensor", lambda e: (DS(), validation.shared_tensor(DS().X)),
   lambda t: t[1].data_ptr() == t[0].X.__array_interface__["data"][0], id="shared-tensor-no-copy")
raises("validation.shared_tensor", lambda e: validation.shared_tensor(np.array(["x"])), T, "a")
ok("validation.dir_is_writable", lambda e: validation.dir_is_writable(e.tmp), lambda v: v is True)
raises("validation.check_progress", lambda e: validation.check_progress("progress", "yes"), T, "progress")
ok("validation.check_progress", lambda e: validation.check_progress("progress", np.bool_(True)),
   lambda v: v == {"disable": False, "delay": 0.0})
raises("validation.check_executor", lambda e: validation.check_executor("executor", object()), V, "executor")
raises("validation.check_lr_dtype", lambda e: validation.check_lr_dtype(1e39, torch.float32), V, "lr")
ok("validation.check_lr_dtype", lambda e: validation.check_lr_dtype(1e39, torch.float64), lambda v: v == 1e39)

# --- engines.train
tr = lambda **kw: (lambda e: ba.train(**dict(dict(dataset=DS(), steps=10), **kw)))
raises("engines.train", lambda e: ba.train(None), T, "dataset")
raises("engines.train", lambda e: ba.train({}), T, "dataset")
raises("engines.train", tr(steps=-1), V, "steps")
raises("engines.train", tr(steps=True), T, "steps")
raises("engines.train", tr(lr=0), V, "lr")
raises("engines.train", tr(lr=np.nan), V, "lr")
raises("engines.train", tr(lr="0.1"), T, "lr")
raises("engines.train", tr(lr=1e39, dtype=torch.float32), V, "lr")
raises("engines.train", tr(engine="adam"), V, "engine")
raises("engines.train", tr(engine=3), T, "engine")
raises("engines.train", tr(record_every=0), V, "record_every")
raises("engines.train", tr(record_steps=[0.5, 10]), V, "record_steps")
raises("engines.train", tr(record_steps=[5, 500]), V, "record_steps")
raises("engines.train", tr(record_steps=[]), V, "record_steps")
raises("engines.train", tr(record_steps=[True, False]), T, "record_steps")
raises("engines.train", tr(record_steps=5), T, "record_steps")
raises("engines.train", tr(W0=np.zeros((3, 3))), V, "W0")
raises("engines.train", tr(W0=_with_nan(np.zeros((10, 10)), (0, 0))), V, "W0", id="W0-nan-named-finite")
raises("engines.train", tr(W0=np.zeros((10, 10), complex)), T, "W0")
raises("engines.train", tr(W0=np.zeros((10, 10)), init_seed=3), V, "init_seed")
raises("engines.train", tr(init_seed=-1), V, "init_seed")
raises("engines.train", tr(init_seed=1.5), V, "init_seed")
raises("engines.train", tr(dtype=torch.int64), V, "dtype")
raises("engines.train", tr(dtype=torch.complex64), V, "dtype")
raises("engines.train", tr(dtype="float16"), V, "dtype")
raises("engines.train", tr(dtype=5), T, "dtype")
raises("engines.train", tr(device="nope"), V, "device")
raises("engines.train", tr(device="cuda"), V, "device", skip="CUDA present" if torch.cuda.is_available() else None)
raises("engines.train", tr(progress="yes"), T, "progress")
ok("engines.train", tr(dtype="float32", record_every=10),
   lambda r: np.allclose(r.history["train_loss"], ba.train(DS(), steps=10).history["train_loss"], atol=1e-5))
ok("engines.train", tr(W0=torch.tensor(ba.init_W(10, 1)), record_every=10),
   lambda r: np.array_equal(r.history["train_loss"], ba.train(DS(), steps=10).history["train_loss"]), id="W0-tensor")
ok("engines.train", tr(record_steps=np.array([10.0, 0.0])), lambda r: list(r.steps) == [0, 10], id="integral-float-steps")
raises("engines.train", tr(record_every=5, record_steps=[10]), V, "record_steps", id="record_every-and-record_steps")
raises("sweeps.run_grid", lambda e: _grid(record_every=5, record_steps=[5]), V, "record_steps")

# the resume contract
rs = lambda run_engine="exact", **kw: (lambda e: ba.train(**dict(dict(dataset=DS(), steps=10, resume=RUN(run_engine)),
                                                                  **kw)))
for eng in ("exact", "dense"):
    raises("engines.train", rs(eng, dataset=DS(seed=2)), V, "dataset", id=f"resume-other-data-{eng}")
    raises("engines.train", rs(eng, dataset=DS(d=12)), V, "dataset", id=f"resume-other-d-{eng}")
    raises("engines.train", rs(eng, W0=ba.init_W(10, 0)), V, "W0", id=f"resume-with-W0-{eng}")
    raises("engines.train", rs(eng, init_seed=0), V, "init_seed", id=f"resume-with-init_seed-{eng}")
    raises("engines.train", rs(eng, dtype=torch.float32), V, "dtype", id=f"resume-other-dtype-{eng}")
raises("engines.train", rs("exact", engine="dense"), V, "engine", id="resume-other-engine")
raises("engines.train", lambda e: ba.train(DS(), steps=5, resume=MANY()), V, "resume", id="resume-train_many-run")
raises("engines.train", lambda e: ba.train(DS(), steps=5, resume="run"), T, "resume")


def _resume_same_data_new_object(engine):
    def fn(e):
        again = ba.make_dataset(n=6, T=4, d=10, n_test=5, seed=1)  # equal contents, another object
        return ba.train(again, steps=10, record_every=10, resume=RUN(engine), engine=engine)
    return fn


for eng in ("exact", "dense"):
    ok("engines.train", _resume_same_data_new_object(eng),
       lambda r, eng=eng: np.allclose(r.final("train_logits"),
                                      ba.train(DS(), steps=30, engine=eng, record_every=30).final("train_logits"),
                                      atol=1e-10) and list(r.steps) == [20, 30], id=f"resume-equals-one-run-{eng}")

# divergence: both engines say so, NaN metrics (never accuracy 0), no regime
big = functools.partial(ba.make_dataset, n=6, T=4, d=20, n_test=5, signal_norm=1000.0)
for eng in ("exact", "dense"):
    warns("engines.train", lambda e, eng=eng: ba.train(big(), steps=30, lr=1e36, dtype=torch.float32, engine=eng),
          DivergenceWarning, lambda r: r.diverged and np.isnan(r.final("train_acc")) and np.isnan(r.final("test_acc"))
          and theory.classify_regime(r.final("train_acc"), r.final("test_acc")) == "diverged", id=f"diverge-{eng}")
warns("engines.train_many", lambda e: ba.train_many([big(), DS()], steps=30, lr=1e36, dtype="float32", progress=False),
      DivergenceWarning, lambda rs: rs[0].diverged and not rs[1].diverged and np.isnan(rs[0].final("train_loss")))
raises("engines.Run.final", lambda e: RUN().final("nope"), V, "key")
raises("engines.check_train_args", lambda e: engines.check_train_args(-1, 0.1, "exact", None, None), V, "steps")
raises("engines.check_train_args", lambda e: engines.check_train_args(5, 0.1, "exact", 2, [1]), V, "record_every")
raises("engines.exact_gd", lambda e: engines.exact_gd(DS().X, ba.init_W(10, 0), 5), T, "ds")
raises("engines.exact_gd", lambda e: engines.exact_gd(DS(), ba.init_W(9, 0), 5), V, "W0")
raises("engines.exact_gd", lambda e: engines.exact_gd(DS(), ba.init_W(10, 0), -1), V, "steps")
raises("engines.exact_gd", lambda e: engines.exact_gd(DS(), ba.init_W(10, 0), 5, lr=0), V, "lr")
ok("engines.exact_gd", lambda e: engines.exact_gd(DS(), ba.init_W(10, 1), 20),
   lambda r: np.allclose(r[0], RUN("dense").final("train_logits"), atol=1e-12))
raises("engines.Run.at", lambda e: RUN().at("train_loss", "late"), T, "step")
raises("engines.Run.params", lambda e: MANY().params(), V, "train_many")
ok("engines.Run.params", lambda e: RUN("dense").params(), lambda wp: wp[0].shape == (10, 10))

# --- engines.train_many
raises("engines.train_many", lambda e: ba.train_many(None), T, "datasets")
raises("engines.train_many", lambda e: ba.train_many(DS()), T, "datasets")
raises("engines.train_many", lambda e: ba.train_many([DS(), None], progress=False), T, "datasets[1]")
raises("engines.train_many", lambda e: ba.train_many([DS(), DS(2)], W0s=[ba.init_W(10, 0)], progress=False), V, "W0s")
raises("engines.train_many", lambda e: ba.train_many([DS(), DS(2)], init_seeds=[0], progress=False), V, "init_seeds")
raises("engines.train_many", lambda e: ba.train_many([DS(), DS(2)], init_seeds=[0, -1], progress=False), V,
       "init_seeds[1]")
raises("engines.train_many", lambda e: ba.train_many([DS()], W0s=[None], progress=False), T, "W0s[0]")
raises("engines.train_many", lambda e: ba.train_many([DS()], W0s=[ba.init_W(10, 0)], init_seeds=[0]), V, "init_seeds")
ok("engines.train_many", lambda e: ba.train_many([], progress=False), lambda r: r == [])
raises("engines.record_schedule", lambda e: ba.record_schedule(10, 0), V, "record_every")
raises("engines.record_schedule", lambda e: ba.record_schedule(-1), V, "steps")
raises("engines.log_schedule", lambda e: ba.log_schedule(100, 1), V, "num")
raises("engines.check_dataset", lambda e: engines.check_dataset("ds", [1]), T, "ds")

# --- sweeps.run_grid / train_cell / GridResult
raises("sweeps.run_grid", lambda e: ba.run_grid(None), T, "grid")
raises("sweeps.run_grid", lambda e: ba.run_grid({"d": 5}), T, "grid")
raises("sweeps.run_grid", lambda e: ba.run_grid({"d": "abc"}), T, "grid")
raises("sweeps.run_grid", lambda e: ba.run_grid({"lr": [1e-3]}), V, "grid")
raises("sweeps.run_grid", lambda e: ba.run_grid({"d": []}), V, "grid")
raises("sweeps.run_grid", lambda e: ba.run_grid({"d": [6]}, base={"lr": 1}), V, "base")
raises("sweeps.run_grid", lambda e: ba.run_grid({"d": [6]}, base="n=4"), T, "base")
raises("sweeps.run_grid", lambda e: ba.run_grid({"d": [6]}, base={"d": 8}), V, "base")
raises("sweeps.run_grid", lambda e: ba.run_grid({"eta": [0.7]}), V, "eta")
raises("sweeps.run_grid", lambda e: _grid(cache_dir=""), V, "cache_dir")
raises("sweeps.run_grid", lambda e: _grid(cache_dir=Path(__file__)), V, "cache_dir")
raises("sweeps.run_grid", lambda e: _grid(cache_dir=5), T, "cache_dir")
raises("sweeps.run_grid", lambda e: _grid(workers=0), V, "workers")
raises("sweeps.run_grid", lambda e: _grid(dtype="float16"), V, "dtype")
raises("sweeps.run_grid", lambda e: _grid(progress=2), T, "progress")
raises("sweeps.run_grid", lambda e: _grid(record_steps=[2.5]), V, "record_steps")


def _readonly_cache(e):
    e.mp.setattr(cache, "dir_is_writable", lambda path: False)  # root ignores permission bits
    return _grid(cache_dir=e.tmp / "ro")


raises("sweeps.run_grid", _readonly_cache, V, "cache_dir", id="read-only-cache-refused-before-work")


def _readonly_cache_fully_cached(e):
    first = _grid(cache_dir=e.tmp / "c", dtype=torch.float64)
    e.mp.setattr(cache, "dir_is_writable", lambda path: False)
    again = _grid(cache_dir=e.tmp / "c", dtype=torch.float64)
    return first, again


ok("sweeps.run_grid", _readonly_cache_fully_cached,
   lambda t: all(np.array_equal(t[0].data[k], t[1].data[k]) for k in t[0].data), id="read-only-cache-still-read")


def _cell_path_is_a_folder(e):
    _grid(cache_dir=e.tmp)
    victim = sorted(e.tmp.glob("*.json"))[0]
    victim.unlink()
    victim.mkdir()
    return _grid(cache_dir=e.tmp)


raises("sweeps.run_grid", _cell_path_is_a_folder, V, "cache_dir", id="folder-in-the-way-of-a-cell")


def _home_cache(e):
    e.mp.setenv("HOME", str(e.tmp / "home"))
    (e.tmp / "cwd").mkdir()
    e.mp.chdir(e.tmp / "cwd")
    _grid(cache_dir="~/cells")
    return e.tmp


ok("sweeps.run_grid", _home_cache, lambda tmp: len(list((tmp / "home" / "cells").glob("*.json"))) == 2
   and not (tmp / "cwd" / "~").exists(), id="cache-dir-tilde-expanded")


def _save_fails(e):
    def fail(*a, **k):
        raise OSError(28, "No space left on device")
    e.mp.setattr(cache.CellCache, "save", fail)
    return _grid(cache_dir=e.tmp, dtype=torch.float64)


warns("sweeps.run_grid", _save_fails, sweeps.CacheWarning,
      lambda g: all(np.array_equal(g.data[k], _grid(dtype=torch.float64).data[k]) for k in g.data),
      id="unwritable-cell-keeps-result")
ok("sweeps.run_grid", lambda e: (_grid(grid={"eta": [np.float32(0.3)]}, base=dict(n=10, T=3, d=6, n_test=3)),
                                  _grid(grid={"eta": [0.3]}, base=dict(n=10, T=3, d=6, n_test=3))),
   lambda t: all(np.array_equal(t[0].data[k], t[1].data[k]) for k in t[0].data), id="grid-float32-eta")
warns("sweeps.run_grid", lambda e: ba.run_grid({"signal_norm": [2.0, 1000.0]}, base=dict(n=6, T=4, d=20, n_test=5),
                                               steps=30, lr=1e36, progress=False), DivergenceWarning,
      lambda g: list(g.diverged) == [False, True] and np.isnan(g.final("train_acc")[1])
      and np.isnan(theory.classify_regime(g.final("train_acc"), g.final("test_acc"))[1]), id="grid-divergence-marked")


def _repaired_equals_clean(e):
    clean = ba.run_grid({"signal_norm": [2.0, 5.0, 9.0]}, base=dict(n=6, T=4, d=30, n_test=20), steps=60,
                        progress=False, cache_dir=e.tmp)
    sorted(e.tmp.glob("*.json"))[1].write_bytes(b"corrupt")
    repaired = ba.run_grid({"signal_norm": [2.0, 5.0, 9.0]}, base=dict(n=6, T=4, d=30, n_test=20), steps=60,
                           progress=False, cache_dir=e.tmp)
    return clean, repaired


warns("sweeps.run_grid", _repaired_equals_clean, sweeps.CacheWarning,
      lambda t: all(np.array_equal(t[0].data[k], t[1].data[k], equal_nan=True) for k in t[0].data),
      id="float32-repaired-sweep-equals-clean")
raises("sweeps.GridResult.final", lambda e: _grid().final("nope"), V, "key")
raises("sweeps.GridResult.at", lambda e: _grid().at("train_loss", None), T, "step")
ok("sweeps.GridResult.at", lambda e: _grid(), lambda g: np.array_equal(g.at("test_loss", 10**6), g.final("test_loss")))
raises("sweeps.train_cell", lambda e: sweeps.train_cell(steps=5, lr2=1), V, "lr2")
raises("sweeps.train_cell", lambda e: sweeps.train_cell(steps=5, d=1), V, "d")
raises("sweeps.train_cell", lambda e: sweeps.train_cell(steps=5, dtype="int"), V, "dtype")
ok("sweeps.default_cache_dir", lambda e: (e.mp.setenv("BENIGN_ATTENTION_CACHE", "~/somewhere"), sweeps.default_cache_dir())[1],
   lambda p: "~" not in str(p))

# --- cache (the one cell cache of every grid)
raises("cache.cell_key", lambda e: cache.cell_key([1, 2]), T, "params")
ok("cache.cell_key", lambda e: (cache.cell_key({"a": 1, "b": 2.0}), cache.cell_key({"b": 2.0, "a": 1})),
   lambda t: t[0] == t[1] and len(t[0]) == 24)
ok("cache.provenance", lambda e: cache.provenance("cuda", 3),
   lambda p: p["device"] == "cuda" and p["threads"] == 3 and p["package"] == ba.__version__
   and p["commit"] and p["date"] and p["torch"])
ok("cache.source_commit", lambda e: cache.source_commit(), lambda c: isinstance(c, str) and c)
raises("cache.stored", lambda e: cache.stored(3), T, "stored")
raises("cache.stored", lambda e: cache.stored("no-such-result"), V, "stored")
raises("cache.stored", lambda e: cache.stored("../../benign_attention"), V, "stored")
raises("cache.stored", lambda e: cache.stored(""), V, "stored")
raises("cache.CellGrid", lambda e: cache.CellGrid("x", {}, lambda: [], lambda: []).run([], progress="yes"), T,
       "progress")
ok("cache.stored", lambda e: cache.stored("encoder"), lambda v: v.is_dir())
ok("cache.stored", lambda e: cache.stored("benchmarks/encoder_2core.json"), lambda v: v.is_file())
raises("cache.CellCache", lambda e: cache.CellCache(""), V, "folder")
raises("cache.CellCache.path", lambda e: cache.CellCache(e.tmp).path("../x"), V, "name")
raises("cache.CellCache.save", lambda e: cache.CellCache(e.tmp).save("c", [1]), T, "params")
raises("cache.CellCache.save", lambda e: cache.CellCache(e.tmp).save("c", {}, {"x": object()}), T, "record")
raises("cache.CellCache.save", lambda e: cache.CellCache(e.tmp).save("c", {}, arrays={"x": np.array(["a"])}), T,
       "arrays")
ok("cache.CellCache.load", lambda e: cache.CellCache(e.tmp).load("missing", {}), lambda v: v is None)
warns("cache.CellCache.load", lambda e: ((e.tmp / "c.json").write_text("{"), cache.CellCache(e.tmp).load("c", {}))[1],
      cache.CacheWarning, lambda v: v is None, id="corrupt-cell-warns")
raises("cache.CellCache.load", lambda e: ((e.tmp / "c.json").mkdir(), cache.CellCache(e.tmp).load("c", {}))[1], V,
       "folder")
raises("cache.CellCache.cells", lambda e: cache.CellCache(Path(__file__)).cells(), V, "folder")
ok("cache.CellCache.cells", lambda e: cache.CellCache(e.tmp / "none").cells(), lambda v: v == [])

# --- theory
# encoder (chapter *Beyond one head*) and display (the figure convention)
raises("encoder.EncoderReference", lambda e: encoder.EncoderReference(d=-1), V, "d")
raises("encoder.EncoderReference", lambda e: encoder.EncoderReference(d=8, mlp_dim=True), T, "mlp_dim")
raises("encoder.make_encoder", lambda e: encoder.make_encoder(d=0), V, "d")
raises("encoder.make_encoder", lambda e: encoder.make_encoder(d=8, dtype="int64"), V, "dtype")
raises("encoder.fast_forward", lambda e: encoder.fast_forward(None, np.zeros((2, 3, 8))), V, "model")
raises("encoder.step_flops", lambda e: encoder.step_flops(n=-1, T=8, d=10, mlp_dim=10), V, "n")
raises("encoder.step_flops", lambda e: encoder.step_flops(n=2, T=8, d=10, mlp_dim=10, path="slow"), V, "path")
ok("encoder.step_flops", lambda e: (encoder.step_flops(20, 8, 64, 64, path="fast"),
                                    encoder.step_flops(20, 8, 64, 64, path="reference")), lambda r: r[0] < r[1])
raises("encoder.train_encoder", lambda e: encoder.train_encoder(None), T, "ds")
raises("encoder.train_encoder", lambda e: encoder.train_encoder(DS(), steps=-1, mlp_dim=8), V, "steps")
raises("encoder.train_encoder", lambda e: encoder.train_encoder(DS(), lr=float("nan"), mlp_dim=8), V, "lr")
raises("analysis.attention_by_type", lambda e: analysis.attention_by_type(None, [True]), T, "run")
raises("analysis.attention_by_type", lambda e: analysis.attention_by_type(
    encoder.train_encoder(DS(), steps=2, mlp_dim=8, record_every=1), [1, 0]), V, "mask")
raises("encoder.load_grid", lambda e: encoder.load_grid("/nonexistent/benign-attention"), V, "folder")
raises("encoder.encoder_cell", lambda e: encoder.encoder_cell(d=0, mu=5.0, out=e.tmp), V, "d")
raises("encoder.run_encoder_grid", lambda e: encoder.run_encoder_grid([0], [5.0], e.tmp), V, "d_values")
raises("encoder.sgd_step", lambda e: encoder.sgd_step(None, torch.zeros(2, 3, 8), torch.ones(2), 0.1), T, "model")
raises("encoder.sgd_step", lambda e: encoder.sgd_step(encoder.make_encoder(8, 4), torch.zeros(2, 3, 8),
                                                      torch.ones(2), -1.0), V, "lr")
raises("encoder.sgd_step", lambda e: encoder.sgd_step(encoder.make_encoder(8, 4), torch.zeros(2, 3, 7),
                                                      torch.ones(2), 0.1), V, "X")
ok("encoder.sgd_step", lambda e: encoder.sgd_step(encoder.make_encoder(8, 4), torch.ones(2, 3, 8),
                                                  torch.tensor([1.0, -1.0]), 0.1), lambda r: len(r) == 3)
raises("encoder.save_run", lambda e: encoder.save_run({"steps": [0]}, e.tmp, "x"), T, "run")
raises("encoder.load_runs", lambda e: encoder.load_runs("/nonexistent/benign-attention"), V, "folder")
raises("encoder_figures.encoder_boundary", lambda e: encoder_figures.encoder_boundary([250, 500], {"seed 0": [1.0]}), V, "boundaries")
raises("encoder_figures.encoder_boundary", lambda e: encoder_figures.encoder_boundary([250], {}), V, "boundaries")
ok("encoder_figures.encoder_boundary", lambda e: encoder_figures.encoder_boundary([250, 500], {"a": [10.0, np.nan]}),
   lambda fig: len(fig.axes) == 1)
ok("encoder_figures.encoder_boundary", lambda e: encoder_figures.encoder_boundary(
    [250, 500], [{"a": [10.0, 12.0]}, {"a": [14.0, np.nan]}], threshold=[0.41, 0.1]), lambda fig: len(fig.axes) == 2)
raises("encoder_figures.encoder_boundary", lambda e: encoder_figures.encoder_boundary(
    [250, 500], {"a": [10.0, 12.0]}, threshold=[0.41, 0.1]), V, "boundaries")
raises("encoder_figures.encoder_boundary", lambda e: encoder_figures.encoder_boundary(
    [250, 500], {"a": [10.0, 12.0]}, threshold="low"), V, "threshold")
raises("encoder.train_encoder", lambda e: encoder.train_encoder(ba.make_dataset(n=4, T=3, d=5, n_test=2), steps=1, mlp_dim=3,
                                                                init_state=[0.0]), T, "init_state")
raises("encoder.run_encoder_grid", lambda e: encoder.run_encoder_grid([8], [5.0], e.tmp, lr=-1.0), V, "lr")
raises("encoder.run_encoder_grid", lambda e: encoder.run_encoder_grid([8], [5.0], e.tmp, mlp_dim=0), V, "mlp_dim")
raises("encoder.load_grid", lambda e: encoder.load_grid(e.tmp, mlp_dim=0), V, "mlp_dim")
raises("encoder.load_grid", lambda e: encoder.load_grid(e.tmp, seed=-1), V, "seed")
raises("encoder.run_encoder_grid", lambda e: encoder.run_encoder_grid([8], [-1.0], e.tmp), V, "mu_values[0]")
raises("encoder.run_encoder_grid", lambda e: encoder.run_encoder_grid([8], [5.0], e.tmp, progress="yes"), T, "progress")
raises("encoder_figures.encoder_loss_maps", lambda e: encoder_figures.encoder_loss_maps([1, 2], [1, 2], np.zeros((3, 3)), np.zeros((3, 3))),
       V, "train_loss")
raises("encoder_figures.encoder_dynamics", lambda e: encoder_figures.encoder_dynamics({}), V, "settings")
raises("display.png", lambda e: display.png(None), T, "fig")
raises("display.show", lambda e: display.show("not a figure"), T, "fig")
raises("display.figure_problems", lambda e: display.figure_problems(None), T, "fig")
raises("display.glue", lambda e: display.glue("", 1.0), V, "name")
ok("display.glue", lambda e: display.glue("x", np.float32(0.5)))
raises("theory.fixed_attention_accuracy", lambda e: theory.fixed_attention_accuracy([0.5, 0.5], 0.1, 20), V, "weights")
raises("theory.fixed_attention_accuracy", lambda e: theory.fixed_attention_accuracy([0.5, 0.25, 0.25], -1, 20), V, "rho")
ok("theory.fixed_attention_accuracy", lambda e: theory.fixed_attention_accuracy(np.full(8, 1 / 8), 0.1, 5.0),
   lambda x: abs(x - 0.5 * (1 + __import__("math").erf(5.0 / 4 / 2 ** 0.5))) < 1e-12)
raises("theory.wrong_label_best_token", lambda e: theory.wrong_label_best_token(0.1, 20, T=2), V, "T")
raises("theory.wrong_label_best_token", lambda e: theory.wrong_label_best_token(0.1, -20, T=8), V, "signal_norm")
ok("theory.wrong_label_best_token", lambda e: theory.wrong_label_best_token(0.1, 20, T=8),
   lambda p: abs(sum(p.values()) - 1) < 1e-6 and p["x3"] > p["x2"])
raises("theory.existence_accuracies", lambda e: theory.existence_accuracies(None, [0.1]), T, "ds")
raises("theory.existence_accuracies", lambda e: theory.existence_accuracies(DS(), [[0.1]]), V, "cs")
raises("theory.existence_accuracies", lambda e: theory.existence_accuracies(DS(), [np.nan]), V, "cs")
raises("theory.fitting_step", lambda e: theory.fitting_step([0, 10], [[1, 1, 1]]), V, "train_acc")
raises("theory.fitting_step", lambda e: theory.fitting_step([[0, 10]], [1, 1]), V, "train_acc")
ok("theory.fitting_step", lambda e: theory.fitting_step([0, 10, 20], [[0.8, 1, 1], [1, 0.9, 1], [1, 1, 0.9]]),
   lambda x: list(x[:2]) == [10, 20] and np.isinf(x[2]))
# analysis: numbers read off runs and grids
raises("analysis.first_fit_step", lambda e: analysis.first_fit_step(DS()), T, "run")
raises("analysis.first_fit_step", lambda e: analysis.first_fit_step(RUN(), key="accuracy"), V, "key")
ok("analysis.first_fit_step", lambda e: analysis.first_fit_step(RUN()),
   lambda s: np.isnan(s) or s in RUN().steps)
raises("analysis.onset", lambda e: analysis.onset(RUN(), 0.5), T, "runs")
raises("analysis.onset", lambda e: analysis.onset([DS()], 0.5), T, "runs[0]")
raises("analysis.onset", lambda e: analysis.onset([RUN()], np.nan), V, "level")
raises("analysis.onset", lambda e: analysis.onset([RUN()], 0.5, key="accuracy"), V, "key")
ok("analysis.onset", lambda e: analysis.onset([RUN(), RUN()], -1.0), lambda s: (s == 0).all() and s.shape == (2,))
ok("analysis.onset", lambda e: analysis.onset([RUN()], 2.0), lambda s: np.isnan(s).all())
raises("analysis.noisy_tokens", lambda e: analysis.noisy_tokens([RUN()], []), V, "runs and datasets")
raises("analysis.noisy_tokens", lambda e: analysis.noisy_tokens([DS()], [DS()]), T, "runs[0]")
ok("analysis.noisy_tokens", lambda e: analysis.noisy_tokens([RUN()], [DS()]),
   lambda tb: tb[0].shape == tb[1].shape == (DS().noisy.sum(),) and (tb[1] < DS().T).all())
raises("analysis.sample_attention", lambda e: analysis.sample_attention(RUN(), 6), V, "i")
raises("analysis.sample_attention", lambda e: analysis.sample_attention(RUN(), 0.5), V, "i")
ok("analysis.sample_attention", lambda e: analysis.sample_attention(RUN(), 0),
   lambda a: a.shape == (len(RUN().steps), 4) and np.allclose(a.sum(-1), 1))
raises("analysis.selection_gaps", lambda e: analysis.selection_gaps(np.zeros(4), [True]), V, "logits")
raises("analysis.selection_gaps", lambda e: analysis.selection_gaps(np.zeros((2, 6, 4)), [True, False]), V, "noisy")
ok("analysis.selection_gaps", lambda e: analysis.selection_gaps([[[2.0, 0, 0], [0, 0, 3.0]]], [False, True]),
   lambda x: np.allclose(x, [[2.0, 3.0]]))
raises("analysis.first_passage", lambda e: analysis.first_passage([0, 1], [0, 1, 2], [0.5]), V, "values")
raises("analysis.first_passage", lambda e: analysis.first_passage([0, 1], [0, 1], [np.nan]), V, "levels")
ok("analysis.first_passage", lambda e: analysis.first_passage([0, 10, 20], [0, 1, 2], [0.5, 2, 3]),
   lambda t: np.allclose(t[:2], [5, 20]) and np.isnan(t[2]))
raises("analysis.late_linear_fit", lambda e: analysis.late_linear_fit([0, 1, 2], [0, 1], 0), V, "y")
raises("analysis.late_linear_fit", lambda e: analysis.late_linear_fit([0, 1, 2], [0, 1, 2], 2), V, "start")
raises("analysis.late_linear_fit", lambda e: analysis.late_linear_fit([0, 1, 2], [0, 1, 2], "late"), T, "start")
ok("analysis.late_linear_fit", lambda e: analysis.late_linear_fit([0, 1, 2, 3], [1, 3, 5, np.nan], 0),
   lambda f: np.allclose(f, (2, 1, 1)))
raises("analysis.integrate_gap_ode", lambda e: analysis.integrate_gap_ode([0.0], 1.0, 0, [0, 1]), V, "T")
raises("analysis.integrate_gap_ode", lambda e: analysis.integrate_gap_ode([0.0], -1.0, 8, [0, 1]), V, "c")
raises("analysis.integrate_gap_ode", lambda e: analysis.integrate_gap_ode([0.0], 1.0, 8, [1, 0]), V, "taus")
ok("analysis.integrate_gap_ode", lambda e: analysis.integrate_gap_ode([0.0, 1.0], 2.0, 8, [0, 1, 5]),
   lambda x: x.shape == (3, 2) and np.allclose(theory.g(x, 8) - theory.g(x[0], 8), [[0, 0], [2, 2], [10, 10]]))
raises("analysis.ks_two_sample", lambda e: analysis.ks_two_sample([[1.0, 2.0]], [1.0]), V, "a")
raises("analysis.ks_two_sample", lambda e: analysis.ks_two_sample([1.0], [np.nan]), V, "b")
raises("analysis.ks_two_sample", lambda e: analysis.ks_two_sample([1.0], []), V, "at least one")
ok("analysis.ks_two_sample", lambda e: analysis.ks_two_sample([0.0, 1.0], [0.0, 1.0]), lambda out: out == (0.0, 1.0))
raises("analysis.boundary_crossing", lambda e: analysis.boundary_crossing([1, 0], [1, 2], 0.5), V, "values")
raises("analysis.boundary_crossing", lambda e: analysis.boundary_crossing([[1, 0]], [1, 2], np.nan), V, "threshold")
raises("analysis.boundary_crossing", lambda e: analysis.boundary_crossing([[1, 0]], [1, 2], 0.5, above="no"), T, "above")
ok("analysis.boundary_crossing", lambda e: analysis.boundary_crossing([[1, 0], [1, 1]], [1, 2], 0.5, above=False),
   lambda x: np.allclose(x[0], 1.5) and np.isnan(x[1]))
raises("theory.snr", lambda e: theory.snr(-1, 100), V, "signal_norm")
raises("theory.snr", lambda e: theory.snr(10, 0), V, "d")
raises("theory.snr", lambda e: theory.snr(10, 100, sigma=0), V, "sigma")
raises("theory.snr", lambda e: theory.snr([1, 2], [1, 2, 3]), V, "signal_norm")
raises("theory.snr", lambda e: theory.snr("big", 100), T, "signal_norm")
raises("theory.snr_upper_order", lambda e: theory.snr_upper_order(0), V, "n")
raises("theory.snr_lower_order", lambda e: theory.snr_lower_order(-5), V, "d")
raises("theory.g", lambda e: theory.g(1.0, 0), V, "T")
raises("theory.g", lambda e: theory.g("a", 8), T, "x")
raises("theory.g_inverse", lambda e: theory.g_inverse(1.0, 8, iters=0), V, "iters")
ok("theory.g_inverse", lambda e: theory.g_inverse(theory.g(np.float32(1.5), 8), 8), lambda x: abs(x - 1.5) < 1e-12)
raises("theory.logit_gaps", lambda e: theory.logit_gaps(np.zeros((4, 3)), [True] * 3), V, "noisy")
raises("theory.logit_gaps", lambda e: theory.logit_gaps(np.zeros((4, 3)), [True] * 4, selected=5), V, "selected")
raises("theory.logit_gaps", lambda e: theory.logit_gaps(np.zeros(3), [True] * 3), V, "logits")
raises("theory.existence_query", lambda e: theory.existence_query(None, 1.0), T, "ds")
raises("theory.existence_query", lambda e: theory.existence_query(DS(), -1.0), V, "c")
raises("theory.existence_query", lambda e: theory.existence_query(data.Dataset.from_arrays(**_arrays()), 1.0), V, "rho")
raises("theory.evaluate_query", lambda e: theory.evaluate_query(DS(), np.zeros(3)), V, "q")
raises("theory.analytic_gradients", lambda e: theory.analytic_gradients(DS(), np.zeros((3, 3)), np.zeros(10)), V, "W")
raises("theory.analytic_gradients", lambda e: theory.analytic_gradients(DS(), np.zeros((10, 10)), [np.nan] * 10), V, "p")
ok("theory.classify_regime", lambda e: theory.classify_regime(np.nan, np.nan), lambda r: r == theory.DIVERGED)
ok("theory.classify_regime", lambda e: theory.classify_regime([1.0, np.nan, 0.5], [1.0, 0.2, 0.9]),
   lambda r: r[0] == 1 and np.isnan(r[1]) and r[2] == 0, id="regime-array-nan-cell")
ok("theory.classify_regime", lambda e: theory.classify_regime([1.0, 0.5], [1.0, 0.9]),
   lambda r: r.dtype.kind == "i" and list(r) == [1, 0], id="regime-array-ints")
raises("theory.classify_regime", lambda e: theory.classify_regime(1.5, 1.0), V, "train_acc")
raises("theory.classify_regime", lambda e: theory.classify_regime([1, 1], [1, 0.5, 1]), V, "train_acc")
raises("theory.classify_regime", lambda e: theory.classify_regime(1, 1, test_threshold=2), V, "test_threshold")
raises("theory.classify_regime", lambda e: theory.classify_regime(None, 1), T, "train_acc")
# the loss rule of def-regime-finite: harmful = every label fitted and test loss >= LOSS_THRESHOLD
ok("theory.classify_regime", lambda e: [theory.classify_regime(tr, test_loss=loss) for tr, loss in
                                        ((1.0, 0.6), (1.0, theory.LOSS_THRESHOLD), (1.0, 0.45), (0.9, 0.6))],
   lambda r: r == ["harmful", "harmful", "benign", "not overfitting"], id="regime-loss-rule")
ok("theory.classify_regime", lambda e: theory.classify_regime([1.0, 1.0, 0.5], test_loss=[0.6, np.nan, 0.2]),
   lambda r: r[0] == 2 and np.isnan(r[1]) and r[2] == 0, id="regime-loss-array-nan-cell")
ok("theory.classify_regime", lambda e: theory.classify_regime(1.0, test_loss=0.45, loss_threshold=0.4),
   lambda r: r == "harmful", id="regime-loss-threshold")
# the accuracy rule differs where the untrained model is already below theta: fitted, loss low, accuracy 0.9
ok("theory.classify_regime", lambda e: (theory.classify_regime(1.0, 0.9), theory.classify_regime(1.0, test_loss=0.45)),
   lambda r: r == ("harmful", "benign"), id="regime-rules-differ")
raises("theory.classify_regime", lambda e: theory.classify_regime(1.0), V, "test_loss")
raises("theory.classify_regime", lambda e: theory.classify_regime(1.0, 1.0, test_loss=0.3), V, "test_acc")
raises("theory.classify_regime", lambda e: theory.classify_regime(1.0, test_loss=-0.1), V, "test_loss")
raises("theory.classify_regime", lambda e: theory.classify_regime([1, 1], test_loss=[0.1, 0.2, 0.3]), V, "test_loss")
raises("theory.classify_regime", lambda e: theory.classify_regime(1.0, test_loss=0.3, loss_threshold=0), V,
       "loss_threshold")
raises("theory.fit_exponential_time", lambda e: theory.fit_exponential_time([1.0], [1.0]), V, "gaps")
raises("theory.fit_exponential_time", lambda e: theory.fit_exponential_time([1, 2], [1, 2, 3]), V, "gaps")

# --- metrics
L = torch.zeros(2, 3, 4)
raises("metrics.batch_metrics", lambda e: metrics.batch_metrics(L, torch.zeros(3, 4), torch.ones(4)), V, "y")
raises("metrics.batch_metrics", lambda e: metrics.batch_metrics("x", torch.zeros(3, 4), torch.ones(3)), T, "logits")
raises("metrics.batch_metrics", lambda e: metrics.batch_metrics(L, torch.zeros(3, 4), torch.ones(3), noisy=torch.zeros(3, dtype=bool)),
       V, "y_clean")
raises("metrics.batch_metrics", lambda e: metrics.batch_metrics(L, torch.zeros(3, 4), torch.ones(3), torch.ones(3), torch.zeros(3)),
       V, "noisy")
ok("metrics.batch_metrics", lambda e: metrics.batch_metrics(torch.full((3, 4), float("nan")), torch.zeros(3, 4), torch.ones(3)),
   lambda out: torch.isnan(out["train_acc"]) and torch.isnan(out["train_loss"]), id="nan-logits-nan-accuracy")
raises("metrics.attention_by_type", lambda e: metrics.attention_by_type(torch.ones(2, 2)), V, "attention")
raises("metrics.logistic_loss", lambda e: metrics.logistic_loss(torch.ones(3), torch.ones(4)), V, "y")
raises("metrics.outputs_and_attention", lambda e: metrics.outputs_and_attention(torch.ones(2, 3), torch.ones(2, 4)), V, "z")
ok("metrics.outputs_and_attention", lambda e: metrics.outputs_and_attention(np.zeros((2, 3)), np.ones((2, 3))),
   lambda fa: torch.allclose(fa[0], torch.ones(2, dtype=fa[0].dtype)))

# --- model
raises("model.AttentionModel", lambda e: ba.AttentionModel([1.0]), V, "nu")
raises("model.AttentionModel", lambda e: ba.AttentionModel(DS().nu, W=np.zeros((3, 3))), V, "W")
raises("model.AttentionModel", lambda e: ba.AttentionModel(DS().nu, W=_with_nan(np.zeros((10, 10)), (1, 1))), V, "W")
raises("model.AttentionModel", lambda e: ba.AttentionModel(DS().nu, p=np.zeros(3)), V, "p")
raises("model.AttentionModel", lambda e: ba.AttentionModel(DS().nu, dtype=torch.int32), V, "dtype")
raises("model.AttentionModel", lambda e: ba.AttentionModel(DS().nu, seed=-2), V, "seed")
raises("model.AttentionModel.forward", lambda e: ba.AttentionModel(DS().nu)(np.zeros((2, 4, 3))), V, "X")
raises("model.AttentionModel.forward", lambda e: ba.AttentionModel(DS().nu)(torch.zeros(2, 4, 10, dtype=torch.cfloat)),
       T, "X")
ok("model.AttentionModel.forward", lambda e: ba.AttentionModel(DS().nu)(DS().X),
   lambda fa: torch.allclose(fa[1], torch.full_like(fa[1], 0.25)))

# --- realdata.datasets
needs_mnist = None if _real_data("mnist") else "MNIST files not in the data folder"
needs_trec = None if _real_data("trec") else "TREC files not in the data folder"
raises("realdata.datasets.parse_idx", lambda e: rd.parse_idx(b"\x01\x00\x08\x01" + bytes(8), source="f.idx"), rd.DataError, "f.idx")
raises("realdata.datasets.parse_idx", lambda e: rd.parse_idx(_idx(np.zeros(3))[:-1], source="lab.idx"), rd.DataError, "lab.idx")
raises("realdata.datasets.parse_idx", lambda e: rd.parse_idx("text"), T, "raw")
raises("realdata.datasets.parse_trec", lambda e: rd.parse_trec("FOO:bar What ?\n", source="t.label"), rd.DataError, "t.label")
raises("realdata.datasets.parse_trec", lambda e: rd.parse_trec("NUM:date\n", source="t.label"), rd.DataError, "t.label")
raises("realdata.datasets.parse_trec", lambda e: rd.parse_trec(b"NUM:date When ?"), T, "text")
ok("realdata.datasets.parse_trec", lambda e: rd.parse_trec("NUM:date\tWhen was it ?\nHUM:ind  Who ?\n"),
   lambda r: r == (["NUM", "HUM"], ["date", "ind"], ["When was it ?", "Who ?"]), id="trec-tab-keeps-first-word")


def _swapped_mnist_labels(e):
    src = rd.data_dir() / "mnist"
    (e.tmp / "mnist").mkdir()
    (e.tmp / "mnist" / rd.MNIST_FILES[0]).symlink_to(src / rd.MNIST_FILES[0])
    labels = rd.parse_idx(gzip.decompress((src / rd.MNIST_FILES[1]).read_bytes())).copy()
    i, j = 0, int(np.flatnonzero(labels != labels[0])[0])
    labels[[i, j]] = labels[[j, i]]  # same label counts, wrong labels
    (e.tmp / "mnist" / rd.MNIST_FILES[1]).write_bytes(gzip.compress(_idx(labels)))
    return rd.load_mnist(e.tmp)


raises("realdata.datasets.load_mnist", _swapped_mnist_labels, rd.DataError, rd.MNIST_FILES[1], skip=needs_mnist)


def _bad_idx_names_file(e):
    (e.tmp / "mnist").mkdir()
    src = rd.data_dir() / "mnist"
    (e.tmp / "mnist" / rd.MNIST_FILES[0]).symlink_to(src / rd.MNIST_FILES[0])
    (e.tmp / "mnist" / rd.MNIST_FILES[1]).write_bytes(gzip.compress(b"\x00\x00\x0d\x01" + bytes(8)))
    return rd.load_mnist(e.tmp)


raises("realdata.datasets.load_mnist", _bad_idx_names_file, rd.DataError, rd.MNIST_FILES[1], skip=needs_mnist)


def _trec_home(e):
    e.mp.setenv("HOME", str(e.tmp))
    (e.tmp / "x" / "trec").mkdir(parents=True)
    for name, _ in rd.TREC_FILES.values():
        (e.tmp / "x" / "trec" / name).symlink_to(rd.data_dir() / "trec" / name)
    return rd.load_trec(root="~/x")


ok("realdata.datasets.load_trec", _trec_home, lambda t: len(t["train"]) == 5444, id="trec-root-tilde", skip=needs_trec)
raises("realdata.datasets.load_trec", lambda e: rd.load_trec(root=5), T, "root")
raises("realdata.datasets.load_trec", lambda e: rd.load_trec(root=Path(__file__)), V, "root")
ok("realdata.datasets.data_dir", lambda e: (e.mp.setenv("BENIGN_ATTENTION_DATA", "~/d"), rd.data_dir())[1],
   lambda p: "~" not in str(p))
raises("realdata.datasets.flip_labels", lambda e: rd.flip_labels([0, 1], 0.2, 2.5), V, "num_classes")
raises("realdata.datasets.flip_labels", lambda e: rd.flip_labels([0, 1], 0.2, True), T, "num_classes")
raises("realdata.datasets.flip_labels", lambda e: rd.flip_labels([0.0, 1.0], 0.2, 2), T, "y")
raises("realdata.datasets.flip_labels", lambda e: rd.flip_labels([0, 5], 0.2, 3), V, "y")
raises("realdata.datasets.flip_labels", lambda e: rd.flip_labels([0, 1], 1.0, 3), V, "eta")
raises("realdata.datasets.flip_labels", lambda e: rd.flip_labels([0, 1], 0.2, 3, seed=-1), V, "seed")
ok("realdata.datasets.flip_labels", lambda e: rd.flip_labels(np.arange(6) % 3, np.float32(0.0), np.int64(3)),
   lambda r: np.array_equal(r[0], np.arange(6) % 3) and not r[1].any())
raises("realdata.datasets.split_data", lambda e: rd.split_data("cifar"), V, "dataset")
raises("realdata.datasets.task_split", lambda e: rd.task_split("cifar"), V, "dataset")
raises("realdata.datasets.task_split", lambda e: rd.task_split("breast_cancer", seed=-1), V, "seed")
raises("realdata.datasets.split_data", lambda e: rd.split_data("breast_cancer", seed=-1), V, "seed")
raises("realdata.datasets.check_dataset", lambda e: rd.check_dataset(5), T, "dataset")
raises("realdata.datasets.from_texts", lambda e: rd.from_texts("a text", [0]), T, "texts")
raises("realdata.datasets.from_texts", lambda e: rd.from_texts(["a", 3], [0, 1]), T, "texts[1]")
raises("realdata.datasets.from_texts", lambda e: rd.from_texts(["a", " "], [0, 1]), V, "texts[1]")
raises("realdata.datasets.from_texts", lambda e: rd.from_texts(["a"], [0]), V, "texts")
raises("realdata.datasets.from_texts", lambda e: rd.from_texts(["a", "b"], [0.0, 1.0]), T, "labels")
raises("realdata.datasets.from_texts", lambda e: rd.from_texts(["a", "b"], [0, 1, 0]), V, "labels")
raises("realdata.datasets.from_texts", lambda e: rd.from_texts(["a", "b"], [0, 3], num_classes=3), V, "labels")
raises("realdata.datasets.from_texts", lambda e: rd.from_texts(["a", "b"], [0, 1], num_classes=1), V, "num_classes")
ok("realdata.datasets.from_texts", lambda e: rd.from_texts(("a", "b"), np.array([1, 0], np.uint8)),
   lambda s: s.x == ["a", "b"] and s.y.tolist() == [1, 0])
raises("realdata.datasets.from_images", lambda e: rd.from_images(np.zeros((2, 3)), [0, 1]), V, "images")
raises("realdata.datasets.from_images", lambda e: rd.from_images(np.zeros((1, 3, 3)), [0]), V, "images")
raises("realdata.datasets.from_images", lambda e: rd.from_images(_with_nan(np.zeros((2, 3, 3))), [0, 1]), V, "images")
raises("realdata.datasets.from_images", lambda e: rd.from_images(np.zeros((2, 3, 3), complex), [0, 1]), T, "images")
raises("realdata.datasets.from_images", lambda e: rd.from_images("pictures", [0, 1]), T, "images")
raises("realdata.datasets.from_images", lambda e: rd.from_images(np.zeros((2, 3, 3)), [0, -1]), V, "labels")
ok("realdata.datasets.from_images", lambda e: rd.from_images(np.full((2, 1, 3, 3), 255, np.uint8), [0, 1]),
   lambda s: s.x.shape == (2, 1, 3, 3) and s.x.max() == 1.0)
raises("realdata.datasets.Split.take", lambda e: rd.load_breast_cancer().take([100_000]), V, "idx")
ok("realdata.datasets.load_breast_cancer", lambda e: rd.load_breast_cancer(), lambda s: s.x.shape == (569, 30))

# --- realdata.finetune
run_ = lambda *a, **kw: (lambda e: ft.run(PREP(), *a, **dict(dict(epochs=2), **kw)))
raises("engines.torch_threads", lambda e: ft.torch_threads(0).__enter__(), V, "threads")
raises("realdata.finetune.load_pretrained", lambda e: ft.load_pretrained("trec"), V, "dataset")
raises("realdata.finetune.prepare", lambda e: ft.prepare("breast_cancer", pool_size=0), V, "pool_size")
raises("realdata.finetune.prepare", lambda e: ft.prepare("breast_cancer", head_epochs=-1), V, "head_epochs")
raises("realdata.finetune.prepare", lambda e: ft.prepare("breast_cancer", device="nope"), V, "device")
raises("realdata.finetune.prepare", lambda e: ft.prepare(5), T, "dataset")
raises("realdata.finetune.prepare", lambda e: ft.prepare("breast_cancer", seed=1.5), V, "seed")
raises("realdata.finetune.run", lambda e: ft.run(None, 10, 0.1), T, "prep")
raises("realdata.finetune.run", run_(True, 0.1), T, "n")
raises("realdata.finetune.run", run_(10.5, 0.1), V, "n")
raises("realdata.finetune.run", run_(31, 0.1), V, "n")
raises("realdata.finetune.run", run_(10, 0.1, epochs=1.5), V, "epochs")
raises("realdata.finetune.run", run_(10, 0.1, log_every=0), V, "log_every")
raises("realdata.finetune.run", run_(10, 0.1, seed=-1), V, "seed")
raises("realdata.finetune.run", run_(10, 0.1, lr="x"), T, "lr")
raises("realdata.finetune.run", run_(10, np.nan), V, "eta")
ok("realdata.finetune.run", run_(np.int64(10), np.float32(0.2), seed=np.int32(1)),
   lambda r: r["n"] == 10 and r["eta"] == 0.2 and r == ft.run(PREP(), 10, 0.2, seed=1, epochs=2))
raises("realdata.finetune.FineTuneRun.final", lambda e: ft.run(PREP(), 10, 0.2, epochs=2).final("epoch"), V, "key")
raises("realdata.finetune.FineTuneRun.at", lambda e: ft.run(PREP(), 10, 0.2, epochs=2).at("test_acc", "end"), T, "epoch")
ok("realdata.finetune.FineTuneRun.at", lambda e: ft.run(PREP(), 10, 0.2, epochs=2).at("test_acc", np.int64(1)),
   lambda v: 0 <= v <= 1)
raises("realdata.finetune.prepare_model", lambda e: ft.prepare_model(ENC(), IMAGES(), IMAGES()), T, "model")
raises("realdata.finetune.prepare_model", lambda e: ft.prepare_model(HF_VIT(), IMAGES().x, IMAGES()), T, "pool")
raises("realdata.finetune.prepare_model", lambda e: ft.prepare_model(
    HF_VIT(), rd.from_texts(["a", "b"], [0, 1]), IMAGES()), V, "pool")
raises("realdata.finetune.prepare_model", lambda e: ft.prepare_model(HF_VIT(), IMAGES(), IMAGES(), num_classes=1),
       V, "num_classes")
raises("realdata.finetune.prepare_model", lambda e: ft.prepare_model(HF_VIT(), IMAGES(), IMAGES(), processor=3),
       T, "processor")
raises("realdata.finetune.prepare_model", lambda e: ft.prepare_model(HF_VIT(), IMAGES(), IMAGES(), device="nope"),
       V, "device")
raises("realdata.finetune.prepare_model", lambda e: ft.prepare_model(HF_VIT(), IMAGES(), IMAGES(), batch_size=0),
       V, "batch_size")
ok("realdata.finetune.prepare_model", lambda e: ft.prepare_model(HF_VIT(), IMAGES(), IMAGES(), head_epochs=5),
   lambda p: p.num_classes == 2 and len(p.pool) == 6 and p.pool.x.shape == (6, 5, 8))
raises("realdata.finetune.init_qk", lambda e: ft.init_qk(None, 0), T, "layer")
raises("realdata.finetune.init_qk", lambda e: ft.init_qk(PREP().layer, 0, std=-1), V, "std")
raises("realdata.finetune.single_token_probe", lambda e: ft.single_token_probe(PREP(), num=0), V, "num")
ok("realdata.finetune.Prepared.logits", lambda e: PREP().logits(PREP().test, *ft.init_qk(PREP().layer, 0)),
   lambda la: la[0].shape == (20, 2))

# --- realdata.grid
raises("realdata.grid.cell_path", lambda e: rg.cell_path(e.tmp, "cifar", 1, 0.1, 0), V, "dataset")
raises("realdata.grid.cell_path", lambda e: rg.cell_path(e.tmp, "trec", 0, 0.1, 0), V, "n")
raises("realdata.grid.run_realdata_grid", lambda e: rg.run_realdata_grid(e.tmp, datasets="trec"), T, "datasets")
raises("realdata.grid.run_realdata_grid", lambda e: rg.run_realdata_grid(e.tmp, datasets=["cifar"]), V, "datasets[0]")
raises("realdata.grid.run_realdata_grid", lambda e: rg.run_realdata_grid(e.tmp, ns=[0]), V, "ns")
raises("realdata.grid.run_realdata_grid", lambda e: rg.run_realdata_grid(e.tmp, etas=[1.5]), V, "etas[0]")
raises("realdata.grid.run_realdata_grid", lambda e: rg.run_realdata_grid(e.tmp, seeds=[-1]), V, "seeds")
raises("realdata.grid.run_realdata_grid", lambda e: rg.run_realdata_grid(Path(__file__)), V, "out")
raises("realdata.grid.run_realdata_grid", lambda e: rg.run_realdata_grid(e.tmp, bogus=1), V, "bogus")
raises("realdata.grid.run_realdata_grid", lambda e: rg.run_realdata_grid(e.tmp, epochs=True), T, "epochs")
raises("realdata.grid.summarize", lambda e: rg.summarize([{"dataset": "trec"}]), V, "cells[0]")
raises("realdata.grid.summarize", lambda e: rg.summarize(None), T, "cells")
raises("realdata.grid.load_results", lambda e: rg.load_results(Path(__file__)), V, "out")
ok("realdata.grid.load_results", lambda e: rg.load_results(e.tmp / "nothing"), lambda r: r == [])
raises("realdata.grid.run_realdata_grid", lambda e: rg.run_realdata_grid(e.tmp, executor=object()), V, "executor")
raises("realdata.grid.main", lambda e: rg.main(["--ns", "x"]), SystemExit, None, id="cli-bad-ns")

# --- realdata.backbones
raises("realdata.backbones.Encoder", lambda e: rm.Encoder("cnn", 10), V, "kind")
raises("realdata.backbones.Encoder", lambda e: rm.Encoder("vit", 10, dim=10, heads=4), V, "dim")
raises("realdata.backbones.Encoder", lambda e: rm.Encoder("vit", 10, patch=5), V, "patch")
raises("realdata.backbones.Encoder", lambda e: rm.Encoder("vit", 1.5), V, "num_classes")
raises("realdata.backbones.Encoder.forward", lambda e: ENC()(torch.zeros(2, 10)), V, "x")
raises("realdata.backbones.Encoder.forward", lambda e: ENC()(np.zeros((2, 28, 28))), T, "x")
raises("realdata.backbones.Block", lambda e: rm.Block(10, 4, 8), V, "dim")
raises("realdata.backbones.make_prefix", lambda e: rm.make_prefix(torch.zeros(2, 3, 5), torch.ones(2, 3), PREP().layer), V, "x")
raises("realdata.backbones.make_prefix", lambda e: rm.make_prefix(torch.zeros(2, 3, 32), torch.ones(2, 4), PREP().layer), V, "mask")
raises("realdata.backbones.make_prefix", lambda e: rm.make_prefix(torch.zeros(2, 3, 32), torch.ones(2, 3), None), T, "layer")
raises("realdata.backbones.last_layer_cls", lambda e: rm.last_layer_cls(PREP().pool, PREP().layer, torch.zeros(3, 3),
                                                                     *ft.init_qk(PREP().layer, 0)[1:]), V, "wq")
raises("realdata.backbones.last_layer_uncached", lambda e: rm.last_layer_uncached(
    PREP().pool.x, PREP().pool.mask[:, :2], PREP().layer, *ft.init_qk(PREP().layer, 0)), V, "mask")
raises("realdata.backbones.after_attention", lambda e: rm.after_attention(torch.zeros(2, 32), torch.zeros(2, 31), PREP().layer),
       V, "ctx")
raises("realdata.backbones.bert_last_layer", lambda e: rm.bert_last_layer(object()), T, "model")
raises("realdata.backbones.vit_last_layer", lambda e: rm.vit_last_layer(ENC()), T, "model")
raises("realdata.backbones.model_family", lambda e: rm.model_family(torch.nn.Linear(2, 2)), T, "model")
raises("realdata.backbones.last_layer", lambda e: rm.last_layer("bert-base-uncased"), T, "model")
ok("realdata.backbones.last_layer", lambda e: rm.last_layer(HF_VIT()), lambda L: L.norm_first and L.lnf_w is not None)
raises("realdata.backbones.check_adapter", lambda e: rm.check_adapter(ENC(), {"x": torch.zeros(2, 28, 28)}), T, "model")
raises("realdata.backbones.check_adapter", lambda e: rm.check_adapter(HF_VIT(), torch.zeros(2, 1, 8, 8)), T, "inputs")
raises("realdata.backbones.check_adapter", lambda e: rm.check_adapter(HF_VIT(), {"pixel_values": torch.zeros(2, 1, 8, 8)},
                                                                   seed=-1), V, "seed")
ok("realdata.backbones.check_adapter", lambda e: rm.check_adapter(HF_VIT(), {"pixel_values": torch.rand(2, 1, 8, 8)}),
   lambda gap: gap < 1e-12)
raises("realdata.backbones.Prefix.take", lambda e: PREP().pool.take([-1]), V, "idx")
raises("realdata.backbones.save_encoder", lambda e: rm.save_encoder("model", e.tmp / "w.npz"), T, "model")
raises("realdata.backbones.load_encoder", lambda e: rm.load_encoder(e.tmp / "missing.npz", ENC().config), V, "path")


def _saved(e):
    rm.save_encoder(ENC(), e.tmp / "w.npz")
    return e.tmp / "w.npz"


raises("realdata.backbones.load_encoder", lambda e: rm.load_encoder(_saved(e), dict(ENC().config, colour=1)), T, "config")
raises("realdata.backbones.load_encoder", lambda e: rm.load_encoder(_saved(e), dict(ENC().config, dim=16, heads=2)), V, "path")
ok("realdata.backbones.load_encoder", lambda e: rm.load_encoder(_saved(e), ENC().config),
   lambda me: all(torch.equal(a, b) for a, b in zip(me[0].state_dict().values(), ENC().state_dict().values())))
raises("theory.fixed_attention_test_check", lambda e: theory.fixed_attention_test_check(None, [1.0]), T, "ds")
raises("theory.fixed_attention_test_check", lambda e: theory.fixed_attention_test_check(DS(), [1 / 3] * 3), V, "weights")
ok("theory.fixed_attention_test_check", lambda e: theory.fixed_attention_test_check(DS(), [0.25] * 4),
   lambda r: len(r) == 3 and 0 <= r[0] <= 1 and r[2] > 0)


# ----------------------------------------------------------------------------------------------
# Running the table.


def _raised_inside_package(err):
    tb = err.__traceback__
    last = None
    while tb is not None:
        last = tb.tb_frame.f_code.co_filename
        tb = tb.tb_next
    return last is not None and str(Path(last).resolve()).startswith(PACKAGE)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case, tmp_path, monkeypatch):
    if case.skip:
        pytest.skip(case.skip)
    env = SimpleNamespace(tmp=tmp_path, mp=monkeypatch)
    if case.kind == "raises":
        with pytest.raises(BaseException) as info:
            case.fn(env)
        err = info.value
        if case.exc is SystemExit:
            assert isinstance(err, SystemExit) and err.code == 2
            return
        assert isinstance(err, case.exc), f"expected {case.exc.__name__}, got {type(err).__name__}: {err}"
        assert not isinstance(err, (KeyError, IndexError, AttributeError))
        assert _raised_inside_package(err), f"raised outside the package: {type(err).__name__}: {err}"
        msg = str(err)
        assert re.search(r"(?<![\w.])" + re.escape(case.name) + r"(?![\w])", msg), f"{case.name!r} not named in: {msg}"
    elif case.kind == "warns":
        with pytest.warns(case.exc):
            out = case.fn(env)
        assert case.check(out)
    else:
        with _no_divergence():
            out = case.fn(env)
        assert case.check is None or case.check(out)


class _no_divergence:
    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("error", DivergenceWarning)

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


def test_table_size_and_outcomes():
    kinds = {k: sum(c.kind == k for c in CASES) for k in ("raises", "ok", "warns")}
    assert len(CASES) >= 60 and all(kinds.values()), kinds


# Public functions with no row, and why.
EXEMPT = {
    "engines.Family": "internal batch structure of the exact engine; built only by train/run_grid",
    "data.NoiseDraw": "plain record returned by draw_noise",
    "realdata.finetune.load_minilm": "takes no arguments",
    "realdata.backbones.LastLayer": "plain record of tensors, built by Encoder.last_layer / bert_last_layer",
    "realdata.finetune.Prepared": "plain record built by prepare (its logits method has a row)",
    "encoder.train.EncoderRun": "plain record returned by train_encoder",
    "cache.Cell": "plain record returned by CellCache.load and CellCache.cells",
    "display.Glued": "the class of display.G, filled only by display.glue (its rows); tests/test_display.py",
    "engines.run_family": "internal API (sweeps): the exact engine on a prepared Family, via train/run_grid",
    "engines.divergence_rule": "internal API: the one divergence rule of every trainer; tests/test_hardening.py",
    "engines.first_divergence": "internal API (sweeps): exercised by the divergence rows of train/run_grid",
    "engines.warn_diverged": "internal API (sweeps): exercised by the divergence rows of train/run_grid",
    "engines.history_to_numpy": "internal API (sweeps): a tensor-dict conversion",
    "sweeps.grid_family": "internal API (sweeps): builds the Family of a grid's cells, via run_grid and train_cell",
}
MODULES = {"analysis": analysis, "cache": cache, "encoder": encoder, "encoder.model": encoder.model,
           "encoder.train": encoder.train, "encoder.grid": encoder.grid, "display": display, "data": data,
           "engines": engines, "sweeps": sweeps, "theory": theory, "metrics": metrics, "model": model,
           "validation": validation, "realdata.datasets": rd, "realdata.finetune": ft, "realdata.grid": rg,
           "realdata.backbones": rm}


def test_every_public_function_is_covered():
    covered = {c.covers for c in CASES}
    # a row of encoder.X (the package's name) covers X in the encoder module that defines it
    covered |= {f"encoder.{sub}.{c.split('.', 1)[1]}" for c in covered if c.startswith("encoder.")
                for sub in ("model", "train", "grid")}
    covered |= {c.rsplit(".", 1)[0] for c in covered}  # a method's row covers its class
    missing = []
    for mname, mod in MODULES.items():
        for name, obj in vars(mod).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
                continue
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if inspect.isclass(obj) and issubclass(obj, BaseException):
                continue  # exception and warning classes: raised/warned by the rows
            key = f"{mname}.{name}"
            if key not in covered and key not in EXEMPT:
                missing.append(key)
    assert not missing, f"public functions without a row: {missing}"


# ----------------------------------------------------------------------------------------------
# Property: a knob's value, not the type that carries it, decides the data set.

INT_KINDS = ("py", "np.int32", "np.int64", "np.uint16", "np.float32", "np.float64", "array.int64", "array.float32",
             "torch.int32", "torch.int64", "torch.float16", "torch.float32", "torch.float64")
FLOAT_KINDS = ("py", "np.float16", "np.float32", "np.float64", "array.float16", "array.float32", "array.float64",
               "torch.float16", "torch.float32", "torch.float64", "torch.bfloat16")


def _wrap(value, kind):
    if kind == "py":
        return value
    lib, dt = kind.split(".")
    if lib == "np":
        return getattr(np, dt)(value)
    if lib == "array":
        return np.array(value, dtype=dt)
    return torch.tensor(value, dtype=getattr(torch, dt))


def _float_value(draw, kind, lo, hi):
    """A value the kind carries exactly: float16/bfloat16 get multiples of 1/8 (exactly representable,
    3 significant bits after the point); float32/float64 get decimals of at most 6 significant digits
    (a float32 stands for the shortest decimal that rounds to it)."""
    if "16" in kind:
        return draw(st.integers(int(np.ceil(lo * 8)), int(hi * 8))) / 8
    return draw(st.integers(int(np.ceil(lo * 1000)), int(hi * 1000))) / 1000


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_knob_types_give_identical_data(dat):
    draw = dat.draw
    ints = dict(n=draw(st.integers(2, 12)), T=draw(st.integers(3, 5)), d=draw(st.integers(2, 6)),
                n_test=draw(st.integers(1, 4)), seed=draw(st.integers(0, 1000)))
    kinds = {k: draw(st.sampled_from(FLOAT_KINDS), label=k) for k in ("rho", "signal_norm", "sigma", "eta")}
    kinds.update({k: draw(st.sampled_from(INT_KINDS), label=k) for k in ints})
    floats = dict(rho=_float_value(draw, kinds["rho"], 0, 1), signal_norm=_float_value(draw, kinds["signal_norm"], 0.125, 99),
                  sigma=_float_value(draw, kinds["sigma"], 0.125, 3), eta=_float_value(draw, kinds["eta"], 0, 0.49))
    if "bfloat16" in kinds["signal_norm"]:  # bfloat16 holds 8 significant bits: keep the value small
        floats["signal_norm"] = min(floats["signal_norm"], 15.875)
    plain = dict(ints, **floats)
    typed = {k: _wrap(v, kinds[k]) for k, v in plain.items()}
    a, b = ba.make_dataset(**plain), ba.make_dataset(**typed)
    assert a.config == b.config
    for k in ("X", "y", "y_clean", "noisy", "X_test", "y_test", "mu_pos", "mu_neg"):
        assert np.array_equal(getattr(a, k), getattr(b, k)), k
    assert a.fingerprint == b.fingerprint
