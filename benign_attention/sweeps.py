"""Grids of runs: batched, cached on disk, resumable (:ref:`the (d, ||mu||) grid <sec-phase-grid>`, :ref:`sec-exact-families`).

Cells that differ only in ``signal_norm``, ``rho`` or ``eta`` share their noise draw and W_0 (see
:mod:`benign_attention.data`), hence the token span: they form one :class:`~benign_attention.engines.Family`
and run as one batch of the exact engine. Each cell's result equals ``train(make_dataset(...))`` for
that cell (tested). Results are cached one file per cell in the book's one cell cache
(:class:`~benign_attention.cache.CellCache`: atomic write, checksummed, with provenance, no pickle); an
interrupted sweep resumes and recomputes only the families with missing or corrupt cells.

A family is always computed as one batch, all its cells together (a cell computed alone can differ
from the batched one by float rounding, up to ~3e-8 in float32): if one cell of a family is missing
or corrupt, the whole family of the grid is recomputed and rewritten, so a repaired sweep equals a
clean one. (Cells cached by an earlier grid whose family held other members were computed in another
batch and agree with this grid's batch to that rounding.)

The cache folder is checked before any work: ``~`` is expanded, ``''`` is refused, a path that is a file
or cannot be created raises ValueError, and so does a read-only folder when cells remain to be computed.
Writing a finished cell never raises: a failure warns (:class:`~benign_attention.cache.CacheWarning`) and the result is kept.
Cells whose gradient descent diverged (NaN loss) hold NaN metrics and are marked in
:attr:`GridResult.diverged`; the call warns (:class:`~benign_attention.engines.DivergenceWarning`).
"""
from __future__ import annotations

import itertools
import os
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import gram
from ._version import __version__
from .cache import CacheWarning, CellCache, cell_key, provenance
from .data import draw_noise, init_W, noisy_mask, signal_coefficients, validate_config
from .parallel import ExecutorError, run_jobs
from .engines import (DivergenceWarning, Family, Run, check_train_args, first_divergence, history_to_numpy,
                      run_family, torch_threads, warn_diverged)
from .validation import (ArgumentTypeError, check_cache_dir, check_choice, check_device, check_dtype, check_executor, check_int,
                         check_lr_dtype, check_number, check_progress, dir_is_writable)

__all__ = ["run_grid", "train_cell", "GridResult", "default_cache_dir", "CacheWarning"]

#: Bumped when what a sweep cell stores changes (older cells are then recomputed, not misread).
CACHE_FORMAT = 3

FAMILY_KNOBS = ("n", "T", "d", "sigma", "n_test", "seed")
MEMBER_KNOBS = ("signal_norm", "rho", "eta")
#: History keys kept for sweeps (per-sample arrays are dropped to keep caches small).
SWEEP_KEYS = ("train_loss", "train_acc", "train_clean_acc", "attn_clean", "attn_noisy",
              "test_loss", "test_acc", "test_margin", "attn_test")


