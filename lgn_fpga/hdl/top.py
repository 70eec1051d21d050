r"""The top level: UART in, classes out.

::

    rx -> UARTReceiver -> Framer -> Binarizer -> ClassifierCore -> results FIFO --+
            (sync, frame buffer, CRC, timeout)                                    |
                 |    \-> sequence numbers FIFO --------------------------------> Replier -> UARTTransmitter -> tx
                 \-> errors, INFO requests ---------------------------------------^    \-> LEDs (last class)

:class:`ClassifierTop` is board-independent (plain ``rx``/``tx``/``leds``
ports): simulations and the cocotb bench use it directly.  :class:`BoardTop`
wraps it for an Amaranth platform: it requests the UART and LED resources and
runs everything from the board's default clock.

No PLL: every supported board has a 12 or 25 MHz oscillator, which the
UART divides exactly enough (fractional bit period) for any rate up to a
quarter of the clock, and the classifier pipeline (one logic level per
register stage by default) has far more slack than a 40-80 ns period needs.
A board with a clock the design cannot meet would add a PLL here.
"""
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib import fifo, io, wiring
from amaranth.lib.wiring import In, Out

from .. import protocol as P
from ..netlist.ir import Netlist
from .core import ClassifierCore, ImageClassifier
from ..netlist.analysis import structural_live
from .framing import Framer, Replier, buffer_plan
from .uart import UARTReceiver, UARTTransmitter, check_baud

__all__ = ["ClassifierTop", "BoardTop"]


