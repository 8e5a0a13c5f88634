r"""The paper's appendix model: a one-layer transformer encoder with every parameter trained.

The architecture (:ref:`sec-encoder-architecture`):

* a learnable [CLS] token ``cls`` (:math:`x_{\mathrm{cls}}`, initialised :math:`\mathcal N(0, 1)`) is
  prepended to the :math:`T` data tokens;
* pre-norm single-head attention: ``ln1`` -> one bias-free linear map ``qkv``
  (:math:`\mathbb R^d \to \mathbb R^{3d}`) to :math:`q, k, v` -> scores :math:`q^\top k / \sqrt d` ->
  softmax over all :math:`T + 1` tokens -> attention-weighted sum of the :math:`v`, added to the residual
  stream;
* a pre-norm feed-forward block ``ln2`` -> ``fc1`` (:math:`d` -> ``mlp_dim``) -> GELU -> ``fc2``
  (``mlp_dim`` -> :math:`d`), added to the residual stream;
* a final LayerNorm ``ln_f`` and a linear head ``head`` (with bias) on the [CLS] position.

It is built twice on the same parameters:

* :class:`EncoderReference` is that architecture literally (every position through every block),
  :math:`O(n(T+1)(3d^2 + 2d\,\mathrm{mlp}))` per step (:math:`\mathrm{mlp}` = ``mlp_dim``);
* :func:`fast_forward` computes only what reaches the loss: the [CLS] position. Its query
  :math:`q = W_q\,\mathrm{LN}(x_{\mathrm{cls}})` is the same for every sample, the data-token scores are
  :math:`\mathrm{LN}(x_t)^\top (W_k^\top q) / \sqrt d`, and the value is
  :math:`W_v \sum_t s_t \mathrm{LN}(x_t)` - one :math:`d \times d` product per sample instead of one per
  token. :math:`O(d^2 + n(d^2 + 2d\,\mathrm{mlp}) + nTd)` per step. Autograd
  follows the same contraction order, so gradients are cheap too.

:func:`sgd_step` is the training step on the fast path: the five :math:`d \times d` blocks' gradients
have rank at most :math:`n`, and each block takes its SGD step in place during the backward pass, so no gradient of a big
weight is ever formed. Training is in ``benign_attention.encoder.train``.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..validation import ArgumentTypeError, check_choice, check_dtype, check_int, check_lr_dtype, check_number

__all__ = ["EncoderReference", "fast_forward", "sgd_step", "ONEDNN", "BIG_WEIGHTS", "MLP_DIM", "make_encoder",
           "step_flops"]

#: The paper's width of the feed-forward block (:ref:`sec-encoder-architecture`).
MLP_DIM = 2000


class EncoderReference(nn.Module):
    r"""The one-layer encoder, literally: every position goes through every block.

    ``forward(X)`` takes ``X`` of shape ``(n, T, d)`` and returns ``(logits (n,), attention (n, T + 1, T + 1))``
    where ``attention[:, 0]`` is the [CLS] row (position 0 is [CLS], 1 to :math:`T` the data tokens).
    See :ref:`sec-encoder-architecture`. ``d`` and ``mlp_dim`` integers >= 1; raises ValueError
    otherwise."""

    def __init__(self, d, mlp_dim=MLP_DIM):
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
#: True where this torch build has oneDNN. Set it to False to compare; see :ref:`sec-encoder-benchmark`.
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


#: The parameters of the five :math:`d \times d` blocks (``qkv`` holds three), which :func:`sgd_step` updates in
#: place during the backward pass; every other parameter is small (about 20 thousand of the 20 M at
#: paper scale, :ref:`sec-encoder-fused`).
BIG_WEIGHTS = ("qkv.weight", "fc1.weight", "fc2.weight")


def sgd_step(model, X, y, lr):
    r"""One full-batch SGD step on every parameter of ``model`` (logistic loss on labels ``y``), on the
    [CLS]-only path; returns ``(loss, logits, cls_attention)`` before the step.

    The same step as ``torch.optim.SGD`` on the loss of :func:`fast_forward` (tested to round-off),
    but faster: the gradients of the five :math:`d \times d` blocks (the three of ``qkv``, and ``fc1``, ``fc2``;
    all but about 20 thousand of the 20 M parameters at paper scale) have rank at most ``n``, and each
    is applied in place during the backward pass, just after the block was read for its input's
    gradient, instead of being materialised and then read again by the optimizer. The small
    parameters take their step after the backward pass. See :ref:`sec-encoder-fused`.

    Everything is checked before the model is touched (a bad input never changes a parameter):
    raises ValueError unless ``model`` is an :class:`EncoderReference`, ``X``
    a finite tensor of shape (n, T, d) and the model's dtype, ``y`` a tensor of shape (n,) and that
    dtype holding only the labels -1 and +1, and ``lr`` > 0 and representable in that dtype
    (:class:`~benign_attention.validation.ArgumentTypeError` for a wrong kind or dtype)."""
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
    small = [p for k, p in model.named_parameters() if k not in BIG_WEIGHTS]
    logits, s = _cls_forward(model, X, lr)
    loss = F.softplus(-y * logits).mean()
    grads = torch.autograd.grad(loss, small)   # the big weights step inside this call
    with torch.no_grad():
        for p, g in zip(small, grads):
            p.add_(g, alpha=-lr)
    return loss.detach(), logits.detach(), s.detach()


def make_encoder(d, mlp_dim=MLP_DIM, seed=0, dtype="float32"):
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
    r"""Multiply-adds of one forward pass on the training set (the backward costs about twice that),
    with :math:`\mathrm{mlp}` = ``mlp_dim``:

    * reference: :math:`n(T+1)(3d^2 + 2d\,\mathrm{mlp}) + 2n(T+1)^2 d`;
    * fast: :math:`2d^2 + n(d^2 + 2d\,\mathrm{mlp}) + 3nTd` (two LayerNorm/score/pooling passes).

    The costs of :ref:`sec-encoder-cls`, compared at paper scale in :ref:`sec-encoder-flops`. Sizes must be integers >= 1 and ``path``
    ``"fast"`` or ``"reference"``; raises ValueError otherwise."""
    n, T, d, mlp_dim = (check_int(k, v, low=1) for k, v in (("n", n), ("T", T), ("d", d), ("mlp_dim", mlp_dim)))
    path = check_choice("path", path, ("fast", "reference"))
    if path == "reference":
        return n * (T + 1) * (3 * d * d + 2 * d * mlp_dim) + 2 * n * (T + 1) ** 2 * d
    return 2 * d * d + n * (d * d + 2 * d * mlp_dim) + 3 * n * T * d
