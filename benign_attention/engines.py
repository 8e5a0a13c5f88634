r"""Full-batch gradient descent on the mean logistic loss, with two engines (:ref:`sec-exact-dynamics`).

* ``dense`` - autograd on :math:`W` (shape ``(d, d)``) and :math:`p` (shape ``(d,)``): the reference, a
  direct implementation of the paper's model.
* ``exact`` - the same trajectory computed in the span of the training tokens, of dimension
  :math:`m \le nT + 2`. With :math:`B` an orthonormal basis of that span,
  :math:`A = W_0^\top B`, :math:`G = A^\top A` and :math:`C` the tokens in :math:`B` coordinates,
  :math:`p_\tau = A\alpha_\tau` and :math:`W_\tau^\top B = AZ_\tau`, and one GD step is

  .. math::

     v_\tau &= Z_\tau^\top G\alpha_\tau \quad (\text{token scores } Cv_\tau), \qquad
     r_\tau = C^\top \delta(\tau), \\
     \alpha_{\tau+1} &= \alpha_\tau - \text{lr}\, Z_\tau r_\tau, \qquad
     Z_{\tau+1} = Z_\tau - \text{lr}\, \alpha_\tau r_\tau^\top,

  with :math:`\delta(\tau)` the score gradients :math:`\partial L/\partial a_{it}`:
  :math:`O(m^2 + nTm)` per step whatever :math:`d` is. The full query of step :math:`\tau` is
  :math:`q_\tau = K\alpha_\tau - Bw_\tau` with :math:`K = W_0 A` and :math:`w_\tau = G\alpha_\tau - v_\tau`
  (since :math:`Z_\tau = I - \text{lr}\, S^\top` with :math:`S = \sum_{k<\tau} r_k \alpha_k^\top`), which
  scores test tokens.

Both engines share one interface, :func:`train`; :func:`train_many` batches many data sets in one call.
Every result reads its history with the same two verbs: ``final(key)`` (the last recorded step) and
``at(key, step)`` (the recorded step closest to ``step``) - :class:`Run`, the sweeps'
:class:`~benign_attention.sweeps.GridResult` and the encoder's
:class:`~benign_attention.encoder.train.EncoderRun` alike.

Internal API: :func:`check_train_args`, :func:`run_family`, :func:`first_divergence`, :func:`divergence_rule`,
:func:`warn_diverged`, :func:`history_to_numpy` and :func:`torch_threads` are public names outside
``__all__`` that :mod:`~benign_attention.sweeps` and :mod:`~benign_attention.widgets` build on (no
module imports another module's underscore names; ``tests/test_imports.py`` checks it).
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from . import gram
from .data import INITS, LR, STEPS, Dataset, init_W
from .metrics import batch_metrics
from .validation import (ArgumentTypeError, check_array, check_choice, check_device, check_dtype, check_int,
                         check_int_array, check_lr_dtype, check_number, check_progress, shared_tensor)

__all__ = ["Run", "train", "train_many", "record_schedule", "log_schedule", "exact_gd", "DivergenceWarning"]

ENGINES = ("exact", "dense", "gram")


class DivergenceWarning(RuntimeWarning):
    """Gradient descent diverged (the loss or the parameters became NaN or inf): lower the learning
    rate. The run's metrics from the first non-finite step on are NaN (never a plausible number)."""


def check_dataset(name, dataset):
    """Raise unless ``dataset`` is a :class:`~benign_attention.data.Dataset`."""
    if not isinstance(dataset, Dataset):
        raise ArgumentTypeError(f"{name} must be a Dataset (from make_dataset or Dataset.from_arrays), "
                                f"got {type(dataset).__name__}")
    return dataset


def _tensor(a, dtype, device=None):
    """A torch tensor of a data set's (read-only) array, sharing its memory where possible."""
    return shared_tensor(a, dtype, device)


def record_schedule(steps, record_every=10):
    """The recorded steps: every ``record_every``-th step from 0, and always the final step.

    ``record_every`` (k >= 1) and ``steps`` (>= 0) are integers: the steps are 0, k, 2k, and ``steps``.

    Returns an int64 array; raises ValueError for a knob out of range.
    """
    return _every(check_int("steps", steps, 0), check_int("record_every", record_every, 1))


def _every(steps, k):
    """:func:`record_schedule` for checked arguments."""
    return np.unique(np.r_[np.arange(0, steps + 1, k), steps]).astype(np.int64)


def log_schedule(steps, num=60):
    """About ``num`` record steps spaced logarithmically in [0, steps] (for long runs, :ref:`sec-delay-long`).

    Returns a strictly increasing int64 array in [0, steps] that starts at 0 and ends at ``steps``
    (``[0]`` for ``steps`` = 0); raises ValueError for a knob out of range.
    """
    steps = check_int("steps", steps, 0)
    num = check_int("num", num, 2)
    r = np.unique(np.r_[0, np.geomspace(1, max(steps, 1), num).round(), steps]).astype(np.int64)
    return r[r <= steps]   # steps = 0: just [0]


