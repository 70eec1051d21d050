"""ArgMax: the index of the highest class score, ties to the lowest index, pipelined."""
from __future__ import annotations

import numpy as np
from amaranth.hdl import Const, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ._stage import stage_control

__all__ = ["ArgMax", "class_width"]


def class_width(n_classes: int) -> int:
    """Bits of the predicted-class payload: ``max(1, ceil_log2(n_classes))``."""
    return max(1, ceil_log2(int(n_classes)))


class ArgMax(wiring.Component):
    """Comparator tree over ``n_classes`` unsigned scores.

    Each level compares neighbours ``(2j, 2j+1)`` and keeps the right one only
    when its score is strictly greater, so the left (lower-index) candidate
    wins every tie; since every left subtree holds lower indices than its right
    neighbour, the result is the lowest index among the maxima (numpy's
    ``argmax``).  An odd candidate out passes to the next level unchanged.

    Parameters
    ----------
    n_classes : int
    score_width : int
    levels_per_stage : int
        Comparator levels between registers (default 1).

    Attributes
    ----------
    i : In(stream.Signature(unsigned(n_classes * score_width)))
        Score ``k`` at bits ``[k*score_width, (k+1)*score_width)``.
    o : Out(stream.Signature(unsigned(class_width(n_classes))))
    latency : int
        ``ceil(ceil_log2(n_classes) / levels_per_stage)`` (0 for one class).

    Raises
    ------
    ValueError
        On a non-positive ``n_classes``, ``score_width`` or ``levels_per_stage``.
    """

    def __init__(self, n_classes: int, score_width: int, *, levels_per_stage: int = 1):
        for name, v in (("n_classes", n_classes), ("score_width", score_width),
                        ("levels_per_stage", levels_per_stage)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        self.n_classes, self.score_width = int(n_classes), int(score_width)
        self.levels_per_stage = int(levels_per_stage)
        self.levels = ceil_log2(self.n_classes)
        self.latency = -(-self.levels // self.levels_per_stage)
        super().__init__({
            "i": In(stream.Signature(unsigned(self.n_classes * self.score_width))),
            "o": Out(stream.Signature(unsigned(class_width(self.n_classes)))),
        })

    def elaborate(self, platform):
        m = Module()
        en = stage_control(m, self.i, self.o, self.latency)
        W, IW = self.score_width, class_width(self.n_classes)
        cands = [(Const(k, IW), self.i.payload[k * W:(k + 1) * W]) for k in range(self.n_classes)]
        for level in range(self.levels):
            nxt = []
            for j in range(0, len(cands) - 1, 2):
                (ia, sa), (ib, sb) = cands[j], cands[j + 1]
                take_b = sb > sa                      # strict: ties keep the lower index
                nxt.append((Mux(take_b, ib, ia), Mux(take_b, sb, sa)))
            if len(cands) % 2:
                nxt.append(cands[-1])
            cands = nxt
            if (level + 1) % self.levels_per_stage == 0 or level == self.levels - 1:
                regs = []
                for j, (idx, sc) in enumerate(cands):
                    ri = Signal(IW, name=f"idx{level}_{j}", reset_less=True)
                    rs = Signal(W, name=f"score{level}_{j}", reset_less=True)
                    with m.If(en):
                        m.d.sync += [ri.eq(idx), rs.eq(sc)]
                    regs.append((ri, rs))
                cands = regs
        m.d.comb += self.o.payload.eq(cands[0][0])
        return m
