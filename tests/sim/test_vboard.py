"""The virtual board: line models, and both simulator backends against the golden model."""
from fractions import Fraction

import numpy as np
import pytest

from lgn_fpga import protocol as P
from lgn_fpga.sim.vboard import LineDriver, LineMonitor, VirtualBoard, have_verilator
from lgn_fpga.netlist.evaluate import predict

needs_verilator = pytest.mark.skipif(not have_verilator(), reason="verilator not installed")


@pytest.fixture(scope="module")
def net(small_net):
    return small_net


@pytest.mark.parametrize("divisor", [4, 8, Fraction(25, 3), Fraction(217, 16)])
def test_line_models_round_trip(divisor):
    data = bytes(np.random.default_rng(0).integers(0, 256, 50, np.uint8))
    drv, mon = LineDriver(divisor), LineMonitor(divisor)
    drv.queue(data)
    out = bytearray()
    cycles = 0
    while not drv.idle:
        cycles += 1
        b = mon.sample(drv.level())
        if b is not None:
            out.append(b)
    assert bytes(out) == data and mon.framing_errors == 0
    # Bit edges are placed exactly: 50 bytes take 500 bit periods, to within one cycle.
    assert abs(cycles - 500 * float(divisor)) < 1


def test_line_driver_break():
    drv = LineDriver(8)
    drv.hold_low(100)
    levels = [drv.level() for _ in range(120)]
    assert levels[:100] == [0] * 100 and levels[100:116] == [1] * 16 and drv.idle


def _session(vb, net, images):
    """Frames, an INFO request, a dropped byte with a pause, and a frame after it."""
    wire = bytearray()
    for i, im in enumerate(images):
        vb.write(P.encode_request(i, im))
        wire += vb.read(P.REPLY_LEN, 0.05)
    vb.write(P.encode_info_request(200))
    wire += vb.read(P.REPLY_LEN + P.INFO_LEN, 0.05)
    f = bytearray(P.encode_request(201, images[0]))
    del f[6]
    vb.write(bytes(f))
    wire += vb.read(P.REPLY_LEN, 0.05)             # the board times out and says so
    vb.write(P.encode_request(202, images[1]))
    wire += vb.read(P.REPLY_LEN, 0.05)
    return bytes(wire)


def _check(wire, net, images, vb):
    gold = predict(net, images)
    reps = P.ReplyParser().feed(wire)
    assert [(r.seq, r.code) for r in reps[:len(images)]] == list(enumerate(gold.tolist()))
    info = reps[len(images)].info()
    assert info.model_hash == bytes.fromhex(net.content_hash())[:8]
    assert info.image_bytes == net.encoding.image_bytes and info.clock_hz == vb.clk_hz
    assert (reps[-2].seq, reps[-2].code) == (201, P.ERR_TIMEOUT)
    assert (reps[-1].seq, reps[-1].code) == (202, gold[1])


@pytest.mark.heavy
def test_amaranth_backend(net):
    imgs = np.random.default_rng(3).integers(0, 256, (3, *net.encoding.shape), np.uint8)
    with VirtualBoard(net, backend="amaranth") as vb:
        wire = _session(vb, net, imgs)
        _check(wire, net, imgs, vb)


@pytest.mark.sim
@needs_verilator
def test_verilator_backend_matches_amaranth_byte_for_byte(net):
    imgs = np.random.default_rng(3).integers(0, 256, (3, *net.encoding.shape), np.uint8)
    with VirtualBoard(net, backend="verilator") as vb:
        wire_v = _session(vb, net, imgs)
        _check(wire_v, net, imgs, vb)
    with VirtualBoard(net, backend="amaranth") as vb:
        wire_a = _session(vb, net, imgs)
    assert wire_v == wire_a


def test_backend_checked(net):
    with pytest.raises(ValueError, match=r"backend must be 'auto', 'verilator' or 'amaranth', not 'x'"):
        VirtualBoard(net, backend="x")
    with pytest.raises(ValueError, match=r"cycles_per_bit must be an integer >= 4, not 3"):
        VirtualBoard(net, cycles_per_bit=3)
