"""cocotb bench of the full top level (:class:`lgn_fpga.hdl.top.ClassifierTop`) through its UART pins.

Run through :func:`lgn_fpga.sim.run_top.run_top_bench`, never by hand: the runner
writes a JSON job and names it in ``LGN_TOP_JOB``:

``images``          uint8 images, one list of ``image_bytes`` per image
``expected``        the golden class of each image
``cycles_per_bit``  UART bit period in clock cycles (an integer here)
``frame_timeout``   the board's frame timeout in cycles
``n_leds``          LED outputs (the last class, low bits)
``info``            the INFO payload the board must send (hex)

Tests: ``stream`` sends every image back to back and checks that each gets
exactly one reply, with its sequence number and the golden class, and that
the LEDs show the last class; ``info`` checks the INFO reply; ``faults``
injects a dropped byte, a flipped byte, garbage between frames, a frame cut
short and a line held low, and checks that each gives an error reply or no
reply (a timeout) and that the next frame is answered correctly.  Every wait
is bounded, so a wedged design fails instead of hanging.
"""
from __future__ import annotations

import json
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge

from lgn_fpga import protocol as P
from lgn_fpga.sim.uart_line import LineDriver, LineMonitor


def _job() -> dict:
    with open(os.environ["LGN_TOP_JOB"]) as f:
        return json.load(f)


