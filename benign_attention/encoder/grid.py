r"""The encoder's stored results: single runs (:func:`save_run`, :func:`load_runs`) and the
:math:`(d, \lVert\mu\rVert)` grid (:func:`encoder_cell`, :func:`run_encoder_grid`, :func:`load_grid`; ``scripts/encoder_grid.py``).

Every file is a cell of the book's one cell cache (:class:`~benign_attention.cache.CellCache`: atomic,
checksummed, with provenance), and the grid runs through the package's one grid mechanism
(:class:`~benign_attention.cache.CellGrid`): a grid cell's parameters are ``{"experiment": "encoder",
"d", "signal_norm", "seed", "steps", "lr", "mlp_dim", "dtype"}`` and its file ``d<d>_mu<mu>_seed<seed>.json``
(:data:`CELL_NAME`) at the paper's lr, ``mlp_dim`` and dtype; other values of these three are written
into the name (``d<d>_mu<mu>_lr<lr>_mlp<mlp_dim>_<dtype>_seed<seed>.json``, only the ones that differ),
so that cells of two settings never replace each other. See :ref:`sec-encoder-grid` and
:ref:`sec-encoder-cluster`.
"""
from __future__ import annotations

import warnings
from functools import partial

import numpy as np
import torch

from ..cache import CacheWarning, Cell, CellCache, CellGrid, provenance
from ..data import make_dataset
from ..engines import DivergenceWarning
from ..validation import (ArgumentTypeError, check_dtype, check_executor, check_int, check_int_array, check_lr_dtype,
                          check_number, check_path)
from .model import MLP_DIM
from .train import LR, EncoderRun, train_encoder

__all__ = ["save_run", "load_runs", "load_grid", "encoder_cell", "run_encoder_grid", "RECORD_KEYS", "SETTING_KEYS",
           "CELL_NAME"]

#: The file name of a grid cell, over its parameters (:class:`~benign_attention.cache.CellGrid`), at the
#: paper's lr, ``mlp_dim`` and dtype (the stored grid's); other values of these three are added to it (see above).
CELL_NAME = "d{d}_mu{signal_norm:g}_seed{seed}"


def _cell_name(lr, mlp_dim, dtype):
    """The cell name pattern for these settings: :data:`CELL_NAME` at the paper's (``LR``, ``MLP_DIM``,
    float32), else with ``_lr<lr>``, ``_mlp<mlp_dim>`` and ``_<dtype>`` (those that differ) before
    ``_seed``, so that the files of two settings never share a name and ``load_grid`` still finds them."""
    parts = ((f"_lr{float(lr)!r}", lr != LR), (f"_mlp{int(mlp_dim)}", mlp_dim != MLP_DIM),
             (f"_{dtype}", dtype != "float32"))
    extra = "".join(part for part, differs in parts if differs)
    return CELL_NAME.replace("_seed", extra + "_seed")


def save_run(run, out, name):
    """Store ``run`` (an :class:`~benign_attention.encoder.train.EncoderRun`) as the cell file ``<name>.json`` in the folder ``out``,
    through the book's one cell cache (:class:`~benign_attention.cache.CellCache`: atomic,
    checksummed, with provenance); its ``config`` is the cell's parameters. Returns the file's path.
    :func:`load_runs` reads it back, bit for bit. The stored runs of :ref:`sec-encoder-paper-scale`."""
    if not isinstance(run, EncoderRun):
        raise ArgumentTypeError(f"run must be an EncoderRun (from train_encoder), got {type(run).__name__}")
    arrays = {"steps": np.asarray(run.steps), **{f"history.{k}": np.asarray(v) for k, v in run.history.items()}}
    return CellCache(out, "out").save(name, dict(run.config), record={"seconds": float(run.seconds),
                                                                      "diverged_at": run.diverged_at}, arrays=arrays)


