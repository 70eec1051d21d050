# amaranth: UnusedElaboratable=no
"""Binarizer, gate logic, GatePipeline, PopCount and ArgMax, each against the software model."""
import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from lgn_fpga.data.encoding import ThermometerEncoding
from lgn_fpga.gates import GATES, NUM_GATES, TRUTH
from lgn_fpga.hdl.argmax import ArgMax, class_width
from lgn_fpga.hdl.binarizer import Binarizer
from lgn_fpga.hdl.pipeline import GatePipeline, gate_value
from lgn_fpga.hdl.popcount import PopCount, plan_levels, score_width
from lgn_fpga.hdl.simulate import pack_bits, pack_bytes, run_stream
from lgn_fpga.netlist.evaluate import scores
from lgn_fpga.netlist.ir import Layer, Netlist
from lgn_fpga.netlist.random import random_netlist


def check_stream(dut, payloads, expected, *, stalls=True, seed=0):
    """Full-rate run (exact latency, an item every cycle) and, optionally, a stalled run."""
    r = run_stream(dut, payloads)
    assert r.outputs == list(expected)
    assert (r.latencies() == dut.latency).all(), f"latencies {set(r.latencies().tolist())} != {dut.latency}"
    assert r.in_cycles == list(range(len(payloads))), "an input was refused while the sink was ready"
    assert r.ready_low_while_idle == 0
    if stalls:
        r = run_stream(dut, payloads, valid_prob=0.6, ready_prob=0.4, seed=seed)
        assert r.outputs == list(expected), "items lost, duplicated or corrupted under back-pressure"
        assert (r.latencies() >= dut.latency).all()


# -- gates -----------------------------------------------------------------------------------------

def test_gate_value_matches_truth_table():
    # a = 0011, b = 0101 (bit i of a and b walks the four input pairs (0,0) (0,1) (1,0) (1,1))
    m = Module()
    a, b = Signal(4), Signal(4)
    outs = [Signal(4, name=f"g{op}") for op in range(NUM_GATES)]
    for op, o in enumerate(outs):
        m.d.comb += o.eq(gate_value(op, a, b, 4))
    sim = Simulator(m)
    got = {}

    async def bench(ctx):
        ctx.set(a, 0b1100)     # bit i: a of pair i (pairs (0,0), (0,1), (1,0), (1,1))
        ctx.set(b, 0b1010)
        for op, o in enumerate(outs):
            got[op] = ctx.get(o)

    sim.add_testbench(bench)
    sim.run()
    for op in range(NUM_GATES):
        want = sum(int(TRUTH[op][i]) << i for i in range(4))
        assert got[op] == want, f"gate {GATES[op].name}"


def test_gate_value_rejects_unknown_op():
    with pytest.raises(ValueError, match="op must be a gate id in 0..15, not 16"):
        gate_value(16, Signal(), Signal(), 1)


# -- binarizer -------------------------------------------------------------------------------------

_ENCODINGS = {
    "3": ThermometerEncoding.make((3, 2, 3), [[0, 9, 200], [1, 2, 254], [63, 127, 191]]),
    "5": ThermometerEncoding.make((2, 3, 1), [[3, 50, 51, 100, 250], [0, 1, 2, 3, 254]]),   # 3-bit levels across bytes
    "1": ThermometerEncoding.make((1, 3, 5), [127]),
}


@pytest.mark.parametrize("registered,wire,t", [(False, "bytes", "3"), (True, "bytes", "3"), (False, "levels", "3"),
                                               (True, "levels", "5"), (False, "levels", "1")])
def test_binarizer_matches_encoding(registered, wire, t):
    # the same thermometer bits from pixel bytes and from packed levels (the two wire formats)
    enc = _ENCODINGS[t]
    rng = np.random.default_rng(1)
    th = enc.threshold_array()
    # Every threshold, and the byte on each side of it, on every pixel; plus all-0, all-255 and random.
    edge = np.concatenate([th.ravel(), th.ravel() + 1, np.maximum(th.ravel().astype(int) - 1, 0)]).astype(np.uint8)
    imgs = [np.zeros(enc.shape, np.uint8), np.full(enc.shape, 255, np.uint8)]
    imgs += [np.full(enc.shape, v, np.uint8) for v in edge]
    imgs += list(rng.integers(0, 256, (30,) + enc.shape).astype(np.uint8))
    imgs = np.stack(imgs)
    dut = Binarizer(enc, registered=registered, wire=wire)
    assert dut.latency == int(registered)
    payload = imgs if wire == "bytes" else enc.pack_levels(imgs)
    check_stream(dut, pack_bytes(payload), pack_bits(enc.encode(imgs)))


