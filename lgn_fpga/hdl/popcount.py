"""PopCount: per-class bit counts plus bias, as a pipelined compressor tree.

Area first.  A popcount built from a tree of word adders costs 2-4 LUTs per
counted bit, often more than the gates that produce the bits.  Here each class
is a *bit heap* (columns of bits of equal weight) reduced Wallace-style by
full adders (3:2 counters: a 3-input XOR and a 3-input majority, one LUT4
each, and the flip-flop after each LUT is free on iCE40 and ECP5), one LUT
level per step, until every column holds at most two bits; one carry-chain
adder then adds the two rows and the class bias.  Measured numbers are in
docs/hdl.md and bench/hdl.py.

A register stage follows every ``levels_per_stage`` compressor levels and the
final adder.  Every class gets the same latency (shorter heaps wait in delay
registers after their final adder).

Count tables (``tables > 0``): before the compressor tree, runs of
``table_bits`` raw bits of a class address a read-only block RAM holding the
popcount of its address (an ECP5 DP16KD as 4096 x 4 with two read ports: 24
bits in, 8 out, where full adders would take 32 LUT4s).  The lookup is a
register stage of its own (the RAM's output register); the raw bits that no
table takes wait in one register beside it.  Plan: :mod:`.plan`.
"""
from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Const, Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from amaranth.lib.memory import Memory

from ._stage import Bits, cat_bits, chunks, stage_control
from .plan import allocate_tables, fa_levels, plan_levels, score_width, start_heap, table_out_bits

__all__ = ["PopCount", "score_width", "plan_levels"]