def load_runs(folder):
    """``{name: EncoderRun}`` for every run that :func:`save_run` stored in ``folder`` (sorted by
    name; corrupt files are left out with a :class:`~benign_attention.cache.CacheWarning`). Raises
    ValueError if ``folder`` is not an existing directory."""
    folder = check_path("folder", folder)
    if not folder.is_dir():
        raise ValueError(f"folder must be an existing directory, got {str(folder)!r}")
    runs = {}
    for cell in CellCache(folder, "folder").cells():
        if "steps" not in cell.arrays:
            continue   # another kind of cell (a grid cell): not a stored run
        steps = cell.arrays["steps"]
        history = {k.split(".", 1)[1]: v for k, v in cell.arrays.items() if k.startswith("history.")}
        seconds = cell.record.get("seconds")
        ok = (steps.ndim == 1 and "train_loss" in history and isinstance(seconds, (int, float))
              and all(v.shape[:1] == steps.shape for v in history.values()))
        if not ok:
            warnings.warn(CacheWarning(f"folder: {str(cell.path)!r} is not a run stored by save_run (its arrays do "
                                       f"not match its {len(steps)} steps, or it has no train_loss or seconds); "
                                       f"it is left out"), stacklevel=2)
            continue
        at = cell.record.get("diverged_at")
        runs[cell.path.stem] = EncoderRun(steps, history, seconds, dict(cell.params),
                                          at if isinstance(at, int) else None)
    return runs


#: The numeric results every encoder cell record holds (the ``keys`` :func:`load_grid` can map).
RECORD_KEYS = ("train_loss", "train_acc", "train_clean_acc", "test_loss", "test_acc", "noisy_attention_x3",
               "clean_attention_x1", "seconds")
#: The training settings of a cell besides :math:`d`, :math:`\lVert\mu\rVert` and the seed; one grid map holds one setting only.
SETTING_KEYS = ("steps", "lr", "mlp_dim", "dtype")


def load_grid(folder, keys=("train_loss", "test_loss", "test_acc", "train_acc", "seconds"), seed=0, steps=None,
              lr=None, mlp_dim=None):
    """Read the encoder grid's cell files of one ``seed`` (``d*_mu*_seed<seed>.json``, see
    :func:`run_encoder_grid`) from ``folder``.

    Returns ``(d_values, mu_values, maps, records)``: sorted grid values, ``maps[key]`` arrays of
    shape ``(len(d_values), len(mu_values))`` with NaN where a cell is missing, and the records (each with
    its ``provenance``). Partial or corrupt files, and files that are not encoder cells, are left out
    with a :class:`~benign_attention.cache.CacheWarning`. The grid of :ref:`sec-encoder-grid`.

    ``keys``: a list of names from ``RECORD_KEYS``. ``steps``, ``lr``, ``mlp_dim``: keep only the
    cells trained with that many steps, that learning rate, that width of the feed-forward block
    (None: any). The cells mapped must share one training setting (steps, lr, mlp_dim, dtype):
    cells of different settings are never merged into one map; a folder that mixes them raises
    ValueError naming the settings found (pass ``steps``, ``lr`` or ``mlp_dim`` to pick one)."""
    folder = check_path("folder", folder)
    seed = check_int("seed", seed, low=0)
    steps = None if steps is None else check_int("steps", steps, low=0)
    lr = None if lr is None else check_number("lr", lr, low=0, low_open=True)
    mlp_dim = None if mlp_dim is None else check_int("mlp_dim", mlp_dim, low=1)
    if isinstance(keys, str) or not hasattr(keys, "__iter__"):
        raise ArgumentTypeError(f"keys must be a list of record names from {RECORD_KEYS}, got {keys!r}")
    keys = list(keys)
    for k in keys:
        if not isinstance(k, str) or k not in RECORD_KEYS:
            raise ValueError(f"keys must name results of an encoder cell {RECORD_KEYS}, got {k!r}")
    if not folder.is_dir():
        raise ValueError(f"folder must be an existing directory, got {str(folder)!r}")
    recs = []
    for c in CellCache(folder, "folder").cells(f"d*_mu*_seed{seed}.json"):
        r = c.record
        ok = (c.params.get("experiment") == "encoder" and all(k in r for k in ("d", "signal_norm") + SETTING_KEYS)
              and all(isinstance(r.get(k), (int, float)) for k in RECORD_KEYS if k in r))
        if not ok:
            warnings.warn(CacheWarning(f"folder: {str(c.path)!r} is not an encoder grid cell; it is left out"),
                          stacklevel=2)
            continue
        if all(want is None or r[k] == want for k, want in (("steps", steps), ("lr", lr), ("mlp_dim", mlp_dim))):
            recs.append(dict(r, provenance=c.provenance))
    settings = sorted({tuple(r[k] for k in SETTING_KEYS) for r in recs}, key=str)
    if len(settings) > 1:
        found = "; ".join(", ".join(f"{k}={v}" for k, v in zip(SETTING_KEYS, st)) for st in settings)
        raise ValueError(f"folder {str(folder)!r} holds cells of {len(settings)} training settings ({found}); "
                         f"one map holds one setting: pass steps=, lr= or mlp_dim= to choose")
    d_values = np.array(sorted({r["d"] for r in recs}), dtype=int)
    mu_values = np.array(sorted({r["signal_norm"] for r in recs}), dtype=float)
    maps = {k: np.full((len(d_values), len(mu_values)), np.nan) for k in keys}
    for r in recs:
        i, j = np.searchsorted(d_values, r["d"]), np.searchsorted(mu_values, r["signal_norm"])
        for k in keys:
            maps[k][i, j] = r.get(k, np.nan)
    return d_values, mu_values, maps, recs



