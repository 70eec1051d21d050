"""Loaders on small files written in the real formats, on ../shared/data when present, and bad input."""
import gzip
import hashlib
import pickle
import struct

import numpy as np
import pytest

from lgn_fpga.data import datasets as D
from lgn_fpga.errors import DataError


def _idx(arr: np.ndarray) -> bytes:
    return struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes()


def write_idx_set(d, n_train=30, n_test=10, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8)}
    d.mkdir(parents=True, exist_ok=True)
    for name, a in arrays.items():
        data = _idx(a)
        if gz:
            (d / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (d / name).write_bytes(data)
    return arrays


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No real data, no cache, no network: only what the test writes."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("LGN_FPGA_DATA", raising=False)
    monkeypatch.setenv("LGN_FPGA_OFFLINE", "1")
    monkeypatch.setattr(D, "_IDX_SOURCES", {k: {**v, "extra_dirs": ()} for k, v in D._IDX_SOURCES.items()})
    monkeypatch.setenv("LGN_FPGA_CACHE", str(tmp_path / "lgn-cache"))
    monkeypatch.setattr(D, "CHECK_OFFICIAL", False)      # the format tests write small files of their own
    return tmp_path


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_loader(isolated, gz, name):
    arrays = write_idx_set(isolated / "data" / name, gz=gz)
    b = D.load(name, isolated / "data", val_size=5)
    assert b.shape == (1, 28, 28) and len(b.train) == 25 and len(b.val) == 5 and len(b.test) == 10
    assert (b.train.images[:, 0] == arrays["train-images-idx3-ubyte"][:25]).all()
    assert (b.val.labels == arrays["train-labels-idx1-ubyte"][25:]).all()  # validation = end of train
    assert (b.test.images[:, 0] == arrays["t10k-images-idx3-ubyte"]).all()
    assert b.train.images.dtype == np.uint8 and b.train.labels.dtype == np.int64


def test_env_variable_is_searched(isolated, monkeypatch):
    write_idx_set(isolated / "envdata" / "mnist")
    monkeypatch.setenv("LGN_FPGA_DATA", str(isolated / "envdata"))
    assert len(D.load("mnist", val_size=0).train) == 30


def _cifar_records(n, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    pix = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    return labels, pix


def test_cifar_binary(isolated):
    d = isolated / "data" / "cifar10" / "cifar-10-batches-bin"
    d.mkdir(parents=True)
    want = {}
    for i, f in enumerate([f"data_batch_{k}.bin" for k in range(1, 6)] + ["test_batch.bin"]):
        labels, pix = _cifar_records(4, i)
        (d / f).write_bytes(np.concatenate([labels[:, None], pix], 1).tobytes())
        want[f] = (labels, pix)
    b = D.load("cifar10", isolated / "data", val_size=2)
    assert b.shape == (3, 32, 32) and len(b.train) == 18 and len(b.test) == 4
    l1, p1 = want["data_batch_1.bin"]
    assert (b.train.labels[:4] == l1).all()
    # channel-major: the first 1024 bytes are red, row-major
    assert (b.train.images[0, 0].ravel() == p1[0, :1024]).all() and (b.train.images[0, 2].ravel() == p1[0, 2048:]).all()


def test_cifar_python_pickles(isolated):
    d = isolated / "data" / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for i, f in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        labels, pix = _cifar_records(3, i)
        with open(d / f, "wb") as fh:
            pickle.dump({b"data": pix, b"labels": labels.tolist()}, fh)
    b = D.load("cifar10", isolated / "data", val_size=0)
    assert len(b.train) == 15 and len(b.test) == 3 and b.train.images.shape[1:] == (3, 32, 32)


def test_digits_is_embedded():
    b = D.load("digits")
    assert b.shape == (1, 8, 8) and len(b.test) == D.DIGITS_TEST
    assert len(b.train) + len(b.val) + len(b.test) == 1797
    assert b.train.images.max() == 255 and b.train.images.dtype == np.uint8
    # fixed split: the same every time
    assert (D.load("digits").test.labels == b.test.labels).all()


# -- bad input ------------------------------------------------------------------

def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown dataset 'svhn'; choose one of digits, mnist"):
        D.load("svhn")


def test_missing_data_says_where_to_put_it(isolated):
    (isolated / "empty").mkdir()
    with pytest.raises(DataError, match=r"mnist not found \(LGN_FPGA_OFFLINE is set\); put train-images"):
        D.load("mnist", isolated / "empty")
    with pytest.raises(DataError, match=r"data folder .*nothing does not exist"):
        D.load("mnist", isolated / "nothing")


def test_truncated_idx(isolated):
    d = isolated / "data" / "mnist"
    write_idx_set(d, gz=False)
    f = d / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated"):
        D.load("mnist", isolated / "data")


def test_corrupt_gzip(isolated):
    d = isolated / "data" / "mnist"
    write_idx_set(d)
    f = d / "t10k-labels-idx1-ubyte.gz"
    f.write_bytes(f.read_bytes()[:10])
    with pytest.raises(DataError, match="cannot read"):
        D.load("mnist", isolated / "data")


def test_truncated_cifar(isolated):
    d = isolated / "data" / "cifar10" / "cifar-10-batches-bin"
    d.mkdir(parents=True)
    for f in [f"data_batch_{k}.bin" for k in range(1, 6)] + ["test_batch.bin"]:
        (d / f).write_bytes(bytes(3073 * 2))
    (d / "test_batch.bin").write_bytes(bytes(3073 * 2 - 7))
    with pytest.raises(DataError, match="not a whole number of 3073-byte"):
        D.load("cifar10", isolated / "data")


def test_download_is_checksummed(isolated, monkeypatch):
    """A download whose content does not match the official MD5 is refused and nothing is kept."""
    monkeypatch.delenv("LGN_FPGA_OFFLINE")
    monkeypatch.setattr(D, "_download", lambda url, md5: gzip.compress(b"not mnist"))
    with pytest.raises(DataError, match="checksum mismatch"):
        D.load("mnist")
    assert not list(isolated.rglob("*.gz"))


def test_download_writes_cache(isolated, monkeypatch):
    """A download with the right checksum lands in the cache and loads."""
    arrays = write_idx_set(isolated / "src")
    monkeypatch.delenv("LGN_FPGA_OFFLINE")
    files = {n: _idx(a) for n, a in arrays.items()}
    md5 = {k: D._md5(files[s]) for k, s in D._IDX_FILES.items()}
    monkeypatch.setitem(D._IDX_SOURCES, "mnist", {**D._IDX_SOURCES["mnist"], "md5": md5})
    monkeypatch.setattr(D, "_download", lambda url, m: gzip.compress(files[url.rsplit("/", 1)[1][:-3]]))
    b = D.load("mnist", val_size=0)
    assert len(b.train) == 30
    assert (isolated / "lgn-cache" / "data" / "mnist" / "train-images-idx3-ubyte.gz").is_file()


# -- the real files -------------------------------------------------------------

@pytest.mark.data
@pytest.mark.parametrize("name,n_train,n_test,shape", [
    ("mnist", 60000, 10000, (1, 28, 28)), ("cifar10", 50000, 10000, (3, 32, 32)),
    ("fashion-mnist", 60000, 10000, (1, 28, 28))])
def test_real_datasets(name, n_train, n_test, shape):
    try:
        b = D.load(name)
    except DataError as e:
        pytest.skip(str(e))
    assert b.shape == shape
    assert len(b.train) + len(b.val) == n_train and len(b.val) == 5000 and len(b.test) == n_test
    assert set(np.unique(b.test.labels)) == set(range(10))
    counts = np.bincount(b.test.labels)
    assert counts.min() > 800  # all official test sets are roughly balanced


# -- --data-dir and the official checksums, wherever a file comes from (issue 13 item 4, issue 15 item 7) ---

MNIST_FILES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
               "t10k-labels-idx1-ubyte.gz"]
CIFAR_FILES = [f"data_batch_{k}.bin" for k in range(1, 6)] + ["test_batch.bin"]


@pytest.fixture
def official(isolated, monkeypatch):
    monkeypatch.setattr(D, "CHECK_OFFICIAL", True)
    return isolated


def _link(src_dir, dst_dir, names):
    """The real (read-only) files, linked, never copied or modified."""
    dst_dir.mkdir(parents=True, exist_ok=True)
    for n in names:
        (dst_dir / n).symlink_to(src_dir / n)


def test_synthetic_files_are_not_the_official_ones(official):
    write_idx_set(official / "data" / "mnist")
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: not the official MNIST train-images-idx3-ubyte "
                                        r"\(md5 [0-9a-f]{32}, expected 6bbc9ace"):
        D.load("mnist", official / "data")


