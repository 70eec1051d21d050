"""Golden evaluator: class scores and predictions of a netlist, in software.

This is the model every hardware check compares against.  ``scores`` and
``predict`` take uint8 images (or already-encoded bits) and return exact
integer scores; ties go to the lowest class index (``argmax`` semantics).

Backends, all bit-exact with each other (the tests hold them to it):

``reference``
    One bool per image and signal, one layer at a time.  Simple and slow: the
    definition the others are tested against.
``numpy``
    Bit-parallel: 64 images per uint64 word, one vectorized step per layer
    using the algebraic normal form ``k0 ^ k1&a ^ k2&b ^ k3&a&b`` of every
    gate (derived from :data:`lgn_fpga.gates.TRUTH`).
``c``
    Straight-line C generated from the netlist, compiled with the system C
    compiler and cached (:mod:`lgn_fpga.netlist.cbackend`).  Optional: when no
    compiler works, ``auto`` uses ``numpy``.
``auto``
    ``c`` when it is available and the job is big enough to repay a compile
    (or the netlist is already compiled), else ``numpy``.
"""
from __future__ import annotations

import warnings

import numpy as np

from ..errors import LgnError
from ..gates import TRUTH, apply_bitwise
from .ir import Netlist

__all__ = ["BACKENDS", "encode_images", "scores", "predict", "argmax_lowest", "pack_bits", "available_backends",
           "resolve_backend"]

BACKENDS = ("auto", "c", "numpy", "reference")

# Algebraic normal form over GF(2) of every gate, from its truth table (f00, f01, f10, f11):
# f(a, b) = k0 ^ k1*a ^ k2*b ^ k3*a*b.  One row per gate id, as all-zeros / all-ones uint64 masks.
_t = TRUTH.astype(np.uint64)
_ANF = np.stack([_t[:, 0], _t[:, 0] ^ _t[:, 2], _t[:, 0] ^ _t[:, 1], _t[:, 0] ^ _t[:, 1] ^ _t[:, 2] ^ _t[:, 3]],
                axis=1) * np.uint64(0xFFFFFFFFFFFFFFFF)
del _t
# Auto picks C from this much work (images x gates) up: below it, a compile costs more than it saves.
_AUTO_C_WORK = 5e7


def encode_images(net: Netlist, images: np.ndarray) -> np.ndarray:
    """uint8 images -> bool input bits ``[N, n_inputs]`` with the netlist's own encoding."""
    return net.encoding.encode(np.asarray(images))


def _scores_bool(net: Netlist, bits: np.ndarray) -> np.ndarray:
    """Reference evaluation on bool arrays, one layer at a time (simple, not fast)."""
    n = len(bits)
    sig = np.zeros((net.n_signals, n), dtype=bool)
    sig[:net.n_inputs] = bits.T
    off = net.layer_offsets()
    for i, l in enumerate(net.layers):
        A, B = sig[l.a], sig[l.b]
        out = np.zeros((len(l), n), dtype=bool)
        for op in np.unique(l.ops):
            m = l.ops == op
            out[m] = apply_bitwise(int(op), A[m], B[m], True)
        sig[off[i]:off[i + 1]] = out
    if not net.outputs:
        return np.zeros((n, 0), np.int64)
    return np.stack([sig[o].sum(0) for o in net.outputs], axis=1).astype(np.int64) + net.bias[None, :]


# -- bit-parallel numpy ------------------------------------------------------------

