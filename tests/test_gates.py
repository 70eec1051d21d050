"""The gate table is the single source of truth: every derived form must agree with the truth table."""
import itertools

import numpy as np
import pytest
import torch

from lgn_fpga import gates as G


def test_sixteen_distinct_gates_in_difflogic_order():
    assert G.NUM_GATES == 16
    assert sorted(g.id for g in G.GATES) == list(range(16))
    assert len({g.table for g in G.GATES}) == 16
    # difflogic's order: the id's bits are the truth table f00 f01 f10 f11
    for g in G.GATES:
        assert G.gate_id_from_truth(*g.table) == g.id
    assert G.by_name("AND").table == (0, 0, 0, 1)
    assert G.by_name("XOR").table == (0, 1, 1, 0)
    assert G.by_name("A").table == (0, 0, 1, 1)
    assert G.by_name("NOT_A_OR_B").table == (1, 1, 0, 1)


@pytest.mark.parametrize("op", range(16))
def test_relaxation_equals_truth_table_on_corners(op):
    c0, c1, c2, c3 = G.COEFFS[op]
    for a, b in itertools.product((0, 1), repeat=2):
        assert c0 + c1 * a + c2 * b + c3 * a * b == G.GATES[op].truth(a, b)


@pytest.mark.parametrize("op", range(16))
def test_naive_terms_equal_truth_table(op):
    a = torch.tensor([0., 0., 1., 1.])
    b = torch.tensor([0., 1., 0., 1.])
    assert G.naive_mix_terms(a, b)[op].tolist() == list(G.TRUTH[op])
    # and between corners they are the multilinear interpolation
    x, y = torch.rand(100), torch.rand(100)
    c0, c1, c2, c3 = G.COEFFS[op].tolist()
    torch.testing.assert_close(G.naive_mix_terms(x, y)[op], c0 + c1 * x + c2 * y + c3 * x * y)


@pytest.mark.parametrize("op", range(16))
def test_bitwise_and_expression_forms(op):
    rng = np.random.default_rng(op)
    a, b = rng.integers(0, 2**63, 64, dtype=np.uint64), rng.integers(0, 2**63, 64, dtype=np.uint64)
    ones = np.uint64(2**64 - 1)
    got = G.apply_bitwise(op, a, b, ones)
    for bit in range(0, 64, 7):
        ab, bb = (a >> np.uint64(bit)) & np.uint64(1), (b >> np.uint64(bit)) & np.uint64(1)
        want = [G.GATES[op].truth(int(x), int(y)) for x, y in zip(ab, bb)]
        assert (((got >> np.uint64(bit)) & np.uint64(1)).astype(int) == want).all()
    # the readable expression and the C expression evaluate to the truth table (Python ints, 1-bit mask)
    for x, y in itertools.product((0, 1), repeat=2):
        expr = G.c_expression(op, str(x), str(y)).replace("~0", "1")
        assert eval(expr) & 1 == G.GATES[op].truth(x, y)
        assert eval(G.GATES[op].expr.replace("a", str(x)).replace("b", str(y))) & 1 == G.GATES[op].truth(x, y)


@pytest.mark.parametrize("op", range(16))
def test_compose_swap_and_lut(op):
    g = G.GATES[op]
    for a, b in itertools.product((0, 1), repeat=2):
        assert G.GATES[G.swap_inputs(op)].truth(a, b) == g.truth(b, a)
        assert G.GATES[G.compose_not(op, invert_a=True)].truth(a, b) == g.truth(1 - a, b)
        assert G.GATES[G.compose_not(op, invert_b=True, invert_out=True)].truth(a, b) == 1 - g.truth(a, 1 - b)
        assert (G.lut4_init(op) >> (2 * a + b)) & 1 == g.truth(a, b)


def test_gate_classes():
    assert G.CONST_GATES == {G.FALSE, G.TRUE}
    assert G.WIRE_GATES == {G.PASS_A, G.PASS_B, G.NOT_A, G.NOT_B}
    assert all(G.GATES[i].uses_a and G.GATES[i].uses_b for i in set(range(16)) - G.CONST_GATES - G.WIRE_GATES)
    with pytest.raises(ValueError, match="gate name must be one of"):
        G.by_name("MAYBE")
