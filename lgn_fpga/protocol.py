"""The UART frame format: the single source of truth for the board's framer and the host.

Both directions are byte streams, 8 data bits, no parity, 1 stop bit, LSB first.
Every field wider than a byte is big-endian.  The full description, with
examples, is in ``docs/protocol.md``; this module is what both sides execute:
the hardware framer (:mod:`lgn_fpga.hdl.framing`) takes its constants and its
CRC from here, the host (:mod:`lgn_fpga.host`) its encoder and decoder.

Request (host -> board)::

    A5 5A | SEQ | IMAGE[N] | CRC16        classify one image (N: payload_bytes(encoding, wire))
    A5 3C | SEQ | CRC16                   ask for the board's identity (INFO)

The image travels in one of two wire formats (:data:`WIRE_FORMATS`), chosen when the board is built and
announced in its INFO answer:

* ``bytes``: the ``C*H*W`` pixel bytes in C, H, W order;
* ``levels``: each pixel byte as its *level*, the number of its channel's thresholds it exceeds
  (``0..T``, ``b = T.bit_length()`` bits), packed LSB first: value ``v`` in bits ``[v*b, v*b+b)`` of the
  payload read as one little-endian bit string, the last byte padded with 0.  Thermometer bit ``j`` of a
  value is ``level > j``, exactly ``pixel > threshold[j]``; 3 thresholds take 2 bits a value (4x fewer
  bytes than ``bytes``), 1 threshold 1 bit (8x).

Reply (board -> host)::

    5A | SEQ | CODE | CRC16               CODE < 0x80: the class; >= 0xE0: an error
    5A | SEQ | 80 | INFO[19] | CRC16      answer to an INFO request

``CRC16`` is CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, no
reflection, no final XOR) over every byte from ``SEQ`` up to the CRC itself.
Because the CRC is appended big-endian, running the same CRC over ``SEQ`` ...
``CRC16`` gives 0: that is the hardware's whole check.

Rules the board keeps (and the tests check):

* every frame with a good CRC gets exactly one reply;
* a frame whose CRC is wrong gets ``ERR_CRC``; one cut by a gap longer than the
  frame timeout gets ``ERR_TIMEOUT`` (or nothing when the gap came before
  ``SEQ``); a bad stop bit or a line held low inside a frame gets ``ERR_LINE``;
* bytes outside frames are ignored, so the board resynchronizes on the next
  ``A5 5A``.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

__all__ = [
    "SYNC0", "SYNC_CLASSIFY", "SYNC_INFO", "REPLY_SYNC", "CODE_INFO", "ERR_CRC", "ERR_TIMEOUT", "ERR_LINE",
    "ERR_BUSY", "ERROR_NAMES", "MAX_CLASSES", "PROTOCOL_VERSION", "INFO_LEN", "REPLY_LEN", "CRC_POLY",
    "CRC_INIT", "crc16", "crc16_update", "encode_request", "encode_info_request", "Info", "Reply",
    "WIRE_FORMATS", "DEFAULT_WIRE", "payload_bytes", "encode_payloads",
    "ReplyParser", "FrameDecoder", "encode_reply", "request_len", "frame_timeout_cycles", "DEFAULT_FRAME_TIMEOUT_MS", "describe_code",
]

PROTOCOL_VERSION = 2    # 2: INFO carries the wire format (level bits); the `levels` format

WIRE_FORMATS = ("bytes", "levels")
DEFAULT_WIRE = "levels"   # what `lgn-fpga build` makes: fewer bytes per image at every threshold count

SYNC0 = 0xA5            # first byte of every request
SYNC_CLASSIFY = 0x5A    # second byte: an image follows
SYNC_INFO = 0x3C        # second byte: no payload, the board answers with its identity
REPLY_SYNC = 0x5A       # first byte of every reply

CODE_INFO = 0x80        # reply code of an INFO answer (INFO_LEN payload bytes follow)
ERR_CRC = 0xE1          # the frame's CRC did not match
ERR_TIMEOUT = 0xE2      # the frame stopped for longer than the frame timeout
ERR_LINE = 0xE3         # a byte inside the frame had a bad stop bit (noise, break, line held low)
ERR_BUSY = 0xE4         # the previous image had not entered the classifier yet (never in normal use)
ERROR_NAMES = {ERR_CRC: "bad CRC", ERR_TIMEOUT: "timeout", ERR_LINE: "line error", ERR_BUSY: "busy"}

MAX_CLASSES = 0x80      # class codes are 0x00..0x7F

CRC_POLY = 0x1021
CRC_INIT = 0xFFFF

REPLY_LEN = 5           # REPLY_SYNC, SEQ, CODE, CRC16

# INFO payload: version, n_classes, image (payload) bytes, latency (cycles), clock (Hz), first 8 bytes of the
# netlist's content hash, level bits (0: the `bytes` wire format).  Enough for the host to refuse to stream
# to a board with another model, and to send the images as the board reads them.
_INFO_STRUCT = struct.Struct(">BBHHI8sB")
INFO_LEN = _INFO_STRUCT.size

# Gaps inside a frame longer than this abort it (ERR_TIMEOUT).  10 ms is far above what a USB-serial
# bridge leaves between the bytes of one write, and short next to the host's retry timeout.
DEFAULT_FRAME_TIMEOUT_MS = 10.0


def crc16_update(crc: int, byte: int) -> int:
    """One byte of CRC-16/CCITT-FALSE, bit by bit (the hardware unrolls exactly this loop)."""
    crc ^= (byte & 0xFF) << 8
    for _ in range(8):
        crc = ((crc << 1) ^ CRC_POLY) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


_TABLE = [0] * 256
for _b in range(256):
    _TABLE[_b] = crc16_update(0, _b)


def crc16(data: bytes, crc: int = CRC_INIT) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (``crc16(b"123456789") == 0x29B1``)."""
    for b in bytes(data):
        crc = ((crc << 8) & 0xFFFF) ^ _TABLE[((crc >> 8) ^ b) & 0xFF]
    return crc


