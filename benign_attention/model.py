r"""The one-head attention model :math:`f(X) = \nu^\top X^\top \operatorname{softmax}(XWp)` of :ref:`sec-setting-model`.

``p`` plays a trainable [CLS]/query token :math:`p`, ``W`` the key-query matrix :math:`W` (the official
code's :math:`W`, i.e. the paper's :math:`W^\top`), ``nu`` the fixed head :math:`\nu`. Initialisation as
in the paper: entries of :math:`W` drawn from :math:`U(-1/\sqrt d, 1/\sqrt d)` and :math:`p = 0`, so
attention starts uniform.
"""
from __future__ import annotations

import numpy as np
import torch

from .data import init_W
from .validation import ArgumentTypeError, check_array, check_dtype, check_int

__all__ = ["AttentionModel"]


class AttentionModel(torch.nn.Module):
    r""":math:`f(X) = \nu^\top X^\top \operatorname{softmax}(XWp)` (:prf:ref:`def-model`) as a torch module
    with a fixed head.

    ``model(X)`` (``forward``) takes tokens ``X`` of shape ``(N, T, d)`` (array or tensor) and returns
    ``(outputs (N,), attention (N, T))``. The dense engine of :func:`~benign_attention.engines.train`
    trains ``W`` and ``p`` of this module by autograd.

    Parameters
    ----------
    nu : array_like
        The fixed head :math:`\nu`, shape ``(d,)`` with :math:`d \ge 2` (e.g. ``Dataset.nu``).
    W : array_like, optional
        Key-query matrix (d, d); default: the paper's initialisation
        (:func:`~benign_attention.data.init_W`) drawn from ``seed``.
    p : array_like, optional
        Query token (d,); default 0, so attention starts uniform.
    seed : int
        Seed of the default ``W``, >= 0.
    dtype : torch.dtype or str
        torch.float64 (default) or torch.float32.

    Raises
    ------
    ValueError
        An array has the wrong shape or is not real and finite, or ``dtype`` is another precision.
    """

    def __init__(self, nu, W=None, p=None, seed=0, dtype=torch.float64):
        super().__init__()
        dtype = check_dtype("dtype", dtype)
        nu_np = check_array("nu", nu, ndim=1)
        d = nu_np.shape[0]
        if d < 2:
            raise ValueError(f"nu must have d >= 2 entries, got {d}")
        if W is None:
            W = init_W(d, check_int("seed", seed, 0))
        W = check_array("W", W, shape=(d, d))
        p = np.zeros(d) if p is None else check_array("p", p, shape=(d,))
        self.W = torch.nn.Parameter(torch.tensor(W, dtype=dtype))
        self.p = torch.nn.Parameter(torch.tensor(p, dtype=dtype))
        self.register_buffer("nu", torch.tensor(nu_np, dtype=dtype))

    def _tokens(self, X):
        d = self.nu.shape[0]
        if torch.is_tensor(X):
            if X.is_complex() or X.dtype == torch.bool:
                raise ArgumentTypeError(f"X must be a real tensor, got dtype {X.dtype}")
            X = X.to(self.nu.dtype)  # keeps autograd
            if X.dim() != 3 or X.shape[-1] != d:
                raise ValueError(f"X must have shape (N, T, d={d}), got {tuple(X.shape)}")
            return X
        return torch.tensor(check_array("X", X, shape=(None, None, d)), dtype=self.nu.dtype)

    def logits(self, X):
        r"""Token scores :math:`XWp`, shape ``(N, T)``. Computed as :math:`X(Wp)`: :math:`O(d^2 + NTd)`.

        Raises ValueError unless ``X`` is real with shape (N, T, d).
        """
        return self._tokens(X) @ (self.W @ self.p)

    def forward(self, X):
        X = self._tokens(X)
        attention = torch.softmax(self.logits(X), dim=-1)
        outputs = torch.einsum("nt,ntd,d->n", attention, X, self.nu)
        return outputs, attention