def _check_record_steps(record_steps, steps):
    if record_steps is None:
        raise ArgumentTypeError(f"record_steps must be a non-empty list of integers in [0, steps={steps}], got None")
    try:
        r = check_int_array("record_steps", record_steps, 0, steps)
    except ValueError as err:
        raise type(err)(f"{err} (steps={steps})") from None
    return np.unique(r)


@dataclass(eq=False)
class Run:
    r"""One training run: ``steps`` ``(E,)`` record steps and ``history`` arrays with leading axis :math:`E`.

    History keys: ``train_loss``/``train_acc`` (observed labels), ``train_clean_acc`` (clean labels),
    ``test_loss``/``test_acc``/``test_margin`` (clean test set), ``attn_clean``/``attn_noisy``/``attn_test``
    ``(E, 4)`` mean attention on :math:`x_1`, :math:`x_2`, :math:`x_3` and all irrelevant tokens, and per training sample
    ``train_attention``/``train_logits`` (E, n, T) and ``train_outputs`` (E, n).
    ``state`` holds what is needed to continue (``train(..., resume=run)``) or inspect (:meth:`params`).
    """

    steps: np.ndarray
    history: dict
    config: dict
    state: dict = field(default_factory=dict, repr=False)
    #: None, or the step by which gradient descent diverged (see :class:`DivergenceWarning`)
    diverged_at: int | None = None

    @property
    def diverged(self) -> bool:
        """True if the loss or the parameters became NaN or inf (metrics from then on are NaN)."""
        return self.diverged_at is not None

    def _key(self, key):
        if not isinstance(key, str) or key not in self.history:
            raise ValueError(f"key must be one of the recorded metrics {sorted(self.history)}, got {key!r}")
        return key

    def final(self, key):
        """History value at the last recorded step (the same verb as ``GridResult.final`` and
        ``EncoderRun.final``)."""
        return self.history[self._key(key)][-1]

    def at(self, key, step):
        """History value at the recorded step closest to ``step`` (the same verb as
        ``GridResult.at`` and ``EncoderRun.at``)."""
        step = check_number("step", step)
        return self.history[self._key(key)][int(np.argmin(np.abs(self.steps - step)))]

    def params(self):
        r"""Final :math:`(W, p)` as float64 numpy arrays (materialises the :math:`d \times d` matrix)."""
        if "W" not in self.state and "problem" not in self.state:
            raise ValueError("this run keeps no parameters (runs from train_many, train_cell and run_grid keep "
                             "none); train it with train() to inspect or resume it")
        if "W" in self.state:
            return self.state["W"].cpu().numpy(), self.state["p"].cpu().numpy()
        prob, r = self.state["problem"], self.state["index"]
        cpu64 = lambda x: x.detach().cpu().double()
        alpha, Z, A, B = (cpu64(x) for x in (self.state["alpha"], self.state["Z"], prob.A, prob.B))
        W = cpu64(prob.W0) - B @ (torch.eye(B.shape[1], dtype=torch.float64) - Z).T @ A.T
        return W.numpy(), (A @ alpha).numpy()


# ----------------------------------------------------------------------------------------------
# The low-dimensional problem: a "family" of data sets sharing noise, W_0 and basis.


@dataclass(eq=False)
class Family:
    r"""Data sets that share token noise and :math:`W_0` and differ in signal strength and labels.

    ``eps`` (n, T, d) and ``eps_test`` (N, T, d) are the shared parts of the tokens; member r adds
    ``coef[r] @ dirs.T`` (coefficients (n, T, 2) on the two signal directions ``dirs`` (d, 2)).
    A data set built from arrays is a family of one member with eps = X and zero coefficients.
    """

    eps: torch.Tensor
    eps_test: torch.Tensor | None
    dirs: torch.Tensor
    W0: torch.Tensor
    coef: torch.Tensor          # (R, n, T, 2)
    coef_test: torch.Tensor     # (R, N, T, 2)
    nu: torch.Tensor            # (R, d)
    y: torch.Tensor             # (R, n)
    y_clean: torch.Tensor       # (R, n)
    noisy: torch.Tensor         # (R, n) bool
    y_test: torch.Tensor | None  # (R, N)

    def to(self, device):
        """Move every tensor to ``device`` (e.g. "cuda"); returns self."""
        for k, v in vars(self).items():
            if torch.is_tensor(v):
                setattr(self, k, v.to(device))
        return self

    def prepare(self, shared: "Family | None" = None):
        r"""Basis :math:`B`, :math:`A = W_0^\top B`, :math:`G = A^\top A`, :math:`K = W_0 A` and the tokens in
        :math:`B` coordinates; taken from ``shared`` (a prepared family with the same ``eps``, :math:`W_0` and
        signal directions) when given."""
        if shared is not None:
            for k in ("B", "A", "G", "K", "EB", "DB", "with_signal"):
                setattr(self, k, getattr(shared, k))
        else:
            n, T, d = self.eps.shape
            E = self.eps.reshape(n * T, d)
            self.with_signal = bool(self.dirs.abs().sum() > 0)
            src = torch.cat([E, self.dirs.T]) if self.with_signal else E
            self.B = torch.linalg.qr(src.T).Q  # (d, m)
            self.A = self.W0.T @ self.B
            self.G = self.A.T @ self.A
            self.K = self.W0 @ self.A
            self.EB, self.DB = E @ self.B, self.dirs.T @ self.B
        self.z = self._head_values(self.eps, self.coef)
        if self.eps_test is not None:
            self.z_test = self._head_values(self.eps_test, self.coef_test)
        return self

    def _head_values(self, eps, coef):
        # z[r, i, t] = nu_r . (eps_it + coef[r, i, t] @ dirs^T)
        shared = torch.einsum("itd,rd->rit", eps, self.nu)
        dn = self.nu @ self.dirs  # (R, 2)
        return shared + torch.einsum("ritk,rk->rit", coef, dn)

    def test_logits(self, alpha, w):
        r"""Test token scores for the recorded states: :math:`\alpha`, :math:`w` ``(R, E, m)`` -> ``(R, E, N, T)``."""
        R, E, m = alpha.shape
        N, T, d = self.eps_test.shape
        a, w = alpha.reshape(R * E, m).T, w.reshape(R * E, m).T
        Q = self.K @ a - self.B @ w  # (d, RE): the full queries q = W p
        flat = self.eps_test.reshape(N * T, d)
        if R * E > 2 * m:  # cheaper to project the test tokens once
            P = flat @ torch.cat([self.K, self.B], 1)
            shared = P[:, :m] @ a - P[:, m:] @ w
        else:
            shared = flat @ Q
        shared = shared.T.reshape(R, E, N, T)
        sig = torch.einsum("rntk,kre->rent", self.coef_test, (self.dirs.T @ Q).reshape(2, R, E))
        return shared + sig


