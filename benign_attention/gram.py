r"""Only Gram matrices matter: the ``gram`` engine, whose cost does not grow with :math:`d` (:ref:`sec-gram-overview`).

Gradient descent from :math:`p_0 = 0` lives in the span of the training tokens (:prf:ref:`prop-exact`). In an
orthonormal basis :math:`B` (shape ``(d, m)``) of that span (and of the two signal directions), a run depends
on :math:`W_0` only through

* :math:`G = A^\top A` with :math:`A = W_0^\top B` (shape ``(m, m)``), which drives the training steps, and
* :math:`\Omega = K^\top K - G^2` with :math:`K = W_0 A`: :math:`\lVert P_\perp q\rVert^2 = \alpha^\top \Omega\, \alpha`
  for the query :math:`q = Wp`, the only other thing the test scores need (:prf:ref:`prop-gram`).

The engine has one core, :func:`gram_gd` (the low-dimensional recursion of the exact engine, in numpy),
and two sources of its inputs:

* :func:`from_arrays` - your data set and your :math:`W_0` (:math:`d`-dimensional set-up, then the same core).
  Its test scores are the exact projections, so it reproduces the ``exact`` engine to round-off;
* :func:`sample_problems` - the sampler: for a Gaussian :math:`W_0` with i.i.d. :math:`\mathcal N(0, \kappa^2)`
  entries it draws the token coordinates (Gaussian on the signal directions, a Bartlett factor on the
  rest), :math:`G \sim \mathrm{Wishart}_m(d, \kappa^2 I)` and :math:`\Omega = L\Omega_0 L^\top` with
  :math:`G = LL^\top` and :math:`\Omega_0 \sim \mathrm{Wishart}_m(d - m, \kappa^2 I)` independent, all in
  :math:`O(m^3)` whatever :math:`d` is. Test scores and head values of fresh tokens are jointly Gaussian
  given the run, with a covariance built from the recorded states (:func:`test_metrics_law`).

When :math:`d \le nT + 2` the training tokens span all of :math:`\mathbb R^d`: then :math:`m = d`,
:math:`\Omega = 0` (Wishart with zero degrees of freedom) and the sampler is still exact; nothing falls
back to :math:`d`-dimensional work.

:func:`sample_runs` is the whole experiment without :math:`d`: it imports numpy only (no torch), so a script that
needs nothing else starts in a fraction of a second. :func:`~benign_attention.engines.train` and
:func:`~benign_attention.engines.train_many` take ``engine="gram"`` (the explicit-arrays source) and
:func:`~benign_attention.sweeps.run_grid` takes ``engine="gram"`` (the sampler).

:func:`export_scenario` writes one sampled run, with the Python core's results, as JSON for the core's JavaScript
port (``benign_attention/js/gram.js``, the same recursion and sampler in the reader's browser).

Internal API (used by :mod:`~benign_attention.engines` and :mod:`~benign_attention.sweeps`):
:func:`batch_metrics_np`, :class:`GramProblem`, :func:`gram_gd`, :func:`run_problems`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .data import LR, STEPS, noisy_mask, signal_coefficients, validate_config
from .validation import ArgumentTypeError, check_array, check_choice, check_int, check_int_array, check_number

__all__ = ["GramProblem", "gram_gd", "from_arrays", "sample_problems", "sample_runs", "SampledRuns",
           "test_metrics_law", "wishart", "token_coordinates", "batch_metrics_np", "export_scenario"]

#: Streams of SeedSequence([seed, d, tag]) the sampler draws from (fixed tags: common random numbers
#: across signal_norm, rho and eta, and across d for every Gaussian part whose shape does not depend on d).
_LABELS, _TOKENS, _GRAM, _OMEGA, _TEST_LABELS, _TEST = range(6)


# ----------------------------------------------------------------------------------------------
# Metrics in numpy (the same formulas as benign_attention.metrics.batch_metrics).


def _softmax(a):
    e = np.exp(a - a.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _by_type(s):
    return np.concatenate([s[..., :3], s[..., 3:].sum(-1, keepdims=True)], -1)


def batch_metrics_np(logits, z, y, y_clean=None, noisy=None, prefix="train", per_sample=True):
    """Numpy twin of :func:`benign_attention.metrics.batch_metrics` (same keys, same formulas): logits
    ``(..., N, T)``, head values ``z`` broadcastable to them, labels ``y`` ``(N,)``; ``y_clean``/``noisy`` for a training
    set. ``per_sample`` False drops the per-sample outputs, attention and logits."""
    s = _softmax(logits)
    f = (s * z).sum(-1)
    by = _by_type(s)
    finite = np.isfinite(f).all(-1)
    acc = lambda lab: np.where(finite, (np.sign(f) == lab).mean(-1), np.nan)
    out = {f"{prefix}_loss": np.logaddexp(0.0, -y * f).mean(-1), f"{prefix}_acc": acc(y)}
    if noisy is None:
        out[f"{prefix}_margin"] = (y * f).mean(-1)
        out[f"attn_{prefix}"] = by.mean(-2)
        return out
    out[f"{prefix}_clean_acc"] = acc(y_clean)
    for name, mask in (("attn_clean", ~noisy), ("attn_noisy", noisy)):
        out[name] = by[..., mask, :].mean(-2) if mask.any() else np.full(by.shape[:-2] + (4,), np.nan)
    if per_sample:
        out.update({f"{prefix}_outputs": f, f"{prefix}_attention": s, f"{prefix}_logits": logits})
    return out


# ----------------------------------------------------------------------------------------------
# The core.


@dataclass(eq=False)
class GramProblem:
    r"""What one run depends on, in basis coordinates (:math:`m` = span dimension).

    ``C`` ``(nT, m)`` training tokens, ``G`` ``(m, m)`` :math:`= A^\top A`, ``z`` ``(n, T)`` head values,
    ``y``/``y_clean``/``noisy`` ``(n,)`` labels. Test side, one of two forms:

    * projections (explicit arrays): ``test_PK`` :math:`= X_{\text{test}} K` and ``test_PB``
      :math:`= X_{\text{test}} B`, both ``(N, T, m)``, and head values ``test_z`` ``(N, T)`` - scores are exact;
    * law (sampler): ``Omega`` ``(m, m)`` :math:`= K^\top K - G^2`, head ``nu_B`` ``(m,)``, noise level
      ``sigma``, the test tokens' signal parts ``test_coef`` ``(N, T, 2)`` on the signal directions whose
      coordinates are ``dirs_B`` ``(2, m)``, and standard normals ``test_xi`` ``(N, T, E + 1)`` for the
      Gaussian noise parts.

    ``test_y`` ``(N,)`` test labels; ``config`` the knobs it stands for.
    """

    C: np.ndarray
    G: np.ndarray
    z: np.ndarray
    y: np.ndarray
    y_clean: np.ndarray
    noisy: np.ndarray
    test_y: np.ndarray | None = None
    test_PK: np.ndarray | None = None
    test_PB: np.ndarray | None = None
    test_z: np.ndarray | None = None
    Omega: np.ndarray | None = None
    nu_B: np.ndarray | None = None
    sigma: float = 1.0
    test_coef: np.ndarray | None = None
    dirs_B: np.ndarray | None = None
    test_xi: np.ndarray | None = None
    config: dict = field(default_factory=dict)
    #: The noise part of C, shared by a family (sampler only; ``signal_coef`` holds the signal
    #: coefficients (nT, 2) on dirs_B)
    noise_C: np.ndarray | None = None
    signal_coef: np.ndarray | None = None

    @property
    def m(self):
        """Dimension of the span (columns of C)."""
        return self.C.shape[1]


def _apply(M, x):
    """x_r^T M_r for M (m, k) shared by all runs or (R, m, k) one per run; x (R, m) -> (R, k)."""
    return x @ M if M.ndim == 2 else (x[:, None, :] @ M)[:, 0]


def blas_threads(threads=1):
    """A context that limits the BLAS thread pool to ``threads`` (threadpoolctl, when installed): small
    matrix products are fastest on one thread, and on a busy machine spinning BLAS threads slow them
    down many times over."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn/scipy stacks
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(threads, user_api="blas")


