"""The paper's appendix model: a one-layer transformer encoder with every parameter trained.

The architecture (:ref:`sec-encoder-architecture`):

* a learnable [CLS] token ``cls`` (initialised N(0, 1)) is prepended to the T data tokens;
* pre-norm single-head attention: ``ln1`` -> one bias-free linear map ``qkv`` (d -> 3d) to q, k, v ->
  scores q.k / sqrt(d) -> softmax over all T + 1 tokens -> softmax . v, added to the residual stream;
* a pre-norm feed-forward block ``ln2`` -> ``fc1`` (d -> mlp_dim) -> GELU -> ``fc2`` (mlp_dim -> d),
  added to the residual stream;
* a final LayerNorm ``ln_f`` and a linear head ``head`` (with bias) on the [CLS] position.

It is built twice on the same parameters:

* :class:`EncoderReference` is that architecture literally (every position through every block),
  O(n (T+1) (3 d^2 + 2 d mlp_dim)) per step;
* :func:`fast_forward` computes only what reaches the loss: the [CLS] position. Its query
  ``q = W_q LN(cls)`` is the same for every sample, the data-token scores are
  ``LN(x_t) . (W_k^T q) / sqrt(d)``, and the value is ``W_v (sum_t s_t LN(x_t))`` - one d x d product
  per sample instead of one per token. O(d^2 + n (d^2 + 2 d mlp_dim) + n T d) per step. Autograd
  follows the same contraction order, so gradients are cheap too.

:func:`sgd_step` is the training step on the fast path: the five d x d blocks' gradients have rank at
most n, and each block takes its SGD step in place during the backward pass, so no gradient of a big
weight is ever formed. :func:`train_encoder` trains either path with full-batch SGD on the logistic
loss, as the paper does.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .engines import divergence_rule
from .validation import ArgumentTypeError, check_choice, check_dtype, check_int, check_number

__all__ = ["EncoderReference", "fast_forward", "sgd_step", "ONEDNN", "make_encoder", "train_encoder",
           "EncoderRun", "step_flops", "attention_by_type", "dynamics_figure", "grid_figure",
           "boundary_figure", "load_grid", "encoder_cell", "run_encoder_grid", "save_run", "load_runs"]


class EncoderReference(nn.Module):
    """The one-layer encoder, literally: every position goes through every block.

    ``forward(X)`` takes X of shape (n, T, d) and returns ``(logits (n,), attention (n, T + 1, T + 1))``
    where ``attention[:, 0]`` is the [CLS] row (position 0 is [CLS], 1..T the data tokens).
    See :ref:`sec-encoder-architecture`. ``d`` and ``mlp_dim`` integers >= 1; raises ValueError
    otherwise."""

    def __init__(self, d, mlp_dim=2000):
        super().__init__()
        d = check_int("d", d, low=1)
        mlp_dim = check_int("mlp_dim", mlp_dim, low=1)
        self.d, self.mlp_dim = d, mlp_dim
        self.cls = nn.Parameter(torch.randn(d))
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, mlp_dim)
        self.fc2 = nn.Linear(mlp_dim, d)
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, 1)

    def forward(self, X):
        n = X.shape[0]
        Z = torch.cat([self.cls.expand(n, 1, self.d), X], dim=1)        # (n, T+1, d)
        q, k, v = self.qkv(self.ln1(Z)).chunk(3, dim=-1)                   # each (n, T+1, d)
        A = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(self.d), dim=-1)  # (n, T+1, T+1)
        Z = Z + A @ v
        Z = Z + self.fc2(F.gelu(self.fc1(self.ln2(Z))))
        logits = self.head(self.ln_f(Z))[:, 0, 0]                          # the [CLS] position
        return logits, A


def _ln(m, x):
    return F.layer_norm(x, (x.shape[-1],), m.weight, m.bias, m.eps)


def fast_forward(model, X):
    """The same function as ``model(X)`` on the [CLS] position only, in the cheaper contraction order.

    Returns ``(logits (n,), cls_attention (n, T + 1))``: the [CLS] row of the attention (position 0
    is [CLS] itself). Why this is enough: :ref:`sec-encoder-cls`. Raises ValueError unless
    ``model`` is an :class:`EncoderReference` and ``X`` has shape (n, T, d)."""
    _check_model_X(model, X)
    return _cls_forward(model, X, lr=None)


def _check_model_X(model, X):
    if not isinstance(model, EncoderReference):
        raise ArgumentTypeError(f"model must be an EncoderReference, got {type(model).__name__}")
    if not isinstance(X, torch.Tensor):
        raise ArgumentTypeError(f"X must be a torch tensor of shape (n, T, d={model.d}), got {type(X).__name__}")
    if X.dim() != 3 or X.shape[2] != model.d:
        raise ValueError(f"X must have shape (n, T, d={model.d}), got {tuple(X.shape)}")
    dtype = model.qkv.weight.dtype
    if X.dtype != dtype:
        raise ArgumentTypeError(f"X must have the model's dtype {dtype}, got {X.dtype} (convert it with .to({dtype}))")


def _cls_forward(model, X, lr):
    # lr None: plain products, autograd computes every gradient. lr a number: the five d x d products
    # go through _SGDMatmul, whose backward takes the SGD step on its weight in place.
    d = model.d
    Wq, Wk, Wv = model.qkv.weight.view(3, d, d).unbind(0)   # row blocks of one (3d, d) weight
    h0 = _ln(model.ln1, model.cls)                   # (d,)   LN of [CLS], the same for every sample
    H = _ln(model.ln1, X)                            # (n, T, d)
    q = _matmul(h0, Wq, lr)                          # (d,)   W_q h0: the one query that reaches the loss
    kq = _matmul(q, Wk, lr, transposed=True) / math.sqrt(d)   # (d,)   W_k^T q / sqrt(d)
    scores = torch.cat([(h0 @ kq).expand(X.shape[0], 1), H @ kq], dim=1)   # (n, T+1)
    s = torch.softmax(scores, dim=-1)
    pooled = s[:, :1] * h0 + torch.einsum("nt,ntd->nd", s[:, 1:], H)      # sum_t s_t LN(z_t)
    z = model.cls + _matmul(pooled, Wv, lr)                              # (n, d)
    a = _matmul(_ln(model.ln2, z), model.fc1.weight, lr) + model.fc1.bias
    z = z + _matmul(F.gelu(a), model.fc2.weight, lr) + model.fc2.bias
    logits = model.head(_ln(model.ln_f, z))[:, 0]
    return logits, s


#: Whether the float32 fast step (:func:`sgd_step`) computes its matrix products with oneDNN
#: (``torch.ops.mkldnn._linear_pointwise``) rather than torch's default float32 matmul (MKL on x86).
#: True where this torch build has oneDNN. Set it to False to compare; see :ref:`sec-encoder-cls`.
ONEDNN = bool(torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


def _xwt(x, W):
    """x @ W^T for x of shape (d_in,) or (r, d_in) and W (d_out, d_in)."""
    global ONEDNN
    if ONEDNN and x.dtype == torch.float32 and x.device.type == "cpu":
        # At r = n = 20 rows (and r = 1) oneDNN runs these products faster than the default float32
        # matmul on the machine we measured (benchmarks/bench_encoder.py: fast vs fast_default_matmul).
        try:
            y = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, x.shape[-1]).contiguous(), W, None, "none", [], "")
        except (RuntimeError, NotImplementedError):   # a build whose oneDNN lacks this op: never again
            ONEDNN = False
        else:
            return y.reshape(W.shape[0]) if x.dim() == 1 else y
    return torch.mv(W, x) if x.dim() == 1 else x @ W.t()


class _SGDMatmul(torch.autograd.Function):
    """``x @ W^T`` (or ``x @ W`` when transposed) whose backward returns the gradient for ``x`` and
    then takes the SGD step on ``W`` in place: ``W -= lr * dW``, with ``dW`` applied in its factored
    form (rank <= rows of ``x``) by one ``addmm_``, never materialised.

    Safe because every weight enters the [CLS] forward exactly once, so no later backward node reads
    it. W is kept on ``ctx`` (not saved): three of the five weights are views of one tensor, and an
    update of one would otherwise trip autograd's version check on the others."""

    @staticmethod
    def forward(ctx, x, W, transposed, lr):
        ctx.save_for_backward(x)
        ctx.W, ctx.transposed, ctx.lr = W, transposed, lr
        return _xwt(x, W.t() if transposed else W)

    @staticmethod
    def backward(ctx, dy):
        (x,), W, lr = ctx.saved_tensors, ctx.W, ctx.lr
        dx = _xwt(dy, W if ctx.transposed else W.t())
        U, V = (x, dy) if ctx.transposed else (dy, x)   # dW = U^T V (an outer product for vectors)
        with torch.no_grad():
            if x.dim() == 1:
                W.addr_(U, V, alpha=-lr)
            else:
                W.addmm_(U.t(), V, alpha=-lr)
        return dx, None, None, None


