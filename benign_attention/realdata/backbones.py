"""Backbones and the cached last layer, for the pretrained-transformer experiment (:ref:`sec-realdata-protocol`).

Every backbone is seen as ``prefix → last encoder layer → [CLS] → linear head``. The protocol of the
paper retrains only the last layer's query and key, so the prefix's output (the last layer's input)
and the last layer's fixed weights are computed once (:class:`Prefix`); an epoch then recomputes only
the [CLS] query row, its attention over the tokens, and what depends on it (:func:`last_layer_cls`).

Two layer layouts are supported: post-norm (BERT, MiniLM) and pre-norm with a final LayerNorm
(the small ViT and tabular transformer defined here, which ``scripts/pretrain_vit.py`` pretrains,
and Hugging Face ViTs). :func:`last_layer` reads either from a model (:ref:`sec-own-backbone`).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..validation import ArgumentTypeError, check_choice, check_int, check_int_array, check_path


def _tensor(name, t, shape=None, ndim=None):
    """Raise unless ``t`` is a real torch tensor of the given shape (None entries match any size)."""
    if not torch.is_tensor(t):
        raise ArgumentTypeError(f"{name} must be a torch tensor, got {type(t).__name__}")
    if t.is_complex() or t.dtype == torch.bool:
        raise ArgumentTypeError(f"{name} must be a real tensor, got dtype {t.dtype}")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name} must be a {ndim}-d tensor, got shape {tuple(t.shape)}")
    if shape is not None and (t.dim() != len(shape) or any(s is not None and s != u for s, u in zip(shape, t.shape))):
        want = tuple("any" if s is None else s for s in shape)
        raise ValueError(f"{name} must have shape {want}, got {tuple(t.shape)}".replace("'any'", "any"))
    return t


def _layer(layer):
    if not isinstance(layer, LastLayer):
        raise ArgumentTypeError(f"layer must be a LastLayer, got {type(layer).__name__}")
    return layer


def _check_qk(layer, wq, bq, wk, bk):
    d = layer.wq.shape[0]
    for name, t, shape in (("wq", wq, (d, d)), ("bq", bq, (d,)), ("wk", wk, (d, d)), ("bk", bk, (d,))):
        _tensor(name, t, shape)
    return d


def _check_mask(mask, n, t):
    _mask = mask
    if not torch.is_tensor(_mask):
        raise ArgumentTypeError(f"mask must be a torch tensor, got {type(mask).__name__}")
    if tuple(_mask.shape) != (n, t):
        raise ValueError(f"mask must have shape ({n}, {t}) (examples x tokens), got {tuple(_mask.shape)}")
    return _mask.bool()


# ----------------------------------------------------------------------------- the cached last layer
@dataclass
class LastLayer:
    """Fixed weights of the last encoder layer (``F.linear`` convention: weight is out × in).

    The pretrained query/key (``wq, bq, wk, bk``) are kept for reference; training replaces them.
    ``norm_first``: pre-norm (ViT) if true, post-norm (BERT) if false. ``lnf_*``: final LayerNorm
    of pre-norm encoders (None for BERT).
    """

    num_heads: int
    norm_first: bool
    eps: float
    wq: torch.Tensor
    bq: torch.Tensor
    wk: torch.Tensor
    bk: torch.Tensor
    wv: torch.Tensor
    bv: torch.Tensor
    wo: torch.Tensor
    bo: torch.Tensor
    ln1_w: torch.Tensor
    ln1_b: torch.Tensor
    w1: torch.Tensor
    b1: torch.Tensor
    w2: torch.Tensor
    b2: torch.Tensor
    ln2_w: torch.Tensor
    ln2_b: torch.Tensor
    lnf_w: torch.Tensor | None = None
    lnf_b: torch.Tensor | None = None

    def to(self, *args) -> "LastLayer":
        """A detached copy with every tensor moved/cast by ``Tensor.to(*args)`` (dtype or device)."""
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        for k, v in kw.items():
            if isinstance(v, torch.Tensor):
                kw[k] = v.detach().to(*args)
        return LastLayer(**kw)


@dataclass
class Prefix:
    """Cached activations of the frozen prefix for a set of examples.

    ``x``: the last layer's input (N×T×D); ``mask``: true for real tokens (N×T); ``xn``: the input of
    the Q/K/V projections (``x`` itself for post-norm, LayerNorm1(x) for pre-norm); ``v``: the values
    (N×heads×T×head_dim), fixed because only Q/K are trained.
    """

    x: torch.Tensor
    mask: torch.Tensor
    xn: torch.Tensor
    v: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]

    def take(self, idx) -> "Prefix":
        """The examples ``idx`` (integers in [0, len - 1])."""
        idx = check_int_array("idx", idx, 0, len(self) - 1, nonempty=False)
        idx = torch.as_tensor(np.array(idx), dtype=torch.long, device=self.x.device)
        return Prefix(self.x[idx], self.mask[idx], self.xn[idx], self.v[idx])

    def to(self, *args) -> "Prefix":
        """A copy with every tensor moved/cast by ``Tensor.to(*args)`` (dtype or device)."""
        return Prefix(*(t.to(*args) for t in (self.x, self.mask, self.xn, self.v)))


def make_prefix(x: torch.Tensor, mask: torch.Tensor, layer: LastLayer) -> Prefix:
    """Cache what the last layer needs from its input ``x`` (N×T×D) once (:ref:`sec-realdata-protocol`).

    ``mask`` (N×T) marks the real tokens; ``layer`` a :class:`LastLayer`. Returns a :class:`Prefix`;
    raises ValueError for a wrong type or shape.
    """
    layer = _layer(layer)
    width = layer.wq.shape[0]
    x = _tensor("x", x, (None, None, width))
    n, t, d = x.shape
    mask = _check_mask(mask, n, t)
    xn = F.layer_norm(x, (d,), layer.ln1_w, layer.ln1_b, layer.eps) if layer.norm_first else x
    v = F.linear(xn, layer.wv, layer.bv).view(n, t, layer.num_heads, -1).transpose(1, 2)
    return Prefix(x, mask.bool(), xn, v.contiguous())


def last_layer_cls(prefix: Prefix, layer: LastLayer, wq, bq, wk, bk):
    r"""The last layer's [CLS] output and [CLS] attention (N×heads×T) for query/key ``wq, bq, wk, bk``.

    Only the [CLS] query row :math:`q = W_q x_{\mathrm{cls}} + b_q` is computed. In head :math:`j` the
    score of token :math:`t` is

    .. math::

       a_{j,t} = \frac{q_j^\top (W_{k,j} x_t + b_{k,j})}{\sqrt{D_{\mathrm{head}}}}
               = \frac{(W_{k,j}^\top q_j)^\top x_t + q_j^\top b_{k,j}}{\sqrt{D_{\mathrm{head}}}}

    (the chapter's :eq:`eq-rd-scores`), so the keys of all tokens are never formed: the cost per epoch
    is :math:`O(NHTD)` instead of :math:`O(NTD^2)` (:math:`H` heads, :math:`N` examples).

    Returns ``(out (N×D), attention (N×heads×T))``; raises ValueError for a wrong type or shape.
    """
    if not isinstance(prefix, Prefix):
        raise ArgumentTypeError(f"prefix must be a Prefix (from make_prefix), got {type(prefix).__name__}")
    width = _check_qk(_layer(layer), wq, bq, wk, bk)
    if prefix.x.shape[-1] != width:
        raise ValueError(f"prefix has width {prefix.x.shape[-1]}, the layer {width}")
    d = prefix.x.shape[-1]
    h = layer.num_heads
    dh = d // h
    q = F.linear(prefix.xn[:, 0], wq, bq).view(-1, h, dh)  # N×H×dh
    qk = torch.einsum("nhe,hed->nhd", q, wk.view(h, dh, d))  # W_kᵀ q per head
    scores = torch.einsum("nhd,ntd->nht", qk, prefix.xn) + (q * bk.view(h, dh)).sum(-1, keepdim=True)
    scores = scores / math.sqrt(dh)
    scores = scores.masked_fill(~prefix.mask[:, None, :], float("-inf"))
    attn = torch.softmax(scores, dim=-1)
    ctx = torch.einsum("nht,nhte->nhe", attn, prefix.v).reshape(-1, d)
    return after_attention(prefix.x[:, 0], ctx, layer), attn


def after_attention(x_cls, ctx, layer: LastLayer):
    """The rest of the last layer (residual, FFN, norms) given the attention context ``ctx`` of the
    positions ``x_cls`` (any leading shape; the cached path passes only the [CLS] position).
    Raises ValueError for a wrong type or shape."""
    width = _layer(layer).wq.shape[0]
    _tensor("x_cls", x_cls)
    if x_cls.dim() < 1 or x_cls.shape[-1] != width:
        raise ValueError(f"x_cls must have shape (..., {width}), got {tuple(x_cls.shape)}")
    if _tensor("ctx", ctx).shape != x_cls.shape:
        raise ValueError(f"ctx must have the shape of x_cls {tuple(x_cls.shape)}, got {tuple(ctx.shape)}")
    d = x_cls.shape[-1]
    out = x_cls + F.linear(ctx, layer.wo, layer.bo)
    if layer.norm_first:
        u = F.layer_norm(out, (d,), layer.ln2_w, layer.ln2_b, layer.eps)
        out = out + F.linear(F.gelu(F.linear(u, layer.w1, layer.b1)), layer.w2, layer.b2)
        out = F.layer_norm(out, (d,), layer.lnf_w, layer.lnf_b, layer.eps)
    else:
        out = F.layer_norm(out, (d,), layer.ln1_w, layer.ln1_b, layer.eps)
        ffn = F.linear(F.gelu(F.linear(out, layer.w1, layer.b1)), layer.w2, layer.b2)
        out = F.layer_norm(out + ffn, (d,), layer.ln2_w, layer.ln2_b, layer.eps)
    return out


def last_layer_uncached(x, mask, layer: LastLayer, wq, bq, wk, bk):
    """The same layer computed the ordinary way, from scratch, for all tokens (reference/benchmark).

    Arguments as in :func:`make_prefix` and :func:`last_layer_cls`; raises ValueError for a wrong
    type or shape.
    """
    width = _check_qk(_layer(layer), wq, bq, wk, bk)
    n, t, d = _tensor("x", x, (None, None, width)).shape
    _check_mask(mask, n, t)
    h = layer.num_heads
    xn = F.layer_norm(x, (d,), layer.ln1_w, layer.ln1_b, layer.eps) if layer.norm_first else x

    def heads(z):
        return z.view(n, t, h, -1).transpose(1, 2)

    q, k, v = heads(F.linear(xn, wq, bq)), heads(F.linear(xn, wk, bk)), heads(F.linear(xn, layer.wv, layer.bv))
    s = (q @ k.transpose(-1, -2)) / math.sqrt(d // h)
    attn = torch.softmax(s.masked_fill(~mask.bool()[:, None, None, :], float("-inf")), dim=-1)
    out = after_attention(x, (attn @ v).transpose(1, 2).reshape(n, t, d), layer)  # every position
    return out[:, 0], attn[:, :, 0]


# ----------------------------------------------------------------------------- the repo's small encoders
class Block(nn.Module):
    """A pre-norm transformer encoder layer (multi-head self-attention + GELU MLP).

    ``dim`` a multiple of ``heads``, all integers >= 1; raises ValueError otherwise.
    """

    def __init__(self, dim: int, heads: int, mlp: int):
        super().__init__()
        dim, heads, mlp = check_int("dim", dim, 1), check_int("heads", heads, 1), check_int("mlp", mlp, 1)
        if dim % heads:
            raise ValueError(f"dim must be a multiple of heads ({heads}), got {dim}")
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.fc1, self.fc2 = nn.Linear(dim, mlp), nn.Linear(mlp, dim)

    def forward(self, x, mask=None):
        n, t, d = x.shape
        u = self.ln1(x)
        q, k, v = (m(u).view(n, t, self.heads, -1).transpose(1, 2) for m in (self.q, self.k, self.v))
        s = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)
        if mask is not None:
            s = s.masked_fill(~mask.bool()[:, None, None, :], float("-inf"))
        x = x + self.o((torch.softmax(s, -1) @ v).transpose(1, 2).reshape(n, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class Encoder(nn.Module):
    """A small pre-norm encoder with a [CLS] token: ``kind='vit'`` (image patches) or ``'tabular'``.

    ViT: a 28×28 image is cut into ``patch`` × ``patch`` patches, each linearly embedded
    (Dosovitskiy et al., 2021). Tabular: one token per feature, ``value × e_j + p_j`` with a learned
    value embedding ``e_j`` and feature-id embedding ``p_j`` of feature j.

    The backbones of MNIST and breast cancer (:ref:`sec-realdata-step1`), pretrained by
    ``scripts/pretrain_vit.py``. ``num_classes`` >= 2, sizes >= 1, ``dim`` a multiple of ``heads``
    and ``patch`` a divisor of 28; raises ValueError otherwise.
    """

    def __init__(self, kind: str, num_classes: int, dim: int = 64, depth: int = 4, heads: int = 4,
                 mlp: int = 128, patch: int = 7, num_features: int = 30):
        super().__init__()
        check_choice("kind", kind, ("vit", "tabular"))
        num_classes = check_int("num_classes", num_classes, 2)
        dim, depth, heads, mlp = (check_int(k, v, 1) for k, v in (("dim", dim), ("depth", depth), ("heads", heads),
                                                                   ("mlp", mlp)))
        patch, num_features = check_int("patch", patch, 1, 28), check_int("num_features", num_features, 1)
        if dim % heads:
            raise ValueError(f"dim must be a multiple of heads ({heads}), got {dim}")
        if kind == "vit" and 28 % patch:
            raise ValueError(f"patch must divide 28 (1, 2, 4, 7, 14 or 28), got {patch}")
        self.kind, self.patch = kind, patch
        self.config = dict(kind=kind, num_classes=num_classes, dim=dim, depth=depth, heads=heads,
                           mlp=mlp, patch=patch, num_features=num_features)
        if kind == "vit":
            tokens = (28 // patch) ** 2
            self.embed = nn.Linear(patch * patch, dim)
        elif kind == "tabular":
            tokens = num_features
            self.value_embed = nn.Parameter(torch.randn(num_features, dim) * 0.02)
        else:
            raise ValueError(f"kind must be 'vit' or 'tabular', got {kind!r}")
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def tokens(self, x):
        """Input tokens with [CLS] and position embeddings (N×T×D)."""
        _tensor("x", x)
        want = (28, 28) if self.kind == "vit" else (self.config["num_features"],)
        if x.dim() != 1 + len(want) or tuple(x.shape[1:]) != want or x.shape[0] < 1:
            raise ValueError(f"x must have shape (N, {', '.join(map(str, want))}), got {tuple(x.shape)}")
        x = x.to(self.pos.dtype)
        if self.kind == "vit":
            p = self.patch
            x = x.reshape(-1, 28 // p, p, 28 // p, p).permute(0, 1, 3, 2, 4).reshape(x.shape[0], -1, p * p)
            z = self.embed(x)
        else:
            z = x[..., None] * self.value_embed
        return torch.cat([self.cls.expand(z.shape[0], -1, -1), z], 1) + self.pos

    def prefix(self, x):
        """The last layer's input."""
        z = self.tokens(x)
        for b in self.blocks[:-1]:
            z = b(z)
        return z

    def features(self, x):
        """The [CLS] output of the final LayerNorm (what the head reads)."""
        return self.norm(self.blocks[-1](self.prefix(x)))[:, 0]

    def forward(self, x):
        return self.head(self.features(x))

    def last_layer(self) -> LastLayer:
        """The last block's fixed weights (and the final LayerNorm) as a :class:`LastLayer`."""
        b = self.blocks[-1]
        return LastLayer(
            num_heads=b.heads, norm_first=True, eps=b.ln1.eps,
            wq=b.q.weight, bq=b.q.bias, wk=b.k.weight, bk=b.k.bias, wv=b.v.weight, bv=b.v.bias,
            wo=b.o.weight, bo=b.o.bias, ln1_w=b.ln1.weight, ln1_b=b.ln1.bias,
            w1=b.fc1.weight, b1=b.fc1.bias, w2=b.fc2.weight, b2=b.fc2.bias,
            ln2_w=b.ln2.weight, ln2_b=b.ln2.bias, lnf_w=self.norm.weight, lnf_b=self.norm.bias,
        ).to(torch.float32)


def _check_gelu(model):
    act = getattr(model.config, "hidden_act", "gelu")
    if act != "gelu":
        raise ValueError(f"model.config.hidden_act must be 'gelu' (the cached layer uses exact GELU), got {act!r}")


def bert_last_layer(model) -> LastLayer:
    """The last layer of a Hugging Face BERT-family encoder (post-norm) as a :class:`LastLayer`.

    Any model laid out like ``BertModel`` (``model.encoder.layer[-1].attention.self.query`` ...), e.g.
    BERT, MiniLM or RoBERTa, with GELU feed-forward blocks (:ref:`sec-own-backbone`); used for MiniLM on TREC (:ref:`sec-realdata-step1`).
    """
    try:
        lay = model.encoder.layer[-1]
        model.config.num_attention_heads, lay.attention.self.query  # noqa: B018 - the attributes we read
    except (AttributeError, TypeError, IndexError):
        raise ArgumentTypeError(f"model must be a Hugging Face BertModel, got {type(model).__name__}") from None
    _check_gelu(model)
    a, s = lay.attention, lay.attention.self
    return LastLayer(
        num_heads=model.config.num_attention_heads, norm_first=False, eps=model.config.layer_norm_eps,
        wq=s.query.weight, bq=s.query.bias, wk=s.key.weight, bk=s.key.bias,
        wv=s.value.weight, bv=s.value.bias, wo=a.output.dense.weight, bo=a.output.dense.bias,
        ln1_w=a.output.LayerNorm.weight, ln1_b=a.output.LayerNorm.bias,
        w1=lay.intermediate.dense.weight, b1=lay.intermediate.dense.bias,
        w2=lay.output.dense.weight, b2=lay.output.dense.bias,
        ln2_w=lay.output.LayerNorm.weight, ln2_b=lay.output.LayerNorm.bias,
    ).to(torch.float32)


def vit_last_layer(model) -> LastLayer:
    """The last layer of a Hugging Face ``ViTModel`` (pre-norm, final LayerNorm) as a :class:`LastLayer`.

    Reads both layouts of ``transformers``: ``model.layers[-1].attention.q_proj`` (version 5) and
    ``model.encoder.layer[-1].attention.attention.query`` (version 4). The model's final
    ``layernorm`` becomes ``lnf_*``, so the cached [CLS] output equals ``last_hidden_state[:, 0]``
    (:ref:`sec-own-backbone`).
    """
    try:
        if hasattr(model, "layers"):
            lay = model.layers[-1]
            at = lay.attention
            q, k, v, o = at.q_proj, at.k_proj, at.v_proj, at.o_proj
        else:
            lay = model.encoder.layer[-1]
            at = lay.attention
            q, k, v, o = at.attention.query, at.attention.key, at.attention.value, at.output.dense
        fc1 = lay.mlp.fc1 if hasattr(lay, "mlp") else lay.intermediate.dense
        fc2 = lay.mlp.fc2 if hasattr(lay, "mlp") else lay.output.dense
        ln1, ln2, lnf = lay.layernorm_before, lay.layernorm_after, model.layernorm
        heads = model.config.num_attention_heads
    except (AttributeError, TypeError, IndexError):
        raise ArgumentTypeError(f"model must be a Hugging Face ViTModel, got {type(model).__name__}") from None
    _check_gelu(model)
    return LastLayer(
        num_heads=heads, norm_first=True, eps=ln1.eps,
        wq=q.weight, bq=q.bias, wk=k.weight, bk=k.bias, wv=v.weight, bv=v.bias, wo=o.weight, bo=o.bias,
        ln1_w=ln1.weight, ln1_b=ln1.bias, w1=fc1.weight, b1=fc1.bias, w2=fc2.weight, b2=fc2.bias,
        ln2_w=ln2.weight, ln2_b=ln2.bias, lnf_w=lnf.weight, lnf_b=lnf.bias,
    ).to(torch.float32)


def model_family(model) -> str:
    """``'bert'`` (post-norm text encoder), ``'vit'`` (pre-norm image encoder) or ``'encoder'`` (this
    repository's :class:`Encoder`); ArgumentTypeError for anything else."""
    if isinstance(model, Encoder):
        return "encoder"
    enc = getattr(model, "encoder", None)
    lays = getattr(enc, "layer", None)
    if lays is not None and len(lays) and hasattr(getattr(lays[-1], "attention", None), "self"):
        return "bert"
    if hasattr(model, "layernorm") and (hasattr(model, "layers") or lays is not None):
        return "vit"
    raise ArgumentTypeError(f"model must be a Hugging Face BERT-family or ViT encoder (or an Encoder), "
                            f"got {type(model).__name__}")


def last_layer(model) -> LastLayer:
    """The last layer of ``model`` as a :class:`LastLayer`, whatever its family (:func:`model_family`):
    :func:`bert_last_layer`, :func:`vit_last_layer` or :meth:`Encoder.last_layer`."""
    family = model_family(model)
    if family == "encoder":
        return model.last_layer()
    return bert_last_layer(model) if family == "bert" else vit_last_layer(model)


@torch.no_grad()
def check_adapter(model, inputs: Mapping, seed: int = 0) -> float:
    r"""How far the cached last layer is from the model's own forward pass (:ref:`sec-own-backbone`).

    Every weight of a float64 copy of ``model`` is redrawn at random (a matrix with entries
    :math:`\mathcal N(0, 1/\mathrm{fan\_in})`, a vector such as a bias or a LayerNorm scale
    :math:`\mathcal N(0, 1)`), so that a weight read from the wrong place, or a
    wrong layer layout, changes the result, and the attention is far from uniform. ``inputs`` (e.g.
    a tokenizer's output, or ``{"pixel_values": x}``) go through the copy, and the [CLS] output of
    :func:`last_layer_cls` on the cached prefix is compared with the model's ``last_hidden_state[:, 0]``.
    Returns the largest absolute difference (about 1e-15 for a correct adapter). ``model`` itself is
    not changed.
    """
    import copy

    family = model_family(model)
    if family == "encoder":
        raise ArgumentTypeError("model must be a Hugging Face BERT-family or ViT model (an Encoder has no "
                                "last_hidden_state); see tests/test_realdata.py for its check")
    if not isinstance(inputs, Mapping) or not inputs:
        raise ArgumentTypeError(f"inputs must be the model's keyword inputs as a dict, got {type(inputs).__name__}")
    seed = check_int("seed", seed, 0)
    twin = copy.deepcopy(model).eval().double().cpu()
    g = torch.Generator().manual_seed(seed)
    for p in twin.parameters():  # float32 draws: LastLayer stores float32, so both paths see the same numbers
        scale = 1.0 / math.sqrt(p[0].numel()) if p.dim() > 1 else 1.0
        p.copy_((torch.randn(p.shape, generator=g) * scale).float())
    kw = {key: (v.double() if torch.is_tensor(v) and v.is_floating_point() else v) for key, v in inputs.items()}
    out = twin(**kw, output_hidden_states=True)
    x = out.hidden_states[-2]
    mask = kw.get("attention_mask", torch.ones(x.shape[:2], dtype=torch.bool))
    layer = last_layer(twin).to(torch.float64)
    cls, _ = last_layer_cls(make_prefix(x, torch.as_tensor(mask), layer), layer, layer.wq, layer.bq, layer.wk,
                            layer.bk)
    return float((cls - out.last_hidden_state[:, 0]).abs().max())


# ----------------------------------------------------------------------------- weights on disk (npz, no pickle)
def save_encoder(model: Encoder, path, extra: dict | None = None) -> None:
    """Save weights (and ``extra`` arrays such as feature means) as .npz — no pickle.

    Raises ValueError unless ``model`` is an :class:`Encoder`, ``extra`` a dict or None and
    ``path`` a path.
    """
    if not isinstance(model, Encoder):
        raise ArgumentTypeError(f"model must be an Encoder, got {type(model).__name__}")
    if extra is not None and not isinstance(extra, Mapping):
        raise ArgumentTypeError(f"extra must be a dict of arrays or None, got {type(extra).__name__}")
    path = check_path("path", path)
    arrays = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    arrays.update({f"extra.{k}": np.asarray(v) for k, v in (extra or {}).items()})
    np.savez_compressed(path, **arrays)


def load_encoder(path, config: dict) -> tuple[Encoder, dict]:
    """Load an :class:`Encoder` saved by :func:`save_encoder` (``allow_pickle=False``).

    ``config`` the :class:`Encoder` arguments the weights were saved with. Returns ``(encoder,
    extra arrays)``; raises ValueError for a missing or unreadable file, or weights that do not fit
    ``config``.
    """
    path = check_path("path", path)
    if not isinstance(config, Mapping):
        raise ArgumentTypeError(f"config must be the dict of Encoder arguments, got {type(config).__name__}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as err:
        raise ValueError(f"path {str(path)!r} is not a readable .npz of encoder weights ({err})") from None
    try:
        model = Encoder(**config)
    except TypeError as err:
        raise ArgumentTypeError(f"config holds an unknown Encoder argument ({err})") from None
    state = {k: torch.from_numpy(v) for k, v in arrays.items() if not k.startswith("extra.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"path {str(path)!r} does not hold weights for config {dict(config)} "
                         f"({str(err).splitlines()[0]})") from None
    extra = {k[6:]: v for k, v in arrays.items() if k.startswith("extra.")}
    return model.eval(), extra
