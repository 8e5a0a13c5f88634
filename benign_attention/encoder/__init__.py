r"""The paper's appendix model: a one-layer transformer encoder with every parameter trained
(:ref:`sec-encoder-overview`). One job per module:

* ``model``: the architecture, literally (:class:`~benign_attention.encoder.model.EncoderReference`),
  the [CLS]-only forward pass and the fused training step
  (:func:`~benign_attention.encoder.model.fast_forward`, :func:`~benign_attention.encoder.model.sgd_step`);
* ``train``: :func:`~benign_attention.encoder.train.train_encoder` and its
  :class:`~benign_attention.encoder.train.EncoderRun`;
* ``grid``: stored runs and the :math:`(d, \lVert\mu\rVert)` grid (:func:`~benign_attention.encoder.grid.run_encoder_grid`),
  through the package's one grid mechanism (:class:`~benign_attention.cache.CellGrid`).

Every public name is importable from here (``from benign_attention.encoder import train_encoder``).
The figures are drawn by :mod:`benign_attention.encoder_figures`; the attention summary by token
type is :func:`~benign_attention.analysis.attention_by_type`. The oneDNN switch is
:data:`benign_attention.encoder.model.ONEDNN` (set it there).
"""
from __future__ import annotations

from . import model
from .grid import CELL_NAME, RECORD_KEYS, SETTING_KEYS, encoder_cell, load_grid, load_runs, run_encoder_grid, save_run
from .model import BIG_WEIGHTS, MLP_DIM, EncoderReference, fast_forward, make_encoder, sgd_step, step_flops
from .train import LR, EncoderRun, train_encoder

__all__ = ["EncoderReference", "fast_forward", "sgd_step", "BIG_WEIGHTS", "MLP_DIM", "make_encoder",
           "step_flops", "EncoderRun", "train_encoder", "LR", "load_grid", "encoder_cell", "run_encoder_grid", "save_run", "load_runs",
           "RECORD_KEYS", "SETTING_KEYS", "CELL_NAME"]
