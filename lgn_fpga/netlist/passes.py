"""Optimizing passes: small ``Netlist -> Netlist`` functions, run as a plain list.

Every pass returns a new netlist (the input is never modified) that computes
exactly the same class scores for every input (the tests check it on random
netlists and random inputs, comparing integer scores).  Each pass removes the
gates that it alone made redundant, so a per-pass table shows what each one
is worth:

:func:`propagate_constants`
    Substitutes constant signals into their readers' truth tables, turns
    constant gates into FALSE/TRUE, folds constant class outputs into ``bias``
    (constant 1) or drops them (constant 0), and removes the constant gates
    left unread.
:func:`fold_wires`
    Readers of a pass-through (``A``, ``B``) read its source instead; readers
    of an inverter (``NOT_A``, ``NOT_B``) read its source with the inversion
    folded into their truth table (:func:`lgn_fpga.gates.compose_not`).  A gate
    whose two inputs turn out to be the same signal becomes a wire or a
    constant.  A NOT that feeds a class output stays (a popcount cannot absorb
    an inversion).
:func:`merge_duplicates`
    Gates with the same op and inputs, commutative forms included
    (:func:`lgn_fpga.gates.swap_inputs`), become one; the earliest is kept.
:func:`remove_dead`
    Removes every gate that cannot change a class score, with the definition
    of :mod:`lgn_fpga.netlist.analysis` (the one training reports).
:func:`relevel`
    Moves gates between layers (within their ASAP/ALAP range) when that lowers
    the pipeline register count of :func:`lgn_fpga.hdl.plan.register_counts`.
:func:`insert_carries`
    Lowering for hardware, not an optimization: makes every carry register an
    explicit pass-through gate, so that each stage reads only the one before.

:func:`optimize` runs a list of passes to a fixed point.  Gate ids in
``ops`` / ``a`` / ``b`` are global signal ids throughout (see :mod:`.ir`).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..gates import (CONST_GATES as _CONST, FALSE, GATES, NOT_A, NOT_B, PASS_A, PASS_B, TRUE, USES_A, USES_B,
                     compose_not, gate_id_from_truth, swap_inputs)
from .analysis import analyze, structural_live
from .ir import Layer, Netlist

__all__ = ["propagate_constants", "fold_wires", "merge_duplicates", "remove_dead", "relevel", "insert_carries",
           "optimize", "optimization_note", "DEFAULT_PASSES", "Pass"]

Pass = Callable[[Netlist], Netlist]

# -- tables derived from the gate table --------------------------------------------------
#: _COMPOSE[op, ia, ib]: op with its inputs inverted where ia / ib
_COMPOSE = np.array([[[compose_not(op, invert_a=bool(ia), invert_b=bool(ib)) for ib in (0, 1)] for ia in (0, 1)]
                     for op in range(16)], dtype=np.uint8)
#: _SUBST[op, ca, va, cb, vb]: op with input a fixed to va where ca (and b to vb where cb)
_SUBST = np.zeros((16, 2, 2, 2, 2), np.uint8)
for _op in range(16):
    for _ca in (0, 1):
        for _va in (0, 1):
            for _cb in (0, 1):
                for _vb in (0, 1):
                    _SUBST[_op, _ca, _va, _cb, _vb] = gate_id_from_truth(*(
                        GATES[_op].truth(_va if _ca else x, _vb if _cb else y) for x in (0, 1) for y in (0, 1)))
#: _DIAG[op]: op(x, x) as a gate of input a alone
_DIAG = np.array([gate_id_from_truth(*(GATES[op].truth(x, x) for x in (0, 1) for _ in (0, 1)))
                  for op in range(16)], dtype=np.uint8)
_SWAP = np.array([swap_inputs(op) for op in range(16)], dtype=np.uint8)
_WIRES = np.array([PASS_A, PASS_B, NOT_A, NOT_B])


# -- helpers -------------------------------------------------------------------------------

def _flat(net: Netlist):
    """Concatenated ``ops``, ``a``, ``b`` (int64) and the layer of every gate."""
    if not net.layers:
        z = np.zeros(0, np.int64)
        return np.zeros(0, np.uint8), z, z.copy(), z.copy()
    ops = np.concatenate([l.ops for l in net.layers])
    a = np.concatenate([l.a for l in net.layers]).astype(np.int64)
    b = np.concatenate([l.b for l in net.layers]).astype(np.int64)
    lay = np.repeat(np.arange(net.depth), [len(l) for l in net.layers])
    return ops, a, b, lay


def _canon(ops, a, b):
    """Point the inputs an op ignores at one it reads (or at signal 0), so they create no dependence."""
    ua, ub = USES_A[ops], USES_B[ops]
    a2 = np.where(ua, a, np.where(ub, b, 0))
    b2 = np.where(ub, b, a2)
    return a2, b2


def _rebuild(net: Netlist, ops, a, b, lay, outputs, bias, keep=None) -> Netlist:
    """New netlist of the kept gates, renumbered, grouped by ``lay``; empty layers disappear.

    Every input a kept gate reads and every output must be kept (the callers
    canonicalize ignored inputs first); a violation is a bug in a pass.
    """
    n_in = net.n_inputs
    g = len(ops)
    keep = np.ones(g, bool) if keep is None else keep
    idx = np.nonzero(keep)[0]
    order = idx[np.argsort(lay[idx], kind="stable")]
    new_id = np.full(n_in + g, -1, np.int64)
    new_id[:n_in] = np.arange(n_in)
    new_id[n_in + order] = n_in + np.arange(len(order))
    na, nb = new_id[a[order]], new_id[b[order]]
    outs = [new_id[np.asarray(o, np.int64)] for o in outputs]
    if (na < 0).any() or (nb < 0).any() or any((o < 0).any() for o in outs):
        raise RuntimeError("netlist pass removed a gate that is still read (bug in lgn_fpga.netlist.passes)")
    layers = []
    sl = lay[order]
    cuts = np.nonzero(np.diff(sl))[0] + 1
    for part in np.split(np.arange(len(order)), cuts) if len(order) else []:
        layers.append(Layer(ops[order[part]], na[part], nb[part]))
    return Netlist(net.encoding, layers, outs, bias=np.asarray(bias, np.int64), class_names=list(net.class_names),
                   meta=dict(net.meta)).validate()


def _apply_constants(net: Netlist, an):
    """Ops with constant inputs substituted and constant gates made FALSE/TRUE; outputs folded into bias."""
    ops, a, b, lay = _flat(net)
    c, v = an.is_const, an.value
    ops = _SUBST[ops, c[a].astype(np.int64), v[a].astype(np.int64), c[b].astype(np.int64), v[b].astype(np.int64)]
    gc = an.gate_const
    ops = np.where(gc, np.where(v[net.n_inputs:], TRUE, FALSE), ops).astype(np.uint8)
    a, b = _canon(ops, a, b)
    outputs, bias = [], net.bias.astype(np.int64).copy()
    for k, o in enumerate(net.outputs):
        const = c[o]
        bias[k] += int(v[o][const].sum())
        outputs.append(o[~const])
    return ops, a, b, lay, outputs, bias


def _unread(net: Netlist, ops, a, b, outputs, candidates):
    """Keep mask dropping the ``candidates`` that nothing kept reads (one backward sweep)."""
    n_in = net.n_inputs
    keep = np.ones(len(ops), bool)
    if not candidates.any():
        return keep
    read = np.zeros(n_in + len(ops), bool)
    for o in outputs:
        read[o] = True
    off = net.layer_offsets() - n_in
    for i in range(net.depth - 1, -1, -1):
        s = slice(off[i], off[i + 1])
        keep[s] = ~candidates[s] | read[n_in + off[i]:n_in + off[i + 1]]
        k = keep[s]
        read[a[s][k & USES_A[ops[s]]]] = True
        read[b[s][k & USES_B[ops[s]]]] = True
    return keep


# -- the passes ------------------------------------------------------------------------------

def propagate_constants(net: Netlist) -> Netlist:
    """Fold constants into their readers, the class outputs and ``bias``; drop the constant gates left unread."""
    an = analyze(net)
    ops, a, b, lay, outputs, bias = _apply_constants(net, an)
    keep = _unread(net, ops, a, b, outputs, an.gate_const)
    return _rebuild(net, ops, a, b, lay, outputs, bias, keep)


def fold_wires(net: Netlist) -> Netlist:
    """Bypass pass-through gates and fold inverters into their readers (see the module docstring)."""
    src = np.arange(net.n_signals, dtype=np.int64)     # every signal = src, inverted where inv
    inv = np.zeros(net.n_signals, bool)
    off = net.layer_offsets()
    ops_l, a_l, b_l = [], [], []
    for i, l in enumerate(net.layers):
        sa, ia, sb, ib = src[l.a], inv[l.a], src[l.b], inv[l.b]
        ops = _COMPOSE[l.ops, ia.astype(np.int64), ib.astype(np.int64)]
        sa, sb = _canon(ops, sa, sb)
        ops = np.where(sa == sb, _DIAG[ops], ops)      # op(x, x): a gate of input a alone
        g = np.arange(off[i], off[i + 1])
        on_a = (ops == PASS_A) | (ops == NOT_A)
        on_b = (ops == PASS_B) | (ops == NOT_B)
        src[g[on_a]], inv[g[on_a]] = sa[on_a], ops[on_a] == NOT_A
        src[g[on_b]], inv[g[on_b]] = sb[on_b], ops[on_b] == NOT_B
        ops_l.append(ops); a_l.append(sa); b_l.append(sb)
    ops, a, b, lay = _flat(net)
    if ops_l:
        ops, a, b = np.concatenate(ops_l), np.concatenate(a_l), np.concatenate(b_l)
    a, b = _canon(ops, a, b)
    # An output reads the wire's source, except through an inversion: then it keeps its own gate,
    # which now is a NOT reading that source directly.
    outputs = [np.where(inv[o], o, src[o]) for o in net.outputs]
    keep = _unread(net, ops, a, b, outputs, np.isin(ops, _WIRES))
    return _rebuild(net, ops, a, b, lay, outputs, net.bias, keep)


def merge_duplicates(net: Netlist) -> Netlist:
    """Merge gates that compute the same op of the same inputs (either input order)."""
    n_in = net.n_inputs
    if net.n_signals >= 1 << 29:
        raise ValueError(f"merge_duplicates handles fewer than 2**29 signals, not {net.n_signals}")
    rep = np.arange(net.n_signals, dtype=np.int64)
    off = net.layer_offsets()
    seen_k = np.zeros(0, np.int64)
    seen_v = np.zeros(0, np.int64)
    ops_l, a_l, b_l = [], [], []
    for i, l in enumerate(net.layers):
        ops = l.ops.copy()
        a, b = _canon(ops, rep[l.a], rep[l.b])
        ops = np.where(a == b, _DIAG[ops], ops)         # NOT_B(x, x) and NOT_A(x, x) are one gate
        a, b = _canon(ops, a, b)
        sw = a > b
        ops[sw] = _SWAP[ops[sw]]
        a, b = np.where(sw, b, a), np.where(sw, a, b)
        key = (ops.astype(np.int64) << 58) | (a << 29) | b
        g = np.arange(off[i], off[i + 1])
        pos = np.searchsorted(seen_k, key)
        hit = pos < len(seen_k)
        hit[hit] = seen_k[pos[hit]] == key[hit]
        rep[g[hit]] = seen_v[pos[hit]]
        new = ~hit
        uk, first, back = np.unique(key[new], return_index=True, return_inverse=True)
        gn = g[new]
        rep[gn] = gn[first][back.reshape(-1)]
        seen_k = np.concatenate([seen_k, uk])
        seen_v = np.concatenate([seen_v, gn[first]])
        order = np.argsort(seen_k, kind="stable")
        seen_k, seen_v = seen_k[order], seen_v[order]
        ops_l.append(ops); a_l.append(a); b_l.append(b)
    ops, a, b, lay = _flat(net)
    if ops_l:
        ops, a, b = np.concatenate(ops_l), np.concatenate(a_l), np.concatenate(b_l)
    keep = rep[n_in:] == np.arange(n_in, net.n_signals)
    outputs = [rep[o] for o in net.outputs]
    return _rebuild(net, ops, a, b, lay, outputs, net.bias, keep)


def remove_dead(net: Netlist) -> Netlist:
    """Remove every gate that cannot change a class score (:func:`lgn_fpga.netlist.analysis.analyze`).

    Constant inputs of the kept gates are substituted into their truth tables
    and constant outputs folded into ``bias`` on the way, as the analysis'
    notion of "unused" assumes.
    """
    an = analyze(net)
    ops, a, b, lay, outputs, bias = _apply_constants(net, an)
    return _rebuild(net, ops, a, b, lay, outputs, bias, an.gate_live.copy())


DEFAULT_PASSES: tuple = (propagate_constants, fold_wires, merge_duplicates, remove_dead)


def optimize(net: Netlist, passes: Sequence[Pass] = DEFAULT_PASSES, max_rounds: int = 10):
    """Run ``passes`` in order, repeatedly, until a whole round changes nothing.

    Returns
    -------
    (Netlist, list of (str, Netlist))
        The optimized netlist and every intermediate one, labelled
        ``"<pass name>"`` (``"<name> #<round>"`` after the first round);
        rounds that changed nothing are left out.  ``meta["passes"]`` of the
        result lists the passes that changed something.
    """
    if not isinstance(max_rounds, int) or max_rounds < 1:
        raise ValueError(f"max_rounds must be a positive integer, not {max_rounds!r}")
    steps, applied = [], []
    cur = net
    for r in range(1, max_rounds + 1):
        start = cur.content_hash()
        for p in passes:
            prev = cur.content_hash()
            nxt = p(cur)
            if nxt.content_hash() != prev:
                label = p.__name__ if r == 1 else f"{p.__name__} #{r}"
                steps.append((label, nxt))
                applied.append(label)
            cur = nxt
        if cur.content_hash() == start:
            break
    cur = cur.copy()
    cur.meta["passes"] = list(net.meta.get("passes", [])) + applied
    return cur, steps


# -- pipelining ---------------------------------------------------------------------------------

def optimization_note(net: Netlist, name) -> str | None:
    """One line when :func:`optimize` would still remove gates from ``net`` (a raw export, an imported or
    hand-made netlist), else None.  Cheap: 0.4 s for 48,000 gates, 0.08 s once optimized."""
    removed = net.n_gates - optimize(net)[0].n_gates
    if removed <= 0:
        return None
    return (f"note: {name} is not optimized: the passes would remove {removed:,} of its {net.n_gates:,} gates "
            f"(run 'lgn-fpga export {name} -o optimized.lgn')")


def _levels(net: Netlist):
    """Level of every signal: 0 for input bits, ``l + 1`` for the gates of layer ``l``."""
    return net.signal_layer().astype(np.int64) + 1


def relevel(net: Netlist, stages: int = 1, max_sweeps: int = 4) -> Netlist:
    """Move gates between layers, within their ASAP/ALAP range, where that saves pipeline registers.

    The cost is :func:`lgn_fpga.hdl.plan.register_counts` with a register
    stage after every ``stages`` layers; the depth stays the same.  Greedy:
    each sweep visits every gate once and moves it to the level of least cost
    given the others; it stops when a sweep moves nothing.  Returns the input
    unchanged unless the count went down.
    """
    from ..hdl.plan import check_stages, register_counts
    k = check_stages(stages)
    n_in, D = net.n_inputs, net.depth
    if D < 2 or k >= D:
        return net
    n_groups = -(-D // k)
    ops, a, b, lay = _flat(net)
    live = structural_live(net)
    lv = (_levels(net)).tolist()
    ua, ub = USES_A[ops] & live[n_in:], USES_B[ops] & live[n_in:]
    readers = [[] for _ in range(net.n_signals)]
    for j in np.nonzero(ua)[0].tolist():
        readers[int(a[j])].append(n_in + j)
    for j in np.nonzero(ub)[0].tolist():
        if not (ua[j] and a[j] == b[j]):
            readers[int(b[j])].append(n_in + j)
    # Every pointer constrains the order (the IR keeps inputs an op ignores); only reads cost registers.
    pointers = [[] for _ in range(net.n_signals)]
    for j, (x, y) in enumerate(zip(a.tolist(), b.tolist())):
        pointers[x].append(n_in + j)
        if y != x:
            pointers[y].append(n_in + j)
    out_read = np.zeros(net.n_signals, bool)
    for o in net.outputs:
        out_read[o] = True
    registered = np.ones(net.n_signals, bool)
    registered[n_in:] = ~np.isin(ops, list(_CONST))
    grp = lambda L: (L - 1) // k if L >= 1 else 0

    def span(s):
        """Registers signal s needs: group of its last reader minus its own group."""
        if not registered[s]:
            return 0
        hi = n_groups if out_read[s] else -1
        for r in readers[s]:
            hi = max(hi, grp(lv[r]))
        return max(0, hi - grp(lv[s]))

    before = register_counts(net, k)["registers"]
    for _ in range(max_sweeps):
        moved = False
        for j in np.nonzero(live[n_in:])[0].tolist():
            g = n_in + j
            ins = list({int(x) for x, u in ((a[j], ua[j]), (b[j], ub[j])) if u})
            lo = max(lv[int(a[j])], lv[int(b[j])]) + 1
            hi = min([lv[r] for r in pointers[g]] + [D + 1]) - 1
            if lo >= hi:
                continue
            cur = best = lv[g]
            best_c = span(g) + sum(span(x) for x in ins)
            for L in range(lo, hi + 1):
                if grp(L) == grp(cur):
                    continue
                lv[g] = L
                c = span(g) + sum(span(x) for x in ins)
                if c < best_c:
                    best, best_c = L, c
            lv[g] = best
            moved |= best != cur
        if not moved:
            break
    out = _rebuild(net, ops, a, b, np.array(lv[n_in:], np.int64) - 1, net.outputs, net.bias)
    if out.depth != D or register_counts(out, k)["registers"] >= before:
        return net
    return out


def insert_carries(net: Netlist, stages: int = 1) -> Netlist:
    """Make every carry register an explicit pass-through gate.

    With a register stage after every ``stages`` layers, a signal read more
    than one stage after the one that produced it is copied, by a ``PASS_A``
    gate in the last layer of each stage in between; readers then take the
    copy from the stage just before theirs, and class outputs come from the
    last stage.  The number of gates added equals
    ``plan.register_counts(net, stages)["carry"]``; afterwards that count is 0.
    Not part of :func:`optimize` (:func:`fold_wires` would undo it): a lowering
    step for hardware generators that want every stage to read only the one
    before.
    """
    from ..hdl.plan import check_stages, stage_of
    stages = check_stages(stages)
    n_in, D = net.n_inputs, net.depth
    if D == 0:
        return net.copy()
    ops, a, b, lay = _flat(net)
    lvl = _levels(net)
    last_stage = stage_of(D, stages)
    # the layer a copy made in stage t lives in: the last layer of stage t
    copy_layer = lambda t: min(t * stages, D) - 1
    # Only what the hardware builds is carried: reads by live gates, of signals that are not constants.
    live = structural_live(net)[n_in:]
    ua, ub = USES_A[ops] & live, USES_B[ops] & live
    const = np.zeros(net.n_signals, bool)
    const[n_in:] = np.isin(ops, list(_CONST))
    new_ops, new_a, new_lay = [], [], []
    copies = {}                      # (signal, stage) -> id of the copy (provisional ids after the gates)
    next_id = net.n_signals

    def at(s, t):
        """Id of signal s as seen at the end of stage t (a copy when s is from an earlier stage)."""
        nonlocal next_id
        if const[s] or stage_of(int(lvl[s]), stages) >= t:
            return s
        key = (s, t)
        if key not in copies:
            prev = at(s, t - 1)
            copies[key] = next_id
            new_ops.append(PASS_A); new_a.append(prev); new_lay.append(copy_layer(t))
            next_id += 1
        return copies[key]

    a2, b2 = a.copy(), b.copy()
    for j in range(len(ops)):
        t = stage_of(int(lvl[n_in + j]), stages)
        if ua[j]:
            a2[j] = at(int(a[j]), t - 1)
        if ub[j]:
            b2[j] = at(int(b[j]), t - 1)
    a2, b2 = _canon(ops, a2, b2)
    outs = [np.array([at(int(s), last_stage) for s in o], np.int64) for o in net.outputs]
    all_ops = np.concatenate([ops, np.array(new_ops, np.uint8)])
    all_a = np.concatenate([a2, np.array(new_a, np.int64)])
    all_b = np.concatenate([b2, np.array(new_a, np.int64)])
    all_lay = np.concatenate([lay, np.array(new_lay, np.int64)])
    # The copies were numbered after the original gates; _rebuild sorts by layer and renumbers.
    return _rebuild(net, all_ops, all_a, all_b, all_lay, outs, net.bias)
