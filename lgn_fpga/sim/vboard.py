"""The virtual board: a simulated :class:`~lgn_fpga.hdl.top.ClassifierTop` behind its UART pins.

The host talks to it exactly as to a board (``lgn-fpga stream --port sim://``,
see :mod:`lgn_fpga.host.protocol_sim`): bytes go in as bit-level waveforms on
``rx``, replies are decoded from ``tx``, so the whole path (UART, framing,
frame buffer, binarizer, classifier, replies) is the hardware's own.

Two backends run the same design:

* ``verilator``: the top level as Verilog, compiled once per model (cached under
  ``$LGN_FPGA_CACHE/vboard``) with ``vboard_harness.cpp`` by the one Verilator
  builder (:func:`lgn_fpga.sim.verilator.build`); millions of cycles/s.

Both drive the pins with the one host-side line model, :mod:`lgn_fpga.sim.uart_line`.
* ``amaranth``: Amaranth's Python simulator; needs nothing else, slow.

Simulated time advances only while the host waits for replies (:meth:`VirtualBoard.read`),
so a frame written in several pieces arrives without gaps, while a frame the
host leaves unfinished times out on the board exactly as on hardware.
Read timeouts are in *board* time: ``read(5, 0.1)`` simulates at most 0.1 s
of the board's clock, however long that takes.
"""
from __future__ import annotations

import hashlib
import struct
import subprocess
from pathlib import Path

from ..ccompile import cache_root
from ..errors import LgnError
from .uart_line import LineDriver, LineMonitor

__all__ = ["AmaranthBackend", "VerilatorBackend", "VirtualBoard",
           "VirtualBoardError", "DEFAULT_CYCLES_PER_BIT", "cache_dir", "have_verilator"]

# Cycles per bit of the simulated board: few enough to keep simulation fast, enough for the receiver's
# mid-bit sampling.  The baud rate itself only scales time, so any rate behaves the same.
DEFAULT_CYCLES_PER_BIT = 8


class VirtualBoardError(LgnError):
    """The virtual board could not be built or stopped working."""


def cache_dir() -> Path:
    """``$LGN_FPGA_CACHE/vboard``, else ``~/.cache/lgn-fpga/vboard`` (:func:`lgn_fpga.ccompile.cache_root`)."""
    return cache_root("vboard")


def have_verilator() -> bool:
    from .verilator import verilator_path
    return verilator_path() is not None


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


class VerilatorBackend:
    """The top level compiled by Verilator and driven by a C++ harness in a subprocess."""

    name = "verilator"

    def __init__(self, top, *, build_root=None, quiet=True):
        from ..fileio import atomic_write_text
        from ..hdl.export import to_verilog
        from . import verilator as V
        self.top = top
        verilog = to_verilog(top, name="top")
        key = hashlib.sha256(verilog.encode()).hexdigest()[:20]
        root = Path(build_root) if build_root else cache_dir()
        vfile = root / f"{key}.v"
        if not vfile.exists():
            atomic_write_text(vfile, verilog)
        if V.verilator_path() is None:
            raise VirtualBoardError("verilator (4.210 or later) not found: install it (apt install verilator), set "
                                    "VERILATOR, or use the slow Python simulator with sim://?backend=amaranth")
        try:
            exe = V.build(vfile, "top", root / key, harness=V.VBOARD_HARNESS, opt="-O1")
        except V.SimError as e:
            raise VirtualBoardError(f"the virtual board's {e}") from None
        self.build_dir = root / key
        self.driver = LineDriver(top.divisor)
        self.proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._send(b"M" + struct.pack("<10I", *LineMonitor(top.divisor).offsets))
        self.cycles = 0

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

    def _play(self):
        runs = self.driver.take_runs()
        self._send(b"L" + struct.pack("<I", len(runs)) + b"".join(struct.pack("<BI", lv, n) for lv, n in runs))

    def write(self, data: bytes):
        self.driver.queue(bytes(data))
        self._play()

    def hold_low(self, cycles: int):
        self.driver.hold_low(cycles)
        self._play()

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
    wire : {"bytes", "levels"}
        The wire format the board reads (:mod:`lgn_fpga.protocol`).
    """

    def __init__(self, netlist, *, baud: int = 115200, cycles_per_bit: int = DEFAULT_CYCLES_PER_BIT,
                 backend: str = "auto", stages: int = 1, frame_timeout_ms: float | None = None,
                 build_root=None, count_tables=(0, 12, 2), wire: str = "bytes"):
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
                                 count_tables=tuple(count_tables), wire=wire,
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