def gram_gd(C, G, z, y, steps, lr, record_steps, dtype=np.float64, signal=None, block=16):
    r"""Full-batch GD for a batch of :math:`R` problems in basis coordinates (:prf:ref:`prop-exact`).

    ``C`` ``(nT, m)`` tokens shared by all runs or ``(R, nT, m)`` one per run; ``signal`` None or a pair
    (``coef`` ``(R, nT, 2)``, ``dirs`` ``(2, m)``) adding ``coef[r] @ dirs`` to run :math:`r`'s tokens (the
    sweeps' families share noise and differ in signal strength). ``G`` ``(m, m)`` shared or ``(R, m, m)``;
    ``z`` ``(R, n, T)`` head values, ``y`` ``(R, n)`` labels. From :math:`\alpha_0 = 0` and :math:`Z_0 = I`,
    one step is

    .. math::

       v_\tau &= Z_\tau^\top G\alpha_\tau \quad (\text{scores } Cv_\tau), \qquad
       r_\tau = C^\top \delta(\tau), \\
       \alpha_{\tau+1} &= \alpha_\tau - \text{lr}\, Z_\tau r_\tau, \qquad
       Z_{\tau+1} = Z_\tau - \text{lr}\, \alpha_\tau r_\tau^\top,

    with :math:`\delta(\tau)` the score gradients :math:`\partial L/\partial a_{it}`.

    The rank-one updates of :math:`Z` are kept aside and folded into :math:`Z` every ``block`` steps (one
    batched matrix product), which makes a step two matrix-vector products per run instead of a pass
    over :math:`Z`. Returns recorded training logits ``(R, E, n, T)``, :math:`\alpha` and :math:`v`
    ``(R, E, m)`` at ``record_steps`` and the final :math:`\alpha`.
    """
    C, G = np.asarray(C, dtype), np.asarray(G, dtype)
    z, y = np.asarray(z, dtype), np.asarray(y, dtype)
    R, n, T = z.shape
    m = C.shape[-1]
    nT = n * T
    shared = C.ndim == 2
    Ct = C.T.copy() if shared else np.ascontiguousarray(C.transpose(0, 2, 1))
    if signal is not None:
        coef, dirs = np.asarray(signal[0], dtype).reshape(R, nT, 2), np.asarray(signal[1], dtype)
        coefT = np.ascontiguousarray(coef.transpose(0, 2, 1))
    rec = set(int(s) for s in record_steps)
    alpha = np.zeros((R, m), dtype)
    Z0 = np.repeat(np.eye(m, dtype=dtype)[None], R, 0)
    Al = np.zeros((R, m, block), dtype)  # pending rank-one terms: Z = Z0 - lr Al[:, :, :j] Cl[:, :, :j]^T
    Cl = np.zeros((R, m, block), dtype)
    j = 0
    logits_h, alpha_h, v_h = [], [], []
    for step in range(steps + 1):
        Ga = _apply(G, alpha)                                   # G symmetric
        v = _apply(Z0, Ga)
        if j:
            v -= lr * (((Ga[:, None, :] @ Al[:, :, :j]) @ Cl[:, :, :j].transpose(0, 2, 1))[:, 0])
        a = _apply(Ct, v)
        if signal is not None:
            a += ((v @ dirs.T)[:, None, :] @ coefT)[:, 0]
        a = a.reshape(R, n, T)
        if step in rec:
            logits_h.append(a)
            alpha_h.append(alpha)
            v_h.append(v)
        if step == steps:
            break
        s = _softmax(a)
        f = (s * z).sum(-1)
        dloss = -y / (1.0 + np.exp(y * f)) / n                  # d(mean loss)/d f_i
        g = (dloss[..., None] * s * (z - f[..., None])).reshape(R, nT)
        c = _apply(C, g)
        if signal is not None:
            c += ((g[:, None, :] @ coef)[:, 0]) @ dirs
        Zc = (Z0 @ c[:, :, None])[:, :, 0]
        if j:
            Zc -= lr * ((Al[:, :, :j] @ (Cl[:, :, :j].transpose(0, 2, 1) @ c[:, :, None]))[:, :, 0])
        Al[:, :, j], Cl[:, :, j] = alpha, c
        j += 1
        if j == block:
            Z0 -= lr * (Al @ Cl.transpose(0, 2, 1))
            j = 0
        alpha = alpha - lr * Zc
    st = lambda xs: np.stack(xs, 1)
    return st(logits_h), st(alpha_h), st(v_h), alpha


