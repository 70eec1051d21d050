"""Netlist statistics, pipeline register counts and FPGA resource estimates (numpy only).

The estimates mirror the hardware that :mod:`lgn_fpga.hdl` generates
(``ClassifierCore``: binarizer -> gate pipeline -> popcount -> argmax, with a
register stage after every ``stages`` logic levels), part by part, so the
board fit check can refuse a model before synthesis.  The method is written
down in ``docs/netlist.md``; in short, in LUT4 (iCE40 and ECP5 alike) and
flip-flops (FF):

* binarizer: ``byte > t`` depends on ``r = 8 - ctz(t + 1)`` bits of the byte;
  0 LUTs when ``r <= 1``, else ``ceil((r - 1) / 3)`` (a comparator chain); no FF.
* gates: one LUT per gate that can reach an output and is neither constant
  nor a pass-through wire; FF as :func:`register_counts` (the stage register of
  every signal read in a later stage, plus carries).
* popcount: per class a Wallace tree of full adders (2 LUTs each: XOR3 and
  majority) down to two rows, then one carry-chain adder (one LUT per bit,
  two adders when the class has a bias); FF: every heap bit at every register
  stage, plus the scores.
* argmax: ``n_classes - 1`` comparators (``W`` LUTs on the carry chain) each
  with two muxes (``W`` + index bits LUTs); FF per registered level.
* control: one valid FF per pipeline stage.

On iCE40 a flip-flop shares a logic cell with the LUT that drives it; the
ones that cannot (carry registers, delay registers) take a cell of their own,
so ``cells = lut + unpaired FF``.  UART, framing and the board top level are
not included.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from ..data.encoding import bits_read
from ..gates import CONST_GATES, GATES, PASS_A, PASS_B, USES_A, USES_B
from ..hdl.plan import (allocate_tables, check_stages, fa_levels, register_counts, register_spans,  # no Amaranth
                        score_width, start_heap)
from .analysis import analyze, structural_live
from .ir import Netlist

__all__ = ["FAMILIES", "estimate_resources", "summarize", "format_summary",
           "structural_live", "comparator_luts"]

FAMILIES = ("ice40", "ecp5")
_IS_CONST = np.array([i in CONST_GATES for i in range(16)])
_IS_PASS = np.array([i in (PASS_A, PASS_B) for i in range(16)])


# -- resource model ------------------------------------------------------------------------

def comparator_luts(threshold: int, width: int = 8) -> int:
    """LUT4s of ``field > threshold`` for a ``width``-bit field (a byte, or a level): it depends on the bits
    down to the lowest set bit of ``threshold + 1``."""
    r = bits_read(int(threshold), width)
    return 0 if r <= 1 else -(-(r - 1) // 3)


def _popcount(sizes, bias, k: int, tables: int = 0, table_bits: int = 12, table_ports: int = 2) -> dict:
    """Full adders, LUTs, FFs and block RAMs of the popcount (mirrors hdl.popcount.PopCount, plan: hdl.plan)."""
    lookups = allocate_tables(sizes, tables, table_bits)
    heaps = [start_heap(n, t, table_bits) for n, t in zip(sizes, lookups)]
    levels = max([fa_levels(c) for c in heaps] + [0])
    fa_total = ff = paired = 0
    if any(lookups):
        # the table stage: the raw bits no table takes wait in flip-flops beside the RAMs' output registers
        raw = [n - t * table_bits for n, t in zip(sizes, lookups)]
        ff += sum(raw)
    fresh = 0                      # heap bits produced by a full adder in the current level
    for level in range(levels):
        new_heaps, fresh = [], 0
        for cols in heaps:
            new = [0] * (len(cols) + 1)
            tall = max(cols, default=0) > 2
            for c, h in enumerate(cols):
                fa = h // 3 if tall else 0
                fa_total += fa
                fresh += 2 * fa
                new[c] += h - 2 * fa
                new[c + 1] += fa
            while new and new[-1] == 0:
                new.pop()
            new_heaps.append(new)
        heaps = new_heaps
        if (level + 1) % k == 0 or level == levels - 1:
            bits = sum(sum(c) for c in heaps)
            ff += bits
            paired += min(fresh, bits)
    w = score_width(sizes, bias)
    adder = sum(min(w, len(cols) + 1) * (2 if b else 1) for cols, b in zip(heaps, bias))
    ff += w * len(sizes)
    paired += w * len(sizes)
    latency = int(any(lookups)) + -(-levels // k) + 1
    return {"full_adders": fa_total, "lut": 2 * fa_total + adder, "ff": ff, "unpaired_ff": ff - paired,
            "latency": latency, "score_width": w, "bram": -(-sum(lookups) // table_ports),
            "lookups": int(sum(lookups))}


def _argmax(n_classes: int, w: int, k: int) -> dict:
    """Comparator tree (mirrors hdl.argmax.ArgMax): per comparison a carry-chain compare and two muxes."""
    levels = max(0, (n_classes - 1).bit_length())
    iw = max(1, levels)
    lut = (n_classes - 1) * (2 * w + iw + 4)
    ff, cands = 0, n_classes
    for level in range(levels):
        cands = (cands + 1) // 2
        if (level + 1) % k == 0 or level == levels - 1:
            # after level L a candidate's index varies only in its low L bits; synthesis drops the rest
            ff += cands * (w + min(level + 1, iw))
    return {"lut": lut, "ff": ff, "unpaired_ff": 0, "latency": -(-levels // k)}


def _gate_luts(net: Netlist, k: int, live: np.ndarray) -> int:
    """LUT4s of the gate layers: one per logic gate, less those synthesis folds into their reader.

    With ``k > 1`` layers per register stage, a gate read once, by a gate of
    its own stage, and not registered, is absorbed into its reader's LUT when
    their inputs together are at most 4 (greedy, in gate order: a fanout-free
    cone packing, which is what ABC finds on these shallow cones).
    """
    ops = np.concatenate([l.ops for l in net.layers]) if net.layers else np.zeros(0, np.uint8)
    logic = live[net.n_inputs:] & ~_IS_CONST[ops] & ~_IS_PASS[ops]
    if k == 1 or not logic.any():
        return int(logic.sum())
    n_in = net.n_inputs
    regs, _ = register_spans(net, k)
    a = np.concatenate([l.a for l in net.layers])
    b = np.concatenate([l.b for l in net.layers])
    ua, ub = USES_A[ops] & live[n_in:], USES_B[ops] & live[n_in:]
    fan = np.zeros(net.n_signals, np.int64)
    np.add.at(fan, a[ua], 1)
    np.add.at(fan, b[ub & ~(ua & (a == b))], 1)
    for o in net.outputs:
        np.add.at(fan, o, 1)
    grp = np.repeat(np.arange(net.depth) // k, [len(l) for l in net.layers])
    leaves: dict = {}
    absorbed = 0
    const = _IS_CONST[ops]
    for j in np.flatnonzero(live[n_in:] & ~const).tolist():
        cone = set()
        for x, used in ((int(a[j]), ua[j]), (int(b[j]), ub[j])):
            if not used or x in cone:
                continue
            xj = x - n_in
            if xj >= 0 and const[xj]:
                continue                      # a constant folds into this LUT for free
            if (xj >= 0 and fan[x] == 1 and regs[x] == 0 and grp[xj] == grp[j]
                    and len(cone | leaves[x]) <= 4):
                cone |= leaves[x]
                if logic[xj]:
                    absorbed += 1
            else:
                cone.add(x)
        leaves[n_in + j] = cone
    return int(logic.sum()) - absorbed


def estimate_resources(net: Netlist, family: str = "ice40", stages: int = 1,
                       popcount_levels: int | None = None, count_tables: tuple = (0, 12, 2),
                       wire: str = "bytes") -> dict:
    """Estimated LUT4 and flip-flops of ``net`` as ``lgn_fpga.hdl.ClassifierCore(net, stages, popcount_levels=...)``.

    Parameters
    ----------
    net : Netlist
    family : {"ice40", "ecp5"}
    stages : int
        Logic levels per register stage (gate layers and comparator levels;
        1 = the highest clock).
    count_tables : (int, int, int)
        ``(tables, table_bits, table_ports)`` of the popcount's block-RAM count tables (default none).
    wire : {"bytes", "levels"}
        What the binarizer compares: pixel bytes, or levels (:mod:`lgn_fpga.protocol`).
    popcount_levels : int, optional
        Full-adder levels per register stage of the popcount (default
        ``2 * stages``, as the HDL).

    Returns
    -------
    dict
        ``lut`` (LUT4s, carry-chain cells counted as the LUT4s they hold),
        ``ff``, ``bram`` (count-table block RAMs), ``cells`` (iCE40 logic cells: LUT4s plus the
        flip-flops that cannot share a cell with their LUT; ECP5: ``max(lut,
        ff)`` rounded up to whole slices of 2), ``latency`` (clock cycles) and
        ``parts``: the same per part (binarizer, gates, popcount, argmax,
        control).  UART and framing are not included.

    Raises
    ------
    ValueError
        On an unknown family or a bad ``stages``.
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, not {family!r}")
    k = check_stages(stages)
    live = structural_live(net)
    # binarizer: one comparator per live input bit, on a byte or on a level
    _, th, width = net.encoding.comparisons(wire == "levels")
    bin_lut = int(sum(comparator_luts(t, width) for t in np.asarray(th)[live[:net.n_inputs]].tolist()))
    # ECP5 with 3+ levels per stage: ABC maps for delay with wide functions (PFUMX/L6MUX21) and
    # duplicates logic instead of packing it, so no gate is credited as absorbed (measured, docs/netlist.md).
    gate_lut = _gate_luts(net, 1 if family == "ecp5" and k >= 3 else k, live)
    regs = register_counts(net, k)
    gates = {"lut": gate_lut, "ff": regs["registers"], "unpaired_ff": regs["carry"],
             "latency": regs["groups"], "carry_registers": regs["carry"]}
    # the popcount registers every 2 x stages full-adder levels unless told otherwise, as ClassifierCore does
    kp = 2 * k if popcount_levels is None else check_stages(popcount_levels)
    pc = _popcount([len(o) for o in net.outputs], net.bias.tolist(), kp, *count_tables)
    am = _argmax(net.n_classes, pc["score_width"], k)
    if family == "ecp5" and k > 1:
        # Same effect on the adder and comparator trees (yosys 0.5x synth_ecp5, random netlists):
        # popcount x1.05 / argmax x1.15 at 2 levels per stage, x1.5 / x1.25 at 3.
        pc["lut"] = int(np.ceil(pc["lut"] * (1.05 if k == 2 else 1.5)))
        am["lut"] = int(np.ceil(am["lut"] * (1.15 if k == 2 else 1.25)))
    latency = gates["latency"] + pc["latency"] + am["latency"]
    # one valid bit per register stage, and a LUT or two of handshake per component
    control = {"lut": 3, "ff": latency, "unpaired_ff": latency, "latency": 0}
    parts = {"binarizer": {"lut": bin_lut, "ff": 0, "unpaired_ff": 0, "latency": 0}, "gates": gates,
             "popcount": pc, "argmax": am, "control": control}
    lut = sum(p["lut"] for p in parts.values())
    ff = sum(p["ff"] for p in parts.values())
    unpaired = sum(p["unpaired_ff"] for p in parts.values())
    cells = lut + unpaired if family == "ice40" else 2 * (-(-max(lut, ff) // 2))
    return {"family": family, "stages": k, "lut": int(lut), "ff": int(ff), "bram": int(pc["bram"]), "cells": int(cells),
            "latency": int(latency), "parts": parts}


# -- summary ---------------------------------------------------------------------------------

def summarize(net: Netlist, stages: int = 1) -> dict:
    """Everything ``lgn-fpga stats`` prints, as a JSON-friendly dict."""
    k = check_stages(stages)
    an = analyze(net)
    ops = np.concatenate([l.ops for l in net.layers]) if net.layers else np.zeros(0, np.uint8)
    by_op = Counter(GATES[int(o)].name for o in ops.tolist())
    # fan-out of every gate: reads by gates (through inputs their op uses) plus class-output slots
    fan = np.zeros(net.n_signals, np.int64)
    for l in net.layers:
        np.add.at(fan, l.a[USES_A[l.ops]], 1)
        np.add.at(fan, l.b[USES_B[l.ops]], 1)
    for o in net.outputs:
        np.add.at(fan, o, 1)
    gfan = fan[net.n_inputs:]
    sl = net.signal_layer()
    skips = 0
    for i, l in enumerate(net.layers):
        used = np.concatenate([l.a[USES_A[l.ops]], l.b[USES_B[l.ops]]])
        skips += int((sl[used] < i - 1).sum())
    hist = {}
    for lo, hi in ((0, 0), (1, 1), (2, 2), (3, 4), (5, 8), (9, 16), (17, None)):
        n = int(((gfan >= lo) & ((gfan <= hi) if hi is not None else True)).sum())
        hist[f"{lo}" if lo == hi else f"{lo}+" if hi is None else f"{lo}-{hi}"] = n
    out_layers = Counter("inputs" if sl[s] < 0 else f"layer {sl[s]}" for o in net.outputs for s in o.tolist())
    return {
        "content_hash": net.content_hash(),
        "inputs": net.n_inputs,
        "live_inputs": int(structural_live(net)[:net.n_inputs].sum()),
        "encoding": {"shape": list(net.encoding.shape), "thresholds": [list(t) for t in net.encoding.thresholds]},
        "classes": net.n_classes,
        "outputs_per_class": [len(o) for o in net.outputs],
        "bias": net.bias.tolist(),
        "output_layers": dict(sorted(out_layers.items(), key=lambda kv: (kv[0] != "inputs", len(kv[0]), kv[0]))),
        "depth": net.depth,
        "layer_widths": [len(l) for l in net.layers],
        "gates": net.n_gates,
        "gates_by_op": {g.name: by_op.get(g.name, 0) for g in GATES},
        "unused_gates": int((~an.gate_live).sum()),
        "constant_gates": int(an.gate_const.sum()),
        "skip_reads": skips,
        "fanout": {"mean": float(gfan.mean()) if len(gfan) else 0.0, "max": int(gfan.max(initial=0)),
                   "histogram": hist},
        "stages": k,
        "registers": register_counts(net, k),
        "estimates": {f: estimate_resources(net, f, k) for f in FAMILIES},
        "meta": net.meta,
    }


def format_summary(s: dict) -> str:
    """Human-readable text of :func:`summarize`'s result."""
    lines = []
    enc = s["encoding"]
    th = enc["thresholds"]
    lines.append(f"netlist {s['content_hash'][:16]}")
    lines.append(f"  inputs      {s['inputs']} bits ({s['live_inputs']} used), image {'x'.join(map(str, enc['shape']))},"
                 f" {len(th[0])} threshold(s) per channel {th[0] if len(th) == 1 else th}")
    lines.append(f"  gates       {s['gates']} in {s['depth']} layers {s['layer_widths']}")
    lines.append(f"  unused      {s['unused_gates']} gates ({s['constant_gates']} constant)")
    lines.append(f"  classes     {s['classes']}, outputs per class {s['outputs_per_class']}, bias {s['bias']}")
    lines.append("  outputs     by source layer: " + ", ".join(f"{k} {v}" for k, v in s["output_layers"].items()))
    ops = [(n, c) for n, c in s["gates_by_op"].items() if c]
    ops.sort(key=lambda x: -x[1])
    lines.append("  gates by op " + ", ".join(f"{n} {c}" for n, c in ops))
    f = s["fanout"]
    lines.append(f"  fan-out     mean {f['mean']:.2f}, max {f['max']}; " +
                 ", ".join(f"{k}: {v}" for k, v in f["histogram"].items()))
    r = s["registers"]
    lines.append(f"  pipeline    a register stage every {s['stages']} layer(s): {r['groups']} stages, "
                 f"{r['registers']} flip-flops, {r['carry']} carry registers ({s['skip_reads']} skip reads)")
    lines.append("  estimate    family  LUT4     FF       cells    latency  (binarizer / gates / popcount / argmax LUT4)")
    for fam, e in s["estimates"].items():
        p = e["parts"]
        lines.append(f"              {fam:<7} {e['lut']:<8} {e['ff']:<8} {e['cells']:<8} {e['latency']:<8} "
                     f"({p['binarizer']['lut']} / {p['gates']['lut']} / {p['popcount']['lut']} / "
                     f"{p['argmax']['lut']})")
    meta = s.get("meta") or {}
    if meta:
        lines.append("  meta        " + ", ".join(f"{k}={v}" for k, v in meta.items() if k != "passes"))
        if meta.get("passes"):
            lines.append("  passes      " + ", ".join(map(str, meta["passes"])))
    return "\n".join(lines)
