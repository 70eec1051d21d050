"""Dataset loaders: digits (in scikit-learn), MNIST, Fashion-MNIST, CIFAR-10.

Every loader returns uint8 images ``[N, C, H, W]`` and int64 labels, read from
the standard on-disk formats in place.  Files are looked up in, in order: the
``data_dir`` argument (``--data-dir``), ``$LGN_FPGA_DATA``, the download cache
``~/.cache/lgn-fpga/data`` (``$LGN_FPGA_CACHE`` and ``$XDG_CACHE_HOME`` respected) and, for
Fashion-MNIST, Debian's ``dataset-fashion-mnist`` package.  When files are
absent they are downloaded from the official location into the cache and
checked against known MD5 sums; offline, one line says where to put them.

The validation split is the *last* ``val_size`` images of the training set
(the test split is for the final number only).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import shutil
import struct
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..ccompile import cache_root
from ..errors import DataError
from ..fileio import atomic_write_bytes

__all__ = ["Split", "DataBundle", "load", "DATASETS", "data_dirs", "read_idx"]


@dataclass
class Split:
    images: np.ndarray   # uint8 [N, C, H, W]
    labels: np.ndarray   # int64 [N]

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int | None) -> "Split":
        return self if n is None else Split(self.images[:n], self.labels[:n])


@dataclass
class DataBundle:
    name: str
    shape: tuple          # (C, H, W)
    classes: list
    train: Split
    val: Split
    test: Split

    def split(self, name: str) -> Split:
        if name not in ("train", "val", "test"):
            raise DataError(f"split must be train, val or test, not {name!r}")
        return getattr(self, name)


# -- where data lives ---------------------------------------------------------------

def cache_dir() -> Path:
    """``$LGN_FPGA_CACHE/data``, else under ``$XDG_CACHE_HOME/lgn-fpga`` or ``~/.cache/lgn-fpga``."""
    return cache_root("data")


def data_dirs(data_dir=None) -> list[Path]:
    """Directories searched for dataset files, in order."""
    out = []
    if data_dir:
        out.append(Path(data_dir))
    if os.environ.get("LGN_FPGA_DATA"):
        out.append(Path(os.environ["LGN_FPGA_DATA"]))
    out.append(cache_dir())
    return out


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _download(url: str, md5: str | None) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            total = int(r.headers.get("Content-Length") or 0)
            buf = io.BytesIO()
            from tqdm import tqdm
            with tqdm(total=total or None, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1], leave=False) as bar:
                while chunk := r.read(1 << 20):
                    buf.write(chunk)
                    bar.update(len(chunk))
        data = buf.getvalue()
    except Exception as e:  # network errors of every kind end up here
        raise OSError(f"{type(e).__name__}: {e}") from None
    if md5 and _md5(data) != md5:
        raise OSError(f"checksum mismatch for {url} (md5 {_md5(data)}, expected {md5})")
    return data


# -- IDX (MNIST, Fashion-MNIST) ---------------------------------------------------

def read_idx(path: Path, expect_dims: int) -> np.ndarray:
    """Read an IDX file (optionally gzipped) of unsigned bytes, checking its size."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: cannot read ({e}); delete it and let the loader download it again") from None
    if len(raw) < 4 + 4 * expect_dims:
        raise DataError(f"{path}: truncated (only {len(raw)} bytes); delete it and download it again")
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08 or ndim != expect_dims:
        raise DataError(f"{path}: not an IDX file of unsigned bytes with {expect_dims} dimensions "
                        f"(header {raw[:4].hex()})")
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    n = int(np.prod(dims))
    body = raw[4 + 4 * ndim:]
    if len(body) != n:
        raise DataError(f"{path}: truncated or padded ({len(body)} data bytes, header says {n}); "
                        f"delete it and download it again")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


_IDX_FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
              "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}

# MD5 of the *decompressed* official files: robust to re-compression.
_IDX_SOURCES = {
    "mnist": dict(
        subdirs=("mnist", "MNIST/raw", "MNIST", ""),
        urls=("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        md5={"train_images": "6bbc9ace898e44ae57da46a324031adb", "train_labels": "a25bea736e30d166cdddb491f175f624",
             "test_images": "2646ac647ad5339dbf082846283269ea", "test_labels": "27ae3e4e09519cfbb04c329615203637"},
        classes=[str(i) for i in range(10)]),
    "fashion-mnist": dict(
        subdirs=("fashion-mnist", "FashionMNIST/raw", "fashion_mnist"),
        extra_dirs=("/usr/share/datasets/fashion-mnist",),
        urls=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        md5={"train_images": "f4a8712d7a061bf5bd6d2ca38dc4d50a", "train_labels": "9018921c3c673c538a1fc5bad174d6f9",
             "test_images": "8181f5470baa50b63fa0f6fddb340f0a", "test_labels": "15d484375f8d13e6eb1aabb0c3f46965"},
        classes=["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot"]),
}