def _cells(d, mu):
    """The one cell of a grid job (d, mu)."""
    return [{"d": int(d), "signal_norm": float(mu)}]


def _train_cell(seed, steps, lr, mlp_dim, dtype, threads, d, mu):
    """A grid job, where the executor runs it: train the cell (d, mu) on ``threads`` torch threads."""
    ds = make_dataset(d=d, signal_norm=mu, seed=seed)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        run = train_encoder(ds, steps=steps, lr=lr, record_every=max(steps, 1), test_every=max(steps, 1),
                            mlp_dim=mlp_dim, seed=seed, dtype=dtype)
        used = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    att = run.history["train_attention"][-1]
    rec = {
        "d": d, "signal_norm": float(mu), "seed": seed, "steps": steps, "lr": lr, "mlp_dim": mlp_dim,
        "dtype": dtype, "n": ds.n, "T": ds.T, "n_test": ds.n_test, "data_fingerprint": ds.fingerprint,
        **{k: float(run.history[k][-1]) for k in ("train_loss", "train_acc", "train_clean_acc", "test_loss",
                                                   "test_acc")},
        "noisy_attention_x3": float(att[ds.noisy, 2].mean()), "clean_attention_x1": float(att[~ds.noisy, 0].mean()),
        "seconds": run.seconds, "diverged_at": run.diverged_at,
    }
    return [Cell({}, rec, provenance=provenance("cpu", used))]


def _grid(out, seed, steps, lr, mlp_dim, dtype, threads):
    """The :class:`~benign_attention.cache.CellGrid` of the encoder cells with these settings in ``out``."""
    settings = {"seed": seed, "steps": steps, "lr": lr, "mlp_dim": mlp_dim, "dtype": dtype}
    return CellGrid("encoder", settings, _cells, partial(_train_cell, seed, steps, lr, mlp_dim, dtype, threads),
                    CellCache(out, "out"), _cell_name(lr, mlp_dim, dtype), in_worker=True)


def _record(cell):
    return dict(cell.record, provenance=cell.provenance)


def encoder_cell(d, mu, out, seed=0, steps=1000, lr=LR, mlp_dim=MLP_DIM, dtype="float32", threads=1):
    r"""Train one cell of the encoder grid and store it in the folder ``out``.

    The cell is ``make_dataset(d=d, signal_norm=mu, seed=seed)`` (paper defaults otherwise), trained by
    :func:`~benign_attention.encoder.train.train_encoder` for ``steps`` SGD steps on ``threads`` torch threads. Its record (final train
    and test loss and accuracy, the [CLS] attention of noisy samples on :math:`x_3` and of clean samples on
    :math:`x_1`, wall seconds) is written with its provenance through the book's one cell cache
    (:class:`~benign_attention.cache.CellCache`: atomic, checksummed), where this function runs.

    Returns
    -------
    dict
        The record, with its ``provenance``. A cell already stored with the same parameters is not
        computed again (its stored record is returned): a task that Dask runs again after a worker
        died finds it. See :ref:`sec-encoder-cluster`.
    """
    d, seed, threads = check_int("d", d, low=1), check_int("seed", seed, low=0), check_int("threads", threads, low=1)
    mu = check_number("mu", mu, low=0)
    steps, mlp_dim = check_int("steps", steps, low=0), check_int("mlp_dim", mlp_dim, low=1)
    lr = check_number("lr", lr, low=0, low_open=True)
    tdt = check_dtype("dtype", dtype)
    check_lr_dtype(lr, tdt)
    dtype = str(tdt).replace("torch.", "")
    ((cell,), _), = _grid(out, seed, steps, lr, mlp_dim, dtype, threads).run([(d, mu)], progress=False)
    return _record(cell)


