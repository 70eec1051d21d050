"""The fit check: estimates, and refusal before synthesis with the estimate and the budget."""
import numpy as np
import pytest

from lgn_fpga.fpga.boards import load_board
from lgn_fpga.fpga.fit import FitError, check_fit, estimate, frame_buffer_bits
from lgn_fpga.data.encoding import ThermometerEncoding
from lgn_fpga.netlist.ir import Layer, Netlist
from lgn_fpga.netlist.random import random_netlist


def _reader(thresholds, n_bytes=4):
    """Every input bit feeds a live wire gate, so every byte and threshold is used."""
    enc = ThermometerEncoding.make((1, 1, n_bytes), thresholds)
    n = enc.n_bits
    lay = Layer(np.full(n, 12, np.uint8), np.arange(n), np.arange(n))     # gate 12 = A (a wire)
    return Netlist(enc, [lay], [np.arange(n, 2 * n)]).validate()


@pytest.mark.parametrize("thresholds, bits, levels, level_lanes", [
    (1, 1, 1, 1), (3, 2, 3, 2), (7, 3, 7, 3), ([100], 8, 1, 1), ([100, 127], 8, 2, 2), ([191], 2, 1, 1)])
def test_frame_buffer_bits(thresholds, bits, levels, level_lanes):
    # A byte buffer: p > t reads the bits of p down to the lowest set bit of t+1.  Binarized on arrival:
    # one bit per threshold.  "auto" takes the smaller (the byte buffer on a tie).  The levels wire format:
    # level > j reads the level's bits down to the lowest set bit of j+1.
    net = _reader(thresholds)
    assert frame_buffer_bits(net, "frame") == 4 * bits
    assert frame_buffer_bits(net, "arrival") == 4 * levels
    assert frame_buffer_bits(net) == 4 * min(bits, levels)
    assert frame_buffer_bits(net, wire="levels") == 4 * level_lanes
    with pytest.raises(ValueError, match="binarize='arrival' needs the bytes wire format"):
        frame_buffer_bits(net, "arrival", wire="levels")


def test_levels_wire_binarizer():
    # uniform thresholds (63, 127, 191) read the top two bits of a byte: the same logic as 2-bit levels;
    # other thresholds read more of the byte than of the level
    b = load_board("ulx3s")
    for th, fewer in ((3, False), ([10, 100, 200], True)):
        net = random_netlist(np.random.default_rng(0), shape=(3, 8, 8), thresholds=th, widths=(600, 300),
                             n_classes=10)
        lv, by = estimate(net, b, wire="levels"), estimate(net, b, wire="bytes")
        assert estimate(net, b).lut == lv.lut                     # the default, as `lgn-fpga build`
        assert (lv.lut < by.lut and lv.ff < by.ff) if fewer else (lv.lut == by.lut and lv.ff == by.ff)


def test_dead_bytes_cost_nothing():
    enc = ThermometerEncoding.make((1, 1, 8), 1)
    lay = Layer(np.full(2, 12, np.uint8), np.array([0, 1]), np.array([0, 1]))
    net = Netlist(enc, [lay], [np.array([8]), np.array([9])]).validate()
    assert frame_buffer_bits(net) == 2


def test_estimate_grows_with_the_model():
    small = random_netlist(np.random.default_rng(0), shape=(1, 8, 8), thresholds=3, widths=(200, 100), n_classes=10)
    big = random_netlist(np.random.default_rng(0), shape=(1, 8, 8), thresholds=3, widths=(2000, 1000), n_classes=10)
    b = load_board("icebreaker")
    es, eb = estimate(small, b), estimate(big, b)
    assert 0 < es.lut < eb.lut and 0 < es.ff < eb.ff and es.cells < eb.cells
    assert es.fits and es.parts["io"]["lut"] > 0


def test_oversized_model_refused_with_estimate_and_budget():
    big = random_netlist(np.random.default_rng(0), shape=(1, 8, 8), thresholds=3, widths=(1500, 1500, 1000),
                         n_classes=10)
    with pytest.raises(FitError, match=r"model does not fit icestick \(iCE40HX1K\): logic cells: estimated "
                                       r"[\d,]+ > 1,280 available \(\d+ %\).* Use a larger board, a smaller model, "
                                       r"or --no-fit-check"):
        check_fit(big, load_board("icestick"))
    est = check_fit(big, load_board("icestick"), enforce=False)
    assert not est.fits and est.over()[0][2] == 1280
    assert check_fit(big, load_board("ulx3s-25f")).fits


def test_trained_gate_cost_model_reproduces_the_builds_it_was_fitted_on():
    """The ECP5 cost model (fit.TRAINED_GATE_COST) against measured CIFAR-10 builds (README, "FPGA builds")."""
    from lgn_fpga.fpga.fit import lut_budget, size_widths, trained_lut_cost
    for widths, measured, tol in (([16000] * 3 + [4000], 22756, 0.01), ([16000] * 4, 64033, 0.01),
                                  ([8000] * 4, 31588, 0.02), ([24000] * 3 + [6000], 33117, 0.04),
                                  ([37930] * 3 + [9480], 52606, 0.03)):
        assert abs(trained_lut_cost("ecp5", widths) / measured - 1) < tol, widths
    b = load_board("ulx3s")
    w = size_widths(b, [16000, 16000, 16000, 4000], 10)
    assert w[0] == w[1] == w[2] and abs(w[3] / w[0] - 0.25) < 0.01
    assert trained_lut_cost("ecp5", w) <= lut_budget(b) < trained_lut_cost("ecp5", [x + 10 for x in w])


def test_ice40_cost_model_reproduces_the_icebreaker_builds():
    """The iCE40 cost model (fit.TRAINED_GATE_COST, 2 gate layers per stage) plus the I/O and frame buffer that
    fit.lut_budget reserves, against placed MNIST builds (docs/method.md, "MNIST on the iCEBreaker")."""
    from lgn_fpga.fpga.fit import lut_budget, size_width, trained_lut_cost
    b = load_board("icebreaker")
    reserved = int(0.9 * b.budget["lut"]) - lut_budget(b, 784)         # I/O, its unpaired FFs, the frame buffer
    assert 900 < reserved < 1000 and lut_budget(b, 784) < lut_budget(b)
    for widths, cells in (([960] * 4, 4988), ([800] * 4, 4343), ([1120] * 3 + [640], 3742), ([960] * 3 + [640], 3682),
                          ([1600] * 3 + [640], 3978), ([960] * 3 + [800], 4341), ([960] * 3 + [480], 2967)):
        assert abs((trained_lut_cost("ice40", widths) + reserved) / cells - 1) < 0.06, widths
    # MNIST's uniform recipe sized for the iCEBreaker lands between what routed (4 x 800, 82 %) and 4 x 960 (94.5 %)
    assert 800 <= size_width(b, 4, 10, 784) < 960
    with pytest.raises(FitError, match="no logic left for gates after the I/O and a frame buffer for 9,216 input bits"):
        size_width(b, 4, 10, 9216)
