"""Real data: the paper's pretrained-transformer experiment (:ref:`sec-realdata-protocol`).

Loaders (:mod:`.datasets`), backbones and the cached last layer (:mod:`.backbones`), the protocol
(:mod:`.finetune`) and the resumable grid (:mod:`.grid`).
"""
from .datasets import DATASETS, DataError, data_dir, flip_labels, load_breast_cancer, load_mnist, load_trec
from .finetune import Prepared, prepare, run

__all__ = ["DATASETS", "DataError", "data_dir", "flip_labels", "load_breast_cancer", "load_mnist",
           "load_trec", "Prepared", "prepare", "run"]