def _matmul(x, W, lr, transposed=False):
    if lr is None:
        return x @ W if transposed else x @ W.t()
    return _SGDMatmul.apply(x, W, transposed, lr)


_BIG = ("qkv.weight", "fc1.weight", "fc2.weight")


def sgd_step(model, X, y, lr):
    """One full-batch SGD step on every parameter of ``model`` (logistic loss on labels ``y``), on the
    [CLS]-only path; returns ``(loss, logits, cls_attention)`` before the step.

    The same step as ``torch.optim.SGD`` on the loss of :func:`fast_forward` (tested to round-off),
    but faster: the gradients of the five d x d blocks (the three of ``qkv``, and ``fc1``, ``fc2``;
    all but about 20 thousand of the 20 M parameters at paper scale) have rank at most ``n``, and each
    is applied in place during the backward pass, just after the block was read for its input's
    gradient, instead of being materialised and then read again by the optimizer. The small
    parameters take their step after the backward pass. See :ref:`sec-encoder-cls`.

    Everything is checked before the model is touched (a bad input never changes a parameter):
    raises ValueError unless ``model`` is an :class:`EncoderReference`, ``X``
    a finite tensor of shape (n, T, d) and the model's dtype, ``y`` a tensor of shape (n,) and that
    dtype holding only the labels -1 and +1, and ``lr`` > 0 and representable in that dtype
    (:class:`~benign_attention.validation.ArgumentTypeError` for a wrong kind or dtype)."""
    from .validation import check_lr_dtype
    _check_model_X(model, X)
    if not isinstance(y, torch.Tensor) or y.shape != X.shape[:1]:
        raise ValueError(f"y must be a tensor of shape (n,) = ({X.shape[0]},), got "
                         f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}")
    lr = check_number("lr", lr, low=0, low_open=True)
    dtype = model.qkv.weight.dtype
    for name, t in (("y", y),):
        if t.dtype != dtype:
            raise ArgumentTypeError(f"{name} must have the model's dtype {dtype}, got {t.dtype} (convert it with "
                                    f".to({dtype}))")
    check_lr_dtype(lr, dtype)
    if not bool(torch.isfinite(X).all()):
        raise ValueError(f"X must be finite (no NaN or inf): {int((~torch.isfinite(X)).sum())} non-finite value(s)")
    if not bool(((y == 1) | (y == -1)).all()):
        raise ValueError("y must contain only the labels -1 and +1")
    small = [p for k, p in model.named_parameters() if k not in _BIG]
    logits, s = _cls_forward(model, X, lr)
    loss = F.softplus(-y * logits).mean()
    grads = torch.autograd.grad(loss, small)   # the big weights step inside this call
    with torch.no_grad():
        for p, g in zip(small, grads):
            p.add_(g, alpha=-lr)
    return loss.detach(), logits.detach(), s.detach()


