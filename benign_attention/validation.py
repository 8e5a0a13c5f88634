"""Argument checks shared by every public entry point of the package (and of :mod:`benign_attention.realdata`).

The convention is summarised in :ref:`api-reference`.

Each public function checks what it is given here, in one place, before doing any work, and fails
with an exception whose message starts with the argument's name and says what is allowed:

* :class:`ArgumentTypeError` (a ``TypeError`` that is also a ``ValueError``) when an argument has the
  wrong kind (``None``, a string for a number, a bool for an integer, a complex number, a ragged list);
* ``ValueError`` when its value is outside the allowed range (NaN, negative, wrong shape, ...).

Numbers may arrive as Python numbers, numpy scalars, 0-d numpy arrays or 0-d torch tensors and are
treated identically. A float32 value stands for the shortest decimal that rounds to it (so
``np.float32(0.3)`` acts exactly like ``0.3``: same label flips, same data); float16 and bfloat16
values are taken at their exact value. Booleans are never accepted as numbers.

Arrays are copied (never aliased), checked for shape, dtype (real numbers only: complex input is
rejected, not silently truncated) and NaN/inf, and returned read-only.
"""
from __future__ import annotations

import math
import numbers
import os
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

import numpy as np

__all__ = [
    "ArgumentTypeError", "check_int", "check_number", "check_bool", "check_choice", "check_dtype", "check_device",
    "check_array", "check_grid_axis", "check_map", "check_maps", "check_map_panels", "check_labels",
    "check_int_array", "check_path", "check_cache_dir", "dir_is_writable", "as_scalar", "readonly", "shared_tensor",
]


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong kind. A ``TypeError`` and also a ``ValueError``, so code written for
    the package's earlier ``ValueError`` messages keeps working."""


def _torch():
    import torch

    return torch


def _is_tensor(value):
    torch = sys.modules.get("torch")  # no tensor can exist before torch is imported: keep numpy-only paths torch-free
    return torch is not None and isinstance(value, torch.Tensor)


def _describe(value):
    """``type value`` for messages, short."""
    if value is None:
        return "None"
    r = repr(value)
    if len(r) > 60:
        r = r[:57] + "..."
    return f"{type(value).__name__} {r}" if not isinstance(value, (int, float, str)) or isinstance(value, bool) else r


def as_scalar(name, value, what="a number"):
    """``value`` as a Python ``int`` or ``float`` (the one conversion every numeric knob goes through).

    Accepts Python ints/floats, ``Fraction``/``Decimal``, numpy integer/float scalars and 0-d arrays or
    0-d torch tensors of those. Rejects bools, complex numbers, strings, ``None`` and arrays with more
    than one element (:class:`ArgumentTypeError`). float32 values become the shortest decimal that
    rounds to them; other floats keep their exact value.

    Raises
    ------
    ArgumentTypeError
        ``value`` is not a real scalar; the message names ``name`` and says ``what`` is expected.
    """
    v = value
    if _is_tensor(v):
        if v.dim() != 0:
            raise ArgumentTypeError(f"{name} must be {what} (a scalar), got a tensor of shape {tuple(v.shape)}")
        torch = _torch()
        if v.dtype in (torch.bfloat16,):
            v = v.detach().float()
        v = v.detach().cpu().numpy()
    if isinstance(v, np.ndarray):
        if v.ndim != 0:
            raise ArgumentTypeError(f"{name} must be {what} (a scalar), got an array of shape {v.shape}")
        v = v[()]
    if isinstance(v, (bool, np.bool_)):
        raise ArgumentTypeError(f"{name} must be {what}, got the bool {value!r}")
    if isinstance(v, (complex, np.complexfloating)):
        raise ArgumentTypeError(f"{name} must be {what} (real), got the complex number {value!r}")
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.float32):
        return float(np.format_float_scientific(v, unique=True))
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, (numbers.Real, Decimal)):
        return float(v)
    raise ArgumentTypeError(f"{name} must be {what}, got {_describe(value)}")