def default_cache_dir():
    """``$BENIGN_ATTENTION_CACHE`` or ``~/.cache/benign_attention/sweeps``."""
    env = os.environ.get("BENIGN_ATTENTION_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "benign_attention" / "sweeps"


@dataclass(eq=False)
class GridResult:
    """Results over a grid: ``axes`` (ordered knob -> values), ``steps`` record steps, and
    ``data[key]`` arrays of shape ``(*grid_shape, E, ...)``. ``diverged`` (grid shape, bool) marks the
    cells whose gradient descent diverged: their metrics are NaN from the divergence on, and
    :func:`~benign_attention.theory.classify_regime` gives them no regime (NaN)."""

    axes: dict
    """Ordered knob name -> the values it takes (the grid's axes, in the order of the array axes)."""
    steps: np.ndarray
    """The recorded steps (length E)."""
    data: dict
    """Metric name -> array of shape ``(*grid_shape, E, ...)``."""
    diverged: np.ndarray | None = None
    """Boolean array, one entry per cell, True where gradient descent diverged."""

    def __post_init__(self):
        if self.diverged is None and "train_loss" in self.data:
            self.diverged = ~np.isfinite(self.data["train_loss"]).all(-1)

    def final(self, key):
        """``data[key]`` at the last recorded step, shape ``(*grid_shape, ...)`` (the same verb as
        :meth:`Run.final <benign_attention.engines.Run.final>`)."""
        return self._pick(key, -1)

    def at(self, key, step):
        """``data[key]`` at the recorded step closest to ``step``, shape ``(*grid_shape, ...)`` (the same
        verb as :meth:`Run.at <benign_attention.engines.Run.at>`)."""
        step = check_number("step", step)
        return self._pick(key, int(np.argmin(np.abs(self.steps - step))))

    def _pick(self, key, i):
        if not isinstance(key, str) or key not in self.data:
            raise ValueError(f"key must be one of the recorded metrics {sorted(self.data)}, got {key!r}")
        return self.data[key][..., i] if self.data[key].ndim == len(self.axes) + 1 else self.data[key][..., i, :]


def _cell_params(cell, steps, lr, rec, dtype, engine="exact"):
    """The cache parameters of one sweep cell (its knobs, the training settings and the package version)."""
    params = {"experiment": "sweep", "cell": cell, "steps": steps, "lr": lr, "record_steps": rec.tolist(),
              "dtype": str(dtype), "version": __version__, "format": CACHE_FORMAT}
    if engine != "exact":  # exact cells keep the keys they always had
        params["engine"] = engine
    return params


def grid_family(cfgs, dtype=torch.float64, draw=None, W0=None):
    """Build the Family of cells sharing family knobs (cfgs: validated configs). Internal API: the
    live phase explorer (:mod:`~benign_attention.widgets`) builds its families with it too."""
    c0 = cfgs[0]
    if draw is None:
        draw = draw_noise(c0["n"], c0["T"], c0["d"], c0["sigma"], c0["n_test"], c0["seed"])
    d, T = c0["d"], c0["T"]
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=dtype)
    dirs = torch.zeros(d, 2, dtype=dtype)
    dirs[0, 0] = dirs[1, 1] = 1.0
    masks = [noisy_mask(draw.y_clean, draw.flip_order, c["eta"]) for c in cfgs]
    nus = np.zeros((len(cfgs), d))
    for r, c in enumerate(cfgs):
        nus[r, 0], nus[r, 1] = 1.0, -1.0
        nus[r] /= np.sqrt(2.0) * c["signal_norm"]
    return Family(
        eps=t(draw.eps), eps_test=t(draw.eps_test), dirs=dirs,
        W0=t(init_W(d, c0["seed"])) if W0 is None else W0,
        coef=t(np.stack([c["signal_norm"] * signal_coefficients(draw.y_clean, T, c["rho"]) for c in cfgs])),
        coef_test=t(np.stack([c["signal_norm"] * signal_coefficients(draw.y_test, T, c["rho"]) for c in cfgs])),
        nu=t(nus), y=t(np.stack([np.where(mk, -draw.y_clean, draw.y_clean) for mk in masks])),
        y_clean=t(np.stack([draw.y_clean] * len(cfgs))), noisy=torch.as_tensor(np.stack(masks)),
        y_test=t(np.stack([draw.y_test] * len(cfgs))),
    )


def _compute_family(cfgs, steps, lr, rec, dtype, device=None):
    """One family's per-cell history dicts (numpy, sweep keys only, plus ``diverged_at``: the step by
    which the cell diverged, -1 if it did not)."""
    fam = grid_family(cfgs)
    fam = (fam.to(device) if device is not None else fam).prepare()
    hist, (alpha, Z) = run_family(fam, steps, lr, rec, dtype)
    out = []
    for r in range(len(cfgs)):
        h = {k: v for k, v in history_to_numpy(hist, r).items() if k in SWEEP_KEYS}
        at = first_divergence(rec, h["train_loss"], (alpha[r], Z[r]))
        h["diverged_at"] = np.array(-1 if at is None else (steps if at == -1 else at), dtype=np.int64)
        out.append(h)
    return out


def _family_job(cfgs, steps, lr, rec, dtype, device=None, engine="exact"):
    """A job of :func:`run_grid`: the family's cell configs with their results from ``engine`` (so
    that the caller can check that a result is the one of the cells it asked for, wherever it was
    computed)."""
    compute = _compute_family_gram if engine == "gram" else _compute_family
    return {"cells": [dict(c) for c in cfgs], "results": compute(cfgs, steps, lr, rec, dtype, device)}


def _compute_family_gram(cfgs, steps, lr, rec, dtype, device=None):
    """One family's per-cell history dicts from the gram engine's sampler (:mod:`~benign_attention.gram`):
    Gaussian W_0 of variance 1/(3d), common random numbers across the family's members."""
    probs = gram.sample_problems(cfgs, test_record=len(rec))
    dt = np.float32 if dtype == torch.float32 else np.float64
    hists, alpha = gram.run_problems(probs, steps, lr, rec, dt, per_sample=False)
    out = []
    for r, h in enumerate(hists):
        h = {k: np.asarray(v) for k, v in h.items() if k in SWEEP_KEYS}
        at = first_divergence(rec, h["train_loss"], (torch.as_tensor(alpha[r]),))
        h["diverged_at"] = np.array(-1 if at is None else (steps if at == -1 else at), dtype=np.int64)
        out.append(h)
    return out


