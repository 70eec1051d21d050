"""GatePipeline: the netlist's gate layers as pipelined logic.

Layout
------
The layers are cut into groups of ``stages`` consecutive layers; each group is
combinational logic followed by one register stage, so the pipeline's latency
is ``ceil(depth / stages)``.  A signal produced in one group and read in a
later one (netlists optimized by passes skip layers, and class outputs may
come from any layer) rides along in *carry registers* at every boundary it
crosses.  Input bits are treated the same way (group -1).

Only what can reach a class output is built (structural reachability, no
constant analysis: that is the netlist passes' job, and the hardware must
compute exactly what the netlist says).  Constant gates (FALSE, TRUE) become
constants and are never registered.

Generation speed
----------------
Per layer, the gates are grouped by op: the gates of one op become vector
expressions (derived from :data:`lgn_fpga.gates.GATES`) over ``Cat`` s of
their operand bits, one assignment per :data:`~lgn_fpga.hdl._stage.CHUNK`
gates; registers are filled the same way.  Runs of adjacent bits collapse to
slices.  Per-bit assignments would make Amaranth quadratic; chunks of 64 keep
the Verilog expressions shallow, which Verilator's C++ compile needs (one
``Cat`` per 2,000-gate layer took gcc minutes).
"""
from __future__ import annotations

import re

import numpy as np
from amaranth.hdl import Const, Module, Signal, Value, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..gates import CONST_GATES, GATES, NUM_GATES, USES_A, USES_B
from ..netlist.analysis import structural_live
from ..netlist.ir import Netlist
from .plan import check_stages, stage_of
from ._stage import Bits, cat_bits, chunks, drive_chunked, stage_control

__all__ = ["GatePipeline", "gate_value"]

_EXPR_OK = re.compile(r"^[ab&|^~() ]+$")


def gate_value(op: int, a: Value | None, b: Value | None, width: int) -> Value:
    """Amaranth expression of gate ``op`` applied bitwise to ``width``-bit ``a`` and ``b``.

    Derived from :data:`lgn_fpga.gates.GATES` (``Gate.expr``, checked against
    the truth table by the gate tests); constants give ``Const`` of ``width``.
    An operand the gate does not read may be ``None``.
    """
    if not isinstance(op, (int, np.integer)) or not 0 <= int(op) < NUM_GATES:
        raise ValueError(f"op must be a gate id in 0..{NUM_GATES - 1}, not {op!r}")
    g = GATES[int(op)]
    if g.expr == "0":
        return Const(0, width)
    if g.expr == "1":
        return Const((1 << width) - 1, width)
    if not _EXPR_OK.match(g.expr):  # only bitwise operators on a and b reach eval
        raise ValueError(f"gate {g.name}: expression {g.expr!r} is not a plain bitwise expression")
    # ~ on an unsigned Value inverts exactly `width` bits, so the expression is
    # width-exact without masking.
    return eval(g.expr, {"__builtins__": {}}, {"a": a, "b": b})  # noqa: S307 (checked above)