def pack_bits(bits: np.ndarray) -> np.ndarray:
    """bool ``[N, n_inputs]`` -> uint64 ``[n_inputs, ceil(N/64)]``; bit ``i`` of word ``w`` is image ``64*w + i``.

    Images past ``N`` in the last word are zero.
    """
    bits = np.asarray(bits, dtype=bool)
    n, k = bits.shape
    words = -(-n // 64)
    padded = np.zeros((k, words * 64), dtype=bool)
    padded[:, :n] = bits.T
    return np.packbits(padded, axis=1, bitorder="little").view("<u8").astype(np.uint64, copy=False)


def _eval_words(net: Netlist, inputs: np.ndarray, masks) -> np.ndarray:
    """Every signal of the netlist on packed words: ``[n_signals, W]`` uint64."""
    w = inputs.shape[1]
    sig = np.empty((net.n_signals, w), dtype=np.uint64)
    sig[:net.n_inputs] = inputs
    off = net.layer_offsets()
    for i, l in enumerate(net.layers):
        A, B = sig[l.a], sig[l.b]
        k0, k1, k2, k3 = masks[i]
        out = A & k1
        out ^= B & k2
        A &= B
        A &= k3
        out ^= A
        out ^= k0
        sig[off[i]:off[i + 1]] = out
    return sig


def _count(net: Netlist, sig: np.ndarray, n: int) -> np.ndarray:
    """Per-image class scores from packed signals (popcount of each class's bits, plus bias)."""
    out = np.empty((n, net.n_classes), np.int64)
    for k, o in enumerate(net.outputs):
        if len(o) == 0:
            out[:, k] = net.bias[k]
            continue
        rows = sig[o].astype("<u8", copy=False).view(np.uint8)
        bits = np.unpackbits(rows, axis=1, bitorder="little", count=n)
        out[:, k] = bits.sum(0, dtype=np.int64) + net.bias[k]
    return out


def _layer_masks(net: Netlist):
    return [tuple(_ANF[l.ops, j][:, None] for j in range(4)) for l in net.layers]


def _chunk_images(net: Netlist) -> int:
    # Keep the packed signal table near 64 MiB whatever the netlist's size.
    words = max(1, (64 << 20) // (8 * max(net.n_signals, 1)))
    return 64 * min(words, 1024)


def _scores_numpy(net: Netlist, images=None, bits=None) -> np.ndarray:
    n = len(images) if bits is None else len(bits)
    out = np.empty((n, net.n_classes), np.int64)
    masks = _layer_masks(net)
    step = _chunk_images(net)
    for s in range(0, n, step):
        b = encode_images(net, images[s:s + step]) if bits is None else bits[s:s + step]
        sig = _eval_words(net, pack_bits(b), masks)
        out[s:s + len(b)] = _count(net, sig, len(b))
    return out


# -- front end -----------------------------------------------------------------------

def available_backends() -> list[str]:
    """Concrete backends usable here, fastest first (``c`` only when a compiler works)."""
    from . import cbackend
    return (["c"] if cbackend.available() else []) + ["numpy", "reference"]


def resolve_backend(backend: str, net: Netlist, n_images: int) -> str:
    """The concrete backend ``backend`` means for ``n_images`` images of ``net``."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if backend != "auto":
        return backend
    from . import cbackend
    if cbackend.is_built(net) or (n_images * max(net.n_gates, 1) >= _AUTO_C_WORK and cbackend.available()):
        return "c"
    return "numpy"


def _check_bits(net: Netlist, bits) -> np.ndarray:
    bits = np.asarray(bits)
    if bits.ndim != 2 or bits.shape[1] != net.n_inputs:
        raise ValueError(f"bits must have shape [N, {net.n_inputs}], not {list(bits.shape)}")
    return bits.astype(bool, copy=False)


def scores(net: Netlist, images=None, *, bits=None, backend: str = "auto") -> np.ndarray:
    """Integer class scores ``[N, n_classes]`` (int64) for uint8 ``images`` or bool ``bits``.

    Parameters
    ----------
    net : Netlist
    images : uint8 array ``[N, C, H, W]`` or ``[N, C*H*W]``, optional
        Encoded with ``net.encoding`` (the same integer thresholds as the hardware).
    bits : bool array ``[N, n_inputs]``, optional
        Already-encoded input bits (instead of ``images``).
    backend : {"auto", "c", "numpy", "reference"}
        All give identical results; see the module docstring.

    Raises
    ------
    LgnError
        If ``backend="c"`` is asked for and no C compiler can build the netlist.
    """
    if (images is None) == (bits is None):
        raise TypeError("pass exactly one of images or bits")
    if bits is not None:
        bits = _check_bits(net, bits)
        n = len(bits)
    else:
        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise TypeError(f"images must be uint8, not {images.dtype}")
        images = images.reshape(len(images), -1)
        if images.shape[1] != net.encoding.image_bytes:
            raise ValueError(f"images must have {net.encoding.image_bytes} bytes each "
                             f"({net.encoding.shape}), not {images.shape[1]}")
        n = len(images)
    kind = resolve_backend(backend, net, n)
    if kind == "c":
        from . import cbackend
        try:
            cnet = cbackend.compile_netlist(net)
        except LgnError as e:
            if backend == "c":
                raise
            warnings.warn(f"C backend unavailable ({e}); using numpy", RuntimeWarning, stacklevel=2)
            kind = "numpy"
        else:
            return (cnet.scores_bits(bits) if bits is not None else cnet.scores_images(images)).astype(np.int64)
    if kind == "numpy":
        return _scores_numpy(net, images, bits)
    if bits is None:
        bits = encode_images(net, images)
    return _scores_bool(net, bits)


def argmax_lowest(s: np.ndarray) -> np.ndarray:
    """Index of the highest score per row, the lowest index on ties (numpy's argmax rule)."""
    return np.asarray(s).argmax(axis=1)


def predict(net: Netlist, images=None, *, bits=None, backend: str = "auto") -> np.ndarray:
    """Predicted class per image (ties: lowest class index)."""
    return argmax_lowest(scores(net, images, bits=bits, backend=backend))
