"""Seconds per fine-tuning epoch with and without prefix caching (chapter 8, pretrained transformers).

    BENIGN_ATTENTION_DATA=../shared/data python benchmarks/bench_realdata.py [--n 200] [--threads 1]

Same process, same data, same n noisy-labelled samples, full-batch Adam on the last layer's Q/K:
* ``full backbone``: every epoch runs the whole frozen backbone (nothing cached);
* ``cached prefix``: the last layer's input is cached, but the last layer runs for every token;
* ``cached, [CLS] row``: what the package does — only the [CLS] query row and its attention.
"""
from __future__ import annotations

import argparse
import copy
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from benign_attention.realdata import finetune as ft
from benign_attention.realdata.backbones import last_layer_cls, last_layer_uncached


def per_epoch(step, epochs):
    step()  # warm-up
    t = time.perf_counter()
    for _ in range(epochs):
        step()
    return (time.perf_counter() - t) / epochs


def bench(dataset, n, epochs):
    prep = ft.prepare(dataset, pool_size=max(n, 50), head_size=max(n, 300) if dataset == "trec" else None,
                      test_size=50, head_epochs=50)
    y = torch.as_tensor(prep.pool_y[:n])
    train = prep.pool.take(np.arange(n))
    params = ft.init_qk(prep.layer, 0)
    opt = torch.optim.Adam(params, lr=1e-3)

    def fit(out):
        opt.zero_grad()
        F.cross_entropy(F.linear(out, prep.head_w, prep.head_b), y).backward()
        opt.step()

    cls_row = lambda: fit(last_layer_cls(train, prep.layer, *params)[0])
    all_rows = lambda: fit(last_layer_uncached(train.x, train.mask, prep.layer, *params)[0])
    # the whole backbone, with the same trainable Q/K plugged into its last layer
    if dataset == "trec":
        tokenizer, model = ft.load_minilm()
        model = copy.deepcopy(model)
        from benign_attention.realdata.datasets import load_trec
        texts = load_trec()["train"].x[:n]
        enc = tokenizer(texts, padding=True, return_tensors="pt")
        att = model.encoder.layer[-1].attention.self
        mods, forward = (att.query, att.key), lambda: model(**enc).last_hidden_state[:, 0]
    else:
        model, extra, _ = ft.load_pretrained(dataset)
        from benign_attention.realdata.datasets import split_data
        x = split_data(dataset)["finetune"].x[:n]
        x = torch.as_tensor(x / 255.0 if dataset == "mnist" else (x - extra["mean"]) / extra["std"], dtype=torch.float32)
        b = model.blocks[-1]
        mods, forward = (b.q, b.k), lambda: model.features(x)
    for p in model.parameters():
        p.requires_grad_(False)
    for m, (w, bias) in zip(mods, ((params[0], params[1]), (params[2], params[3]))):
        del m.weight, m.bias
        m.weight, m.bias = w, bias  # share the trainable tensors
    full = lambda: fit(forward())
    slow = min(epochs, 5)
    return {"full backbone": per_epoch(full, slow), "cached prefix": per_epoch(all_rows, epochs),
            "cached, [CLS] row": per_epoch(cls_row, epochs)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--datasets", nargs="+", default=["mnist", "trec", "breast_cancer"])
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    print(f"cores: os.cpu_count() = {os.cpu_count()}, torch threads = {torch.get_num_threads()}, n = {a.n}")
    for d in a.datasets:
        r = bench(d, a.n, a.epochs)
        base = r["cached, [CLS] row"]
        print(f"{d:>13}: " + ", ".join(f"{k} {v * 1e3:.1f} ms/epoch ({v / base:.1f}x)" for k, v in r.items()))
