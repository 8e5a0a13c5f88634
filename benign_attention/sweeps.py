"""Grids of runs: batched, cached on disk, resumable (chapter *The phase diagram*).

Cells that differ only in ``signal_norm``, ``rho`` or ``eta`` share their noise draw and W_0 (see
:mod:`benign_attention.data`), hence the token span: they form one :class:`~benign_attention.engines.Family`
and run as one batch of the exact engine. Each cell's result equals ``train(make_dataset(...))`` for
that cell (tested). Results are cached one ``.npz`` per cell (atomic write, checksummed metadata, no
pickle); an interrupted sweep resumes and recomputes only missing or corrupt cells.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .data import check_int, draw_noise, init_W, noisy_mask, signal_coefficients, validate_config
from .engines import Family, Run, _check_train_args, _run_family, _threads, _to_numpy

__all__ = ["run_grid", "train_cell", "GridResult", "default_cache_dir"]

FAMILY_KNOBS = ("n", "T", "d", "sigma", "n_test", "seed")
MEMBER_KNOBS = ("signal_norm", "rho", "eta")
#: History keys kept for sweeps (per-sample arrays are dropped to keep caches small).
SWEEP_KEYS = ("train_loss", "train_acc", "train_clean_acc", "attn_clean", "attn_noisy",
              "test_loss", "test_acc", "test_margin", "attn_test")


def default_cache_dir():
    """``$BENIGN_ATTENTION_CACHE`` or ``~/.cache/benign_attention/sweeps``."""
    env = os.environ.get("BENIGN_ATTENTION_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "benign_attention" / "sweeps"


@dataclass(eq=False)
class GridResult:
    """Results over a grid: ``axes`` (ordered knob -> values), ``steps`` record steps, and
    ``data[key]`` arrays of shape (*grid shape, E, ...)."""

    axes: dict
    steps: np.ndarray
    data: dict

    def get(self, key, step=None):
        """``data[key]`` at the recorded step closest to ``step`` (default: the last)."""
        i = -1 if step is None else int(np.argmin(np.abs(self.steps - step)))
        return self.data[key][..., i] if self.data[key].ndim == len(self.axes) + 1 else self.data[key][..., i, :]


def _cell_key(cell, steps, lr, rec, dtype):
    payload = json.dumps(
        {"cell": cell, "steps": steps, "lr": lr, "record_steps": rec.tolist(), "dtype": str(dtype),
         "version": __version__}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24], payload


def _checksum(arrays):
    h = hashlib.sha256()
    for k in sorted(arrays):
        h.update(k.encode())
        h.update(np.ascontiguousarray(arrays[k]).tobytes())
    return h.hexdigest()


def save_npz_atomic(path: Path, arrays: dict, meta: dict):
    """Write arrays and json metadata (with a checksum) to ``path`` via a temp file and rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(meta, checksum=_checksum(arrays))
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, __meta__=np.array(json.dumps(meta)), **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_npz_verified(path: Path, payload: str):
    """Arrays from ``path`` if it is complete, matches ``payload`` and its checksum; else None."""
    try:
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f["__meta__"]))
            arrays = {k: f[k] for k in f.files if k != "__meta__"}
    except Exception:
        return None
    if meta.get("payload") != payload or meta.get("checksum") != _checksum(arrays):
        return None
    return arrays


def _family(cfgs, dtype=torch.float64, draw=None, W0=None):
    """Build the Family of cells sharing family knobs (cfgs: validated configs)."""
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
    """One family's per-cell history dicts (numpy, sweep keys only)."""
    fam = _family(cfgs)
    fam = (fam.to(device) if device is not None else fam).prepare()
    hist, _ = _run_family(fam, steps, lr, rec, dtype)
    return [{k: v for k, v in _to_numpy(hist, r).items() if k in SWEEP_KEYS} for r in range(len(cfgs))]


def _map(fn, jobs, workers):
    """Yield fn(*job) in order, in ``workers`` threads with one torch thread each (torch and numpy's
    random generators release the GIL, so independent families run side by side)."""
    if workers == 1 or len(jobs) < 2:
        yield from (fn(*job) for job in jobs)
        return
    from concurrent.futures import ThreadPoolExecutor

    with _threads(1), ThreadPoolExecutor(workers) as pool:
        yield from pool.map(lambda job: fn(*job), jobs)


_BASES: "OrderedDict[tuple, tuple]" = OrderedDict()


