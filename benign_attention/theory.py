r"""Closed forms the book proves and checks.

The SNR (:prf:ref:`def-snr`), the existence construction (:ref:`sec-existence-construction`), the
gradient structure (:prf:ref:`prop-gradient-structure`), the growth law :math:`g` (:prf:ref:`prop-g-law`),
the regimes at a finite time (:prf:ref:`def-regime-finite`) and the fixed head's baselines
(:ref:`sec-setting-baseline`).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .data import Dataset
from .metrics import batch_metrics
from .validation import ArgumentTypeError, check_array, check_int, check_number, shared_tensor

__all__ = ["snr", "g", "g_inverse", "logit_gaps", "existence_query", "evaluate_query",
           "analytic_gradients", "classify_regime", "fit_exponential_time", "REGIMES", "DIVERGED",
           "LOSS_THRESHOLD",
           "snr_upper_order", "snr_lower_order", "fitting_step"]

#: Names of the three regimes (:prf:ref:`def-regime-finite`), in the order of the indices
#: :func:`classify_regime` returns for arrays.
REGIMES = ("not overfitting", "benign", "harmful")
#: The clean test loss at or above which a run that fits every label counts as harmful
#: (:prf:ref:`def-regime-finite`): between the untrained model's test loss and the loss of
#: attention entirely on :math:`x_1`, both computed in :ref:`sec-phase-regimes`.
LOSS_THRESHOLD = 0.5
#: The regime name of a diverged run, which :func:`classify_regime` returns for a scalar whose
#: accuracies are NaN; array results hold NaN in those cells (so they are never coloured or counted).
DIVERGED = "diverged"


def _real(name, value, positive=False, finite=True):
    """A real float array (any shape, scalars stay 0-d), optionally > 0 everywhere."""
    a = check_array(name, value, finite=finite)
    if positive and a.size and not np.all(a > 0):
        raise ValueError(f"{name} must be > 0, got {value!r}" if a.ndim == 0 else f"{name} must be > 0 everywhere")
    return a


def _broadcast(**arrays):
    try:
        return np.broadcast_shapes(*(a.shape for a in arrays.values()))
    except ValueError:
        shapes = ", ".join(f"{k} {a.shape}" for k, a in arrays.items())
        raise ValueError(f"the shapes of {', '.join(arrays)} do not broadcast together: {shapes}") from None


def _dataset(ds):
    if not isinstance(ds, Dataset):
        raise ArgumentTypeError(f"ds must be a Dataset (from make_dataset or Dataset.from_arrays), got {type(ds).__name__}")
    return ds


def _out(a):
    return a[()] if a.ndim == 0 else a


def snr(signal_norm, d, sigma=1.0):
    r"""Signal-to-noise ratio :math:`\lVert\mu\rVert / (\sigma\sqrt d)` of :prf:ref:`def-snr`, elementwise.

    Parameters
    ----------
    signal_norm : float or array_like
        :math:`\lVert\mu\rVert \ge 0`.
    d : float or array_like
        Token dimension, :math:`d > 0`.
    sigma : float or array_like
        Noise scale, :math:`\sigma > 0`.

    Returns
    -------
    float or numpy.ndarray
        The broadcast SNR.

    Raises
    ------
    ValueError
        An argument is out of range, not finite, or the shapes do not broadcast.
    """
    mu = _real("signal_norm", signal_norm)
    if mu.size and np.min(mu) < 0:
        raise ValueError("signal_norm must be >= 0")
    d, sigma = _real("d", d, positive=True), _real("sigma", sigma, positive=True)
    _broadcast(signal_norm=mu, d=d, sigma=sigma)
    return _out(np.asarray(mu / (sigma * np.sqrt(d))))


def snr_upper_order(n):
    r"""The order :math:`n^{-1/2}` above which noisy samples are not fitted (an order, not a constant).

    See :prf:ref:`rem-phase-orders`. ``n`` > 0 (number or array); raises ValueError otherwise.
    """
    return _out(np.asarray(_real("n", n, positive=True) ** -0.5))


def snr_lower_order(d):
    r"""The order :math:`d^{-1/4}` below which overfitting turns harmful (an order, not a constant).

    See :prf:ref:`rem-phase-orders`. ``d`` > 0 (number or array); raises ValueError otherwise.
    """
    return _out(np.asarray(_real("d", d, positive=True) ** -0.25))


def g(x, T):
    r"""The growth function :math:`g(x) = 2x + 2\sinh(x - \log T)` of :prf:ref:`prop-g-law`, elementwise.

    :math:`g'(x) = 1 / (s(1-s))` with :math:`s = e^x / (e^x + T)`.

    Parameters
    ----------
    x : float or array_like
        Score gaps :math:`x`.
    T : float or array_like
        Number of tokens, :math:`T > 0`.

    Returns
    -------
    float or numpy.ndarray

    Raises
    ------
    ValueError
        ``T`` <= 0, or an argument is not real.
    """
    x = _real("x", x, finite=False)
    T = _real("T", T, positive=True)
    _broadcast(x=x, T=T)
    return _out(np.asarray(2 * x + 2 * np.sinh(x - np.log(T))))


def g_inverse(y, T, iters=100):
    r"""Solve :math:`g(x) = y` for :math:`x` (:math:`g` is strictly increasing and maps the real line onto
    itself), elementwise.

    The inverse of :func:`g` (:prf:ref:`prop-g-law`), to round-off for every real ``y`` (tested on
    :math:`x \in [-700, 700]`). With :math:`u = x - \log T`, :math:`g(x) = 2\log T + h(u)` where
    :math:`h(u) = 2u + 2\sinh u` is odd and convex for :math:`u \ge 0`; Newton's method on :math:`h` starts
    at :math:`\operatorname{arcsinh}(|z|/2) \ge u` (:math:`z = y - 2\log T`), where it cannot overshoot, so
    it decreases monotonically to the root.

    Contract: ``y`` real numbers (:math:`\pm\infty` give :math:`\pm\infty`, NaN gives NaN, as :func:`g` would map them back),
    ``T`` > 0 and finite, ``iters`` >= 1 Newton steps (the iteration stops earlier once it has
    converged); raises ValueError otherwise.
    """
    y = _real("y", y, finite=False)
    T = _real("T", T, positive=True)
    _broadcast(y=y, T=T)
    iters = check_int("iters", iters, 1)
    logT = np.log(T)
    z = y - 2 * logT
    a = np.abs(z)
    finite = np.isfinite(a)
    u = np.where(finite, np.arcsinh(np.where(finite, a, 0.0) / 2), a)   # >= the root of h(u) = |z|
    with np.errstate(invalid="ignore", over="ignore"):
        for _ in range(iters):
            step = np.where(finite, (2 * u + 2 * np.sinh(u) - a) / (2 + 2 * np.cosh(u)), 0.0)
            u = u - step
            if not np.any(np.abs(step) > 4e-16 * (1 + np.abs(u))):
                break
    x = logT + np.sign(z) * u
    return _out(np.asarray(np.where(np.isnan(y), np.nan, x)))


def logit_gaps(logits, noisy, selected=2):
    r"""Per-sample score gaps between the token a sample should select and its best competitor.

    Clean samples: :math:`a_1 - \max_{t \ne 1} a_t` (the paper's :math:`\Lambda`); noisy samples:
    :math:`a_u - \max_{t \ne u} a_t` with :math:`u` = ``selected + 1`` (default :math:`x_3`, the paper's
    :math:`\Gamma`). The gaps of :prf:ref:`prop-gaps`;
    :func:`benign_attention.analysis.selection_gaps` picks the selected token per sample.

    Parameters
    ----------
    logits : array_like
        Token scores ``(..., n, T)``, :math:`T \ge 2`; NaN allowed.
    noisy : array_like of bool
        Mask (n,) of the flipped samples.
    selected : int
        Index in ``[0, T - 1]`` of the token the noisy samples should select (default 2, :math:`x_3`).

    Returns
    -------
    numpy.ndarray
        Shape (..., n).

    Raises
    ------
    ValueError
        Wrong shapes, a non-boolean mask, or ``selected`` out of range.
    """
    a = _real("logits", logits, finite=False)
    if a.ndim < 2 or a.shape[-1] < 2:
        raise ValueError(f"logits must have shape (..., n, T) with T >= 2, got {a.shape}")
    n, T = a.shape[-2:]
    noisy = np.asarray(noisy.detach().cpu().numpy() if torch.is_tensor(noisy) else noisy)
    if noisy.shape != (n,) or not (noisy.dtype == bool or (noisy.dtype.kind in "iu" and np.isin(noisy, (0, 1)).all())):
        raise ValueError(f"noisy must be a boolean mask of shape ({n},), got {noisy.dtype} {noisy.shape}")
    selected = check_int("selected", selected, 0, T - 1)
    target = np.where(noisy.astype(bool), selected, 0)
    chosen = np.take_along_axis(a, np.broadcast_to(target[:, None], a.shape[:-1] + (1,)), -1)[..., 0]
    others = a.copy()
    np.put_along_axis(others, np.broadcast_to(target[:, None], a.shape[:-1] + (1,)), -np.inf, -1)
    return chosen - others.max(-1)


def existence_query(ds: Dataset, c, rho=None):
    r"""The existence construction of :prf:ref:`def-construction` with :math:`W = I`.

    Returns :math:`q = Wp = p = \mu_{+1} + \mu_{-1} + cM` with :math:`M = \sum_i \epsilon^{(i)}_{t_i}`
    the sum over clean samples of :math:`\epsilon_1` plus the sum over noisy samples of
    :math:`\epsilon_3` (:math:`\epsilon_t` the noise of token :math:`t`).

    Parameters
    ----------
    ds : benign_attention.data.Dataset
        The training set.
    c : float
        Memorisation weight :math:`c \ge 0`.
    rho : float, optional
        Weak-signal factor used to strip the signals from the tokens (default ``ds.config["rho"]``).

    Returns
    -------
    numpy.ndarray
        The query :math:`q`, shape ``(d,)``.

    Raises
    ------
    ValueError
        ``ds`` is not a data set, or ``c``/``rho`` are out of range.
    """
    ds = _dataset(ds)
    c = check_number("c", c, 0.0)
    rho = ds.config.get("rho") if rho is None else rho
    if rho is None:
        raise ValueError("rho must be given for a data set built from arrays")
    rho = check_number("rho", rho, 0.0)
    sign = ds.y_clean[:, None] > 0
    mu_true = np.where(sign, ds.mu_pos, ds.mu_neg)
    mu_other = np.where(sign, ds.mu_neg, ds.mu_pos)
    eps1 = ds.X[:, 0] - mu_true
    eps3 = ds.X[:, 2] - rho * mu_other
    return ds.mu_pos + ds.mu_neg + c * (eps1[~ds.noisy].sum(0) + eps3[ds.noisy].sum(0))


def evaluate_query(ds: Dataset, q):
    r"""Metrics of the model with fixed query :math:`q = Wp` on the training and test sets.

    Used to check the construction of :ref:`sec-existence-construction`.

    Parameters
    ----------
    ds : benign_attention.data.Dataset
    q : array_like
        The query :math:`Wp`, shape ``(d,)``, finite.

    Returns
    -------
    dict of numpy.ndarray
        The keys of :func:`~benign_attention.metrics.batch_metrics` for ``train`` and ``test``.

    Raises
    ------
    ValueError
        ``ds`` is not a data set or ``q`` has the wrong shape or is not finite.
    """
    ds = _dataset(ds)
    q = check_array("q", q, shape=(ds.d,))
    t = lambda a: shared_tensor(a, torch.float64)
    q, nu = t(q), t(ds.nu)
    X = t(ds.X)
    out = batch_metrics(X @ q, X @ nu, t(ds.y), t(ds.y_clean), shared_tensor(ds.noisy))
    if ds.X_test is not None:
        Xt = t(ds.X_test)
        out.update(batch_metrics(Xt @ q, Xt @ nu, t(ds.y_test), prefix="test"))
    return {k: v.numpy() for k, v in out.items()}


def analytic_gradients(ds: Dataset, W, p):
    r"""Gradients of the mean logistic loss from the closed form of :prf:ref:`prop-gradient-structure`.

    .. math::

       \frac{\partial L}{\partial a_{it}} = \frac1n\, \ell'_i\, s_{it} (z_{it} - f_i), \qquad
       u = \sum_{i,t} \frac{\partial L}{\partial a_{it}}\, x^{(i)}_t, \qquad
       \nabla_W L = u p^\top \ \text{(rank one)}, \qquad \nabla_p L = W^\top u.

    Parameters
    ----------
    ds : benign_attention.data.Dataset
    W : array_like
        Key-query matrix :math:`W`, shape ``(d, d)``.
    p : array_like
        Query token :math:`p`, shape ``(d,)``.

    Returns
    -------
    tuple of numpy.ndarray
        ``(grad_W (d, d), grad_p (d,))``.

    Raises
    ------
    ValueError
        ``ds`` is not a data set, or ``W``/``p`` have the wrong shape or are not finite.
    """
    ds = _dataset(ds)
    X, y, nu = (np.asarray(a, float) for a in (ds.X, ds.y, ds.nu))
    W, p = check_array("W", W, shape=(ds.d, ds.d)), check_array("p", p, shape=(ds.d,))
    a = X @ (W @ p)
    s = np.exp(a - a.max(-1, keepdims=True))
    s /= s.sum(-1, keepdims=True)
    z = X @ nu
    f = (s * z).sum(-1)
    lprime = -y / (1 + np.exp(y * f))
    dA = lprime[:, None] * s * (z - f[:, None]) / len(y)
    u = np.einsum("it,itd->d", dA, X)
    return np.outer(u, p), W.T @ u


def classify_regime(train_acc, test_acc=None, test_threshold=0.95, *, test_loss=None,
                    loss_threshold=LOSS_THRESHOLD):
    r"""Name the regime of a run (:prf:ref:`def-regime-finite`): "not overfitting" if some training
    label is not fitted (observed train accuracy < 1); otherwise "harmful" or "benign" by one of two
    rules, chosen by which test quantity is given (exactly one of them):

    * ``test_loss`` (the book's definition): harmful if the clean test loss is at least
      ``loss_threshold``, else benign;
    * ``test_acc`` (the accuracy rule): harmful if the clean test accuracy is below
      ``test_threshold``, else benign. Before any training the model is already correct with
      probability :math:`\Phi(\lVert\mu\rVert / (\sigma\sqrt{2T}))` (:func:`fixed_attention_accuracy` with uniform
      weights), so wherever that is below ``test_threshold`` this rule calls every fitted run
      harmful, whatever training did (:ref:`sec-phase-regimes`).

    Works elementwise on arrays; returns a name for scalars and integer indices into :data:`REGIMES`
    for arrays. A run whose accuracy or loss is NaN diverged and has no regime: a scalar gives
    :data:`DIVERGED` ("diverged"); an array with such cells is returned as floats with NaN there (so
    the cell is neither coloured by a plot nor counted by ``np.bincount``).

    Parameters
    ----------
    train_acc : float or array_like
        Accuracy on the observed training labels, in :math:`[0, 1]`.
    test_acc : float or array_like, optional
        Clean test accuracy in :math:`[0, 1]`, broadcastable with ``train_acc`` (the accuracy rule).
    test_threshold : float
        The threshold :math:`\theta \in [0, 1]`: the test accuracy below which the accuracy rule calls a
        fitted run harmful.
    test_loss : float or array_like, optional
        Clean test loss, >= 0, broadcastable with ``train_acc`` (the loss rule; keyword only).
    loss_threshold : float
        :math:`L_{\mathrm h} > 0`: the test loss from which the loss rule calls a fitted run harmful
        (default :data:`LOSS_THRESHOLD`).

    Returns
    -------
    str or numpy.ndarray
        A regime name (scalars) or indices into :data:`REGIMES` (arrays; float with NaN where a
        run diverged).

    Raises
    ------
    ValueError
        An accuracy outside :math:`[0, 1]`, a negative test loss, shapes that do not broadcast, a threshold
        out of range, or not exactly one of ``test_acc`` and ``test_loss``.
    """
    if (test_acc is None) == (test_loss is None):
        raise ValueError("give exactly one of test_acc (the accuracy rule) and test_loss (the loss rule)")
    test_threshold = check_number("test_threshold", test_threshold, 0.0, 1.0)
    loss_threshold = check_number("loss_threshold", loss_threshold, 0.0)
    if loss_threshold <= 0:
        raise ValueError(f"loss_threshold must be > 0, got {loss_threshold!r}")
    tr = _real("train_acc", train_acc, finite=False)
    if test_loss is None:
        te = _real("test_acc", test_acc, finite=False)
        shape = _broadcast(train_acc=tr, test_acc=te)
        checks = (("train_acc", tr), ("test_acc", te))
        harmful = te < test_threshold
    else:
        te = _real("test_loss", test_loss, finite=False)
        shape = _broadcast(train_acc=tr, test_loss=te)
        checks = (("train_acc", tr),)
        if np.any(np.isinf(te)) or np.any(te < 0):
            raise ValueError("test_loss must be losses >= 0 (NaN for a diverged run)")
        harmful = te >= loss_threshold
    for name, a in checks:
        if np.any(np.isinf(a)) or np.any((a < 0) | (a > 1)):
            raise ValueError(f"{name} must be accuracies in [0, 1] (NaN for a diverged run)")
    idx = np.where(tr < 1 - 1e-9, 0, np.where(harmful, 2, 1))
    diverged = np.broadcast_to(np.isnan(tr) | np.isnan(te), shape)
    if idx.ndim == 0:
        return DIVERGED if diverged else REGIMES[int(idx)]
    if diverged.any():
        return np.where(diverged, np.nan, idx)
    return idx


def fit_exponential_time(gaps, times):
    r"""Least-squares slope of :math:`\log(\text{time})` against gap:
    :math:`\text{time} \propto \exp(\text{slope} \cdot \text{gap})`.

    Pairs with a non-finite gap or a time that is not a finite positive number are left out; at
    least two with distinct gaps must remain. Checks the exponential delay of :prf:ref:`prop-g-law`.

    Parameters
    ----------
    gaps, times : array_like
        1-d arrays of the same length.

    Returns
    -------
    float
        The slope.

    Raises
    ------
    ValueError
        Shapes differ or fewer than two usable pairs remain.
    """
    gaps, times = _real("gaps", gaps, finite=False), _real("times", times, finite=False)
    if gaps.ndim != 1 or gaps.shape != times.shape:
        raise ValueError(f"gaps and times must be 1-d arrays of the same length, got {gaps.shape} and {times.shape}")
    ok = np.isfinite(gaps) & np.isfinite(times) & (times > 0)
    if np.unique(gaps[ok]).size < 2:
        raise ValueError(f"gaps and times must hold at least two usable pairs with distinct gaps (finite gap, "
                         f"time > 0), got {int(ok.sum())}")
    return np.polyfit(gaps[ok], np.log(times[ok]), 1)[0]



# --- Baselines and selection odds of the fixed head (chapters *The setting*, *A benign solution
# exists*, *Training dynamics*); self-contained additions ---------------------------------------


def _normal_cdf(x):
    """Standard normal distribution function, elementwise (float64)."""
    return torch.special.ndtr(torch.as_tensor(np.asarray(x, float), dtype=torch.float64)).numpy()


def fixed_attention_accuracy(weights, rho, signal_norm, sigma=1.0):
    r"""Accuracy of the head under fixed attention weights (:prf:ref:`prop-fixed-attention`).

    The probability that a fresh clean sequence is classified correctly when the attention weights
    :math:`s` = ``weights`` are fixed (do not depend on the tokens):

    .. math::

       \Phi\!\left(\frac{(s_1 + \rho(s_2 - s_3))\, \lVert\mu\rVert}{\sqrt2\, \sigma \lVert s\rVert}\right).

    Uniform weights (:math:`p = 0`) give :math:`\Phi(\lVert\mu\rVert / (\sigma\sqrt{2T}))`; all weight on
    :math:`x_1` gives :math:`\Phi(\lVert\mu\rVert / (\sqrt2\,\sigma))`.

    Parameters
    ----------
    weights : array_like
        :math:`T \ge 3` non-negative weights summing to 1.
    rho : float
        Weak-signal factor, :math:`\rho \ge 0`.
    signal_norm : float
        :math:`\lVert\mu\rVert \ge 0`.
    sigma : float
        Noise scale, :math:`\sigma \ge 0`; :math:`\sigma = 0` gives the noise-free limit (1, 0, or 1/2 when the signal
        term is 0).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        ``weights`` is not a probability vector over :math:`T \ge 3` tokens, or a knob is out of range.
    """
    s = np.asarray(weights, float)
    if s.ndim != 1 or s.size < 3 or np.any(s < 0) or not np.isclose(s.sum(), 1):
        raise ValueError("weights must be T >= 3 non-negative numbers summing to 1")
    rho = check_number("rho", rho, 0.0)
    signal_norm = check_number("signal_norm", signal_norm, 0.0)
    sigma = check_number("sigma", sigma, 0.0)
    signal = (s[0] + rho * (s[1] - s[2])) / np.sqrt(2) * signal_norm
    if sigma == 0:   # no noise: the sign of the signal decides (0: a coin flip), the limit sigma -> 0
        return float(1.0 if signal > 0 else 0.0 if signal < 0 else 0.5)
    return float(_normal_cdf(signal / (sigma * np.linalg.norm(s))))


def wrong_label_best_token(rho, signal_norm, T, sigma=1.0, grid=4001):
    r"""For a sequence read with the *other* label :math:`-Y^*` (a noisy sample's observed label), the
    probability that each token type carries the largest signed head value :math:`-Y^* \nu^\top x_t`.

    The signed head values are independent normals with standard deviation
    :math:`\sigma/\lVert\mu\rVert` and means :math:`-1/\sqrt2` (:math:`x_1`), :math:`-\rho/\sqrt2`
    (:math:`x_2`), :math:`+\rho/\sqrt2` (:math:`x_3`) and 0 (the :math:`T - 3` irrelevant tokens); each
    probability is a one-dimensional integral, computed by the trapezoid rule (:ref:`sec-setting-floor`).

    Parameters
    ----------
    rho : float
        Weak-signal factor, :math:`\rho \ge 0`.
    signal_norm : float
        :math:`\lVert\mu\rVert \ge 0`.
    T : int
        Tokens per sequence, :math:`T \ge 3`.
    sigma : float
        Noise scale, :math:`\sigma \ge 0`. The limits are exact: ``signal_norm`` = 0 gives every token the
        same chance :math:`1/T`; ``sigma`` = 0 (with ``signal_norm`` > 0) gives the token of largest mean
        probability 1, shared equally between tied tokens.
    grid : int
        Points of the trapezoid rule, >= 3.

    Returns
    -------
    dict
        Probabilities ``{"x1", "x2", "x3", "irrelevant"}`` (the last summed over the irrelevant
        tokens).

    Raises
    ------
    ValueError
        A knob is out of range.
    """
    rho = check_number("rho", rho, 0.0)
    signal_norm = check_number("signal_norm", signal_norm, 0.0)
    sigma = check_number("sigma", sigma, 0.0)
    T = check_int("T", T, 3)
    grid = check_int("grid", grid, 3)
    means = np.r_[-1.0, -rho, rho, np.zeros(T - 3)] / np.sqrt(2)
    if signal_norm == 0 or sigma == 0 or not np.isfinite(sigma / signal_norm):
        # the limits: no signal -> every token is equally likely to win; no noise -> the largest
        # mean wins, ties shared equally (exchangeable tokens)
        win = np.ones(T) if signal_norm == 0 or sigma / signal_norm == np.inf else (means == means.max()).astype(float)
        probs = win / win.sum()
        return {"x1": float(probs[0]), "x2": float(probs[1]), "x3": float(probs[2]),
                "irrelevant": float(probs[3:].sum())}
    sd = sigma / signal_norm
    u = np.linspace(-12, 12, grid)
    phi = np.exp(-u ** 2 / 2) / np.sqrt(2 * np.pi)
    probs = []
    for k in range(T):  # token k wins when every other token's value is below its value
        others = np.delete(means, k)
        cdf = _normal_cdf((means[k] - others[:, None]) / sd + u[None, :])
        integrand = phi * cdf.prod(0)
        probs.append(float(((integrand[1:] + integrand[:-1]) / 2 * np.diff(u)).sum()))
    probs = np.array(probs)
    return {"x1": float(probs[0]), "x2": float(probs[1]), "x3": float(probs[2]),
            "irrelevant": float(probs[3:].sum())}


def existence_accuracies(ds: Dataset, cs, clean=True, rho=None):
    r"""Train (observed and clean labels) and test accuracy of the existence construction for every
    memorisation weight in ``cs`` at once (scores are affine in :math:`c`). ``clean=False`` memorises only
    the noisy samples' :math:`x_3` noise (drops the clean samples' :math:`x_1` noise from the query).

    The sweep of :ref:`sec-existence-sweep`.

    Parameters
    ----------
    ds : benign_attention.data.Dataset
        A data set with a test set.
    cs : float or array_like
        Memorisation weights (1-d), finite.
    clean : bool
        Whether the query also memorises the clean samples' :math:`x_1` noise.
    rho : float, optional
        As in :func:`existence_query`.

    Returns
    -------
    dict of numpy.ndarray
        ``train_acc``, ``train_clean_acc`` and ``test_acc``, each of shape (len(cs),).

    Raises
    ------
    ValueError
        ``ds`` is not a data set or ``cs`` is not a finite 1-d array.
    """
    ds = _dataset(ds)
    cs = _real("cs", cs)
    if cs.ndim > 1:
        raise ValueError(f"cs must be a number or a 1-d array of memorisation weights, got shape {cs.shape}")
    rho = ds.config.get("rho") if rho is None else check_number("rho", rho, 0.0)
    base = existence_query(ds, 0.0, rho)
    memo = existence_query(ds, 1.0, rho) - base
    if not clean:
        sign = ds.y_clean[:, None] > 0
        eps1 = ds.X[:, 0] - np.where(sign, ds.mu_pos, ds.mu_neg)
        memo = memo - eps1[~ds.noisy].sum(0)
    out = {}
    for name, X, labels in (("train", ds.X, {"acc": ds.y, "clean_acc": ds.y_clean}),
                            ("test", ds.X_test, {"acc": ds.y_test})):
        a = (X @ base)[None] + cs[:, None, None] * (X @ memo)[None]     # (len(cs), N, T)
        s = np.exp(a - a.max(-1, keepdims=True))
        f = (s * (X @ ds.nu)).sum(-1) / s.sum(-1)
        for key, y in labels.items():
            out[f"{name}_{key}"] = (np.sign(f) == y).mean(-1)
    return out


def per_sample_loss_floor(ds, X=None, y=None):
    r""":prf:ref:`prop-loss-floor`: :math:`\log(1 + \exp(-\max_t Y_i \nu^\top x^{(i)}_t))` for every
    sequence, shape ``(n,)``.

    Used in :ref:`sec-setting-floor`.
    """
    X = ds.X if X is None else X
    y = ds.y if y is None else y
    return np.logaddexp(0.0, -(y[:, None] * (X @ ds.nu)).max(1))


def selecting_query(ds, scale=60.0):
    r"""A query that selects each sample's best head token, with score ``scale`` on that token and
    0 on the others (scores :math:`x^{(i)\top}_t q`, least squares; exact when the :math:`nT` training
    tokens are linearly independent).

    Used in :ref:`sec-setting-floor`.
    """
    best = (ds.y[:, None] * (ds.X @ ds.nu)).argmax(1)
    target = np.zeros((ds.n, ds.T))
    target[np.arange(ds.n), best] = scale
    q, *_ = np.linalg.lstsq(ds.X.reshape(-1, ds.d), target.ravel(), rcond=None)
    return q


def existence_test_bound(ds, q, h=0.2):
    r""":prf:ref:`prop-test-guarantee`: for each class :math:`y`, the bound

    .. math::

       \sum_{t=2}^T \bar\Phi\!\left(\frac{\Delta_t - \lambda}{\sqrt2\,\sigma\lVert q\rVert}\right)
       + 2T\,\bar\Phi\!\left(\frac{h}{\sigma\lVert\nu\rVert}\right)

    on the probability that a fresh test sequence of class :math:`y` is misclassified by :math:`W = I`,
    :math:`p = q`;
    returns the average over the two classes (balanced test labels).

    Used in :ref:`sec-existence-construction`.
    """
    phi_bar = lambda x: 0.5 * math.erfc(x / math.sqrt(2))
    rho, sigma, T = ds.config["rho"], ds.config.get("sigma", 1.0), ds.T
    m, B = 1 / math.sqrt(2) - h, rho / math.sqrt(2) + h
    lam = math.log((T - 1) * B / m)
    s = sigma * np.linalg.norm(q)
    head = 2 * T * phi_bar(h / (sigma * np.linalg.norm(ds.nu)))
    out = []
    for mu_true, mu_other in ((ds.mu_pos, ds.mu_neg), (ds.mu_neg, ds.mu_pos)):
        v = np.zeros((T, ds.d))
        v[0], v[1], v[2] = mu_true, rho * mu_true, rho * mu_other
        delta = (v[0] - v[1:]) @ q
        out.append(sum(phi_bar((dt - lam) / (math.sqrt(2) * s)) for dt in delta) + head)
    return float(np.mean(out))


__all__ += ["fixed_attention_accuracy", "wrong_label_best_token", "existence_accuracies",
            "per_sample_loss_floor", "selecting_query", "existence_test_bound"]


def fitting_step(steps, train_acc):
    r"""First recorded step from which every observed training label stays fitted (train accuracy 1
    at that record and all later ones); ``inf`` where the last record still has an unfitted label.

    Used in :ref:`sec-phase-not-yet` to tell "not overfitting" apart from "not yet fitted".

    Parameters
    ----------
    steps : array_like
        Record steps ``(E,)``.
    train_acc : array_like
        Observed-label training accuracy ``(..., E)``.

    Returns
    -------
    numpy.ndarray
        Shape (...,): the step, or inf.

    Raises
    ------
    ValueError
        ``train_acc`` does not end with the :math:`E` record steps.
    """
    steps, acc = _real("steps", steps), _real("train_acc", train_acc, finite=False)
    if steps.ndim != 1 or acc.ndim < 1 or acc.shape[-1] != steps.shape[0]:
        raise ValueError(f"train_acc must end with the {steps.shape[0]} record steps, got shape {acc.shape}")
    fitted = acc >= 1 - 1e-9
    stays = np.flip(np.cumprod(np.flip(fitted, -1), -1), -1).astype(bool)  # fitted from here on
    return np.where(stays[..., -1], steps[np.argmax(stays, -1)], np.inf)


def fixed_attention_test_check(ds, weights):
    r"""Compare :func:`fixed_attention_accuracy` with the accuracy of fixed attention ``weights`` on
    the test set of ``ds`` (a Monte Carlo check of :prf:ref:`prop-fixed-attention`).

    The empirical accuracy is the fraction of test sequences :math:`X` with
    :math:`Y^* \nu^\top X^\top s > 0`; the exact value is
    ``fixed_attention_accuracy(weights, rho, signal_norm, sigma)`` with the knobs of ``ds``. The
    tolerance is four binomial standard errors, :math:`4\sqrt{a(1-a)/n_{\text{test}}}` at the exact
    accuracy :math:`a`, plus :math:`10^{-12}`.

    Parameters
    ----------
    ds : Dataset
        A dataset from :func:`~benign_attention.data.make_dataset`; its test set is read.
    weights : array_like
        :math:`T` non-negative weights summing to 1 (``T`` of ``ds``).

    Returns
    -------
    tuple of float
        ``(empirical, exact, tolerance)``; the proposition passes the check when
        ``abs(empirical - exact) <= tolerance``.

    Raises
    ------
    ValueError
        ``weights`` is not a probability vector over the ``T`` tokens of ``ds``.
    """
    ds = _dataset(ds)
    s = np.asarray(weights, float)
    if s.shape != (ds.T,):
        raise ValueError(f"weights must have the T = {ds.T} entries of ds, got shape {s.shape}")
    exact = fixed_attention_accuracy(s, ds.config["rho"], ds.config["signal_norm"],
                                     ds.config["sigma"])
    empirical = float(np.mean(ds.y_test * ((ds.X_test @ ds.nu) @ s) > 0))
    tolerance = 4 * math.sqrt(exact * (1 - exact) / ds.n_test) + 1e-12
    return empirical, exact, tolerance


__all__ += ["fixed_attention_test_check"]
