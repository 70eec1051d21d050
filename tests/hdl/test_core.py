# amaranth: UnusedElaboratable=no
"""ClassifierCore and ImageClassifier in the Amaranth simulator, image by image against the golden evaluator."""
import numpy as np
import pytest
from amaranth.lib import stream
from amaranth.lib.wiring import In, Out
from amaranth.hdl import unsigned
from hypothesis import given, settings, strategies as st, HealthCheck

from lgn_fpga.data.encoding import ThermometerEncoding
from lgn_fpga.hdl.core import ClassifierCore, ImageClassifier
from lgn_fpga.hdl.simulate import pack_bits, pack_bytes, run_stream
from lgn_fpga.netlist.evaluate import encode_images, predict, scores
from lgn_fpga.netlist.ir import Layer, Netlist
from lgn_fpga.netlist.random import random_netlist


def images_for(net, rng, n):
    """All-zero, all-255, then random images (with random contrast so thresholds are crossed both ways)."""
    shape = net.encoding.shape
    rand = (rng.random((n,) + shape) * rng.integers(1, 256, (n, 1, 1, 1))).astype(np.uint8)
    return np.concatenate([np.zeros((1,) + shape, np.uint8), np.full((1,) + shape, 255, np.uint8), rand])


def check_core(net, images, *, stages=1, stalls=True, seed=0, bytes_in=False):
    expected = predict(net, images).tolist()
    dut = ImageClassifier(net, stages) if bytes_in else ClassifierCore(net, stages)
    payloads = pack_bytes(images) if bytes_in else pack_bits(encode_images(net, images))
    r = run_stream(dut, payloads)
    assert r.outputs == expected
    assert (r.latencies() == dut.latency).all(), "a class did not appear exactly `latency` cycles after its image"
    assert r.in_cycles == list(range(len(payloads))), "the core did not accept an image every cycle"
    if stalls:
        r = run_stream(dut, payloads, valid_prob=0.5, ready_prob=0.5, seed=seed)
        assert r.outputs == expected, "images lost, duplicated or reordered under valid gaps / back-pressure"
    return dut


def test_signature_is_the_published_interface():
    net = random_netlist(np.random.default_rng(0), n_classes=5)
    core = ClassifierCore(net)
    assert core.signature.members["i"] == In(stream.Signature(unsigned(net.n_inputs)))
    assert core.signature.members["o"] == Out(stream.Signature(unsigned(3)))
    assert isinstance(core.latency, int) and core.latency == (
        core.pipeline.latency + core.popcount.latency + core.argmax.latency)
    img = ImageClassifier(net)
    assert img.signature.members["i"] == In(stream.Signature(unsigned(8 * net.encoding.image_bytes)))
    assert img.latency == core.latency
    assert ImageClassifier(net, registered_binarizer=True).latency == core.latency + 1


@pytest.mark.parametrize("stages", [1, 2, 4])
def test_core_random_netlist(stages):
    rng = np.random.default_rng(stages)
    net = random_netlist(rng, shape=(1, 5, 5), thresholds=3, widths=(60, 50, 40, 40), n_classes=4,
                         skip_prob=0.3, bias=True)
    check_core(net, images_for(net, rng, 60), stages=stages, seed=stages)


def test_image_classifier_bytes_in():
    rng = np.random.default_rng(7)
    net = random_netlist(rng, shape=(2, 3, 3), thresholds=2, widths=(40, 30), n_classes=3, skip_prob=0.2)
    check_core(net, images_for(net, rng, 40), bytes_in=True)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n_classes=st.integers(1, 7), depth=st.integers(1, 5),
       stages=st.integers(1, 3), skip=st.sampled_from([0.0, 0.5]))
def test_property_hardware_equals_golden(seed, n_classes, depth, stages, skip):
    rng = np.random.default_rng(seed)
    widths = tuple(int(w) for w in rng.integers(n_classes, 3 * n_classes + 12, depth))
    net = random_netlist(rng, shape=(1, 3, 3), thresholds=2, widths=widths, n_classes=n_classes,
                         skip_prob=skip, bias=bool(seed % 2))
    check_core(net, images_for(net, rng, 12), stages=stages, stalls=False)


def tie_netlist():
    """Classes built to tie: 0 and 1 count the same signals; 2 equals them through its bias; 3 is a copy of 4."""
    enc = ThermometerEncoding.make((1, 2, 2), 1)                # bits 0..3
    l0 = Layer([1, 7, 6, 3], [0, 1, 2, 3], [1, 2, 3, 0])        # AND, OR, XOR, A  -> signals 4..7
    outputs = [np.array([4, 5]), np.array([5, 4]), np.array([4]), np.array([6, 7]), np.array([7, 6])]
    bias = np.array([0, 0, 0, 0, 0])
    return Netlist(enc, [l0], outputs, bias=bias).validate()


def test_tied_scores_go_to_the_lowest_class():
    net = tie_netlist()
    imgs = np.array([[[[(i >> j & 1) * 255 for j in range(2)] for j2 in range(2)]] for i in range(4)], np.uint8)
    imgs = np.stack([np.array([(i >> j) & 1 for j in range(4)], np.uint8).reshape(1, 2, 2) * 255
                     for i in range(16)])
    s = scores(net, imgs)
    assert (s[:, 0] == s[:, 1]).all() and (s[:, 3] == s[:, 4]).all()   # the construction ties them
    pred = predict(net, imgs)
    assert set(pred.tolist()) <= {0, 3} and {0, 3} <= set(pred.tolist())  # class 1 and 4 never win
    check_core(net, imgs)
    # With a bias, class 2 ties classes 0 and 1 whenever signal 5 is set: 2 must lose to 0.
    net2 = net.copy(bias=np.array([0, 0, 1, 0, 0]))
    assert ((scores(net2, imgs)[:, 2] == scores(net2, imgs)[:, 0])).any()
    check_core(net2, imgs)


def test_all_zero_and_all_255_images():
    rng = np.random.default_rng(3)
    net = random_netlist(rng, shape=(3, 2, 2), thresholds=3, widths=(30, 30, 24), n_classes=3, bias=True)
    imgs = np.stack([np.zeros(net.encoding.shape, np.uint8), np.full(net.encoding.shape, 255, np.uint8)] * 3)
    check_core(net, imgs, bytes_in=True)


def test_one_class_and_no_layers():
    enc = ThermometerEncoding.make((1, 2, 2), 2)
    # No gate layers: classes count input bits directly.
    net = Netlist(enc, [], [np.array([0, 1, 2]), np.array([3, 4, 5, 6, 7])], bias=np.array([2, 0])).validate()
    rng = np.random.default_rng(0)
    dut = check_core(net, images_for(net, rng, 20))
    assert dut.pipeline.latency == 0
    one = random_netlist(rng, widths=(8, 4), n_classes=1)
    assert ClassifierCore(one).argmax.latency == 0
    check_core(one, images_for(one, rng, 5))


def test_core_arguments():
    with pytest.raises(TypeError, match="netlist must be a Netlist, not None"):
        ClassifierCore(None)
    with pytest.raises(ValueError, match="stages must be a positive integer .*, not 0"):
        ClassifierCore(random_netlist(np.random.default_rng(0)), stages=0)
