"""The host's side of a UART line, bit by bit: the one model every bench drives the board's pins with.

:class:`LineDriver` turns bytes into runs of line levels (8N1, LSB first, bit
edges at exact multiples of a fractional bit period, rounded down to cycles
with a carried remainder, as a real UART's independent clock would place
them); :class:`LineMonitor` samples each bit in its middle after a falling
edge.  Users: the virtual board (its Amaranth backend per cycle; its
Verilator harness plays the driver's runs and samples at the monitor's
offsets, so the C++ has no line arithmetic of its own), the cocotb bench
(:mod:`lgn_fpga.sim.tb_top`) and the UART tests (``tests/hdl/test_uart.py``).
"""
from __future__ import annotations

from collections import deque
from fractions import Fraction

__all__ = ["LineDriver", "LineMonitor", "line_levels", "decode_levels"]


def _fraction(divisor) -> Fraction:
    d = Fraction(divisor)
    if d < 1:
        raise ValueError(f"divisor (clock cycles per bit) must be at least 1, not {divisor!r}")
    return d


class LineDriver:
    """Host-side transmitter: queued bytes become runs of ``[level, cycles]``, or one level per cycle."""

    def __init__(self, divisor):
        d = _fraction(divisor)
        self.num, self.den = d.numerator, d.denominator
        self._acc = 0
        self._runs = deque()      # [level, cycles]

    def _push(self, level: int, cycles: int):
        if cycles:
            if self._runs and self._runs[-1][0] == level:
                self._runs[-1][1] += cycles
            else:
                self._runs.append([level, cycles])

    def _bit(self, level: int):
        self._acc += self.num
        n, self._acc = divmod(self._acc, self.den)
        self._push(level, n)

    def queue(self, data: bytes, *, stop: int = 1, gap_bits: int = 0):
        """Queue ``data`` (``stop``: the stop bit's level; ``gap_bits`` idle bit times after each byte)."""
        for b in bytes(data):
            self._bit(0)
            for i in range(8):
                self._bit((b >> i) & 1)
            self._bit(stop)
            for _ in range(gap_bits):
                self._bit(1)

    def idle_bits(self, n: int):
        """The line high for ``n`` bit times."""
        for _ in range(int(n)):
            self._bit(1)

    def hold_low(self, cycles: int):
        """A break: the line low for ``cycles``, then two idle bit times."""
        self._push(0, int(cycles))
        self._bit(1)
        self._bit(1)

    @property
    def idle(self) -> bool:
        return not self._runs

    def take_runs(self) -> list:
        """Every queued ``(level, cycles)`` run, removed from the queue."""
        out = [(lv, n) for lv, n in self._runs]
        self._runs.clear()
        return out

    def level(self) -> int:
        """This cycle's level (1 when nothing is queued), advancing one cycle."""
        if not self._runs:
            return 1
        run = self._runs[0]
        run[1] -= 1
        if run[1] == 0:
            self._runs.popleft()
        return run[0]


class LineMonitor:
    """Host-side receiver: samples each bit at its middle after a falling edge."""

    def __init__(self, divisor):
        d = _fraction(divisor)
        self.num, self.den = d.numerator, d.denominator
        # Bit k's middle is (k + 1/2) * divisor cycles after the start edge (start, 8 data bits, stop).
        self.offsets = tuple(((2 * k + 1) * self.num) // (2 * self.den) for k in range(10))
        self._t = None            # cycles since the start edge, or None when idle
        self._bits = 0
        self._k = 0
        self.framing_errors = 0
        self.last_stop = 1        # the stop bit of the last byte

    def sample(self, level: int):
        """Feed one cycle's level; return a byte when one completes."""
        if self._t is None:
            if level == 0:
                self._t, self._k, self._bits = 0, 0, 0
            return None
        self._t += 1
        if self._t == self.offsets[self._k]:
            if 1 <= self._k <= 8:
                self._bits |= level << (self._k - 1)
            self._k += 1
            if self._k == 10:
                self._t = None
                self.last_stop = level
                if level == 0:
                    self.framing_errors += 1
                return self._bits
        return None


def line_levels(data: bytes, divisor, *, stop: int = 1, idle_bits: int = 2) -> list:
    """Per-cycle levels of a line carrying ``data``, with ``idle_bits`` idle bit times before and after."""
    drv = LineDriver(divisor)
    drv.idle_bits(idle_bits)
    drv.queue(data, stop=stop)
    drv.idle_bits(idle_bits)
    return [lv for lv, n in drv.take_runs() for _ in range(n)]


def decode_levels(levels, divisor) -> list:
    """``(byte, stop bit, start cycle)`` of every byte a :class:`LineMonitor` finds in per-cycle ``levels``."""
    mon, out, start = LineMonitor(divisor), [], None
    for t, lv in enumerate(levels):
        if mon._t is None and lv == 0:
            start = t
        b = mon.sample(lv)
        if b is not None:
            out.append((b, mon.last_stop, start))
    return out