def test_logits_exact(prob: GramProblem, alpha_h, v_h):
    r"""Test scores ``(E, N, T)`` from exact projections: :math:`x^\top q = (XK)\alpha - (XB)w` with
    :math:`w = G\alpha - v`."""
    w = alpha_h @ prob.G - v_h
    return np.einsum("ntm,em->ent", prob.test_PK, alpha_h) - np.einsum("ntm,em->ent", prob.test_PB, w)


def test_metrics_law(prob: GramProblem, alpha_h, v_h, joint=None):
    r"""Test metrics of one run drawn from their law given the run (:prf:ref:`prop-gram`).

    A fresh test token is :math:`x` = signal part :math:`+\, \sigma\epsilon` with
    :math:`\epsilon \sim \mathcal N(0, I_d)` independent of the run, so its scores :math:`x^\top q_\tau`
    (:math:`\tau` over the :math:`E` recorded steps) and head value :math:`\nu^\top x` are Gaussian around
    the signal parts, with covariance :math:`\sigma^2` times the Gram matrix of
    :math:`(\nu, q_1, \dots, q_E)`:

    .. math::

       q^\top q' = v^\top v' + \alpha^\top \Omega\, \alpha', \qquad q^\top \nu = v^\top \nu_B

    (:math:`\nu` lies in the span; :math:`v, \alpha` and :math:`v', \alpha'` are the engine's states at
    the two steps).

    ``joint`` True draws all :math:`E` steps jointly (cost :math:`O(NTE^2)`); False draws each step with
    its own normals, exact for every step's metrics but not for their correlation across steps (cost
    :math:`O(NTE)`); None: joint when :math:`E \le 16`. Returns the test-metric dict (arrays with leading axis :math:`E`).
    """
    E = alpha_h.shape[0]
    joint = E <= 16 if joint is None else bool(joint)
    xi = prob.test_xi
    if xi.shape[-1] < E + 1:
        raise ValueError(f"test_xi holds normals for {xi.shape[-1] - 1} recorded steps, need {E}")
    nu, sig = prob.nu_B, prob.sigma
    nn = float(nu @ nu)
    qn = v_h @ nu                                                   # (E,)
    sig_scores = np.einsum("ntk,ke->ent", prob.test_coef, prob.dirs_B @ v_h.T)
    head = prob.test_coef @ (prob.dirs_B @ nu) + sig * math.sqrt(nn) * xi[..., 0]
    beta = qn / math.sqrt(nn)                                       # loading on the head's normal
    if joint:
        QQ = v_h @ v_h.T + alpha_h @ prob.Omega @ alpha_h.T
        resid = QQ - np.outer(beta, beta)                           # conditional covariance given the head
        lam, U = np.linalg.eigh((resid + resid.T) / 2)
        F = U * np.sqrt(np.clip(lam, 0.0, None))                   # F F^T = resid
        noise = beta[:, None, None] * xi[None, ..., 0] + np.einsum("ntk,ek->ent", xi[..., 1:E + 1], F)
    else:
        qq = (v_h * v_h).sum(1) + np.einsum("em,mk,ek->e", alpha_h, prob.Omega, alpha_h)
        r = np.sqrt(np.clip(qq - beta**2, 0.0, None))
        noise = beta[:, None, None] * xi[None, ..., 0] + r[:, None, None] * np.moveaxis(xi[..., 1:E + 1], -1, 0)
    return batch_metrics_np(sig_scores + sig * noise, head, prob.test_y, prefix="test")


