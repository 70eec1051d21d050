# amaranth: UnusedElaboratable=no
"""Framer, frame buffer and reply serializer against the protocol's Python model."""
import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator
from hypothesis import HealthCheck, given, settings, strategies as st

from lgn_fpga import protocol as P
from lgn_fpga.data.encoding import ThermometerEncoding
from lgn_fpga.hdl.framing import Framer, Replier, crc16_next

TIMEOUT = 40


# -- the CRC ------------------------------------------------------------------------------------

def test_crc_check_value():
    assert P.crc16(b"123456789") == 0x29B1          # the catalogue's check value of CRC-16/CCITT-FALSE
    body = b"\x07hello"
    assert P.crc16(body + P.crc16(body).to_bytes(2, "big")) == 0   # the hardware's check


def test_crc16_next_matches_protocol():
    crc, byte = Signal(16), Signal(8)
    m = Module()
    out = Signal(16)
    m.d.comb += out.eq(crc16_next(crc, byte))
    rng = np.random.default_rng(0)
    pairs = [(0xFFFF, 0), (0, 0xFF), (0x8000, 0x80)] + [(int(c), int(b)) for c, b in
                                                           zip(rng.integers(0, 1 << 16, 300), rng.integers(0, 256, 300))]

    async def tb(ctx):
        for c, b in pairs:
            ctx.set(crc, c)
            ctx.set(byte, b)
            assert ctx.get(out) == P.crc16_update(c, b), (c, b)
    sim = Simulator(m)
    sim.add_testbench(tb)
    sim.run()


# -- argument checks ---------------------------------------------------------------------------

def test_framer_arguments():
    with pytest.raises(ValueError, match=r"image_bytes must be a positive integer, not 0"):
        Framer(0, 10)
    with pytest.raises(ValueError, match=r"timeout must be a positive number of cycles, not -1"):
        Framer(4, -1)
    with pytest.raises(ValueError, match=rf"info must be {P.INFO_LEN} bytes, not 3"):
        Replier(b"abc")


# -- framer simulation ---------------------------------------------------------------------------

def run_framer(events, n, timeout=TIMEOUT, ready=None, tail=None, encoding=None):
    """Drive ``events`` ((byte, err, gap) with gap >= 1 cycles) into a framer; return its outputs.

    ``ready(cycle)`` says whether the image output is taken in that cycle (default: always).
    With ``encoding`` the framer binarizes on arrival and an image's data is returned as its bits
    (bool array in the encoding's bit order).
    """
    dut = Framer(n, timeout, encoding=encoding)
    got = []
    tail = timeout + 5 if tail is None else tail

    async def tb(ctx):
        cycle = 0
        ctx.set(dut.error.ready, 1)
        ctx.set(dut.info.ready, 1)

        async def step():
            # Handshakes are sampled before the edge: what is valid (and ready) now is taken at it.
            nonlocal cycle
            r = 1 if ready is None else int(ready(cycle))
            ctx.set(dut.image.ready, r)
            if ctx.get(dut.image.valid) and r:
                d = ctx.get(dut.image.payload.data)
                if encoding is None:
                    got.append(("image", ctx.get(dut.image.payload.seq), d.to_bytes(n, "little")))
                else:
                    bits = np.array([(d >> k) & 1 for k in range(encoding.n_bits)], bool)
                    got.append(("image", ctx.get(dut.image.payload.seq), bits))
            if ctx.get(dut.error.valid):
                got.append(("error", ctx.get(dut.error.payload.seq), ctx.get(dut.error.payload.code)))
            if ctx.get(dut.info.valid):
                got.append(("info", ctx.get(dut.info.payload)))
            await ctx.tick()
            cycle += 1

        for byte, err, gap in events:
            for _ in range(gap - 1):
                await step()
            ctx.set(dut.i.payload.data, byte)
            ctx.set(dut.i.payload.err, err)
            ctx.set(dut.i.valid, 1)
            await step()
            ctx.set(dut.i.valid, 0)
        for _ in range(tail):
            await step()
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return got


def model(events, n, timeout=TIMEOUT, tail=None):
    dec = P.FrameDecoder(n, timeout)
    out = []
    for byte, err, gap in events:
        out += dec.feed(byte, err, gap)
    out += dec.idle(timeout + 5 if tail is None else tail)
    return out


def as_events(data: bytes, gap=10, err_at=()):
    return [(b, int(i in err_at), gap) for i, b in enumerate(data)]


def img(n, seed):
    return np.random.default_rng(seed).integers(0, 256, n, np.uint8)


def test_good_frames_and_info():
    n = 5
    a, b = img(n, 1), img(n, 2)
    stream = P.encode_request(7, a) + P.encode_info_request(9) + P.encode_request(255, b)
    got = run_framer(as_events(stream), n)
    assert got == [("image", 7, a.tobytes()), ("info", 9), ("image", 255, b.tobytes())]
    assert got == model(as_events(stream), n)


