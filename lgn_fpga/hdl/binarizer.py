"""Binarizer: image bytes (or packed levels) -> thermometer bits, with the encoding's own thresholds."""
from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .. import protocol as P
from ..data.encoding import ThermometerEncoding
from ._stage import chunks, stage_control

__all__ = ["Binarizer"]


class Binarizer(wiring.Component):
    """Thermometer-encode one image per clock.

    Bit ``j`` of the output is ``byte[src[j]] > threshold[j]`` where
    ``src, threshold = encoding.bit_sources()``: the same table the software
    encoder uses, so hardware and software binarize every byte identically.
    With ``wire="levels"`` the input is the packed levels of
    :meth:`~lgn_fpga.data.encoding.ThermometerEncoding.pack_levels` and bit ``j`` is
    ``level[src[j]] > rank[j]`` (``src, rank = encoding.bit_ranks()``): a compare of a
    ``level_bits``-wide field with a constant, often a plain wire.

    Parameters
    ----------
    encoding : ThermometerEncoding
        The netlist's input encoding.
    registered : bool
        ``False`` (default): purely combinational, ``latency == 0``; the
        comparators then share a clock cycle with the first gate layer of the
        core.  ``True``: one register stage (``latency == 1``), for designs
        that feed the bytes from far away.

    Attributes
    ----------
    i : In(stream.Signature(unsigned(8 * payload_bytes)))
        Byte ``p`` of the flattened ``C*H*W`` image at bits ``[8p, 8p+8)`` (``wire="bytes"``), or the
        packed levels, value ``v`` at bits ``[v*b, v*b+b)`` (``wire="levels"``).
    o : Out(stream.Signature(unsigned(n_bits)))
        The thermometer bits in the encoding's bit order.
    latency : int
        Cycles from an accepted image to its bits (0 or 1).

    Raises
    ------
    TypeError
        If ``encoding`` is not a :class:`ThermometerEncoding`.
    """

    def __init__(self, encoding: ThermometerEncoding, *, registered: bool = False, wire: str = "bytes"):
        if not isinstance(encoding, ThermometerEncoding):
            raise TypeError(f"encoding must be a ThermometerEncoding, not {encoding!r}")
        if not isinstance(registered, bool):
            raise TypeError(f"registered must be a bool, not {registered!r}")
        self.encoding = encoding
        self.registered = registered
        self.latency = int(registered)
        self.wire = wire
        super().__init__({
            "i": In(stream.Signature(unsigned(8 * P.payload_bytes(encoding, wire)))),
            "o": Out(stream.Signature(unsigned(encoding.n_bits))),
        })

    def elaborate(self, platform):
        m = Module()
        src, th, w = self.encoding.comparisons(self.wire == "levels")
        # One field per value (a byte, or a level), one comparison per (value, threshold); a
        # comparison against a constant is a few LUTs after synthesis (a level's often none).
        field = [self.i.payload[w * v: w * v + w] for v in range(self.encoding.image_bytes)]
        cmp = [field[int(s)] > int(t) for s, t in zip(src.tolist(), np.asarray(th).tolist())]
        en = stage_control(m, self.i, self.o, self.latency)
        # The comparisons are built in pieces of CHUNK bits (shallow Verilog
        # expressions, see _stage.CHUNK), and the output is ONE assignment of
        # their Cat: a wide port driven in slices makes Icarus re-evaluate
        # every reader of the port once per slice.
        pieces = []
        for c, (lo, hi) in enumerate(chunks(len(cmp))):
            piece = Signal(hi - lo, name=f"bits_{c}", reset_less=self.registered)
            if self.registered:
                with m.If(en):
                    m.d.sync += piece.eq(Cat(*cmp[lo:hi]))
            else:
                m.d.comb += piece.eq(Cat(*cmp[lo:hi]))
            pieces.append(piece)
        m.d.comb += self.o.payload.eq(Cat(*pieces))
        return m
