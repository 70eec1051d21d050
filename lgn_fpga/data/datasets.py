"""Dataset loaders: digits (in scikit-learn), MNIST, Fashion-MNIST, CIFAR-10.

Every loader returns uint8 images ``[N, C, H, W]`` and int64 labels, read from
the standard on-disk formats in place.  Given ``data_dir`` (``--data-dir``),
files are looked up there only; else in ``$LGN_FPGA_DATA``, the download cache
``$LGN_FPGA_CACHE/data`` (default ``~/.cache/lgn-fpga/data``, ``$XDG_CACHE_HOME``
respected) and, for Fashion-MNIST, Debian's ``dataset-fashion-mnist`` package.
In each folder both layouts work: nested (``mnist/``, ``fashion-mnist/``,
``cifar10/cifar-10-batches-bin/``, torchvision's ``MNIST/raw``, ...) and flat
(the files directly in it).  When files are absent they are downloaded from the
official location (into ``data_dir`` when given, else the cache); offline, one
line says where to put them.

Every file is checked against the official MD5 of its content (the
decompressed bytes for ``.gz``) wherever it came from, so a truncated batch or
another dataset's file under the right name stops with one line naming it.  A
verdict is remembered per path, size and modification time
(``$LGN_FPGA_CACHE/verified/data.json``), so a file is hashed once.

The validation split is the *last* ``val_size`` images of the training set
(the test split is for the final number only).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
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

__all__ = ["Split", "DataBundle", "load", "DATASETS", "SHAPES", "class_names", "data_dirs", "read_idx"]


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
    """The download cache: ``$LGN_FPGA_CACHE/data``, else ``$XDG_CACHE_HOME/lgn-fpga/data`` or ``~/.cache/...``."""
    return cache_root("data")


def data_dirs(data_dir=None) -> list[Path]:
    """Directories searched for dataset files, in order: ``data_dir`` alone when given (an explicit folder is
    never passed over for another copy), else ``$LGN_FPGA_DATA`` and the download cache."""
    if data_dir:
        return [Path(data_dir)]
    out = []
    if os.environ.get("LGN_FPGA_DATA"):
        out.append(Path(os.environ["LGN_FPGA_DATA"]))
    out.append(cache_dir())
    return out


def _download_root(data_dir) -> Path:
    return Path(data_dir) if data_dir else cache_dir()


# -- official checksums ---------------------------------------------------------------

#: Off only in tests of the file formats, which write small files of their own.
CHECK_OFFICIAL = True


def _verdict_file() -> Path:
    return cache_root("verified") / "data.json"


def _read_verdicts() -> dict:
    try:
        d = json.loads(_verdict_file().read_text())
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def check_official(path: Path, content: bytes, md5: str, what: str) -> None:
    """Raise one DataError line unless ``content`` (the bytes read from ``path``, decompressed) has the official
    ``md5``.  A good verdict is cached by path, size and mtime, so a file that did not change is hashed once."""
    if not CHECK_OFFICIAL:
        return
    st = path.stat()
    key, stamp = str(path.resolve()), [st.st_size, st.st_mtime_ns, md5]
    verdicts = _read_verdicts()
    if verdicts.get(key) == stamp:
        return
    got = _md5(content)
    if got != md5:
        other = _KNOWN_MD5.get(got)
        raise DataError(f"{path}: not the official {what} (md5 {got}, expected {md5}"
                        f"{'; it is ' + other if other else ''}): truncated, corrupt or another dataset's file; "
                        f"delete it and let the loader download it again, or put the official file there")
    verdicts[key] = stamp
    try:
        atomic_write_bytes(_verdict_file(), json.dumps(verdicts, indent=0).encode())
    except OSError:
        pass    # a read-only cache only costs a hash next time


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

def read_idx(path: Path, expect_dims: int, md5: str | None = None, what: str = "") -> np.ndarray:
    """Read an IDX file (optionally gzipped) of unsigned bytes, checking its size (and, given ``md5``, that its
    content is the official ``what`` file)."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: cannot read ({e}); delete it and let the loader download it again") from None
    if md5:
        check_official(path, raw, md5, what)
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
        subdirs=("fashion-mnist", "FashionMNIST/raw", "fashion_mnist", ""),
        extra_dirs=("/usr/share/datasets/fashion-mnist",),
        urls=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        md5={"train_images": "f4a8712d7a061bf5bd6d2ca38dc4d50a", "train_labels": "9018921c3c673c538a1fc5bad174d6f9",
             "test_images": "8181f5470baa50b63fa0f6fddb340f0a", "test_labels": "15d484375f8d13e6eb1aabb0c3f46965"},
        classes=["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot"]),
}


