"""Optimizing passes: each does its job on a hand-built netlist, and none changes a single score."""
import numpy as np
import pytest

from lgn_fpga.data.encoding import ThermometerEncoding
from lgn_fpga.gates import CONST_GATES, GATES, NOT_A, PASS_A, PASS_B, WIRE_GATES, compose_not
from lgn_fpga.netlist import Layer, Netlist
from lgn_fpga.netlist import passes as P
from lgn_fpga.netlist.analysis import analyze
from lgn_fpga.netlist.evaluate import scores
from lgn_fpga.netlist.random import random_bits, random_netlists
from lgn_fpga.hdl.plan import register_counts

G = {g.name: g.id for g in GATES}
ENC = ThermometerEncoding.make((1, 2, 2), 1)     # 4 input bits: signals 0..3


def net_of(layers, outputs, bias=None):
    return Netlist(ENC, [Layer(*map(np.array, l)) for l in layers], [np.array(o) for o in outputs],
                   bias=bias).validate()


def all_bits():
    """Every one of the 16 input vectors: equality on them is equality of functions."""
    return np.array([[(v >> i) & 1 for i in range(4)] for v in range(16)], bool)


def same_scores(a: Netlist, b: Netlist, bits=None):
    bits = all_bits() if bits is None else bits
    sa, sb = scores(a, bits=bits, backend="reference"), scores(b, bits=bits, backend="reference")
    assert np.array_equal(sa, sb)


def ops_of(net):
    return [GATES[int(o)].name for l in net.layers for o in l.ops]


# -- properties on random netlists ---------------------------------------------------------

PASSES = {
    "propagate_constants": P.propagate_constants,
    "fold_wires": P.fold_wires,
    "merge_duplicates": P.merge_duplicates,
    "remove_dead": P.remove_dead,
    "optimize": lambda n: P.optimize(n)[0],
    "relevel": P.relevel,
    "relevel_2": lambda n: P.relevel(n, 2),
    "insert_carries": P.insert_carries,
    "insert_carries_3": lambda n: P.insert_carries(n, 3),
}


@pytest.mark.parametrize("name", list(PASSES))
def test_pass_preserves_scores_on_random_netlists(name):
    for i, net in enumerate(random_netlists(hash(name) % 1000, 45)):
        bits = random_bits(net, 300, seed=i)
        before = scores(net, bits=bits, backend="numpy")
        h = net.content_hash()
        out = PASSES[name](net)
        assert net.content_hash() == h, "a pass modified its input"
        assert np.array_equal(scores(out, bits=bits, backend="numpy"), before), (name, i)
        out.validate()


def test_passes_never_add_gates_or_keep_removable_ones():
    for net in random_netlists(7, 40):
        out, _ = P.optimize(net)
        assert out.n_gates <= net.n_gates
        an = analyze(out)
        assert an.gate_live.all(), "optimize left an unused gate"
        assert not np.isin(np.concatenate([l.ops for l in out.layers] or [np.zeros(0)]), list(CONST_GATES)).any()
        # the only wires left are NOTs read by class outputs
        outs = set(np.concatenate(out.outputs).tolist()) if out.outputs else set()
        off = out.layer_offsets()
        for i, l in enumerate(out.layers):
            for j, op in enumerate(l.ops.tolist()):
                if op in WIRE_GATES:
                    assert op not in (PASS_A, PASS_B) and int(off[i]) + j in outs


def test_optimize_is_idempotent_and_logs_passes():
    for net in random_netlists(8, 15):
        out, steps = P.optimize(net)
        again, steps2 = P.optimize(out)
        assert again.content_hash() == out.content_hash() and steps2 == []
        assert out.meta["passes"] == [label for label, _ in steps]
        if steps:
            assert steps[-1][1].content_hash() == out.content_hash()


def test_remove_dead_leaves_exactly_the_live_gates():
    for net in random_netlists(9, 30):
        an = analyze(net)
        out = P.remove_dead(net)
        assert out.n_gates == int(an.gate_live.sum())


# -- each pass on a hand-built netlist --------------------------------------------------------

def test_constant_gate_and_what_it_feeds():
    # g4 = FALSE; g5 = OR(x0, g4) -> x0 ; g6 = AND(x1, g4) -> 0 ; outputs: class0 {g5}, class1 {g6, g6}
    net = net_of([([G["FALSE"]], [0], [1]), ([G["OR"], G["AND"]], [0, 1], [4, 4])], [[5], [6, 6]])
    out = P.propagate_constants(net)
    same_scores(net, out)
    assert ops_of(out) == ["A"]                   # OR(x0, 0) became a pass-through of x0
    assert [len(o) for o in out.outputs] == [1, 0]
    assert out.bias.tolist() == [0, 0]


