"""Closed forms the book proves and checks (chapters *A benign solution exists*, *Training dynamics*,
*Delayed generalisation*, *The phase diagram*)."""
from __future__ import annotations

import numpy as np
import torch

from .data import Dataset, check_number
from .metrics import summarize

__all__ = ["snr", "g", "g_inverse", "logit_gaps", "existence_query", "evaluate_query",
           "analytic_gradients", "classify_regime", "fit_exponential_time", "REGIMES", "snr_upper_order", "snr_lower_order",
           "fitting_step"]

REGIMES = ("not overfitting", "benign", "harmful")


def snr(signal_norm, d, sigma=1.0):
    """Signal-to-noise ratio ||mu|| / (sigma sqrt(d))."""
    return np.asarray(signal_norm, float) / (sigma * np.sqrt(np.asarray(d, float)))


def snr_upper_order(n):
    """The order n^{-1/2} above which noisy samples are not fitted (an order, not a constant)."""
    return np.asarray(n, float) ** -0.5


def snr_lower_order(d):
    """The order d^{-1/4} below which overfitting turns harmful (an order, not a constant)."""
    return np.asarray(d, float) ** -0.25


def g(x, T):
    """g(x) = 2x + 2 sinh(x - log T); g'(x) = 1 / (s(1-s)) with s = e^x / (e^x + T)."""
    x = np.asarray(x, float)
    return 2 * x + 2 * np.sinh(x - np.log(T))


def g_inverse(y, T, iters=100):
    """Solve g(x) = y for x (g is strictly increasing), elementwise, by safeguarded Newton steps."""
    y = np.asarray(y, float)
    x = np.where(y > 0, np.log(T) + np.arcsinh(np.maximum(y, 0) / 2), y / 2 + 0.0)
    for _ in range(iters):
        step = (g(x, T) - y) / (2 + 2 * np.cosh(x - np.log(T)))
        x = x - step
        if np.all(np.abs(step) < 1e-13 * (1 + np.abs(x))):
            break
    return x


def logit_gaps(logits, noisy, selected=2):
    """Per-sample score gaps between the token a sample should select and its best competitor.

    Clean samples: a_{x_1} - max_{t != 1} a_t (the paper's Lambda); noisy samples: a_u - max_{t != u} a_t
    with u = x_{selected+1} (default x_3, the paper's Gamma). ``logits`` (..., n, T), ``noisy`` (n,).
    """
    a = np.asarray(logits, float)
    target = np.where(np.asarray(noisy, bool), selected, 0)
    chosen = np.take_along_axis(a, np.broadcast_to(target[:, None], a.shape[:-1] + (1,)), -1)[..., 0]
    others = a.copy()
    np.put_along_axis(others, np.broadcast_to(target[:, None], a.shape[:-1] + (1,)), -np.inf, -1)
    return chosen - others.max(-1)


def existence_query(ds: Dataset, c, rho=None):
    """The existence construction with W = I: returns q = W p = p = mu_+ + mu_- + c (sum over clean
    samples of eps_1 + sum over noisy samples of eps_3), eps_t the noise of token t."""
    c = check_number("c", c, 0.0)
    rho = ds.config.get("rho") if rho is None else rho
    if rho is None:
        raise ValueError("rho must be given for a data set built from arrays")
    sign = ds.y_clean[:, None] > 0
    mu_true = np.where(sign, ds.mu_pos, ds.mu_neg)
    mu_other = np.where(sign, ds.mu_neg, ds.mu_pos)
    eps1 = ds.X[:, 0] - mu_true
    eps3 = ds.X[:, 2] - rho * mu_other
    return ds.mu_pos + ds.mu_neg + c * (eps1[~ds.noisy].sum(0) + eps3[ds.noisy].sum(0))


def evaluate_query(ds: Dataset, q):
    """Metrics of the model with fixed query q = W p on the training and test sets (numpy dict)."""
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64)
    q, nu = t(q), t(ds.nu)
    X = t(ds.X)
    out = summarize(X @ q, X @ nu, t(ds.y), t(ds.y_clean), torch.as_tensor(ds.noisy))
    if ds.X_test is not None:
        Xt = t(ds.X_test)
        out.update(summarize(Xt @ q, Xt @ nu, t(ds.y_test), prefix="test"))
    return {k: v.numpy() for k, v in out.items()}


def analytic_gradients(ds: Dataset, W, p):
    """Gradients of the mean logistic loss from the closed form: dL/da_it = (1/n) l'_i s_it (z_it - f_i),
    u = sum_it dL/da_it x_it, grad_W = u p^T (rank one), grad_p = W^T u."""
    X, y, nu = (np.asarray(a, float) for a in (ds.X, ds.y, ds.nu))
    W, p = np.asarray(W, float), np.asarray(p, float)
    a = X @ (W @ p)
    s = np.exp(a - a.max(-1, keepdims=True))
    s /= s.sum(-1, keepdims=True)
    z = X @ nu
    f = (s * z).sum(-1)
    lprime = -y / (1 + np.exp(y * f))
    dA = lprime[:, None] * s * (z - f[:, None]) / len(y)
    u = np.einsum("it,itd->d", dA, X)
    return np.outer(u, p), W.T @ u


def classify_regime(train_acc, test_acc, test_threshold=0.95):
    """Name the regime of a run: "not overfitting" if some training label is not fitted (observed
    train accuracy < 1), else "harmful" if clean test accuracy < ``test_threshold``, else "benign".
    Works elementwise on arrays; returns indices into :data:`REGIMES` for arrays, a name for scalars."""
    test_threshold = check_number("test_threshold", test_threshold, 0.0, 1.0)
    tr, te = np.asarray(train_acc, float), np.asarray(test_acc, float)
    idx = np.where(tr < 1 - 1e-9, 0, np.where(te < test_threshold, 2, 1))
    return REGIMES[int(idx)] if idx.ndim == 0 else idx


def fit_exponential_time(gaps, times):
    """Least-squares slope of log(time) against gap: time ~ exp(slope * gap)."""
    gaps, times = np.asarray(gaps, float), np.asarray(times, float)
    ok = np.isfinite(gaps) & (times > 0)
    return np.polyfit(gaps[ok], np.log(times[ok]), 1)[0]



def fitting_step(steps, train_acc):
    """First recorded step from which every observed training label stays fitted (train accuracy 1
    at that record and all later ones); ``inf`` where the last record still has an unfitted label.

    ``steps`` (E,) record steps, ``train_acc`` (..., E). Used in *The phase diagram* to tell "not
    overfitting" apart from "not yet fitted"."""
    steps, acc = np.asarray(steps, float), np.asarray(train_acc, float)
    if acc.shape[-1] != steps.shape[0]:
        raise ValueError(f"train_acc must end with the {steps.shape[0]} record steps, got shape {acc.shape}")
    fitted = acc >= 1 - 1e-9
    stays = np.flip(np.cumprod(np.flip(fitted, -1), -1), -1).astype(bool)  # fitted from here on
    return np.where(stays[..., -1], steps[np.argmax(stays, -1)], np.inf)
