"""Real data sets for the pretrained-transformer experiment (:ref:`sec-realdata-protocol`).

Readers for MNIST (IDX files), TREC question classification and scikit-learn's bundled
breast-cancer (Wisconsin) table, the seeded splits the chapter uses, and the paper's label noise
(with probability ``eta`` a label becomes a uniformly random *other* class).

Files are read from a data folder: ``$BENIGN_ATTENTION_DATA`` if set, else
``~/.cache/benign_attention``. A missing file is downloaded from its public source when the machine
is online; everything read is verified (shapes, label counts, checksums) and a clear error naming
the folder is raised when neither reading nor downloading works.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import re
import struct
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..validation import ArgumentTypeError, check_array, check_int, check_int_array, check_number, check_path

MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
TREC_URL = "https://cogcomp.seas.upenn.edu/Data/QA/QC/"
MNIST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
#: md5 of the gunzipped MNIST test images (data/README.md)
MNIST_IMAGES_MD5 = "2646ac647ad5339dbf082846283269ea"
#: md5 of the gunzipped MNIST test labels (so a file with swapped labels is refused)
MNIST_LABELS_MD5 = "27ae3e4e09519cfbb04c329615203637"
MNIST_LABEL_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)
TREC_FILES = {"train": ("train_5500.label", 5444), "test": ("TREC_10.label", 499)}
TREC_CLASSES = ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")
#: Names of the three real data sets (TREC, MNIST, breast cancer), as every function here takes them.
DATASETS = ("trec", "mnist", "breast_cancer")
#: largest seed accepted by the real-data functions (torch and numpy generators both take it)
MAX_SEED = 2**32 - 1 - 10_000


class DataError(RuntimeError):
    """A data file is missing, cannot be downloaded, or fails verification."""


@dataclass
class Split:
    """Inputs and clean labels of one part of a data set (``x`` is an array or a list of texts)."""

    x: object
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def take(self, idx) -> "Split":
        """The rows ``idx`` (integers in [0, len - 1]) as a new Split."""
        idx = check_int_array("idx", idx, 0, len(self) - 1, nonempty=False)
        x = [self.x[i] for i in idx] if isinstance(self.x, list) else self.x[idx]
        return Split(x, self.y[idx])


# ----------------------------------------------------------------------------- data folder
def data_dir() -> Path:
    """The data folder: ``$BENIGN_ATTENTION_DATA`` or ``~/.cache/benign_attention`` (not created here)."""
    env = os.environ.get("BENIGN_ATTENTION_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "benign_attention"


def _fetch(subdir: str, name: str, url: str, root: Path | None) -> Path:
    """Return ``root/subdir/name``, downloading it from ``url`` if it is missing."""
    root = data_dir() if root is None else check_path("root", root)
    if root.exists() and not root.is_dir():
        raise ValueError(f"root {str(root)!r} is a file, not a data folder")
    path = root / subdir / name
    if path.exists():
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".part")
        with urllib.request.urlopen(url, timeout=30) as r, open(tmp, "wb") as f:
            f.write(r.read())
        os.replace(tmp, path)
        return path
    except Exception as err:  # offline, read-only folder, HTTP error ...
        raise DataError(
            f"{name} is not in the data folder {path.parent} and could not be downloaded from "
            f"{url} ({err}). Set BENIGN_ATTENTION_DATA to a folder holding {subdir}/{name}."
        ) from err


# ----------------------------------------------------------------------------- parsers
def parse_idx(raw: bytes, source: str | os.PathLike | None = None) -> np.ndarray:
    """Parse an (uncompressed) IDX file: magic 0x0000 08 ndim, big-endian dims, uint8 data.
    ``source`` (the file) is named in every error message.

    Raises :class:`DataError` for a malformed file (ValueError if ``raw`` is not bytes)."""
    where = f"{source}: " if source is not None else "IDX data: "
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise ArgumentTypeError(f"raw must be the bytes of an IDX file, got {type(raw).__name__}")
    raw = bytes(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{where}not an IDX file (bad magic number)")
    if raw[2] != 0x08:
        raise DataError(f"{where}IDX data type {raw[2]:#x} is not unsigned byte (0x08)")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"{where}IDX header is truncated")
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    size = int(np.prod(dims, dtype=object)) if dims else 1
    body = raw[4 + 4 * ndim :]
    if len(body) != size:
        raise DataError(f"{where}IDX body has {len(body)} bytes, header says {size}")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


_TREC_LINE = re.compile(r"^(\S+)\s+(\S.*)$")


def parse_trec(text: str, source: str | os.PathLike | None = None) -> tuple[list[str], list[str], list[str]]:
    """Parse ``COARSE:fine question`` lines into (coarse labels, fine labels, questions).

    The label and the question may be separated by any whitespace (space or tab); blank lines are
    skipped. ``source`` (the file) is named in every error message. Raises :class:`DataError` for
    a line of another form (ValueError if ``text`` is not a str)."""
    if not isinstance(text, str):
        raise ArgumentTypeError(f"text must be a str (decode the file first), got {type(text).__name__}")
    where = f"{source}: " if source is not None else ""
    coarse, fine, questions = [], [], []
    for k, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _TREC_LINE.match(line.strip())
        label, question = (m.group(1), m.group(2)) if m else (line.strip(), "")
        c, colon, f = label.partition(":")
        if not m or not colon or not f or c not in TREC_CLASSES:
            raise DataError(f"{where}line {k} is not a TREC 'COARSE:fine question' line: {line[:60]!r}")
        coarse.append(c)
        fine.append(f)
        questions.append(question.strip())
    return coarse, fine, questions


# ----------------------------------------------------------------------------- loaders
def load_mnist(root: str | Path | None = None) -> Split:
    """The 10,000 MNIST test images (uint8, 10000×28×28) with labels, verified.

    Parameters
    ----------
    root : str or pathlib.Path, optional
        The data folder (default :func:`data_dir`); files live under ``root/mnist``.

    Returns
    -------
    Split

    Raises
    ------
    DataError
        A file is missing and cannot be downloaded, or fails its checks (md5, shapes, label counts).
    ValueError
        ``root`` is not a folder path.
    """
    paths = [_fetch("mnist", f, MNIST_URL + f, root) for f in MNIST_FILES]
    try:
        raw_images = gzip.decompress(paths[0].read_bytes())
        raw_labels = gzip.decompress(paths[1].read_bytes())
    except (OSError, EOFError) as err:
        raise DataError(f"cannot gunzip MNIST files in {paths[0].parent}: {err}") from err
    if hashlib.md5(raw_images).hexdigest() != MNIST_IMAGES_MD5:
        raise DataError(f"{paths[0]} fails its md5 check (expected {MNIST_IMAGES_MD5})")
    images, labels = parse_idx(raw_images, paths[0]), parse_idx(raw_labels, paths[1])
    if images.shape != (10000, 28, 28) or labels.shape != (10000,):
        raise DataError(f"MNIST shapes {images.shape}, {labels.shape} in {paths[0].parent}")
    if tuple(np.bincount(labels, minlength=10)) != MNIST_LABEL_COUNTS:
        raise DataError(f"MNIST label counts in {paths[1]} do not match the official test set")
    if hashlib.md5(raw_labels).hexdigest() != MNIST_LABELS_MD5:
        raise DataError(f"{paths[1]} fails its md5 check (expected {MNIST_LABELS_MD5}): the labels are not "
                        f"the official ones (reordered or altered)")
    return Split(images, labels.astype(np.int64))


def load_trec(root: str | Path | None = None) -> dict[str, Split]:
    """TREC train (5444) and TREC-10 test (499) questions with coarse labels 0..5, verified.

    Parameters
    ----------
    root : str or pathlib.Path, optional
        The data folder (default :func:`data_dir`); files live under ``root/trec``.

    Returns
    -------
    dict of Split
        ``{"train": ..., "test": ...}``; ``x`` is a list of questions.

    Raises
    ------
    DataError
        A file is missing and cannot be downloaded, or has the wrong number of questions or classes.
    ValueError
        ``root`` is not a folder path.
    """
    out = {}
    for part, (name, lines) in TREC_FILES.items():
        path = _fetch("trec", name, TREC_URL + name, root)
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        coarse, _, questions = parse_trec(text, path)
        if len(questions) != lines:
            raise DataError(f"{path} has {len(questions)} questions, expected {lines}")
        if set(coarse) != set(TREC_CLASSES):
            raise DataError(f"{path} does not contain the 6 coarse classes {TREC_CLASSES}")
        out[part] = Split(questions, np.array([TREC_CLASSES.index(c) for c in coarse]))
    return out


def load_breast_cancer() -> Split:
    """scikit-learn's bundled breast-cancer (Wisconsin) table: 569×30 floats, labels 0/1.

    Returns a :class:`Split`; raises :class:`DataError` if the bundled table has another shape.
    """
    from sklearn.datasets import load_breast_cancer as _load

    d = _load()
    x, y = d.data.astype(np.float64), d.target.astype(np.int64)
    if x.shape != (569, 30) or tuple(np.bincount(y)) != (212, 357):
        raise DataError("scikit-learn's breast-cancer data do not have the expected shape")
    return Split(x, y)


#: sizes of the seeded splits of the data sets whose backbone is pretrained in this repository
SPLITS = {"mnist": (5000, 3000, 2000), "breast_cancer": (200, 200, 169)}


def split_data(dataset: str, root=None, seed: int = 0) -> dict[str, Split]:
    """The seeded parts ``pretrain`` / ``finetune`` / ``test`` of a data set.

    MNIST (10,000 images) is cut 5000 / 3000 / 2000 and breast cancer (569 rows) 200 / 200 / 169 by a
    permutation with ``seed``; TREC has no pretraining part (MiniLM comes pretrained): its fine-tuning
    pool is the 5444 training questions and its test set TREC-10.

    Parameters
    ----------
    dataset : str
        One of :data:`DATASETS`.
    root : str or pathlib.Path, optional
        The data folder.
    seed : int
        Seed of the permutation, in [0, MAX_SEED].

    Returns
    -------
    dict of Split

    Raises
    ------
    ValueError
        An unknown ``dataset`` or ``seed`` out of range.
    DataError
        The data cannot be read (see the loaders).
    """
    check_dataset(dataset)
    seed = check_int("seed", seed, 0, MAX_SEED)
    if dataset == "trec":
        d = load_trec(root)
        return {"finetune": d["train"], "test": d["test"]}
    full = load_mnist(root) if dataset == "mnist" else load_breast_cancer()
    perm = np.random.default_rng(seed).permutation(len(full))
    a, b, _ = SPLITS[dataset]
    return {"pretrain": full.take(perm[:a]), "finetune": full.take(perm[a : a + b]),
            "test": full.take(perm[a + b :])}


#: MNIST digits the small ViT is pretrained on. The fine-tuning experiment uses the other five digits
#: (5-9, relabelled 0-4), so the backbone has never been trained on the classes it is tested on.
MNIST_PRETRAIN_DIGITS = (0, 1, 2, 3, 4)


def task_split(dataset: str, root=None, seed: int = 0) -> dict[str, Split]:
    """The parts the pretrained-transformer experiment uses (:ref:`sec-realdata-step1`).

    For MNIST, :func:`split_data`'s parts are cut by digit: ``pretrain`` keeps digits 0-4 of the
    pretraining part and ``pretrain_test`` digits 0-4 of the test part (to measure the pretraining);
    ``finetune`` and ``test`` keep digits 5-9, relabelled 0-4. The pretraining task and the
    experiment therefore share no class. Other data sets: :func:`split_data` unchanged.
    Arguments and errors as in :func:`split_data`.
    """
    parts = split_data(dataset, root, seed)
    if dataset != "mnist":
        return parts
    pre = np.isin(parts["pretrain"].y, MNIST_PRETRAIN_DIGITS)
    out = {"pretrain": parts["pretrain"].take(np.flatnonzero(pre)),
           "pretrain_test": parts["test"].take(np.flatnonzero(np.isin(parts["test"].y, MNIST_PRETRAIN_DIGITS)))}
    for k in ("finetune", "test"):
        keep = parts[k].take(np.flatnonzero(~np.isin(parts[k].y, MNIST_PRETRAIN_DIGITS)))
        out[k] = Split(keep.x, np.searchsorted(np.setdiff1d(np.arange(10), MNIST_PRETRAIN_DIGITS), keep.y))
    return out


def check_dataset(dataset: str, name: str = "dataset") -> str:
    """Return ``dataset`` if it names one of :data:`DATASETS`, else raise naming ``name``."""
    if not isinstance(dataset, str):
        raise ArgumentTypeError(f"{name} must be one of {DATASETS}, got {type(dataset).__name__} {dataset!r}")
    if dataset not in DATASETS:
        raise ValueError(f"{name} must be one of {DATASETS}, got {dataset!r}")
    return dataset


# ----------------------------------------------------------------------------- your own data
def _class_labels(labels, n, num_classes):
    """Integer class labels 0..C-1 of length n, checked; returns (labels, C)."""
    if isinstance(labels, (str, bytes)) or labels is None:
        raise ArgumentTypeError(f"labels must be a list of integer class labels, got {type(labels).__name__}")
    y = np.asarray(labels.detach().cpu().numpy() if hasattr(labels, "detach") else labels)
    if y.dtype.kind not in "iu":
        raise ArgumentTypeError(f"labels must be integer class labels 0, 1, ..., got dtype {y.dtype}")
    if y.shape != (n,):
        raise ValueError(f"labels must have shape ({n},) (one label per example), got {y.shape}")
    if num_classes is None:
        num_classes = int(y.max()) + 1
    else:
        num_classes = check_int("num_classes", num_classes, 2)
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"labels must be in [0, {num_classes - 1}] (num_classes={num_classes}), "
                         f"got values from {y.min()} to {y.max()}")
    if num_classes < 2:
        raise ValueError(f"labels must hold at least 2 classes, got only class {y.max()}")
    return y.astype(np.int64), num_classes


def from_texts(texts, labels, num_classes: int | None = None) -> Split:
    """Your own texts with integer class labels as a :class:`Split` (:ref:`sec-own-data`).

    ``texts``: a list of n >= 2 non-empty strings; ``labels``: n integers in [0, num_classes - 1]
    (``num_classes`` defaults to the largest label + 1 and must be >= 2).
    """
    if isinstance(texts, (str, bytes)) or not isinstance(texts, (list, tuple)):
        raise ArgumentTypeError(f"texts must be a list of strings, got {type(texts).__name__}")
    if len(texts) < 2:
        raise ValueError(f"texts must hold at least 2 texts, got {len(texts)}")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ArgumentTypeError(f"texts[{i}] must be a str, got {type(t).__name__}")
        if not t.strip():
            raise ValueError(f"texts[{i}] is empty (every text needs at least one token)")
    y, _ = _class_labels(labels, len(texts), num_classes)
    return Split(list(texts), y)


def from_images(images, labels, num_classes: int | None = None) -> Split:
    """Your own images with integer class labels as a :class:`Split` (:ref:`sec-own-data`).

    ``images``: n >= 2 images as an array (n, H, W) (grey) or (n, C, H, W) (channels first, as a
    ``ViTModel`` takes ``pixel_values``), real and finite; uint8 images are scaled to [0, 1].
    Stored as float32 (n, C, H, W). ``labels`` and ``num_classes`` as in :func:`from_texts`.
    """
    raw = np.asarray(images.detach().cpu().numpy() if hasattr(images, "detach") else images) \
        if not isinstance(images, (str, bytes)) and images is not None else None
    if raw is None or raw.dtype.kind not in "iuf":
        kind = type(images).__name__ if raw is None else f"dtype {raw.dtype}"
        raise ArgumentTypeError(f"images must be an array of real numbers (n, H, W) or (n, C, H, W), got {kind}")
    if raw.ndim not in (3, 4):
        raise ValueError(f"images must have shape (n, H, W) or (n, C, H, W), got {raw.shape}")
    if raw.shape[0] < 2 or min(raw.shape[1:]) < 1:
        raise ValueError(f"images must hold at least 2 non-empty images, got shape {raw.shape}")
    x = check_array("images", raw, dtype=np.float32) / (255.0 if raw.dtype == np.uint8 else 1.0)
    x = x[:, None] if x.ndim == 3 else x
    y, _ = _class_labels(labels, raw.shape[0], num_classes)
    return Split(np.ascontiguousarray(x, dtype=np.float32), y)


# ----------------------------------------------------------------------------- label noise
def flip_labels(y, eta: float, num_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The paper's label noise: with probability ``eta`` replace a label by a uniformly random other class.

    Returns ``(noisy_labels, flipped_mask)``. A flipped label never equals the true one. ``y`` an
    integer array of labels in [0, num_classes - 1] (float or bool labels are refused, not truncated);
    ``eta`` in [0, 1); ``num_classes`` an integer >= 2; ``seed`` an integer >= 0. The noise model of
    :ref:`sec-realdata-protocol`.

    Raises
    ------
    ValueError
        An argument is out of range or of the wrong kind (the message names it).
    """
    eta = check_number("eta", eta, 0.0, 1.0, high_open=True)
    num_classes = check_int("num_classes", num_classes, 2)
    seed = check_int("seed", seed, 0)
    if isinstance(y, (str, bytes)) or y is None:
        raise ArgumentTypeError(f"y must be an integer array of class labels, got {type(y).__name__}")
    y_in = np.asarray(y.detach().cpu().numpy() if hasattr(y, "detach") else y)
    if y_in.dtype.kind not in "iu" and not (y_in.size == 0 and y_in.dtype.kind == "f"):
        raise ArgumentTypeError(f"y must be an integer array of class labels, got dtype {y_in.dtype}")
    y = y_in.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"y must hold labels in [0, {num_classes - 1}] (num_classes={num_classes}), "
                         f"got values from {y.min()} to {y.max()}")
    rng = np.random.default_rng(seed)
    flipped = rng.random(y.shape) < eta
    shift = rng.integers(1, num_classes, size=y.shape)  # 1..C-1: never the true class
    return np.where(flipped, (y + shift) % num_classes, y), flipped
