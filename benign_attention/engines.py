"""Full-batch gradient descent on the mean logistic loss, with two engines (chapter *Under the hood*).

* ``dense`` - autograd on W (d x d) and p (d): the reference, obviously the paper's model.
* ``exact`` - the same trajectory computed in the m <= nT (+2) dimensional span of the training tokens.
  With B an orthonormal basis of that span, A = W_0^T B, G = A^T A and C the tokens in B coordinates,
  p_tau = A alpha_tau and W_tau^T B = A Z_tau, and one GD step is

      v = Z^T G alpha   (token scores C v),   c = C^T dL/da,
      alpha <- alpha - lr Z c,   Z <- Z - lr alpha_old c^T,

  O(m^2 + nTm) per step whatever d is. The full query of step tau is q = K alpha - B w with K = W_0 A
  and w = G alpha - v (since Z = I - lr S^T, S = sum_k c_k alpha_k^T), which scores test tokens.

Both engines share one interface, :func:`train`; :func:`train_many` batches many data sets in one call.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
import torch

from .data import Dataset, check_int, check_number, init_W
from .metrics import summarize

__all__ = ["Run", "train", "train_many", "record_schedule", "log_schedule"]

ENGINES = ("exact", "dense")


def record_schedule(steps, record_every=10):
    """Steps 0, k, 2k, ... and always the final step."""
    steps = check_int("steps", steps, 0)
    k = check_int("record_every", record_every, 1)
    return np.unique(np.r_[np.arange(0, steps + 1, k), steps]).astype(np.int64)


def log_schedule(steps, num=60):
    """About ``num`` record steps spaced logarithmically in [0, steps] (for long runs)."""
    steps = check_int("steps", steps, 0)
    num = check_int("num", num, 2)
    return np.unique(np.r_[0, np.geomspace(1, max(steps, 1), num).round(), steps]).astype(np.int64)


def _check_record_steps(record_steps, steps):
    r = np.unique(np.asarray(record_steps, dtype=np.int64))
    if r.size == 0 or r[0] < 0 or r[-1] > steps:
        raise ValueError(f"record_steps must be a non-empty set of integers in [0, steps={steps}]")
    return r


@dataclass(eq=False)
class Run:
    """One training run: ``steps`` (E,) record steps and ``history`` arrays with leading axis E.

    History keys: ``train_loss``/``train_acc`` (observed labels), ``train_clean_acc`` (clean labels),
    ``test_loss``/``test_acc``/``test_margin`` (clean test set), ``attn_clean``/``attn_noisy``/``attn_test``
    (E, 4) mean attention on x_1, x_2, x_3 and all irrelevant tokens, and per training sample
    ``train_attention``/``train_logits`` (E, n, T) and ``train_outputs`` (E, n).
    ``state`` holds what is needed to continue (``train(..., resume=run)``) or inspect (:meth:`params`).
    """

    steps: np.ndarray
    history: dict
    config: dict
    state: dict = field(default_factory=dict, repr=False)

    def final(self, key):
        return self.history[key][-1]

    def at(self, key, step):
        """History value at the recorded step closest to ``step``."""
        return self.history[key][int(np.argmin(np.abs(self.steps - step)))]

    def params(self):
        """Final (W, p) as float64 numpy arrays (materialises the d x d matrix)."""
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
    """Data sets that share token noise and W_0 and differ in signal strength and labels.

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
        """Basis B, A = W_0^T B, G = A^T A, K = W_0 A and the tokens in B coordinates; taken from
        ``shared`` (a prepared family with the same eps, W_0 and signal directions) when given."""
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
        """Test token scores for the recorded states: alpha, w (R, E, m) -> (R, E, N, T)."""
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
    t = lambda a: torch.as_tensor(a, dtype=dtype)
    d = ds.d
    dirs = torch.zeros(d, 2, dtype=dtype)
    n, T = ds.n, ds.T
    has_test = ds.X_test is not None
    N = ds.n_test
    return Family(
        eps=t(ds.X), eps_test=t(ds.X_test) if has_test else None, dirs=dirs, W0=t(W0),
        coef=torch.zeros(1, n, T, 2, dtype=dtype), coef_test=torch.zeros(1, N, T, 2, dtype=dtype),
        nu=t(ds.nu)[None], y=t(ds.y)[None], y_clean=t(ds.y_clean)[None],
        noisy=torch.as_tensor(ds.noisy)[None], y_test=t(ds.y_test)[None] if has_test else None,
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
        c = g @ self.EB if self.EB.dim() == 2 else torch.bmm(g[:, None, :], self.EB)[:, 0]
        if self.coef is not None:
            c = c + torch.bmm(g[:, None, :], self.coef)[:, 0] @ self.DB
        return c


def _lowdim_loop(C: _Tokens, G, z, y, steps, lr, record_steps, alpha, Z, progress=False):
    """Run GD on a batch of R low-dimensional problems. C the tokens (see :class:`_Tokens`), G (m, m)
    shared or (R, m, m), z (R, n, T), y (R, n), alpha (R, m), Z (R, m, m) (updated in place). Returns
    recorded train logits (R, E, n, T), alpha and w = G alpha - Z^T G alpha (R, E, m), final alpha."""
    with _threads(1 if Z.numel() < 2**23 else torch.get_num_threads()):  # small ops: 1 thread is fastest
        return _loop(C, G, z, y, steps, lr, record_steps, alpha, Z, progress)


@contextlib.contextmanager
def _threads(k):
    old = torch.get_num_threads()
    torch.set_num_threads(k)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _loop(C, G, z, y, steps, lr, record_steps, alpha, Z, progress):
    R, n, T = z.shape
    rec = set(int(s) for s in record_steps)
    logits_hist, alpha_hist, w_hist = [], [], []
    it = range(steps + 1)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="GD steps", leave=False)
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
        c = C.back((dloss[..., None] * s * (z - f[..., None])).reshape(R, n * T))
        Zc = torch.bmm(c[:, None, :], Z.transpose(1, 2))[:, 0]  # (Z c)^T
        Z.baddbmm_(alpha[:, :, None], c[:, None, :], alpha=-lr)
        alpha = alpha - lr * Zc
    stack = lambda xs: torch.stack(xs, 1)
    return stack(logits_hist), stack(alpha_hist), stack(w_hist), alpha


