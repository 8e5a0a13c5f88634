"""benign_attention: the package behind the book *Benign overfitting in token selection of attention*.

The paper: K. Sakamoto and I. Sato, ICML 2025 (arXiv:2409.17625). Chapters import from here:

* :mod:`.data` - the token-sequence distribution (``make_dataset``, ``Dataset.from_arrays``)
* :mod:`.model` - f(X) = nu^T X^T softmax(X W p) (``AttentionModel``)
* :mod:`.engines` - full-batch GD, ``dense`` and ``exact`` engines (``train``, ``train_many``)
* :mod:`.metrics` - what a run records
* :mod:`.theory` - SNR, g(x), logit gaps, the existence construction, regimes
* :mod:`.analysis` - numbers read off recorded runs and grids (fitting steps, gaps, boundaries)
* :mod:`.sweeps` - cached, resumable grids of runs (``run_grid``)
* :mod:`.validation` - the argument checks every public entry point uses
* :mod:`.display` - the one display convention for figures (``show``) and glued numbers (``glue``)
"""
__version__ = "0.1.0"

from .data import Dataset, init_W, make_dataset  # noqa: E402
from .engines import DivergenceWarning, Run, log_schedule, record_schedule, train, train_many  # noqa: E402
from .model import AttentionModel  # noqa: E402
from .sweeps import CacheWarning, GridResult, run_grid  # noqa: E402
from .theory import DIVERGED, classify_regime, g, snr  # noqa: E402

__all__ = ["Dataset", "make_dataset", "init_W", "AttentionModel", "Run", "train", "train_many",
           "record_schedule", "log_schedule", "run_grid", "GridResult", "snr", "g", "classify_regime",
           "DIVERGED", "DivergenceWarning", "CacheWarning"]