def run_problems(probs, steps, lr, record_steps, dtype=np.float64, per_sample=True, joint=None,
                 test_steps=None):
    r"""Run a list of :class:`GramProblem` (equal :math:`n`, :math:`T` and :math:`m`) as one batch;
    per-problem history dicts (numpy, leading axis :math:`E`) and the final alphas. ``test_steps`` (a subset of ``record_steps``; default
    all of them) are the steps whose test metrics are computed."""
    p0 = probs[0]
    signal = None
    if p0.noise_C is not None and all(p.noise_C is p0.noise_C and p.dirs_B is p0.dirs_B for p in probs):
        C, signal = p0.noise_C, (np.stack([p.signal_coef for p in probs]), p0.dirs_B)  # one family
    else:
        C = np.stack([p.C for p in probs])
    G = p0.G if all(p.G is p0.G for p in probs) else np.stack([p.G for p in probs])
    z = np.stack([p.z for p in probs])
    y = np.stack([p.y for p in probs])
    with blas_threads(1):
        logits, alpha_h, v_h, alpha = gram_gd(C, G, z, y, steps, lr, record_steps, dtype, signal)
    rec = np.asarray(record_steps)
    tsel = slice(None) if test_steps is None else np.isin(rec, test_steps)
    out = []
    for r, p in enumerate(probs):
        h = batch_metrics_np(logits[r].astype(np.float64), p.z, p.y, p.y_clean, p.noisy, per_sample=per_sample)
        if p.test_y is not None:
            ah, vh = alpha_h[r][tsel].astype(np.float64), v_h[r][tsel].astype(np.float64)
            if p.test_PK is not None:
                t = batch_metrics_np(test_logits_exact(p, ah, vh), p.test_z, p.test_y, prefix="test")
            else:
                t = test_metrics_law(p, ah, vh, joint)
            h.update(t)
        out.append(h)
    return out, alpha


