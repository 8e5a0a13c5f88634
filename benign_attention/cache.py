"""One cell cache for every grid of the book: atomic, resumable, verified, safe for concurrent writers.

The single-head sweeps (:func:`benign_attention.sweeps.run_grid`), the encoder grid
(:func:`benign_attention.encoder.grid.run_encoder_grid`) and the real-data grid
(:func:`benign_attention.realdata.grid.run_realdata_grid`) all store one json file per finished cell in a
folder, through :class:`CellCache`. A cell file holds

* ``params``: what determines the result (the cell's knobs and training settings); a stored cell is
  reused only by a call with exactly these parameters;
* ``record``: json results (numbers, lists, nested dicts) and ``arrays``: numpy arrays, stored with
  their dtype and shape (json numbers read back bit for bit, NaN and inf included);
* ``provenance``: package and torch versions, device, torch threads, machine, date and the commit
  of the package's source (:func:`source_commit`);
* ``checksum``: the SHA-256 of all of the above, checked on every load.

Writes go to a unique temporary file in the same folder and then ``os.replace`` it, so a reader sees
the old file or the new one, never a partial one, and two processes writing the same cell at once both
succeed (the last rename wins; both wrote the same result). A temporary file left by a write that was
killed halfway is removed by :meth:`CellCache.clean` (every grid calls it) once it is older than
``STALE_SECONDS``. A file that does not parse or fails its
checksum, or one made with other parameters, warns (:class:`CacheWarning`) and is computed again.
The book explains the grids that use it in :ref:`sec-encoder-cluster`.

:class:`CellGrid` is the one grid mechanism on top of it: it loads a grid's finished cells, computes the
missing ones (here, or through any executor, :func:`~benign_attention.parallel.run_jobs`) and stores
each as it arrives. A grid's cells follow one parameter pattern (:meth:`CellGrid.params`), and its
``progress`` is the package's one progress knob (a bar: True, False or None for automatic,
:func:`~benign_attention.validation.check_progress`).
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ._version import __version__
from .parallel import ExecutorError, run_jobs
from .validation import ArgumentTypeError, check_number, check_path, check_progress, dir_is_writable

__all__ = ["CellCache", "Cell", "CellGrid", "CacheWarning", "provenance", "source_commit", "cell_key", "stored",
           "STORED"]

#: The stored results the book shows (long computations made by ``scripts/`` and ``benchmarks/``),
#: shipped inside the package so that a chapter finds them without the repository (Colab).
STORED = Path(__file__).resolve().parent / "results"

#: Seconds after which a temporary file of an unfinished write counts as abandoned (:meth:`CellCache.clean`).
STALE_SECONDS = 600.0

#: Bumped when the cell file layout changes (files of another format are then recomputed, not misread).
FORMAT = 1


class CacheWarning(UserWarning):
    """A cell file is corrupt, stale or could not be written (the cell is computed, or kept in memory)."""


def _git(*args) -> str | None:
    """The output of ``git -C <package folder> ARGS`` (stripped), or None if git fails or is missing."""
    try:
        out = subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), *args], capture_output=True,
                             text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def source_commit() -> str:
    """The commit of the package's source, for a cell's provenance; never None.

    * In a git checkout of the book's repository: ``git rev-parse HEAD``, with ``-dirty`` appended
      when tracked files differ from that commit (so the commit alone does not say what ran).
    * Installed by pip from a git URL: the commit pip recorded (``direct_url.json``).
    * Otherwise ``"unknown (benign-attention <version>, not a git checkout)"``.
    """
    package = Path(__file__).resolve().parent
    top = _git("rev-parse", "--show-toplevel")
    if top and (Path(top).resolve() / package.name) == package:
        head = _git("rev-parse", "HEAD")
        if head:
            status = _git("status", "--porcelain", "--untracked-files=no")
            return head + ("" if status == "" else "-dirty")
    try:
        from importlib.metadata import PackageNotFoundError, distribution

        direct = json.loads(distribution("benign-attention").read_text("direct_url.json") or "{}")
        commit = direct.get("vcs_info", {}).get("commit_id")
        if commit:
            return str(commit)
    except (PackageNotFoundError, ValueError, TypeError, AttributeError, OSError):
        pass
    return f"unknown (benign-attention {__version__}, not a git checkout)"


def provenance(device=None, threads=None) -> dict:
    """Where and with what a cell was computed: package and torch versions, ``device`` (default
    'cpu'), torch ``threads`` (default: the current count), machine, UTC date and the source
    ``commit`` (:func:`source_commit`). No field is None."""
    import torch

    return {"package": __version__, "torch": torch.__version__, "device": str(device or "cpu"),
            "threads": int(torch.get_num_threads() if threads is None else threads),
            "machine": platform.machine(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "commit": source_commit()}


_provenance = provenance


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, allow_nan=True, separators=(",", ":"))


def cell_key(params) -> str:
    """A 24-hex-digit name for the cell ``params`` (a json-serialisable dict), stable across runs."""
    if not isinstance(params, Mapping):
        raise ArgumentTypeError(f"params must be a dict of json values, got {type(params).__name__}")
    return hashlib.sha256(_canonical(dict(params, format=FORMAT)).encode()).hexdigest()[:24]


def _encode(name, a):
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise ArgumentTypeError(f"arrays[{name!r}] must be a numeric or boolean array, got dtype {a.dtype}")
    return {"dtype": a.dtype.str, "shape": list(a.shape), "data": a.ravel().tolist()}


def _decode(entry):
    return np.array(entry["data"], dtype=np.dtype(entry["dtype"])).reshape(entry["shape"])


@dataclass
class Cell:
    """A verified cell file: ``params``, ``record`` (json), ``arrays`` (numpy), ``provenance``, ``path``."""

    params: dict
    record: dict
    arrays: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    path: Path | None = None


class CellCache:
    """A folder of cell files (``<name>.json``); see the module docstring for the guarantees.

    ``folder``: the folder (``~`` expanded; created on the first write); ``what``: the argument name
    that error messages and warnings use for it (e.g. 'cache_dir' or 'out')."""

    def __init__(self, folder, what="folder"):
        self.what = str(what)
        self.folder = check_path(self.what, folder)

    def path(self, name) -> Path:
        """The file of the cell called ``name`` (a file name stem without '/')."""
        if not isinstance(name, str) or not name or "/" in name or os.sep in name or name.startswith("."):
            raise ValueError(f"name must be a non-empty file name stem (no '/', not starting with '.'), got {name!r}")
        return self.folder / f"{name}.json"

    def _read(self, path) -> Cell | None:
        """The cell at ``path``, or None (with a CacheWarning) if it is partial, foreign or corrupt."""
        try:
            body = json.loads(Path(path).read_text())
            checksum = body.pop("checksum")
            if body.get("format") != FORMAT:
                raise ValueError(f"cell format {body.get('format')!r}, expected {FORMAT}")
            if hashlib.sha256(_canonical(body).encode()).hexdigest() != checksum:
                raise ValueError("checksum mismatch")
            arrays = {k: _decode(v) for k, v in body["arrays"].items()}
            return Cell(body["params"], body["record"], arrays, body["provenance"], Path(path))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
            warnings.warn(CacheWarning(f"{self.what}: the cell file {str(path)!r} is unreadable or corrupt "
                                       f"({type(err).__name__}: {err}); it is computed again"), stacklevel=3)
            return None

    def load(self, name, params) -> Cell | None:
        """The stored cell ``name`` if its file is complete, passes its checksum and was made with
        exactly ``params``; None if there is no such file. A corrupt file, or one made with other
        parameters, warns (:class:`CacheWarning`) and gives None, so that the caller recomputes it."""
        path = self.path(name)
        if path.exists() and not path.is_file():
            raise ValueError(f"{self.what}: {str(path)!r} is in the way of a cell file (it is not a file); remove it")
        cell = self._read(path)
        if cell is None:
            return None
        want = json.loads(_canonical(params))
        if cell.params != want:
            diff = sorted(k for k in set(want) | set(cell.params) if want.get(k) != cell.params.get(k))
            warnings.warn(CacheWarning(f"{self.what}: the cell file {str(path)!r} was made with other parameters "
                                       f"(differing: {diff}); it is computed again and replaced"), stacklevel=2)
            return None
        return cell

    def save(self, name, params, record=None, arrays=None, provenance=None) -> Path:
        """Write the cell ``name`` atomically (unique temporary file, then ``os.replace``) and return
        its path. ``params``/``record``: json-serialisable dicts; ``arrays``: numeric numpy arrays;
        ``provenance``: a dict (default :func:`provenance` of this process). Raises OSError if the
        folder cannot be written."""
        for k, v in (("params", params), ("record", record), ("arrays", arrays), ("provenance", provenance)):
            if v is not None and not isinstance(v, Mapping):
                raise ArgumentTypeError(f"{k} must be a dict, got {type(v).__name__}")
        try:
            body = json.loads(_canonical({
                "format": FORMAT, "params": dict(params), "record": dict(record or {}),
                "arrays": {k: _encode(k, v) for k, v in (arrays or {}).items()},
                "provenance": dict(_provenance() if provenance is None else provenance)}))
        except (TypeError, ValueError) as err:
            raise ArgumentTypeError(f"params, record and provenance must be json-serialisable ({err})") from None
        body["checksum"] = hashlib.sha256(_canonical(body).encode()).hexdigest()
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(json.dumps(body, allow_nan=True))
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path

    def clean(self, max_age=STALE_SECONDS) -> int:
        """Remove the temporary files that writes killed halfway left behind (``.<name>.json.*.tmp``
        older than ``max_age`` seconds: a write takes milliseconds, so an older one has no writer any
        more, on any machine sharing the folder). Returns how many were removed; a file that cannot
        be removed is left (this never raises for the folder's state). Every grid calls it before it
        writes."""
        import time

        max_age = check_number("max_age", max_age, 0)
        if not self.folder.is_dir():
            return 0
        removed, now = 0, time.time()
        for tmp in self.folder.glob(".*.json.*.tmp"):
            try:
                if now - tmp.stat().st_mtime >= max_age:
                    tmp.unlink()
                    removed += 1
            except OSError:
                continue
        return removed

    def cells(self, pattern="*.json") -> list[Cell]:
        """Every verified cell file in the folder whose name matches ``pattern`` (sorted by name; none if
        the folder does not exist). Corrupt files warn (:class:`CacheWarning`) and are left out."""
        if self.folder.exists() and not self.folder.is_dir():
            raise ValueError(f"{self.what} {str(self.folder)!r} is a file, not a folder of cell files")
        found = (self._read(p) for p in sorted(self.folder.glob(pattern)) if not p.name.startswith("."))
        return [c for c in found if c is not None]


def stored(name: str) -> Path:
    """The folder (or file) ``name`` of the stored results shipped with the package, e.g.
    ``stored("encoder")`` for the encoder grid; raises ``ValueError`` for a name that is not there."""
    if not isinstance(name, str):
        raise ArgumentTypeError(f"stored: name must be a string, got {type(name).__name__}")
    path = (STORED / name).resolve()
    if not name or not path.is_relative_to(STORED) or path == STORED or not path.exists():
        have = sorted(p.name for p in STORED.iterdir())
        raise ValueError(f"stored: no stored result {name!r}; allowed: one of {have} (or a file inside)")
    return path


@dataclass(frozen=True)
class CellGrid:
    """The one grid mechanism of the package: load the finished cells, compute the missing ones
    (here or through an executor), store each atomically as it arrives. The sweeps
    (:func:`benign_attention.sweeps.run_grid`), the encoder grid
    (:func:`benign_attention.encoder.grid.run_encoder_grid`) and the real-data grid
    (:func:`benign_attention.realdata.grid.run_realdata_grid`) are each one ``CellGrid``; see :ref:`sec-encoder-cluster`.

    A *cell* is a dict of its knobs; a *job* is a tuple of arguments that computes one or more cells
    at once (a sweep family is one job). The fields:

    * ``experiment``, ``settings``: the cell parameters are ``{"experiment": experiment, **cell,
      **settings}`` (:meth:`params`), the one pattern of every grid; a stored cell is reused only
      by a call with exactly these parameters;
    * ``cells_of(*job)``: the cells a job computes, in order; ``compute(*job)``: one result per cell,
      each a :class:`Cell` (its ``record``, ``arrays`` and ``provenance``) or None (no result,
      nothing stored); both run where the executor runs, so they must pickle for a process pool;
    * ``cache``: the :class:`CellCache` (None: nothing is loaded or stored); ``name``: the file name
      of a cell, a format string over its parameters (None: :func:`cell_key` of them);
    * ``check(cell)``: whether a :class:`Cell` holds a cell's result (None: any does); a stored cell
      that fails it warns and is computed again, a computed one raises ExecutorError;
    * ``in_worker``: True stores each cell where its job runs (the workers share the folder, and a
      finished cell outlives this process; a job run again finds it), False stores it here (the
      workers need no shared folder).
    """

    experiment: str
    settings: Mapping
    cells_of: Callable
    compute: Callable
    cache: CellCache | None = None
    name: str | None = None
    check: Callable | None = None
    in_worker: bool = False

    def params(self, cell) -> dict:
        """The cache parameters of ``cell``: ``{"experiment": ..., **cell, **settings}``."""
        return {"experiment": self.experiment, **cell, **self.settings}

    def cell_name(self, cell) -> str:
        """The file name stem of ``cell`` in ``cache``."""
        params = self.params(cell)
        return self.name.format(**params) if self.name else cell_key(params)

    def load(self, cell, quiet=False) -> Cell | None:
        """The stored result of ``cell`` if it is complete and passes ``check``; else None (with
        a :class:`CacheWarning` for a corrupt or foreign file, unless ``quiet``)."""
        if self.cache is None:
            return None
        with warnings.catch_warnings():
            if quiet:
                warnings.simplefilter("ignore", CacheWarning)
            got = self.cache.load(self.cell_name(cell), self.params(cell))
        if got is not None and self.check is not None and not self.check(got):
            if not quiet:
                warnings.warn(CacheWarning(f"{self.cache.what}: the cell file {str(got.path)!r} passes its checksum but "
                                           f"does not hold a cell's result; it is computed again"), stacklevel=3)
            return None
        return got

    def save(self, cell, result, provenance=None) -> Cell | None:
        """Store ``result`` (a :class:`Cell` or None) as ``cell`` and return it with its parameters
        and path; a folder that cannot be written warns and the result is returned unstored."""
        if result is None or self.cache is None or not isinstance(result, Cell):
            return result
        prov = result.provenance or provenance or _provenance()
        out = Cell(self.params(cell), result.record, result.arrays, prov)
        try:
            out.path = self.cache.save(self.cell_name(cell), out.params, out.record, out.arrays, prov)
        except OSError as err:
            warnings.warn(CacheWarning(f"{self.cache.what}: could not write the cell file "
                                       f"{str(self.cache.path(self.cell_name(cell)))!r} ({err}); its result is "
                                       f"kept in memory only"), stacklevel=3)
        return out

    def run(self, jobs, executor=None, progress=None, provenance=None, desc="grid cells") -> list:
        """Load, compute and store the cells of ``jobs`` (a list of argument tuples).

        A job with any cell missing is computed whole (a sweep family is one batch). ``executor``:
        None computes here, one job after the other; else any executor that
        :func:`~benign_attention.parallel.run_jobs` accepts. ``progress``: the package's progress
        knob (:func:`~benign_attention.validation.check_progress`). ``provenance``: for results that
        bring none (default: :func:`provenance` of this process). Raises ValueError if cells remain
        to be computed and the folder is not writable, ExecutorError if a job comes back with
        anything but its own cells' results.

        Returns one ``(results, computed)`` per job, in job order: the list of its cells' results
        (:class:`Cell` or None) and whether this call computed them. The folder's writability is
        checked here unless only the workers store (``in_worker``) and it does not exist here."""
        progress = check_progress("progress", progress)
        if self.cache is not None:
            self.cache.clean()   # temporary files of writes killed halfway
        cells = [self.cells_of(*job) for job in jobs]
        found = [[self.load(c) for c in cs] for cs in cells]
        todo = [i for i, f in enumerate(found) if any(x is None for x in f)]
        here = self.cache is not None and (not self.in_worker or self.cache.folder.is_dir())
        if here and todo and not dir_is_writable(self.cache.folder):
            raise ValueError(f"{self.cache.what} {str(self.cache.folder)!r} is not writable, and "
                             f"{sum(len(cells[i]) for i in todo)} cells remain to be computed; pass a writable folder")
        fn = partial(_job, self)
        args = [jobs[i] for i in todo]
        results = run_jobs(fn, args, executor) if executor is not None else (fn(*job) for job in args)
        bar = tqdm(total=sum(len(cells[i]) for i in todo), desc=desc, **progress) if todo else None
        try:
            for i, got in zip(todo, results):
                found[i] = self._check(got, cells[i])
                if not self.in_worker:
                    found[i] = [self.save(c, r, provenance) for c, r in zip(cells[i], found[i])]
                if bar is not None:
                    bar.update(len(cells[i]))
        finally:
            if bar is not None:
                bar.close()
        new = set(todo)
        return [(f, i in new) for i, f in enumerate(found)]

    def _check(self, got, cells):
        """The results of a job that asked for ``cells``, or ExecutorError if it brought others."""
        what = f"the job of {len(cells)} cells starting at {dict(cells[0])}"
        if not isinstance(got, Mapping) or "cells" not in got or "results" not in got:
            raise ExecutorError(f"executor: {what} returned {type(got).__name__}, not its cells' results")
        want = [self.params(c) for c in cells]
        if list(got["cells"]) != want:
            theirs = dict(got["cells"][0]) if got["cells"] else None
            raise ExecutorError(f"executor: {what} returned the result of other cells (starting at {theirs})")
        results = got["results"]
        if not isinstance(results, (list, tuple)) or len(results) != len(cells):
            n = f"{len(results)} results" if isinstance(results, (list, tuple)) else type(results).__name__
            raise ExecutorError(f"executor: {what} came back as {n}, expected {len(cells)} cell results")
        for r in results:
            if r is not None and (not isinstance(r, Cell) or (self.check is not None and not self.check(r))):
                raise ExecutorError(f"executor: {what} came back with a result that is not a cell's result")
        return list(results)


def _job(grid, *args):
    """One job of ``grid`` where the executor runs it: its stored cells if all are there (only when
    stored there, ``in_worker``), else computed (and stored there when ``in_worker``); returned with
    the cells' parameters, so that the caller can check they are the ones it asked for."""
    cells = grid.cells_of(*args)
    found = [grid.load(c, quiet=True) for c in cells] if grid.in_worker else [None]
    if any(f is None for f in found):
        found = list(grid.compute(*args))
        if grid.in_worker and len(found) == len(cells):
            found = [grid.save(c, r) for c, r in zip(cells, found)]
    return {"cells": [grid.params(c) for c in cells], "results": found}