def test_frame_buffer_byte_order():
    # Byte p of the image must sit at bits [8p, 8p+8) of the buffer: that is what the binarizer reads.
    n = 4
    got = run_framer(as_events(P.encode_request(1, np.array([1, 2, 3, 4], np.uint8))), n)
    assert got == [("image", 1, bytes([1, 2, 3, 4]))]


@pytest.mark.parametrize("shape,thresholds", [((1, 3, 2), 1), ((3, 2, 2), [[10, 100, 200], [0, 128, 254], [50, 60, 70]]),
                                              ((2, 1, 3), 3)])
def test_binarize_on_arrival_equals_encoder(shape, thresholds):
    # The bits the framer keeps are exactly the software encoder's, in its bit order, whatever the
    # channel count and per-channel thresholds; back-to-back frames reset the channel counter.
    enc = ThermometerEncoding.make(shape, thresholds)
    n = enc.image_bytes
    ims = [img(n, s) for s in (3, 4)]
    ims[0][:2] = [0, 255]
    stream = P.encode_request(5, ims[0]) + P.encode_request(6, ims[1])
    got = run_framer(as_events(stream, gap=3), n, encoding=enc)
    assert [(g[0], g[1]) for g in got] == [("image", 5), ("image", 6)]
    for g, im in zip(got, ims):
        assert (g[2] == enc.encode(im[None])[0]).all()


def test_framer_encoding_arguments():
    enc = ThermometerEncoding.make((1, 2, 2), 3)
    with pytest.raises(ValueError, match=r"the encoding's images have 4 bytes, not 5"):
        Framer(5, 10, encoding=enc)
    with pytest.raises(TypeError, match=r"encoding must be a ThermometerEncoding or None, not 3"):
        Framer(4, 10, encoding=3)
    assert Framer(4, 10, encoding=enc).buffer_bits == 12 and Framer(4, 10).buffer_bits == 32


def test_garbage_and_repeated_sync_are_skipped():
    n = 3
    a = img(n, 3)
    stream = bytes([0x00, 0xA5, 0x00, 0x5A, 0xA5, 0xA5, 0xA5]) + P.encode_request(4, a)[1:]
    got = run_framer(as_events(stream), n)
    assert got == [("image", 4, a.tobytes())] == model(as_events(stream), n)


@pytest.mark.parametrize("fault", ["flip", "drop", "cut", "line"])
def test_faults_then_next_frame(fault):
    n = 6
    a, b = img(n, 4), img(n, 5)
    bad = bytearray(P.encode_request(10, a))
    events = []
    if fault == "flip":
        bad[5] ^= 0x10
        events = as_events(bytes(bad))
    elif fault == "drop":
        del bad[5]
        events = as_events(bytes(bad))
    elif fault == "cut":
        events = as_events(bytes(bad[:6]))
        events.append((0xAA, 0, TIMEOUT + 20))         # a lone byte after a long gap
    elif fault == "line":
        events = as_events(bytes(bad[:6]), err_at=(5,))
    # The next good frame comes after a pause, as a host's retry would.
    events += [(x, e, g if i else TIMEOUT * 3) for i, (x, e, g) in enumerate(as_events(P.encode_request(11, b)))]
    got = run_framer(events, n)
    assert got == model(events, n)
    expected_error = {"flip": P.ERR_CRC, "drop": P.ERR_TIMEOUT, "cut": P.ERR_TIMEOUT, "line": P.ERR_LINE}[fault]
    assert got == [("error", 10, expected_error), ("image", 11, b.tobytes())]


def test_dropped_byte_with_back_to_back_frames():
    # Without a pause the short frame eats the first byte of the next one: a CRC error, then the
    # hunt skips the rest of that frame (its reply never comes: the host retries), and the third
    # frame is answered.
    n = 6
    frames = [bytearray(P.encode_request(s, img(n, s))) for s in (20, 21, 22)]
    del frames[0][4]
    events = as_events(b"".join(bytes(f) for f in frames))
    got = run_framer(events, n)
    assert got == model(events, n)
    assert got[0] == ("error", 20, P.ERR_CRC) and got[-1] == ("image", 22, img(n, 22).tobytes())


def test_timeout_boundary():
    # A gap of timeout + 1 cycles still continues the frame; timeout + 2 aborts it.
    n = 2
    frame = P.encode_request(3, img(n, 6))
    for gap, ok in ((TIMEOUT + 1, True), (TIMEOUT + 2, False)):
        events = as_events(frame[:4]) + [(x, 0, gap if i == 0 else 10) for i, x in enumerate(frame[4:])]
        got = run_framer(events, n)
        assert got == model(events, n)
        assert (got == [("image", 3, img(n, 6).tobytes())]) is ok