def train_cell(steps=1000, lr=5e-3, record_every=10, record_steps=None, dtype=torch.float64, **knobs) -> Run:
    """One run of the paper's setting, equal to ``train(make_dataset(**knobs), ...)``, but the noise
    draw and the span projection are cached for the last few (n, T, d, sigma, n_test, seed): changing
    only signal_norm, rho or eta re-runs just the low-dimensional loop (used by the live explorers)."""
    steps, lr, rec = _check_train_args(steps, lr, "exact", record_every, record_steps)
    cfg = validate_config(**knobs)
    key = tuple(cfg[k] for k in FAMILY_KNOBS)
    if key in _BASES:
        _BASES.move_to_end(key)
        draw, shared = _BASES[key]
        fam = _family([cfg], draw=draw, W0=shared.W0).prepare(shared)
    else:
        draw = draw_noise(*(cfg[k] for k in ("n", "T", "d", "sigma", "n_test", "seed")))
        fam = _family([cfg], draw=draw).prepare()
        _BASES[key] = (draw, fam)
        while len(_BASES) > 3:
            _BASES.popitem(last=False)
    hist, _ = _run_family(fam, steps, lr, rec, dtype)
    return Run(rec, _to_numpy(hist, 0), dict(cfg, lr=lr, engine="exact", steps_done=steps))


def run_grid(grid: dict, base: dict | None = None, steps=1000, lr=5e-3, record_every=None,
             record_steps=None, dtype=torch.float32, cache_dir=None, progress=True, workers=None,
             device=None) -> GridResult:
    """Train every cell of the product of ``grid`` (knob -> list of values) over ``base`` settings
    (defaults of :func:`~benign_attention.data.make_dataset`) with the exact engine.

    Knobs: n, T, d, sigma, n_test, seed, signal_norm, rho, eta. By default only the final step is
    recorded (``record_every``/``record_steps`` as in :func:`~benign_attention.engines.train`).
    ``cache_dir``: a folder for per-cell results (None: no cache; "default": :func:`default_cache_dir`).
    ``dtype`` of the GD loop: float32 (default, agrees with float64 to plotting precision) or float64.
    ``workers``: threads for independent families (default: min(2, CPU count); 1 on a GPU ``device``).
    """
    if record_steps is None and record_every is None:
        record_steps = [steps]
    steps, lr, rec = _check_train_args(steps, lr, "exact", record_every or 1, record_steps)
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    axes = {k: list(v) for k, v in grid.items()}
    for k, v in axes.items():
        if k not in FAMILY_KNOBS + MEMBER_KNOBS:
            raise ValueError(f"grid knob {k!r} unknown; allowed: {FAMILY_KNOBS + MEMBER_KNOBS}")
        if len(v) == 0:
            raise ValueError(f"grid[{k!r}] must list at least one value")
    base = dict(base or {})
    shape = tuple(len(v) for v in axes.values())
    cells = []
    for idx in itertools.product(*[range(s) for s in shape]):
        cfg = dict(base, **{k: axes[k][i] for k, i in zip(axes, idx)})
        cells.append((idx, validate_config(**cfg)))
    cache = None if cache_dir is None else Path(default_cache_dir() if cache_dir == "default" else cache_dir)

    results, todo = {}, {}
    for idx, cfg in cells:
        key, payload = _cell_key(cfg, steps, lr, rec, dtype)
        got = load_npz_verified(cache / f"{key}.npz", payload) if cache else None
        if got is not None:
            results[idx] = got
        else:
            fam_key = tuple(cfg[k] for k in FAMILY_KNOBS)
            todo.setdefault(fam_key, []).append((idx, cfg, key, payload))

    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(len(v) for v in todo.values()), desc="grid cells")
    jobs = [([cfg for _, cfg, _, _ in members], steps, lr, rec, dtype, device) for members in todo.values()]
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if device in (None, "cpu") else 1
    workers = check_int("workers", workers, 1)
    for members, arrays_list in zip(todo.values(), _map(_compute_family, jobs, workers)):
        for (idx, cfg, key, payload), arrays in zip(members, arrays_list):
            results[idx] = arrays
            if cache:
                save_npz_atomic(cache / f"{key}.npz", arrays, {"payload": payload})
        if bar:
            bar.update(len(members))
    if bar:
        bar.close()
    first = results[cells[0][0]]
    data = {k: np.empty(shape + first[k].shape) for k in first}
    for idx, arr in results.items():
        for k in data:
            data[k][idx] = arr[k]
    return GridResult(axes, rec, data)
