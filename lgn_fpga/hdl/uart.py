"""UART receiver and transmitter (8N1, LSB first) with a fractional bit period.

The bit period is kept in sixteenths of a clock cycle, so any baud rate the
clock allows is met on average to within 1/16 cycle per bit: 25 MHz / 3 Mbaud
(8.33 cycles per bit) runs with a rate error of 0.04 % instead of the 4 % an
integer divider would give.  A rate needs at least 4 cycles per bit
(:data:`MIN_CYCLES_PER_BIT`).

The receiver samples each bit once, in its middle, after a two-flip-flop
synchronizer; a start bit that is high again at its middle is a glitch and is
ignored.  A low stop bit (a framing error, a break, a line held low) is
reported with ``err`` set, and the receiver then waits for the line to go high
before it looks for the next start bit, so a line stuck low yields exactly one
error byte, not a flood.
"""
from __future__ import annotations

from fractions import Fraction

from amaranth.hdl import Cat, Const, Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["RxByte", "UARTReceiver", "UARTTransmitter", "MIN_CYCLES_PER_BIT", "bit_period", "check_baud"]

MIN_CYCLES_PER_BIT = 4
_FRAC = 16  # sub-cycle resolution of the bit period


# A received byte; ``err`` marks a byte whose stop bit was low.
RxByte = data.StructLayout({"data": 8, "err": 1})


def bit_period(divisor) -> int:
    """Cycles per bit as an integer number of sixteenths (``divisor`` may be a float or a Fraction)."""
    if isinstance(divisor, bool) or not isinstance(divisor, (int, float, Fraction)) or divisor < MIN_CYCLES_PER_BIT:
        raise ValueError(f"divisor (clock cycles per bit) must be a number >= {MIN_CYCLES_PER_BIT}, not {divisor!r}")
    return int(round(Fraction(divisor) * _FRAC))


def check_baud(clk_hz, baud) -> Fraction:
    """Cycles per bit for ``baud`` at ``clk_hz``, or a ValueError that gives the highest rate the clock allows."""
    if isinstance(baud, bool) or not isinstance(baud, int) or baud <= 0:
        raise ValueError(f"baud rate must be a positive integer, not {baud!r}")
    div = Fraction(int(round(clk_hz)), baud)
    if div < MIN_CYCLES_PER_BIT:
        raise ValueError(f"baud rate {baud} is too high for a {clk_hz / 1e6:g} MHz clock "
                         f"(needs {MIN_CYCLES_PER_BIT} cycles per bit: at most {int(clk_hz // MIN_CYCLES_PER_BIT)} baud)")
    return div


class _BitTimer:
    """A fractional down-counter: ``tick`` is high for one cycle every ``period / 16`` cycles on average."""

    def __init__(self, period16: int):
        self.period16 = period16
        self.count = Signal(range(period16 + 1))
        self.tick = Signal()

    def add(self, m):
        """Drive ``tick`` and the count; a later ``count.eq(...)`` in ``m`` restarts the timer."""
        m.d.comb += self.tick.eq(self.count < _FRAC)
        with m.If(self.tick):
            m.d.sync += self.count.eq(self.count + self.period16 - _FRAC)
        with m.Else():
            m.d.sync += self.count.eq(self.count - _FRAC)


class UARTReceiver(wiring.Component):
    """8N1 receiver.

    Parameters
    ----------
    divisor : int, float or Fraction
        Clock cycles per bit (``clk_hz / baud``), at least 4.

    Attributes
    ----------
    rx : In(1)
        The line (idle high); asynchronous, synchronized inside.
    o : Out(stream.Signature(RxByte, always_ready=True))
        One ``valid`` pulse per received byte, at the middle of its stop bit.
        There is no backpressure: the consumer must take every byte.
    """

    def __init__(self, divisor):
        self.period16 = bit_period(divisor)
        super().__init__({
            "rx": In(1, init=1),
            "o": Out(stream.Signature(RxByte, always_ready=True)),
        })

    def elaborate(self, platform):
        m = Module()
        rx = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, rx, init=1)

        timer = _BitTimer(self.period16)
        timer.add(m)
        shift = Signal(8)
        nbit = Signal(range(8))

        m.d.sync += self.o.valid.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    # First sample in the middle of the start bit, half a bit after the edge (the
                    # timer ticks when fewer than 16 sixteenths are left, hence the -16).
                    m.d.sync += timer.count.eq(max(self.period16 // 2 - _FRAC, 0))
                    m.next = "START"
            with m.State("START"):
                with m.If(timer.tick):
                    with m.If(rx):
                        m.next = "IDLE"       # a glitch, not a start bit
                    with m.Else():
                        m.d.sync += nbit.eq(0)
                        m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer.tick):
                    m.d.sync += [shift.eq(Cat(shift[1:], rx)), nbit.eq(nbit + 1)]
                    with m.If(nbit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer.tick):
                    m.d.sync += [self.o.payload.data.eq(shift), self.o.payload.err.eq(~rx), self.o.valid.eq(1)]
                    with m.If(rx):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "BREAK"
            with m.State("BREAK"):
                # Wait for the line to be released before hunting for a start bit again.
                with m.If(rx):
                    m.next = "IDLE"
        return m


class UARTTransmitter(wiring.Component):
    """8N1 transmitter.

    Parameters
    ----------
    divisor : int, float or Fraction
        Clock cycles per bit (``clk_hz / baud``), at least 4.

    Attributes
    ----------
    i : In(stream.Signature(8))
        Bytes to send; ``ready`` is high while the transmitter is idle.
    tx : Out(1)
        The line (idle high), driven from a flip-flop.
    busy : Out(1)
        High while a byte is on the line.
    """

    def __init__(self, divisor):
        self.period16 = bit_period(divisor)
        super().__init__({
            "i": In(stream.Signature(unsigned(8))),
            "tx": Out(1, init=1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        timer = _BitTimer(self.period16)
        timer.add(m)
        shift = Signal(9)           # data bits, then the stop bit
        left = Signal(range(11))    # bits still to send after the current one

        m.d.comb += [self.i.ready.eq(left == 0), self.busy.eq(left != 0)]
        with m.If(left == 0):
            with m.If(self.i.valid):
                m.d.sync += [self.tx.eq(0), shift.eq(Cat(self.i.payload, Const(1, 1))), left.eq(10),
                             timer.count.eq(self.period16 - _FRAC)]
        with m.Elif(timer.tick):
            m.d.sync += [self.tx.eq(shift[0]), shift.eq(Cat(shift[1:], Const(1, 1))), left.eq(left - 1)]
        return m
