"""Statistics and resource estimates: counts that mirror the hardware lgn_fpga.hdl builds."""
import json

import pytest

from lgn_fpga.netlist import stats as S
from lgn_fpga.netlist.passes import optimize
from lgn_fpga.netlist.random import random_netlists


def test_comparator_luts():
    # byte > 127 is bit 7; > 63 needs bits 7, 6; > 0 needs all 8 bits (a 3-LUT chain)
    assert [S.comparator_luts(t) for t in (127, 63, 191, 0, 254, 31, 15, 7, 200)] == [0, 1, 1, 3, 3, 1, 1, 2, 3]


@pytest.mark.heavy
def test_popcount_model_matches_hdl():
    from amaranth.hdl import Fragment
    from lgn_fpga.hdl import popcount
    for sizes, bias in (([50] * 10, [0] * 10), ([3, 0, 17, 120], [0, 4, 1, 0]), ([1], [0])):
        for k in (1, 2, 3):
            for tables, bits, ports in ((0, 12, 2), (7, 12, 2), (1000, 12, 2), (5, 9, 1)):
                pc = popcount.PopCount(sizes, bias, levels_per_stage=k, tables=tables, table_bits=bits,
                                       table_ports=ports)
                Fragment.get(pc, None)
                mine = S._popcount(sizes, bias, k, tables, bits, ports)
                assert (mine["full_adders"], mine["latency"], mine["score_width"], mine["bram"]) == \
                    (pc.full_adders, pc.latency, pc.score_width, pc.brams)
                assert mine["lookups"] == sum(pc.lookups) <= tables


def test_estimate_shape_and_monotonicity():
    for net in random_netlists(50, 12):
        opt, _ = optimize(net)
        for fam in S.FAMILIES:
            for k in (1, 2, 3):
                e = S.estimate_resources(opt, fam, k)
                assert set(e) >= {"lut", "ff", "bram", "cells", "latency", "parts"}
                assert e["lut"] == sum(p["lut"] for p in e["parts"].values())
                assert e["ff"] == sum(p["ff"] for p in e["parts"].values())
                assert e["cells"] >= max(e["lut"], e["ff"]) if fam == "ice40" else e["cells"] >= e["lut"]
            # removing gates never makes the gates grow (a new bias may cost a constant adder in the popcount)
            assert S.estimate_resources(opt, fam)["parts"]["gates"]["lut"] <= \
                S.estimate_resources(net, fam)["parts"]["gates"]["lut"]
    net = random_netlists(51, 1)[0]
    with pytest.raises(ValueError, match="family must be one of"):
        S.estimate_resources(net, "xilinx")
    with pytest.raises(ValueError, match="stages must be a positive integer"):
        S.estimate_resources(net, "ice40", 0)


def test_pipeline_gate_luts_fold_only_with_several_layers_per_stage():
    net = optimize(random_netlists(52, 3)[2])[0]
    one = S.estimate_resources(net, "ice40", 1)["parts"]["gates"]["lut"]
    two = S.estimate_resources(net, "ice40", 2)["parts"]["gates"]["lut"]
    assert two <= one


def test_summary_is_json_and_text():
    net = optimize(random_netlists(53, 2)[1])[0]
    s = S.summarize(net, 2)
    json.dumps(s)
    assert s["gates"] == net.n_gates and sum(s["gates_by_op"].values()) == net.n_gates
    assert s["registers"] == S.register_counts(net, 2)
    text = S.format_summary(s)
    for word in ("gates by op", "fan-out", "carry registers", "ice40", "ecp5"):
        assert word in text


def test_estimated_latency_is_the_hardware_latency():
    """stats and the HDL agree on latency for any stages / popcount_levels (one source: the same level plan)."""
    import numpy as np
    from lgn_fpga.hdl.core import ClassifierCore
    from lgn_fpga.netlist.random import random_netlist
    from lgn_fpga.netlist.stats import estimate_resources
    net = random_netlist(np.random.default_rng(3), shape=(1, 8, 8), thresholds=3, widths=(300, 200, 100),
                         n_classes=10)
    for stages, pl in ((1, None), (2, None), (3, None), (1, 1), (2, 5)):
        core = ClassifierCore(net, stages, popcount_levels=pl)
        core._MustUse__silence = True     # only its latency is read; never elaborated
        assert estimate_resources(net, "ice40", stages, popcount_levels=pl)["latency"] == core.latency, (stages, pl)
