"""What a run records, computed from token scores (:ref:`sec-dyn-gradient`, :ref:`sec-dyn-settings`).

Everything here works on torch tensors with arbitrary leading (batch, time) axes (numpy arrays are
accepted and converted). A sequence whose output is not finite (a diverged run) gets NaN accuracy, never 0.
"""
from __future__ import annotations

import numpy as np
import torch

from .validation import ArgumentTypeError

__all__ = ["TOKEN_GROUPS", "outputs_and_attention", "logistic_loss", "attention_by_type", "batch_metrics"]

#: Columns of the attention summaries. :math:`x_1` (relevant), :math:`x_2` (weak, true class),
#: :math:`x_3` (weak, other class) and the total mass on the irrelevant tokens :math:`x_4, \dots, x_T`.
TOKEN_GROUPS = ("x1", "x2", "x3", "irrelevant")


def _as_tensor(name, value, dtype=None):
    """A real floating tensor from a tensor or array-like; raises naming ``name`` otherwise."""
    if not torch.is_tensor(value):
        if value is None or isinstance(value, (str, bytes, dict)):
            raise ArgumentTypeError(f"{name} must be a tensor or array of real numbers, got {type(value).__name__}")
        try:
            value = torch.tensor(np.asarray(value))
        except (TypeError, ValueError, RuntimeError) as err:
            raise ArgumentTypeError(f"{name} must be a tensor or array of real numbers ({err})") from None
    if value.is_complex():
        raise ArgumentTypeError(f"{name} must be real, got a complex tensor")
    if value.dtype == torch.bool:
        raise ArgumentTypeError(f"{name} must hold real numbers, got a bool tensor")
    if not value.is_floating_point():
        value = value.to(torch.float64 if dtype is None else dtype)
    return value


def _broadcast(name_a, a, name_b, b):
    try:
        torch.broadcast_shapes(a.shape, b.shape)
    except RuntimeError:
        raise ValueError(f"{name_b} of shape {tuple(b.shape)} does not broadcast against {name_a} of shape "
                         f"{tuple(a.shape)}") from None


def outputs_and_attention(logits, z):
    r"""Outputs :math:`f = \sum_t s_t z_t` and the attention :math:`s = \operatorname{softmax}(a)` of the
    token scores :math:`a` (``logits``).

    The model of :prf:ref:`def-model` written with token scores :math:`a_t = x_t^\top W p` and head values
    :math:`z_t = \nu^\top x_t` (:prf:ref:`def-dyn-notation`).

    Parameters
    ----------
    logits : torch.Tensor or array_like
        Token scores (..., T).
    z : torch.Tensor or array_like
        Head values, broadcastable to ``logits``.

    Returns
    -------
    tuple of torch.Tensor
        ``(f (...,), attention (..., T))``.

    Raises
    ------
    ValueError
        An argument is not real or the shapes do not broadcast.
    """
    logits, z = _as_tensor("logits", logits), _as_tensor("z", z)
    if logits.dim() < 1 or logits.shape[-1] < 1:
        raise ValueError(f"logits must have a token axis (..., T), got shape {tuple(logits.shape)}")
    _broadcast("logits", logits, "z", z)
    attention = torch.softmax(logits, dim=-1)
    return (attention * z).sum(-1), attention


def logistic_loss(outputs, y):
    r"""Numerically stable :math:`\log(1 + e^{-yf})`, elementwise (:prf:ref:`def-dyn-notation`).

    Parameters
    ----------
    outputs : torch.Tensor or array_like
        Model outputs :math:`f`.
    y : torch.Tensor or array_like
        Labels (:math:`\pm 1`), broadcastable to ``outputs``.

    Returns
    -------
    torch.Tensor

    Raises
    ------
    ValueError
        An argument is not real or the shapes do not broadcast.
    """
    outputs, y = _as_tensor("outputs", outputs), _as_tensor("y", y)
    _broadcast("outputs", outputs, "y", y)
    return torch.nn.functional.softplus(-y * outputs)


def attention_by_type(attention):
    r"""Attention mass on :math:`x_1`, :math:`x_2`, :math:`x_3` and on all irrelevant tokens together (:data:`TOKEN_GROUPS`).

    Parameters
    ----------
    attention : torch.Tensor or array_like
        Attention ``(..., T)`` with :math:`T \ge 3`.

    Returns
    -------
    torch.Tensor
        Shape (..., 4).

    Raises
    ------
    ValueError
        ``attention`` is not real or has fewer than 3 tokens.
    """
    attention = _as_tensor("attention", attention)
    if attention.dim() < 1 or attention.shape[-1] < 3:
        raise ValueError(f"attention must have T >= 3 tokens on its last axis, got shape {tuple(attention.shape)}")
    return torch.cat([attention[..., :3], attention[..., 3:].sum(-1, keepdim=True)], dim=-1)


