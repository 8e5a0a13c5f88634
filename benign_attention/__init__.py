r"""benign_attention: the package behind the book *Benign overfitting in token selection of attention*.

The paper: K. Sakamoto and I. Sato, ICML 2025 (arXiv:2409.17625). Chapters import from here:

* :mod:`.data` - the token-sequence distribution (``make_dataset``, ``Dataset.from_arrays``)
* :mod:`.model` - :math:`f(X) = \nu^\top X^\top \operatorname{softmax}(XWp)` (``AttentionModel``)
* :mod:`.engines` - full-batch GD, ``dense``, ``exact`` and ``gram`` engines (``train``, ``train_many``)
* :mod:`.gram` - only Gram matrices matter: the sampler engine, numpy only (``sample_runs``)
* :mod:`.metrics` - what a run records
* :mod:`.theory` - SNR, :math:`g(x)`, logit gaps, the existence construction, regimes
* :mod:`.analysis` - numbers read off recorded runs and grids (fitting steps, gaps, boundaries)
* :mod:`.sweeps` - cached, resumable grids of runs (``run_grid``)
* :mod:`.validation` - the argument checks every public entry point uses
* :mod:`.display` - the one display convention for figures (``show``) and glued numbers (``glue``)

The top-level names are imported on first use, so ``import benign_attention.gram`` does not import torch.
"""
import importlib

from ._version import __version__  # noqa: F401

#: top-level name -> the module that defines it (imported lazily, PEP 562)
_WHERE = {
    "Dataset": "data", "make_dataset": "data", "init_W": "data", "LR": "data", "STEPS": "data",
    "DivergenceWarning": "engines", "Run": "engines", "log_schedule": "engines", "record_schedule": "engines",
    "train": "engines", "train_many": "engines",
    "AttentionModel": "model",
    "CacheWarning": "sweeps", "GridResult": "sweeps", "run_grid": "sweeps",
    "DIVERGED": "theory", "classify_regime": "theory", "g": "theory", "snr": "theory",
}

__all__ = ["Dataset", "make_dataset", "init_W", "AttentionModel", "Run", "train", "train_many",
           "record_schedule", "log_schedule", "run_grid", "GridResult", "snr", "g", "classify_regime",
           "DIVERGED", "DivergenceWarning", "CacheWarning", "LR", "STEPS"]


def __getattr__(name):
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_WHERE))