def _range_text(low, high, low_open, high_open):
    lo = "(" if low_open or low is None else "["
    hi = ")" if high_open or high is None else "]"
    fmt = lambda v: str(v) if isinstance(v, (int, np.integer)) else f"{v:g}"
    return f"{lo}{'-inf' if low is None else fmt(low)}, {'inf' if high is None else fmt(high)}{hi}"


def check_number(name, value, low=None, high=None, low_open=False, high_open=False, allowed=None):
    """Return ``value`` as a finite float in the given range, or raise naming ``name`` and the range.

    ``low``/``high`` bounds (None: unbounded), ``*_open`` for strict inequalities; ``allowed`` replaces
    the range text in the message.
    """
    rng = allowed or _range_text(low, high, low_open, high_open)
    v = as_scalar(name, value, f"a finite number in {rng}")
    v = float(v)
    ok = math.isfinite(v)
    if ok and low is not None:
        ok = v > low if low_open else v >= low
    if ok and high is not None:
        ok = v < high if high_open else v <= high
    if not ok:
        raise ValueError(f"{name} must be a finite number in {rng}, got {value!r}")
    return v


def check_int(name, value, low=None, high=None):
    """Return ``value`` as an int in [low, high], or raise naming ``name`` and the range.

    Integral floats (20.0) are accepted; fractional ones, NaN and bools are not.
    """
    if low is None:
        rng = "an integer" if high is None else f"an integer <= {high}"
    else:
        rng = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
    v = as_scalar(name, value, rng)
    if isinstance(v, float):
        if not (math.isfinite(v) and v.is_integer()):
            raise ValueError(f"{name} must be {rng}, got {value!r}")
        v = int(v)
    if (low is not None and v < low) or (high is not None and v > high):
        raise ValueError(f"{name} must be {rng}, got {value!r}")
    return v


