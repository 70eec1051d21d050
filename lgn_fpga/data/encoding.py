"""Input encoding: pixel bytes -> thermometer bits, the single source of the thresholds.

A pixel byte ``p`` (0..255) of channel ``c`` sets bit ``j`` of its thermometer
code when ``p > thresholds[c][j]``.  Thresholds are integers on the 0..255
scale so that hardware compares bytes exactly as software does.

Bit order (shared by training, netlist, evaluator and hardware): the bit for
channel ``c``, threshold ``j``, row ``y``, column ``x`` has index
``((c * T + j) * H + y) * W + x`` where ``T`` is the number of thresholds per
channel.  This module is torch-free (torch is imported lazily where used).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["ThermometerEncoding", "uniform_thresholds", "bits_read"]


def bits_read(constant, width: int = 8):
    """Bits of a ``width``-bit field that ``field > constant`` depends on (an int or an integer array):
    ``field > c`` is ``field >= c+1``, which reads the field down to the lowest set bit of ``c+1``."""
    t1 = np.asarray(constant, dtype=np.int64) + 1
    tz = np.zeros_like(t1)
    for k in range(width):
        tz += (((t1 >> k) & 1) == 0) & (tz == k)        # trailing zeros of c+1 (c+1 < 2**width)
    r = width - tz
    return int(r) if r.ndim == 0 else r


def uniform_thresholds(k: int) -> tuple[int, ...]:
    """``k`` evenly spaced thresholds: bit j is ``p > 256*(j+1)/(k+1) - 1``.

    ``k=1`` gives ``(127,)`` (p >= 128), ``k=3`` gives ``(63, 127, 191)``.
    """
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 255:
        raise ValueError(f"number of thresholds must be an integer in 1..255, not {k!r}")
    return tuple(int(256 * (j + 1) // (k + 1)) - 1 for j in range(k))


@dataclass(frozen=True)
class ThermometerEncoding:
    """Thermometer code of an image with ``shape = (C, H, W)``.

    Parameters
    ----------
    shape : (int, int, int)
        Channels, height, width of the uint8 images.
    thresholds : tuple of tuple of int
        ``thresholds[c]`` are the thresholds of channel ``c``, each in 0..254,
        strictly increasing; every channel has the same count ``T``.

    Raises
    ------
    ValueError
        If the shape or a threshold is out of range.
    """

    shape: tuple[int, int, int]
    thresholds: tuple[tuple[int, ...], ...]

    def __post_init__(self):
        shape = tuple(int(s) for s in self.shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"image shape must be (channels, height, width) > 0, not {self.shape!r}")
        th = tuple(tuple(int(t) for t in ch) for ch in self.thresholds)
        if len(th) != shape[0]:
            raise ValueError(f"need one threshold list per channel ({shape[0]}), got {len(th)}")
        counts = {len(ch) for ch in th}
        if len(counts) != 1 or 0 in counts:
            raise ValueError(f"every channel needs the same, non-zero number of thresholds, got {sorted(counts)}")
        for ch in th:
            if any(not 0 <= t <= 254 for t in ch) or list(ch) != sorted(set(ch)):
                raise ValueError(f"thresholds must be strictly increasing integers in 0..254, not {list(ch)}")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "thresholds", th)

    @classmethod
    def make(cls, shape: Sequence[int], thresholds) -> "ThermometerEncoding":
        """Build from a count (uniform), one list for every channel, or one list per channel."""
        C = int(shape[0])
        if isinstance(thresholds, int) and not isinstance(thresholds, bool):
            ch = uniform_thresholds(thresholds)
            return cls(tuple(shape), (ch,) * C)
        if isinstance(thresholds, (list, tuple)) and thresholds and all(
                isinstance(t, int) and not isinstance(t, bool) for t in thresholds):
            return cls(tuple(shape), (tuple(thresholds),) * C)
        if isinstance(thresholds, (list, tuple)) and all(isinstance(t, (list, tuple)) for t in thresholds):
            return cls(tuple(shape), tuple(tuple(t) for t in thresholds))
        raise ValueError(f"thresholds must be a count, a list of integers or a list per channel, not {thresholds!r}")

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def levels(self) -> int:
        """Thresholds per channel (``T``)."""
        return len(self.thresholds[0])

    @property
    def pixels(self) -> int:
        """Pixels per channel (``H*W``)."""
        return self.shape[1] * self.shape[2]

    @property
    def n_bits(self) -> int:
        return self.channels * self.levels * self.pixels

    @property
    def image_bytes(self) -> int:
        return self.channels * self.pixels

    def threshold_array(self) -> np.ndarray:
        """Thresholds as uint8 ``[C, T]``."""
        return np.array(self.thresholds, dtype=np.uint8)

    def bit_sources(self) -> tuple[np.ndarray, np.ndarray]:
        """For every bit, the index of its byte in the flattened ``C*H*W`` image and its threshold.

        Hardware builds its comparators from this; software encodes with it.
        """
        src, j = self.bit_ranks()
        return src, self.threshold_array()[src // self.pixels, j]

    def bit_ranks(self) -> tuple[np.ndarray, np.ndarray]:
        """For every bit, the index of its value in the flattened ``C*H*W`` image and its threshold's rank
        ``j``: the bit is ``level > j`` where ``level`` counts the thresholds the value exceeds."""
        C, T, P = self.channels, self.levels, self.pixels
        c = np.arange(C).repeat(T * P)
        j = np.tile(np.arange(T).repeat(P), C)
        p = np.tile(np.arange(P), C * T)
        return (c * P + p).astype(np.int64), j.astype(np.int64)

    def comparisons(self, levels: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
        """``(src, constant, width)``: bit ``j`` is ``field[src[j]] > constant[j]``, the fields being the
        image's bytes (``width`` 8, the thresholds) or, with ``levels``, its levels (``level_bits`` wide,
        the thresholds' ranks).  What the binarizer builds, the frame buffer keeps and the estimate counts."""
        if levels:
            return (*self.bit_ranks(), self.level_bits)
        return (*self.bit_sources(), 8)

    # -- levels: a value as the number of thresholds it exceeds (the `levels` wire format) -----------
    @property
    def level_bits(self) -> int:
        """Bits that hold a level ``0..T``."""
        return self.levels.bit_length()

    @property
    def level_bytes(self) -> int:
        """Bytes of one image's packed levels (``C*H*W`` fields of ``level_bits``, the last byte padded)."""
        return -(-self.image_bytes * self.level_bits // 8)

    def to_levels(self, images: np.ndarray) -> np.ndarray:
        """uint8 images -> uint8 ``[N, C*H*W]``: how many of its channel's thresholds each byte exceeds."""
        x = self.flatten(images)
        th = self.threshold_array()  # [C, T]
        above = x.reshape(-1, self.channels, 1, self.pixels) > th.reshape(1, self.channels, self.levels, 1)
        return above.sum(axis=2, dtype=np.uint8).reshape(len(x), -1)

    def pack_levels(self, images: np.ndarray) -> np.ndarray:
        """uint8 images -> uint8 ``[N, level_bytes]``: value ``v``'s level in bits ``[v*b, v*b+b)`` of the
        little-endian bit stream (bit ``i`` is bit ``i % 8`` of byte ``i // 8``), padding bits 0."""
        lv = self.to_levels(images)
        b = self.level_bits
        bits = ((lv[:, :, None] >> np.arange(b, dtype=np.uint8)) & 1).astype(np.uint8).reshape(len(lv), -1)
        pad = 8 * self.level_bytes - bits.shape[1]
        bits = np.pad(bits, ((0, 0), (0, pad)))
        return np.packbits(bits, axis=1, bitorder="little")

    def flatten(self, images: np.ndarray) -> np.ndarray:
        """uint8 images ``[N, C, H, W]`` (or ``[N, C*H*W]``) as ``[N, C*H*W]``, checked."""
        x = np.asarray(images)
        if x.dtype != np.uint8:
            raise TypeError(f"images must be uint8, not {x.dtype}")
        x = x.reshape(len(x), -1)
        if x.shape[1] != self.image_bytes:
            raise ValueError(f"images must have {self.image_bytes} bytes each ({self.shape}), not {x.shape[1]}")
        return x

    def encode(self, images: np.ndarray) -> np.ndarray:
        """uint8 images ``[N, C, H, W]`` (or ``[N, C*H*W]``) -> bool bits ``[N, n_bits]``."""
        x = self.flatten(images)
        C, T, P = self.channels, self.levels, self.pixels
        th = self.threshold_array()  # [C, T]
        bits = x.reshape(-1, C, 1, P) > th.reshape(1, C, T, 1)
        return bits.reshape(len(x), -1)

    def encode_torch(self, images, device=None):
        """Like :meth:`encode` on a torch uint8 tensor; returns float32 ``[N, n_bits]``."""
        import torch
        x = images.reshape(len(images), self.channels, 1, self.pixels)
        th = torch.tensor(self.threshold_array(), dtype=torch.uint8, device=x.device).reshape(1, self.channels, self.levels, 1)
        out = (x > th).reshape(len(images), -1).to(torch.float32)
        return out if device is None else out.to(device)

    def to_dict(self) -> dict:
        return {"kind": "thermometer", "shape": list(self.shape), "thresholds": [list(t) for t in self.thresholds],
                "bit_order": "((c*T + j)*H + y)*W + x, bit = pixel > threshold"}

    @classmethod
    def from_dict(cls, d: dict) -> "ThermometerEncoding":
        if d.get("kind", "thermometer") != "thermometer":
            raise ValueError(f"unknown encoding kind {d.get('kind')!r}")
        return cls(tuple(d["shape"]), tuple(tuple(t) for t in d["thresholds"]))
