"""Drive a stream component in the Amaranth simulator, cycle by cycle.

Used by the tests of every component and by the ``sim`` runner's Amaranth
backend.  A source offers the payloads in order (with optional random valid
gaps), a sink takes the results (with optional random ready back-pressure),
and both record the cycle of every transfer, so callers can check the order,
the content and the latency of each item.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["StreamRun", "run_stream", "pack_bits", "pack_bytes"]


@dataclass
class StreamRun:
    """What happened on the ports.

    Attributes
    ----------
    outputs : list of int
        Payloads taken from ``o``, in order.
    in_cycles, out_cycles : list of int
        Cycle of each transfer on ``i`` and on ``o`` (item ``n`` entered at
        ``in_cycles[n]`` and, if nothing was lost, left at ``out_cycles[n]``).
    cycles : int
        Cycles simulated.
    ready_low_while_idle : int
        Cycles in which the sink was ready but ``i.ready`` was low: a full
        throughput component never has any.
    """

    outputs: list = field(default_factory=list)
    in_cycles: list = field(default_factory=list)
    out_cycles: list = field(default_factory=list)
    cycles: int = 0
    ready_low_while_idle: int = 0

    def latencies(self) -> np.ndarray:
        n = min(len(self.in_cycles), len(self.out_cycles))
        return np.asarray(self.out_cycles[:n]) - np.asarray(self.in_cycles[:n])


def pack_bits(bits: np.ndarray) -> list[int]:
    """Bool rows ``[N, n]`` -> ints with bit ``j`` = ``row[j]`` (payload order)."""
    bits = np.asarray(bits, dtype=bool)
    packed = np.packbits(bits, axis=1, bitorder="little")
    return [int.from_bytes(r.tobytes(), "little") for r in packed]


def pack_bytes(images: np.ndarray) -> list[int]:
    """uint8 images ``[N, ...]`` -> ints with byte ``p`` of the flattened image at bits ``[8p, 8p+8)``."""
    x = np.asarray(images, dtype=np.uint8).reshape(len(images), -1)
    return [int.from_bytes(r.tobytes(), "little") for r in x]


def run_stream(dut, payloads, *, valid_prob: float = 1.0, ready_prob: float = 1.0, seed: int = 0,
               max_cycles: int | None = None, domain_period: float = 1e-8) -> StreamRun:
    """Feed ``payloads`` into ``dut.i`` and collect ``dut.o`` until every item is out.

    Parameters
    ----------
    dut : amaranth.lib.wiring.Component
        Any component with ``i`` (stream in) and ``o`` (stream out) and a
        ``latency`` attribute (used only to bound the run).
    payloads : sequence of int
    valid_prob, ready_prob : float
        Probability that the source offers an item / the sink is ready, per
        cycle; 1.0 means always.
    seed : int
        Seed of the gap and back-pressure pattern.
    max_cycles : int, optional
        Stop after this many cycles even if items are missing (the caller's
        comparison then fails, instead of the run hanging).
    """
    from amaranth.hdl import Module, Signal
    from amaranth.sim import Simulator

    payloads = list(payloads)
    rng = np.random.default_rng(seed)
    n = len(payloads)
    if max_cycles is None:
        slow = 1.0 / max(min(valid_prob, ready_prob), 0.05)
        max_cycles = int((n + getattr(dut, "latency", 0) + 8) * slow * 3) + 100
    run = StreamRun()
    # A wrapper with one flip-flop gives combinational parts (latency 0) a clock domain too.
    top = Module()
    top.submodules.dut = dut
    tick = Signal()
    top.d.sync += tick.eq(~tick)
    sim = Simulator(top)
    sim.add_clock(domain_period)

    async def bench(ctx):
        sent = 0
        for cycle in range(max_cycles):
            offer = sent < n and (valid_prob >= 1.0 or rng.random() < valid_prob)
            take = ready_prob >= 1.0 or rng.random() < ready_prob
            ctx.set(dut.i.valid, int(offer))
            if offer:
                ctx.set(dut.i.payload, payloads[sent])
            ctx.set(dut.o.ready, int(take))
            i_ready = ctx.get(dut.i.ready)
            if take and not i_ready:
                run.ready_low_while_idle += 1
            if take and ctx.get(dut.o.valid):
                run.outputs.append(int(ctx.get(dut.o.payload)))
                run.out_cycles.append(cycle)
            if offer and i_ready:
                run.in_cycles.append(cycle)
                sent += 1
            run.cycles = cycle + 1
            if len(run.outputs) >= n and sent >= n:
                break
            await ctx.tick()
        # Keep the sink open a while longer: anything else that comes out is a
        # duplicate (or garbage) and shows up as an extra output.
        ctx.set(dut.i.valid, 0)
        ctx.set(dut.o.ready, 1)
        for _ in range(getattr(dut, "latency", 0) + 4):
            await ctx.tick()
            run.cycles += 1
            if ctx.get(dut.o.valid):
                run.outputs.append(int(ctx.get(dut.o.payload)))
                run.out_cycles.append(run.cycles - 1)

    sim.add_testbench(bench)
    sim.run()
    return run
