"""pyserial handler for ``sim://`` URLs: a serial port whose far end is the virtual board.

``serial.serial_for_url("sim://?model=model.lgn")`` (after
:func:`lgn_fpga.host.client.register_sim_handler`) returns a port that
behaves like one wired to a board running ``model.lgn``, so the host code is
the same for hardware and simulation.  Query options::

    model=PATH            the .lgn netlist the board runs (required unless a board is given)
    backend=auto|verilator|amaranth
    cycles_per_bit=8      simulated clock cycles per UART bit
    stages=1              logic levels per register stage of the classifier
    board=NAME            build the classifier as that board's build does (its stages and count tables)
    frame_timeout_ms=10   the board's frame timeout (board time)
    drop=P flip=P cut=P garbage=P break=P seed=S
                          host-side line faults, each applied to a write with probability P:
                          lose one byte, flip one bit, stop the write halfway, add random bytes,
                          hold the line low (a break, one to three byte times) at a random point

Timeouts are in *board* time (see :mod:`lgn_fpga.sim.vboard`): ``timeout=0.1``
lets at most 0.1 s of the simulated board pass per read, and :meth:`Serial.board_time`
is the clock host code should use for its own deadlines.
"""
from __future__ import annotations

import urllib.parse

import numpy as np
from serial.serialutil import PortNotOpenError, SerialBase, SerialException
from .. import protocol as P

__all__ = ["Serial"]

_FAULTS = ("drop", "flip", "cut", "garbage", "break")


class Serial(SerialBase):
    """A pyserial port connected to a :class:`~lgn_fpga.sim.vboard.VirtualBoard`."""

    def __init__(self, *args, board=None, **kwargs):
        self.board = board
        self._own_board = board is None
        self.faults = {}
        self.fault_log = []
        self.line_log = bytearray()   # every byte put on the line since open, faults included (only with faults)
        self._rng = np.random.default_rng(0)
        self._opts = {}
        super().__init__(*args, **kwargs)

    # -- pyserial plumbing ---------------------------------------------------------------
    def open(self):
        if self.is_open:
            raise SerialException("Port is already open.")
        if self._port is None:
            raise SerialException("Port must be configured before it can be used.")
        self.from_url(self.port)
        if self.board is None:
            from ..netlist.format import load
            from ..sim.vboard import VirtualBoard
            if "model" not in self._opts:
                raise SerialException("sim:// needs a model: sim://?model=PATH.lgn (lgn-fpga stream adds --model)")
            net = load(self._opts["model"])
            stages = int(self._opts["stages"]) if "stages" in self._opts else None
            tables = (0, 12, 2)
            if self._opts.get("board"):
                from ..fpga.boards import load_board
                stages, tables = load_board(self._opts["board"]).build_options(stages)
            stages = 1 if stages is None else stages
            self.board = VirtualBoard(
                net, count_tables=tables, baud=self._baudrate, backend=self._opts.get("backend", "auto"),
                cycles_per_bit=int(self._opts.get("cycles_per_bit", 8)), stages=stages,
                frame_timeout_ms=float(self._opts["frame_timeout_ms"]) if "frame_timeout_ms" in self._opts else None,
                wire=self._opts.get("wire", P.DEFAULT_WIRE))
        self.is_open = True

    def close(self):
        if self.is_open and self.board is not None and self._own_board:
            self.board.close()
            self.board = None
        self.is_open = False

    def _reconfigure_port(self):
        pass

    def from_url(self, url):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "sim":
            raise SerialException(f"expected sim://?model=PATH..., not {url!r}")
        opts = {k: v[-1] for k, v in urllib.parse.parse_qs(parts.query, keep_blank_values=True).items()}
        if parts.netloc or parts.path.strip("/"):
            opts.setdefault("model", (parts.netloc + parts.path) if parts.netloc else parts.path)
        known = {"model", "backend", "board", "cycles_per_bit", "stages", "frame_timeout_ms", "seed", "wire",
                 *_FAULTS}
        bad = set(opts) - known
        if bad:
            raise SerialException(f"sim:// option {sorted(bad)[0]!r} unknown; known: {', '.join(sorted(known))}")
        if opts.get("wire", P.DEFAULT_WIRE) not in P.WIRE_FORMATS:
            raise SerialException(f"sim:// wire={opts['wire']!r} unknown; known: {', '.join(P.WIRE_FORMATS)}")
        self._opts = opts
        self.faults = {k: float(opts[k]) for k in _FAULTS if k in opts}
        self._rng = np.random.default_rng(int(opts.get("seed", 0)))

    @property
    def in_waiting(self) -> int:
        if not self.is_open:
            raise PortNotOpenError()
        return len(self.board._rx)

    def read(self, size=1) -> bytes:
        if not self.is_open:
            raise PortNotOpenError()
        timeout = 3600.0 if self._timeout is None else self._timeout
        return self.board.read(size, timeout)

    def write(self, data) -> int:
        if not self.is_open:
            raise PortNotOpenError()
        data = bytes(data)
        for piece in self._inject(data):
            if isinstance(piece, float):
                self.board.send_break(piece)
            else:
                self.board.write(piece)
                if self.faults:
                    self.line_log += piece
        return len(data)

    def flush(self):
        pass

    def reset_input_buffer(self):
        if not self.is_open:
            raise PortNotOpenError()
        self.board.read_available()

    def reset_output_buffer(self):
        pass

    def send_break(self, duration=0.25):
        if not self.is_open:
            raise PortNotOpenError()
        self.board.send_break(duration)

    def _update_break_state(self):
        pass

    def _update_rts_state(self):
        pass

    def _update_dtr_state(self):
        pass

    # -- extras --------------------------------------------------------------------------------
    def board_time(self) -> float:
        """Seconds of board time simulated so far (the clock for host-side deadlines)."""
        return self.board.seconds

    def idle(self, seconds: float):
        """Let ``seconds`` of board time pass with the line idle (replies are kept for reading)."""
        self.board.run(seconds)

    def _inject(self, data: bytes) -> list:
        """Apply the URL's line faults to one write (logged in ``fault_log``).

        Returns what goes on the line: byte strings, and a float (seconds) for a break between them.
        """
        if not self.faults or not data:
            return [data]
        d = bytearray(data)
        r = self._rng
        brk = None
        for kind in _FAULTS:
            p = self.faults.get(kind, 0.0)
            if p <= 0 or r.random() >= p or not d:
                continue
            if kind == "drop":
                del d[int(r.integers(len(d)))]
            elif kind == "flip":
                d[int(r.integers(len(d)))] ^= 1 << int(r.integers(8))
            elif kind == "cut":
                d = d[:int(r.integers(len(d)))]
            elif kind == "garbage":
                at = int(r.integers(len(d) + 1))
                d[at:at] = bytes(r.integers(0, 256, int(r.integers(1, 8)), np.uint8))
            elif kind == "break":
                brk = (int(r.integers(len(d) + 1)), float(r.uniform(1, 3)) * 10 / self._baudrate)
            self.fault_log.append(kind)
        if brk is None:
            return [bytes(d)]
        at, seconds = brk
        return [bytes(d[:at]), seconds, bytes(d[at:])]
