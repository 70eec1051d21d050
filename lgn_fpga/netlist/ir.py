"""The netlist IR: the deployable artifact every stage after training reads.

A netlist is a feed-forward network of two-input gates over the thermometer
bits of one image.  Signals have global ids:

* ``0 .. n_inputs-1`` are the encoded input bits (see :mod:`lgn_fpga.data.encoding`);
* then the gates of layer 0, layer 1, ... in order.

A gate of layer ``l`` reads two signals produced *before* layer ``l`` (an input
bit or a gate of any earlier layer: optimized netlists have such skips).
Class ``k``'s score is ``bias[k] + popcount(outputs of class k)``; the
predicted class is the highest score, ties going to the lowest class index.

This module is numpy-only; torch never appears downstream of the netlist.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..data.encoding import ThermometerEncoding
from ..errors import LgnError
from ..gates import NUM_GATES

__all__ = ["Layer", "Netlist", "NetlistError"]


class NetlistError(LgnError, ValueError):
    """A netlist is malformed; the message names the fault."""


@dataclass
class Layer:
    """One layer of gates: ``ops[i]`` (gate id from :mod:`lgn_fpga.gates`) reads signals ``a[i]`` and ``b[i]``."""

    ops: np.ndarray
    a: np.ndarray
    b: np.ndarray

    def __post_init__(self):
        self.ops = np.ascontiguousarray(self.ops, dtype=np.uint8)
        self.a = np.ascontiguousarray(self.a, dtype=np.int32)
        self.b = np.ascontiguousarray(self.b, dtype=np.int32)

    def __len__(self) -> int:
        return len(self.ops)


@dataclass
class Netlist:
    """A complete classifier netlist.

    Parameters
    ----------
    encoding : ThermometerEncoding
        How image bytes become the ``n_inputs`` input bits.
    layers : list of Layer
        Gate layers in evaluation order.
    outputs : list of numpy arrays
        ``outputs[k]`` lists the signal ids counted for class ``k``.
    bias : array of int
        Constant added to each class score (constant-one bits folded away).
    class_names : list of str, optional
    meta : dict, optional
        Free-form provenance (run, mode, dataset, pass log); not part of the hash.
    """

    encoding: ThermometerEncoding
    layers: list
    outputs: list
    bias: np.ndarray = None
    class_names: list = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.outputs = [np.ascontiguousarray(o, dtype=np.int32) for o in self.outputs]
        k = len(self.outputs)
        self.bias = np.zeros(k, np.int32) if self.bias is None else np.ascontiguousarray(self.bias, dtype=np.int32)
        if self.class_names is None:
            self.class_names = [str(i) for i in range(k)]

    # -- shape -------------------------------------------------------------
    @property
    def n_inputs(self) -> int:
        return self.encoding.n_bits

    @property
    def n_classes(self) -> int:
        return len(self.outputs)

    @property
    def n_gates(self) -> int:
        return sum(len(l) for l in self.layers)

    @property
    def depth(self) -> int:
        return len(self.layers)

    @property
    def n_signals(self) -> int:
        return self.n_inputs + self.n_gates

    def layer_offsets(self) -> np.ndarray:
        """Global id of the first gate of each layer, plus the total (length ``depth + 1``)."""
        return self.n_inputs + np.concatenate([[0], np.cumsum([len(l) for l in self.layers])]).astype(np.int64)

    def signal_layer(self) -> np.ndarray:
        """For every signal id, the layer that produces it (-1 for input bits)."""
        out = np.full(self.n_signals, -1, np.int32)
        off = self.layer_offsets()
        for i in range(self.depth):
            out[off[i]:off[i + 1]] = i
        return out

    # -- checks -------------------------------------------------------------
    def validate(self) -> "Netlist":
        """Check every index and op; raise :class:`NetlistError` naming the first fault."""
        off = self.layer_offsets()
        for i, l in enumerate(self.layers):
            if not (len(l.ops) == len(l.a) == len(l.b)):
                raise NetlistError(f"layer {i}: ops, a and b have different lengths ({len(l.ops)}, {len(l.a)}, {len(l.b)})")
            if len(l) and l.ops.max() >= NUM_GATES:
                j = int(np.argmax(l.ops >= NUM_GATES))
                raise NetlistError(f"layer {i} gate {j}: unknown op {int(l.ops[j])} (must be 0..{NUM_GATES - 1})")
            for name, idx in (("a", l.a), ("b", l.b)):
                bad = (idx < 0) | (idx >= off[i])
                if bad.any():
                    j = int(np.argmax(bad))
                    raise NetlistError(f"layer {i} gate {j}: input {name}={int(idx[j])} out of range "
                                       f"(must be a signal before this layer, 0..{int(off[i]) - 1})")
        if self.n_classes < 1:
            raise NetlistError("netlist has no class outputs")
        for k, o in enumerate(self.outputs):
            bad = (o < 0) | (o >= self.n_signals)
            if bad.any():
                raise NetlistError(f"class {k}: output signal {int(o[np.argmax(bad)])} out of range 0..{self.n_signals - 1}")
        if len(self.bias) != self.n_classes:
            raise NetlistError(f"bias has {len(self.bias)} entries for {self.n_classes} classes")
        if (self.bias < 0).any():
            raise NetlistError("class bias must be non-negative")
        if len(self.class_names) != self.n_classes:
            raise NetlistError(f"{len(self.class_names)} class names for {self.n_classes} classes")
        return self

    # -- identity -------------------------------------------------------------
    def content_hash(self) -> str:
        """sha256 over everything that changes what the netlist computes (not ``meta``)."""
        h = hashlib.sha256()
        h.update(json.dumps(self.encoding.to_dict(), sort_keys=True).encode())
        h.update(np.int64(len(self.layers)).tobytes())
        for l in self.layers:
            h.update(np.int64(len(l)).tobytes())
            h.update(l.ops.tobytes()); h.update(l.a.tobytes()); h.update(l.b.tobytes())
        h.update(np.int64(self.n_classes).tobytes())
        for o in self.outputs:
            h.update(np.int64(len(o)).tobytes()); h.update(o.tobytes())
        h.update(self.bias.tobytes())
        return h.hexdigest()

    def copy(self, **changes) -> "Netlist":
        """A new netlist sharing nothing mutable with this one, with ``changes`` applied."""
        d = dict(encoding=self.encoding,
                 layers=[Layer(l.ops.copy(), l.a.copy(), l.b.copy()) for l in self.layers],
                 outputs=[o.copy() for o in self.outputs], bias=self.bias.copy(),
                 class_names=list(self.class_names), meta=json.loads(json.dumps(self.meta)))
        d.update(changes)
        return Netlist(**d)

    def __repr__(self) -> str:
        return (f"Netlist(inputs={self.n_inputs}, layers={[len(l) for l in self.layers]}, "
                f"classes={self.n_classes}, gates={self.n_gates})")

    # -- construction from a trained layered network ---------------------------
    @classmethod
    def from_layered(cls, encoding: ThermometerEncoding, ops: Sequence, a: Sequence, b: Sequence,
                     n_classes: int, class_names=None, meta=None) -> "Netlist":
        """Build from per-layer arrays whose indices are *local* to the previous layer.

        This is the shape a trained network has: layer ``l``'s inputs index the
        outputs of layer ``l-1`` (or the input bits), and the last layer is split
        into ``n_classes`` equal, contiguous groups.
        """
        layers, base, prev_base = [], encoding.n_bits, 0
        for i, (o, ai, bi) in enumerate(zip(ops, a, b)):
            o, ai, bi = (np.asarray(v) for v in (o, ai, bi))
            layers.append(Layer(o, ai.astype(np.int64) + prev_base, bi.astype(np.int64) + prev_base))
            prev_base, base = base, base + len(o)
        last = len(layers[-1])
        if last % n_classes:
            raise NetlistError(f"last layer has {last} gates, not divisible by {n_classes} classes")
        g = last // n_classes
        outputs = [np.arange(prev_base + k * g, prev_base + (k + 1) * g) for k in range(n_classes)]
        return cls(encoding, layers, outputs, class_names=class_names, meta=dict(meta or {})).validate()