def make_encoder(d, mlp_dim=2000, seed=0, dtype="float32"):
    """An :class:`EncoderReference` with PyTorch's default initialisation drawn from ``seed``
    (in float64, then cast, so that float32 and float64 models start from the same numbers). The
    global torch random state is left untouched. ``d`` and ``mlp_dim`` >= 1, ``seed`` >= 0,
    ``dtype`` float32 or float64; raises ValueError (naming the argument) otherwise."""
    seed = check_int("seed", seed, low=0)
    dtype = check_dtype("dtype", dtype)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        prev = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            model = EncoderReference(d, mlp_dim)
        finally:
            torch.set_default_dtype(prev)
    return model.to(dtype)


def step_flops(n, T, d, mlp_dim, path="fast"):
    """Multiply-adds of one forward pass on the training set (the backward costs about twice that).

    reference: n (T+1) (3 d^2 + 2 d mlp_dim) + 2 n (T+1)^2 d;
    fast:      2 d^2 + n (d^2 + 2 d mlp_dim) + 3 n T d (two LayerNorm/score/pooling passes).

    The costs compared in :ref:`sec-encoder-cls`. Sizes must be integers >= 1 and ``path``
    ``"fast"`` or ``"reference"``; raises ValueError otherwise."""
    n, T, d, mlp_dim = (check_int(k, v, low=1) for k, v in (("n", n), ("T", T), ("d", d), ("mlp_dim", mlp_dim)))
    path = check_choice("path", path, ("fast", "reference"))
    if path == "reference":
        return n * (T + 1) * (3 * d * d + 2 * d * mlp_dim) + 2 * n * (T + 1) ** 2 * d
    return 2 * d * d + n * (d * d + 2 * d * mlp_dim) + 3 * n * T * d


@dataclass
class EncoderRun:
    """History of one training run: ``steps`` (E,) and ``history`` with ``train_loss``,
    ``train_acc`` (observed labels), ``train_clean_acc``, ``test_loss``, ``test_acc`` (E,),
    ``train_attention`` (E, n, T) the [CLS] row over the data tokens, ``test_attention`` (E, T) its
    mean over test samples; ``seconds`` the wall time; ``config`` the knobs."""

    steps: np.ndarray
    history: dict
    seconds: float
    config: dict = field(default_factory=dict)
    #: None, or the step by which SGD diverged: every metric is NaN from there on (the package's one
    #: rule, :func:`~benign_attention.engines.divergence_rule`; the run warns DivergenceWarning)
    diverged_at: int | None = None

    @property
    def diverged(self) -> bool:
        """True if the loss or the parameters became NaN or inf (metrics from then on are NaN)."""
        return self.diverged_at is not None

    def final(self, key):
        """History value at the last recorded step (the same verb as
        :meth:`Run.final <benign_attention.engines.Run.final>`)."""
        return self.history[self._key(key)][-1]

    def at(self, key, step):
        """History value at the recorded step closest to ``step`` (the same verb as
        :meth:`Run.at <benign_attention.engines.Run.at>`)."""
        step = check_number("step", step)
        return self.history[self._key(key)][int(np.argmin(np.abs(np.asarray(self.steps) - step)))]

    def _key(self, key):
        if not isinstance(key, str) or key not in self.history:
            raise ValueError(f"key must be one of the recorded metrics {sorted(self.history)}, got {key!r}")
        return key


def _forward(model, X, path):
    if path == "fast":
        return fast_forward(model, X)
    logits, A = model(X)
    return logits, A[:, 0]


