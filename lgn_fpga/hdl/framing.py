"""Request framing, the frame buffer and reply serialization (format: :mod:`lgn_fpga.protocol`).

:class:`Framer` turns received bytes into whole images: it hunts for the sync
marker, writes the image bytes into the frame buffer, checks the CRC and
hands the image on, or emits an error code.  :class:`Replier` turns class
results, error codes and INFO requests into reply frames for the transmitter.
All constants and the CRC come from :mod:`lgn_fpga.protocol`, so hardware and
host cannot drift apart.
"""
import numpy as np
from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .. import protocol as P
from ..data.encoding import ThermometerEncoding, bits_read
from ._stage import cat_bits, Bits
from .uart import RxByte

__all__ = ["crc16_next", "Framer", "Replier", "ReplyLayout", "image_layout", "bits_layout", "buffer_plan"]

# A reply before serialization: the request's sequence number and the class or error code.
ReplyLayout = data.StructLayout({"seq": 8, "code": 8})


def image_layout(image_bytes: int) -> data.StructLayout:
    """Payload of a complete request: its sequence number and the image (byte p at bits [8p, 8p+8))."""
    return data.StructLayout({"seq": 8, "data": 8 * image_bytes})


def buffer_plan(encoding: ThermometerEncoding, live_inputs, binarize: str = "auto",
                wire: str = "bytes") -> tuple[str, int]:
    """``(mode, flip-flops)`` of the frame buffer: ``"frame"`` (bytes) or ``"arrival"`` (thermometer bits).

    With ``wire="levels"`` the buffer holds the packed levels (mode ``"frame"``): a lane per level bit that
    a live comparison ``level > j`` reads (the bits of the level down to the lowest set bit of ``j+1``).

    A byte buffer is a word of 8 independent bit lanes per byte; synthesis keeps a lane only where a live
    comparison reads it, and ``p > t`` (= ``p >= t+1``) reads only the bits of ``p`` down to the lowest set
    bit of ``t+1``.  So uniform thresholds cost few lanes: 1 threshold (127) one bit per byte, 3 (63, 127,
    191) two bits, 7 three.  Binarizing on arrival stores ``T`` bits per byte (counted here in full, though
    synthesis drops the bits no live gate reads) but needs only ``C*T`` comparators.  ``"auto"`` takes the smaller buffer
    (the byte buffer on a tie: its comparators of a lane or two fold into the first gate layer's LUTs).
    """
    if binarize not in ("auto", "frame", "arrival"):
        raise ValueError(f"binarize must be 'auto', 'frame' or 'arrival', not {binarize!r}")
    if wire not in P.WIRE_FORMATS:
        raise ValueError(f"wire must be one of {', '.join(P.WIRE_FORMATS)}, not {wire!r}")
    live = np.asarray(live_inputs, bool)
    src, th, w = encoding.comparisons(wire == "levels")
    per_value = np.zeros(encoding.image_bytes, np.int64)
    np.maximum.at(per_value, src, np.where(live, bits_read(th, w), 0))
    if wire == "levels":
        if binarize == "arrival":
            raise ValueError("binarize='arrival' needs the bytes wire format (levels are already binarized)")
        return "frame", int(per_value.sum())
    sizes = {"frame": int(per_value.sum()), "arrival": int(encoding.n_bits if live.any() else 0)}
    mode = binarize if binarize != "auto" else ("frame" if sizes["frame"] <= sizes["arrival"] else "arrival")
    return mode, sizes[mode]


def bits_layout(n_bits: int) -> data.StructLayout:
    """Payload of a complete request binarized on arrival: sequence number and thermometer bits (encoding order)."""
    return data.StructLayout({"seq": 8, "data": n_bits})


def _crc_matrix():
    """For each CRC output bit, the CRC and data bits it is the XOR of.

    Obtained by running :func:`lgn_fpga.protocol.crc16_update`'s algorithm on
    symbols instead of bits, so the hardware is that function, unrolled.
    """
    state = [frozenset({("c", i)}) for i in range(16)]
    for j in range(8):
        state[8 + j] = state[8 + j] ^ {("d", j)}
    for _ in range(8):
        msb = state[15]
        state = [frozenset()] + state[:15]
        state = [s ^ msb if (P.CRC_POLY >> k) & 1 else s for k, s in enumerate(state)]
    return state


_CRC_TERMS = _crc_matrix()


