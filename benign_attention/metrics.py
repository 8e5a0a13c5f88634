"""What a run records, computed from token scores (chapter *Training dynamics and the three regimes*).

Everything here works on torch tensors with arbitrary leading (batch, time) axes.
"""
from __future__ import annotations

import torch

__all__ = ["TOKEN_GROUPS", "outputs_and_attention", "logistic_loss", "attention_by_type", "summarize"]

#: Columns of the attention summaries: x_1 (relevant), x_2 (weak, true class), x_3 (weak, other
#: class) and the total mass on the irrelevant tokens x_4..x_T.
TOKEN_GROUPS = ("x1", "x2", "x3", "irrelevant")


def outputs_and_attention(logits, z):
    """f = sum_t softmax(logits)_t z_t for token scores ``logits`` (..., T) and head values z (..., T)."""
    attention = torch.softmax(logits, dim=-1)
    return (attention * z).sum(-1), attention


def logistic_loss(outputs, y):
    """Numerically stable log(1 + exp(-y f)), elementwise."""
    return torch.nn.functional.softplus(-y * outputs)


def attention_by_type(attention):
    """(..., T) attention -> (..., 4): mass on x_1, x_2, x_3 and on all irrelevant tokens together."""
    return torch.cat([attention[..., :3], attention[..., 3:].sum(-1, keepdim=True)], dim=-1)


def _masked_mean(values, mask):
    """Mean over the sample axis (-2 of values (..., N, k)) restricted to mask (N,); NaN if empty."""
    m = mask.to(values.dtype)
    count = m.sum()
    if count == 0:
        return torch.full(values.shape[:-2] + values.shape[-1:], float("nan"), dtype=values.dtype)
    return (values * m[..., None]).sum(-2) / count


def summarize(logits, z, y, y_clean=None, noisy=None, prefix="train"):
    """Loss, accuracy, margin and attention summaries of a batch of sequences.

    ``logits`` (..., N, T) token scores, ``z`` (N, T) or broadcastable head values nu^T x_t, ``y`` (N,)
    the labels the loss uses. With ``noisy`` given (training set): also accuracy against the clean
    labels and attention means for clean and noisy samples separately. Returns a dict of tensors with
    the leading axes of ``logits`` (minus N, T).
    """
    f, attention = outputs_and_attention(logits, z)
    by_type = attention_by_type(attention)
    out = {
        f"{prefix}_loss": logistic_loss(f, y).mean(-1),
        f"{prefix}_acc": (torch.sign(f) == y).to(f.dtype).mean(-1),
    }
    if noisy is None:
        out[f"{prefix}_margin"] = (y * f).mean(-1)
        out[f"attn_{prefix}"] = by_type.mean(-2)
    else:
        out[f"{prefix}_clean_acc"] = (torch.sign(f) == y_clean).to(f.dtype).mean(-1)
        out["attn_clean"] = _masked_mean(by_type, ~noisy)
        out["attn_noisy"] = _masked_mean(by_type, noisy)
        out[f"{prefix}_outputs"] = f
        out[f"{prefix}_attention"] = attention
        out[f"{prefix}_logits"] = logits
    return out
