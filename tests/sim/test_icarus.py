# amaranth: UnusedElaboratable=no
"""cocotb benches on the exported Verilog, with Icarus, against the golden evaluator."""
import numpy as np
import pytest

from lgn_fpga.data.encoding import ThermometerEncoding
from lgn_fpga.hdl.export import export_core
from lgn_fpga.netlist.evaluate import encode_images, predict
from lgn_fpga.netlist.ir import Layer, Netlist
from lgn_fpga.netlist.random import random_netlist

from lgn_fpga.sim.icarus import have_icarus, run_cocotb

pytestmark = [pytest.mark.sim,
              pytest.mark.skipif(not have_icarus(), reason="iverilog not installed (make test installs it as root)")]


def test_images(shape, rng, n):
    return np.concatenate([np.zeros((1,) + shape, np.uint8), np.full((1,) + shape, 255, np.uint8),
                           (rng.random((n,) + shape) * rng.integers(1, 256, (n, 1, 1, 1))).astype(np.uint8)])


test_images.__test__ = False   # a helper, not a test


def run(net, images, tmp_path, *, inputs="bytes", stages=1, expected=None):
    r = export_core(net, tmp_path / "hw", stages=stages, inputs=inputs)
    if inputs == "bytes":
        payloads = images.reshape(len(images), -1)
    else:
        payloads = np.packbits(encode_images(net, images), axis=1, bitorder="little")
    want = predict(net, images) if expected is None else expected
    return run_cocotb(r.verilog, r.info["top"], payloads, want, r.info["latency"], tmp_path / "icarus",
                      stall_images=60), want


def test_random_netlist_bytes_in(tmp_path):
    rng = np.random.default_rng(11)
    net = random_netlist(rng, shape=(1, 8, 8), thresholds=3, widths=(120, 100, 80), n_classes=10,
                         skip_prob=0.2, bias=True)
    res, want = run(net, test_images(net.encoding.shape, rng, 120), tmp_path)
    assert (res.tests, res.failed) == (2, 0)
    assert (res.classes == want).all()


def test_tied_scores_bits_in_two_layers_per_stage(tmp_path):
    enc = ThermometerEncoding.make((1, 2, 2), 1)
    l0 = Layer([1, 7, 6, 3], [0, 1, 2, 3], [1, 2, 3, 0])
    l1 = Layer([6, 9, 3], [4, 5, 6], [7, 1, 2])
    # classes 0/1 count the same signals; 2 ties them through its bias; 3 and 4 mirror each other
    net = Netlist(enc, [l0, l1], [np.array([4, 8]), np.array([8, 4]), np.array([9]),
                                  np.array([10, 7]), np.array([7, 10])], bias=np.array([0, 0, 1, 0, 0])).validate()
    imgs = np.stack([np.array([(i >> j) & 1 for j in range(4)], np.uint8).reshape(1, 2, 2) * 200 for i in range(16)])
    res, want = run(net, np.concatenate([imgs] * 4), tmp_path, inputs="bits", stages=2)
    assert (res.tests, res.failed) == (2, 0)
    assert set(want.tolist()) <= {0, 2, 3}


def test_the_bench_catches_a_wrong_class(tmp_path):
    rng = np.random.default_rng(2)
    net = random_netlist(rng, shape=(1, 3, 3), widths=(16, 12), n_classes=3)
    imgs = test_images(net.encoding.shape, rng, 20)
    wrong = predict(net, imgs)
    wrong[7] = (wrong[7] + 1) % 3
    res, _ = run(net, imgs, tmp_path, expected=wrong)
    assert res.failed == 2          # both the full-rate and the back-pressure test see image 7


def test_digits_test_split(tmp_path):
    """The whole digits test split (sklearn's copy, always present) through a digits-shaped netlist."""
    from lgn_fpga.data.datasets import load
    split = load("digits").test
    net = random_netlist(np.random.default_rng(4), shape=(1, 8, 8), thresholds=3, widths=(400, 300, 200),
                         n_classes=10, skip_prob=0.1, bias=True)
    res, want = run(net, split.images, tmp_path)
    assert (res.tests, res.failed) == (2, 0)
    assert len(res.classes) == len(split) and (res.classes == want).all()