def train_encoder(ds, steps=1000, lr=5e-3, record_every=10, mlp_dim=2000, seed=0, dtype="float32",
                  path="fast", test_every=None):
    """Full-batch SGD on every parameter of the encoder (logistic loss on the observed labels).

    ``ds`` a :class:`~benign_attention.data.Dataset`; records every ``record_every`` steps (and the
    last) the training metrics and attention, and the test metrics every ``test_every`` steps
    (default ``record_every``; NaN in between). ``path`` 'fast' or 'reference' (same numbers).

    The runs of :ref:`sec-encoder-dynamics`.

    Parameters
    ----------
    ds : benign_attention.data.Dataset
    steps : int
        Gradient steps, >= 0.
    lr : float
        Learning rate, > 0.
    record_every : int
        Steps between records, >= 1.
    mlp_dim : int
        Width of the feed-forward block, >= 1.
    seed : int
        Seed of the initialisation (:func:`make_encoder`), >= 0.
    dtype : str or torch.dtype
        float32 or float64.
    path : str
        ``"fast"`` (:func:`sgd_step`: the [CLS]-only path with in-place factored updates) or
        ``"reference"`` (:class:`EncoderReference` and ``torch.optim.SGD``); the same numbers to
        round-off.
    test_every : int, optional
        Steps between test evaluations.

    Returns
    -------
    EncoderRun

    Raises
    ------
    ValueError
        An argument is out of range or of the wrong kind (the message names it).
    """
    from .engines import check_dataset
    from .validation import check_lr_dtype
    ds = check_dataset("ds", ds)
    steps = check_int("steps", steps, low=0)
    lr = check_number("lr", lr, low=0, low_open=True)
    record_every = check_int("record_every", record_every, low=1)
    test_every = record_every if test_every is None else check_int("test_every", test_every, low=1)
    path = check_choice("path", path, ("fast", "reference"))
    tdt = check_dtype("dtype", dtype)
    check_lr_dtype(lr, tdt)
    mlp_dim = check_int("mlp_dim", mlp_dim, low=1)
    dtype_name = str(tdt).replace("torch.", "")
    model = make_encoder(ds.d, mlp_dim, seed, dtype_name)
    X, y = torch.tensor(np.asarray(ds.X), dtype=tdt), torch.tensor(np.asarray(ds.y), dtype=tdt)
    y_clean = torch.tensor(np.asarray(ds.y_clean), dtype=tdt)
    has_test = ds.X_test is not None
    if has_test:
        Xt, yt = torch.tensor(np.asarray(ds.X_test), dtype=tdt), torch.tensor(np.asarray(ds.y_test), dtype=tdt)
    opt = torch.optim.SGD(model.parameters(), lr=lr) if path == "reference" else None
    keys = ("train_loss", "train_acc", "train_clean_acc", "test_loss", "test_acc")
    hist = {k: [] for k in keys + ("train_attention", "test_attention")}
    rec = []
    start = time.perf_counter()
    for step in range(steps + 1):
        record = step % record_every == 0 or step == steps
        if record and has_test and (step % test_every == 0 or step == steps):
            with torch.no_grad():   # before this step's update, like the training metrics
                lt, st = fast_forward(model, Xt)
                test = (F.softplus(-yt * lt).mean().item(), (torch.sign(lt) == yt).to(tdt).mean().item(),
                        st[:, 1:].mean(0).double().numpy())
        elif record:
            test = (np.nan, np.nan, np.full(ds.T, np.nan))
        if path == "fast" and step < steps:
            loss, logits, s = sgd_step(model, X, y, lr)   # metrics of the parameters before the step
        else:
            with torch.set_grad_enabled(step < steps):
                logits, s = _forward(model, X, path)
                loss = F.softplus(-y * logits).mean()
            if step < steps:
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        if record:
            rec.append(step)
            with torch.no_grad():
                hist["train_loss"].append(loss.item())
                hist["train_acc"].append((torch.sign(logits) == y).to(tdt).mean().item())
                hist["train_clean_acc"].append((torch.sign(logits) == y_clean).to(tdt).mean().item())
                hist["train_attention"].append(s[:, 1:].detach().double().numpy().copy())
            for k, v in zip(("test_loss", "test_acc", "test_attention"), test):
                hist[k].append(v)
    seconds = time.perf_counter() - start
    history = {k: np.asarray(v, float) for k, v in hist.items()}
    at = divergence_rule("train_encoder", lr, rec, history, state=[p.detach() for p in model.parameters()])
    config = dict(ds.config, steps=steps, lr=lr, mlp_dim=mlp_dim, seed=seed, dtype=dtype_name, path=path)
    return EncoderRun(np.asarray(rec), history, seconds, config, at)


def save_run(run, out, name):
    """Store ``run`` (an :class:`EncoderRun`) as the cell file ``<name>.json`` in the folder ``out``,
    through the book's one cell cache (:class:`~benign_attention.cache.CellCache`: atomic,
    checksummed, with provenance); its ``config`` is the cell's parameters. Returns the file's path.
    :func:`load_runs` reads it back, bit for bit. The stored runs of :ref:`sec-encoder-paper-scale`."""
    from .cache import CellCache
    if not isinstance(run, EncoderRun):
        raise ArgumentTypeError(f"run must be an EncoderRun (from train_encoder), got {type(run).__name__}")
    arrays = {"steps": np.asarray(run.steps), **{f"history.{k}": np.asarray(v) for k, v in run.history.items()}}
    return CellCache(out, "out").save(name, dict(run.config), record={"seconds": float(run.seconds),
                                                                      "diverged_at": run.diverged_at}, arrays=arrays)