def _with_crc(body: bytes) -> bytes:
    return body + crc16(body).to_bytes(2, "big")


def _check_wire(wire: str) -> str:
    if wire not in WIRE_FORMATS:
        raise ValueError(f"wire format must be one of {', '.join(WIRE_FORMATS)}, not {wire!r}")
    return wire


def payload_bytes(encoding, wire: str) -> int:
    """Bytes of one image on the wire for ``encoding`` (a ThermometerEncoding) in format ``wire``."""
    return encoding.image_bytes if _check_wire(wire) == "bytes" else encoding.level_bytes


def encode_payloads(images, encoding, wire: str) -> np.ndarray:
    """uint8 images -> uint8 ``[N, payload_bytes]``: what ``encode_request`` sends for each."""
    return encoding.flatten(images) if _check_wire(wire) == "bytes" else encoding.pack_levels(images)


def request_len(image_bytes: int) -> int:
    """Bytes on the wire for one classify request."""
    return 2 + 1 + image_bytes + 2


def link_images_per_s(baud: int, image_bytes: int) -> float:
    """The most images per second a UART link can carry: ``baud / 10 / request_len`` (8N1: 10 bits a byte).

    Replies are shorter than requests and travel the other way, so the request direction is the limit.
    """
    return baud / 10 / request_len(image_bytes)


def encode_request(seq: int, image) -> bytes:
    """A classify frame for one uint8 image (any shape; flattened in C order, i.e. C*H*W)."""
    if not isinstance(seq, (int, np.integer)) or not 0 <= int(seq) <= 255:
        raise ValueError(f"seq must be an integer in 0..255, not {seq!r}")
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise TypeError(f"image must be uint8, not {img.dtype}")
    return bytes([SYNC0, SYNC_CLASSIFY]) + _with_crc(bytes([int(seq)]) + img.tobytes(order="C"))


def encode_info_request(seq: int) -> bytes:
    """An INFO request."""
    if not isinstance(seq, (int, np.integer)) or not 0 <= int(seq) <= 255:
        raise ValueError(f"seq must be an integer in 0..255, not {seq!r}")
    return bytes([SYNC0, SYNC_INFO]) + _with_crc(bytes([int(seq)]))


def encode_reply(seq: int, code: int, payload: bytes = b"") -> bytes:
    """A reply as the board sends it (used by tests and the cocotb bench's expectations)."""
    return bytes([REPLY_SYNC]) + _with_crc(bytes([seq & 0xFF, code & 0xFF]) + bytes(payload))


def frame_timeout_cycles(clk_hz: float, baud: int, ms: float = DEFAULT_FRAME_TIMEOUT_MS) -> int:
    """Board clock cycles of silence that abort a frame: ``ms``, but never under 16 byte times."""
    byte_cycles = 10 * clk_hz / baud
    return int(max(ms * 1e-3 * clk_hz, 16 * byte_cycles))


def describe_code(code: int) -> str:
    if code < MAX_CLASSES:
        return f"class {code}"
    if code == CODE_INFO:
        return "info"
    return ERROR_NAMES.get(code, f"unknown code 0x{code:02X}")


@dataclass(frozen=True)
class Info:
    """What a board says about itself in an INFO reply."""

    version: int
    n_classes: int
    image_bytes: int
    latency: int
    clock_hz: int
    model_hash: bytes   # first 8 bytes of Netlist.content_hash()
    level_bits: int = 0  # 0: the `bytes` wire format; else `levels` of this many bits

    @property
    def wire(self) -> str:
        return "bytes" if self.level_bits == 0 else "levels"

    def encode(self) -> bytes:
        return _INFO_STRUCT.pack(self.version, self.n_classes, self.image_bytes, self.latency,
                                 self.clock_hz, self.model_hash, self.level_bits)

    @classmethod
    def decode(cls, payload: bytes) -> "Info":
        v, k, n, lat, clk, h, b = _INFO_STRUCT.unpack(payload)
        return cls(v, k, n, lat, clk, h, b)

    @classmethod
    def for_netlist(cls, net, latency: int, clock_hz: int, wire: str = "bytes") -> "Info":
        return cls(PROTOCOL_VERSION, net.n_classes, payload_bytes(net.encoding, wire), min(int(latency), 0xFFFF),
                   int(clock_hz), bytes.fromhex(net.content_hash())[:8],
                   0 if wire == "bytes" else net.encoding.level_bits)


