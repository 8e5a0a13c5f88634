r"""The paper's token-sequence distribution, defined in :ref:`sec-setting-tokens` (:prf:ref:`def-data`).

A sample is a sequence :math:`X = (x_1, \dots, x_T)^\top` of :math:`T` tokens in :math:`\mathbb R^d`
with a clean label :math:`Y^* \in \{+1, -1\}`:

* :math:`x_1 = \mu_{Y^*} + \epsilon_1`: relevant token
* :math:`x_2 = \rho\,\mu_{Y^*} + \epsilon_2`: weakly relevant, aligned with the true class
* :math:`x_3 = \rho\,\mu_{-Y^*} + \epsilon_3`: weakly relevant, aligned with the other class
* :math:`x_t = \epsilon_t` for :math:`t = 4, \dots, T`: irrelevant tokens

with :math:`\mu_{+1} = \lVert\mu\rVert e_1`, :math:`\mu_{-1} = \lVert\mu\rVert e_2`
(:math:`\lVert\mu\rVert` = ``signal_norm``) and :math:`\epsilon_t \sim \mathcal N(0, \sigma^2 I_d)`
drawn independently for every token. Training labels are exactly balanced and exactly
:math:`\lceil \eta n \rceil` of them are flipped, as evenly as possible between the two classes (:ref:`sec-setting-labels`). The test set is clean and drawn
from its own random stream, so it is independent of the training draw.

Random streams are split with :class:`numpy.random.SeedSequence`, and the noise is drawn before
(and independently of) the signal strengths, so two data sets that differ only in ``signal_norm``,
``rho`` or ``eta`` share their noise exactly; :mod:`benign_attention.sweeps` uses this to batch grids.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .validation import ArgumentTypeError, check_array, check_choice, check_dtype, check_int, check_labels, check_number, readonly

__all__ = ["Dataset", "make_dataset", "head_vector", "check_number", "check_int", "LR", "STEPS"]

#: The paper's learning rate, the step size of full-batch GD in its experiments
#: (:ref:`sec-dyn-settings`), the default ``lr`` of every trainer.
LR = 5e-3
#: The paper's number of GD steps, the default ``steps`` of every trainer.
STEPS = 1000

#: The smallest allowed :math:`\lVert\mu\rVert`: the head :math:`\nu` has norm :math:`1/\lVert\mu\rVert`,
#: and below this the outputs (of order :math:`\sigma\sqrt d / \lVert\mu\rVert`) leave float32's range of useful numbers; the book's grids start far above it.
MIN_SIGNAL_NORM = 1e-6

# Stream indices of SeedSequence(seed).spawn(5)
_LABELS, _TRAIN_NOISE, _TEST_LABELS, _TEST_NOISE, _INIT = range(5)


def head_vector(mu_pos, mu_neg):
    r"""The fixed head :math:`\nu = (\mu_{+1} - \mu_{-1}) / (\lVert\mu_{+1} - \mu_{-1}\rVert\, \lVert\mu\rVert)` of :prf:ref:`def-model`.

    With orthogonal signals of equal norm :math:`\lVert\mu\rVert`,
    :math:`\nu^\top \mu_{\pm1} = \pm 1/\sqrt 2`.

    Parameters
    ----------
    mu_pos, mu_neg : array_like
        The two class signals, shape ``(d,)``, real and finite. :math:`\lVert\mu\rVert` is the mean of
        their norms.

    Returns
    -------
    numpy.ndarray
        :math:`\nu`, shape ``(d,)``.

    Raises
    ------
    ValueError
        The signals are not 1-d arrays of the same shape, not finite, or equal, or so small that
        :math:`1/\lVert\mu\rVert` overflows.
    """
    mu_pos = check_array("mu_pos", mu_pos, ndim=1)
    mu_neg = check_array("mu_neg", mu_neg, shape=mu_pos.shape)
    diff = mu_pos - mu_neg
    if not np.any(diff):
        raise ValueError("mu_pos and mu_neg must differ (the head is their normalised difference)")
    # scaled norms: no underflow of the squares for tiny signals, no overflow for huge ones
    big = max(np.abs(mu_pos).max(), np.abs(mu_neg).max())
    scale = 0.5 * big * (np.linalg.norm(mu_pos / big) + np.linalg.norm(mu_neg / big))
    unit = diff / np.abs(diff).max()
    with np.errstate(over="ignore", divide="ignore"):
        nu = unit / np.linalg.norm(unit) / scale
    if not np.all(np.isfinite(nu)):
        raise ValueError(f"mu_pos and mu_neg have norms too small: the head 1/||mu|| overflows (||mu|| = {scale:g})")
    return nu


_ARRAY_FIELDS = ("X", "y", "y_clean", "noisy", "X_test", "y_test", "mu_pos", "mu_neg")


@dataclass(frozen=True, eq=False)
class Dataset:
    r"""Training and test sequences with their labels (arrays are read-only float64 numpy).

    The data of :prf:ref:`def-data` with the label noise of :prf:ref:`def-label-noise`.

    Attributes
    ----------
    X : numpy.ndarray
        Training tokens, shape (n, T, d).
    y : numpy.ndarray
        Observed training labels (:math:`+1` or :math:`-1`), shape ``(n,)``; the flipped ones included.
    y_clean : numpy.ndarray
        Clean training labels, shape (n,).
    noisy : numpy.ndarray
        Boolean mask of the flipped samples, shape (n,).
    X_test, y_test : numpy.ndarray or None
        The clean test set, shapes (n_test, T, d) and (n_test,) (``X_test`` may be None).
    mu_pos, mu_neg : numpy.ndarray
        The class signals :math:`\mu_{+1}` and :math:`\mu_{-1}`, shape ``(d,)``.
    config : dict
        The knobs the data set was drawn with.

    Notes
    -----
    The arrays are validated once and then frozen (read-only copies), so a data set cannot change
    after it was checked; :attr:`fingerprint` identifies its contents. Build one with
    :func:`make_dataset` or :meth:`from_arrays` (calling ``Dataset(...)`` directly validates and copies
    the same way, and also checks ``y_clean``).
    """

    X: np.ndarray
    y: np.ndarray
    y_clean: np.ndarray
    noisy: np.ndarray
    X_test: np.ndarray | None
    y_test: np.ndarray | None
    mu_pos: np.ndarray
    mu_neg: np.ndarray
    config: dict = field(default_factory=dict)

    def __post_init__(self):
        checked = _check_arrays(self.X, self.y, self.mu_pos, self.mu_neg, self.noisy, self.X_test, self.y_test,
                                self.config)
        y_clean = check_labels("y_clean", self.y_clean, checked["X"].shape[0])
        if not np.array_equal(y_clean, np.where(checked["noisy"], -checked["y"], checked["y"])):
            raise ValueError("y_clean must equal y with the noisy samples' labels flipped back")
        checked["y_clean"] = y_clean
        for k, v in checked.items():
            object.__setattr__(self, k, v)

    def __setstate__(self, state):
        """Unpickled / deep-copied arrays are fresh copies: freeze them again."""
        for k, v in state.items():
            object.__setattr__(self, k, readonly(np.array(v)) if isinstance(v, np.ndarray) else v)

    @classmethod
    def _trusted(cls, **fields):
        """Wrap arrays that the package itself just made and checked (no second copy)."""
        self = object.__new__(cls)
        for k, v in fields.items():
            object.__setattr__(self, k, readonly(v) if isinstance(v, np.ndarray) and v.flags.writeable else v)
        return self

    @property
    def n(self):
        """Number of training sequences."""
        return self.X.shape[0]

    @property
    def T(self):
        """Number of tokens per sequence."""
        return self.X.shape[1]

    @property
    def d(self):
        """Token dimension."""
        return self.X.shape[2]

    @property
    def n_test(self):
        """Number of test sequences (0 without a test set)."""
        return 0 if self.X_test is None else self.X_test.shape[0]

    @property
    def nu(self):
        """The fixed linear head (see :func:`head_vector`)."""
        return head_vector(self.mu_pos, self.mu_neg)

    @cached_property
    def fingerprint(self) -> str:
        """A sha256 over every array (its shape, dtype and bytes). Two data sets with the same
        fingerprint hold the same data. :func:`~benign_attention.engines.train` uses it to refuse resuming a run
        on other data."""
        h = hashlib.sha256()
        for k in _ARRAY_FIELDS:
            a = getattr(self, k)
            h.update(k.encode())
            if a is None:
                h.update(b"none")
                continue
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(memoryview(np.ascontiguousarray(a)).cast("B"))
        return h.hexdigest()

    @classmethod
    def from_arrays(cls, X, y, mu_pos, mu_neg, noisy=None, X_test=None, y_test=None, config=None):
        r"""Build a data set from your own arrays (e.g. to reproduce an external run exactly).

        Arrays may be numpy arrays, nested lists or torch tensors; they must be real and finite.
        They are copied: changing your arrays afterwards does not change the data set.

        Parameters
        ----------
        X : array_like
            Training tokens ``(n, T, d)`` with :math:`n \ge 2`, :math:`T \ge 3` and :math:`d \ge 2`.
        y : array_like
            Observed labels in {+1, -1}, shape (n,).
        mu_pos, mu_neg : array_like
            The two class signals, shape (d,).
        noisy : array_like of bool, optional
            Mask of the flipped samples (default: none flipped).
        X_test, y_test : array_like, optional
            A clean test set (n_test, T, d) and its labels (n_test,); both or neither.
        config : dict, optional
            Knobs to record in :attr:`config` (``source="arrays"`` is added).

        Returns
        -------
        Dataset

        Raises
        ------
        ValueError
            An array has the wrong shape, is not real and finite, or labels are not :math:`\pm 1`.
        """
        checked = _check_arrays(X, y, mu_pos, mu_neg, noisy, X_test, y_test, config)
        y_clean = np.where(checked["noisy"], -checked["y"], checked["y"])
        checked["config"].setdefault("source", "arrays")
        return cls._trusted(y_clean=y_clean, **checked)


def _check_arrays(X, y, mu_pos, mu_neg, noisy, X_test, y_test, config):
    """Validate user arrays for a Dataset; return read-only copies (and a config dict)."""
    X = check_array("X", X, ndim=3)
    n, T, d = X.shape
    if n < 2:
        raise ValueError(f"X must hold n >= 2 sequences (shape (n, T, d)), got n={n}")
    if T < 3:
        raise ValueError(f"X must have T >= 3 tokens per sequence, got T={T}")
    if d < 2:
        raise ValueError(f"X must have token dimension d >= 2, got d={d}")
    y = check_labels("y", y, n)
    if noisy is None:
        noisy = np.zeros(n, bool)
    else:
        raw = np.asarray(noisy.detach().cpu().numpy() if hasattr(noisy, "detach") else noisy)
        if raw.shape != (n,) or raw.dtype != bool:
            raise ValueError(f"noisy must be a boolean array of shape ({n},), got {raw.dtype} {raw.shape}")
        noisy = raw.copy()
    noisy = readonly(noisy)
    mu_pos = check_array("mu_pos", mu_pos, shape=(d,))
    mu_neg = check_array("mu_neg", mu_neg, shape=(d,))
    if np.linalg.norm(mu_pos - mu_neg) == 0:
        raise ValueError("mu_pos and mu_neg must differ (the head is their normalised difference)")
    if (X_test is None) != (y_test is None):
        raise ValueError("X_test and y_test must be given together")
    if X_test is not None:
        X_test = check_array("X_test", X_test, ndim=3)
        if X_test.shape[1:] != (T, d) or X_test.shape[0] < 1:
            raise ValueError(f"X_test must have shape (n_test >= 1, {T}, {d}), got {X_test.shape}")
        y_test = check_labels("y_test", y_test, X_test.shape[0])
    if config is not None and not isinstance(config, Mapping):
        raise ArgumentTypeError(f"config must be a dict or None, got {type(config).__name__}")
    return dict(X=X, y=y, noisy=noisy, mu_pos=mu_pos, mu_neg=mu_neg, X_test=X_test, y_test=y_test,
                config=dict(config or {}))


def validate_config(n=20, T=8, d=2000, rho=0.1, signal_norm=20.0, sigma=1.0, eta=0.2, n_test=1000, seed=0):
    """Check every knob of :func:`make_dataset`; return them normalised as a dict.

    Raises
    ------
    ValueError
        A knob is out of its range (see :func:`make_dataset`).
    """
    return dict(
        n=check_int("n", n, 2),
        T=check_int("T", T, 3),
        d=check_int("d", d, 2),
        rho=check_number("rho", rho, 0.0),
        signal_norm=check_number("signal_norm", signal_norm, MIN_SIGNAL_NORM),
        sigma=check_number("sigma", sigma, 0.0, low_open=True),
        eta=check_number("eta", eta, 0.0, 0.5, high_open=True),
        n_test=check_int("n_test", n_test, 1),
        seed=check_int("seed", seed, 0),
    )


def _balanced_labels(rng, n):
    y = np.ones(n)
    y[n - n // 2:] = -1.0  # ceil(n/2) positives, floor(n/2) negatives
    return rng.permutation(y)


@dataclass(frozen=True, eq=False)
class NoiseDraw:
    """Everything random about a data set except the signal strengths (shared by sweep members)."""

    y_clean: np.ndarray       # (n,)
    flip_order: np.ndarray    # (n,) rank of each sample in its class's flip order
    eps: np.ndarray           # (n, T, d) sigma * N(0, I)
    y_test: np.ndarray        # (n_test,)
    eps_test: np.ndarray      # (n_test, T, d)


def draw_noise(n, T, d, sigma, n_test, seed):
    """Draw labels, flip order and token noise; independent of ``signal_norm``, ``rho`` and ``eta``.

    Knobs as in :func:`make_dataset`. Returns a :class:`NoiseDraw`; :func:`assemble` adds the
    signals. Raises ValueError for a knob out of range.
    """
    n, T, d = check_int("n", n, 2), check_int("T", T, 3), check_int("d", d, 2)
    sigma = check_number("sigma", sigma, 0.0, low_open=True)
    n_test, seed = check_int("n_test", n_test, 1), check_int("seed", seed, 0)
    ss = np.random.SeedSequence(seed).spawn(5)
    rng = np.random.default_rng(ss[_LABELS])
    y_clean = _balanced_labels(rng, n)
    flip_order = np.empty(n, dtype=np.int64)
    for cls in (1.0, -1.0):
        idx = np.flatnonzero(y_clean == cls)
        flip_order[idx] = rng.permutation(len(idx))
    eps = np.random.default_rng(ss[_TRAIN_NOISE]).standard_normal((n, T, d))
    eps *= sigma
    y_test = _balanced_labels(np.random.default_rng(ss[_TEST_LABELS]), n_test)
    eps_test = np.random.default_rng(ss[_TEST_NOISE]).standard_normal((n_test, T, d))
    eps_test *= sigma  # in place: halves peak memory for large d
    return NoiseDraw(y_clean, flip_order, eps, y_test, eps_test)


def noisy_mask(y_clean, flip_order, eta):
    r"""Exactly :math:`k = \lceil \eta n \rceil` flips: :math:`\lceil k/2 \rceil` positives and
    :math:`\lfloor k/2 \rfloor` negatives, nested in :math:`\eta`.

    ``eta`` is read by :func:`~benign_attention.validation.check_number`, so a float32 eta flips as many
    labels as the decimal it stands for (np.float32(0.3) flips 3 of 10, like 0.3). The rule of
    :prf:ref:`def-label-noise`.

    Raises ValueError for ``eta`` outside :math:`[0, 0.5)`, labels that are not :math:`\pm 1`, or a ``flip_order`` of
    another shape.
    """
    eta = check_number("eta", eta, 0.0, 0.5, high_open=True)
    if np.ndim(y_clean) != 1:
        raise ValueError(f"y_clean must be a 1-d array of +-1 labels, got shape {np.shape(y_clean)}")
    y_clean = check_labels("y_clean", y_clean, len(y_clean))
    flip_order = np.asarray(flip_order)
    if flip_order.shape != y_clean.shape:
        raise ValueError(f"flip_order must have the shape of y_clean {y_clean.shape}, got {flip_order.shape}")
    n = len(y_clean)
    k = math.ceil(eta * n - 1e-9)
    k_pos = min(math.ceil(k / 2), int(np.sum(y_clean > 0)))
    k_neg = min(k - k_pos, int(np.sum(y_clean < 0)))
    return ((y_clean > 0) & (flip_order < k_pos)) | ((y_clean < 0) & (flip_order < k_neg))


def signal_coefficients(labels, T, rho):
    r"""Signal part of each token as coefficients on :math:`(e_1, e_2)`, in units of
    :math:`\lVert\mu\rVert` (``signal_norm``).

    ``labels`` (N,) clean labels, ``T`` >= 3 tokens, ``rho`` >= 0; returns shape (N, T, 2)
    (:prf:ref:`def-data`). Raises ValueError for a knob out of range.
    """
    T, rho = check_int("T", T, 3), check_number("rho", rho, 0.0)
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be a 1-d array of +-1 labels, got shape {labels.shape}")
    coef = np.zeros((len(labels), T, 2))
    pos = labels > 0
    coef[pos, 0, 0] = 1.0
    coef[~pos, 0, 1] = 1.0
    coef[pos, 1, 0] = rho
    coef[~pos, 1, 1] = rho
    coef[pos, 2, 1] = rho
    coef[~pos, 2, 0] = rho
    return coef


def token_noise(ds):
    r"""Noise part :math:`\epsilon_t` of every training token, shape ``(n, T, d)``: :math:`x_t` minus its
    signal (needs ``rho`` in config).

    Used in :ref:`sec-setting-tokens`.
    """
    coef = signal_coefficients(ds.y_clean, ds.T, ds.config["rho"])
    return ds.X - (coef[..., :1] * ds.mu_pos + coef[..., 1:] * ds.mu_neg)


def assemble(draw: NoiseDraw, signal_norm, rho, eta, config):
    r"""Add the signals to a noise draw and flip labels: the data set :func:`make_dataset` returns.

    ``draw`` a :class:`NoiseDraw`; ``signal_norm`` >= ``MIN_SIGNAL_NORM``, ``rho`` >= 0 and ``eta`` in :math:`[0, 0.5)` as in
    :func:`make_dataset`; ``config`` the knobs to record. Raises ValueError otherwise.
    """
    if not isinstance(draw, NoiseDraw):
        raise ArgumentTypeError(f"draw must be a NoiseDraw (from draw_noise), got {type(draw).__name__}")
    signal_norm = check_number("signal_norm", signal_norm, MIN_SIGNAL_NORM)
    n, T, d = draw.eps.shape
    X = draw.eps.copy()
    X[:, :, :2] += signal_norm * signal_coefficients(draw.y_clean, T, rho)
    X_test = draw.eps_test.copy()
    X_test[:, :, :2] += signal_norm * signal_coefficients(draw.y_test, T, rho)
    noisy = noisy_mask(draw.y_clean, draw.flip_order, eta)
    y = np.where(noisy, -draw.y_clean, draw.y_clean)
    mu_pos = np.zeros(d)
    mu_pos[0] = signal_norm
    mu_neg = np.zeros(d)
    mu_neg[1] = signal_norm
    return Dataset._trusted(X=X, y=y, y_clean=draw.y_clean.copy(), noisy=noisy, X_test=X_test,
                            y_test=draw.y_test.copy(), mu_pos=mu_pos, mu_neg=mu_neg, config=dict(config))


def make_dataset(n=20, T=8, d=2000, rho=0.1, signal_norm=20.0, sigma=1.0, eta=0.2, n_test=1000, seed=0):
    r"""Draw the paper's data set (:prf:ref:`def-data`, :prf:ref:`def-label-noise`).

    The defaults are the paper's default setting. Same seed -> identical arrays.

    Parameters
    ----------
    n : int
        Training sequences, :math:`n \ge 2`.
    T : int
        Tokens per sequence, :math:`T \ge 3`.
    d : int
        Token dimension, :math:`d \ge 2`.
    rho : float
        Weak-signal factor of :math:`x_2` and :math:`x_3`, :math:`\rho \ge 0`.
    signal_norm : float
        :math:`\lVert\mu\rVert`, the norm of both class signals, >= ``MIN_SIGNAL_NORM`` (1e-6; the head
        has norm :math:`1/\lVert\mu\rVert`).
    sigma : float
        Standard deviation of the token noise, :math:`\sigma > 0`.
    eta : float
        Label-noise rate :math:`\eta \in [0, 0.5)`: exactly :math:`\lceil \eta n \rceil` training labels
        are flipped.
    n_test : int
        Clean test sequences, >= 1, drawn from a stream independent of the training draw.
    seed : int
        Random seed, >= 0.

    Returns
    -------
    Dataset

    Raises
    ------
    ValueError
        A knob is out of its range or of the wrong kind (the message names it).
    """
    cfg = validate_config(n, T, d, rho, signal_norm, sigma, eta, n_test, seed)
    draw = draw_noise(cfg["n"], cfg["T"], cfg["d"], cfg["sigma"], cfg["n_test"], cfg["seed"])
    return assemble(draw, cfg["signal_norm"], cfg["rho"], cfg["eta"], cfg)


INITS = ("uniform", "gaussian")


def init_W(d, seed, dtype=np.float64, init="uniform"):
    r"""The paper's initialisation of :math:`W`: entries :math:`U(-1/\sqrt d, 1/\sqrt d)` (kaiming-uniform,
    ``a=sqrt(5)``).

    See :prf:ref:`def-model`; drawn from its own stream of ``seed``, independent of the data.
    ``init="gaussian"`` draws :math:`\mathcal N(0, 1/(3d))` entries instead (the same variance), the initialisation
    under which the ``gram`` engine's sampler is exact (:ref:`sec-gram-init`).

    Parameters
    ----------
    d : int
        Token dimension, :math:`d \ge 2`.
    seed : int
        Random seed, >= 0.
    dtype : numpy.dtype, str or torch.dtype
        float32 or float64 (numpy, torch or their names).

    Returns
    -------
    numpy.ndarray
        :math:`W`, shape ``(d, d)``.

    Raises
    ------
    ValueError
        ``d`` or ``seed`` out of range, or another ``dtype``.
    """
    d = check_int("d", d, 2)
    dtype = np.float32 if str(check_dtype("dtype", dtype)) == "torch.float32" else np.float64
    ss = np.random.SeedSequence(check_int("seed", seed, 0)).spawn(5)[_INIT]
    bound = 1.0 / math.sqrt(d)
    if check_choice("init", init, INITS) == "gaussian":
        return np.random.default_rng(ss).normal(0.0, bound / math.sqrt(3.0), size=(d, d)).astype(dtype, copy=False)
    return np.random.default_rng(ss).uniform(-bound, bound, size=(d, d)).astype(dtype, copy=False)