def _run_family(fam: Family, steps, lr, record_steps, dtype, state=None, progress=False):
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
        hist.update(summarize(tl, fam.z_test[:, None].double(), fam.y_test[:, None, :].double(), prefix="test"))
    return hist, (alpha, Z)


def _per_member(logits, fam):
    parts = [summarize(logits[r], fam.z[r].double(), fam.y[r].double(), fam.y_clean[r].double(), fam.noisy[r])
             for r in range(logits.shape[0])]
    return {k: torch.stack([p[k] for p in parts]) for k in parts[0]}


def _to_numpy(hist, r=None):
    return {k: (v if r is None else v[r]).detach().cpu().numpy() for k, v in hist.items()}


# ----------------------------------------------------------------------------------------------
# Dense reference engine.


def _train_dense(ds: Dataset, W0, steps, lr, record_steps, dtype, state=None, progress=False, device=None):
    t = lambda a: torch.as_tensor(a, dtype=dtype, device=device)
    X, y, nu = t(ds.X), t(ds.y), t(ds.nu)
    W = (state["W"] if state else t(W0)).clone().requires_grad_(True)
    p = (state["p"] if state else torch.zeros(ds.d, dtype=dtype, device=device)).clone().requires_grad_(True)
    z = X @ nu
    rec = set(int(s) for s in record_steps)
    qs, logits_hist = [], []
    it = range(steps + 1)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="GD steps (dense)", leave=False)
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
    hist = summarize(logits, z.double(), y.double(), t(ds.y_clean).double(), torch.as_tensor(ds.noisy, device=device))
    if ds.X_test is not None:
        Xt = t(ds.X_test)
        tl = torch.einsum("ntd,ed->ent", Xt, torch.stack(qs)).double()
        hist.update(summarize(tl, (Xt @ nu).double(), t(ds.y_test).double(), prefix="test"))
    return hist, {"W": W.detach(), "p": p.detach()}


# ----------------------------------------------------------------------------------------------
# Public interface.


def _check_train_args(steps, lr, engine, record_every, record_steps):
    steps = check_int("steps", steps, 0)
    lr = check_number("lr", lr, 0.0, low_open=True)
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if record_steps is None:
        record_steps = record_schedule(steps, record_every)
    return steps, lr, _check_record_steps(record_steps, steps)