class ClassifierTop(wiring.Component):
    """UART-connected classifier, independent of any board.

    Parameters
    ----------
    netlist : Netlist
        The model (its encoding gives the image size).
    clk_hz : int or float
        Clock frequency, for the baud divisor, the frame timeout and the INFO reply.
    baud : int
        UART rate; at most ``clk_hz / 4``.
    n_leds : int
        LEDs that show the last class in binary (low bits first; 0 for none).
    stages : int
        Logic levels per register stage of the classifier (see :class:`ClassifierCore`).
    frame_timeout : int, optional
        Silent clock cycles that abort an open frame; default
        :func:`lgn_fpga.protocol.frame_timeout_cycles` (10 ms, at least 16 byte times).
    registered_binarizer : bool
        Give the binarizer its own register stage (``binarize="frame"`` only).
    binarize : {"auto", "arrival", "frame"}
        ``"frame"``: the buffer holds the bytes and a :class:`Binarizer` compares every input bit's byte
        in parallel (synthesis keeps only the byte lanes the comparisons read).  ``"arrival"``: the
        framer compares each byte with its channel's thresholds as it arrives and the buffer holds
        ``T`` thermometer bits per byte (``C*T`` comparators in all).  ``"auto"`` (default): the smaller
        buffer, :func:`lgn_fpga.hdl.framing.buffer_plan`.
    count_tables : (int, int, int)
        Block-RAM count tables of the popcount (see :class:`~lgn_fpga.hdl.popcount.PopCount`).
    wire : {"bytes", "levels"}
        How images travel (:mod:`lgn_fpga.protocol`): pixel bytes, or each value's level packed in
        ``level_bits`` (``binarize`` then has to be ``"auto"`` or ``"frame"``).

    Attributes
    ----------
    rx : In(1)
        UART line from the host (idle high).
    tx : Out(1)
        UART line to the host (idle high).
    leds : Out(n_leds)
        The last class's low ``n_leds`` bits (absent when ``n_leds`` is 0).
    latency : int
        Cycles from a complete frame to its class leaving the classifier.
    core : ClassifierCore
        The classifier core inside (gate pipeline, popcount, argmax).
    divisor : Fraction
        Clock cycles per UART bit.
    timeout : int
        The frame timeout in cycles.
    info : lgn_fpga.protocol.Info
        What the board answers to an INFO request.
    """

    def __init__(self, netlist: Netlist, *, clk_hz, baud: int, n_leds: int = 0, stages: int = 1,
                 frame_timeout: int | None = None, registered_binarizer: bool = False, binarize: str = "auto",
                 count_tables: tuple = (0, 12, 2), wire: str = "bytes"):
        if not isinstance(netlist, Netlist):
            raise TypeError(f"netlist must be a Netlist, not {netlist!r}")
        if netlist.n_classes > P.MAX_CLASSES:
            raise ValueError(f"the UART protocol carries at most {P.MAX_CLASSES} classes, not {netlist.n_classes}")
        if isinstance(n_leds, bool) or not isinstance(n_leds, int) or n_leds < 0:
            raise ValueError(f"n_leds must be a non-negative integer, not {n_leds!r}")
        self.divisor = check_baud(clk_hz, baud)
        self.clk_hz, self.baud = clk_hz, baud
        self.timeout = P.frame_timeout_cycles(clk_hz, baud) if frame_timeout is None else frame_timeout
        self.netlist = netlist
        self.binarize, self.buffer_bits = buffer_plan(netlist.encoding, structural_live(netlist)[:netlist.n_inputs],
                                                      binarize, wire)
        self.wire = wire
        self.payload_bytes = P.payload_bytes(netlist.encoding, wire)
        if self.binarize == "frame":
            self.classifier = ImageClassifier(netlist, stages, registered_binarizer=registered_binarizer,
                                              count_tables=count_tables, wire=wire)
        else:
            self.classifier = ClassifierCore(netlist, stages, count_tables=count_tables)
        self.core = self.classifier.core if self.binarize == "frame" else self.classifier
        # Built here for its latency, elaborated with the top; an unused top is reported by its own warning.
        self.classifier._MustUse__silence = True
        self.latency = self.classifier.latency
        self.info = P.Info.for_netlist(netlist, self.latency, clk_hz, wire)
        self.n_leds = n_leds
        # Credit-based flow control: every image in the classifier or waiting for its reply holds a place
        # in the sequence-number FIFO, and the results FIFO has as many places, so the classifier's output
        # never has to wait (its ready is constant 1).  That removes the back-pressure path, a combinational
        # chain ending in the clock enable of every pipeline register, which otherwise sets Fmax on large
        # models.  Frames are at least request_len * 10 bit times apart, so a few places always suffice;
        # when they are taken, the framer's image simply waits (nothing overflows).
        gap = P.request_len(self.payload_bytes) * 10 * float(self.divisor)
        self.seq_depth = int(self.latency // gap) + 2
        ports = {"rx": In(1, init=1), "tx": Out(1, init=1)}
        if n_leds:
            ports["leds"] = Out(n_leds)   # no zero-width port: some simulators reject one
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        m.submodules.rx = rx = UARTReceiver(self.divisor)
        enc = self.netlist.encoding
        m.submodules.framer = framer = Framer(self.payload_bytes, self.timeout,
                                              encoding=enc if self.binarize == "arrival" else None)
        m.submodules.classifier = clf = self.classifier
        m.submodules.seqs = seqs = fifo.SyncFIFO(width=8, depth=self.seq_depth)
        m.submodules.results = results = fifo.SyncFIFO(width=8, depth=self.seq_depth)
        m.submodules.replier = rep = Replier(self.info.encode())
        m.submodules.tx = tx = UARTTransmitter(self.divisor)

        m.d.comb += rx.rx.eq(self.rx)
        wiring.connect(m, rx.o, framer.i)

        # An image enters the classifier and its sequence number the FIFO in the same cycle.
        m.d.comb += [
            clf.i.payload.eq(framer.image.payload.data),
            clf.i.valid.eq(framer.image.valid & seqs.w_rdy),
            framer.image.ready.eq(clf.i.ready & seqs.w_rdy),
            seqs.w_data.eq(framer.image.payload.seq),
            seqs.w_en.eq(framer.image.valid & framer.image.ready),
        ]
        # Results always have a place (see __init__); the classifier keeps order, so the oldest result
        # belongs to the oldest sequence number, and both leave when their reply starts.
        m.d.comb += [
            clf.o.ready.eq(1),
            results.w_data.eq(clf.o.payload),
            results.w_en.eq(clf.o.valid),
            rep.result.payload.seq.eq(seqs.r_data),
            rep.result.payload.code.eq(results.r_data),
            rep.result.valid.eq(results.r_rdy),
            results.r_en.eq(rep.result.ready),
            seqs.r_en.eq(rep.result.valid & rep.result.ready),
        ]
        wiring.connect(m, framer.error, rep.error)
        wiring.connect(m, framer.info, rep.info)
        wiring.connect(m, rep.o, tx.i)
        m.d.comb += self.tx.eq(tx.tx)

        if self.n_leds:
            shown = Signal(self.n_leds)
            with m.If(rep.last.valid):
                m.d.sync += shown.eq(rep.last.payload)
            m.d.comb += self.leds.eq(shown)
        return m


class BoardTop(Elaboratable):
    """:class:`ClassifierTop` on a board: UART and LED resources, the board's default clock.

    Parameters
    ----------
    netlist : Netlist
    baud : int
    uart : (str, int)
        Name and number of the platform's UART resource (with ``rx`` and ``tx`` subsignals).
    leds : sequence of (str, int)
        LED resources, lowest class bit first.
    stages, frame_timeout_ms, registered_binarizer, binarize, count_tables, wire
        As for :class:`ClassifierTop` (``frame_timeout_ms`` in milliseconds).

    After elaboration, ``top`` is the :class:`ClassifierTop` inside (for its latency and divisor).
    """

    def __init__(self, netlist: Netlist, *, baud: int, uart=("uart", 0), leds=(), stages: int = 1,
                 frame_timeout_ms: float = P.DEFAULT_FRAME_TIMEOUT_MS, registered_binarizer: bool = False,
                 binarize: str = "auto", count_tables: tuple = (0, 12, 2), wire: str = "bytes"):
        if not isinstance(netlist, Netlist):
            raise TypeError(f"netlist must be a Netlist, not {netlist!r}")
        self.netlist = netlist
        self.wire = wire
        self.baud = baud
        self.uart = tuple(uart)
        self.leds = [tuple(l) for l in leds]
        self.stages = stages
        self.frame_timeout_ms = frame_timeout_ms
        self.registered_binarizer = registered_binarizer
        self.binarize = binarize
        self.count_tables = tuple(count_tables)
        self.top = None

    def make_top(self, clk_hz) -> ClassifierTop:
        return ClassifierTop(self.netlist, clk_hz=clk_hz, baud=self.baud, n_leds=len(self.leds),
                             stages=self.stages, registered_binarizer=self.registered_binarizer,
                             binarize=self.binarize, count_tables=self.count_tables, wire=self.wire,
                             frame_timeout=P.frame_timeout_cycles(clk_hz, self.baud, self.frame_timeout_ms))

    def elaborate(self, platform):
        m = Module()
        clk_hz = platform.default_clk_frequency
        m.submodules.top = top = self.top = self.make_top(clk_hz)

        uart = platform.request(*self.uart, dir="-")
        m.submodules.rx_buf = rx_buf = io.Buffer("i", uart.rx)
        m.submodules.tx_buf = tx_buf = io.Buffer("o", uart.tx)
        m.d.comb += [top.rx.eq(rx_buf.i), tx_buf.o.eq(top.tx)]
        for k, (name, number) in enumerate(self.leds):
            buf = io.Buffer("o", platform.request(name, number, dir="-"))
            m.submodules[f"led{k}"] = buf
            m.d.comb += buf.o.eq(top.leds[k])
        return m
