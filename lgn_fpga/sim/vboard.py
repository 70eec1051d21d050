"""The virtual board: a simulated :class:`~lgn_fpga.hdl.top.ClassifierTop` behind its UART pins.

The host talks to it exactly as to a board (``lgn-fpga stream --port sim://``,
see :mod:`lgn_fpga.host.protocol_sim`): bytes go in as bit-level waveforms on
``rx``, replies are decoded from ``tx``, so the whole path (UART, framing,
frame buffer, binarizer, classifier, replies) is the hardware's own.

Two backends run the same design:

* ``verilator``: the top level as Verilog, compiled once per model (cached under
  ``$LGN_FPGA_CACHE/vboard``, default ``~/.cache/lgn-fpga/vboard``) with a small C++ harness; millions of cycles/s.
* ``amaranth``: Amaranth's Python simulator; needs nothing else, slow.

Simulated time advances only while the host waits for replies (:meth:`VirtualBoard.read`),
so a frame written in several pieces arrives without gaps, while a frame the
host leaves unfinished times out on the board exactly as on hardware.
Read timeouts are in *board* time: ``read(5, 0.1)`` simulates at most 0.1 s
of the board's clock, however long that takes.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
from collections import deque
from fractions import Fraction
from pathlib import Path

from ..ccompile import cache_root
from ..errors import LgnError

__all__ = ["LineDriver", "LineMonitor", "AmaranthBackend", "VerilatorBackend", "VirtualBoard",
           "VirtualBoardError", "DEFAULT_CYCLES_PER_BIT", "cache_dir", "have_verilator"]

# Cycles per bit of the simulated board: few enough to keep simulation fast, enough for the receiver's
# mid-bit sampling.  The baud rate itself only scales time, so any rate behaves the same.
DEFAULT_CYCLES_PER_BIT = 8


class VirtualBoardError(LgnError):
    """The virtual board could not be built or stopped working."""


def cache_dir() -> Path:
    """``$LGN_FPGA_CACHE/vboard``, else under ``$XDG_CACHE_HOME/lgn-fpga`` or ``~/.cache/lgn-fpga``."""
    return cache_root("vboard")


def have_verilator() -> bool:
    return shutil.which(os.environ.get("VERILATOR", "verilator")) is not None


# -- bit-level line models (the host's side of the wire) -----------------------------------------

class LineDriver:
    """Host-side transmitter: turns queued bytes into one line level per clock cycle.

    Bit edges fall at exact multiples of ``divisor`` (a Fraction), rounded to
    cycles with a carried remainder, as a real UART's independent clock would
    place them.  The C++ harness implements the same arithmetic.
    """

    def __init__(self, divisor):
        d = Fraction(divisor)
        self.num, self.den = d.numerator, d.denominator
        self._acc = 0
        self._runs = deque()      # [level, cycles]

    def _push(self, level: int, cycles: int):
        if cycles:
            self._runs.append([level, cycles])

    def _bit(self, level: int):
        self._acc += self.num
        n, self._acc = divmod(self._acc, self.den)
        self._push(level, n)

    def queue(self, data: bytes):
        for b in bytes(data):
            self._bit(0)
            for i in range(8):
                self._bit((b >> i) & 1)
            self._bit(1)

    def hold_low(self, cycles: int):
        """A break: the line low for ``cycles``, then two idle bit times."""
        self._push(0, int(cycles))
        self._bit(1)
        self._bit(1)

    @property
    def idle(self) -> bool:
        return not self._runs

    def level(self) -> int:
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
        d = Fraction(divisor)
        self.num, self.den = d.numerator, d.denominator
        self._t = None            # cycles since the start edge, or None when idle
        self._bits = 0
        self._k = 0
        self.framing_errors = 0

    def sample(self, level: int):
        """Feed one cycle's level; return a byte when one completes."""
        if self._t is None:
            if level == 0:
                self._t, self._k, self._bits = 0, 0, 0
            return None
        self._t += 1
        # Bit k's middle is (k + 1/2) * divisor cycles after the edge.
        if self._t == ((2 * self._k + 1) * self.num) // (2 * self.den):
            if 1 <= self._k <= 8:
                self._bits |= level << (self._k - 1)
            self._k += 1
            if self._k == 10:
                self._t = None
                if level == 0:
                    self.framing_errors += 1
                return self._bits
        return None


