"""Constant propagation and liveness over a netlist (vectorized per layer).

Shared by the training loop (unused-gate statistics), the optimizing passes
and the reports, so "unused" means the same thing everywhere: a gate whose
output cannot change any class score, once constants have been propagated and
each gate's truth table has been restricted to the inputs it can still see.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..gates import TRUTH, USES_A, USES_B
from .ir import Netlist

__all__ = ["Analysis", "analyze", "unread_gates", "unread_summary"]

# TRUTH columns are f00, f01, f10, f11, i.e. column index 2*a + b.
_T = TRUTH.astype(bool)


@dataclass
class Analysis:
    """Per-signal facts; arrays are indexed by global signal id."""

    is_const: np.ndarray   # bool: the signal has the same value for every input
    value: np.ndarray      # bool: that value (meaningful where is_const)
    live: np.ndarray       # bool: the signal can change some class score
    dep_a: np.ndarray      # bool per gate (gate order): output still depends on input a
    dep_b: np.ndarray      # bool per gate: output still depends on input b
    n_inputs: int

    @property
    def gate_const(self) -> np.ndarray:
        return self.is_const[self.n_inputs:]

    @property
    def gate_live(self) -> np.ndarray:
        return self.live[self.n_inputs:]

    def summary(self) -> dict:
        g = len(self.gate_live)
        unused = int((~self.gate_live).sum())
        const = int(self.gate_const.sum())
        return {"gates": g, "unused_gates": unused, "unused_frac": unused / max(g, 1),
                "const_gates": const, "const_frac": const / max(g, 1),
                "live_inputs": int(self.live[:self.n_inputs].sum())}


def _restricted_deps(ops, ca, va, cb, vb):
    """Dependence on a and b of each gate, and its value when constant."""
    t = _T[ops]                                  # [G, 4] f(2a+b)
    a0 = np.where(ca, va, False).astype(np.int64)
    b0 = np.where(cb, vb, False).astype(np.int64)
    rows = np.arange(len(ops))
    # depends on a: for some allowed b, f(0,b) != f(1,b)
    dep_a_b0 = t[:, 0] != t[:, 2]
    dep_a_b1 = t[:, 1] != t[:, 3]
    dep_a = np.where(cb, np.where(vb, dep_a_b1, dep_a_b0), dep_a_b0 | dep_a_b1) & ~ca
    dep_b_a0 = t[:, 0] != t[:, 1]
    dep_b_a1 = t[:, 2] != t[:, 3]
    dep_b = np.where(ca, np.where(va, dep_b_a1, dep_b_a0), dep_b_a0 | dep_b_a1) & ~cb
    const = ~dep_a & ~dep_b
    val = t[rows, 2 * a0 + b0]
    return dep_a, dep_b, const, val


def analyze(net: Netlist) -> Analysis:
    """Propagate constants forward, then liveness backward from the class outputs."""
    n = net.n_signals
    is_const = np.zeros(n, bool)
    value = np.zeros(n, bool)
    off = net.layer_offsets()
    deps_a, deps_b = [], []
    for i, l in enumerate(net.layers):
        da, db, c, v = _restricted_deps(l.ops, is_const[l.a], value[l.a], is_const[l.b], value[l.b])
        is_const[off[i]:off[i + 1]] = c
        value[off[i]:off[i + 1]] = v
        deps_a.append(da); deps_b.append(db)
    live = np.zeros(n, bool)
    for o in net.outputs:
        live[o] = True
    live &= ~is_const
    for i in range(net.depth - 1, -1, -1):
        l = net.layers[i]
        g_live = live[off[i]:off[i + 1]]
        live[l.a[g_live & deps_a[i]]] = True
        live[l.b[g_live & deps_b[i]]] = True
    cat = (lambda xs: np.concatenate(xs) if xs else np.zeros(0, bool))
    return Analysis(is_const, value, live, cat(deps_a), cat(deps_b), net.n_inputs)


def structural_live(net: Netlist) -> np.ndarray:
    """Signals that reach a class output through inputs their ops read (no constant analysis).

    This is what the hardware builds (and the C evaluator computes): it must compute exactly what the
    netlist says, so only the passes remove logic that constants make useless.
    """
    live = np.zeros(net.n_signals, bool)
    for o in net.outputs:
        live[o] = True
    off = net.layer_offsets()
    for i in range(net.depth - 1, -1, -1):
        l = net.layers[i]
        g = live[off[i]:off[i + 1]]
        live[l.a[g & USES_A[l.ops]]] = True
        live[l.b[g & USES_B[l.ops]]] = True
    return live


def unread_gates(net: Netlist) -> np.ndarray:
    """Gates (bool per gate, gate order) that nothing reads: no gate depends on them and no class counts them.

    The local, one-hop measure beside :func:`analyze`'s liveness: a gate counts as read when some gate's op
    depends on the input wired to it (``USES_A`` / ``USES_B``) or it is a class output, whether or not that
    reader is itself read, and with no constant propagation.  So every unread gate is also unused in
    :func:`analyze`'s sense, not the other way round (docs/method.md, "Metrics").
    """
    read = np.zeros(net.n_signals, bool)
    for o in net.outputs:
        read[o] = True
    for l in net.layers:
        read[l.a[USES_A[l.ops]]] = True
        read[l.b[USES_B[l.ops]]] = True
    return ~read[net.n_inputs:]


def unread_summary(net: Netlist) -> dict:
    """``unread_gates`` as counts: ``{"unread_gates": n, "unread_frac": n / gates}``."""
    u = unread_gates(net)
    return {"unread_gates": int(u.sum()), "unread_frac": float(u.sum()) / max(len(u), 1)}