def _map(fn, jobs, workers, executor=None):
    """Yield fn(*job) in order, in ``workers`` threads with one torch thread each (torch and numpy's
    random generators release the GIL, so independent families run side by side), or through
    ``executor`` when one is given, one future per job (:func:`~benign_attention.parallel.run_jobs`)."""
    if executor is not None:
        yield from run_jobs(fn, jobs, executor)
        return
    if workers == 1 or len(jobs) < 2:
        yield from (fn(*job) for job in jobs)
        return
    from concurrent.futures import ThreadPoolExecutor

    with torch_threads(1), ThreadPoolExecutor(workers) as pool:
        yield from pool.map(lambda job: fn(*job), jobs)


#: The shape of each stored sweep array after its leading record axis (E,).
_TAIL = {k: (4,) if k.startswith("attn_") else () for k in SWEEP_KEYS}


def _cell_ok(arrays, rec):
    """True if ``arrays`` is one sweep cell's result over the record steps ``rec``: every sweep key
    with shape (E,) or (E, 4) for attention, and a scalar ``diverged_at``."""
    if not isinstance(arrays, Mapping) or not set(SWEEP_KEYS) <= set(arrays) or "diverged_at" not in arrays:
        return False
    return (all(isinstance(arrays[k], np.ndarray) and arrays[k].shape == (len(rec),) + _TAIL[k] for k in SWEEP_KEYS)
            and np.shape(arrays["diverged_at"]) == ())


def _check_family_result(job, members, rec):
    """The member cells' results from ``job`` (what :func:`_family_job` returned for ``members``), or
    :class:`~benign_attention.parallel.ExecutorError` unless it is the result of exactly these cells:
    one dict per member cell, each with every sweep key over the ``rec`` record steps."""
    what = f"the family of {len(members)} cells starting at {dict(members[0][1])}"
    if not isinstance(job, Mapping) or "cells" not in job or "results" not in job:
        raise ExecutorError(f"executor: the job of {what} returned {type(job).__name__}, not the family's result")
    if list(job["cells"]) != [cfg for _, cfg, _, _ in members]:
        raise ExecutorError(f"executor: the job of {what} returned the result of other cells "
                            f"(starting at {dict(job['cells'][0]) if job['cells'] else None})")
    arrays_list = job["results"]
    if not isinstance(arrays_list, (list, tuple)) or len(arrays_list) != len(members):
        got = f"{len(arrays_list)} results" if isinstance(arrays_list, (list, tuple)) else type(arrays_list).__name__
        raise ExecutorError(f"executor: {what} came back as {got}, expected {len(members)} cell results")
    for arrays in arrays_list:
        if not _cell_ok(arrays, rec):
            raise ExecutorError(f"executor: {what} came back with a result that is not a cell's history "
                                f"({len(rec)} records of {SWEEP_KEYS})")
    return arrays_list


_BASES: "OrderedDict[tuple, tuple]" = OrderedDict()


def _check_knobs(name, knobs):
    allowed = FAMILY_KNOBS + MEMBER_KNOBS
    for k in knobs:
        if k not in allowed:
            raise ValueError(f"{name} key {k!r} unknown; allowed knobs: {allowed}")


def train_cell(steps=1000, lr=5e-3, record_every=None, record_steps=None, dtype=torch.float64, **knobs) -> Run:
    """One run of the paper's setting, equal to ``train(make_dataset(**knobs), ...)``, but the noise
    draw and the span projection are cached for the last few (n, T, d, sigma, n_test, seed): changing
    only signal_norm, rho or eta re-runs just the low-dimensional loop (used by the live explorers of
    :ref:`sec-playground-regime`).
    Knobs as in :func:`~benign_attention.data.make_dataset`; a diverged run warns and is marked as in
    :func:`~benign_attention.engines.train`."""
    _check_knobs("train_cell", knobs)
    steps, lr, rec = check_train_args(steps, lr, "exact", record_every, record_steps)
    dtype = check_dtype("dtype", dtype)
    check_lr_dtype(lr, dtype)
    cfg = validate_config(**knobs)
    key = tuple(cfg[k] for k in FAMILY_KNOBS)
    if key in _BASES:
        _BASES.move_to_end(key)
        draw, shared = _BASES[key]
        fam = grid_family([cfg], draw=draw, W0=shared.W0).prepare(shared)
    else:
        draw = draw_noise(*(cfg[k] for k in ("n", "T", "d", "sigma", "n_test", "seed")))
        fam = grid_family([cfg], draw=draw).prepare()
        _BASES[key] = (draw, fam)
        while len(_BASES) > 3:
            _BASES.popitem(last=False)
    hist, (alpha, Z) = run_family(fam, steps, lr, rec, dtype)
    hist = history_to_numpy(hist, 0)
    at = first_divergence(rec, hist["train_loss"], (alpha, Z))
    if at is not None:
        at = steps if at == -1 else at
        warn_diverged("train_cell", lr, at)
    return Run(rec, hist, dict(cfg, lr=lr, engine="exact", steps_done=steps), {}, at)


