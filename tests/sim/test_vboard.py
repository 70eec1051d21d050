"""The virtual board: line models, and both simulator backends against the golden model."""
from fractions import Fraction

import numpy as np
import pytest

from lgn_fpga import protocol as P
from lgn_fpga.sim.uart_line import LineDriver, LineMonitor
from lgn_fpga.sim.vboard import VirtualBoard, have_verilator
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


def _info_burst_model(n: int) -> list:
    """Which INFO requests of a back-to-back burst docs/protocol.md says are answered.

    A request is 5 byte times, its reply 23: the board sends one INFO reply and holds one request
    waiting; a request that completes while one is already waiting gets no reply.
    """
    req, rep = P.request_len(0), P.REPLY_LEN + P.INFO_LEN
    free, waiting, out = -1, None, []
    for i in range(n):
        t = req * (i + 1)
        if waiting is not None and free <= t:
            free, waiting = max(free, waiting[0]) + rep, out.append(waiting[1])
        if free <= t:
            out.append(i)
            free = t + rep
        elif waiting is None:
            waiting = (t, i)
    return out + ([waiting[1]] if waiting else [])


@pytest.mark.sim
@needs_verilator
def test_info_bursts_drop_exactly_what_the_protocol_says(net):
    # Issue 15: 50 back-to-back INFO requests got 12 replies.  Each sent after the last reply, every one is
    # answered; in a burst, exactly those the one-waiting-request rule keeps (below 24 requests the
    # model has no ties between a request's end and a reply's end).
    with VirtualBoard(net, backend="verilator") as vb:
        byte = 10 / vb.baud
        for i in range(6):
            vb.write(P.encode_info_request(i))
            vb.run((P.request_len(0) + P.REPLY_LEN + P.INFO_LEN + 1) * byte)   # after the reply
        reps = P.ReplyParser().feed(vb.read_available())
        assert [(r.seq, r.code) for r in reps] == [(i, P.CODE_INFO) for i in range(6)]
        for n in (2, 3, 5, 10, 20):
            vb.write(b"".join(P.encode_info_request(i) for i in range(n)))
            vb.run((n + 3) * (P.REPLY_LEN + P.INFO_LEN) * byte)
            seqs = [r.seq for r in P.ReplyParser().feed(vb.read_available())]
            assert seqs == _info_burst_model(n), n
    assert _info_burst_model(5) == [0, 1] and _info_burst_model(20) == [0, 1, 5, 10, 15]