def load_runs(folder):
    """``{name: EncoderRun}`` for every run that :func:`save_run` stored in ``folder`` (sorted by
    name; corrupt files are left out with a :class:`~benign_attention.cache.CacheWarning`). Raises
    ValueError if ``folder`` is not an existing directory."""
    from .cache import CellCache
    from .validation import check_path
    folder = check_path("folder", folder)
    if not folder.is_dir():
        raise ValueError(f"folder must be an existing directory, got {str(folder)!r}")
    import warnings

    from .cache import CacheWarning
    runs = {}
    for cell in CellCache(folder, "folder").cells():
        if "steps" not in cell.arrays:
            continue   # another kind of cell (a grid cell): not a stored run
        steps = cell.arrays["steps"]
        history = {k.split(".", 1)[1]: v for k, v in cell.arrays.items() if k.startswith("history.")}
        seconds = cell.record.get("seconds")
        ok = (steps.ndim == 1 and "train_loss" in history and isinstance(seconds, (int, float))
              and all(v.shape[:1] == steps.shape for v in history.values()))
        if not ok:
            warnings.warn(CacheWarning(f"folder: {str(cell.path)!r} is not a run stored by save_run (its arrays do "
                                       f"not match its {len(steps)} steps, or it has no train_loss or seconds); "
                                       f"it is left out"), stacklevel=2)
            continue
        at = cell.record.get("diverged_at")
        runs[cell.path.stem] = EncoderRun(steps, history, seconds, dict(cell.params),
                                          at if isinstance(at, int) else None)
    return runs


# --- Figures (chapter *A full transformer encoder*) ---------------------------------------------


def attention_by_type(run, mask):
    """(E, 5) mean over the training samples in ``mask`` of the [CLS] attention on x_1, x_2, x_3, on
    all irrelevant tokens together, and on [CLS] itself (1 minus the rest).

    ``run`` an :class:`EncoderRun`, ``mask`` a boolean mask over its training samples; raises
    ValueError otherwise. Shown in :ref:`sec-encoder-dynamics`."""
    if not isinstance(run, EncoderRun):
        raise TypeError(f"run must be an EncoderRun (from train_encoder), got {type(run).__name__}")
    A = np.asarray(run.history["train_attention"], float)
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.shape != A.shape[1:2]:
        raise ValueError(f"mask must be a boolean array of length {A.shape[1]} (one entry per training "
                         f"sample), got dtype {mask.dtype} and shape {mask.shape}")
    A = A[:, mask]   # (E, k, T)
    groups = np.concatenate([A[..., :3], A[..., 3:].sum(-1, keepdims=True)], -1).mean(1)
    return np.concatenate([groups, 1 - groups.sum(-1, keepdims=True)], -1)


def dynamics_figure(settings):
    """``settings``: {title: (run, ds)}. Columns: settings. Rows: mean [CLS] attention of the clean
    and of the noisy training samples by token type; train (observed labels) and test accuracy;
    train and test loss (log scale)."""
    import matplotlib.pyplot as plt
    from .plots import TOKEN_COLORS, TOKEN_GROUPS, TOKEN_LABELS, subplots, legend_below
    if not isinstance(settings, dict) or not settings:
        raise ValueError("settings must be a non-empty dict {title: (run, ds)}")
    fig, axes = subplots(len(settings), 4, width=2.4, height=1.75)
    for c, (title, (run, ds)) in enumerate(settings.items()):
        x = run.steps
        for r, noisy in enumerate((False, True)):
            ax = axes[r, c]
            att = attention_by_type(run, ds.noisy == noisy)
            for g, name in enumerate(TOKEN_GROUPS):
                ax.plot(x, att[:, g], color=TOKEN_COLORS[name], label=TOKEN_LABELS[name])
            ax.plot(x, att[:, 4], color="k", ls=":", label="[CLS] itself")
            ax.set(ylim=(-0.03, 1.03), title=title if r == 0 else None)
        ax = axes[2, c]
        ax.plot(x, run.history["train_acc"], color="k", label="train (observed labels)")
        t = np.isfinite(run.history["test_acc"])
        ax.plot(x[t], run.history["test_acc"][t], color="#ff7f0e", label="test")
        ax.set(ylim=(0.4, 1.03))
        ax = axes[3, c]
        ax.plot(x, run.history["train_loss"], color="k")
        ax.plot(x[t], run.history["test_loss"][t], color="#ff7f0e")
        ax.set(yscale="log", xlabel="SGD step")
    for r, label in enumerate(("clean samples:\nattention", "noisy samples:\nattention", "accuracy", "loss")):
        axes[r, 0].set_ylabel(label)
    for ax in axes.flat:
        ax.tick_params(labelsize=8)
        ax.title.set_fontsize(8)
        ax.yaxis.label.set_fontsize(8)
        ax.xaxis.label.set_fontsize(8)
    h, lab = axes[0, 0].get_legend_handles_labels()
    h2, lab2 = axes[2, 0].get_legend_handles_labels()
    legend_below(fig, h + h2, lab + lab2, ncol=4, fontsize=8)
    plt.close(fig)  # the display convention: see benign_attention.display
    return fig