def _masked_mean(values, mask):
    """Mean over the sample axis (-2 of values (..., N, k)) restricted to mask (N,); NaN if empty."""
    m = mask.to(values.dtype)
    count = m.sum()
    if count == 0:
        return torch.full(values.shape[:-2] + values.shape[-1:], float("nan"), dtype=values.dtype)
    return (values * m[..., None]).sum(-2) / count


def batch_metrics(logits, z, y, y_clean=None, noisy=None, prefix="train"):
    r"""Loss, accuracy, margin and attention summaries of a batch of sequences.

    What :class:`~benign_attention.engines.Run` records (:ref:`sec-dyn-settings`).

    Parameters
    ----------
    logits : torch.Tensor or array_like
        Token scores (..., N, T).
    z : torch.Tensor or array_like
        Head values :math:`\nu^\top x_t`, ``(N, T)`` or broadcastable to ``logits``.
    y : torch.Tensor or array_like
        The labels the loss uses, (N,).
    y_clean, noisy : optional
        Training set only, both or neither: clean labels (N,) and the boolean mask (N,) of flipped
        samples. Adds the accuracy on the clean labels and attention means for clean and noisy
        samples separately.
    prefix : str
        Key prefix, e.g. ``"train"`` or ``"test"``.

    Returns
    -------
    dict of torch.Tensor
        ``{prefix}_loss``, ``{prefix}_acc`` and (test) ``{prefix}_margin``, ``attn_{prefix}`` or
        (training) ``{prefix}_clean_acc``, ``attn_clean``, ``attn_noisy`` and the per-sample
        outputs, attention and logits; leading axes those of ``logits`` minus (N, T).

    Raises
    ------
    ValueError
        Shapes disagree, only one of ``y_clean``/``noisy`` is given, or ``prefix`` is empty.
    """
    if not isinstance(prefix, str) or not prefix:
        raise ArgumentTypeError(f"prefix must be a non-empty string, got {prefix!r}")
    logits = _as_tensor("logits", logits)
    if logits.dim() < 2:
        raise ValueError(f"logits must have shape (..., N, T), got {tuple(logits.shape)}")
    N = logits.shape[-2]
    y = _as_tensor("y", y, logits.dtype)
    if y.shape[-1:] != (N,):
        raise ValueError(f"y must have the sample axis of logits (N={N}) last, got shape {tuple(y.shape)}")
    if not bool(((y == 1) | (y == -1)).all()):
        raise ValueError("y must contain only the labels -1 and +1")
    if (noisy is None) != (y_clean is None):
        raise ValueError("y_clean and noisy must be given together (training set) or not at all (test set)")
    if noisy is not None:
        y_clean = _as_tensor("y_clean", y_clean, logits.dtype)
        if not bool(((y_clean == 1) | (y_clean == -1)).all()):
            raise ValueError("y_clean must contain only the labels -1 and +1")
        noisy = torch.as_tensor(noisy) if not torch.is_tensor(noisy) else noisy
        if noisy.dtype != torch.bool or tuple(noisy.shape) != (N,):
            raise ValueError(f"noisy must be a boolean mask of shape ({N},), got {noisy.dtype} {tuple(noisy.shape)}")
    f, attention = outputs_and_attention(logits, z)
    by_type = attention_by_type(attention)
    finite = torch.isfinite(f).all(-1)  # a diverged state: accuracy is NaN, never a plausible 0
    nan = torch.tensor(float("nan"), dtype=f.dtype, device=f.device)
    acc = lambda labels: torch.where(finite, (torch.sign(f) == labels).to(f.dtype).mean(-1), nan)
    out = {
        f"{prefix}_loss": logistic_loss(f, y).mean(-1),
        f"{prefix}_acc": acc(y),
    }
    if noisy is None:
        out[f"{prefix}_margin"] = (y * f).mean(-1)
        out[f"attn_{prefix}"] = by_type.mean(-2)
    else:
        out[f"{prefix}_clean_acc"] = acc(y_clean)
        out["attn_clean"] = _masked_mean(by_type, ~noisy)
        out["attn_noisy"] = _masked_mean(by_type, noisy)
        out[f"{prefix}_outputs"] = f
        out[f"{prefix}_attention"] = attention
        out[f"{prefix}_logits"] = logits
    return out