def _check_grid(grid, base):
    if not isinstance(grid, Mapping):
        raise ArgumentTypeError(f"grid must be a dict mapping knobs to lists of values, got {type(grid).__name__}")
    if base is not None and not isinstance(base, Mapping):
        raise ArgumentTypeError(f"base must be a dict of knob values or None, got {type(base).__name__}")
    axes = {}
    for k, v in grid.items():
        if k not in FAMILY_KNOBS + MEMBER_KNOBS:
            raise ValueError(f"grid knob {k!r} unknown; allowed: {FAMILY_KNOBS + MEMBER_KNOBS}")
        if isinstance(v, (str, bytes, Mapping)) or not hasattr(v, "__iter__") or (
                isinstance(v, (np.ndarray, torch.Tensor)) and v.ndim != 1):
            raise ArgumentTypeError(f"grid[{k!r}] must be a list of values, got {type(v).__name__} {v!r}")
        axes[k] = list(v)
        if len(axes[k]) == 0:
            raise ValueError(f"grid[{k!r}] must list at least one value")
    base = dict(base or {})
    _check_knobs("base", base)
    both = sorted(set(base) & set(axes))
    if both:
        raise ValueError(f"base knob {both[0]!r} is also a grid axis; give it in one place only")
    return axes, base


def run_grid(grid: dict, base: dict | None = None, steps=1000, lr=5e-3, record_every=None,
             record_steps=None, dtype=torch.float32, cache_dir=None, progress=None, workers=None,
             device=None, executor=None, engine="exact") -> GridResult:
    """Train every cell of the product of ``grid`` (knob -> list of values) over ``base`` settings
    (defaults of :func:`~benign_attention.data.make_dataset`) with the exact engine (the grids of
    :ref:`the phase diagram <sec-phase-grid>`). Returns a :class:`GridResult`; a bad argument raises ValueError naming it.

    Knobs: n, T, d, sigma, n_test, seed, signal_norm, rho, eta (each knob in ``grid`` or ``base``, not
    both). By default only the final step is recorded (``record_every``/``record_steps`` as in
    :func:`~benign_attention.engines.train`).
    ``cache_dir``: a folder for per-cell results in the book's one cell cache
    (:class:`~benign_attention.cache.CellCache`; None: no cache; "default": :func:`default_cache_dir`;
    ``~`` is expanded; checked before any work, see the module docstring). A corrupt cell file warns
    (:class:`~benign_attention.cache.CacheWarning`) and its family is computed again.
    ``dtype`` of the GD loop: float32 (default, agrees with float64 to plotting precision) or float64.
    ``workers``: threads for independent families (default: min(2, CPU count); 1 on a GPU ``device``).
    Diverged cells are NaN and marked in ``result.diverged`` (with a :class:`~benign_attention.engines.DivergenceWarning`).
    ``executor``: run the families elsewhere through a ``concurrent.futures``-style executor (one
    ``submit`` per family; :func:`~benign_attention.parallel.process_pool` for processes), e.g. ``dask.distributed.Client(...).get_executor()`` for a Dask cluster; ``workers`` is
    then ignored. Results (and the cache, written here as they arrive, so the workers need no shared
    folder) are the same as locally, bit for bit when the local run also gives each family one torch
    thread (``workers`` >= 2). See :ref:`sec-encoder-cluster`.
    ``engine``: ``"exact"`` (default: the paper's data and kaiming-uniform W_0, d-dimensional set-up) or
    ``"gram"`` (:mod:`~benign_attention.gram`: the sampler, Gaussian W_0 of the same variance, cost flat
    in d; CPU only; its draws differ from the exact engine's, so cells agree in law, not number by number).
    ``progress``: a progress bar: True, False or None (the default:
    automatic - a bar only on a terminal and only once the work has run for 2 s; see
    :func:`~benign_attention.validation.check_progress`).
    """
    executor = check_executor("executor", executor)
    axes, base = _check_grid(grid, base)
    if record_steps is None and record_every is None:
        record_steps = [check_int("steps", steps, 0)]
    engine = check_choice("engine", engine, ("exact", "gram"))
    steps, lr, rec = check_train_args(steps, lr, engine, record_every, record_steps)
    dtype = check_dtype("dtype", dtype)
    check_lr_dtype(lr, dtype)
    progress = check_progress("progress", progress)
    device = check_device("device", device)
    if engine == "gram" and device is not None and device.type != "cpu":
        raise ValueError(f"device={str(device)!r}: the gram engine runs on the CPU (numpy)")
    on_cpu = device is None or device.type == "cpu"
    workers = (min(2, os.cpu_count() or 1) if on_cpu else 1) if workers is None else check_int("workers", workers, 1)
    shape = tuple(len(v) for v in axes.values())
    cells = []
    for idx in itertools.product(*[range(s) for s in shape]):
        cfg = dict(base, **{k: axes[k][i] for k, i in zip(axes, idx)})
        cells.append((idx, validate_config(**cfg)))
    cache = None
    if cache_dir is not None:
        cache = check_cache_dir("cache_dir", default_cache_dir() if cache_dir == "default" else cache_dir,
                                writable=False)

    results, families = {}, {}
    store = None if cache is None else CellCache(cache, "cache_dir")
    if store is not None:
        store.clean()   # temporary files of writes killed halfway
    for idx, cfg in cells:
        params = _cell_params(cfg, steps, lr, rec, dtype, engine)
        name = cell_key(params)
        got = store.load(name, params) if store is not None else None
        if got is not None and not _cell_ok(got.arrays, rec):
            warnings.warn(CacheWarning(f"cache_dir: the cell file {str(got.path)!r} passes its checksum but does not "
                                       f"hold a cell's {len(rec)} records; it is computed again"), stacklevel=2)
            got = None
        if got is not None:
            results[idx] = got.arrays
        families.setdefault(tuple(cfg[k] for k in FAMILY_KNOBS), []).append((idx, cfg, name, params))
    # a family with any missing cell is computed again as a whole: one batch, as in a clean run
    todo = [members for members in families.values() if any(idx not in results for idx, *_ in members)]
    if cache is not None and todo and not dir_is_writable(cache):
        raise ValueError(f"cache_dir {str(cache)!r} is not writable, and {sum(map(len, todo))} cells remain to be "
                         f"computed; pass a writable folder or cache_dir=None")

    bar = None
    if todo and not progress["disable"]:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(len(v) for v in todo), desc="grid cells", **progress)
    prov = provenance(device, 1 if workers > 1 else None)
    if executor is not None:  # computed elsewhere: the threads there are not known here
        prov.update(threads=None, executor=type(executor).__name__)
    jobs = [([cfg for _, cfg, _, _ in members], steps, lr, rec, dtype, device, engine) for members in todo]
    for members, job in zip(todo, _map(_family_job, jobs, workers, executor)):
        arrays_list = _check_family_result(job, members, rec)
        for (idx, cfg, name, params), arrays in zip(members, arrays_list):
            results[idx] = arrays
            if store is not None:
                try:
                    store.save(name, params, arrays=arrays, provenance=prov)
                except OSError as err:
                    warnings.warn(CacheWarning(f"cache_dir: could not write the cell file {str(store.path(name))!r} "
                                               f"({err}); its result is kept in memory only"), stacklevel=2)
        if bar:
            bar.update(len(members))
    if bar:
        bar.close()
    first = results[cells[0][0]]
    keys = [k for k in first if k != "diverged_at"]
    data = {k: np.empty(shape + first[k].shape) for k in keys}
    diverged_at = np.full(shape, -1, dtype=np.int64)
    for idx, arr in results.items():
        for k in keys:
            data[k][idx] = arr[k]
        diverged_at[idx] = arr["diverged_at"]
    diverged = diverged_at >= 0
    if diverged.any():
        first_bad = cells[[i for i, (idx, _) in enumerate(cells) if diverged[idx]][0]][1]
        knobs = ", ".join(f"{k}={first_bad[k]:g}" for k in axes)
        warnings.warn(DivergenceWarning(
            f"run_grid: gradient descent diverged (NaN/inf loss) with lr={lr:g} in {int(diverged.sum())} of "
            f"{diverged.size} cells (e.g. {knobs}); their metrics are NaN and result.diverged marks them. "
            f"Lower lr."), stacklevel=2)
    return GridResult(axes, rec, data, diverged)