def grid_figure(d_values, mu_values, train_loss, test_loss, title=""):
    """Train and test loss maps (each (len(d_values), len(mu_values))) after training, one column per
    d and one row per ||mu|| in grid order (not to scale); NaN cells (not computed) are left blank."""
    import matplotlib.pyplot as plt
    from .plots import subplots
    shape = (len(d_values), len(mu_values))
    for name, m in (("train_loss", train_loss), ("test_loss", test_loss)):
        if np.shape(m) != shape:
            raise ValueError(f"{name} must have shape (len(d_values), len(mu_values)) = {shape}, "
                             f"got {np.shape(m)}")
    fig, axes = subplots(2, width=3.6, height=3.0)
    xi, yi = np.arange(len(d_values)), np.arange(len(mu_values))
    for ax, m, name in zip(axes[0], (train_loss, test_loss), ("train loss", "test loss")):
        im = ax.pcolormesh(np.r_[xi - 0.5, xi[-1] + 0.5], np.r_[yi - 0.5, yi[-1] + 0.5],
                           np.ma.masked_invalid(np.asarray(m, float).T), cmap="viridis", shading="flat")
        fig.colorbar(im, ax=ax, shrink=0.9)
        ax.set_xticks(xi, [str(int(v)) for v in d_values], fontsize=8, rotation=90)
        every = 1 if len(mu_values) <= 14 else 2   # labels that do not run together
        ax.set_yticks(yi[::every], [f"{v:g}" for v in mu_values][::every], fontsize=8)
        ax.set(xlabel="$d$", ylabel=r"$\|\mu\|$", title=f"{name}{title}")
    plt.close(fig)  # the display convention: see benign_attention.display
    return fig


def boundary_figure(d_values, boundaries, threshold=0.1):
    """The signal strength at which the test loss crosses ``threshold``, against d: ``boundaries``
    is ``{label: values}`` with one value per entry of ``d_values`` (NaN where not computed), one line
    with markers per label (e.g. per seed). Shown in :ref:`sec-encoder-grid`."""
    import matplotlib.pyplot as plt
    from .plots import legend_below, subplots
    d_values = np.asarray(d_values, float)
    if not isinstance(boundaries, dict) or not boundaries:
        raise ValueError("boundaries must be a non-empty dict {label: one value per d}")
    for label, b in boundaries.items():
        if np.shape(b) != d_values.shape:
            raise ValueError(f"boundaries[{label!r}] must have one value per d ({len(d_values)}), got shape {np.shape(b)}")
    fig, axes = subplots(1, width=4.2, height=2.8)
    ax = axes[0, 0]
    for (label, b), marker in zip(boundaries.items(), "os^vDP"):
        b = np.asarray(b, float)
        ok = np.isfinite(b)
        ax.plot(d_values[ok], b[ok], marker=marker, ms=5, lw=1, label=label)
    ax.set(xlabel="$d$", ylabel=rf"$\|\mu\|$ where test loss = {threshold:g}")
    legend_below(fig, *ax.get_legend_handles_labels(), ncol=len(boundaries), fontsize=8)
    plt.close(fig)  # the display convention: see benign_attention.display
    return fig


#: The numeric results every encoder cell record holds (the ``keys`` :func:`load_grid` can map).
RECORD_KEYS = ("train_loss", "train_acc", "train_clean_acc", "test_loss", "test_acc", "noisy_attention_x3",
               "clean_attention_x1", "seconds")
#: The training settings of a cell besides (d, ||mu||, seed): one grid map holds one setting only.
SETTING_KEYS = ("steps", "lr", "mlp_dim", "dtype")


def load_grid(folder, keys=("train_loss", "test_loss", "test_acc", "train_acc", "seconds"), seed=0, steps=None):
    """Read the encoder grid's cell files of one ``seed`` (``d*_mu*_seed<seed>.json``, see
    :func:`run_encoder_grid`) from ``folder``.

    Returns ``(d_values, mu_values, maps, records)``: sorted grid values, ``maps[key]`` arrays of
    shape (len(d_values), len(mu_values)) with NaN where a cell is missing, and the records (each with
    its ``provenance``). Partial or corrupt files, and files that are not encoder cells, are left out
    with a :class:`~benign_attention.cache.CacheWarning`. The grid of :ref:`sec-encoder-grid`.

    ``keys``: a list of names from ``RECORD_KEYS``. ``steps``: keep only the cells trained for
    that many steps (None: all). The cells mapped must share one training setting (steps, lr,
    mlp_dim, dtype): cells of different settings are never merged into one map; a folder that mixes
    them raises ValueError naming the settings found (pass ``steps`` to pick one)."""
    import warnings

    from .cache import CacheWarning, CellCache
    from .validation import check_path
    folder = check_path("folder", folder)
    seed = check_int("seed", seed, low=0)
    steps = None if steps is None else check_int("steps", steps, low=0)
    if isinstance(keys, str) or not hasattr(keys, "__iter__"):
        raise ArgumentTypeError(f"keys must be a list of record names from {RECORD_KEYS}, got {keys!r}")
    keys = list(keys)
    for k in keys:
        if not isinstance(k, str) or k not in RECORD_KEYS:
            raise ValueError(f"keys must name results of an encoder cell {RECORD_KEYS}, got {k!r}")
    if not folder.is_dir():
        raise ValueError(f"folder must be an existing directory, got {str(folder)!r}")
    recs = []
    for c in CellCache(folder, "folder").cells(f"d*_mu*_seed{seed}.json"):
        r = c.record
        ok = (c.params.get("experiment") == "encoder" and all(k in r for k in ("d", "signal_norm") + SETTING_KEYS)
              and all(isinstance(r.get(k), (int, float)) for k in RECORD_KEYS if k in r))
        if not ok:
            warnings.warn(CacheWarning(f"folder: {str(c.path)!r} is not an encoder grid cell; it is left out"),
                          stacklevel=2)
            continue
        if steps is None or r["steps"] == steps:
            recs.append(dict(r, provenance=c.provenance))
    settings = sorted({tuple(r[k] for k in SETTING_KEYS) for r in recs}, key=str)
    if len(settings) > 1:
        found = "; ".join(", ".join(f"{k}={v}" for k, v in zip(SETTING_KEYS, st)) for st in settings)
        raise ValueError(f"folder {str(folder)!r} holds cells of {len(settings)} training settings ({found}); "
                         f"one map holds one setting: pass steps= to choose")
    d_values = np.array(sorted({r["d"] for r in recs}), dtype=int)
    mu_values = np.array(sorted({r["signal_norm"] for r in recs}), dtype=float)
    maps = {k: np.full((len(d_values), len(mu_values)), np.nan) for k in keys}
    for r in recs:
        i, j = np.searchsorted(d_values, r["d"]), np.searchsorted(mu_values, r["signal_norm"])
        for k in keys:
            maps[k][i, j] = r.get(k, np.nan)
    return d_values, mu_values, maps, recs