@dataclass(frozen=True)
class Reply:
    """One decoded reply: ``code`` is a class (< 0x80), ``CODE_INFO`` or an error."""

    seq: int
    code: int
    payload: bytes = b""

    @property
    def is_class(self) -> bool:
        return self.code < MAX_CLASSES

    @property
    def is_error(self) -> bool:
        return self.code >= 0xE0

    def info(self) -> Info:
        return Info.decode(self.payload)


class ReplyParser:
    """Incremental decoder of the board's reply stream.

    Feed it whatever bytes arrived; it returns the complete replies with a good
    CRC and counts the bytes it had to skip (``skipped``) and the replies with a
    bad CRC (``bad``), resynchronizing on the next ``REPLY_SYNC``.
    """

    def __init__(self):
        self._buf = bytearray()
        self.skipped = 0
        self.bad = 0

    def feed(self, data: bytes) -> list:
        self._buf += data
        out = []
        while True:
            i = self._buf.find(bytes([REPLY_SYNC]))
            if i < 0:
                self.skipped += len(self._buf)
                self._buf.clear()
                return out
            if i:
                self.skipped += i
                del self._buf[:i]
            if len(self._buf) < 3:
                return out
            code = self._buf[2]
            n = REPLY_LEN + (INFO_LEN if code == CODE_INFO else 0)
            if len(self._buf) < n:
                return out
            if crc16(bytes(self._buf[1:n])) == 0:
                out.append(Reply(self._buf[1], code, bytes(self._buf[3:n - 2])))
                del self._buf[:n]
            else:
                # Not a reply after all (or a corrupted one): skip this sync byte and look again.
                self.bad += 1
                self.skipped += 1
                del self._buf[:1]


class FrameDecoder:
    """The board's framer as a Python model: what the hardware must do with any byte stream.

    ``feed(byte, err=False, gap=0)`` takes one received byte (``err``: its stop
    bit was low) that arrived ``gap`` clock cycles after the previous one and
    returns the events it completes: ``("image", seq, data)``, ``("info", seq)``
    or ``("error", seq, code)``.  A gap longer than ``timeout + 1`` cycles
    aborts an open frame first (the hardware counts ``timeout`` idle cycles and
    acts on the next).  ``idle(cycles)`` lets time pass without a byte.
    The model assumes the board takes every image at once (no ``ERR_BUSY``)
    and that replies never queue up (no dropped errors).
    """

    def __init__(self, image_bytes: int, timeout: int):
        self.n = image_bytes
        self.timeout = timeout
        self.state = "HUNT"
        self.seq = 0
        self.info = False
        self.buf = bytearray()
        self.crc = CRC_INIT
        self.crc_count = 0

    def _abort(self, code, out):
        if code is not None:
            out.append(("error", self.seq, code))
        self.state = "HUNT"

    def idle(self, cycles: int) -> list:
        out = []
        if cycles > self.timeout + 1 and self.state != "HUNT":
            self._abort(ERR_TIMEOUT if self.state in ("DATA", "CRC") else None, out)
        return out

    def feed(self, byte: int, err: bool = False, gap: int = 0) -> list:
        out = self.idle(gap)
        s = self.state
        if s == "HUNT":
            if not err and byte == SYNC0:
                self.state = "SYNC1"
        elif s == "SYNC1":
            if err:
                self.state = "HUNT"
            elif byte in (SYNC_CLASSIFY, SYNC_INFO):
                self.info = byte == SYNC_INFO
                self.state = "SEQ"
            elif byte != SYNC0:
                self.state = "HUNT"
        elif s == "SEQ":
            if err:
                self.state = "HUNT"
            else:
                self.seq, self.crc, self.crc_count = byte, crc16_update(CRC_INIT, byte), 0
                self.buf = bytearray()
                self.state = "CRC" if self.info else "DATA"
        elif s == "DATA":
            if err:
                self._abort(ERR_LINE, out)
            else:
                self.buf.append(byte)
                self.crc = crc16_update(self.crc, byte)
                if len(self.buf) == self.n:
                    self.state = "CRC"
        elif s == "CRC":
            if err:
                self._abort(ERR_LINE, out)
            else:
                self.crc = crc16_update(self.crc, byte)
                self.crc_count += 1
                if self.crc_count == 2:
                    if self.crc:
                        self._abort(ERR_CRC, out)
                    else:
                        out.append(("info", self.seq) if self.info else ("image", self.seq, bytes(self.buf)))
                        self.state = "HUNT"
        return out
