"""cocotb bench of the exported classifier (Verilog from ``lgn-fpga hdl``).

Run through :func:`lgn_fpga.sim.icarus.run_cocotb` (``cocotb_tools.runner``), never by
hand: the runner passes the job in environment variables:

``LGN_SIM_JOB``
    A JSON file: ``vectors`` (``.npy`` of uint8 ``[N, payload_bytes]``, the
    ``i__payload`` of each image little-endian), ``expected`` (``.npy`` of the
    golden classes), ``latency``, ``out`` (where the full-rate test writes
    the classes it saw, ``.npy``), ``stall_images`` (how many images the
    back-pressure test streams) and ``seed``.

Tests: ``full_rate`` streams every image back to back and checks that each
class appears exactly ``latency`` cycles after its image, that ``i__ready``
never drops and that every class equals the golden one; ``backpressure``
streams the first ``stall_images`` images with random valid gaps and ready
back-pressure and checks that nothing is lost, duplicated or reordered.
"""
from __future__ import annotations

import json
import os
import random
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge


def _job() -> dict:
    with open(os.environ["LGN_SIM_JOB"]) as f:
        return json.load(f)


class TB:
    """Owns the clock, the reset and the two stream ends of the design.

    The source drives ``i__valid``/``i__payload`` and counts a transfer when
    ``i__ready`` is high in the same cycle; the sink drives ``o__ready`` and
    takes ``o__payload`` whenever ``o__valid`` is high while it is ready.
    Every transfer is recorded with its cycle number.
    """

    def __init__(self, dut, period_ns: int = 10):
        self.dut = dut
        self.log = dut._log
        self.cycle = 0
        cocotb.start_soon(Clock(dut.clk, period_ns, unit="ns").start())

    async def reset(self, cycles: int = 2):
        d = self.dut
        d.rst.value = 1
        d.i__valid.value = 0
        d.o__ready.value = 0
        d.i__payload.value = 0
        for _ in range(cycles):
            await RisingEdge(d.clk)
        d.rst.value = 0

    async def stream(self, payloads, *, valid_prob=1.0, ready_prob=1.0, seed=0, latency=0):
        """Offer ``payloads`` in order and take classes until every one is out (plus a drain)."""
        d = self.dut
        rng = random.Random(seed)
        n = len(payloads)
        outs, in_cycles, out_cycles = [], [], []
        refused = 0
        sent = 0
        cycle = 0
        drain = 0
        limit = (n + latency + 16) * 40 / max(min(valid_prob, ready_prob), 0.05)
        await RisingEdge(d.clk)
        while cycle < limit:
            offer = sent < n and (valid_prob >= 1.0 or rng.random() < valid_prob)
            take = len(outs) >= n or ready_prob >= 1.0 or rng.random() < ready_prob
            d.i__valid.value = int(offer)
            if offer:
                d.i__payload.value = payloads[sent]
            d.o__ready.value = int(take)
            await ReadOnly()
            i_ready = bool(d.i__ready.value)
            if take and not i_ready and sent < n:
                refused += 1
            if take and d.o__valid.value:
                outs.append(int(d.o__payload.value))
                out_cycles.append(cycle)
            if offer and i_ready:
                in_cycles.append(cycle)
                sent += 1
            done = len(outs) >= n and sent >= n
            drain += done
            await RisingEdge(d.clk)
            cycle += 1
            if drain > latency + 4:
                break
        d.i__valid.value = 0
        return outs, in_cycles, out_cycles, refused


def _load(job):
    vec = np.load(job["vectors"])
    payloads = [int.from_bytes(r.tobytes(), "little") for r in vec]
    expected = np.load(job["expected"]).astype(int).tolist()
    return payloads, expected


@cocotb.test()
async def full_rate(dut):
    """Every image back to back: exact latency, an image per cycle, classes equal to the golden model."""
    job = _job()
    payloads, expected = _load(job)
    L = int(job["latency"])
    tb = TB(dut)
    await tb.reset()
    t0 = time.perf_counter()
    outs, ins, out_cycles, refused = await tb.stream(payloads, latency=L)
    secs = time.perf_counter() - t0
    if job.get("out"):
        tmp = job["out"] + ".tmp.npy"
        np.save(tmp, np.asarray(outs + [-1] * (len(expected) - len(outs)), np.int64)[:len(expected)])
        os.replace(tmp, job["out"])
        with open(job["out"] + ".json", "w") as f:
            json.dump({"images": len(expected), "outputs": len(outs), "seconds": secs}, f)
    assert refused == 0, f"i__ready dropped {refused} times while the sink was ready"
    assert ins == list(range(len(payloads))), "an image was not accepted in its cycle"
    assert len(outs) == len(expected), f"{len(outs)} classes for {len(expected)} images"
    lat = [o - i for i, o in zip(ins, out_cycles)]
    bad = [k for k, v in enumerate(lat) if v != L]
    assert not bad, f"image {bad[0]}: class after {lat[bad[0]]} cycles, latency is {L}"
    wrong = [k for k, (a, b) in enumerate(zip(outs, expected)) if a != b]
    assert not wrong, (f"{len(wrong)} of {len(expected)} classes differ from the golden model; "
                       f"first: image {wrong[0]} hardware {outs[wrong[0]]} software {expected[wrong[0]]}")
    dut._log.info(f"{len(expected)} images in {secs:.2f} s ({len(expected) / max(secs, 1e-9):.0f} images/s)")


@cocotb.test()
async def backpressure(dut):
    """Random valid gaps and ready back-pressure lose, duplicate or reorder nothing."""
    job = _job()
    payloads, expected = _load(job)
    n = min(len(payloads), int(job.get("stall_images", 200)))
    tb = TB(dut)
    await tb.reset()
    outs, ins, out_cycles, _ = await tb.stream(payloads[:n], valid_prob=0.5, ready_prob=0.5,
                                               seed=int(job.get("seed", 1)), latency=int(job["latency"]))
    assert len(outs) == n, f"{len(outs)} classes for {n} images under back-pressure (lost or duplicated)"
    assert outs == expected[:n], "classes differ from the golden model under back-pressure"
    assert all(o - i >= int(job["latency"]) for i, o in zip(ins, out_cycles))