def crc16_next(crc, byte):
    """CRC-16 of ``crc`` updated with one ``byte``, as combinational logic (one level of XORs)."""
    bits = []
    for terms in _CRC_TERMS:
        v = Const(0, 1)
        for kind, i in sorted(terms):
            v = v ^ (crc[i] if kind == "c" else byte[i])
        bits.append(v)
    return Cat(*bits)


class Framer(wiring.Component):
    """Request decoder and frame buffer.

    Parameters
    ----------
    image_bytes : int
        Bytes per image (``C*H*W``), at least 1.
    timeout : int
        Clock cycles of silence that abort an open frame, at least 1.

    Attributes
    ----------
    i : In(stream.Signature(RxByte, always_ready=True))
        Bytes from the UART receiver.
    image : Out(stream.Signature(image_layout(image_bytes)))
        A request whose CRC matched; its ``data`` is the frame buffer itself (a
        register per byte, written as the byte arrives), which the next frame
        fills only once this one is taken.
        With ``encoding``, ``data`` is ``bits_layout(encoding.n_bits)``: each byte is
        compared with its channel's thresholds as it arrives and only its
        thermometer bits are kept (``T`` flip-flops per byte instead of 8, and
        ``C*T`` comparators in all instead of one per input bit); the bits come
        out in the encoding's bit order, exactly as ``encoding.encode`` gives them.

    Parameters
    ----------
    encoding : ThermometerEncoding, optional
        Binarize bytes on arrival (see ``image``).
    error : Out(stream.Signature(ReplyLayout))
        An aborted frame: its sequence number and ``ERR_*`` code.  One slot: an
        error that finds the slot full is dropped (the host then times out).
    info : Out(stream.Signature(8))
        The sequence number of an INFO request (one slot, like ``error``).
    """

    def __init__(self, image_bytes: int, timeout: int, *, encoding: ThermometerEncoding | None = None):
        if isinstance(image_bytes, bool) or not isinstance(image_bytes, int) or image_bytes < 1:
            raise ValueError(f"image_bytes must be a positive integer, not {image_bytes!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
            raise ValueError(f"timeout must be a positive number of cycles, not {timeout!r}")
        if encoding is not None:
            if not isinstance(encoding, ThermometerEncoding):
                raise TypeError(f"encoding must be a ThermometerEncoding or None, not {encoding!r}")
            if encoding.image_bytes != image_bytes:
                raise ValueError(f"the encoding's images have {encoding.image_bytes} bytes, not {image_bytes}")
        self.image_bytes = image_bytes
        self.timeout = timeout
        self.encoding = encoding
        # The frame buffer holds what the classifier reads: bytes, or each byte's thermometer bits.
        self.buffer_bits = 8 * image_bytes if encoding is None else encoding.n_bits
        super().__init__({
            "i": In(stream.Signature(RxByte, always_ready=True)),
            "image": Out(stream.Signature(image_layout(image_bytes) if encoding is None
                                          else bits_layout(encoding.n_bits))),
            "error": Out(stream.Signature(ReplyLayout)),
            "info": Out(stream.Signature(unsigned(8))),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.image_bytes
        byte, err, got = self.i.payload.data, self.i.payload.err, self.i.valid

        seq = Signal(8)
        is_info = Signal()
        crc = Signal(16)
        crc_in = Signal(16)
        m.d.comb += crc_in.eq(crc16_next(crc, byte))
        count = Signal(range(max(n, 2)))
        idle = Signal(range(self.timeout + 1))
        timed_out = Signal()
        m.d.comb += timed_out.eq(idle == self.timeout)

        # Handshakes of the three outputs: a slot empties when taken.
        for out in (self.image, self.error, self.info):
            with m.If(out.ready):
                m.d.sync += out.valid.eq(0)

        def abort(code):
            """Leave the frame; report ``code`` unless the error slot is still full (then drop it)."""
            if code is not None:
                with m.If(~self.error.valid | self.error.ready):
                    m.d.sync += [self.error.valid.eq(1), self.error.payload.seq.eq(seq),
                                 self.error.payload.code.eq(code)]
            m.next = "HUNT"

        if self.encoding is None:
            # The buffer holds the bytes (8 bit lanes; synthesis drops the lanes nobody reads).
            stored, step = byte, 8
        else:
            enc = self.encoding
            T, Pn, C = enc.levels, enc.pixels, enc.channels
            th = enc.threshold_array()
            # The channel of the byte being received (bytes arrive channel-major: byte c*P + p).
            pix = Signal(range(max(Pn, 2)))
            chan = Signal(range(max(C, 2)))
            step = T
            stored = Signal(T)
            per_chan = [Cat(*[byte > int(th[c, j]) for j in range(T)]) for c in range(C)]
            m.d.comb += stored.eq(Array(per_chan)[chan] if C > 1 else per_chan[0])
        # The frame buffer: one register of `step` bits per byte of the frame, byte q written when it arrives
        # (no shift chain: each word can sit next to the gates that read it, and its only other wires are
        # the shared byte lanes and its write enable, from a two-level one-hot decode of the byte count).
        write = Signal()                    # a data byte is stored this cycle
        words = [Signal(step, name=f"frame_word{q}", reset_less=True) for q in range(n)]
        lo_bits = 5
        cnt = Signal(max(len(count), lo_bits + 1))
        m.d.comb += cnt.eq(count)
        lo = Signal(min(n, 1 << lo_bits), name="frame_lo")
        hi = Signal(-(-n // (1 << lo_bits)), name="frame_hi")
        m.d.comb += [lo.eq(Cat(*[cnt[:lo_bits] == j for j in range(len(lo))])),
                     hi.eq(Cat(*[cnt[lo_bits:] == j for j in range(len(hi))]))]
        for q, w in enumerate(words):
            with m.If(write & lo[q % (1 << lo_bits)] & hi[q >> lo_bits]):
                m.d.sync += w.eq(stored)
        buf = Signal(self.buffer_bits, name="frame_buffer")
        m.d.comb += buf.eq(Cat(*words))
        if self.encoding is None:
            m.d.comb += self.image.payload.data.eq(buf)
        else:
            # Byte q = c*P + p sits at buf[q*T + j]; the encoding's bit (c*T + j)*P + p is that bit.
            src, _ = enc.bit_sources()
            order = (src * T + (np.arange(enc.n_bits) // Pn) % T).tolist()
            m.d.comb += self.image.payload.data.eq(cat_bits([Bits(buf, k) for k in order]))

        with m.If(got):
            m.d.sync += idle.eq(0)
        with m.Elif(~timed_out):
            m.d.sync += idle.eq(idle + 1)

        with m.FSM():
            with m.State("HUNT"):
                with m.If(got & ~err & (byte == P.SYNC0)):
                    m.next = "SYNC1"
            with m.State("SYNC1"):
                with m.If(got):
                    with m.If(err):
                        m.next = "HUNT"
                    with m.Elif(byte == P.SYNC_CLASSIFY):
                        m.d.sync += is_info.eq(0)
                        m.next = "SEQ"
                    with m.Elif(byte == P.SYNC_INFO):
                        m.d.sync += is_info.eq(1)
                        m.next = "SEQ"
                    with m.Elif(byte != P.SYNC0):
                        m.next = "HUNT"
                with m.Elif(timed_out):
                    m.next = "HUNT"
            with m.State("SEQ"):
                with m.If(got):
                    with m.If(err):
                        m.next = "HUNT"     # no sequence number to reply to
                    with m.Else():
                        m.d.sync += [seq.eq(byte), crc.eq(crc16_next(Const(P.CRC_INIT, 16), byte)),
                                     count.eq(0)]
                        if self.encoding is not None:
                            m.d.sync += [pix.eq(0), chan.eq(0)]
                        with m.If(is_info):
                            m.next = "CRC"
                        with m.Else():
                            m.next = "DATA"
                with m.Elif(timed_out):
                    m.next = "HUNT"
            with m.State("DATA"):
                with m.If(got):
                    with m.If(err):
                        abort(P.ERR_LINE)
                    with m.Elif(self.image.valid & ~self.image.ready):
                        # The previous image has not been taken: its buffer cannot be overwritten.
                        abort(P.ERR_BUSY)
                    with m.Else():
                        m.d.comb += write.eq(1)
                        m.d.sync += [crc.eq(crc_in), count.eq(count + 1)]
                        if self.encoding is not None:
                            with m.If(pix == Pn - 1):
                                m.d.sync += [pix.eq(0), chan.eq(chan + 1)]
                            with m.Else():
                                m.d.sync += pix.eq(pix + 1)
                        with m.If(count == n - 1):
                            m.d.sync += count.eq(0)
                            m.next = "CRC"
                with m.Elif(timed_out):
                    abort(P.ERR_TIMEOUT)
            with m.State("CRC"):
                with m.If(got):
                    with m.If(err):
                        abort(P.ERR_LINE)
                    with m.Else():
                        m.d.sync += [crc.eq(crc_in), count.eq(1)]
                        with m.If(count == 1):
                            with m.If(crc_in != 0):
                                abort(P.ERR_CRC)
                            with m.Elif(is_info):
                                with m.If(~self.info.valid | self.info.ready):
                                    m.d.sync += [self.info.valid.eq(1), self.info.payload.eq(seq)]
                                m.next = "HUNT"
                            with m.Else():
                                m.d.sync += [self.image.valid.eq(1), self.image.payload.seq.eq(seq)]
                                m.next = "HUNT"
                with m.Elif(timed_out):
                    abort(P.ERR_TIMEOUT)
        return m


class Replier(wiring.Component):
    """Reply serializer: one reply frame per result, error or INFO request.

    Parameters
    ----------
    info : bytes
        The INFO payload (:meth:`lgn_fpga.protocol.Info.encode`), ``INFO_LEN`` bytes.

    Attributes
    ----------
    result : In(stream.Signature(ReplyLayout))
        Class results (``code`` = class index < 0x80); served first.
    error : In(stream.Signature(ReplyLayout))
        Error codes from the framer; served next.
    info : In(stream.Signature(8))
        INFO requests (their sequence numbers); served last.
    o : Out(stream.Signature(8))
        Reply bytes for the UART transmitter.
    last : Out(stream.Signature(8, always_ready=True))
        A pulse with the class of each class reply as it starts (for the LEDs).
    """

    def __init__(self, info: bytes):
        info = bytes(info)
        if len(info) != P.INFO_LEN:
            raise ValueError(f"info must be {P.INFO_LEN} bytes, not {len(info)}")
        self.info_bytes = info
        super().__init__({
            "result": In(stream.Signature(ReplyLayout)),
            "error": In(stream.Signature(ReplyLayout)),
            "info": In(stream.Signature(unsigned(8))),
            "o": Out(stream.Signature(unsigned(8))),
            "last": Out(stream.Signature(unsigned(8), always_ready=True)),
        })

    def elaborate(self, platform):
        m = Module()
        seq, code, crc = Signal(8), Signal(8), Signal(16)
        is_info = Signal()
        # o.payload is a register (the transmitter's load path starts at a flip-flop); idx is the
        # index of the byte it holds: 0 sync, 1 seq, 2 code, 3.. info payload, then CRC high, CRC low.
        idx = Signal(range(P.REPLY_LEN + P.INFO_LEN))
        crc_hi = Signal(range(P.REPLY_LEN + P.INFO_LEN))
        m.d.comb += crc_hi.eq(Mux(is_info, 3 + P.INFO_LEN, 3))
        rom = Array(Const(b, 8) for b in self.info_bytes)
        crc_in = Signal(16)
        m.d.comb += crc_in.eq(crc16_next(crc, self.o.payload))

        m.d.sync += self.last.valid.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                def start(s, c, info):
                    m.d.sync += [seq.eq(s), code.eq(c), is_info.eq(info), idx.eq(0), crc.eq(P.CRC_INIT),
                                 self.o.payload.eq(P.REPLY_SYNC), self.o.valid.eq(1)]
                    m.next = "SEND"
                with m.If(self.result.valid):
                    m.d.comb += self.result.ready.eq(1)
                    m.d.sync += [self.last.valid.eq(1), self.last.payload.eq(self.result.payload.code)]
                    start(self.result.payload.seq, self.result.payload.code, 0)
                with m.Elif(self.error.valid):
                    m.d.comb += self.error.ready.eq(1)
                    start(self.error.payload.seq, self.error.payload.code, 0)
                with m.Elif(self.info.valid):
                    m.d.comb += self.info.ready.eq(1)
                    start(self.info.payload, P.CODE_INFO, 1)
            with m.State("SEND"):
                with m.If(self.o.ready):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx == 0):
                        m.d.sync += self.o.payload.eq(seq)
                    with m.Elif(idx == crc_hi):
                        m.d.sync += self.o.payload.eq(crc[:8])
                    with m.Elif(idx == crc_hi + 1):
                        m.d.sync += self.o.valid.eq(0)
                        m.next = "IDLE"
                    with m.Else():
                        # A body byte (seq, code or info) leaves now: fold it into the CRC.
                        m.d.sync += crc.eq(crc_in)
                        with m.If(idx == 1):
                            m.d.sync += self.o.payload.eq(code)
                        with m.Elif(idx + 1 == crc_hi):
                            m.d.sync += self.o.payload.eq(crc_in[8:])
                        with m.Else():
                            m.d.sync += self.o.payload.eq(rom[(idx - 2)[:len(idx)]])
        return m
