# amaranth: UnusedElaboratable=no
"""The full top level: argument checks, and the cocotb bench that streams images over the UART pins."""
import numpy as np
import pytest

from lgn_fpga import protocol as P
from lgn_fpga.hdl.core import ImageClassifier
from lgn_fpga.hdl.top import ClassifierTop
from lgn_fpga.netlist.random import random_netlist


@pytest.fixture(scope="module")
def net():
    return random_netlist(np.random.default_rng(0), shape=(1, 4, 4), thresholds=3, widths=(48, 32, 20), n_classes=4)


def test_arguments(net):
    with pytest.raises(ValueError, match=r"baud rate 4000000 is too high for a 12 MHz clock"):
        ClassifierTop(net, clk_hz=12e6, baud=4_000_000)
    with pytest.raises(ValueError, match=r"n_leds must be a non-negative integer, not -1"):
        ClassifierTop(net, clk_hz=12e6, baud=115200, n_leds=-1)
    with pytest.raises(TypeError, match=r"netlist must be a Netlist, not 3"):
        ClassifierTop(3, clk_hz=12e6, baud=115200)
    many = random_netlist(np.random.default_rng(0), widths=(300,), n_classes=150, group=2)
    with pytest.raises(ValueError, match=r"the UART protocol carries at most 128 classes, not 150"):
        ClassifierTop(many, clk_hz=12e6, baud=115200)


def test_derived_parameters(net):
    top = ClassifierTop(net, clk_hz=25e6, baud=3_000_000, n_leds=8)
    assert top.latency == ImageClassifier(net).latency
    assert float(top.divisor) == pytest.approx(25 / 3)
    assert top.timeout == P.frame_timeout_cycles(25e6, 3_000_000)
    assert top.info.model_hash == bytes.fromhex(net.content_hash())[:8]
    assert top.info.image_bytes == 16 and top.info.n_classes == 4 and top.info.clock_hz == 25_000_000
    assert top.seq_depth >= 2


@pytest.mark.sim
def test_cocotb_bench_streams_and_survives_faults(net, tmp_path):
    from lgn_fpga.sim.run_top import have_icarus, run_top_bench
    if not have_icarus():
        pytest.skip("iverilog not installed")
    imgs = np.random.default_rng(1).integers(0, 256, (12, *net.encoding.shape), np.uint8)
    r = run_top_bench(net, imgs, tmp_path / "bench")
    assert (r.tests, r.failed) == (3, 0), f"cocotb: {r.failed} of {r.tests} tests failed, see {r.results_xml}"


@pytest.mark.sim
@pytest.mark.slow
def test_cocotb_bench_digits_sized(tmp_path):
    """The same bench on a digits-sized model (192 input bits, 2,100 gates): Icarus runs it at about 1,000
    cycles/s, so this takes about ten minutes."""
    from lgn_fpga.sim.run_top import have_icarus, run_top_bench
    if not have_icarus():
        pytest.skip("iverilog not installed")
    big = random_netlist(np.random.default_rng(1), shape=(1, 8, 8), thresholds=3, widths=(800, 800, 500),
                         n_classes=10)
    imgs = np.random.default_rng(2).integers(0, 256, (4, 1, 8, 8), np.uint8)
    r = run_top_bench(big, imgs, tmp_path / "bench")
    assert (r.tests, r.failed) == (3, 0), f"cocotb: {r.failed} of {r.tests} tests failed, see {r.results_xml}"


def test_ulx3s_rate_3_mbaud_at_25_mhz(net):
    """8.33 cycles per bit (fractional divisor) through the whole top level, in Amaranth's simulator."""
    from lgn_fpga.sim.vboard import AmaranthBackend
    from lgn_fpga.netlist.evaluate import predict
    top = ClassifierTop(net, clk_hz=25e6, baud=3_000_000, frame_timeout=2000)
    be = AmaranthBackend(top)
    imgs = np.random.default_rng(5).integers(0, 256, (2, *net.encoding.shape), np.uint8)
    be.write(b"".join(P.encode_request(i, im) for i, im in enumerate(imgs)))
    out = be.run(2 * P.REPLY_LEN, 3 * 10 * 9 * P.request_len(16))
    reps = P.ReplyParser().feed(out)
    assert [(r.seq, r.code) for r in reps] == list(enumerate(predict(net, imgs).tolist()))