def _find_idx(name: str, dirs: list[Path]) -> dict | None:
    src = _IDX_SOURCES[name]
    cands = [d / s for d in dirs for s in src["subdirs"]] + [Path(p) for p in src.get("extra_dirs", ())]
    for d in cands:
        found = {}
        for key, stem in _IDX_FILES.items():
            for fn in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
                if (d / fn).is_file():
                    found[key] = d / fn
                    break
        if len(found) == 4:
            return found
    return None


def _download_idx(name: str) -> dict:
    src = _IDX_SOURCES[name]
    dest = cache_dir() / src["subdirs"][0]
    out, errors = {}, []
    for key, stem in _IDX_FILES.items():
        path = dest / (stem + ".gz")
        for base in src["urls"]:
            try:
                data = _download(base + stem + ".gz", None)
                if _md5(gzip.decompress(data)) != src["md5"][key]:
                    raise OSError(f"checksum mismatch for {base + stem}.gz")
                atomic_write_bytes(path, data)
                out[key] = path
                break
            except OSError as e:
                errors.append(str(e))
        else:
            raise OSError(errors[-1])
    return out


def _load_idx(name: str, data_dir) -> tuple:
    dirs = data_dirs(data_dir)
    files = _find_idx(name, dirs)
    if files is None:
        files = _try_download(name, dirs, _download_idx,
                              "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
                              "t10k-labels-idx1-ubyte.gz", _IDX_SOURCES[name]["subdirs"][0])
    xs = {k: read_idx(p, 3 if k.endswith("images") else 1) for k, p in files.items()}
    for split in ("train", "test"):
        if len(xs[f"{split}_images"]) != len(xs[f"{split}_labels"]):
            raise DataError(f"{files[split + '_images']}: {len(xs[split + '_images'])} images but "
                            f"{len(xs[split + '_labels'])} labels")
    tr = Split(xs["train_images"][:, None].copy(), xs["train_labels"].astype(np.int64))
    te = Split(xs["test_images"][:, None].copy(), xs["test_labels"].astype(np.int64))
    return tr, te, _IDX_SOURCES[name]["classes"]


def _try_download(name, dirs, fetch, files_text, subdir):
    if os.environ.get("LGN_FPGA_OFFLINE"):
        reason = "LGN_FPGA_OFFLINE is set"
    else:
        try:
            return fetch(name)
        except OSError as e:
            reason = f"download failed: {e}"
    where = " or ".join(str(d / subdir) for d in dirs)
    raise DataError(f"{name} not found ({reason}); put {files_text} in {where}, "
                    f"or point --data-dir / LGN_FPGA_DATA at a folder that holds {subdir}/")


# -- CIFAR-10 ---------------------------------------------------------------------

_CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
_CIFAR_BIN = dict(url="https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz", md5="c32a1d4ab5d03f1284b67883e8d87530")
_CIFAR_BIN_MD5 = {"data_batch_1.bin": "5dd7e06a14cb22eb9f671a540d1b7c25", "data_batch_2.bin": "5ea93a67294ea407fff1d09f752e9692",
                  "data_batch_3.bin": "942cd6a4bcdd0dd3c604fbe906cb4421", "data_batch_4.bin": "ae636b3ba5c66a11e91e8cb52e771fcb",
                  "data_batch_5.bin": "53f37980c15c3d472c316c40844f3f0d", "test_batch.bin": "803d5f7f4d78ea53de84dbe85f74fb6d"}