def check_bool(name, value):
    """Return ``value`` as a bool: True/False (Python or numpy) or the integers 0 and 1.

    Raises :class:`ArgumentTypeError` naming ``name`` for anything else.
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    raise ArgumentTypeError(f"{name} must be True or False, got {_describe(value)}")


def check_choice(name, value, choices):
    """Return ``value`` (a string) if it is one of the strings ``choices``, else raise naming them."""
    if isinstance(value, str) and value in choices:
        return str(value)
    exc = ValueError if isinstance(value, str) else ArgumentTypeError
    raise exc(f"{name} must be one of {tuple(choices)}, got {value!r}")


#: Seconds a job runs before an automatic progress bar (``progress=None``) appears.
PROGRESS_DELAY = 2.0


def check_progress(name, value):
    """The ``progress`` knob of every long-running call (``train``, ``train_many``, ``run_grid``,
    ``realdata.grid.run_realdata_grid``), as tqdm options ``{"disable": bool, "delay": seconds}``.

    ``True``: a bar from the start (a widget in Jupyter). ``False``: none. ``None`` (the default
    everywhere): automatic - a bar only on an interactive terminal (stderr is a tty), and only once
    the work has run for ``PROGRESS_DELAY`` seconds, so short calls stay quiet and notebooks,
    book builds and logs never get one."""
    if value is None:
        isatty = getattr(sys.stderr, "isatty", None)
        try:
            tty = bool(isatty()) if callable(isatty) else False
        except (OSError, ValueError):  # a closed or detached stream
            tty = False
        return {"disable": not tty, "delay": PROGRESS_DELAY}
    if not isinstance(value, (bool, np.bool_)) and not (isinstance(value, (int, np.integer)) and value in (0, 1)):
        raise ArgumentTypeError(f"{name} must be True, False or None (automatic), got {_describe(value)}")
    return {"disable": not bool(value), "delay": 0.0}


def check_executor(name, executor):
    """Return ``executor`` if the package can run cells through it, else raise naming ``name``.

    Accepted: None (run here), or a ``concurrent.futures``-style executor, i.e. an object whose
    ``submit(fn, *args)`` returns a future: a ``ProcessPoolExecutor`` (best:
    :func:`benign_attention.parallel.process_pool`), a ``ThreadPoolExecutor``, a ``dask.distributed``
    Client or its ``get_executor()``. Refused up front (see :mod:`benign_attention.parallel`):

    * an object without ``submit``, e.g. a ``multiprocessing.Pool`` (:class:`ArgumentTypeError`);
    * an executor that was shut down or is broken (ValueError);
    * a process pool that would fork this process after torch started its threads here, where the
      forked workers would hang (ValueError; :func:`~benign_attention.parallel.fork_is_safe` tests it).
    """
    if executor is None:
        return None
    import multiprocessing.pool

    from . import parallel

    fix = ("use concurrent.futures.ProcessPoolExecutor(mp_context=multiprocessing.get_context('spawn')) "
           "or benign_attention.parallel.process_pool()")
    if isinstance(executor, multiprocessing.pool.Pool):
        raise ArgumentTypeError(f"{name} must be a concurrent.futures-style executor (with submit returning "
                                f"futures), got a multiprocessing.Pool; {fix}")
    if not callable(getattr(executor, "submit", None)):
        raise ArgumentTypeError(f"{name} must be None or a concurrent.futures-style executor (with a submit method "
                                f"that returns futures), got {_describe(executor)}")
    if getattr(executor, "_shutdown_thread", False) is True or getattr(executor, "_shutdown", False) is True:
        raise ValueError(f"{name} has been shut down and cannot take work; pass an executor that is running")
    if getattr(executor, "_broken", False):
        raise ValueError(f"{name} is broken ({executor._broken}); pass a new executor")
    if parallel.forks(executor) and not parallel.fork_is_safe():
        raise ValueError(f"{name} is a process pool that starts its workers by forking this process, and torch "
                         f"has already run on several threads here: forked workers would hang (OpenMP does not "
                         f"survive fork). {fix[0].upper() + fix[1:]}, or start the pool before using torch")
    return executor


def check_lr_dtype(lr, dtype):
    """Return ``lr`` if it is representable in ``dtype``, the torch dtype of the GD loop (torch
    refuses a float32 step otherwise), else raise naming lr."""
    top = _torch().finfo(dtype).max
    if lr > top:
        raise ValueError(f"lr must be a finite number in (0, {top:.4g}] for dtype {dtype}, got {lr:g}")
    return lr


_DTYPE_NAMES = {"float32": "float32", "float": "float32", "single": "float32",
                "float64": "float64", "double": "float64"}


def check_dtype(name, value, allowed=("float32", "float64")):
    """Return the torch dtype named by ``value``: a torch dtype, a numpy float dtype, or a string
    such as ``"float32"``/``"torch.float64"``; only the ``allowed`` precisions are accepted.

    Raises ValueError naming ``name`` and the allowed precisions (:class:`ArgumentTypeError` for a value that is not a
    dtype at all).
    """
    torch = _torch()
    allowed_text = " or ".join(f"torch.{a}" for a in allowed) + " (or the strings " + ", ".join(
        repr(a) for a in allowed) + ")"
    key = None
    if isinstance(value, torch.dtype):
        key = str(value).replace("torch.", "")
    elif isinstance(value, str):
        s = value.strip().lower()
        s = s[6:] if s.startswith("torch.") else s[3:] if s.startswith("np.") else s
        key = _DTYPE_NAMES.get(s, s)
    else:
        try:
            key = np.dtype(value).name if value is not None and (isinstance(value, np.dtype) or (
                isinstance(value, type) and issubclass(value, np.generic))) else None
        except TypeError:
            key = None
        if key is None:
            raise ArgumentTypeError(f"{name} must be {allowed_text}, got {_describe(value)}")
    if key not in allowed:
        raise ValueError(f"{name} must be {allowed_text}, got {value!r}")
    return getattr(torch, key)


def check_device(name, value):
    """Return ``value`` as a ``torch.device`` that exists here (None stays None: the CPU default).

    Raises ValueError naming ``name`` for an unknown or unavailable device (:class:`ArgumentTypeError` for a value that
    is not a device name).
    """
    if value is None:
        return None
    torch = _torch()
    if not isinstance(value, (str, torch.device)):
        raise ArgumentTypeError(f"{name} must be None, a device name such as 'cpu' or 'cuda', or a "
                                f"torch.device, got {_describe(value)}")
    try:
        dev = torch.device(value)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"{name} must name a torch device such as 'cpu' or 'cuda', got {value!r} ({err})") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name} {value!r} is not available here (torch.cuda.is_available() is False); use 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{name} {value!r} does not exist: {torch.cuda.device_count()} CUDA device(s)")
        return dev
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"{name} {value!r} is not available here; use 'cpu'")
        return dev
    raise ValueError(f"{name} must be a 'cpu', 'cuda' or 'mps' device, got {value!r}")


def _to_numpy(name, value):
    """Any array-like as a numpy array (a tensor is detached and copied to the CPU)."""
    if value is None:
        raise ArgumentTypeError(f"{name} must be an array, got None")
    if isinstance(value, (str, bytes, dict, set)):
        raise ArgumentTypeError(f"{name} must be an array of numbers, got {_describe(value)}")
    if _is_tensor(value):
        torch = _torch()
        t = value.detach().cpu()
        if t.dtype == torch.bfloat16:
            t = t.float()
        return t.numpy()
    try:
        a = np.asarray(value)
    except (ValueError, TypeError) as err:  # ragged nested lists, ...
        raise ArgumentTypeError(f"{name} must be a rectangular array of numbers ({err})") from None
    return a


def check_array(name, value, ndim=None, shape=None, finite=True, low=None, high=None, dtype=np.float64,
                allow_bool=False):
    """Return a read-only float copy of the array-like ``value``, checked.

    ``ndim``/``shape``: required rank/shape (a shape entry None matches any size); ``finite``: reject
    NaN and inf; ``low``/``high``: inclusive bounds on every entry. Complex, string, object and (unless
    ``allow_bool``) boolean arrays are rejected with :class:`ArgumentTypeError`.
    """
    a = _to_numpy(name, value)
    kind = a.dtype.kind
    if kind == "c":
        raise ArgumentTypeError(f"{name} must be real-valued, got a complex array (dtype {a.dtype}); "
                                f"pass its real part explicitly if that is what you mean")
    if kind == "b" and not allow_bool:
        raise ArgumentTypeError(f"{name} must hold real numbers, got a boolean array")
    if kind not in "biuf":
        raise ArgumentTypeError(f"{name} must be an array of real numbers, got dtype {a.dtype}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-d array, got shape {a.shape}")
    if shape is not None:
        if a.ndim != len(shape) or any(s is not None and s != t for s, t in zip(shape, a.shape)):
            want = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
            raise ValueError(f"{name} must have shape {want}, got {a.shape}")
    a = np.array(a, dtype=dtype, copy=True)
    if finite and a.size and not np.all(np.isfinite(a)):
        bad = np.argwhere(~np.isfinite(a))
        where = f" at index {tuple(int(i) for i in bad[0])}" if a.ndim else ""
        raise ValueError(f"{name} must be finite (no NaN or inf): {len(bad)} non-finite value(s){where}")
    if low is not None and a.size and np.nanmin(a) < low:
        raise ValueError(f"{name} must be >= {low:g} everywhere, got a minimum of {np.nanmin(a):g}")
    if high is not None and a.size and np.nanmax(a) > high:
        raise ValueError(f"{name} must be <= {high:g} everywhere, got a maximum of {np.nanmax(a):g}")
    return readonly(a)


def check_grid_axis(name, values, log=False):
    """The grid values along one axis of a map (:ref:`the phase grid <sec-phase-grid>`): a 1-d array of at least one
    finite number, all > 0 on a logarithmic axis (``log``)."""
    a = check_array(name, values, ndim=1)
    if a.size == 0:
        raise ValueError(f"{name} must hold at least one grid value")
    if log and np.any(a <= 0):
        raise ValueError(f"{name} must be > 0 on a logarithmic axis, got a minimum of {a.min():g}")
    return a


def check_map(name, m, x, y):
    """A map over the grid (x, y): a float array of shape (len(x), len(y)) (NaN allowed: blank cells)."""
    return check_array(name, m, shape=(len(x), len(y)), finite=False)


def check_maps(name, maps, titles, x, y):
    """A non-empty list of maps over the grid (x, y) (each :func:`check_map`) and one title per map
    (a string for a single map); returns both as lists."""
    if isinstance(maps, (str, bytes)) or not hasattr(maps, "__iter__"):
        raise ArgumentTypeError(f"{name} must be a list of maps, each (len(x), len(y)) = ({len(x)}, {len(y)})")
    maps = [check_map(f"{name}[{i}]", m, x, y) for i, m in enumerate(maps)]
    if not maps:
        raise ValueError(f"{name} must hold at least one map")
    titles = list(titles) if not isinstance(titles, str) else [titles]
    if len(titles) != len(maps):
        raise ValueError(f"titles must give one title per map ({len(maps)}), got {len(titles)}")
    return maps, titles


def check_map_panels(name, panels, key):
    """A non-empty list of panel dicts, each with grid axes ``x`` and ``y`` (:func:`check_grid_axis`;
    ``x`` logarithmic where the panel's ``xlog`` is true), a map ``panel[key]`` over them
    (:func:`check_map`), ``xlabel`` and ``ylabel``."""
    if not isinstance(panels, (list, tuple)) or not panels or not all(isinstance(p, dict) for p in panels):
        raise ArgumentTypeError(f"{name} must be a non-empty list of dicts with x, y, {key}, xlabel and ylabel")
    for i, p in enumerate(panels):
        missing = [k for k in ("x", "y", key, "xlabel", "ylabel") if k not in p]
        if missing:
            raise ValueError(f"{name}[{i}] is missing {missing}")
        x = check_grid_axis(f"{name}[{i}]['x']", p["x"], p.get("xlog", False))
        check_map(f"{name}[{i}]['{key}']", p[key], x, check_grid_axis(f"{name}[{i}]['y']", p["y"]))
    return panels


def readonly(a):
    """A read-only view of the fresh array ``a`` (which the caller must not share). The writable
    owner stays private, so :func:`shared_tensor` can hand the memory to torch without a copy."""
    v = a.view()
    v.flags.writeable = False
    return v


def shared_tensor(a, dtype=None, device=None):
    """A torch tensor of the array ``a``; a read-only view made by :func:`readonly` shares its memory
    (no copy, no warning), any other read-only array is copied. The package only reads such tensors.
    ``dtype``/``device`` as in ``torch.as_tensor``; raises :class:`ArgumentTypeError` for a non-numeric array."""
    torch = _torch()
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise ArgumentTypeError(f"a must be a numeric array, got dtype {a.dtype}")
    src = a
    if not a.flags.writeable:
        base = a.base
        ok = (isinstance(base, np.ndarray) and base.flags.writeable and base.shape == a.shape
              and base.dtype == a.dtype and base.strides == a.strides)
        src = base if ok else None
    if src is None:
        return torch.tensor(a, dtype=dtype, device=device)
    return torch.as_tensor(src, dtype=dtype, device=device)


def check_labels(name, value, n, values=(-1, 1)):
    """Return a read-only float copy of a label vector of shape (n,) whose entries are in ``values``.

    Raises ValueError naming ``name`` for a wrong shape or another label (:class:`ArgumentTypeError` for non-numbers).
    """
    a = _to_numpy(name, value)
    if a.dtype.kind not in "iuf":
        raise ArgumentTypeError(f"{name} must hold the labels {values}, got dtype {a.dtype}")
    if a.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {a.shape}")
    if not np.all(np.isin(a, values)):
        raise ValueError(f"{name} must contain only the labels {' and '.join(f'{v:+d}' for v in values)}")
    return readonly(np.array(a, dtype=np.float64, copy=True))


def check_int_array(name, value, low=None, high=None, ndim=1, nonempty=True):
    """Return an int64 array (read-only) of integer values in [low, high]; fractional values, bools,
    NaN, complex and strings are rejected (not truncated).

    ``ndim`` the required rank, ``nonempty`` whether an empty array is refused. Raises ValueError
    naming ``name`` for values out of range or a wrong shape (:class:`ArgumentTypeError` for non-integers).
    """
    if isinstance(value, (numbers.Number, np.generic)) or (isinstance(value, np.ndarray) and value.ndim == 0):
        raise ArgumentTypeError(f"{name} must be a list of integers, got the single value {value!r}")
    a = _to_numpy(name, value)
    if a.dtype.kind == "b":
        raise ArgumentTypeError(f"{name} must hold integers, got booleans")
    if a.dtype.kind == "O" and a.size:
        try:
            a = np.array([as_scalar(f"{name} entries", v, "integers") for v in a.ravel()]).reshape(a.shape)
        except ArgumentTypeError:
            raise ArgumentTypeError(f"{name} must hold integers, got {_describe(value)}") from None
    if a.dtype.kind not in "iuf" and a.size:
        raise ArgumentTypeError(f"{name} must hold integers, got dtype {a.dtype}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-d list of integers, got shape {a.shape}")
    if nonempty and a.size == 0:
        raise ValueError(f"{name} must not be empty")
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise ValueError(f"{name} must hold whole numbers, got fractional or non-finite values")
    out = a.astype(np.int64)
    rng = _range_text(low, high, False, False)
    if a.size and ((low is not None and out.min() < low) or (high is not None and out.max() > high)):
        raise ValueError(f"{name} must hold integers in {rng}, got values from {out.min()} to {out.max()}")
    return readonly(out)


def check_path(name, value):
    """Return ``value`` as a ``Path`` with ``~`` expanded; '' and non-path types are rejected.

    Raises ValueError naming ``name`` for '' (:class:`ArgumentTypeError` for a value that is not a str or path).
    """
    if isinstance(value, bytes):
        value = os.fsdecode(value)
    if not isinstance(value, (str, os.PathLike)):
        raise ArgumentTypeError(f"{name} must be a folder path (str or pathlib.Path), got {_describe(value)}")
    s = os.fspath(value)
    if isinstance(s, bytes):
        s = os.fsdecode(s)
    if not s.strip():
        raise ValueError(f"{name} must be a non-empty path, got {value!r} (use '.' for the working directory)")
    return Path(s).expanduser()


def dir_is_writable(path):
    """True if a file can be created in the existing folder ``path`` (tried, then removed); False on an OSError."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path, suffix=".probe")
    except OSError:
        return False
    os.close(fd)
    os.unlink(tmp)
    return True


def check_cache_dir(name, value, writable=True):
    """Return the folder ``value`` as an absolute ``Path`` (``~`` expanded), created if missing.

    Raises ValueError naming ``name`` when the path is a file, cannot be created, or (``writable``)
    is not writable.
    """
    path = check_path(name, value).absolute()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{name} {str(path)!r} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"{name} {str(path)!r} cannot be created ({err.strerror or err})") from None
    if writable and not dir_is_writable(path):
        raise ValueError(f"{name} {str(path)!r} is not writable")
    return path