# -- backends ------------------------------------------------------------------------------------

class AmaranthBackend:
    """The top level in Amaranth's simulator (pure Python; slow but needs nothing)."""

    name = "amaranth"

    def __init__(self, top):
        from amaranth.sim import Simulator
        self.top = top
        self.driver = LineDriver(top.divisor)
        self.monitor = LineMonitor(top.divisor)
        self.cycles = 0
        self._out = bytearray()
        self.sim = Simulator(top)
        self.sim.add_clock(1e-6)

        async def pins(ctx):
            ctx.set(top.rx, 1)
            while True:
                ctx.set(top.rx, self.driver.level())
                await ctx.tick()
                self.cycles += 1
                b = self.monitor.sample(ctx.get(top.tx))
                if b is not None:
                    self._out.append(b)
        self.sim.add_testbench(pins, background=True)

    def write(self, data: bytes):
        self.driver.queue(data)

    def hold_low(self, cycles: int):
        self.driver.hold_low(cycles)

    def run(self, want: int, max_cycles: int) -> bytes:
        """Simulate until ``want`` bytes came out or ``max_cycles`` passed; return what came out."""
        end = self.cycles + max_cycles
        while self.cycles < end and len(self._out) < want:
            self.sim.advance()
        out, self._out = bytes(self._out), bytearray()
        return out

    def close(self):
        pass


_HARNESS = r"""
// lgn-fpga virtual board harness: drives the UART pins of a Verilated top level.
// Commands on stdin, little-endian:  'W' u32 n, n bytes   queue bytes on rx
//                                    'B' u32 cycles       hold rx low (a break)
//                                    'R' u32 want, u64 max_cycles
//                                        run until `want` bytes came out of tx or max_cycles passed;
//                                        answer u32 n, n bytes, u64 total cycles
//                                    'Q'                  quit
// The line models are those of lgn_fpga/sim/vboard.py (LineDriver, LineMonitor), line for line.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <vector>
#include <unistd.h>
#include "Vtop.h"
#include "verilated.h"

static Vtop *dut;
struct Run { int level; uint64_t n; };
static std::deque<Run> runs;
static uint64_t acc = 0, cycles = 0;
static std::vector<uint8_t> out;
static int64_t mon_t = -1; static int mon_k = 0; static unsigned mon_bits = 0;

static void push(int level, uint64_t n) { if (n) runs.push_back({level, n}); }
static void bit(int level) { acc += DIV_NUM; uint64_t n = acc / DIV_DEN; acc %= DIV_DEN; push(level, n); }
static void queue_byte(uint8_t b) { bit(0); for (int i = 0; i < 8; i++) bit((b >> i) & 1); bit(1); }

static void monitor(int level) {
    if (mon_t < 0) { if (level == 0) { mon_t = 0; mon_k = 0; mon_bits = 0; } return; }
    mon_t++;
    if (mon_t == (int64_t)(((2 * (uint64_t)mon_k + 1) * DIV_NUM) / (2 * DIV_DEN))) {
        if (mon_k >= 1 && mon_k <= 8) mon_bits |= (unsigned)level << (mon_k - 1);
        if (++mon_k == 10) { mon_t = -1; out.push_back((uint8_t)mon_bits); }
    }
}

static void step() {
    int level = 1;
    if (!runs.empty()) { level = runs.front().level; if (--runs.front().n == 0) runs.pop_front(); }
    dut->rx = level;
    dut->clk = 0; dut->eval();
    dut->clk = 1; dut->eval();
    cycles++;
    monitor(dut->tx);
}

static void rd(void *p, size_t n) {
    uint8_t *b = (uint8_t *)p;
    while (n) { ssize_t r = read(0, b, n); if (r <= 0) exit(0); b += r; n -= (size_t)r; }
}
static void wr(const void *p, size_t n) { if (fwrite(p, 1, n, stdout) != n) exit(1); }

int main(int argc, char **argv) {
    Verilated::commandArgs(argc, argv);
    dut = new Vtop;
    dut->rx = 1; dut->rst = 1;
    for (int i = 0; i < 4; i++) { dut->clk = 0; dut->eval(); dut->clk = 1; dut->eval(); }
    dut->rst = 0;
    for (;;) {
        uint8_t cmd; rd(&cmd, 1);
        if (cmd == 'W') {
            uint32_t n; rd(&n, 4);
            std::vector<uint8_t> d(n); if (n) rd(d.data(), n);
            for (uint8_t b : d) queue_byte(b);
        } else if (cmd == 'B') {
            uint32_t n; rd(&n, 4); push(0, n); bit(1); bit(1);
        } else if (cmd == 'R') {
            uint32_t want; uint64_t maxc; rd(&want, 4); rd(&maxc, 8);
            uint64_t end = cycles + maxc;
            while (cycles < end && out.size() < want) step();
            uint32_t n = (uint32_t)out.size();
            wr(&n, 4); if (n) wr(out.data(), n); wr(&cycles, 8); fflush(stdout);
            out.clear();
        } else if (cmd == 'Q') {
            break;
        } else {
            fprintf(stderr, "vboard: unknown command %d\n", cmd); return 2;
        }
    }
    delete dut;
    return 0;
}
"""