def run_encoder_grid(d_values, mu_values, out, seed=0, steps=1000, threads=1, executor=None, progress=None, lr=LR,
                     mlp_dim=MLP_DIM):
    r"""Compute the missing cells of the encoder's :math:`(d, \lVert\mu\rVert)` grid into the folder ``out``.

    Parameters
    ----------
    d_values : list
        The grid's values of :math:`d` (integers >= 1); cells run cheapest (small :math:`d`) first.
    mu_values : list
        The grid's signal norms :math:`\lVert\mu\rVert` (numbers >= 0); every :math:`d` runs with every one. A value given
        twice (in either list) is one cell, computed and returned once; two values whose cell files
        would share a name (equal to 6 significant digits) raise ValueError.
    out : str or Path
        The cell folder (the book's one cell cache, :class:`~benign_attention.cache.CellCache`).
        Cells stored there with the same parameters are skipped, so a stopped run resumes; corrupt
        ones warn (:class:`~benign_attention.cache.CacheWarning`) and are computed again.
    seed, steps, threads
        As in :func:`encoder_cell`.
    executor : concurrent.futures.Executor, optional
        Where the cells run: None runs them here, one after the other; any ``concurrent.futures``-style
        executor (``submit`` returning futures: :func:`~benign_attention.parallel.process_pool`, or a ``dask.distributed`` Client's
        ``get_executor()``) runs them there. Each cell writes its own file where it runs, so ``out``
        must be a folder that the workers share. See :ref:`sec-encoder-cluster`.
    progress : bool or None
        The package's progress bar: True, False or None (the default: automatic, see
        :func:`~benign_attention.validation.check_progress`).
    lr : float
        The SGD learning rate, > 0 (default: the paper's, ``LR``).
    mlp_dim : int
        The width of the feed-forward block, >= 1 (default: the paper's, ``MLP_DIM``). Cells of an lr
        or ``mlp_dim`` other than the paper's have those values in their file names (:data:`CELL_NAME`),
        so they never replace the paper-setting cells of the same folder; :func:`load_grid` picks
        one setting with its ``lr`` and ``mlp_dim`` arguments.

    Returns
    -------
    list of dict
        The records computed by this call (the same numbers wherever they ran), each with its
        ``provenance``. The cells run through the package's one grid mechanism
        (:class:`~benign_attention.cache.CellGrid`), each stored where it runs.
    """
    executor = check_executor("executor", executor)
    d_values = sorted({int(d) for d in check_int_array("d_values", d_values, 1)})   # a repeated value: one cell
    if (isinstance(mu_values, (str, bytes, dict)) or not hasattr(mu_values, "__iter__")
            or (isinstance(mu_values, (np.ndarray, torch.Tensor)) and mu_values.ndim != 1)):
        raise ArgumentTypeError(f"mu_values must be a list of numbers >= 0, got {mu_values!r}")
    mus = [check_number(f"mu_values[{i}]", mu, low=0) for i, mu in enumerate(mu_values)]
    if not mus:
        raise ValueError("mu_values must list at least one value")
    mu_values, names = [], {}
    for mu in mus:
        name = CELL_NAME.format(d=1, signal_norm=mu, seed=0)
        if name in names and names[name] != mu:
            raise ValueError(f"mu_values {names[name]!r} and {mu!r} would share one cell file ({name}...: its name keeps "
                             f"6 significant digits); give values that differ within 6 digits")
        if name not in names:
            names[name] = mu
            mu_values.append(mu)
    seed, steps = check_int("seed", seed, low=0), check_int("steps", steps, low=0)
    threads = check_int("threads", threads, low=1)
    lr = check_lr_dtype(check_number("lr", lr, low=0, low_open=True), torch.float32)
    mlp_dim = check_int("mlp_dim", mlp_dim, low=1)
    grid = _grid(out, seed, steps, lr, mlp_dim, "float32", threads)
    done = grid.run([(d, mu) for d in d_values for mu in mu_values], executor, progress, desc="encoder grid")
    records = [_record(cell) for (cell,), computed in done if computed]
    _warn_diverged_cells("run_encoder_grid", [(f"d={r['d']}, mu={r['signal_norm']:g}", r) for r in records], lr)
    return records


def _warn_diverged_cells(what, labelled, lr):
    """One DivergenceWarning for the cells (label, record) whose record has a ``diverged_at`` (their
    own warning was given where they ran, perhaps in another process)."""
    bad = [label for label, r in labelled if isinstance(r, dict) and r.get("diverged_at") is not None]
    if bad:
        warnings.warn(DivergenceWarning(f"{what}: training diverged (NaN/inf loss) in {len(bad)} of {len(labelled)} "
                                        f"cells (e.g. {bad[0]}, lr={lr:g}); their metrics are NaN. Lower lr."),
                      stacklevel=3)