# --- The stored grid (scripts/encoder_grid.py) -------------------------------------------------


def _cell_name(d, mu, seed):
    return f"d{int(d)}_mu{float(mu):g}_seed{int(seed)}"


def _cell_params(d, mu, seed, steps, lr, mlp_dim, dtype):
    return {"experiment": "encoder", "d": int(d), "signal_norm": float(mu), "seed": int(seed), "steps": int(steps),
            "lr": float(lr), "mlp_dim": int(mlp_dim), "dtype": str(dtype)}


def encoder_cell(d, mu, out, seed=0, steps=1000, lr=5e-3, mlp_dim=2000, dtype="float32", threads=1):
    """Train one cell of the encoder grid and store it in the folder ``out``.

    The cell is ``make_dataset(d=d, signal_norm=mu, seed=seed)`` (paper defaults otherwise), trained by
    :func:`train_encoder` for ``steps`` SGD steps on ``threads`` torch threads. Its record (final train
    and test loss and accuracy, the [CLS] attention of noisy samples on x_3 and of clean samples on
    x_1, wall seconds) is written with its provenance through the book's one cell cache
    (:class:`~benign_attention.cache.CellCache`: atomic, checksummed), where this function runs.

    Returns
    -------
    dict
        The record, with its ``provenance``. A cell already stored with the same parameters is not
        computed again (its stored record is returned): a task that Dask runs again after a worker
        died finds it. See :ref:`sec-encoder-cluster`.
    """
    return _encoder_cell(d, mu, out, seed, steps, lr, mlp_dim, dtype, threads)


def _encoder_cell(d, mu, out, seed=0, steps=1000, lr=5e-3, mlp_dim=2000, dtype="float32", threads=1, quiet=False):
    import warnings
    from .cache import CacheWarning, CellCache, provenance
    from .data import make_dataset
    d, seed, threads = check_int("d", d, low=1), check_int("seed", seed, low=0), check_int("threads", threads, low=1)
    mu = check_number("mu", mu, low=0)
    steps, mlp_dim = check_int("steps", steps, low=0), check_int("mlp_dim", mlp_dim, low=1)
    lr = check_number("lr", lr, low=0, low_open=True)
    dtype = str(check_dtype("dtype", dtype)).replace("torch.", "")
    cache, name = CellCache(out, "out"), _cell_name(d, mu, seed)
    params = _cell_params(d, mu, seed, steps, lr, mlp_dim, dtype)
    with warnings.catch_warnings():
        if quiet:  # the caller has checked (and warned about) this cell already
            warnings.simplefilter("ignore", CacheWarning)
        stored = cache.load(name, params)
    if stored is not None:
        return dict(stored.record, provenance=stored.provenance)
    ds = make_dataset(d=d, signal_norm=mu, seed=seed)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        run = train_encoder(ds, steps=steps, lr=lr, record_every=max(steps, 1), test_every=max(steps, 1),
                            mlp_dim=mlp_dim, seed=seed, dtype=dtype)
        used = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    att = run.history["train_attention"][-1]
    rec = {
        "d": d, "signal_norm": float(mu), "seed": seed, "steps": steps, "lr": lr, "mlp_dim": mlp_dim,
        "dtype": dtype, "n": ds.n, "T": ds.T, "n_test": ds.n_test, "data_fingerprint": ds.fingerprint,
        **{k: float(run.history[k][-1]) for k in ("train_loss", "train_acc", "train_clean_acc", "test_loss",
                                                   "test_acc")},
        "noisy_attention_x3": float(att[ds.noisy, 2].mean()), "clean_attention_x1": float(att[~ds.noisy, 0].mean()),
        "seconds": run.seconds, "diverged_at": run.diverged_at,
    }
    prov = provenance("cpu", used)
    try:
        cache.save(name, params, record=rec, provenance=prov)
    except OSError as err:   # as the other grids: warn and keep the finished result
        warnings.warn(CacheWarning(f"out: could not write the cell file {str(cache.path(name))!r} ({err}); the "
                                   f"cell is returned but not stored"), stacklevel=2)
    return dict(rec, provenance=prov)


