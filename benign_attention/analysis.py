r"""Reading recorded runs: fitting times, score gaps, passage times, fitted lines and boundaries.

These helpers turn what a run or a grid recorded into the numbers the chapters reason about: when
the training labels are fitted (:ref:`sec-dyn-benign`), the selection gaps :math:`\Lambda` and :math:`\Gamma` and the
times at which they pass given levels (:prf:ref:`prop-g-law`), the gap ODE of
:ref:`sec-delay-law`, and where a regime boundary crosses a grid (:ref:`sec-phase-regimes`).
They compute and never draw; the figures built from them are in :mod:`benign_attention.plots`.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .theory import g
from .validation import ArgumentTypeError, check_array, check_bool, check_choice, check_int, check_number

__all__ = ["first_fit_step", "onset", "noisy_tokens", "sample_attention", "selection_gaps", "first_passage",
           "passage_times", "late_linear_fit", "integrate_gap_ode", "boundary_crossing", "ks_two_sample",
           "attention_by_type"]


def _check_run(name, run):
    """``run`` must carry ``steps`` and a ``history`` dict (a :class:`~benign_attention.engines.Run`)."""
    if not (hasattr(run, "steps") and isinstance(getattr(run, "history", None), Mapping)):
        raise ArgumentTypeError(f"{name} must be a training run (benign_attention.engines.Run), got "
                                f"{type(run).__name__}")
    return run


def attention_by_type(run, mask):
    r"""``(E, 5)`` mean over the training samples in ``mask`` of an encoder run's [CLS] attention on
    :math:`x_1`, :math:`x_2`, :math:`x_3`, on all irrelevant tokens together, and on [CLS] itself (1 minus the rest).

    ``run`` an :class:`~benign_attention.encoder.train.EncoderRun` (its ``train_attention``, (E, n, T)),
    ``mask`` a boolean mask over its training samples; raises ValueError otherwise. Shown in
    :ref:`sec-encoder-dynamics`."""
    _check_run("run", run)
    if "train_attention" not in run.history:
        raise ArgumentTypeError("run must be an EncoderRun (from train_encoder): its history has no train_attention")
    A = np.asarray(run.history["train_attention"], float)
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.shape != A.shape[1:2]:
        raise ValueError(f"mask must be a boolean array of length {A.shape[1]} (one entry per training "
                         f"sample), got dtype {mask.dtype} and shape {mask.shape}")
    A = A[:, mask]   # (E, k, T)
    groups = np.concatenate([A[..., :3], A[..., 3:].sum(-1, keepdims=True)], -1).mean(1)
    return np.concatenate([groups, 1 - groups.sum(-1, keepdims=True)], -1)


def first_fit_step(run, key="train_acc"):
    """First recorded step at which a run's accuracy ``key`` reaches 1.

    Used for the fitting times of :ref:`sec-dyn-benign` and :ref:`sec-delay-runs`.

    Parameters
    ----------
    run : benign_attention.engines.Run
        A run returned by :func:`~benign_attention.engines.train` or
        :func:`~benign_attention.engines.train_many`.
    key : str
        A history key holding an accuracy over records; default ``"train_acc"`` (accuracy on the
        observed, possibly flipped, training labels).

    Returns
    -------
    float
        The step, or NaN if the accuracy never reaches 1 at a recorded step.

    Raises
    ------
    ValueError
        ``run`` is not a run (:class:`~benign_attention.validation.ArgumentTypeError`) or ``key``
        is not one of its history keys.
    """
    _check_run("run", run)
    check_choice("key", key, tuple(run.history))
    hit = np.flatnonzero(np.asarray(run.history[key]) >= 1 - 1e-12)
    return float(run.steps[hit[0]]) if hit.size else float("nan")


def sample_attention(run, i):
    r"""Attention of one training sample on :math:`x_1`, :math:`x_2`, :math:`x_3` and on all irrelevant tokens together.

    The quantity of :ref:`sec-dyn-benign` and :ref:`sec-dyn-harmful`.

    Parameters
    ----------
    run : benign_attention.engines.Run
        A run whose history holds ``train_attention`` (E, n, T).
    i : int
        Index of the training sample, in [0, n - 1].

    Returns
    -------
    numpy.ndarray
        Shape (E, 4): one row per record.

    Raises
    ------
    ValueError
        ``run`` is not a run or lacks ``train_attention``; ``i`` is not an integer in [0, n - 1].
    """
    _check_run("run", run)
    check_choice("run.history key", "train_attention", tuple(run.history))
    A = np.asarray(run.history["train_attention"], float)
    i = check_int("i", i, 0, A.shape[1] - 1)
    A = A[:, i]
    return np.concatenate([A[:, :3], A[:, 3:].sum(-1, keepdims=True)], -1)


def selection_gaps(logits, noisy):
    r"""Score gap :math:`a_u - \max_{t \ne u} a_t` of every training sample, at every record.

    Clean samples: :math:`u = 1`, the token :math:`x_1` (the paper's :math:`\Lambda`). Noisy samples:
    :math:`u` the token the sample attends most at the last record (the paper's :math:`\Gamma`; usually
    :math:`x_3`, sometimes an irrelevant token). The
    gaps of :prf:ref:`prop-g-law`; computed with :func:`benign_attention.theory.logit_gaps` once
    per selected token.

    Parameters
    ----------
    logits : array_like
        Token scores of shape (..., n, T), e.g. a run's ``history["train_logits"]`` (E, n, T).
        NaN (a diverged run) is allowed and gives NaN gaps.
    noisy : array_like of bool
        Shape (n,): which training labels were flipped (``Dataset.noisy``).

    Returns
    -------
    numpy.ndarray
        Shape (..., n): the gap of each sample.

    Raises
    ------
    ValueError
        ``logits`` has fewer than two axes or holds non-numbers; ``noisy`` is not a boolean mask of
        shape (n,).
    """
    from .theory import logit_gaps

    a = check_array("logits", logits, finite=False)
    if a.ndim < 2:
        raise ValueError(f"logits must have shape (..., n, T), got shape {a.shape}")
    noisy = np.asarray(check_array("noisy", noisy, shape=(a.shape[-2],), allow_bool=True)).astype(bool)
    last = a.reshape(-1, *a.shape[-2:])[-1]  # (n, T): the last record
    u = np.where(noisy, last.argmax(-1), 0)
    out = np.full(a.shape[:-1], np.nan)
    for v in np.unique(u):
        m = u == v
        out[..., m] = logit_gaps(a, m, selected=int(v))[..., m]
    return out


def onset(runs, level, key="train_acc"):
    r"""For each run, the first recorded step at which ``key`` rises strictly above ``level``.

    In the large-signal setting the training accuracy sits at :math:`1 - \eta` while only the clean labels
    are fitted; its onset above :math:`1 - \eta` is when the noisy labels start being fitted
    (:ref:`sec-dyn-large`).

    Parameters
    ----------
    runs : iterable of benign_attention.engines.Run
        Runs that recorded ``key``.
    level : float
        The level to rise above, finite.
    key : str
        A history key holding one number per record; default ``"train_acc"``.

    Returns
    -------
    numpy.ndarray
        Shape (len(runs),): the step per run, NaN where ``key`` never rises above ``level``.

    Raises
    ------
    ValueError
        A run is not a run (:class:`~benign_attention.validation.ArgumentTypeError`), ``key`` is not
        one of its history keys, or ``level`` is not a finite number.
    """
    level = check_number("level", level)
    out = []
    for i, run in enumerate(_runs("runs", runs)):
        check_choice("key", key, tuple(run.history))
        hit = np.flatnonzero(np.asarray(run.history[key], float) > level)
        out.append(float(run.steps[hit[0]]) if hit.size else np.nan)
    return np.array(out, float)


def noisy_tokens(runs, datasets):
    r"""Where the noisy training samples end up: the token each attends most at the last record, and
    its best token for the observed label, the one with the largest signed head value
    :math:`Y_i \nu^\top x^{(i)}_t` (:ref:`sec-dyn-benign`, :ref:`sec-dyn-harmful`).

    Parameters
    ----------
    runs : iterable of benign_attention.engines.Run
        One run per data set, recording ``train_attention`` (per-sample attention).
    datasets : iterable of benign_attention.data.Dataset
        The data sets the runs were trained on, in the same order.

    Returns
    -------
    tuple of numpy.ndarray
        ``(top, best)``: token indices (0 is :math:`x_1`) of every noisy sample, concatenated over the runs.

    Raises
    ------
    ValueError
        A run is not a run, it did not record ``train_attention``, or ``runs`` and ``datasets``
        differ in length.
    """
    runs, datasets = _runs("runs", runs), list(datasets)
    if len(runs) != len(datasets):
        raise ValueError(f"runs and datasets must pair up, got {len(runs)} runs and {len(datasets)} data sets")
    top, best = [], []
    for run, ds in zip(runs, datasets):
        check_choice("key", "train_attention", tuple(run.history))
        top.append(np.asarray(run.history["train_attention"][-1])[ds.noisy].argmax(-1))
        best.append((ds.y[:, None] * (ds.X @ ds.nu))[ds.noisy].argmax(-1))
    return np.concatenate(top), np.concatenate(best)


def _runs(name, runs):
    """``runs`` as a list of checked runs (:func:`_check_run`)."""
    if isinstance(runs, (str, bytes, Mapping)) or not hasattr(runs, "__iter__"):
        raise ArgumentTypeError(f"{name} must be a list of training runs, got {type(runs).__name__}")
    return [_check_run(f"{name}[{i}]", r) for i, r in enumerate(runs)]


def first_passage(steps, values, levels):
    """First step at which a recorded quantity reaches each of several levels.

    Linear interpolation between records; the passage times of :prf:ref:`prop-g-law`.

    Parameters
    ----------
    steps : array_like
        Record steps (E,), finite and strictly increasing (the order they were recorded in).
    values : array_like
        The quantity at each record (E,). NaN (a diverged record) never reaches a level and is
        skipped: the passage is interpolated between the two finite records around it, or is the
        first finite record at or above the level when none precedes it.
    levels : array_like
        The levels (L,), finite.

    Returns
    -------
    numpy.ndarray
        Shape (L,): the passage step per level, NaN where a level is never reached.

    Raises
    ------
    ValueError
        An argument is not a 1-d array of numbers, ``values`` and ``steps`` differ in length, or
        ``steps`` is not strictly increasing.
    """
    steps = _increasing("steps", check_array("steps", steps, ndim=1))
    values = check_array("values", values, shape=(len(steps),), finite=False)
    levels = check_array("levels", levels, ndim=1)
    return _crossings(values[None], steps, levels, above=True)[0]


def _increasing(name, a):
    """``a`` (a checked 1-d array) if it is strictly increasing, else a ValueError naming ``name``."""
    if a.size > 1 and not np.all(np.diff(a) > 0):
        i = int(np.argmax(~(np.diff(a) > 0)))
        raise ValueError(f"{name} must be strictly increasing (sort the records first), got {name}[{i}] = "
                         f"{a[i]:g} followed by {a[i + 1]:g}")
    return a


def _crossings(values, where, thresholds, above):
    """The shared rule of :func:`first_passage` and :func:`boundary_crossing`: for each row of
    ``values`` (rows, E) over the increasing positions ``where`` (E,) and each threshold (L,), the
    first position at which the row reaches it (>=, or < when not ``above``), linearly interpolated
    from the last finite value before it; NaN values are skipped, NaN where it is never reached."""
    out = np.full((values.shape[0], len(thresholds)), np.nan)
    for i, row in enumerate(values):
        ok = np.flatnonzero(~np.isnan(row))
        for k, level in enumerate(thresholds):
            reached = row[ok] >= level if above else row[ok] < level
            hit = np.flatnonzero(reached)
            if hit.size == 0:
                continue
            h = hit[0]
            j = ok[h]
            if h == 0:
                out[i, k] = where[j]
                continue
            jp = ok[h - 1]
            a, b = row[jp], row[j]
            w = (level - a) / (b - a) if np.isfinite(a) and np.isfinite(b) and b != a else 1.0
            out[i, k] = where[jp] + min(max(w, 0.0), 1.0) * (where[j] - where[jp])
    return out


def late_linear_fit(x, y, start, stop=np.inf):
    r"""Least-squares line ``y = slope * x + intercept`` through the points with ``start <= x <= stop``.

    Fits the late, linear growth of :math:`g(\text{gap})` in :prf:ref:`prop-g-law` (its slope is the speed
    constant :math:`\beta`). Points where ``y`` is not finite are left out.

    Parameters
    ----------
    x : array_like
        The abscissae (N,), finite.
    y : array_like
        The values (N,); points where ``y`` is not finite are left out.
    start : float
        First ``x`` of the window.
    stop : float
        Last ``x`` of the window (default: no end).

    Returns
    -------
    tuple of float
        ``(slope, intercept, r2)``, ``r2`` the coefficient of determination :math:`R^2` of the fit (1 when ``y`` is
        constant in the window: the horizontal line fits it exactly).

    Raises
    ------
    ValueError
        ``x``/``y`` are not 1-d arrays of the same length, ``start``/``stop`` are not numbers, or
        fewer than two finite points (with distinct ``x``) lie in the window.
    """
    x = check_array("x", x, ndim=1)
    y = check_array("y", y, shape=(len(x),), finite=False)
    start = check_number("start", start)
    stop = np.inf if isinstance(stop, (float, np.floating)) and stop == np.inf else check_number("stop", stop)
    keep = (x >= start) & (x <= stop) & np.isfinite(y)
    if keep.sum() < 2:
        raise ValueError(f"start/stop must leave at least two finite points to fit, got {int(keep.sum())} "
                         f"in [{start:g}, {stop:g}]")
    if np.ptp(x[keep]) == 0:
        raise ValueError(f"start/stop must leave at least two distinct x values to fit a line, got x = "
                         f"{x[keep][0]:g} only")
    slope, intercept = np.polyfit(x[keep], y[keep], 1)
    resid = y[keep] - (slope * x[keep] + intercept)
    total = ((y[keep] - y[keep].mean()) ** 2).sum()
    # constant y: the horizontal line fits exactly, r2 = 1 (not 1 - 0/0)
    flat = total <= keep.sum() * (1e-13 * float(np.abs(y[keep]).max())) ** 2
    r2 = 1.0 if flat else 1 - (resid ** 2).sum() / total
    return float(slope), float(intercept), float(r2)


def passage_times(steps, gaps, mask, levels, start=None, stop=np.inf, T=None):
    r"""Geometric mean over the samples in ``mask`` of the first step at which a sample's gap
    (column of ``gaps`` ``(E, n)``) reaches each level (NaN if one never does). With ``start`` and
    ``T``: instead the times predicted by each sample's g-law line, the least-squares fit of
    :math:`g(\text{gap})` against the step on ``start <= step <= stop``:
    :math:`\tau_{\bar x} = (g(\bar x) - \text{intercept}) / \text{slope}` for a level :math:`\bar x`.

    Used in :ref:`sec-delay-runs`.
    """
    times = []
    for i in np.flatnonzero(np.asarray(mask, bool)):
        if start is None:
            times.append(first_passage(steps, gaps[:, i], levels))
        else:
            slope, intercept, _ = late_linear_fit(steps, g(gaps[:, i], T), start, stop)
            times.append((g(np.asarray(levels, float), T) - intercept) / slope)
    with np.errstate(invalid="ignore"):
        return np.exp(np.log(np.stack(times)).mean(0))


def integrate_gap_ode(x0, c, T, taus):
    r"""RK4 solution of the gap ODE :math:`\mathrm{d}x/\mathrm{d}\tau = c\, s(1 - s)` with
    :math:`s = e^x / (e^x + T)`.

    The ODE behind :prf:ref:`prop-g-law` (:ref:`sec-delay-law`); its exact solution is
    :math:`g(x(\tau)) = g(x_0) + c\tau`. The step grid refines ``taus`` 20-fold.

    Parameters
    ----------
    x0 : array_like
        Initial gaps (any shape), finite.
    c : float
        Speed constant :math:`c \ge 0`.
    T : float
        Number of tokens, :math:`T > 0` (``T - 1`` for equal competitors, :prf:ref:`rem-equal-competitors`).
    taus : array_like
        Non-decreasing times (K,); the first is the time of ``x0``.

    Returns
    -------
    numpy.ndarray
        Shape ``(K, *x0.shape)``: the gaps at ``taus``.

    Raises
    ------
    ValueError
        An argument is out of range, not finite, or ``taus`` is not a non-decreasing 1-d array.
    """
    x0 = check_array("x0", x0)
    c = check_number("c", c, low=0)
    T = check_number("T", T, low=0, low_open=True)
    taus = check_array("taus", taus, ndim=1)
    if taus.size == 0 or np.any(np.diff(taus) < 0):
        raise ValueError("taus must be a non-empty, non-decreasing 1-d array of times")
    rate = lambda x: c / (2 + 2 * np.cosh(x - np.log(T)))  # c s (1 - s)
    x, out = x0 + 0.0, [x0 + 0.0]
    for t0, t1 in zip(taus[:-1], taus[1:]):
        h = (t1 - t0) / 20
        for _ in range(20):
            k1 = rate(x); k2 = rate(x + h * k1 / 2); k3 = rate(x + h * k2 / 2); k4 = rate(x + h * k3)
            x = x + h * (k1 + 2 * k2 + 2 * k3 + k4) / 6
        out.append(x)
    return np.stack(out)


def boundary_crossing(values, levels, threshold, above=True):
    r"""For each row of a grid, the first level at which the row crosses ``threshold``.

    Locates a regime boundary on a grid (:ref:`sec-phase-regimes`), e.g. the signal strength at
    which the clean test loss drops below :math:`1/2`, by linear interpolation between grid points.

    Parameters
    ----------
    values : array_like
        Shape (rows, len(levels)). NaN (a diverged cell) never crosses and is skipped: a crossing
        just after it is interpolated from the last finite cell before it (or is the crossing
        cell's level when there is none).
    levels : array_like
        The grid values along each row (finite, 1-d, strictly increasing).
    threshold : float
        The level to cross.
    above : bool
        True: the first value :math:`\ge` ``threshold``; False: the first value :math:`<` ``threshold``.

    Returns
    -------
    numpy.ndarray
        Shape (rows,): the crossing level per row, NaN where a row never crosses.

    Raises
    ------
    ValueError
        ``values`` is not 2-d with ``len(levels)`` columns, ``levels`` is not strictly increasing,
        ``threshold`` is not a finite number or ``above`` not a bool.
    """
    levels = _increasing("levels", check_array("levels", levels, ndim=1))
    values = check_array("values", values, shape=(None, len(levels)), finite=False)
    threshold = check_number("threshold", threshold)
    above = check_bool("above", above)
    return _crossings(values, levels, np.array([threshold]), above)[:, 0]


def ks_two_sample(a, b):
    r"""Two-sample Kolmogorov-Smirnov test: the statistic :math:`D = \sup_x |F_a(x) - F_b(x)|` and its
    asymptotic p-value.

    Compares the sampler with the exact engine in :ref:`sec-gram-law`. The p-value is Kolmogorov's
    limit law evaluated at :math:`(\sqrt{n_e} + 0.12 + 0.11/\sqrt{n_e})\, D` with
    :math:`n_e = n_a n_b / (n_a + n_b)`
    (Stephens' small-sample correction); ties (e.g. accuracies) make it conservative.

    Parameters
    ----------
    a, b : array_like
        1-d samples of finite numbers, at least one value each.

    Returns
    -------
    tuple of float
        ``(D, p)``: :math:`D` and the p-value.

    Raises
    ------
    ValueError
        A sample is not 1-d, is empty or holds NaN/inf.
    """
    a = np.sort(check_array("a", a, ndim=1))
    b = np.sort(check_array("b", b, ndim=1))
    if a.size == 0 or b.size == 0:
        raise ValueError("a and b must each hold at least one value")
    grid = np.concatenate([a, b])
    D = float(np.abs(np.searchsorted(a, grid, "right") / a.size - np.searchsorted(b, grid, "right") / b.size).max())
    ne = a.size * b.size / (a.size + b.size)
    lam = (np.sqrt(ne) + 0.12 + 0.11 / np.sqrt(ne)) * D
    if lam < 0.2:  # the series converges slowly there, and p is 1 to many digits
        return D, 1.0
    k = np.arange(1, 101)
    p = float(np.clip(2 * np.sum((-1.0) ** (k - 1) * np.exp(-2 * (k * lam) ** 2)), 0.0, 1.0))
    return D, p
