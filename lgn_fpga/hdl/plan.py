"""Planning formulas of the hardware, shared by the HDL (:mod:`.pipeline`, :mod:`.popcount`, :mod:`.core`), the
netlist passes (:mod:`lgn_fpga.netlist.passes`) and the resource estimate (:mod:`lgn_fpga.netlist.stats`).
No Amaranth: importing this module builds no hardware.

Pipeline: a register stage after every ``stages`` gate layers (:func:`check_stages`, :func:`stage_of`,
:func:`register_counts`).

A class's popcount is a *bit heap*: ``cols[c]`` bits of weight ``2**c``.  Optionally the first stage
looks some of the raw bits up in block-RAM count tables (a ``B``-bit address gives the ``B``-bit
popcount as ``B.bit_length()`` bits of weight 1, 2, 4, ...); full-adder levels then reduce the heap
until every column holds at most two bits, and one adder adds the two rows.
"""
from __future__ import annotations

import numpy as np

from ..gates import CONST_GATES, USES_A, USES_B
from ..netlist.analysis import structural_live

__all__ = ["check_stages", "stage_of", "register_spans", "register_counts", "fa_levels", "plan_levels", "score_width", "allocate_tables", "table_out_bits", "start_heap"]


def fa_levels(cols) -> int:
    """Full-adder levels that reduce the heap ``cols`` (bits per column) to at most two bits per column."""
    cols = [int(h) for h in cols]
    levels = 0
    while max(cols, default=0) > 2:
        new = [0] * (len(cols) + 1)
        for c, h in enumerate(cols):
            new[c] += h // 3 + h % 3
            new[c + 1] += h // 3
        while new and new[-1] == 0:
            new.pop()
        cols, levels = new, levels + 1
    return levels


def plan_levels(n: int) -> int:
    """Full-adder levels that reduce an ``n``-bit heap to at most two bits per column."""
    return fa_levels([n])


def score_width(group_sizes, bias) -> int:
    """Bits needed for the largest possible class score (at least 1)."""
    top = max((int(b) + int(n) for n, b in zip(group_sizes, bias)), default=0)
    return max(1, top.bit_length())


def table_out_bits(table_bits: int) -> int:
    """Output bits of a count table with ``table_bits`` address bits (the count 0..table_bits)."""
    return int(table_bits).bit_length()


def allocate_tables(group_sizes, tables: int, table_bits: int) -> list[int]:
    """Count-table lookups per class: at most ``tables`` in all, each taking ``table_bits`` raw bits.

    A lookup removes ``table_bits - table_out_bits`` bits from a heap (12 -> 4: 8 bits, which would take
    8 full adders, 16 LUT4s); the lookups go to the classes in proportion to their bits (largest
    remainder), never more than a class has whole ``table_bits``-bit runs for.
    """
    sizes = [int(n) for n in group_sizes]
    if tables <= 0 or table_bits <= table_out_bits(table_bits):
        return [0] * len(sizes)
    cap = [n // table_bits for n in sizes]
    total = min(int(tables), sum(cap))
    if not total:
        return [0] * len(sizes)
    weight = sum(cap)
    share = [total * c / weight for c in cap]
    alloc = [min(int(s), c) for s, c in zip(share, cap)]
    order = sorted(range(len(sizes)), key=lambda k: (-(share[k] - int(share[k])), k))
    left = total - sum(alloc)
    while left > 0:
        moved = False
        for k in order:
            if left and alloc[k] < cap[k]:
                alloc[k] += 1
                left -= 1
                moved = True
        if not moved:
            break
    return alloc


def start_heap(n: int, lookups: int, table_bits: int) -> list[int]:
    """The heap of an ``n``-bit class after its ``lookups`` count tables (the raw rest stays in column 0)."""
    if not lookups:
        return [n] if n else []
    w = table_out_bits(table_bits)
    cols = [lookups] * w
    cols[0] += n - lookups * table_bits
    return cols


# -- pipeline stages ---------------------------------------------------------------------

_IS_CONST = np.array([i in CONST_GATES for i in range(16)])


def check_stages(stages) -> int:
    if not isinstance(stages, (int, np.integer)) or isinstance(stages, bool) or stages < 1:
        raise ValueError(f"stages must be a positive integer (layers per register stage), not {stages!r}")
    return int(stages)


def stage_of(level, stages: int):
    """Pipeline stage of a level (0: input bits; ``l + 1``: gate layer ``l``): ``ceil(level / stages)``."""
    return -(-level // stages)


def register_spans(net, stages: int):
    """Registers each signal needs and whether it is a gate: ``(regs, is_gate)``, arrays over signals."""
    k = check_stages(stages)
    live = structural_live(net)
    n_groups = stage_of(net.depth, k)
    group = np.zeros(net.n_signals, np.int64)           # input bits are available to group 0
    last = np.full(net.n_signals, -1, np.int64)         # group of the last reader
    for o in net.outputs:
        last[o] = n_groups                               # read after the last register stage
    off = net.layer_offsets()
    const = np.zeros(net.n_signals, bool)
    for i, l in enumerate(net.layers):
        grp = i // k
        group[off[i]:off[i + 1]] = grp
        const[off[i]:off[i + 1]] = _IS_CONST[l.ops]
        g = live[off[i]:off[i + 1]]
        ua, ub = g & USES_A[l.ops], g & USES_B[l.ops]
        np.maximum.at(last, l.a[ua], grp)
        np.maximum.at(last, l.b[ub], grp)
    regs = np.where(live & ~const, np.maximum(last - group, 0), 0)
    is_gate = np.arange(net.n_signals) >= net.n_inputs
    return regs, is_gate


def register_counts(net, stages: int = 1) -> dict:
    """Flip-flops of the gate pipeline with a register stage after every ``stages`` layers.

    A signal produced in stage group ``g`` (input bits: group 0, fed
    combinationally) and last read in group ``L`` (class outputs: after the
    last group) sits in a register at each of the ``L - g`` boundaries in
    between.  For a gate the first is its ordinary stage register; every other
    one, and every register of an input bit, is a *carry* register: the price
    of a bit that skips layers.  Constant gates are never registered.  This is
    ``lgn_fpga.hdl.pipeline.GatePipeline``'s ``register_bits``.

    Returns
    -------
    dict
        ``groups`` (register stages), ``registers`` (all data-path FF),
        ``carry`` (of which carries).
    """
    regs, is_gate = register_spans(net, stages)
    carry = int((regs - ((regs > 0) & is_gate)).sum())
    return {"groups": int(stage_of(net.depth, stages)), "registers": int(regs.sum()), "carry": carry}
