"""Serial client: stream images to a board (or the virtual board) and collect one class per image.

The client keeps a window of frames in flight (the board answers each frame
as soon as its last byte is in, so the line never idles), matches replies by
sequence number, and resends an image after an error reply or when its
reply is overdue.  After an overdue reply it first leaves the line idle for
twice the board's frame timeout, so that the board drops any half frame and
the resent frame starts clean.  Every deadline uses the port's clock:
wall time for hardware, board time for ``sim://`` ports.
"""
from __future__ import annotations

import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field

import numpy as np

from .. import protocol as P
from ..errors import LgnError

__all__ = ["HostError", "register_sim_handler", "open_port", "BoardClient", "StreamStats"]


class HostError(LgnError):
    """The port cannot be opened, or the board does not answer as it should."""


def register_sim_handler():
    """Make ``serial.serial_for_url`` understand ``sim://`` (see :mod:`lgn_fpga.host.protocol_sim`)."""
    import serial
    if "lgn_fpga.host" not in serial.protocol_handler_packages:
        serial.protocol_handler_packages.append("lgn_fpga.host")


def open_port(port: str, baud: int, *, model_path=None, timeout: float = 0.05):
    """Open a serial port or ``sim://`` URL (``model_path`` fills in a sim URL's missing ``model``)."""
    import serial
    register_sim_handler()
    if port.startswith("sim://") and model_path is not None and "model=" not in port:
        import urllib.parse
        sep = "&" if "?" in port else "?"
        port = f"{port}{sep}model={urllib.parse.quote(str(model_path))}"
    try:
        return serial.serial_for_url(port, baudrate=baud, timeout=timeout)
    except (serial.SerialException, ValueError) as e:
        hint = "" if port.startswith("sim://") else " (check --port: ls /dev/ttyUSB* /dev/ttyACM*; and permissions)"
        raise HostError(f"cannot open {port}: {e}{hint}") from None


@dataclass
class StreamStats:
    """What a stream run gave: a class per image (-1 where none came) and how hard it was to get."""

    predictions: np.ndarray
    frames_sent: int = 0
    retries: int = 0
    timeouts: int = 0
    error_replies: Counter = field(default_factory=Counter)   # code -> count
    stale_replies: int = 0
    failed: list = field(default_factory=list)
    seconds: float = 0.0
    board_seconds: float | None = None

    @property
    def answered(self) -> int:
        return int((self.predictions >= 0).sum())