# ----------------------------------------------------------------------------------------------
# Source 1: explicit arrays.


def from_arrays(X, y, y_clean, noisy, nu, W0, X_test=None, y_test=None):
    r"""The core's inputs from explicit arrays: tokens ``X`` ``(n, T, d)``, labels, head ``nu`` ``(d,)``,
    any ``W0`` ``(d, d)``, and optionally a test set. The basis is a QR of the training tokens; test scores
    use the exact projections :math:`X_{\text{test}} K` and :math:`X_{\text{test}} B`, so the core
    reproduces the ``exact`` engine (:prf:ref:`prop-gram`, first part). Cost :math:`O(d^2 m)`: this source
    is :math:`d`-dimensional."""
    X = check_array("X", X, ndim=3)
    n, T, d = X.shape
    W0 = check_array("W0", W0, shape=(d, d))
    nu = check_array("nu", nu, shape=(d,))
    flat = X.reshape(n * T, d)
    B = np.linalg.qr(flat.T)[0]
    A = W0.T @ B
    G = A.T @ A
    prob = GramProblem(C=flat @ B, G=G, z=X @ nu, y=np.asarray(y, float), y_clean=np.asarray(y_clean, float),
                       noisy=np.asarray(noisy, bool))
    if X_test is not None:
        Xt = check_array("X_test", X_test, shape=(None, T, d))
        prob.test_PK = Xt @ (W0 @ A)
        prob.test_PB = Xt @ B
        prob.test_z = Xt @ nu
        prob.test_y = np.asarray(y_test, float)
    return prob


# ----------------------------------------------------------------------------------------------
# Source 2: the sampler.


def wishart(rng, m, dof, scale=1.0):
    r"""A :math:`\mathrm{Wishart}_m(\mathrm{dof}, \mathrm{scale}^2 I)` draw as ``(W, L)`` with
    :math:`W = LL^\top`, in :math:`O(m^3)` whatever ``dof`` is.

    ``dof >= m``: Bartlett's factor (:math:`L` lower triangular, :math:`L_{ii}` = ``scale`` times a
    :math:`\chi` variable with :math:`\mathrm{dof} - i` degrees of freedom,
    :math:`\mathcal N(0, \mathrm{scale}^2)` below); ``0 < dof < m``: :math:`H^\top H` with :math:`H`
    ``(dof, m)`` Gaussian (singular); ``dof = 0``: zeros."""
    if dof >= m:
        L = np.tril(rng.standard_normal((m, m)), -1)
        L[np.diag_indices(m)] = np.sqrt(rng.chisquare(dof - np.arange(m)))
    elif dof > 0:
        H = rng.standard_normal((dof, m))
        L = H.T  # W = H^T H = L L^T (L is not triangular here)
    else:
        L = np.zeros((m, 1))
    L = scale * L
    return L @ L.T, L


def token_coordinates(rng, N, d, sigma):
    r"""Coordinates of :math:`N` i.i.d. :math:`\mathcal N(0, \sigma^2 I_d)` vectors in an orthonormal
    basis that starts with :math:`e_1`, :math:`e_2` and continues with their Gram-Schmidt directions:
    shape ``(N, 2 + min(N, d - 2))``. The first two columns are Gaussian; the rest is a lower-trapezoidal
    Bartlett factor (:math:`\chi` variables with :math:`d - 2 - i` degrees of freedom on the diagonal,
    Gaussian below)."""
    r = min(N, d - 2)
    out = np.zeros((N, 2 + r))
    out[:, :2] = rng.standard_normal((N, 2))
    low = rng.standard_normal((N, r))
    rows, cols = np.indices((N, r))
    low[cols > rows] = 0.0
    diag = np.arange(r)
    low[diag, diag] = np.sqrt(rng.chisquare(d - 2 - diag))
    out[:, 2:] = low
    return sigma * out