def _family_from_dataset(ds: Dataset, W0, dtype):
    t = lambda a: _tensor(a, dtype)
    d = ds.d
    dirs = torch.zeros(d, 2, dtype=dtype)
    n, T = ds.n, ds.T
    has_test = ds.X_test is not None
    N = ds.n_test
    return Family(
        eps=t(ds.X), eps_test=t(ds.X_test) if has_test else None, dirs=dirs, W0=t(W0),
        coef=torch.zeros(1, n, T, 2, dtype=dtype), coef_test=torch.zeros(1, N, T, 2, dtype=dtype),
        nu=t(ds.nu)[None], y=t(ds.y)[None], y_clean=t(ds.y_clean)[None],
        noisy=_tensor(ds.noisy, None)[None], y_test=t(ds.y_test)[None] if has_test else None,
    )


class _Tokens:
    """Training tokens in basis coordinates, C_r = EB + coef_r @ DB, applied without forming C_r.

    ``EB`` (nT, m) shared by all runs or (R, nT, m) one per run; ``coef`` (R, nT, 2) and ``DB`` (2, m)
    the low-rank signal part (None when absent)."""

    def __init__(self, EB, coef=None, DB=None):
        self.EB, self.coef, self.DB = EB, coef, DB
        self.EBt = EB.transpose(-1, -2).contiguous()

    def scores(self, v):  # C v for each run: (R, m) -> (R, nT)
        a = v @ self.EBt if self.EB.dim() == 2 else torch.bmm(v[:, None, :], self.EBt)[:, 0]
        if self.coef is not None:
            a = a + torch.bmm(self.coef, (v @ self.DB.T)[:, :, None])[:, :, 0]
        return a

    def back(self, g):  # C^T g for each run: (R, nT) -> (R, m)
        r = g @ self.EB if self.EB.dim() == 2 else torch.bmm(g[:, None, :], self.EB)[:, 0]
        if self.coef is not None:
            r = r + torch.bmm(g[:, None, :], self.coef)[:, 0] @ self.DB
        return r