def _read_cifar_bin(path: Path) -> Split:
    raw = path.read_bytes()
    if len(raw) % 3073 or not raw:
        raise DataError(f"{path}: {len(raw)} bytes is not a whole number of 3073-byte CIFAR-10 records "
                        f"(truncated?); delete it and download it again")
    rec = np.frombuffer(raw, np.uint8).reshape(-1, 3073)
    labels = rec[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DataError(f"{path}: label {labels.max()} out of range 0..9; not a CIFAR-10 binary batch")
    return Split(rec[:, 1:].reshape(-1, 3, 32, 32).copy(), labels)


def _read_cifar_py(path: Path) -> Split:
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        data = np.asarray(d[b"data"], dtype=np.uint8)
        labels = np.asarray(d[b"labels"], dtype=np.int64)
    except Exception as e:
        raise DataError(f"{path}: not a readable CIFAR-10 python batch ({type(e).__name__}: {e}); "
                        f"delete it and download it again") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise DataError(f"{path}: data of shape {data.shape} with {len(labels)} labels is not a CIFAR-10 batch")
    return Split(data.reshape(-1, 3, 32, 32), labels)


def _cat(splits) -> Split:
    return Split(np.concatenate([s.images for s in splits]), np.concatenate([s.labels for s in splits]))


def _find_cifar(dirs):
    for d in dirs:
        for sub in ("cifar10/cifar-10-batches-bin", "cifar-10-batches-bin", "cifar10"):
            p = d / sub
            if all((p / f).is_file() for f in _CIFAR_BIN_MD5):
                return "bin", p
        for sub in ("cifar10/cifar-10-batches-py", "cifar-10-batches-py"):
            p = d / sub
            if all((p / f).is_file() for f in ["data_batch_%d" % i for i in range(1, 6)] + ["test_batch"]):
                return "py", p
    return None


def _download_cifar(name):
    data = _download(_CIFAR_BIN["url"], _CIFAR_BIN["md5"])
    dest = cache_dir() / "cifar10"
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tmp = Path(tempfile.mkdtemp(dir=dest.parent if dest.parent.exists() else None))
        tar.extractall(tmp, filter="data")
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / "cifar-10-batches-bin"
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp / "cifar-10-batches-bin", target)
        shutil.rmtree(tmp, ignore_errors=True)
    return "bin", target


def _load_cifar(data_dir):
    dirs = data_dirs(data_dir)
    found = _find_cifar(dirs) or _try_download("cifar10", dirs, _download_cifar,
                                               "data_batch_1..5.bin and test_batch.bin", "cifar10/cifar-10-batches-bin")
    kind, p = found
    if kind == "bin":
        tr = _cat([_read_cifar_bin(p / f"data_batch_{i}.bin") for i in range(1, 6)])
        te = _read_cifar_bin(p / "test_batch.bin")
    else:
        tr = _cat([_read_cifar_py(p / f"data_batch_{i}") for i in range(1, 6)])
        te = _read_cifar_py(p / "test_batch")
    return tr, te, list(_CIFAR_CLASSES)


# -- digits (scikit-learn) ---------------------------------------------------------

DIGITS_TEST = 360  # 20% of 1797, after a fixed shuffle (seed 0)


def _load_digits(data_dir):
    from sklearn.datasets import load_digits
    d = load_digits()
    # sklearn gives 0..16 as float; scale to bytes so that every dataset is uint8 0..255.
    imgs = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    perm = np.random.RandomState(0).permutation(len(imgs))
    imgs, labels = imgs[perm], d.target[perm].astype(np.int64)
    n = len(imgs) - DIGITS_TEST
    return Split(imgs[:n], labels[:n]), Split(imgs[n:], labels[n:]), [str(i) for i in range(10)]


DATASETS = {
    "digits": (_load_digits, 0.1),
    "mnist": (lambda dd: _load_idx("mnist", dd), 5000),
    "fashion-mnist": (lambda dd: _load_idx("fashion-mnist", dd), 5000),
    "cifar10": (_load_cifar, 5000),
}


def load(name: str, data_dir=None, val_size=None) -> DataBundle:
    """Load a dataset with train / val / test splits.

    ``val_size``: images (int) or fraction (float < 1) taken from the end of
    the training set; default 5000 (10% for digits).  ``0`` gives an empty
    validation split.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if data_dir and not Path(data_dir).is_dir():
        raise DataError(f"data folder {data_dir} does not exist; create it (missing files are downloaded there) "
                        f"or pass the folder that holds the {name} files")
    fn, default_val = DATASETS[name]
    tr, te, classes = fn(data_dir)
    v = default_val if val_size is None else val_size
    n_val = int(round(v * len(tr))) if isinstance(v, float) and v < 1 else int(v)
    if not 0 <= n_val < len(tr):
        raise DataError(f"val_size {val_size!r} leaves no training images ({len(tr)} in the training set)")
    cut = len(tr) - n_val
    return DataBundle(name, tuple(tr.images.shape[1:]), classes, Split(tr.images[:cut], tr.labels[:cut]),
                      Split(tr.images[cut:], tr.labels[cut:]), te)
