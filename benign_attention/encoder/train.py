"""Training the encoder: full-batch SGD on every parameter, on the logistic loss, as the paper does.

:func:`train_encoder` trains either path of ``benign_attention.encoder.model`` (the fast
:func:`~benign_attention.encoder.model.sgd_step`, or :class:`~benign_attention.encoder.model.EncoderReference`
with ``torch.optim.SGD``: the same numbers to round-off) and returns an :class:`EncoderRun`, the runs
of :ref:`sec-encoder-dynamics`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from ..engines import check_dataset, divergence_rule
from collections.abc import Mapping

from ..validation import ArgumentTypeError, check_array, check_choice, check_dtype, check_int, check_lr_dtype, check_number
from .model import MLP_DIM, EncoderReference, fast_forward, make_encoder, sgd_step

__all__ = ["EncoderRun", "train_encoder", "LR"]

#: The paper's SGD learning rate for the encoder (the default of :func:`train_encoder` and the grid's).
LR = 5e-3


@dataclass
class EncoderRun:
    """History of one training run: ``steps`` ``(E,)`` and ``history`` with ``train_loss``,
    ``train_acc`` (observed labels), ``train_clean_acc``, ``test_loss``, ``test_acc`` ``(E,)``,
    ``train_attention`` ``(E, n, T)`` the [CLS] row over the data tokens, ``test_attention`` ``(E, T)`` its
    mean over test samples; ``seconds`` the wall time; ``config`` the knobs."""

    steps: np.ndarray
    history: dict
    seconds: float
    config: dict = field(default_factory=dict)
    #: The step by which SGD diverged (None if it did not); every metric is NaN from there on (the
    #: package's one rule, :func:`~benign_attention.engines.divergence_rule`; the run warns DivergenceWarning)
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


def _initial_model(d, mlp_dim, seed, dtype_name, init_state):
    """The model training starts from: PyTorch's default initialisation drawn from ``seed``
    (:func:`~benign_attention.encoder.model.make_encoder`), or a copy of ``init_state``, checked."""
    model = make_encoder(d, mlp_dim, seed, dtype_name)
    if init_state is None:
        return model
    if isinstance(init_state, EncoderReference):
        init_state = dict(init_state.named_parameters())
    if not isinstance(init_state, Mapping):
        raise ArgumentTypeError(f"init_state must be a dict {{parameter name: tensor}} (e.g. model.state_dict() of an "
                                f"EncoderReference) or an EncoderReference, got {type(init_state).__name__}")
    params = dict(model.named_parameters())
    missing = [k for k in params if k not in init_state]
    unknown = sorted(str(k) for k in init_state if k not in params)
    if missing or unknown:
        found = ([f"missing {missing}"] if missing else []) + ([f"unknown {unknown}"] if unknown else [])
        raise ValueError(f"init_state must hold exactly the encoder's {len(params)} parameters ({', '.join(params)}): "
                         + "; ".join(found))
    rows = check_array("init_state['fc1.weight']", init_state["fc1.weight"], ndim=2).shape[0]
    if rows != mlp_dim:
        raise ValueError(f"init_state['fc1.weight'] has {rows} rows, the width of its feed-forward block, but "
                         f"mlp_dim={mlp_dim}: pass mlp_dim={rows}")
    values = {k: check_array(f"init_state[{k!r}]", init_state[k], shape=tuple(p.shape)) for k, p in params.items()}
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(torch.from_numpy(np.array(values[k])))
    return model


def train_encoder(ds, steps=1000, lr=LR, record_every=10, mlp_dim=MLP_DIM, seed=0, dtype="float32",
                  path="fast", test_every=None, init_state=None):
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
        Seed of the initialisation (:func:`~benign_attention.encoder.model.make_encoder`), >= 0.
    dtype : str or torch.dtype
        float32 or float64.
    path : str
        ``"fast"`` (:func:`~benign_attention.encoder.model.sgd_step`: the [CLS]-only path with in-place factored updates) or
        ``"reference"`` (:class:`~benign_attention.encoder.model.EncoderReference` and ``torch.optim.SGD``); the same numbers to
        round-off.
    test_every : int, optional
        Steps between test evaluations.
    init_state : dict or EncoderReference, optional
        The initial parameters, instead of the initialisation drawn from ``seed``: a dict
        ``{name: tensor or array}`` with exactly the 14 parameters of an
        :class:`~benign_attention.encoder.model.EncoderReference` of width ``d`` = ``ds.d`` and
        ``mlp_dim`` (``model.state_dict()`` of one, or another implementation's weights renamed to
        these names), or such a model itself. It is copied (never trained in place) and cast to
        ``dtype``; the run's ``config`` records ``init_state="given"``. For comparing with another
        implementation from the same start.

    Returns
    -------
    EncoderRun

    Raises
    ------
    ValueError
        An argument is out of range or of the wrong kind (the message names it).
    """
    ds = check_dataset("ds", ds)
    steps = check_int("steps", steps, low=0)
    lr = check_number("lr", lr, low=0, low_open=True)
    record_every = check_int("record_every", record_every, low=1)
    test_every = record_every if test_every is None else check_int("test_every", test_every, low=1)
    path = check_choice("path", path, ("fast", "reference"))
    tdt = check_dtype("dtype", dtype)
    check_lr_dtype(lr, tdt)
    mlp_dim = check_int("mlp_dim", mlp_dim, low=1)
    seed = check_int("seed", seed, low=0)
    dtype_name = str(tdt).replace("torch.", "")
    model = _initial_model(ds.d, mlp_dim, seed, dtype_name, init_state)
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
    if init_state is not None:
        config["init_state"] = "given"
    return EncoderRun(np.asarray(rec), history, seconds, config, at)
