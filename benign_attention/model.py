"""The one-head attention model f(X) = nu^T X^T softmax(X W p) (chapter *The setting*).

``p`` plays a trainable [CLS]/query token, ``W`` the key-query matrix (the official code's W, i.e.
the paper's W^T), ``nu`` the fixed head. Initialisation as in the paper: W ~ U(-1/sqrt(d), 1/sqrt(d)),
p = 0, so attention starts uniform.
"""
from __future__ import annotations

import numpy as np
import torch

from .data import init_W

__all__ = ["AttentionModel"]


class AttentionModel(torch.nn.Module):
    """f(X) = nu^T X^T softmax(X W p); ``forward`` returns (outputs (N,), attention (N, T))."""

    def __init__(self, nu, W=None, p=None, seed=0, dtype=torch.float64):
        super().__init__()
        nu = torch.as_tensor(np.asarray(nu), dtype=dtype)
        d = nu.shape[0]
        if W is None:
            W = init_W(d, seed)
        W = torch.as_tensor(np.asarray(W) if not torch.is_tensor(W) else W, dtype=dtype)
        if W.shape != (d, d) or not torch.isfinite(W).all():
            raise ValueError(f"W must be a finite array of shape ({d}, {d}), got {tuple(W.shape)}")
        p = torch.zeros(d, dtype=dtype) if p is None else torch.as_tensor(p, dtype=dtype)
        self.W = torch.nn.Parameter(W.clone())
        self.p = torch.nn.Parameter(p.clone())
        self.register_buffer("nu", nu)

    def logits(self, X):
        """Token scores X W p, shape (N, T). Computed as X (W p): O(d^2 + N T d)."""
        return X @ (self.W @ self.p)

    def forward(self, X):
        X = torch.as_tensor(X, dtype=self.nu.dtype)
        attention = torch.softmax(self.logits(X), dim=-1)
        outputs = torch.einsum("nt,ntd,d->n", attention, X, self.nu)
        return outputs, attention