def test_data_dir_is_never_passed_over(official, real_data_dir, monkeypatch):
    """Given --data-dir, nothing else is read: not $LGN_FPGA_DATA's copy."""
    monkeypatch.setenv("LGN_FPGA_DATA", str(real_data_dir))
    (official / "empty").mkdir()
    with pytest.raises(DataError, match="mnist not found"):
        D.load("mnist", official / "empty")


@pytest.mark.data
def test_flat_and_nested_mnist(official, real_data_dir):
    _link(real_data_dir / "mnist", official / "flat", MNIST_FILES)
    _link(real_data_dir / "mnist", official / "nested" / "mnist", MNIST_FILES)
    a, b = D.load("mnist", official / "flat"), D.load("mnist", official / "nested")
    assert len(a.train) == len(b.train) == 55000 and (a.test.images == b.test.images).all()
    # Fashion-MNIST asked for, MNIST's files found under the same names: one line naming the file and what it is
    with pytest.raises(DataError, match=r"flat/train-images-idx3-ubyte.gz: not the official Fashion-MNIST "
                                        r"train-images-idx3-ubyte .*it is MNIST's train-images-idx3-ubyte"):
        D.load("fashion-mnist", official / "flat")


@pytest.mark.data
def test_a_changed_mnist_label_is_caught(official, real_data_dir):
    d = official / "data" / "mnist"
    _link(real_data_dir / "mnist", d, MNIST_FILES[:3])
    raw = bytearray(gzip.decompress((real_data_dir / "mnist" / MNIST_FILES[3]).read_bytes()))
    raw[100] = (raw[100] + 1) % 10                      # one label changed: still a valid IDX file
    (d / MNIST_FILES[3]).write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz: not the official MNIST t10k-labels"):
        D.load("mnist", official / "data")