def test_binarizer_arguments():
    with pytest.raises(TypeError, match="encoding must be a ThermometerEncoding, not 3"):
        Binarizer(3)
    with pytest.raises(TypeError, match="registered must be a bool, not 1"):
        Binarizer(ThermometerEncoding.make((1, 2, 2), 1), registered=1)


# -- gate pipeline ------------------------------------------------------------------------------------

def signal_values(net, bits):
    """Golden value of every class output signal, via the golden evaluator (one class per signal)."""
    flat = np.concatenate(net.outputs) if net.outputs else np.zeros(0, np.int32)
    probe = net.copy(outputs=[np.array([s]) for s in flat], bias=np.zeros(len(flat), np.int32),
                     class_names=[str(i) for i in range(len(flat))])
    return scores(probe, bits=bits).astype(bool)


@pytest.mark.parametrize("stages", [1, 2, 3, 5])
@pytest.mark.parametrize("seed", [0, 1])
def test_gate_pipeline_random(stages, seed):
    rng = np.random.default_rng(seed)
    net = random_netlist(rng, widths=(24, 20, 18, 16), n_classes=3, skip_prob=0.4)
    bits = rng.random((40, net.n_inputs)) < 0.5
    dut = GatePipeline(net, stages)
    assert dut.latency == -(-net.depth // stages)
    check_stream(dut, pack_bits(bits), pack_bits(signal_values(net, bits)), seed=seed)


def test_gate_pipeline_skips_constants_and_inputs_as_outputs():
    # Outputs straight from input bits, from a constant gate and from layer 0 of a 3-layer netlist:
    # all must ride through carry registers (or stay constant) to the end.
    enc = ThermometerEncoding.make((1, 2, 2), 1)          # 4 input bits
    l0 = Layer([1, 15, 0, 6], [0, 1, 2, 3], [1, 2, 3, 0])  # AND, TRUE, FALSE, XOR
    l1 = Layer([7, 12], [4, 7], [5, 4])                     # OR(l0g0, l0g3), NOT_A(l0g0)
    l2 = Layer([9], [8], [2])                               # XNOR(l1g0, input 2): skips two layers
    net = Netlist(enc, [l0, l1, l2], [np.array([0, 5, 10]), np.array([6, 7, 3, 9]), np.array([4, 0])]).validate()
    bits = np.array([[(i >> j) & 1 for j in range(4)] for i in range(16)], bool)
    for stages in (1, 2, 3):
        dut = GatePipeline(net, stages)
        check_stream(dut, pack_bits(bits), pack_bits(signal_values(net, bits)), stalls=stages == 1)


def test_gate_pipeline_arguments():
    net = random_netlist(np.random.default_rng(0))
    with pytest.raises(ValueError, match="stages must be a positive integer .*, not 0"):
        GatePipeline(net, 0)
    with pytest.raises(TypeError, match="netlist must be a Netlist, not 'x'"):
        GatePipeline("x")


# -- popcount --------------------------------------------------------------------------------------

@pytest.mark.parametrize("sizes,bias,lps", [
    ([1, 2, 3, 0], [0, 1, 0, 5], 1),
    ([7, 7, 7], [0, 0, 3], 1),
    ([40, 33, 1], [2, 0, 9], 1),
    ([40, 33, 1], [2, 0, 9], 2),
    ([130, 130], [0, 1], 3),
])
def test_popcount(sizes, bias, lps):
    rng = np.random.default_rng(sum(sizes))
    n = sum(sizes)
    rows = [np.zeros(n, bool), np.ones(n, bool)] + list(rng.random((30, n)) < rng.random((30, 1)))
    bits = np.stack(rows)
    offs = np.concatenate([[0], np.cumsum(sizes)])
    dut = PopCount(sizes, bias, levels_per_stage=lps)
    W = dut.score_width
    assert W == score_width(sizes, bias)
    assert dut.latency == -(-max(plan_levels(s) for s in sizes) // lps) + 1
    expected = []
    for r in bits:
        s = [int(r[offs[k]:offs[k + 1]].sum()) + bias[k] for k in range(len(sizes))]
        expected.append(sum(v << (k * W) for k, v in enumerate(s)))
    check_stream(dut, pack_bits(bits), expected)


@pytest.mark.parametrize("sizes,bias,lps,tables,bits,ports", [
    ([40, 33, 1], [2, 0, 9], 1, 5, 4, 2),
    ([40, 33, 1], [2, 0, 9], 2, 100, 5, 1),
    ([8, 0, 12], [0, 3, 0], 1, 3, 4, 2),     # a class without bits, tables that take a whole class
])
def test_popcount_with_count_tables(sizes, bias, lps, tables, bits, ports):
    # Count tables (block-RAM lookups) in the first stage give the same scores, under stalls too.
    rng = np.random.default_rng(sum(sizes) + tables)
    n = sum(sizes)
    rows = [np.zeros(n, bool), np.ones(n, bool)] + list(rng.random((30, n)) < rng.random((30, 1)))
    bits_in = np.stack(rows)
    offs = np.concatenate([[0], np.cumsum(sizes)])
    dut = PopCount(sizes, bias, levels_per_stage=lps, tables=tables, table_bits=bits, table_ports=ports)
    assert sum(dut.lookups) == min(tables, sum(s // bits for s in sizes)) and dut.brams == -(-sum(dut.lookups) // ports)
    W = dut.score_width
    expected = []
    for r in bits_in:
        s = [int(r[offs[k]:offs[k + 1]].sum()) + bias[k] for k in range(len(sizes))]
        expected.append(sum(v << (k * W) for k, v in enumerate(s)))
    check_stream(dut, pack_bits(bits_in), expected)


def test_popcount_arguments():
    with pytest.raises(ValueError, match="group_sizes must be a non-empty list"):
        PopCount([])
    with pytest.raises(ValueError, match="bias must be 2 non-negative integers"):
        PopCount([1, 2], [0])
    with pytest.raises(ValueError, match="levels_per_stage must be a positive integer, not 0"):
        PopCount([3], levels_per_stage=0)
    with pytest.raises(ValueError, match="table_bits must be an integer >= 2, not 1"):
        PopCount([3], tables=2, table_bits=1)


# -- argmax ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("k,lps", [(1, 1), (2, 1), (3, 1), (5, 1), (10, 1), (10, 2), (16, 3), (17, 1)])
def test_argmax_lowest_index_on_ties(k, lps):
    W = 3
    rng = np.random.default_rng(k)
    rows = [np.zeros(k, int), np.full(k, 7)]                  # all tied: class 0
    rows += [np.eye(k, dtype=int)[j] * 7 for j in range(k)]   # one winner each
    rows += list(rng.integers(0, 3, (40, k)))                 # narrow range: many ties
    rows += list(rng.integers(0, 8, (20, k)))
    dut = ArgMax(k, W, levels_per_stage=lps)
    assert len(dut.o.payload) == class_width(k)
    payloads = [sum(int(v) << (j * W) for j, v in enumerate(r)) for r in rows]
    expected = [int(np.argmax(r)) for r in rows]
    check_stream(dut, payloads, expected)


def test_argmax_arguments():
    with pytest.raises(ValueError, match="n_classes must be a positive integer, not 0"):
        ArgMax(0, 4)
    with pytest.raises(ValueError, match="score_width must be a positive integer, not -1"):
        ArgMax(3, -1)


@pytest.mark.parametrize("stages", [1, 2, 3])
def test_gate_pipeline_registers_match_the_netlist_estimate(stages):
    """The flip-flops built equal what ``lgn-fpga stats`` predicts (lgn_fpga.hdl.plan.register_counts)."""
    from lgn_fpga.hdl.export import to_rtlil
    from lgn_fpga.hdl.plan import register_counts
    for seed in range(3):
        net = random_netlist(np.random.default_rng(seed), widths=(40, 30, 30, 20), n_classes=4, skip_prob=0.4)
        dut = GatePipeline(net, stages)
        to_rtlil(dut)                                  # elaborate: register_bits is counted while building
        assert dut.register_bits == register_counts(net, stages)["registers"]