class BoardClient:
    """The host side of :mod:`lgn_fpga.protocol`.

    Parameters
    ----------
    port : serial port
        An open pyserial port (``read`` must honour a short timeout).
    baud : int
        Its rate, for the reply deadlines.
    window : int
        Frames in flight at once (1..128).
    retries : int
        Resends per image before it counts as failed.
    reply_timeout : float
        Seconds allowed for a reply after its frame has left the host, on top of
        the line time (USB-serial bridges add tens of ms).
    frame_timeout_ms : float
        The board's frame timeout (the quiet time before a resend is twice that).
    """

    def __init__(self, port, baud: int, *, window: int = 8, retries: int = 3, reply_timeout: float = 0.25,
                 frame_timeout_ms: float = P.DEFAULT_FRAME_TIMEOUT_MS):
        if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= 128:
            raise ValueError(f"window must be an integer in 1..128, not {window!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a non-negative integer, not {retries!r}")
        self.port = port
        self.baud = int(baud)
        self.window = window
        self.retries = retries
        self.reply_timeout = float(reply_timeout)
        self.frame_timeout = frame_timeout_ms / 1000.0
        self.clock = getattr(port, "board_time", None) or time.monotonic
        self.parser = P.ReplyParser()
        self._seq = 0
        self._early = []      # replies read while waiting for something else

    def _line_time(self, nbytes: int) -> float:
        return 10.0 * nbytes / self.baud

    def _read_replies(self) -> list:
        data = self.port.read(P.REPLY_LEN)
        n = self.port.in_waiting
        if n:
            data += self.port.read(n)
        return self.parser.feed(data)

    def _quiet(self, seconds: float) -> list:
        """Leave the line idle for ``seconds`` (port clock), collecting replies meanwhile."""
        if hasattr(self.port, "idle"):
            self.port.idle(seconds)
            n = self.port.in_waiting
            return self.parser.feed(self.port.read(n)) if n else []
        out, end = [], self.clock() + seconds
        while self.clock() < end:
            out += self._read_replies()
        return out

    def info(self, attempts: int = 3) -> P.Info:
        """Ask the board who it is.

        Raises
        ------
        HostError
            When no INFO reply comes after ``attempts`` tries.
        """
        for _ in range(attempts):
            seq = self._next_seq(())
            self.port.write(P.encode_info_request(seq))
            end = self.clock() + self._line_time(P.request_len(0) + P.REPLY_LEN + P.INFO_LEN) + self.reply_timeout
            while self.clock() < end:
                for r in self._read_replies():
                    if r.seq == seq and r.code == P.CODE_INFO:
                        return r.info()
                    self._early.append(r)
            self._quiet(2 * self.frame_timeout)
        raise HostError(f"no answer from the board at {self.baud} baud: is it flashed (lgn-fpga flash), "
                        f"is --port the right one, and does --baud match the build?")

    def _next_seq(self, busy) -> int:
        for _ in range(256):
            s = self._seq
            self._seq = (self._seq + 1) & 0xFF
            if s not in busy:
                return s
        raise RuntimeError("no free sequence number")   # impossible with window <= 128

    def classify(self, images, progress=None) -> StreamStats:
        """Send every image; return a class per image (``-1`` for images that failed every retry).

        ``progress(done, total)`` is called as answers come in.
        """
        imgs = np.ascontiguousarray(images, dtype=np.uint8)
        n = len(imgs)
        stats = StreamStats(predictions=np.full(n, -1, np.int64))
        queue = deque(range(n))
        attempts = np.zeros(n, np.int64)
        inflight = OrderedDict()             # seq -> (image index, deadline)
        t_frame = self._line_time(P.request_len(imgs[0].size if n else 0))
        line_free = self.clock()
        t0, b0 = time.perf_counter(), self.clock()
        done = 0

        def retry(idx):
            if attempts[idx] <= self.retries:
                stats.retries += 1
                queue.appendleft(idx)
            else:
                stats.failed.append(int(idx))

        def handle(reps):
            nonlocal done
            for r in reps:
                if r.seq not in inflight:
                    stats.stale_replies += 1
                    continue
                idx, _ = inflight.pop(r.seq)
                if r.is_class:
                    stats.predictions[idx] = r.code
                    done += 1
                    if progress:
                        progress(done, n)
                else:
                    stats.error_replies[r.code] += 1
                    retry(idx)

        handle(self._early)
        self._early = []
        while queue or inflight:
            while queue and len(inflight) < self.window:
                idx = queue.popleft()
                seq = self._next_seq(inflight)
                self.port.write(P.encode_request(seq, imgs[idx]))
                line_free = max(line_free, self.clock()) + t_frame
                inflight[seq] = (idx, line_free + self.reply_timeout + self.frame_timeout)
                attempts[idx] += 1
                stats.frames_sent += 1
            handle(self._read_replies())
            now = self.clock()
            expired = [s for s, (_, d) in inflight.items() if d < now]
            if expired:
                for s in expired:
                    idx, _ = inflight.pop(s)
                    stats.timeouts += 1
                    retry(idx)
                handle(self._quiet(2 * self.frame_timeout))
                line_free = self.clock()
        stats.seconds = time.perf_counter() - t0
        if self.clock is not time.monotonic:
            stats.board_seconds = self.clock() - b0
        return stats