def _balanced(rng, n):
    y = np.ones(n)
    y[n - n // 2:] = -1.0
    return rng.permutation(y)


def _streams(seed, d):
    return [np.random.default_rng(s) for s in np.random.SeedSequence([seed, d]).spawn(6)]


def sample_problems(cfgs, init_var=None, test_record=1, init_seeds=None):
    r"""Sampler source: one :class:`GramProblem` per config, with a Gaussian :math:`W_0` of entry variance
    :math:`\kappa^2` = ``init_var`` (default :math:`1/(3d)`, the variance of the paper's
    :math:`U(-1/\sqrt d, 1/\sqrt d)`).

    Configs (dicts of :func:`~benign_attention.data.validate_config` knobs) that share ``(n, T, d, sigma,
    n_test, seed)`` share every random draw - common random numbers across ``signal_norm``, ``rho`` and
    ``eta``, as in the sweeps' families. ``test_record``: how many recorded steps the test normals must
    serve. ``init_seeds`` (one int per config, optional) draws :math:`W_0`'s part (:math:`G` and
    :math:`\Omega`) from its own seed, so runs can share their tokens and differ only in :math:`W_0`.
    Cost :math:`O((nT)^2 + m^3 + NTE)` per family: no :math:`d`-dimensional array is ever formed.
    """
    test_record = check_int("test_record", test_record, 1)
    cfgs = [validate_config(**c) for c in cfgs]
    if init_seeds is not None and len(init_seeds) != len(cfgs):
        raise ValueError(f"init_seeds must hold one seed per config ({len(cfgs)}), got {len(init_seeds)}")
    out, shared, G_var = [], {}, {}
    for i, c in enumerate(cfgs):
        n, T, d, sigma, N, seed = (c[k] for k in ("n", "T", "d", "sigma", "n_test", "seed"))
        init_seed = None if init_seeds is None else check_int(f"init_seeds[{i}]", init_seeds[i], 0)
        key = (n, T, d, sigma, N, seed, init_seed)
        if key not in shared:
            r = _streams(seed, d)
            if init_seed is not None:
                w = [np.random.default_rng(s) for s in np.random.SeedSequence([init_seed, d, 1]).spawn(6)]
                r[_GRAM], r[_OMEGA] = w[_GRAM], w[_OMEGA]
            y_clean = _balanced(r[_LABELS], n)
            order = np.empty(n, dtype=np.int64)
            for cls in (1.0, -1.0):
                idx = np.flatnonzero(y_clean == cls)
                order[idx] = r[_LABELS].permutation(len(idx))
            eps = token_coordinates(r[_TOKENS], n * T, d, sigma)
            m = eps.shape[1]
            s = math.sqrt(1.0 / (3 * d) if init_var is None else check_number("init_var", init_var, 0.0,
                                                                            low_open=True))
            G, L = wishart(r[_GRAM], m, d, s)
            Om0, _ = wishart(r[_OMEGA], m, d - m, s)
            Omega = L @ Om0 @ L.T
            G_var[key] = s * s
            y_test = _balanced(r[_TEST_LABELS], N)
            xi = r[_TEST].standard_normal((N, T, test_record + 1))
            dirs = np.zeros((2, eps.shape[1]))
            dirs[0, 0] = dirs[1, 1] = 1.0
            shared[key] = (y_clean, order, eps, G, Omega, y_test, xi, dirs)
        y_clean, order, eps, G, Omega, y_test, xi, dirs = shared[key]
        m = eps.shape[1]
        mu = c["signal_norm"]
        sig = mu * signal_coefficients(y_clean, T, c["rho"]).reshape(n * T, 2)
        C = eps + sig @ dirs
        nu_B = np.zeros(m)
        nu_B[0], nu_B[1] = 1.0 / (math.sqrt(2.0) * mu), -1.0 / (math.sqrt(2.0) * mu)
        mask = noisy_mask(y_clean, order, c["eta"])
        out.append(GramProblem(
            C=C, G=G, z=(C @ nu_B).reshape(n, T), y=np.where(mask, -y_clean, y_clean), y_clean=y_clean,
            noisy=mask, test_y=y_test, Omega=Omega, nu_B=nu_B, sigma=sigma,
            test_coef=mu * signal_coefficients(y_test, T, c["rho"]), dirs_B=dirs, test_xi=xi,
            config=dict(c, m=m, init="gaussian", init_var=G_var[key]), noise_C=eps, signal_coef=sig))
    return out


def _jsonable(a):
    """Nested lists of a numpy array (floats, with NaN as None: JSON has no NaN)."""
    a = np.asarray(a)
    if a.dtype == bool:
        return a.tolist()
    a = a.astype(np.float64)
    return np.where(np.isnan(a), None, a).tolist() if np.isnan(a).any() else a.tolist()


def export_scenario(prob, steps=STEPS, lr=LR, record_steps=None, joint=False):
    r"""One sampled run as a JSON-able dict: everything the JavaScript core (``benign_attention/js/gram.js``)
    needs, and the Python core's results for it, so the two can be compared number for number.

    Parameters
    ----------
    prob : GramProblem
        A problem with the test side in law form (from :func:`sample_problems`, whose ``test_record`` must be
        at least the number of record steps).
    steps : int
        Gradient-descent steps.
    lr : float
        Learning rate, > 0.
    record_steps : sequence of int, optional
        The steps recorded (default: every 10th step and the last, as :func:`record_steps_of`).
    joint : bool
        How the expected test metrics are drawn (:func:`test_metrics_law`). The JavaScript core implements
        ``joint=False`` only (each recorded step has its own normals): with True the expected test metrics
        follow the same law but are other numbers.

    Returns
    -------
    dict
        ``n``, ``T``, ``m``, ``n_test`` and the arrays as nested lists of floats: ``C`` ``(nT, m)``, ``G``,
        ``Omega`` ``(m, m)``, ``z`` ``(n, T)``, ``y``, ``y_clean`` ``(n,)``, ``noisy`` ``(n,)`` (bool),
        ``nu_B`` ``(m,)``, ``sigma``, ``test_coef`` ``(N, T, 2)``, ``dirs_B`` ``(2, m)``, ``test_xi``
        ``(N, T, E + 1)``, ``test_y`` ``(N,)``; the run's ``steps``, ``lr``, ``record_steps`` and ``joint``;
        ``config`` (the knobs); ``expected``: :func:`run_problems`'s metrics (``per_sample=False``), lists
        with leading axis :math:`E` and None for NaN (attention on noisy sequences when none is noisy).

    Raises
    ------
    ValueError
        ``prob`` has explicit test projections (the JavaScript core draws test scores from their law only),
        too few test normals, or a bad ``steps``/``lr``/``record_steps``.

    Examples
    --------
    >>> import json
    >>> from benign_attention import gram
    >>> prob, = gram.sample_problems([dict(n=4, T=3, d=40, n_test=5, seed=1)], test_record=3)
    >>> sc = gram.export_scenario(prob, steps=20, record_steps=[0, 10, 20])
    >>> sc["m"], len(sc["expected"]["test_loss"])
    (14, 3)
    >>> text = json.dumps(sc)  # strict JSON: no NaN
    """
    if not isinstance(prob, GramProblem):
        raise ArgumentTypeError(f"prob must be a GramProblem, got {type(prob).__name__}")
    if prob.Omega is None or prob.test_xi is None:
        raise ValueError("prob must have its test side in law form (a sampler problem from sample_problems)")
    rec = record_steps_of(steps, record_steps=record_steps)
    lr = check_number("lr", lr, 0.0, low_open=True)
    E = len(rec)
    if prob.test_xi.shape[-1] < E + 1:
        raise ValueError(f"prob's test_xi serves {prob.test_xi.shape[-1] - 1} recorded steps, need {E}: "
                         f"sample it with test_record >= {E}")
    (hist,), _ = run_problems([prob], int(steps), lr, rec, per_sample=False, joint=bool(joint))
    n, T = prob.z.shape
    cfg = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in prob.config.items()}
    out = dict(n=int(n), T=int(T), m=int(prob.m), n_test=int(prob.test_y.shape[0]), sigma=float(prob.sigma),
               steps=int(steps), lr=float(lr), record_steps=[int(s) for s in rec], joint=bool(joint), config=cfg)
    for k in ("C", "G", "Omega", "z", "y", "y_clean", "noisy", "nu_B", "test_coef", "dirs_B", "test_y"):
        out[k] = _jsonable(getattr(prob, k))
    out["test_xi"] = _jsonable(prob.test_xi[..., :E + 1])
    out["expected"] = {k: _jsonable(v) for k, v in hist.items()}
    return out


