# amaranth: UnusedElaboratable=no
"""UART receiver and transmitter: argument checks, then cycle-level simulation."""
from fractions import Fraction

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from lgn_fpga.hdl.uart import UARTReceiver, UARTTransmitter, bit_period, check_baud
from lgn_fpga.sim import uart_line


# -- signatures and arguments ---------------------------------------------------------------

@pytest.mark.parametrize("bad", [3, 3.99, -8, "8", None, True])
def test_divisor_checked(bad):
    with pytest.raises(ValueError, match=r"divisor \(clock cycles per bit\) must be a number >= 4, not"):
        UARTReceiver(bad)
    with pytest.raises(ValueError, match=r"divisor .* must be a number >= 4"):
        UARTTransmitter(bad)


def test_bit_period_is_fractional():
    assert bit_period(8) == 128
    assert bit_period(Fraction(25_000_000, 3_000_000)) == 133      # 8.3125 cycles: 0.25 % off
    assert check_baud(25e6, 3_000_000) == Fraction(25, 3)


def test_check_baud_says_the_limit():
    with pytest.raises(ValueError, match=r"baud rate 4000000 is too high for a 12 MHz clock .* at most 3000000 baud"):
        check_baud(12e6, 4_000_000)
    with pytest.raises(ValueError, match=r"baud rate must be a positive integer, not 0"):
        check_baud(12e6, 0)


# -- line models: the one host-side model, lgn_fpga.sim.uart_line ----------------------------------

def line_levels(payload: bytes, cycles_per_bit, stop_level=1, idle=2):
    """Per-cycle levels of an 8N1 line carrying ``payload`` (bit edges at exact multiples of the period)."""
    return uart_line.line_levels(payload, Fraction(cycles_per_bit), stop=stop_level, idle_bits=idle)


def run_rx(divisor, levels):
    """Drive ``levels`` into a receiver; return the (byte, err) pairs it produced."""
    dut = UARTReceiver(divisor)
    got = []

    async def tb(ctx):
        for lv in levels:
            ctx.set(dut.rx, lv)
            await ctx.tick()
            if ctx.get(dut.o.valid):
                got.append((ctx.get(dut.o.payload.data), ctx.get(dut.o.payload.err)))
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return got


@pytest.mark.parametrize("divisor", [4, 8, Fraction(25, 3), 10.5, 16])
@pytest.mark.parametrize("rate_error", [-0.02, 0.0, 0.02])
def test_rx_decodes_back_to_back_bytes(divisor, rate_error):
    data = bytes([0x00, 0xFF, 0x55, 0xAA, 0xA5, 0x5A, 0x01, 0x80]) + bytes(np.random.default_rng(1).integers(0, 256, 8, np.uint8))
    got = run_rx(divisor, line_levels(data, float(divisor) * (1 + rate_error)))
    assert got == [(b, 0) for b in data]


def test_rx_framing_error_then_recovers():
    div = 8
    lv = line_levels(b"\x3c", div, stop_level=0, idle=1) + line_levels(b"\x42", div)
    assert run_rx(div, lv) == [(0x3C, 1), (0x42, 0)]


def test_rx_line_held_low_gives_one_error_byte():
    div = 8
    lv = [1] * 20 + [0] * (div * 200) + [1] * 40 + line_levels(b"\x99", div)
    assert run_rx(div, lv) == [(0x00, 1), (0x99, 0)]


def test_rx_ignores_glitches():
    div = 16
    lv = [1] * 20 + [0] * 3 + [1] * 200 + line_levels(b"\x17", div)
    assert run_rx(div, lv) == [(0x17, 0)]


# -- transmitter ---------------------------------------------------------------------------------

def run_tx(divisor, payload, extra_cycles=0):
    """Feed ``payload`` through a transmitter's handshake; return the line level after every cycle."""
    m = Module()
    m.submodules.tx = dut = UARTTransmitter(divisor)
    trace = []
    n_cycles = int(10 * float(divisor) * (len(payload) + 2)) + 4 + extra_cycles

    async def feeder(ctx):
        for b in payload:
            ctx.set(dut.i.payload, b)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def monitor(ctx):
        for _ in range(n_cycles):
            await ctx.tick()
            trace.append(ctx.get(dut.tx))
    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(feeder, background=True)
    sim.add_testbench(monitor)
    sim.run()
    return trace


def decode_line(trace, divisor, starts=None):
    """Ideal receiver (the line model's monitor): ``(byte, stop bit)`` per byte; start edges into ``starts``."""
    out = uart_line.decode_levels(trace, Fraction(divisor))
    if starts is not None:
        starts += [t for _, _, t in out]
    return [(b, stop) for b, stop, _ in out]


@pytest.mark.parametrize("divisor", [4, 8, Fraction(25, 3), 13.75])
def test_tx_line_format_and_rate(divisor):
    data = bytes([0x00, 0xFF, 0xA5, 0x5A, 0x81])
    trace = run_tx(divisor, data)
    edges = []
    assert decode_line(trace, divisor, edges) == [(b, 1) for b in data]
    # Back-to-back bytes: consecutive start bits are 10 bit periods apart on average.
    span = (edges[-1] - edges[0]) / (10 * (len(edges) - 1))
    assert abs(span - float(divisor)) < 0.15


@pytest.mark.parametrize("divisor", [4, Fraction(25, 3), 12])
def test_tx_to_rx_loopback(divisor):
    data = bytes(np.random.default_rng(7).integers(0, 256, 40, np.uint8))
    m = Module()
    m.submodules.tx = tx = UARTTransmitter(divisor)
    m.submodules.rx = rx = UARTReceiver(divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    got = []

    async def feeder(ctx):
        for b in data:
            ctx.set(tx.i.payload, b)
            ctx.set(tx.i.valid, 1)
            await ctx.tick().until(tx.i.ready)
        ctx.set(tx.i.valid, 0)

    async def monitor(ctx):
        for _ in range(int(10 * float(divisor) * (len(data) + 2))):
            await ctx.tick()
            if ctx.get(rx.o.valid):
                got.append((ctx.get(rx.o.payload.data), ctx.get(rx.o.payload.err)))
    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(feeder, background=True)
    sim.add_testbench(monitor)
    sim.run()
    assert got == [(b, 0) for b in data]