class VerilatorBackend:
    """The top level compiled by Verilator and driven by a C++ harness in a subprocess."""

    name = "verilator"

    def __init__(self, top, *, build_root=None, quiet=True):
        from ..hdl.export import to_verilog
        self.top = top
        verilog = to_verilog(top, name="top")
        d = Fraction(top.divisor)
        key = hashlib.sha256((verilog + _HARNESS + f"{d.numerator}/{d.denominator}").encode()).hexdigest()[:20]
        root = Path(build_root) if build_root else cache_dir()
        self.build_dir = root / key
        exe = self.build_dir / "obj_dir" / "Vtop"
        if not exe.exists():
            self._build(verilog, d, quiet)
        self.proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.cycles = 0

    def _build(self, verilog: str, d: Fraction, quiet: bool):
        verilator = shutil.which(os.environ.get("VERILATOR", "verilator"))
        if verilator is None:
            raise VirtualBoardError("verilator not found: install it (apt install verilator), set VERILATOR, "
                                    "or use the slow Python simulator with sim://?backend=amaranth")
        self.build_dir.parent.mkdir(parents=True, exist_ok=True)
        # Build in a scratch folder and move it into place, so an interrupted build is never reused.
        tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=self.build_dir.parent))
        try:
            (tmp / "top.v").write_text(verilog)
            (tmp / "harness.cpp").write_text(_HARNESS)
            cmd = [verilator, "--cc", "--exe", "--build", "top.v", "harness.cpp", "--top-module", "top",
                   "-Wno-fatal", "-Wno-lint", "-Wno-style", "-O3", "--x-assign", "fast", "--x-initial", "fast",
                   "-j", "2", "-CFLAGS", f"-O1 -DDIV_NUM={d.numerator}ULL -DDIV_DEN={d.denominator}ULL"]
            r = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
            if r.returncode or not (tmp / "obj_dir" / "Vtop").exists():
                tail = " | ".join((r.stderr or r.stdout).strip().splitlines()[-4:])
                raise VirtualBoardError(f"verilator build of the virtual board failed (exit {r.returncode}): {tail}")
            try:
                os.replace(tmp, self.build_dir)
            except OSError:
                if not (self.build_dir / "obj_dir" / "Vtop").exists():   # another process won the race
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def _send(self, data: bytes):
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise VirtualBoardError(f"the virtual board exited (code {self.proc.poll()})") from None

    def _recv(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.proc.stdout.read(n - len(buf))
            if not chunk:
                raise VirtualBoardError(f"the virtual board exited (code {self.proc.poll()})")
            buf += chunk
        return bytes(buf)

    def write(self, data: bytes):
        data = bytes(data)
        self._send(b"W" + struct.pack("<I", len(data)) + data)

    def hold_low(self, cycles: int):
        self._send(b"B" + struct.pack("<I", int(cycles)))

    def run(self, want: int, max_cycles: int) -> bytes:
        self._send(b"R" + struct.pack("<IQ", int(want), int(max_cycles)))
        (n,) = struct.unpack("<I", self._recv(4))
        data = self._recv(n)
        (self.cycles,) = struct.unpack("<Q", self._recv(8))
        return data

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(b"Q")
                self.proc.stdin.close()
            except (BrokenPipeError, ValueError):
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class VirtualBoard:
    """A simulated board with a serial-port-like interface.

    Parameters
    ----------
    netlist : Netlist
        The model the board runs.
    baud : int
        The line rate (only scales time: the simulated clock is ``baud * cycles_per_bit``).
    cycles_per_bit : int
        Clock cycles per UART bit (at least 4).
    backend : {"auto", "verilator", "amaranth"}
        ``auto``: Verilator when installed, else Amaranth's simulator.
    stages : int
        Logic levels per register stage of the classifier.
    frame_timeout_ms : float
        The board's frame timeout in board milliseconds.
    count_tables : (int, int, int)
        The popcount's block-RAM count tables (as a board build has them).
    """

    def __init__(self, netlist, *, baud: int = 115200, cycles_per_bit: int = DEFAULT_CYCLES_PER_BIT,
                 backend: str = "auto", stages: int = 1, frame_timeout_ms: float | None = None,
                 build_root=None, count_tables=(0, 12, 2)):
        from .. import protocol as P
        from ..hdl.top import ClassifierTop
        if backend not in ("auto", "verilator", "amaranth"):
            raise ValueError(f"backend must be 'auto', 'verilator' or 'amaranth', not {backend!r}")
        if isinstance(cycles_per_bit, bool) or not isinstance(cycles_per_bit, int) or cycles_per_bit < 4:
            raise ValueError(f"cycles_per_bit must be an integer >= 4, not {cycles_per_bit!r}")
        self.baud = int(baud)
        self.clk_hz = self.baud * cycles_per_bit
        ms = P.DEFAULT_FRAME_TIMEOUT_MS if frame_timeout_ms is None else frame_timeout_ms
        self.top = ClassifierTop(netlist, clk_hz=self.clk_hz, baud=self.baud, stages=stages,
                                 count_tables=tuple(count_tables),
                                 frame_timeout=P.frame_timeout_cycles(self.clk_hz, self.baud, ms))
        if backend == "auto":
            backend = "verilator" if have_verilator() else "amaranth"
        self.backend = (VerilatorBackend(self.top, build_root=build_root) if backend == "verilator"
                        else AmaranthBackend(self.top))
        self._rx = bytearray()

    @property
    def cycles(self) -> int:
        """Clock cycles simulated so far."""
        return self.backend.cycles

    @property
    def seconds(self) -> float:
        """Board time simulated so far."""
        return self.backend.cycles / self.clk_hz

    def write(self, data: bytes) -> int:
        self.backend.write(bytes(data))
        return len(data)

    def send_break(self, seconds: float):
        self.backend.hold_low(max(1, int(seconds * self.clk_hz)))

    def read(self, n: int, timeout: float) -> bytes:
        """Up to ``n`` bytes, simulating at most ``timeout`` seconds of board time for them."""
        if len(self._rx) < n:
            self._rx += self.backend.run(n - len(self._rx), max(1, int(timeout * self.clk_hz)))
        out, self._rx = bytes(self._rx[:n]), self._rx[n:]
        return out

    def read_available(self) -> bytes:
        """What has come out so far, without simulating further."""
        out, self._rx = bytes(self._rx), bytearray()
        return out

    def run(self, seconds: float) -> bytes:
        """Let ``seconds`` of board time pass; keep what comes out for :meth:`read`."""
        self._rx += self.backend.run(1 << 30, max(1, int(seconds * self.clk_hz)))
        return bytes(self._rx)

    def close(self):
        self.backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