@dataclass(eq=False)
class SampledRuns:
    """Runs from :func:`sample_runs`: ``steps`` ``(E,)`` and ``history[key]`` arrays ``(R, E, ...)``, one row per
    config; ``configs`` the knobs of each row. Read with ``final(key)`` / ``at(key, step)`` like
    :class:`~benign_attention.engines.Run` (with the run axis first)."""

    steps: np.ndarray
    history: dict
    configs: list
    #: The steps the test metrics (``test_*``) were computed at (by default ``steps``)
    test_steps: np.ndarray | None = None

    def _key(self, key):
        if not isinstance(key, str) or key not in self.history:
            raise ValueError(f"key must be one of the recorded metrics {sorted(self.history)}, got {key!r}")
        return self.history[key]

    def final(self, key):
        """Value at the last recorded step, one row per run."""
        return self._key(key)[:, -1]

    def at(self, key, step):
        """Value at the recorded step closest to ``step``, one row per run."""
        step = check_number("step", step)
        where = self.test_steps if key.startswith("test") and self.test_steps is not None else self.steps
        return self._key(key)[:, int(np.argmin(np.abs(where - step)))]


def record_steps_of(steps, record_every=None, record_steps=None):
    """Validated record steps (as :func:`~benign_attention.engines.record_schedule`; torch-free)."""
    steps = check_int("steps", steps, 0)
    if record_steps is not None and record_every is not None:
        raise ValueError("record_every cannot be combined with record_steps (give one of them)")
    if record_steps is None:
        k = check_int("record_every", 10 if record_every is None else record_every, 1)
        return np.unique(np.r_[np.arange(0, steps + 1, k), steps]).astype(np.int64)
    return np.unique(check_int_array("record_steps", record_steps, 0, steps))