def test_busy_when_previous_image_not_taken():
    n = 3
    a, b, c = img(n, 7), img(n, 8), img(n, 9)
    stream = P.encode_request(1, a) + P.encode_request(2, b)
    len1 = len(P.encode_request(1, a))
    # The image output is not taken until cycle 10 * (len1 + 6): frame 2's data finds the buffer full.
    events = as_events(stream) + [(x, 0, 10) for x in P.encode_request(3, c)]
    got = run_framer(events, n, ready=lambda cyc: cyc >= 10 * (len1 + 6))
    assert got == [("error", 2, P.ERR_BUSY), ("image", 1, a.tobytes()), ("image", 3, c.tobytes())]


# A random mix of well-formed frames, corrupted ones, garbage and pauses.
_chunk = st.one_of(
    st.tuples(st.just("frame"), st.integers(0, 255), st.binary(min_size=3, max_size=3)),
    st.tuples(st.just("info"), st.integers(0, 255)),
    st.tuples(st.just("garbage"), st.binary(min_size=1, max_size=6)),
    st.tuples(st.just("flip"), st.integers(0, 255), st.integers(0, 7), st.integers(0, 7)),
    st.tuples(st.just("drop"), st.integers(0, 255), st.integers(0, 7)),
    st.tuples(st.just("pause"), st.integers(1, 3 * TIMEOUT)),
    st.tuples(st.just("err"), st.integers(0, 255)),
)


@pytest.mark.heavy
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_chunk, min_size=1, max_size=6), st.integers(1, 12))
def test_framer_matches_model_on_random_streams(chunks, gap):
    n = 3
    events, pending_gap = [], gap
    for c in chunks:
        kind = c[0]
        if kind == "pause":
            pending_gap += c[1]
            continue
        errs = ()
        if kind == "frame":
            data = P.encode_request(c[1], np.frombuffer(c[2], np.uint8))
        elif kind == "info":
            data = P.encode_info_request(c[1])
        elif kind == "garbage":
            data = c[1]
        elif kind == "flip":
            d = bytearray(P.encode_request(c[1], img(n, c[1])))
            d[c[2]] ^= 1 << c[3]
            data = bytes(d)
        elif kind == "drop":
            d = bytearray(P.encode_request(c[1], img(n, c[1])))
            del d[c[2]]
            data = bytes(d)
        else:  # a byte with a bad stop bit somewhere in a frame
            data = P.encode_request(c[1], img(n, c[1]))
            errs = (c[1] % len(data),)
        for i, b in enumerate(data):
            events.append((b, int(i in errs), pending_gap if i == 0 else gap))
        pending_gap = gap
    assert run_framer(events, n) == model(events, n)


# -- reply serializer ------------------------------------------------------------------------------

def run_replier(results=(), errors=(), infos=(), info=bytes(range(P.INFO_LEN)), cycles=400):
    dut = Replier(info)
    out = bytearray()
    leds = []

    def feeder(port, items, make):
        async def feed(ctx):
            for it in items:
                make(ctx, port, it)
                ctx.set(port.valid, 1)
                await ctx.tick().until(port.ready)
                ctx.set(port.valid, 0)
        return feed

    def rl(ctx, port, it):
        ctx.set(port.payload.seq, it[0])
        ctx.set(port.payload.code, it[1])

    def inf(ctx, port, it):
        ctx.set(port.payload, it)

    async def sink(ctx):
        ctx.set(dut.o.ready, 1)
        for _ in range(cycles):
            await ctx.tick()
            if ctx.get(dut.o.valid):
                out.append(ctx.get(dut.o.payload))
            if ctx.get(dut.last.valid):
                leds.append(ctx.get(dut.last.payload))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(feeder(dut.result, results, rl), background=True)
    sim.add_testbench(feeder(dut.error, errors, rl), background=True)
    sim.add_testbench(feeder(dut.info, infos, inf), background=True)
    sim.add_testbench(sink)
    sim.run()
    return bytes(out), leds


def test_replier_bytes():
    out, leds = run_replier(results=[(3, 7)])
    assert out == P.encode_reply(3, 7)
    assert leds == [7]
    info = P.Info(1, 10, 784, 12, 25_000_000, bytes(range(8))).encode()
    out, _ = run_replier(infos=[200], info=info)
    assert out == P.encode_reply(200, P.CODE_INFO, info)
    rep = P.ReplyParser().feed(out)
    assert rep[0].info() == P.Info(1, 10, 784, 12, 25_000_000, bytes(range(8)))


def test_replier_serves_everything_results_first():
    out, leds = run_replier(results=[(1, 2), (2, 5)], errors=[(9, P.ERR_CRC)], infos=[4], cycles=600)
    parser = P.ReplyParser()
    reps = parser.feed(out)
    assert [(r.seq, r.code) for r in reps] == [(1, 2), (2, 5), (9, P.ERR_CRC), (4, P.CODE_INFO)]
    assert parser.skipped == 0 and leds == [2, 5]