def _lowdim_loop(C: _Tokens, G, z, y, steps, lr, record_steps, alpha, Z, progress=False):
    """Run GD on a batch of R low-dimensional problems. C the tokens (see :class:`_Tokens`), G (m, m)
    shared or (R, m, m), z (R, n, T), y (R, n), alpha (R, m), Z (R, m, m) (updated in place). Returns
    recorded train logits (R, E, n, T), alpha and w = G alpha - Z^T G alpha (R, E, m), final alpha."""
    with torch_threads(1 if Z.numel() < 2**23 else torch.get_num_threads()):  # small ops: 1 thread is fastest
        return _loop(C, G, z, y, steps, lr, record_steps, alpha, Z, progress)


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Temporarily set torch's CPU thread count (None: leave it). On a busy machine one thread
    avoids OpenMP spin-waiting, which made small workloads up to 10x slower in our runs."""
    threads = None if threads is None else check_int("threads", threads, 1)
    old = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _bar(it, progress, **kw):
    """``it`` wrapped in a tqdm bar as the options from
    :func:`~benign_attention.validation.check_progress` say (``progress`` False: no bar)."""
    if not progress or progress["disable"]:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, delay=progress["delay"], **kw)


def _loop(C, G, z, y, steps, lr, record_steps, alpha, Z, progress):
    R, n, T = z.shape
    rec = set(int(s) for s in record_steps)
    logits_hist, alpha_hist, w_hist = [], [], []
    it = _bar(range(steps + 1), progress, desc="GD steps", leave=False)
    for step in it:
        Ga = alpha @ G if G.dim() == 2 else torch.bmm(alpha[:, None, :], G)[:, 0]  # G symmetric
        v = torch.bmm(Ga[:, None, :], Z)[:, 0]  # (Z^T G alpha)^T
        a = C.scores(v).reshape(R, n, T)
        if step in rec:
            logits_hist.append(a)
            alpha_hist.append(alpha.clone())
            w_hist.append(Ga - v)
        if step == steps:
            break
        s = torch.softmax(a, dim=-1)
        f = (s * z).sum(-1)
        dloss = -y * torch.sigmoid(-y * f) / n  # d(mean loss)/d f_i
        r = C.back((dloss[..., None] * s * (z - f[..., None])).reshape(R, n * T))  # r = C^T dL/da
        Zr = torch.bmm(r[:, None, :], Z.transpose(1, 2))[:, 0]  # (Z r)^T
        # scale the small factor first (as dense GD scales its gradient): lr * alpha r^T would overflow
        # to inf * 0 = NaN once alpha is huge, although the product alpha r^T is 0
        Z.baddbmm_(alpha[:, :, None], (-lr * r)[:, None, :])
        alpha = alpha - lr * Zr
    stack = lambda xs: torch.stack(xs, 1)
    return stack(logits_hist), stack(alpha_hist), stack(w_hist), alpha


def run_family(fam: Family, steps, lr, record_steps, dtype, state=None, progress=False):
    """Train every member of a prepared family; return per-member history dicts and final states."""
    R = fam.coef.shape[0]
    m = fam.B.shape[1]
    if state is None:
        alpha = torch.zeros(R, m, dtype=dtype, device=fam.B.device)
        Z = torch.eye(m, dtype=dtype, device=fam.B.device).repeat(R, 1, 1)
    else:
        alpha, Z = state
        alpha, Z = alpha.to(dtype).clone(), Z.to(dtype).clone()
    n, T = fam.z.shape[1:]
    C = _Tokens(fam.EB.to(dtype), fam.coef.reshape(R, n * T, 2).to(dtype) if fam.with_signal else None,
                fam.DB.to(dtype))
    logits, alpha_h, w_h, alpha = _lowdim_loop(
        C, fam.G.to(dtype), fam.z.to(dtype), fam.y.to(dtype), steps, lr, record_steps, alpha, Z, progress
    )
    hist = _per_member(logits.double(), fam)  # noisy masks may differ between members
    if fam.eps_test is not None:
        tl = fam.test_logits(alpha_h.to(fam.K.dtype), w_h.to(fam.K.dtype)).double()
        hist.update(batch_metrics(tl, fam.z_test[:, None].double(), fam.y_test[:, None, :].double(), prefix="test"))
    return hist, (alpha, Z)


def _per_member(logits, fam):
    parts = [batch_metrics(logits[r], fam.z[r].double(), fam.y[r].double(), fam.y_clean[r].double(), fam.noisy[r])
             for r in range(logits.shape[0])]
    return {k: torch.stack([p[k] for p in parts]) for k in parts[0]}


def history_to_numpy(hist, r=None):
    """History tensors as numpy arrays (of member ``r`` only, when given)."""
    return {k: (v if r is None else v[r]).detach().cpu().numpy() for k, v in hist.items()}


# ----------------------------------------------------------------------------------------------
# Dense reference engine.


def _train_dense(ds: Dataset, W0, steps, lr, record_steps, dtype, state=None, progress=False, device=None):
    t = lambda a: _tensor(a, dtype, device)
    X, y, nu = t(ds.X), t(ds.y), t(ds.nu)
    W = (state["W"] if state else t(W0)).clone().requires_grad_(True)
    p = (state["p"] if state else torch.zeros(ds.d, dtype=dtype, device=device)).clone().requires_grad_(True)
    z = X @ nu
    rec = set(int(s) for s in record_steps)
    qs, logits_hist = [], []
    it = _bar(range(steps + 1), progress, desc="GD steps (dense)", leave=False)
    for step in it:
        q = W @ p
        a = X @ q
        if step in rec:
            logits_hist.append(a.detach())
            qs.append(q.detach())
        if step == steps:
            break
        f = (torch.softmax(a, -1) * z).sum(-1)
        loss = torch.nn.functional.softplus(-y * f).mean()
        gW, gp = torch.autograd.grad(loss, (W, p))
        with torch.no_grad():
            W -= lr * gW
            p -= lr * gp
    logits = torch.stack(logits_hist).double()
    hist = batch_metrics(logits, z.double(), y.double(), t(ds.y_clean).double(), _tensor(ds.noisy, None, device))
    if ds.X_test is not None:
        Xt = t(ds.X_test)
        tl = torch.einsum("ntd,ed->ent", Xt, torch.stack(qs)).double()
        hist.update(batch_metrics(tl, (Xt @ nu).double(), t(ds.y_test).double(), prefix="test"))
    return hist, {"W": W.detach(), "p": p.detach()}


# ----------------------------------------------------------------------------------------------
# Public interface.


def check_train_args(steps, lr, engine, record_every, record_steps, engines=ENGINES, default_every=10):
    """Validated (steps, lr, record steps), the one place these knobs are checked on the way to a run.
    ``engine`` must be one of ``engines``. ``record_every`` cannot be combined with ``record_steps``;
    with neither, the steps are every ``default_every``-th (None: only the final step)."""
    steps = check_int("steps", steps, 0)
    lr = check_number("lr", lr, 0.0, low_open=True)
    check_choice("engine", engine, engines)
    if record_steps is not None and record_every is not None:
        raise ValueError("record_every cannot be combined with record_steps (give one of them)")
    if record_steps is not None:
        return steps, lr, _check_record_steps(record_steps, steps)
    k = default_every if record_every is None else check_int("record_every", record_every, 1)
    return steps, lr, np.array([steps], dtype=np.int64) if k is None else _every(steps, k)


def _initial_W(ds, W0, init_seed, name="W0", seed_name="init_seed", init=None):
    if W0 is None:
        seed = ds.config.get("seed", 0) if init_seed is None else check_int(seed_name, init_seed, 0)
        return init_W(ds.d, seed, init="uniform" if init is None else init)
    if init is not None:
        raise ValueError(f"init cannot be combined with {name}: {name} is the initial W itself (give one of them)")
    if init_seed is not None:
        raise ValueError(f"{seed_name} cannot be combined with {name}: {name} is the initial W itself "
                         f"(give one of them)")
    return check_array(name, W0, shape=(ds.d, ds.d))


def first_divergence(run_steps, train_loss, final_state):
    """The first recorded step whose loss is not finite, else the last step if the final state is not
    finite (divergence after the last record), else None."""
    bad = ~np.isfinite(np.asarray(train_loss))
    if bad.any():
        return int(run_steps[int(np.argmax(bad))])
    if not all(bool(torch.isfinite(t).all()) for t in final_state):
        return -1
    return None


def divergence_rule(what, lr, record_steps, history, loss_key="train_loss", state=(), also=(), stacklevel=3):
    """The package's one divergence rule, shared by every trainer (:func:`train`, :func:`train_many`,
    :func:`~benign_attention.sweeps.run_grid`, :func:`~benign_attention.encoder.train.train_encoder`,
    :func:`~benign_attention.realdata.finetune.run`).

    A run diverged at the first recorded step whose loss ``history[loss_key]`` is not finite, or after
    the last record if a tensor of its final ``state`` is not finite (:func:`first_divergence`).
    From that step on every recorded metric is NaN - an accuracy is never reported for a diverged
    state - in ``history`` (arrays or lists with leading axis ``len(record_steps)``; modified in place)
    and in each ``(steps, history)`` pair of ``also`` (records on another schedule, e.g. test
    metrics). The call warns (:class:`DivergenceWarning`, naming ``what`` and ``lr``).

    Returns the step of the divergence (-1: after the last record) or None."""
    record_steps = np.asarray(record_steps)
    at = first_divergence(record_steps, history[loss_key], state)
    if at is None:
        return None
    if at != -1:
        for steps, hist in ((record_steps, history),) + tuple(also):
            late = np.asarray(steps) >= at
            for k, v in hist.items():
                if k in ("epoch", "step", "steps"):
                    continue
                a = np.array(v, dtype=float)
                if a.shape[:1] == late.shape:
                    a[late] = np.nan
                    hist[k] = a if isinstance(v, np.ndarray) else a.tolist()
    warn_diverged(what, lr, at, stacklevel=stacklevel + 1)
    return at


def warn_diverged(what, lr, at, stacklevel=3):
    """Warn (:class:`DivergenceWarning`) that ``what`` diverged by step ``at`` (-1: after the last record)."""
    where = "after the last recorded step" if at == -1 else f"by step {at}"
    warnings.warn(DivergenceWarning(
        f"{what}: gradient descent diverged {where} (NaN/inf loss) with lr={lr:g}; its metrics are NaN "
        f"from there on. Lower lr."), stacklevel=stacklevel)


def _check_resume(resume, dataset, engine, W0, init_seed, dtype, device):
    """The resume contract: continue a run of :func:`train` on the same data set (same fingerprint)
    with its own engine, dtype, device and state; W0 / init_seed / a different engine, dtype or
    device conflict with it."""
    if not isinstance(resume, Run):
        raise ArgumentTypeError(f"resume must be a Run returned by train(), got {type(resume).__name__}")
    st = resume.state
    if "dataset" not in st or not ({"problem", "alpha", "Z"} <= set(st) or {"W", "p"} <= set(st)):
        raise ValueError("resume: this run has no continuation state (runs from train_many, train_cell and "
                         "run_grid keep none); train it with train() to be able to resume it")
    old = st["dataset"]
    if dataset is not old and dataset.fingerprint != old.fingerprint:
        raise ValueError("dataset is not the data set the resumed run was trained on (their fingerprints "
                         "differ); resume only continues a run on the same data - start a new run instead")
    old_engine = resume.config["engine"]
    if engine is not None and engine != old_engine:
        raise ValueError(f"engine={engine!r} conflicts with resume: the resumed run uses the {old_engine!r} "
                         f"engine (leave engine unset when resuming)")
    if W0 is not None or init_seed is not None:
        which = "W0" if W0 is not None else "init_seed"
        raise ValueError(f"{which} cannot be combined with resume: the run continues from its own W and p")
    if dtype is not None and dtype != st["dtype"]:
        raise ValueError(f"dtype={dtype} conflicts with resume: the resumed run computes in {st['dtype']} "
                         f"(leave dtype unset when resuming)")
    if device is not None and device != (st["device"] or torch.device("cpu")):
        raise ValueError(f"device={str(device)!r} conflicts with resume: the resumed run lives on "
                         f"{str(st['device'])!r} (leave device unset when resuming)")
    return old_engine, st["dtype"], st["device"]


def train(dataset: Dataset, steps=STEPS, lr=LR, engine=None, W0=None, init_seed=None,
          record_every=None, record_steps=None, dtype=None, resume: Run | None = None,
          progress=None, device=None, init=None) -> Run:
    r"""Full-batch GD on the mean logistic loss from :math:`W = W_0`, :math:`p = 0`.

    The training of :ref:`sec-dyn-settings`; the exact engine is :prf:ref:`prop-exact`.

    Parameters
    ----------
    dataset : benign_attention.data.Dataset
        The training (and test) data.
    steps : int
        GD steps, >= 0.
    lr : float
        Learning rate, finite and > 0.
    engine : str, optional
        ``"exact"`` (default), ``"dense"`` or ``"gram"`` (:mod:`~benign_attention.gram` fed with this data
        set and W0: numpy, equal to ``"exact"`` to round-off; no ``resume``, CPU only).
    W0 : array_like, optional
        An explicit (d, d) initial W; default: the paper's initialisation drawn from ``init_seed``.
    init_seed : int, optional
        Seed of the default W0 (default: the data set's seed); give at most one of ``W0`` and
        ``init_seed``.
    init : str, optional
        The default W0's law: ``"uniform"`` (the paper's :math:`U(-1/\sqrt d, 1/\sqrt d)`, the default) or
        ``"gaussian"`` (:math:`\mathcal N(0, 1/(3d))`, the same variance; see :func:`~benign_attention.data.init_W`).
    record_every : int, optional
        Record the metrics every this many steps (default 10) ...
    record_steps : array_like of int, optional
        ... or at these steps (integers in [0, steps]); not both.
    dtype : torch.dtype or str, optional
        torch.float64 (default) or torch.float32 (or the strings "float64"/"float32").
    resume : Run, optional
        A previous run of :func:`train` to continue (see below).
    progress : bool or None, optional
        A progress bar: True, False or None (the default: automatic - a bar only on a terminal and
        only once the work has run for 2 s; see :func:`~benign_attention.validation.check_progress`).
    device : str or torch.device, optional
        Where to compute (default CPU; "cuda" where available - the book never needs it).

    Returns
    -------
    Run

    Raises
    ------
    ValueError
        Any bad argument (the message names it and its allowed range).

    Warns
    -----
    DivergenceWarning
        If gradient descent diverges (see below).

    Notes
    -----
    ``resume`` continues a previous :func:`train` run for ``steps`` more steps (record steps count from
    the start of the resumed run, and ``lr`` may change). The contract: the same data set (checked by
    :attr:`~benign_attention.data.Dataset.fingerprint`), the run's own engine, dtype and device, and no
    ``W0``/``init_seed``; anything else raises ValueError - both engines behave identically.

    A run that diverges (lr too large) warns with :class:`DivergenceWarning`, records NaN metrics from
    then on (never accuracy 0) and has ``run.diverged`` set.
    """
    dataset = check_dataset("dataset", dataset)
    steps, lr, rec = check_train_args(steps, lr, "exact" if engine is None else engine, record_every,
                                       record_steps)
    dtype = None if dtype is None else check_dtype("dtype", dtype)
    device = check_device("device", device)
    progress = check_progress("progress", progress)
    offset = 0
    if resume is not None:
        engine, dtype, device = _check_resume(resume, dataset, engine, W0, init_seed, dtype, device)
        offset = int(resume.config["steps_done"])
        dataset = resume.state["dataset"]  # identical contents; keeps one object alive, not two
    else:
        engine = engine or "exact"
        dtype = dtype or torch.float64
        if init is not None:
            check_choice("init", init, INITS)
        W0 = _initial_W(dataset, W0, init_seed, init=init)
    check_lr_dtype(lr, dtype)
    config = dict(dataset.config, lr=lr, engine=engine, steps_done=offset + steps)
    if engine == "gram":
        if resume is not None:
            raise ValueError("resume is not supported by the gram engine (it keeps no continuation state); "
                             "use engine='exact' to resume")
        if device is not None and device.type != "cpu":
            raise ValueError(f"device={str(device)!r}: the gram engine runs on the CPU (numpy)")
        hist, alpha = _train_gram([dataset], [W0], steps, lr, rec, dtype, per_sample=True)
        hist, state, final = hist[0], {}, (torch.as_tensor(alpha[0]),)
    elif engine == "dense":
        hist, state = _train_dense(dataset, W0, steps, lr, rec, dtype, resume.state if resume else None, progress,
                                   device)
        final = (state["W"], state["p"])
    else:
        if resume is None:
            fam = _family_from_dataset(dataset, W0, torch.float64)
            fam = fam.to(device).prepare() if device is not None else fam.prepare()
            start = None
        else:
            fam = resume.state["problem"]
            start = (resume.state["alpha"][None], resume.state["Z"][None])
        hist, (alpha, Z) = run_family(fam, steps, lr, rec, dtype, start, progress)
        hist = {k: v[0] for k, v in hist.items()}
        state = {"problem": fam, "index": 0, "alpha": alpha[0], "Z": Z[0]}
        final = (alpha, Z)
    if engine != "gram":
        state.update(dataset=dataset, dtype=dtype, device=device)
        hist = history_to_numpy(hist)
    at = first_divergence(rec + offset, hist["train_loss"], final)
    if resume is not None and resume.diverged:
        at = resume.diverged_at
    if at is not None:
        at = offset + steps if at == -1 else at
        warn_diverged("train", lr, at)
    return Run(rec + offset, hist, config, state, at)


def train_many(datasets, steps=STEPS, lr=LR, W0s=None, init_seeds=None, record_every=None,
               record_steps=None, dtype=None, progress=None, device=None, engine=None, init=None):
    r"""Train many data sets with the exact engine in batched tensor operations; returns a list of
    :class:`Run` (without continuation state, to keep memory small). Data sets with the same :math:`n`,
    :math:`T` and token-span dimension run in one batch. ``W0s`` / ``init_seeds``: one entry per data set (give at
    most one of the two); other arguments (``progress``, ``init`` and ``engine`` "exact" or "gram" included)
    as in :func:`train`. Runs that diverge warn once
    (:class:`DivergenceWarning`) and have NaN metrics and ``run.diverged`` set. Batching as in
    :ref:`sec-exact-families`; raises ValueError (naming the argument) for any bad argument."""
    if isinstance(datasets, Dataset):
        raise ArgumentTypeError("datasets must be a list of Datasets, got a single Dataset (use train(), or "
                                "pass [dataset])")
    if isinstance(datasets, (str, bytes)) or datasets is None or not hasattr(datasets, "__iter__"):
        raise ArgumentTypeError(f"datasets must be a list of Datasets, got {type(datasets).__name__}")
    datasets = list(datasets)
    for i, ds in enumerate(datasets):
        check_dataset(f"datasets[{i}]", ds)
    engine = "exact" if engine is None else engine
    steps, lr, rec = check_train_args(steps, lr, engine, record_every, record_steps, engines=("exact", "gram"))
    dtype = torch.float64 if dtype is None else check_dtype("dtype", dtype)
    check_lr_dtype(lr, dtype)
    device = check_device("device", device)
    if init is not None:
        check_choice("init", init, INITS)
    progress = check_progress("progress", progress)
    if W0s is not None and init_seeds is not None:
        raise ValueError("init_seeds cannot be combined with W0s: W0s are the initial Ws (give one of them)")
    for name, per in (("W0s", W0s), ("init_seeds", init_seeds)):
        if per is None:
            continue
        if isinstance(per, (str, bytes)) or not hasattr(per, "__len__"):
            raise ArgumentTypeError(f"{name} must be a list with one entry per data set, got {type(per).__name__}")
        if len(per) != len(datasets):
            raise ValueError(f"{name} must hold one entry per data set ({len(datasets)}), got {len(per)}")
    fams = []
    for i, ds in enumerate(datasets):
        W0 = None if W0s is None else W0s[i]
        seed = None if init_seeds is None else init_seeds[i]
        if W0s is not None and W0 is None:
            raise ArgumentTypeError(f"W0s[{i}] must be a ({ds.d}, {ds.d}) array, got None")
        W0 = _initial_W(ds, W0, seed, f"W0s[{i}]", f"init_seeds[{i}]", init)
        if engine == "gram":
            fams.append(W0)
            continue
        fam = _family_from_dataset(ds, W0, torch.float64)
        fams.append((fam.to(device) if device is not None else fam).prepare())
    runs = [None] * len(datasets)
    if engine == "gram":
        hists, alphas = _train_gram(datasets, fams, steps, lr, rec, dtype, per_sample=True)
        for i, h in enumerate(hists):
            at = first_divergence(rec, h["train_loss"], (torch.as_tensor(alphas[i]),))
            at = steps if at == -1 else at
            runs[i] = Run(rec, h, dict(datasets[i].config, lr=lr, engine="gram", steps_done=steps), {}, at)
        fams = []
    groups = {}
    for i, f in enumerate(fams):
        groups.setdefault((f.EB.shape, datasets[i].T), []).append(i)
    for idx in groups.values():
        hist, finals = _run_batch([fams[i] for i in idx], steps, lr, rec, dtype, progress)
        for j, i in enumerate(idx):
            h = history_to_numpy(hist[j])
            at = first_divergence(rec, h["train_loss"], finals[j])
            at = steps if at == -1 else at
            runs[i] = Run(rec, h, dict(datasets[i].config, lr=lr, engine="exact", steps_done=steps), {}, at)
    bad = [i for i, r in enumerate(runs) if r.diverged]
    if bad:
        warn_diverged(f"train_many: {len(bad)} of {len(runs)} runs (indices {bad[:10]}"
                       f"{'...' if len(bad) > 10 else ''})", lr, min(runs[i].diverged_at for i in bad))
    return runs


def _train_gram(datasets, W0s, steps, lr, rec, dtype, per_sample=True):
    """The gram engine on explicit arrays (:func:`~benign_attention.gram.from_arrays`), batched by
    shape; per-data-set numpy history dicts and final alphas."""
    dt = np.float32 if dtype == torch.float32 else np.float64
    probs = [gram.from_arrays(ds.X, ds.y, ds.y_clean, ds.noisy, ds.nu, W0, ds.X_test, ds.y_test)
             for ds, W0 in zip(datasets, W0s)]
    groups = {}
    for i, p in enumerate(probs):
        groups.setdefault((p.C.shape, p.z.shape), []).append(i)
    hists, alphas = [None] * len(probs), [None] * len(probs)
    for idx in groups.values():
        hs, alpha = gram.run_problems([probs[i] for i in idx], steps, lr, rec, dt, per_sample=per_sample)
        for j, i in enumerate(idx):
            hists[i], alphas[i] = hs[j], alpha[j]
    return hists, alphas


def _run_batch(fams, steps, lr, rec, dtype, progress=False):
    """Stack single-member families of equal shapes into one batch; per-family history dicts."""
    R = len(fams)
    m = fams[0].B.shape[1]
    C = _Tokens(torch.stack([f.EB for f in fams]).to(dtype))  # data sets from arrays: no signal part
    G = torch.stack([f.G for f in fams]).to(dtype)
    z = torch.cat([f.z for f in fams]).to(dtype)
    y = torch.cat([f.y for f in fams]).to(dtype)
    alpha = torch.zeros(R, m, dtype=dtype, device=C.EB.device)
    Z = torch.eye(m, dtype=dtype, device=C.EB.device).repeat(R, 1, 1)
    logits, alpha_h, w_h, alpha = _lowdim_loop(C, G, z, y, steps, lr, rec, alpha, Z, progress)
    out = []
    for r, f in enumerate(fams):
        h = batch_metrics(logits[r].double(), f.z[0].double(), f.y[0].double(), f.y_clean[0].double(), f.noisy[0])
        if f.eps_test is not None:
            tl = f.test_logits(alpha_h[r:r + 1].to(f.K.dtype), w_h[r:r + 1].to(f.K.dtype))[0].double()
            h.update(batch_metrics(tl, f.z_test[0].double(), f.y_test[0].double(), prefix="test"))
        out.append(h)
    return out, [(alpha[r], Z[r]) for r in range(R)]


# ----------------------------------------------------------------------------------------------
# The recursion in a few lines of numpy (chapter 07_exact_engine shows this function).


def exact_gd(ds, W0, steps, lr=LR):
    r"""The exact engine's recursion in plain numpy, for one data set (:ref:`sec-exact-dynamics`).

    ``steps`` >= 0 GD steps with ``lr`` > 0 from :math:`W` = ``W0`` ``(d, d)``, :math:`p = 0`.
    Returns the final training scores ``(n, T)``, query :math:`q = Wp` ``(d,)``, and :math:`W` rebuilt from
    :math:`(\alpha, Z)`."""
    ds = check_dataset("ds", ds)
    W0 = check_array("W0", W0, shape=(ds.d, ds.d))
    steps = check_int("steps", steps, 0)
    lr = check_number("lr", lr, 0.0, low_open=True)
    n, T, d = ds.X.shape
    E = ds.X.reshape(n * T, d)
    B = np.linalg.qr(E.T)[0]           # d x m, orthonormal, spans the tokens
    C, A = E @ B, W0.T @ B
    G, z, y = A.T @ A, ds.X @ ds.nu, ds.y
    m = B.shape[1]
    alpha, Z = np.zeros(m), np.eye(m)
    for step in range(steps + 1):
        v = Z.T @ G @ alpha
        a = (C @ v).reshape(n, T)
        if step == steps:
            q = W0 @ A @ alpha - B @ (G @ alpha - v)
            return a, q, W0 - B @ (np.eye(m) - Z.T) @ A.T
        s = np.exp(a - a.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)      # softmax over the T tokens
        f = (s * z).sum(-1)
        lprime = -y / (1 + np.exp(y * f)) / n
        delta = lprime[:, None] * s * (z - f[:, None])   # dL/da
        r = C.T @ delta.ravel()
        alpha, Z = alpha - lr * Z @ r, Z - lr * np.outer(alpha, r)