def test_constant_one_outputs_fold_into_bias():
    # g4 = TRUE, g5 = NAND(x0, NOT... ) ; class0 counts g4 twice and x2 once
    net = net_of([([G["TRUE"], G["XOR"]], [0, 1], [1, 1])], [[4, 4, 2], [5]], bias=[1, 0])
    out = P.propagate_constants(net)
    same_scores(net, out)
    assert out.bias.tolist() == [3, 0]
    assert out.outputs[0].tolist() == [2]
    # XOR(x1, x1) is constant 0 only through the same-input rule, which is wire folding's
    assert out.n_gates == 1


def test_fold_wires_pass_through_and_not():
    # g4 = A(x0); g5 = NOT_B(., x1); g6 = AND(g4, g5) -> AND(x0, ~x1) = A_AND_NOT_B(x0, x1)
    net = net_of([([PASS_A, G["NOT_B"]], [0, 2], [3, 1]), ([G["AND"]], [4], [5])], [[6]])
    out = P.fold_wires(net)
    same_scores(net, out)
    assert ops_of(out) == ["A_AND_NOT_B"]
    assert out.layers[0].a.tolist() == [0] and out.layers[0].b.tolist() == [1]


def test_fold_wires_keeps_a_not_that_feeds_an_output():
    # g4 = NOT_A(x0); g5 = B(., g4) passes it on; outputs: {g5, g4}; and g6 = OR(g4, x1) reads it
    net = net_of([([NOT_A], [0], [0]), ([PASS_B, G["OR"]], [1, 4], [4, 1])], [[5, 4], [6]])
    out = P.fold_wires(net)
    same_scores(net, out)
    assert sorted(ops_of(out)) == sorted(["NOT_A", "NOT_A", "NOT_A_OR_B"])
    assert out.n_gates == 3                       # each inverted output keeps a NOT of its own
    assert compose_not(G["OR"], invert_a=True) == G["NOT_A_OR_B"]


def test_fold_wires_same_input_rule():
    # g4 = NOT_A(x0); g5 = XOR(x0, ~x0) = TRUE; g6 = AND(x2, x2) = x2
    net = net_of([([NOT_A], [0], [0]), ([G["XOR"], G["AND"]], [0, 2], [4, 2])], [[5], [6]])
    out = P.fold_wires(net)
    same_scores(net, out)
    assert ops_of(out) == ["TRUE"]
    assert out.outputs[1].tolist() == [2]
    out2 = P.propagate_constants(out)
    assert out2.n_gates == 0 and out2.bias.tolist() == [1, 0]


def test_merge_duplicates_including_commutative_forms():
    # AND(x0,x1), AND(x1,x0), A_AND_NOT_B(x2,x3), NOT_A_AND_B(x3,x2), XOR(x0,x1) in layer 0;
    # layer 1 reads them; its two ORs become duplicates once their inputs are merged
    l0 = ([G["AND"], G["AND"], G["A_AND_NOT_B"], G["NOT_A_AND_B"], G["XOR"]], [0, 1, 2, 3, 0], [1, 0, 3, 2, 1])
    l1 = ([G["OR"], G["OR"]], [4, 7], [6, 5])
    net = net_of([l0, l1], [[9, 10], [8]])
    out = P.merge_duplicates(net)
    same_scores(net, out)
    assert out.n_gates == 4                       # AND, A_AND_NOT_B, XOR, OR
    assert out.outputs[0][0] == out.outputs[0][1]


def test_merge_across_layers_keeps_the_earliest():
    l0 = ([G["XOR"]], [0], [1])
    l1 = ([G["XOR"], G["AND"]], [1, 4], [0, 2])
    net = net_of([l0, l1], [[5, 6]])
    out = P.merge_duplicates(net)
    same_scores(net, out)
    assert [len(l) for l in out.layers] == [1, 1]
    assert out.outputs[0].tolist() == [4, 5]


