"""Serial client: stream images to a board (or the virtual board) and collect one class per image.

The client keeps a window of frames in flight (the board answers each frame
as soon as its last byte is in, so the line never idles), matches replies by
sequence number, and resends an image after an error reply or when its
reply is overdue.  A reply is overdue once the line time of every frame
queued before it and of itself (at the port's baud rate), its reply's line
time, ``reply_timeout`` and the board's frame timeout have passed.  After an
overdue reply the client stops sending until every queued byte has left and
the line has then been idle for twice the frame timeout, so the board drops
any half frame and the resent frame starts clean.

A sequence number is never reused while a reply to it can still arrive: a
number given up after a timeout or an error reply (which may carry a number
corrupted on the way) rests until its reply deadline plus ``reply_timeout``
and the frame timeout have passed, and numbers are reused least recently
retired first.  A reply for a number not in flight is stale: counted,
never matched.  Every deadline uses the port's clock: wall time for
hardware, board time for ``sim://`` ports.
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
    duplicates: int = 0       # class replies for an image that had its answer already (never: a bug if not 0)
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
        if not (isinstance(baud, (int, float)) and not isinstance(baud, bool) and baud >= 1):
            raise ValueError(f"baud must be a positive number, not {baud!r}")
        if not reply_timeout > 0 or not frame_timeout_ms > 0:
            raise ValueError(f"reply_timeout and frame_timeout_ms must be positive, not "
                             f"{reply_timeout!r} and {frame_timeout_ms!r}")
        self.port = port
        self.baud = int(baud)
        self.window = window
        self.retries = retries
        self.reply_timeout = float(reply_timeout)
        self.frame_timeout = frame_timeout_ms / 1000.0
        self.clock = getattr(port, "board_time", None) or time.monotonic
        self.parser = P.ReplyParser()
        # Sequence numbers not in flight, least recently retired first: seq -> board time it may be reused.
        self._free = OrderedDict((s, float("-inf")) for s in range(256))
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
            seq = self._take_seq()
            self.port.write(P.encode_info_request(seq))
            end = self.clock() + self._line_time(P.request_len(0) + P.REPLY_LEN + P.INFO_LEN) + self.reply_timeout
            while self.clock() < end:
                for r in self._read_replies():
                    if r.seq == seq and r.code == P.CODE_INFO:
                        self._retire(seq, self.clock())
                        return r.info()
                    self._early.append(r)
            self._retire(seq, end + self._rest)
            self._quiet(2 * self.frame_timeout)
        raise HostError(f"no answer from the board at {self.baud} baud: is it flashed (lgn-fpga flash), "
                        f"is --port the right one, and does --baud match the build?")

    @property
    def _rest(self) -> float:
        """How long a given-up sequence number rests after its reply deadline before it is reused."""
        return self.reply_timeout + self.frame_timeout

    def _retire(self, seq: int, reusable_at: float):
        self._free[seq] = reusable_at
        self._free.move_to_end(seq)

    def _take_seq(self):
        """The least recently retired sequence number whose rest is over; waits (reading replies) if none is."""
        while True:
            now = self.clock()
            for s, t in self._free.items():
                if t <= now:
                    del self._free[s]
                    return s
            # Every free number may still get a late reply (never with window <= 128 and good deadlines).
            soonest = min(self._free.values())
            self._early += self._quiet(max(soonest - now, 1e-4))

    def classify(self, images, progress=None) -> StreamStats:
        """Send every image; return a class per image (``-1`` for images that failed every retry).

        ``images`` are uint8 payloads as the board reads them: pixel bytes for the ``bytes`` wire format,
        :func:`lgn_fpga.protocol.encode_payloads` for either.  ``progress(done, total)`` is called as
        answers come in.
        """
        imgs = np.ascontiguousarray(images, dtype=np.uint8)
        n = len(imgs)
        stats = StreamStats(predictions=np.full(n, -1, np.int64))
        queue = deque(range(n))
        attempts = np.zeros(n, np.int64)
        inflight = OrderedDict()             # seq -> (image index, reply deadline)
        t_frame = self._line_time(P.request_len(imgs[0].size if n else 0))
        t_reply = self._line_time(P.REPLY_LEN)
        line_free = self.clock()             # when the last byte written so far has left the host
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
                idx, deadline = inflight.pop(r.seq)
                if r.is_class:
                    self._retire(r.seq, self.clock())
                    if stats.predictions[idx] >= 0:
                        stats.duplicates += 1
                        continue
                    stats.predictions[idx] = r.code
                    done += 1
                    if progress:
                        progress(done, n)
                else:
                    # The error may carry a corrupted SEQ: the frame that really has it may still be answered.
                    self._retire(r.seq, max(deadline, self.clock()) + self._rest)
                    stats.error_replies[r.code] += 1
                    retry(idx)

        handle(self._early)
        self._early = []
        while queue or inflight:
            while queue and len(inflight) < self.window:
                seq = self._take_seq()
                handle(self._early)
                self._early = []
                idx = queue.popleft()
                self.port.write(P.encode_request(seq, imgs[idx]))
                line_free = max(line_free, self.clock()) + t_frame
                inflight[seq] = (idx, line_free + t_reply + self.reply_timeout + self.frame_timeout)
                attempts[idx] += 1
                stats.frames_sent += 1
            handle(self._read_replies())
            now = self.clock()
            expired = [s for s, (_, d) in inflight.items() if d < now]
            if expired:
                for s in expired:
                    idx, _ = inflight.pop(s)
                    self._retire(s, now + self._rest)
                    stats.timeouts += 1
                    retry(idx)
                # Let every queued byte leave, then keep the line idle so the board drops a half frame.
                handle(self._quiet(max(0.0, line_free - now) + 2 * self.frame_timeout))
                line_free = max(line_free, self.clock())
        stats.seconds = time.perf_counter() - t0
        if self.clock is not time.monotonic:
            stats.board_seconds = self.clock() - b0
        return stats
