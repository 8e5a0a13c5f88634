r"""Grids of runs: batched, cached on disk, resumable (:ref:`the grid over d and the signal norm <sec-phase-grid>`, :ref:`sec-exact-families`).

Cells that differ only in ``signal_norm``, ``rho`` or ``eta`` share their noise draw and :math:`W_0` (see
:mod:`benign_attention.data`), hence the token span: they form one :class:`~benign_attention.engines.Family`
and run as one batch of the exact engine. Each cell's result equals ``train(make_dataset(...))`` for
that cell (tested). Results are cached one file per cell in the book's one cell cache
(:class:`~benign_attention.cache.CellCache`: atomic write, checksummed, with provenance, no pickle)
through the package's one grid mechanism (:class:`~benign_attention.cache.CellGrid`, one job per
family, each cell stored here as it arrives, so the workers of an executor need no shared folder); an
interrupted sweep resumes and recomputes only the families with missing or corrupt cells.

A family is always computed as one batch, all its cells together (a cell computed alone can differ
from the batched one by float rounding, up to about :math:`3 \times 10^{-8}` in float32): if one cell of a family is missing
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
import threading
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from . import gram
from ._version import __version__
from .cache import CacheWarning, Cell, CellCache, CellGrid, provenance
from .data import LR, STEPS, draw_noise, init_W, noisy_mask, signal_coefficients, validate_config
from .engines import (DivergenceWarning, Family, Run, check_train_args, first_divergence, history_to_numpy,
                      run_family, torch_threads, warn_diverged)
from .validation import (ArgumentTypeError, check_bool, check_cache_dir, check_device, check_dtype,
                         check_executor, check_int, check_lr_dtype, check_number)

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
    r"""The recorded steps (length :math:`E`)."""
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


def _settings(steps, lr, rec, dtype, engine="exact"):
    """The training settings of a sweep cell's parameters (:meth:`~benign_attention.cache.CellGrid.params`:
    ``{"experiment": "sweep", "cell": <the cell's validated knobs>, **settings}``)."""
    settings = {"steps": steps, "lr": lr, "record_steps": rec.tolist(), "dtype": str(dtype), "version": __version__,
                "format": CACHE_FORMAT}
    if engine != "exact":  # exact cells keep the keys they always had
        settings["engine"] = engine
    return settings


def grid_family(cfgs, dtype=torch.float64, draw=None, W0=None):
    """Build the Family of cells sharing family knobs (cfgs: validated configs). Internal API of the
    sweeps (:func:`run_grid`, :func:`train_cell`)."""
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


#: The noise draws and token-span projections of the last families (family knobs, device) ->
#: (draw, prepared Family without W_0): :func:`train_cell` and ``run_grid(reuse_draws=True)``.
_BASES: "OrderedDict[tuple, tuple]" = OrderedDict()
_KEEP = 8
_BASES_LOCK = threading.Lock()


def _prepared_family(cfgs, device=None, reuse=True):
    """The prepared Family of ``cfgs``; with ``reuse``, its noise draw and projection come from (or go
    to) :data:`_BASES`, so that changing only signal_norm, rho or eta re-runs just the loops (the
    same numbers: the same draw and the same projection)."""
    key = tuple(cfgs[0][k] for k in FAMILY_KNOBS) + (str(device),)
    with _BASES_LOCK:
        hit = _BASES.get(key) if reuse else None
        if hit is not None:
            _BASES.move_to_end(key)
    draw = hit[0] if hit is not None else draw_noise(*(cfgs[0][k] for k in ("n", "T", "d", "sigma", "n_test", "seed")))
    fam = grid_family(cfgs, draw=draw, W0=None if hit is None else hit[1].W0)
    fam = (fam.to(device) if device is not None else fam).prepare(None if hit is None else hit[1])
    if reuse and hit is None:
        fam.W0 = torch.empty(0)  # K and A hold what the runs need; W_0 (d x d) is not kept
        with _BASES_LOCK:
            _BASES[key] = (draw, fam)
            while len(_BASES) > _KEEP:
                _BASES.popitem(last=False)
    return fam


def _compute_family(cfgs, steps, lr, rec, dtype, device=None, reuse=False):
    """One family's per-cell history dicts (numpy, sweep keys only, plus ``diverged_at``: the step by
    which the cell diverged, -1 if it did not)."""
    hist, (alpha, Z) = run_family(_prepared_family(cfgs, device, reuse), steps, lr, rec, dtype)
    out = []
    for r in range(len(cfgs)):
        h = {k: v for k, v in history_to_numpy(hist, r).items() if k in SWEEP_KEYS}
        at = first_divergence(rec, h["train_loss"], (alpha[r], Z[r]))
        h["diverged_at"] = np.array(-1 if at is None else (steps if at == -1 else at), dtype=np.int64)
        out.append(h)
    return out


def _family_cells(cfgs, *settings):
    """The cells of a family job: ``{"cell": knobs}`` for each member."""
    return [{"cell": dict(c)} for c in cfgs]


def _family_job(cfgs, steps, lr, rec, dtype, device=None, engine="exact", reuse=False):
    """A job of :func:`run_grid`: one :class:`~benign_attention.cache.Cell` per member of the family,
    computed by ``engine`` as one batch."""
    if engine == "gram":
        results = _compute_family_gram(cfgs, steps, lr, rec, dtype, device)
    else:
        results = _compute_family(cfgs, steps, lr, rec, dtype, device, reuse)
    return [Cell({}, {}, arrays) for arrays in results]


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


#: The shape of each stored sweep array after its leading record axis (E,).
_TAIL = {k: (4,) if k.startswith("attn_") else () for k in SWEEP_KEYS}


def _cell_ok(rec, cell):
    """True if ``cell`` holds one sweep cell's result over the record steps ``rec``: every sweep key
    with shape (E,) or (E, 4) for attention, and a scalar ``diverged_at``."""
    arrays = cell.arrays
    if not isinstance(arrays, Mapping) or not set(SWEEP_KEYS) <= set(arrays) or "diverged_at" not in arrays:
        return False
    return (all(isinstance(arrays[k], np.ndarray) and arrays[k].shape == (len(rec),) + _TAIL[k] for k in SWEEP_KEYS)
            and np.shape(arrays["diverged_at"]) == ())


def _check_knobs(name, knobs):
    allowed = FAMILY_KNOBS + MEMBER_KNOBS
    for k in knobs:
        if k not in allowed:
            raise ValueError(f"{name} key {k!r} unknown; allowed knobs: {allowed}")


def train_cell(steps=STEPS, lr=LR, record_every=None, record_steps=None, dtype=torch.float64, **knobs) -> Run:
    """One run of the paper's setting, equal to ``train(make_dataset(**knobs), ...)``, but the noise
    draw and the span projection are cached for the last few ``(n, T, d, sigma, n_test, seed)``: changing
    only ``signal_norm``, ``rho`` or ``eta`` re-runs just the low-dimensional loop (used by the live explorers of
    :ref:`sec-playground-regime`).
    Knobs as in :func:`~benign_attention.data.make_dataset`; a diverged run warns and is marked as in
    :func:`~benign_attention.engines.train`."""
    _check_knobs("train_cell", knobs)
    steps, lr, rec = check_train_args(steps, lr, "exact", record_every, record_steps)
    dtype = check_dtype("dtype", dtype)
    check_lr_dtype(lr, dtype)
    cfg = validate_config(**knobs)
    hist, (alpha, Z) = run_family(_prepared_family([cfg]), steps, lr, rec, dtype)
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


def _check_run(grid, base, steps, lr, record_every, record_steps, dtype, cache_dir, workers, device, executor,
               engine, reuse_draws):
    """The arguments of :func:`run_grid`, checked (ValueError naming the first bad one): the grid's
    axes, its cells (index, validated config), the job settings, the CellGrid and the executor."""
    executor = check_executor("executor", executor)
    axes, base = _check_grid(grid, base)
    steps, lr, rec = check_train_args(steps, lr, engine, record_every, record_steps, engines=("exact", "gram"),
                                      default_every=None)
    dtype, device, reuse = check_dtype("dtype", dtype), check_device("device", device), check_bool("reuse_draws", reuse_draws)
    check_lr_dtype(lr, dtype)
    if engine == "gram" and device is not None and device.type != "cpu":
        raise ValueError(f"device={str(device)!r}: the gram engine runs on the CPU (numpy)")
    on_cpu = device is None or device.type == "cpu"
    workers = (min(2, os.cpu_count() or 1) if on_cpu else 1) if workers is None else check_int("workers", workers, 1)
    cells = [(idx, validate_config(**dict(base, **{k: axes[k][i] for k, i in zip(axes, idx)})))
             for idx in itertools.product(*[range(len(v)) for v in axes.values()])]
    if cache_dir is not None:
        cache_dir = CellCache(check_cache_dir("cache_dir", default_cache_dir() if cache_dir == "default" else cache_dir,
                                              writable=False), "cache_dir")
    cell_grid = CellGrid("sweep", _settings(steps, lr, rec, dtype, engine), _family_cells, _family_job, cache_dir,
                         check=partial(_cell_ok, rec))
    prov = provenance(device, 1 if workers > 1 else None)
    if executor is not None:  # computed elsewhere: the threads there are not known here
        prov.update(threads=None, executor=type(executor).__name__)
    return axes, cells, (steps, lr, rec, dtype, device, engine, reuse), cell_grid, executor, workers, prov


def _result(axes, cells, done, rec, lr):
    """The :class:`GridResult` of the grid's cells from the cell results ``done`` (index -> arrays);
    warns once for the cells that diverged."""
    shape = tuple(len(v) for v in axes.values())
    first = done[cells[0][0]]
    data = {k: np.empty(shape + first[k].shape) for k in first if k != "diverged_at"}
    diverged_at = np.full(shape, -1, dtype=np.int64)
    for idx, arrays in done.items():
        for k in data:
            data[k][idx] = arrays[k]
        diverged_at[idx] = arrays["diverged_at"]
    diverged = diverged_at >= 0
    if diverged.any():
        first_bad = next(cfg for idx, cfg in cells if diverged[idx])
        knobs = ", ".join(f"{k}={first_bad[k]:g}" for k in axes)
        warnings.warn(DivergenceWarning(
            f"run_grid: gradient descent diverged (NaN/inf loss) with lr={lr:g} in {int(diverged.sum())} of "
            f"{diverged.size} cells (e.g. {knobs}); their metrics are NaN and result.diverged marks them. "
            f"Lower lr."), stacklevel=3)
    return GridResult(axes, rec, data, diverged)


def run_grid(grid: dict, base: dict | None = None, steps=STEPS, lr=LR, record_every=None, record_steps=None,
             dtype=torch.float32, cache_dir=None, progress=None, workers=None, device=None, executor=None,
             engine="exact", reuse_draws=False) -> GridResult:
    r"""Train every cell of the product of ``grid`` (knob -> list of values: ``n``, ``T``, ``d``, ``sigma``,
    ``n_test``, ``seed``, ``signal_norm``, ``rho``, ``eta``) over ``base`` settings (defaults of
    :func:`~benign_attention.data.make_dataset`; a knob in one of the two), as in :ref:`the phase
    diagram <sec-phase-grid>`; returns a :class:`GridResult`. A bad argument raises ValueError naming it.

    ``steps``, ``lr``, ``record_every``/``record_steps`` as in :func:`~benign_attention.engines.train`
    (default: only the final step); ``dtype`` float32 (default) or float64; ``cache_dir``: None, a
    folder or "default" (:func:`default_cache_dir`) for the book's one cell cache (see the module
    docstring); ``progress``: the package's bar (True, False, None: automatic;
    :func:`~benign_attention.validation.check_progress`); ``workers``: threads for the families
    (default :math:`\min(2, \text{CPU count})`, 1 on a GPU ``device``); ``executor``: run the families elsewhere
    (:func:`~benign_attention.parallel.run_jobs`; the same numbers, see :ref:`sec-encoder-cluster`);
    ``engine``: "exact" or "gram" (:mod:`~benign_attention.gram`, CPU only: cells agree in law, not
    number by number); ``reuse_draws``: keep the last families' noise draws and projections in memory,
    so that a call changing only ``signal_norm``, ``rho`` or ``eta`` re-runs just the loops (the live phase explorer)."""
    axes, cells, settings, cell_grid, executor, workers, prov = _check_run(
        grid, base, steps, lr, record_every, record_steps, dtype, cache_dir, workers, device, executor, engine,
        reuse_draws)
    families = {}
    for idx, cfg in cells:
        families.setdefault(tuple(cfg[k] for k in FAMILY_KNOBS), []).append((idx, cfg))
    jobs = [([cfg for _, cfg in members],) + settings for members in families.values()]
    local = executor is None and workers > 1 and len(jobs) > 1
    with torch_threads(1) if local else nullcontext(), ThreadPoolExecutor(workers) if local else nullcontext() as pool:
        results = cell_grid.run(jobs, pool if executor is None else executor, progress, prov)
    done = {idx: r.arrays for members, (got, _) in zip(families.values(), results) for (idx, _), r in zip(members, got)}
    return _result(axes, cells, done, settings[2], settings[1])