def _check_cell_record(rec, d, mu, seed, steps):
    """Raise :class:`~benign_attention.parallel.ExecutorError` unless ``rec`` is the record of the
    cell (d, mu, seed, steps) (what an executor returned for that cell's job)."""
    from .parallel import ExecutorError
    want = {"d": d, "signal_norm": float(mu), "seed": seed, "steps": steps}
    if not isinstance(rec, dict) or any(rec.get(k) != v for k, v in want.items()):
        got = {k: rec.get(k) for k in want} if isinstance(rec, dict) else type(rec).__name__
        raise ExecutorError(f"executor: the job of the cell {want} returned the result of {got}")


def run_encoder_grid(d_values, mu_values, out, seed=0, steps=1000, threads=1, executor=None, progress=None):
    """Compute the missing cells of the encoder's (d, ||mu||) grid into the folder ``out``.

    Parameters
    ----------
    d_values : list
        The grid's values of d (integers >= 1); cells run cheapest (small d) first.
    mu_values : list
        The grid's signal norms ||mu|| (numbers >= 0); every d runs with every one. A value given
        twice (in either list) is one cell, computed and returned once; two values whose cell files
        would share a name (equal to 6 significant digits) raise ValueError.
    out : str or Path
        The cell folder (the book's one cell cache, :class:`~benign_attention.cache.CellCache`).
        Cells stored there with the same parameters are skipped, so a stopped run resumes; corrupt
        ones warn (:class:`~benign_attention.cache.CacheWarning`) and are computed again.
    seed, steps, threads
        As in :func:`encoder_cell`.
    executor : concurrent.futures.Executor, optional
        Where the cells run: None runs them here, one after the other; any ``concurrent.futures``-style
        executor (``submit`` returning futures: :func:`~benign_attention.parallel.process_pool`, or a ``dask.distributed`` Client's
        ``get_executor()``) runs them there. Each cell writes its own file where it runs, so ``out``
        must be a folder that the workers share. See :ref:`sec-encoder-cluster`.
    progress : callable, optional
        Called with each new record.

    Returns
    -------
    list of dict
        The records computed by this call (the same numbers wherever they ran).
    """
    from functools import partial

    from .cache import CellCache
    from .validation import check_executor, check_int_array
    executor = check_executor("executor", executor)
    if progress is not None and not callable(progress):
        raise ValueError(f"progress must be None or a callable, got {type(progress).__name__}")
    d_values = sorted({int(d) for d in check_int_array("d_values", d_values, 1)})   # a repeated value: one cell
    if (isinstance(mu_values, (str, bytes, dict)) or not hasattr(mu_values, "__iter__")
            or (isinstance(mu_values, (np.ndarray, torch.Tensor)) and mu_values.ndim != 1)):
        raise ArgumentTypeError(f"mu_values must be a list of numbers >= 0, got {mu_values!r}")
    mus = [check_number(f"mu_values[{i}]", mu, low=0) for i, mu in enumerate(mu_values)]
    if not mus:
        raise ValueError("mu_values must list at least one value")
    mu_values, names = [], {}
    for mu in mus:
        name = _cell_name(1, mu, 0)
        if name in names and names[name] != mu:
            raise ValueError(f"mu_values {names[name]!r} and {mu!r} would share one cell file ({name}...: its name keeps "
                             f"6 significant digits); give values that differ within 6 digits")
        if name not in names:
            names[name] = mu
            mu_values.append(mu)
    seed, steps = check_int("seed", seed, low=0), check_int("steps", steps, low=0)
    threads = check_int("threads", threads, low=1)
    cache = CellCache(out, "out")
    cache.clean()   # temporary files of writes killed halfway
    todo = [(d, mu) for d in d_values for mu in mu_values
            if cache.load(_cell_name(d, mu, seed), _cell_params(d, mu, seed, steps, 5e-3, 2000, "float32")) is None]
    cell = partial(_encoder_cell, out=str(cache.folder), seed=seed, steps=steps, threads=threads, quiet=True)
    if executor is not None:
        from .parallel import run_jobs
        results = run_jobs(cell, todo, executor)
    else:
        results = (cell(d, mu) for d, mu in todo)
    records = []
    for (d, mu), rec in zip(todo, results):
        _check_cell_record(rec, d, mu, seed, steps)
        records.append(rec)
        if progress is not None:
            progress(rec)
    _warn_diverged_cells("run_encoder_grid", [(f"d={r['d']}, mu={r['signal_norm']:g}", r) for r in records], 5e-3)
    return records


def _warn_diverged_cells(what, labelled, lr):
    """One DivergenceWarning for the cells (label, record) whose record has a ``diverged_at`` (their
    own warning was given where they ran, perhaps in another process)."""
    import warnings

    from .engines import DivergenceWarning
    bad = [label for label, r in labelled if isinstance(r, dict) and r.get("diverged_at") is not None]
    if bad:
        warnings.warn(DivergenceWarning(f"{what}: training diverged (NaN/inf loss) in {len(bad)} of {len(labelled)} "
                                        f"cells (e.g. {bad[0]}, lr={lr:g}); their metrics are NaN. Lower lr."),
                      stacklevel=3)