class TB:
    """Clock, reset, and the host's UART: a bit-level driver on ``rx`` and a monitor on ``tx``."""

    def __init__(self, dut, job):
        self.dut = dut
        self.job = job
        self.bit = int(job["cycles_per_bit"])
        self.line = LineDriver(self.bit)      # the one host-side line model (lgn_fpga.sim.uart_line)
        self.rx_bytes = bytearray()
        self.parser = P.ReplyParser()
        self.replies = []
        self.framing_errors = 0
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())

    async def reset(self):
        d = self.dut
        d.rx.value = 1
        d.rst.value = 1
        await ClockCycles(d.clk, 4)
        d.rst.value = 0
        await ClockCycles(d.clk, 2)
        cocotb.start_soon(self._monitor())

    async def _monitor(self):
        # The sample points of lgn_fpga.sim.uart_line.LineMonitor, awaited instead of polled.
        d, offs = self.dut, LineMonitor(self.bit).offsets
        while True:
            await FallingEdge(d.tx)           # cycle 0 of the model
            bits, t = [], 0
            for off in offs:
                await ClockCycles(d.clk, off - t)
                t = off
                await ReadOnly()
                bits.append(int(d.tx.value))
                if len(bits) == 1 and bits[0] != 0:
                    break                     # a glitch, not a start bit
            if bits[0] != 0:
                continue
            bits = bits[1:]
            if not bits[8]:
                self.framing_errors += 1
            byte = sum(v << i for i, v in enumerate(bits[:8]))
            self.rx_bytes.append(byte)
            self.replies += self.parser.feed(bytes([byte]))

    async def _play(self):
        """Drive the line model's queued runs on ``rx``."""
        d = self.dut
        await RisingEdge(d.clk)
        for level, cycles in self.line.take_runs():
            d.rx.value = level
            await ClockCycles(d.clk, cycles)
        d.rx.value = 1

    async def send(self, data: bytes, gap_bits: int = 0):
        """Drive ``data`` on ``rx``, 8N1, with ``gap_bits`` idle bit times after each byte."""
        self.line.queue(data, gap_bits=gap_bits)
        await self._play()

    async def hold_low(self, bits: int):
        self.line.hold_low(bits * self.bit)
        await self._play()

    async def idle(self, cycles: int):
        await ClockCycles(self.dut.clk, cycles)

    async def wait_replies(self, n: int, max_cycles: int) -> list:
        """Wait until ``n`` replies have arrived (or ``max_cycles`` passed); return all of them."""
        for _ in range(max_cycles // 16 + 1):
            if len(self.replies) >= n:
                break
            await ClockCycles(self.dut.clk, 16)
        return list(self.replies)

    def reply_cycles(self, info=False) -> int:
        return (P.REPLY_LEN + (P.INFO_LEN if info else 0) + 2) * 10 * self.bit + 200


def _u8(img):
    return np.frombuffer(bytes(img), dtype=np.uint8)


def _frames(job):
    return [bytes(img) for img in job["images"]]


@cocotb.test()
async def stream(dut):
    """Every image back to back over the UART: one reply each, in order, equal to the golden model."""
    job = _job()
    tb = TB(dut, job)
    await tb.reset()
    imgs, expected = _frames(job), job["expected"]
    wire = b"".join(P.encode_request(i & 0xFF, _u8(img)) for i, img in enumerate(imgs))
    await tb.send(wire)
    reps = await tb.wait_replies(len(imgs), tb.reply_cycles() * 2)
    await tb.idle(tb.reply_cycles())          # anything extra would show up now
    reps = tb.replies
    assert tb.framing_errors == 0 and tb.parser.skipped == 0 and tb.parser.bad == 0, "garbage on tx"
    assert len(reps) == len(imgs), f"{len(reps)} replies for {len(imgs)} frames"
    got = [(r.seq, r.code) for r in reps]
    want = [(i & 0xFF, c) for i, c in enumerate(expected)]
    wrong = [k for k, (a, b) in enumerate(zip(got, want)) if a != b]
    assert not wrong, f"{len(wrong)} replies differ; first: frame {wrong[0]} got {got[wrong[0]]} want {want[wrong[0]]}"
    n_leds = int(job["n_leds"])
    if n_leds:
        assert int(dut.leds.value) == expected[-1] % (1 << n_leds), "LEDs do not show the last class"
    dut._log.info(f"{len(imgs)} frames, every reply equal to the golden model")


@cocotb.test()
async def info(dut):
    """An INFO request is answered with the board's identity."""
    job = _job()
    tb = TB(dut, job)
    await tb.reset()
    await tb.send(P.encode_info_request(42))
    reps = await tb.wait_replies(1, tb.reply_cycles(info=True) * 2)
    assert len(reps) == 1 and reps[0].seq == 42 and reps[0].code == P.CODE_INFO, reps
    assert reps[0].payload == bytes.fromhex(job["info"])


@cocotb.test()
async def faults(dut):
    """Each line fault gives an error reply or nothing, and the next frame is answered correctly."""
    job = _job()
    tb = TB(dut, job)
    await tb.reset()
    imgs, expected = _frames(job), job["expected"]
    rng = random.Random(5)
    timeout = int(job["frame_timeout"])
    # The host's reply timeout: longer than the board's frame timeout, as lgn_fpga.host.client's is.
    host_wait = timeout + tb.reply_cycles() + 4 * tb.bit

    def frame(seq, k):
        return bytearray(P.encode_request(seq, _u8(imgs[k % len(imgs)])))

    seq = 100
    cases = ["drop", "flip", "garbage", "cut", "low", "low_between"]
    for case in cases:
        bad_seq, good_seq = seq, seq + 1
        seq += 2
        k = rng.randrange(len(imgs))
        f = frame(bad_seq, k)
        before = len(tb.replies)
        allowed = set()
        if case == "drop":
            del f[3 + rng.randrange(len(f) - 3)]
            await tb.send(bytes(f))
            allowed = {P.ERR_TIMEOUT, P.ERR_CRC}
        elif case == "flip":
            f[3 + rng.randrange(len(f) - 3)] ^= 1 << rng.randrange(8)
            await tb.send(bytes(f))
            allowed = {P.ERR_CRC}
        elif case == "garbage":
            # Garbage that contains a lone sync byte, then the (good) frame right after it.
            await tb.send(bytes([0x00, 0xFF, P.SYNC0, 0x13, 0x5A, P.SYNC0]))
            await tb.send(bytes(f))
            allowed = {"class"}
        elif case == "cut":
            await tb.send(bytes(f[:len(f) // 2]))
            allowed = {P.ERR_TIMEOUT}
        elif case == "low":
            await tb.send(bytes(f[:5]))
            await tb.hold_low(40)
            allowed = {P.ERR_LINE}
        elif case == "low_between":
            await tb.hold_low(40)
            allowed = set()
        reps = await tb.wait_replies(before + 1, host_wait)
        new = reps[before:]
        assert len(new) <= 1, f"{case}: {len(new)} replies to one frame"
        outcome = P.describe_code(new[0].code) if new else "no reply (timeout)"
        if new:
            r = new[0]
            assert r.seq == bad_seq, f"{case}: reply for seq {r.seq}, expected {bad_seq}"
            if "class" in allowed:
                assert r.code == expected[k % len(expected)], f"{case}: class {r.code}, golden {expected[k]}"
            else:
                assert r.code in allowed, f"{case}: reply {P.describe_code(r.code)}, expected one of " \
                                          f"{[P.describe_code(c) for c in allowed]} or none"
        else:
            assert "class" not in allowed, f"{case}: no reply to a good frame"
        # Then a good frame must be answered correctly.
        k2 = rng.randrange(len(imgs))
        before = len(tb.replies)
        await tb.send(bytes(frame(good_seq, k2)))
        reps = await tb.wait_replies(before + 1, tb.reply_cycles() * 2)
        new = reps[before:]
        assert len(new) == 1, f"after {case}: {len(new)} replies to the next good frame"
        assert (new[0].seq, new[0].code) == (good_seq, expected[k2 % len(expected)]), \
            f"after {case}: got {new[0]}, expected class {expected[k2]}"
        dut._log.info(f"{case}: {outcome}, then the next frame answered correctly")
    assert tb.framing_errors == 0, "the board sent a byte with a bad stop bit"