def _find_idx(name: str, dirs: list[Path], explicit: bool) -> dict | None:
    src = _IDX_SOURCES[name]
    cands = [d / s for d in dirs for s in src["subdirs"]] + ([] if explicit else [Path(p) for p in src.get("extra_dirs", ())])
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


def _download_idx(name: str, root: Path) -> dict:
    src = _IDX_SOURCES[name]
    dest = root / src["subdirs"][0]
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
    files = _find_idx(name, dirs, explicit=bool(data_dir))
    if files is None:
        files = _try_download(name, dirs, lambda n: _download_idx(n, _download_root(data_dir)),
                              "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
                              "t10k-labels-idx1-ubyte.gz", _IDX_SOURCES[name]["subdirs"][0])
    md5 = _IDX_SOURCES[name]["md5"]
    xs = {k: read_idx(p, 3 if k.endswith("images") else 1, md5=md5[k], what=f"{_TITLES[name]} {_IDX_FILES[k]}")
          for k, p in files.items()}
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
    raise DataError(f"{name} not found ({reason}); put {files_text} in {where} (or directly in the folder), "
                    f"or point --data-dir / LGN_FPGA_DATA at a folder that holds {subdir}/ or the files")


# -- CIFAR-10 ---------------------------------------------------------------------

_CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
_CIFAR_BIN = dict(url="https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz", md5="c32a1d4ab5d03f1284b67883e8d87530")
_CIFAR_BIN_MD5 = {"data_batch_1.bin": "5dd7e06a14cb22eb9f671a540d1b7c25", "data_batch_2.bin": "5ea93a67294ea407fff1d09f752e9692",
                  "data_batch_3.bin": "942cd6a4bcdd0dd3c604fbe906cb4421", "data_batch_4.bin": "ae636b3ba5c66a11e91e8cb52e771fcb",
                  "data_batch_5.bin": "53f37980c15c3d472c316c40844f3f0d", "test_batch.bin": "803d5f7f4d78ea53de84dbe85f74fb6d"}
# The python version's pickles (cifar-10-python.tar.gz), as published with it.
_CIFAR_PY_MD5 = {"data_batch_1": "c99cafc152244af753f735de768cd75f", "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
                 "data_batch_3": "54ebc095f3ab1f0389bbae665268c751", "data_batch_4": "634d18415352ddfa80567beed471001a",
                 "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb", "test_batch": "40351d587109b95175f43aff81a1287e"}
_TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}
#: every official md5 -> what it is, to name the file that sits under the wrong name
_KNOWN_MD5 = {**{m: f"{_TITLES[n]}'s {_IDX_FILES[k]}" for n, src in _IDX_SOURCES.items() for k, m in src["md5"].items()},
              **{m: f"CIFAR-10's {f}" for f, m in {**_CIFAR_BIN_MD5, **_CIFAR_PY_MD5}.items()}}


def _read_cifar_bin(path: Path) -> Split:
    raw = path.read_bytes()
    check_official(path, raw, _CIFAR_BIN_MD5[path.name], f"CIFAR-10 binary {path.name}")
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
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    check_official(path, raw, _CIFAR_PY_MD5[path.name], f"CIFAR-10 python {path.name}")
    try:
        d = pickle.loads(raw, encoding="bytes")
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
        for sub in ("cifar10/cifar-10-batches-bin", "cifar-10-batches-bin", "cifar10", ""):
            p = d / sub
            if all((p / f).is_file() for f in _CIFAR_BIN_MD5):
                return "bin", p
        for sub in ("cifar10/cifar-10-batches-py", "cifar-10-batches-py", ""):
            p = d / sub
            if all((p / f).is_file() for f in _CIFAR_PY_MD5):
                return "py", p
    return None


def _download_cifar(name, root: Path):
    data = _download(_CIFAR_BIN["url"], _CIFAR_BIN["md5"])
    dest = root / "cifar10"
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
    found = _find_cifar(dirs) or _try_download("cifar10", dirs, lambda n: _download_cifar(n, _download_root(data_dir)),
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


#: image shape of every dataset, known without reading it
SHAPES = {"digits": (1, 8, 8), "mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


def class_names(name: str) -> list:
    """The class names of a dataset, without reading it."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if name in _IDX_SOURCES:
        return list(_IDX_SOURCES[name]["classes"])
    return list(_CIFAR_CLASSES) if name == "cifar10" else [str(i) for i in range(10)]


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