def test_remove_dead_and_constant_inputs():
    # g4 = AND(x0, x1) unused; g5 = FALSE; g6 = OR(x2, g5) -> live through x2 only
    net = net_of([([G["AND"], G["FALSE"]], [0, 0], [1, 0]), ([G["OR"]], [2], [5])], [[6]])
    out = P.remove_dead(net)
    same_scores(net, out)
    assert ops_of(out) == ["A"] and out.depth == 1
    assert out.layers[0].a.tolist() == [2]


def test_all_outputs_constant_gives_an_empty_netlist():
    net = net_of([([G["TRUE"], G["FALSE"]], [0, 0], [0, 0])], [[4, 5], [5]], bias=[0, 1])
    out, _ = P.optimize(net)
    same_scores(net, out)
    assert out.n_gates == 0 and out.depth == 0 and out.bias.tolist() == [1, 1]


# -- pipelining ------------------------------------------------------------------------------

def chain_net():
    """x0 -> g4 -> g5 -> g6 -> g7 (XORs with x1), and an output that reads g4 directly."""
    x = G["XOR"]
    return net_of([([x], [0], [1]), ([x], [4], [1]), ([x], [5], [1]), ([x], [6], [1])], [[7, 4]])


def test_register_counts_hand_example():
    net = chain_net()
    r = register_counts(net, 1)
    # x0: read in group 0 -> 0; x1: read up to group 3 -> 3 carries; g4: read by g5 (group 1) and the
    # output (after group 3) -> 4 registers, 3 of them carries; g5, g6, g7: 1 each
    assert r == {"groups": 4, "registers": 3 + 4 + 3, "carry": 3 + 3}
    r2 = register_counts(net, 2)
    # groups {L0, L1}, {L2, L3}: x1 crosses 1 boundary, g4 2 (1 carry), g5 1, g7 1
    assert r2 == {"groups": 2, "registers": 1 + 2 + 1 + 1, "carry": 1 + 1}


def test_insert_carries_makes_them_explicit():
    for net in random_netlists(11, 30) + [chain_net()]:
        for k in (1, 2, 3):
            before = register_counts(net, k)
            out = P.insert_carries(net, k)
            after = register_counts(out, k)
            assert out.n_gates - net.n_gates == before["carry"]
            assert after["carry"] == 0 and after["registers"] == before["registers"]
            assert out.depth == net.depth


def test_relevel_moves_a_gate_to_save_registers():
    # g5 = AND(x1, x2) sits in layer 0 but only the last layer reads it, and x1, x2 are carried to
    # layer 2 anyway: in layer 2 (ALAP) it needs 1 register instead of 3
    x = G["XOR"]
    net = net_of([([x, G["AND"]], [0, 1], [1, 2]), ([x], [4], [3]), ([x, x], [6, 6], [1, 2]),
                  ([G["OR"], x], [7, 8], [5, 5])], [[9], [10]])
    before = register_counts(net, 1)
    out = P.relevel(net, 1)
    same_scores(net, out)
    assert register_counts(out, 1)["registers"] == before["registers"] - 2
    assert [len(l) for l in out.layers] == [1, 1, 3, 2]
    # a move that would pull an uncarried input along is not taken
    net2 = net_of([([x, G["AND"]], [0, 0], [1, 2]), ([x], [4], [1]), ([x], [6], [1]), ([G["OR"]], [7], [5])],
                  [[8]])
    assert P.relevel(net2, 1) is net2


def test_relevel_never_makes_things_worse():
    for net in random_netlists(12, 30):
        for k in (1, 2):
            out = P.relevel(net, k)
            assert register_counts(out, k)["registers"] <= register_counts(net, k)["registers"]


def test_pass_argument_checks():
    net = chain_net()
    with pytest.raises(ValueError, match="stages must be a positive integer"):
        P.relevel(net, 0)
    with pytest.raises(ValueError, match="stages must be a positive integer"):
        P.insert_carries(net, True)
    with pytest.raises(ValueError, match="max_rounds must be a positive integer"):
        P.optimize(net, max_rounds=0)


def test_register_counts_match_the_hardware_pipeline():
    """The count is the register_bits of the gate pipeline lgn_fpga.hdl builds."""
    from lgn_fpga.hdl import pipeline
    from amaranth.hdl import Fragment
    for net in random_netlists(13, 12) + [chain_net()]:
        for k in (1, 2, 3):
            gp = pipeline.GatePipeline(net, k)
            Fragment.get(gp, None)
            r = register_counts(net, k)
            assert (gp.register_bits, gp.latency) == (r["registers"], r["groups"])