class PopCount(wiring.Component):
    """Count the set bits of each class group and add its bias.

    Parameters
    ----------
    group_sizes : sequence of int
        Bits per class; the input packs them class by class.
    bias : sequence of int, optional
        Non-negative constant added to each class's count (default 0).
    levels_per_stage : int
        Compressor levels between registers (default 1: one LUT level per clock).
    tables : int
        Count-table lookups (block-RAM read ports) to use, 0 for none (default).
    table_bits : int
        Address bits of a table (12 for an ECP5 DP16KD as 4096 x 4).
    table_ports : int
        Read ports per block RAM (2 for an ECP5 DP16KD, 1 for an iCE40 SB_RAM40_4K).

    Attributes
    ----------
    i : In(stream.Signature(unsigned(sum(group_sizes))))
    o : Out(stream.Signature(unsigned(n_classes * score_width)))
        Class ``k``'s score at bits ``[k*score_width, (k+1)*score_width)``.
    score_width : int
    latency : int
        Register stages from input to scores (at least 1: the final adder is registered).
    lookups : list of int
        Count-table lookups per class; ``brams`` block RAMs hold them.

    Raises
    ------
    ValueError
        On a negative size or bias, mismatched lengths, no classes, or a bad
        ``levels_per_stage``.
    """

    def __init__(self, group_sizes, bias=None, *, levels_per_stage: int = 1, tables: int = 0,
                 table_bits: int = 12, table_ports: int = 2):
        sizes = [int(n) for n in group_sizes]
        if not sizes or min(sizes) < 0:
            raise ValueError(f"group_sizes must be a non-empty list of non-negative integers, not {group_sizes!r}")
        bias = [0] * len(sizes) if bias is None else [int(b) for b in bias]
        if len(bias) != len(sizes) or min(bias) < 0:
            raise ValueError(f"bias must be {len(sizes)} non-negative integers, not {bias!r}")
        if not isinstance(levels_per_stage, (int, np.integer)) or isinstance(levels_per_stage, bool) \
                or levels_per_stage < 1:
            raise ValueError(f"levels_per_stage must be a positive integer, not {levels_per_stage!r}")
        self.group_sizes, self.bias = sizes, bias
        self.n_classes = len(sizes)
        self.levels_per_stage = int(levels_per_stage)
        for name, v, lo in (("tables", tables, 0), ("table_bits", table_bits, 2), ("table_ports", table_ports, 1)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, not {v!r}")
        self.score_width = score_width(sizes, bias)
        self.table_bits, self.table_ports = int(table_bits), int(table_ports)
        self.lookups = allocate_tables(sizes, int(tables), self.table_bits)
        self.brams = -(-sum(self.lookups) // self.table_ports)
        self.levels = max(fa_levels(start_heap(n, t, self.table_bits)) for n, t in zip(sizes, self.lookups))
        # The table stage (if any), compressor levels in groups of levels_per_stage, the final adder's register.
        self.latency = int(any(self.lookups)) + -(-self.levels // self.levels_per_stage) + 1
        self.full_adders = None  # known after elaboration
        super().__init__({
            "i": In(stream.Signature(unsigned(max(0, sum(sizes))))),
            "o": Out(stream.Signature(unsigned(self.n_classes * self.score_width))),
        })

    def elaborate(self, platform):
        m = Module()
        en = stage_control(m, self.i, self.o, self.latency)
        W = self.score_width
        offs = np.concatenate([[0], np.cumsum(self.group_sizes)]).tolist()
        # heaps[k][c]: bits of weight 2**c of class k
        heaps = [[[Bits(self.i.payload, j) for j in range(offs[k], offs[k + 1])]] if self.group_sizes[k] else []
                 for k in range(self.n_classes)]
        if any(self.lookups):
            heaps = self._tables(m, en, heaps)
        n_fa = 0
        stage = 0
        for level in range(self.levels):
            a_bits, b_bits, c_bits, dest = [], [], [], []
            new_heaps = []
            for k, cols in enumerate(heaps):
                new = [[] for _ in range(len(cols) + 1)]
                for c, col in enumerate(cols):
                    fa = len(col) // 3 if max(map(len, cols)) > 2 else 0
                    for f in range(fa):
                        a_bits.append(col[3 * f]); b_bits.append(col[3 * f + 1]); c_bits.append(col[3 * f + 2])
                        dest.append((k, c))
                    new[c].extend(col[3 * fa:])
                new_heaps.append(new)
            for part, (lo, hi) in enumerate(chunks(len(a_bits))):
                A, B, C = cat_bits(a_bits[lo:hi]), cat_bits(b_bits[lo:hi]), cat_bits(c_bits[lo:hi])
                s = Signal(hi - lo, name=f"sum{level}_{part}")
                co = Signal(hi - lo, name=f"carry{level}_{part}")
                # The full adder: sum = XOR3, carry = majority; one LUT each.
                m.d.comb += [s.eq(A ^ B ^ C), co.eq((A & B) | (A & C) | (B & C))]
                for j, (k, c) in enumerate(dest[lo:hi]):
                    new_heaps[k][c].append(Bits(s, j))
                    new_heaps[k][c + 1].append(Bits(co, j))
            n_fa += len(a_bits)
            heaps = [[col for col in cols] for cols in new_heaps]
            for cols in heaps:
                while cols and not cols[-1]:
                    cols.pop()
            if (level + 1) % self.levels_per_stage == 0 or level == self.levels - 1:
                heaps = self._register(m, en, heaps, f"heap{stage}")
                stage += 1
        self.full_adders = n_fa
        # Final adder: two rows + bias, registered.  Bias bits go into columns
        # with a free slot first (a constant input of the adder costs nothing);
        # only what is left becomes a third operand.
        scores = []
        for k, cols in enumerate(heaps):
            rest = 0
            for c in range(self.bias[k].bit_length()):
                if not (self.bias[k] >> c) & 1:
                    continue
                while len(cols) <= c:
                    cols.append([])
                if len(cols[c]) < 2:
                    cols[c].append(Bits.constant(1))
                else:
                    rest |= 1 << c
            rows = [[], []]
            for c, col in enumerate(cols):
                for r in range(2):
                    rows[r].append(col[r] if r < len(col) else Bits.constant(0))
            r0 = cat_bits(rows[0]) if cols else Const(0, 1)
            r1 = cat_bits(rows[1]) if cols else Const(0, 1)
            total = r0 + r1 + rest if rest else r0 + r1
            sk = Signal(W, name=f"score{k}")  # .eq truncates or zero-extends to W bits
            m.d.comb += sk.eq(total)
            scores.append(sk)
        out = Signal(self.n_classes * W, name="scores", reset_less=True)
        with m.If(en):
            m.d.sync += out.eq(Cat(*scores))
        m.d.comb += self.o.payload.eq(out)
        return m

    def _tables(self, m, en, heaps):
        """The table stage: lookups of runs of raw bits, the other bits registered beside them."""
        B, w = self.table_bits, table_out_bits(self.table_bits)
        init = [bin(a).count("1") for a in range(1 << B)]
        rest, outs = [], []
        ports = []
        for k, cols in enumerate(heaps):
            t = self.lookups[k]
            col = cols[0] if cols else []
            for j in range(t):
                ports.append((k, col[j * B:(j + 1) * B]))
            rest.append([col[t * B:]] if cols else [])
            outs.append([[] for _ in range(w)] if t else [])
        mem = None
        for p, (k, bits) in enumerate(ports):
            if p % self.table_ports == 0:
                mem = Memory(shape=w, depth=1 << B, init=init)
                m.submodules[f"count_table{p // self.table_ports}"] = mem
            rp = mem.read_port(domain="sync")
            m.d.comb += [rp.addr.eq(cat_bits(bits)), rp.en.eq(en)]
            for c in range(w):
                outs[k][c].append(Bits(rp.data, c))
        rest = self._register(m, en, rest, "raw")
        merged = []
        for r, o in zip(rest, outs):
            cols = [list(c) for c in o] if o else []
            if r and r[0]:
                if not cols:
                    cols = [[]]
                cols[0] = r[0] + cols[0]
            merged.append(cols)
        return merged

    @staticmethod
    def _register(m, en, heaps, name):
        flat = [b for cols in heaps for col in cols for b in col if b.const is None]
        regs = []
        for part, (lo, hi) in enumerate(chunks(len(flat))):
            reg = Signal(hi - lo, name=f"{name}_{part}", reset_less=True)
            with m.If(en):
                m.d.sync += reg.eq(cat_bits(flat[lo:hi]))
            regs.extend(Bits(reg, j) for j in range(hi - lo))
        it = iter(regs)
        return [[[b if b.const is not None else next(it) for b in col] for col in cols] for cols in heaps]
