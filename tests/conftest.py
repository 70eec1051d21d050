"""Shared test setup: real data from ../shared/data when present, small defaults."""
import os
import signal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

if "LGN_FPGA_DATA" not in os.environ and SHARED_DATA.is_dir():
    os.environ["LGN_FPGA_DATA"] = str(SHARED_DATA)
# Tests never reach the network: a missing dataset is a skip or an expected error.
os.environ.setdefault("LGN_FPGA_OFFLINE", "1")


# What a test needs, read from the fixtures it uses; explicit marks (toolchain, sim, slow) name the rest.
# `make test-quick` deselects all of them.
_FIXTURE_NEEDS = {"trained_digits": ("train",), "trained_mnist": ("train", "data"),
                  "trained_mnist_small": ("train", "data"), "tiny_run": ("train",), "real_data_dir": ("data",)}


def pytest_collection_modifyitems(config, items):
    for item in items:
        for name in getattr(item, "fixturenames", ()):
            for marker in _FIXTURE_NEEDS.get(name, ()):
                item.add_marker(marker)


@pytest.fixture(autouse=True)
def default_signal_handlers():
    """Python's own signal handlers for every test (a suite started with nohup or as a background job ignores SIGINT;
    the trainer leaves an ignored signal ignored), the caller's afterwards."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for s, h in before.items():
        signal.signal(s, h)


def have_data(name: str) -> bool:
    from lgn_fpga.data.datasets import load
    from lgn_fpga.errors import DataError
    try:
        load(name)
        return True
    except DataError:
        return False


@pytest.fixture(scope="session")
def real_data_dir():
    d = os.environ.get("LGN_FPGA_DATA")
    if not d or not Path(d).is_dir():
        pytest.skip("real datasets not available (set LGN_FPGA_DATA)")
    return Path(d)


def _cli(argv):
    """Run ``lgn-fpga ARGV`` in this process and insist that it succeeds."""
    from lgn_fpga.cli import main
    with pytest.raises(SystemExit) as e:
        main(argv)
        raise SystemExit(0)
    assert e.value.code == 0, f"lgn-fpga {' '.join(argv)} failed"


@pytest.fixture
def lgn_cli():
    return _cli


def _train_and_export(tmp_path_factory, name: str, train_args: list):
    """Train ``lgn-fpga train ARGS`` into a fresh folder, export it optimized; the .lgn path."""
    d = tmp_path_factory.mktemp(name)
    _cli(["train", *train_args, "--quiet", "-o", str(d / "run")])
    _cli(["export", str(d / "run"), "-o", str(d / "model.lgn")])
    return d / "model.lgn"


@pytest.fixture(scope="session")
def trained_digits(tmp_path_factory):
    """The `make demo` model: digits-tiny trained with the default recipe and exported (about 20 s)."""
    return _train_and_export(tmp_path_factory, "digits-model", ["digits", "--config", "digits-tiny"])


@pytest.fixture(scope="session")
def trained_mnist(tmp_path_factory, real_data_dir):
    """A real MNIST model, trained here (about 15 s with the C kernel) and exported optimized.

    5 x 4000 gates, 1 threshold, 400 steps (about 88% test accuracy); the optimized netlist keeps
    more than 8,000 gates, the size the hardware agreement checks ask for.
    """
    if not have_data("mnist"):
        pytest.skip("MNIST not available")
    return _train_and_export(tmp_path_factory, "mnist-model", [
        "mnist", "--thresholds", "1", "--layers", "5", "--width", "4000", "--steps", "400", "--eval-every", "400",
        "--val-size", "1000"])


@pytest.fixture(scope="session")
def trained_mnist_small(tmp_path_factory, real_data_dir):
    """A real MNIST model for the CI's ULX3S build: 4 x 7,000 gates with local wiring (patches of 3, 5, 7
    and 9 pixels), 1 threshold, 2,000 steps, one thread (deterministic): 10,776 gates after export, 94.95 %
    test (the C Gumbel noise stream; 10,678 and 94.25 % with torch's noise, 10,712 and 94.62 % before the
    fused AdamW); about 15 s of training on one core.

    It routes because of local wiring and nextpnr's static placer (docs/routing.md).
    """
    if not have_data("mnist"):
        pytest.skip("MNIST not available")
    return _train_and_export(tmp_path_factory, "mnist-small-model", [
        "mnist", "--thresholds", "1", "--layers", "4", "--width", "7000", "--connections", "local",
        "--set", "window=[3,5,7,9]", "--steps", "2000", "--eval-every", "1000", "--val-size", "1000",
        "--threads", "1"])


@pytest.fixture
def simd_and_generic():
    """``both(fn) -> (fn() with the C library's AVX-512 forms, fn() with its generic loops)``; skips on a build
    without the AVX-512 forms (or without the C library)."""
    from lgn_fpga.kernels import cpu
    if not cpu.available() or not cpu._lib().lgn_use_tiles(1):
        pytest.skip("no C kernel with an AVX-512 form")
    lib = cpu._lib()

    def both(fn):
        try:
            simd = fn()
            lib.lgn_use_tiles(0)
            return simd, fn()
        finally:
            lib.lgn_use_tiles(1)
    return both


@pytest.fixture(scope="session")
def small_net():
    """One small netlist for the host and virtual-board tests, so the virtual board is compiled once."""
    import numpy as np

    from lgn_fpga.netlist.random import random_netlist
    return random_netlist(np.random.default_rng(21), shape=(1, 4, 4), thresholds=3, widths=(64, 48, 30), n_classes=5)


@pytest.fixture(scope="session", params=["gumbel-ste", "softmax"])
def tiny_run(request, tmp_path_factory):
    """A trained digits run directory (3 layers x 120 gates, 40 steps), in each training mode."""
    from lgn_fpga.train import loop
    from lgn_fpga.train.config import resolve_config
    cfg = resolve_config({}, dict(dataset="digits", layers=3, width=120, steps=40, eval_every=40, batch_size=64,
                                  kernel="reference", thresholds=2, mode=request.param))
    d = tmp_path_factory.mktemp("run") / request.param
    loop.Trainer(cfg, d, progress=False).train()
    return d


def pytest_terminal_summary(terminalreporter, config):
    """Totals a test module left in ``config.lgn_summary`` (e.g. the fault-injection suite's)."""
    for title, totals in getattr(config, "lgn_summary", {}).items():
        if not any(totals.values()):
            continue
        terminalreporter.write_line(f"{title}: " + ", ".join(f"{k} {v:,}" for k, v in totals.items()))
