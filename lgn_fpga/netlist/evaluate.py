"""Golden evaluator: class scores and predictions of a netlist, in software.

This is the model every hardware check compares against.  ``scores`` and
``predict`` take uint8 images (or already-encoded bits) and return exact
integer scores; ties go to the lowest class index (``argmax`` semantics).
"""
from __future__ import annotations

import numpy as np

from ..gates import apply_bitwise
from .ir import Netlist

__all__ = ["encode_images", "scores", "predict", "argmax_lowest"]


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
    return np.stack([sig[o].sum(0) for o in net.outputs], axis=1).astype(np.int64) + net.bias[None, :]


def scores(net: Netlist, images=None, *, bits=None) -> np.ndarray:
    """Integer class scores ``[N, n_classes]`` for uint8 ``images`` or bool ``bits``."""
    if bits is None:
        bits = encode_images(net, images)
    return _scores_bool(net, np.asarray(bits, dtype=bool))


def argmax_lowest(s: np.ndarray) -> np.ndarray:
    """Index of the highest score per row, the lowest index on ties (numpy's argmax rule)."""
    return np.asarray(s).argmax(axis=1)


def predict(net: Netlist, images=None, *, bits=None) -> np.ndarray:
    """Predicted class per image (ties: lowest class index)."""
    return argmax_lowest(scores(net, images, bits=bits))