class GatePipeline(wiring.Component):
    """The gate layers of a netlist with a register stage every ``stages`` layers.

    Parameters
    ----------
    netlist : Netlist
        A validated netlist.
    stages : int
        Gate layers per register stage (default 1: one LUT level per clock).

    Attributes
    ----------
    i : In(stream.Signature(unsigned(n_inputs)))
        Bit ``j`` is input signal ``j`` (the thermometer bits).
    o : Out(stream.Signature(unsigned(sum of class group sizes)))
        The class output bits, class by class: class ``k`` occupies
        ``[group_offsets[k], group_offsets[k+1])`` in the order of
        ``netlist.outputs[k]`` (a signal counted by two classes appears twice).
    latency : int
        ``ceil(depth / stages)`` cycles (0 for a netlist without layers).
    group_offsets : numpy array
        Start of each class's bits in ``o.payload``, plus the total.
    register_bits : int
        Flip-flops in the data path (gate outputs plus carries).

    Raises
    ------
    TypeError, ValueError
        On a non-Netlist, an invalid netlist or a bad ``stages``.
    """

    def __init__(self, netlist: Netlist, stages: int = 1):
        if not isinstance(netlist, Netlist):
            raise TypeError(f"netlist must be a Netlist, not {netlist!r}")
        netlist.validate()
        self.netlist = netlist
        self.stages = check_stages(stages)
        self.latency = stage_of(netlist.depth, self.stages)
        sizes = [len(o) for o in netlist.outputs]
        self.group_offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.register_bits = None  # known after elaboration
        super().__init__({
            "i": In(stream.Signature(unsigned(netlist.n_inputs))),
            "o": Out(stream.Signature(unsigned(int(self.group_offsets[-1])))),
        })

    # -- structure, plain numpy -------------------------------------------------------
    def _plan(self):
        """Live gates, and for every signal the last group that reads it."""
        net, k = self.netlist, self.stages
        n_groups = self.latency
        off = net.layer_offsets()
        live = structural_live(net)
        last_use = np.full(net.n_signals, -1, np.int64)   # group index of the last reader
        for o in net.outputs:
            last_use[o] = n_groups                         # read after the last register
        for li in range(net.depth):
            l = net.layers[li]
            g_live = live[off[li]:off[li + 1]]
            grp = li // k
            ua = USES_A[l.ops] & g_live
            ub = USES_B[l.ops] & g_live
            np.maximum.at(last_use, l.a[ua], grp)
            np.maximum.at(last_use, l.b[ub], grp)
        return live, last_use

    def elaborate(self, platform):
        m = Module()
        net, k = self.netlist, self.stages
        live, last_use = self._plan()
        off = net.layer_offsets()
        n_groups = self.latency
        en = stage_control(m, self.i, self.o, self.latency)

        # cur[s]: where signal s is available in the group being built.
        cur: dict[int, Bits] = {}
        self._rank = {id(self.i.payload): 0}
        for s in np.flatnonzero(live[:net.n_inputs]).tolist():
            cur[s] = Bits(self.i.payload, s)
        first_out = {}
        for s in (int(x) for o in net.outputs for x in o):
            first_out.setdefault(s, len(first_out))
        n_regs = 0
        for grp in range(n_groups):
            for li in range(grp * k, min((grp + 1) * k, net.depth)):
                self._build_layer(m, li, live, off, cur)
            # Boundary register: every live signal produced so far and read later.
            crossing = [s for s in cur if last_use[s] > grp and cur[s].const is None]
            # Sorting by current location keeps runs of one source together (few
            # slices); `rank` (creation order) keeps the output deterministic.
            rank = self._rank
            crossing.sort(key=lambda s: (rank[id(cur[s].value)], cur[s].index))
            if grp == n_groups - 1:
                # The last registers hold exactly the class outputs: in output order,
                # `o.payload` is a Cat of whole registers, not of thousands of bits
                # (which Amaranth would carry bit by bit through the module ports,
                # making Verilog lines too long for Verilator).
                crossing.sort(key=lambda s: first_out[s])
            if not crossing:
                continue
            nxt = {}
            for c, (lo, hi) in enumerate(chunks(len(crossing))):
                reg = Signal(hi - lo, name=f"stage{grp}_{c}", reset_less=True)
                self._rank[id(reg)] = len(self._rank)
                with m.If(en):
                    m.d.sync += reg.eq(cat_bits(cur[s] for s in crossing[lo:hi]))
                nxt.update((s, Bits(reg, j)) for j, s in enumerate(crossing[lo:hi]))
            n_regs += len(crossing)
            nxt.update((s, b) for s, b in cur.items() if b.const is not None and last_use[s] > grp)
            cur = nxt
        self.register_bits = n_regs
        del self._rank
        outs = [cur[int(s)] for o in net.outputs for s in o]
        drive_chunked(m, self.o.payload, outs, name="outputs")
        return m

    def _build_layer(self, m, li, live, off, cur):
        net = self.netlist
        l = net.layers[li]
        base = int(off[li])
        g_live = np.flatnonzero(live[base:base + len(l)])
        if not len(g_live):
            return
        ops = l.ops[g_live]
        order = np.argsort(ops, kind="stable")          # gates of one op side by side
        for op in np.unique(ops).tolist():
            sel = g_live[order[ops[order] == op]]
            if op in CONST_GATES:
                v = 1 if GATES[op].expr == "1" else 0
                for gi in sel.tolist():
                    cur[base + gi] = Bits.constant(v)
                continue
            g = GATES[op]
            for c, (lo, hi) in enumerate(chunks(len(sel))):
                part = sel[lo:hi]
                A = cat_bits([cur[int(s)] for s in l.a[part]]) if g.uses_a else None
                B = cat_bits([cur[int(s)] for s in l.b[part]]) if g.uses_b else None
                w = Signal(len(part), name=f"layer{li}_{g.name.lower()}_{c}")
                self._rank[id(w)] = len(self._rank)
                m.d.comb += w.eq(gate_value(op, A, B, len(part)))
                for j, gi in enumerate(part.tolist()):
                    cur[base + gi] = Bits(w, j)