def _initial_W(ds, W0, init_seed):
    if W0 is None:
        seed = ds.config.get("seed", 0) if init_seed is None else init_seed
        return init_W(ds.d, seed)
    W0 = np.asarray(W0, dtype=np.float64)
    if W0.shape != (ds.d, ds.d) or not np.all(np.isfinite(W0)):
        raise ValueError(f"W0 must be a finite array of shape (d, d) = ({ds.d}, {ds.d}), got shape {W0.shape}")
    return W0


def train(dataset: Dataset, steps=1000, lr=5e-3, engine="exact", W0=None, init_seed=None,
          record_every=10, record_steps=None, dtype=torch.float64, resume: Run | None = None,
          progress=False, device=None) -> Run:
    """Full-batch GD on the mean logistic loss from W = W0, p = 0.

    ``steps`` >= 0 GD steps with learning rate ``lr`` > 0; ``engine`` "exact" (default) or "dense";
    ``W0`` an explicit (d, d) initial W (default: the paper's init drawn from ``init_seed``, which
    defaults to the data set's seed); metrics recorded every ``record_every`` steps or at
    ``record_steps``. ``resume`` continues a previous run on the same data set for ``steps`` more
    steps (record steps count from the start of the resumed run). ``device``: a torch device for the
    computation (default CPU; "cuda" where available - the book never needs it).
    """
    steps, lr, rec = _check_train_args(steps, lr, engine, record_every, record_steps)
    offset = 0
    if resume is not None:
        engine = resume.config["engine"]
        offset = int(resume.config["steps_done"])
    config = dict(dataset.config, lr=lr, engine=engine, steps_done=offset + steps)
    if engine == "dense":
        W0 = None if resume else _initial_W(dataset, W0, init_seed)
        hist, state = _train_dense(dataset, W0, steps, lr, rec, dtype, resume.state if resume else None, progress,
                                   device)
    else:
        if resume is None:
            fam = _family_from_dataset(dataset, _initial_W(dataset, W0, init_seed), torch.float64)
            fam = fam.to(device).prepare() if device is not None else fam.prepare()
            start = None
        else:
            fam = resume.state["problem"]
            start = (resume.state["alpha"][None], resume.state["Z"][None])
        hist, (alpha, Z) = _run_family(fam, steps, lr, rec, dtype, start, progress)
        hist = {k: v[0] for k, v in hist.items()}
        state = {"problem": fam, "index": 0, "alpha": alpha[0], "Z": Z[0]}
    return Run(rec + offset, _to_numpy(hist), config, state)


def train_many(datasets, steps=1000, lr=5e-3, W0s=None, init_seeds=None, record_every=10,
               record_steps=None, dtype=torch.float64, progress=True, device=None):
    """Train many data sets with the exact engine in batched tensor operations; returns a list of
    :class:`Run` (without continuation state, to keep memory small). Data sets with the same n, T and
    token-span dimension run in one batch."""
    steps, lr, rec = _check_train_args(steps, lr, "exact", record_every, record_steps)
    datasets = list(datasets)
    fams = []
    for i, ds in enumerate(datasets):
        W0 = None if W0s is None else W0s[i]
        seed = None if init_seeds is None else init_seeds[i]
        fam = _family_from_dataset(ds, _initial_W(ds, W0, seed), torch.float64)
        fams.append((fam.to(device) if device is not None else fam).prepare())
    runs = [None] * len(datasets)
    groups = {}
    for i, f in enumerate(fams):
        groups.setdefault((f.EB.shape, datasets[i].T), []).append(i)
    for idx in groups.values():
        hist = _run_batch([fams[i] for i in idx], steps, lr, rec, dtype, progress)
        for j, i in enumerate(idx):
            runs[i] = Run(rec, _to_numpy(hist[j]), dict(datasets[i].config, lr=lr, engine="exact", steps_done=steps))
    return runs


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
    logits, alpha_h, w_h, _ = _lowdim_loop(C, G, z, y, steps, lr, rec, alpha, Z, progress)
    out = []
    for r, f in enumerate(fams):
        h = summarize(logits[r].double(), f.z[0].double(), f.y[0].double(), f.y_clean[0].double(), f.noisy[0])
        if f.eps_test is not None:
            tl = f.test_logits(alpha_h[r:r + 1].to(f.K.dtype), w_h[r:r + 1].to(f.K.dtype))[0].double()
            h.update(summarize(tl, f.z_test[0].double(), f.y_test[0].double(), prefix="test"))
        out.append(h)
    return out