def sample_runs(configs=None, seeds=None, steps=STEPS, lr=LR, record_every=None, record_steps=None,
                init_var=None, dtype="float64", joint=None, test_steps=None, init_seeds=None,
                **knobs) -> SampledRuns:
    r"""The whole experiment without :math:`d`: sample and train one run per config (or per seed of
    ``seeds`` with the same ``knobs``), batched by span dimension. Knobs as in
    :func:`~benign_attention.data.make_dataset`; ``init_var`` the entry variance of the Gaussian
    :math:`W_0` (default :math:`1/(3d)`); ``dtype`` "float64" or "float32" for the GD loop; ``joint``/``test_steps`` as in
    :func:`test_metrics_law`/:func:`run_problems`. Returns :class:`SampledRuns` (per-sample arrays dropped)."""
    if configs is None:
        if seeds is None:
            seeds = [knobs.pop("seed", 0)]
        configs = [dict(knobs, seed=int(s)) for s in seeds]
    elif seeds is not None or knobs:
        raise ValueError("give configs, or seeds and knobs, not both")
    if init_seeds is not None:
        init_seeds = list(init_seeds)
    if isinstance(configs, dict) or not hasattr(configs, "__iter__"):
        raise ArgumentTypeError(f"configs must be a list of dicts of knobs, got {type(configs).__name__}")
    configs = list(configs)
    rec = record_steps_of(steps, record_every, record_steps)
    lr = check_number("lr", lr, 0.0, low_open=True)
    dt = {"float64": np.float64, "float32": np.float32}[check_choice("dtype", str(np.dtype(dtype)),
                                                                     ("float64", "float32"))]
    tst = rec if test_steps is None else np.intersect1d(rec, check_int_array("test_steps", test_steps, 0, steps))
    probs = sample_problems(configs, init_var, test_record=len(tst), init_seeds=init_seeds)
    groups = {}
    for i, p in enumerate(probs):
        groups.setdefault((p.C.shape, p.z.shape), []).append(i)
    hist = [None] * len(probs)
    for idx in groups.values():
        hs, _ = run_problems([probs[i] for i in idx], int(steps), lr, rec, dt, per_sample=False, joint=joint,
                             test_steps=tst)
        for i, h in zip(idx, hs):
            hist[i] = h
    keys = [k for k in hist[0] if not k.startswith("test")]
    history = {k: np.stack([h[k] for h in hist]) for k in keys}
    history.update({k: np.stack([h[k] for h in hist]) for k in hist[0] if k.startswith("test")})
    return SampledRuns(rec, history, [p.config for p in probs], np.asarray(tst))
