"""The paper's appendix model: a one-layer transformer encoder with every parameter trained
(:ref:`sec-encoder-overview`). One job per module:

* ``model`` - the model: :class:`EncoderReference` (the architecture, literally), the [CLS]-only
  :func:`fast_forward`, the fused training step :func:`sgd_step`, :func:`make_encoder`, :func:`step_flops`;
* ``train`` - training: :func:`train_encoder` and its :class:`EncoderRun`;
* ``grid`` - stored results: :func:`save_run`, :func:`load_runs`, and the (d, ||mu||) grid
  (:func:`encoder_cell`, :func:`run_encoder_grid`, :func:`load_grid`), through the package's one grid
  mechanism (:class:`~benign_attention.cache.CellGrid`).

Every public name is importable from here (``from benign_attention.encoder import train_encoder``).
The figures are drawn by :mod:`benign_attention.plots` (:func:`~benign_attention.plots.encoder_dynamics`,
:func:`~benign_attention.plots.encoder_loss_maps`, :func:`~benign_attention.plots.encoder_boundary`); the
names ``dynamics_figure``, ``grid_figure`` and ``boundary_figure`` still lead to them (imported on first use, so this package does not import matplotlib), and
``attention_by_type`` is :func:`benign_attention.analysis.attention_by_type`.
"""
from __future__ import annotations

import importlib
import sys
import types

from ..analysis import attention_by_type
from . import model
from .grid import CELL_NAME, RECORD_KEYS, SETTING_KEYS, encoder_cell, load_grid, load_runs, run_encoder_grid, save_run
from .model import BIG_WEIGHTS, MLP_DIM, EncoderReference, fast_forward, make_encoder, sgd_step, step_flops
from .train import LR, EncoderRun, train_encoder

__all__ = ["EncoderReference", "fast_forward", "sgd_step", "ONEDNN", "BIG_WEIGHTS", "MLP_DIM", "make_encoder",
           "step_flops", "EncoderRun", "train_encoder", "LR", "attention_by_type", "dynamics_figure", "grid_figure",
           "boundary_figure", "load_grid", "encoder_cell", "run_encoder_grid", "save_run", "load_runs",
           "RECORD_KEYS", "SETTING_KEYS", "CELL_NAME"]

#: The figure names of this package -> their functions in :mod:`benign_attention.plots` (PEP 562).
_FIGURES = {"dynamics_figure": "encoder_dynamics", "grid_figure": "encoder_loss_maps",
            "boundary_figure": "encoder_boundary"}


def __getattr__(name):
    if name in _FIGURES:
        return getattr(importlib.import_module("..plots", __name__), _FIGURES[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Package(types.ModuleType):
    """This package, whose ``ONEDNN`` is the switch ``benign_attention.encoder.model.ONEDNN``
    itself: reading it here reads the switch, setting it here sets the switch."""

    @property
    def ONEDNN(self):  # noqa: N802 - the switch's name
        return model.ONEDNN

    @ONEDNN.setter
    def ONEDNN(self, value):  # noqa: N802
        model.ONEDNN = value


sys.modules[__name__].__class__ = _Package
