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
"""
from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Const, Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ._stage import Bits, cat_bits, chunks, stage_control

__all__ = ["PopCount", "score_width", "plan_levels"]


def score_width(group_sizes, bias) -> int:
    """Bits needed for the largest possible class score (at least 1)."""
    top = max((int(b) + int(n) for n, b in zip(group_sizes, bias)), default=0)
    return max(1, top.bit_length())


def plan_levels(n: int) -> int:
    """Full-adder levels that reduce an ``n``-bit heap to at most two bits per column."""
    cols = [n]
    levels = 0
    while max(cols, default=0) > 2:
        new = [0] * (len(cols) + 1)
        for c, h in enumerate(cols):
            fa = h // 3
            new[c] += fa + h % 3
            new[c + 1] += fa
        while new and new[-1] == 0:
            new.pop()
        cols = new
        levels += 1
    return levels


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

    Attributes
    ----------
    i : In(stream.Signature(unsigned(sum(group_sizes))))
    o : Out(stream.Signature(unsigned(n_classes * score_width)))
        Class ``k``'s score at bits ``[k*score_width, (k+1)*score_width)``.
    score_width : int
    latency : int
        Register stages from input to scores (at least 1: the final adder is registered).

    Raises
    ------
    ValueError
        On a negative size or bias, mismatched lengths, no classes, or a bad
        ``levels_per_stage``.
    """

    def __init__(self, group_sizes, bias=None, *, levels_per_stage: int = 1):
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
        self.score_width = score_width(sizes, bias)
        self.levels = max(plan_levels(n) for n in sizes)
        # Compressor levels in groups of levels_per_stage, then the final adder's register.
        self.latency = -(-self.levels // self.levels_per_stage) + 1
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