@pytest.mark.data
def test_truncated_cifar_batch_fails(official, real_data_dir):
    """data_batch_3.bin cut to 5,000 whole records used to train with 45,000 images and exit 0."""
    src = real_data_dir / "cifar10" / "cifar-10-batches-bin"
    d = official / "flat-cifar"
    _link(src, d, [f for f in CIFAR_FILES if f != "data_batch_3.bin"])
    with open(src / "data_batch_3.bin", "rb") as f:
        (d / "data_batch_3.bin").write_bytes(f.read(5000 * 3073))
    with pytest.raises(DataError, match=r"flat-cifar/data_batch_3.bin: not the official CIFAR-10 binary "
                                        r"data_batch_3.bin .*truncated, corrupt"):
        D.load("cifar10", d)


@pytest.mark.data
def test_checksum_verdict_is_cached_by_size_and_mtime(official, real_data_dir, monkeypatch):
    _link(real_data_dir / "mnist", official / "m", MNIST_FILES)
    D.load("mnist", official / "m")
    assert (official / "lgn-cache" / "verified" / "data.json").is_file()
    hashed = []
    monkeypatch.setattr(D, "_md5", lambda b: hashed.append(len(b)) or hashlib.md5(b).hexdigest())
    D.load("mnist", official / "m")
    assert hashed == []                                 # nothing changed: nothing hashed again
    (official / "m" / MNIST_FILES[3]).unlink()
    (official / "m" / MNIST_FILES[3]).write_bytes((real_data_dir / "mnist" / MNIST_FILES[3]).read_bytes())
    D.load("mnist", official / "m")
    assert hashed == [10008]                            # the new file (same content) is hashed once


@pytest.mark.data
def test_train_with_a_flat_data_dir_is_checked(official, real_data_dir, monkeypatch, capsys):
    """`lgn-fpga train fashion-mnist --data-dir DIR` with MNIST's files flat in DIR: one line naming the file
    (it used to pass DIR over and look for another copy)."""
    from lgn_fpga.cli import main
    monkeypatch.setenv("LGN_FPGA_DATA", str(real_data_dir))
    _link(real_data_dir / "mnist", official / "flat", MNIST_FILES)
    with pytest.raises(SystemExit) as e:
        main(["train", "fashion-mnist", "--data-dir", str(official / "flat"), "-o", str(official / "run"),
              "--quiet"])
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.startswith("error")]
    assert e.value.code != 0 and len(lines) == 1 and "Traceback" not in err
    assert "flat/train-images-idx3-ubyte.gz: not the official Fashion-MNIST" in lines[0]
    assert not (official / "run").exists()
