"""The 16 two-input boolean gates: the single source of truth.

Every other form of a gate in this project (torch coefficients, numpy bitwise
evaluation, C expressions, Triton constants, Amaranth/Verilog logic, LUT init
values) is *derived* from :data:`GATES` below.  Nothing else writes a gate out
by hand.

Conventions
-----------
* Gate ids follow difflogic (Petersen et al., 2022): the id, written as 4 bits
  ``f(0,0) f(0,1) f(1,0) f(1,1)`` from most to least significant, *is* the
  truth table.  So ``id = 8*f(0,0) + 4*f(0,1) + 2*f(1,0) + f(1,1)``.
* The real-valued relaxation of gate ``f`` is the unique multilinear
  polynomial that agrees with it on ``{0,1}^2``::

      y = c0 + c1*a + c2*b + c3*a*b

  with ``c0 = f00``, ``c1 = f10 - f00``, ``c2 = f01 - f00`` and
  ``c3 = f11 - f10 - f01 + f00``.  A softmax mixture of gates is then a
  mixture of these coefficient vectors: ``c = w @ COEFFS``.
* ``expr`` is a readable bitwise expression over ``a`` and ``b`` using only
  ``& | ^ ~`` and the constants ``0``/``1`` (``1`` meaning "all ones").  It is
  a convenience for generated code and is checked against the truth table by
  the tests.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "Gate", "GATES", "NUM_GATES", "COEFFS", "TRUTH", "by_name",
    "gate_id_from_truth", "apply_bitwise", "lut4_init", "PASS_A", "PASS_B",
    "NOT_A", "NOT_B", "FALSE", "TRUE", "CONST_GATES", "WIRE_GATES", "USES_A", "USES_B",
    "compose_not", "swap_inputs", "c_expression", "torch_coeffs", "naive_mix_terms",
]


@dataclass(frozen=True)
class Gate:
    """One two-input boolean function.

    Attributes
    ----------
    id : int
        difflogic's index, 0..15; its 4 bits are the truth table (see module doc).
    name : str
        Short upper-case name used in reports ("AND", "A_AND_NOT_B", ...).
    expr : str
        Bitwise expression over ``a`` and ``b`` (``& | ^ ~``, ``0``, ``1``).
    """

    id: int
    name: str
    expr: str

    def truth(self, a: int, b: int) -> int:
        """Output of the gate for single bits ``a`` and ``b``."""
        return (self.id >> (3 - (2 * a + b))) & 1

    @property
    def table(self) -> tuple[int, int, int, int]:
        """Outputs ``(f(0,0), f(0,1), f(1,0), f(1,1))``."""
        return tuple(self.truth(a, b) for a in (0, 1) for b in (0, 1))  # type: ignore[return-value]

    @property
    def coeffs(self) -> tuple[int, int, int, int]:
        """``(c0, c1, c2, c3)`` of ``y = c0 + c1*a + c2*b + c3*a*b``."""
        f00, f01, f10, f11 = self.table
        return (f00, f10 - f00, f01 - f00, f11 - f10 - f01 + f00)

    @property
    def uses_a(self) -> bool:
        return any(self.truth(0, b) != self.truth(1, b) for b in (0, 1))

    @property
    def uses_b(self) -> bool:
        return any(self.truth(a, 0) != self.truth(a, 1) for a in (0, 1))


# The table.  Only the id (= truth table), a name and a readable expression.
GATES: tuple[Gate, ...] = (
    Gate(0, "FALSE", "0"),
    Gate(1, "AND", "a & b"),
    Gate(2, "A_AND_NOT_B", "a & ~b"),
    Gate(3, "A", "a"),
    Gate(4, "NOT_A_AND_B", "~a & b"),
    Gate(5, "B", "b"),
    Gate(6, "XOR", "a ^ b"),
    Gate(7, "OR", "a | b"),
    Gate(8, "NOR", "~(a | b)"),
    Gate(9, "XNOR", "~(a ^ b)"),
    Gate(10, "NOT_B", "~b"),
    Gate(11, "A_OR_NOT_B", "a | ~b"),
    Gate(12, "NOT_A", "~a"),
    Gate(13, "NOT_A_OR_B", "~a | b"),
    Gate(14, "NAND", "~(a & b)"),
    Gate(15, "TRUE", "1"),
)
NUM_GATES = len(GATES)

_BY_NAME = {g.name: g for g in GATES}


def by_name(name: str) -> Gate:
    """Look a gate up by its name, e.g. ``by_name("XOR").id == 6``."""
    try:
        return _BY_NAME[name.upper()]
    except KeyError:
        raise ValueError(f"gate name must be one of {sorted(_BY_NAME)}, not {name!r}") from None


FALSE = by_name("FALSE").id
TRUE = by_name("TRUE").id
PASS_A = by_name("A").id
PASS_B = by_name("B").id
NOT_A = by_name("NOT_A").id
NOT_B = by_name("NOT_B").id
CONST_GATES = frozenset(g.id for g in GATES if not g.uses_a and not g.uses_b)
WIRE_GATES = frozenset(g.id for g in GATES if g.uses_a != g.uses_b)
#: ``USES_A[i]`` / ``USES_B[i]``: whether gate ``i``'s output depends on input a / b (bool, shape ``[16]``).
USES_A = np.array([g.uses_a for g in GATES])
USES_B = np.array([g.uses_b for g in GATES])

#: ``COEFFS[i] = (c0, c1, c2, c3)`` of gate ``i``, shape ``[16, 4]``, float32.
COEFFS = np.array([g.coeffs for g in GATES], dtype=np.float32)
#: ``TRUTH[i] = (f00, f01, f10, f11)``, shape ``[16, 4]``, uint8.
TRUTH = np.array([g.table for g in GATES], dtype=np.uint8)


def gate_id_from_truth(f00: int, f01: int, f10: int, f11: int) -> int:
    """Id of the gate with the given truth table."""
    return (f00 << 3) | (f01 << 2) | (f10 << 1) | f11


def compose_not(op: int, *, invert_a: bool = False, invert_b: bool = False,
                invert_out: bool = False) -> int:
    """Id of ``g(a', b')`` (optionally negated), where ``a' = ~a`` if ``invert_a``.

    Used by netlist passes to fold inverters into the consumer's truth table.
    """
    g = GATES[op]
    t = [g.truth(a ^ invert_a, b ^ invert_b) ^ invert_out for a in (0, 1) for b in (0, 1)]
    return gate_id_from_truth(*t)


def swap_inputs(op: int) -> int:
    """Id of ``g(b, a)``."""
    g = GATES[op]
    return gate_id_from_truth(*(g.truth(b, a) for a in (0, 1) for b in (0, 1)))


def lut4_init(op: int) -> int:
    """4-bit LUT init with address ``2*a + b`` (bit i of the result is f at address i)."""
    g = GATES[op]
    return sum(g.truth(a, b) << (2 * a + b) for a in (0, 1) for b in (0, 1))


def apply_bitwise(op: int, a, b, ones):
    """Evaluate gate ``op`` on packed words (numpy ints/arrays, Python ints, ...).

    ``ones`` is the all-ones value of the word type (e.g. ``np.uint64(-1)``),
    used for the constant TRUE and for negation, so that this works for any
    width.  Derived from the truth table as a sum of minterms, which every
    backend's compiler simplifies.
    """
    g = GATES[op]
    na, nb = a ^ ones, b ^ ones
    terms = []
    for (x, y), av, bv in (((0, 0), na, nb), ((0, 1), na, b), ((1, 0), a, nb), ((1, 1), a, b)):
        if g.truth(x, y):
            terms.append(av & bv)
    if not terms:
        return a & 0 if not isinstance(a, int) else 0
    out = terms[0]
    for t in terms[1:]:
        out = out | t
    return out


def c_expression(op: int, a: str, b: str) -> str:
    """A C/Verilog expression for gate ``op`` on operand strings ``a`` and ``b``.

    Constants come out as ``0`` and ``~0`` (all ones in any unsigned width).
    """
    expr = GATES[op].expr
    if expr == "0":
        return "0"
    if expr == "1":
        return "~0"
    out = []
    for ch in expr:
        out.append(f"({a})" if ch == "a" else f"({b})" if ch == "b" else ch)
    return "(" + "".join(out) + ")"


def torch_coeffs(device=None, dtype=None):
    """``COEFFS`` as a torch tensor (imported lazily: this module stays torch-free)."""
    import torch
    return torch.tensor(COEFFS, device=device, dtype=dtype or torch.float32)


def naive_mix_terms(a, b) -> list:
    """The 16 gate relaxations, one term each, as difflogic's ``bin_op`` spells them.

    ``naive_mix_terms(a, b)[i] = c0 + c1*a + c2*b + c3*a*b`` for gate ``i``,
    with zero coefficients skipped (so AND is ``a*b`` and XOR is
    ``a + b - 2*a*b``, the same operation count as difflogic's hand-written
    if-chain).  Used by the naive 16-op reference and its benchmark; works on
    numpy arrays and torch tensors.
    """
    ab = a * b
    out = []
    for c0, c1, c2, c3 in COEFFS.astype(int).tolist():
        y = None
        for c, v in ((c1, a), (c2, b), (c3, ab)):
            if c:
                t = v if c == 1 else -v if c == -1 else c * v
                y = t if y is None else y + t
        if y is None:
            y = a * 0 + c0
        elif c0:
            y = y + c0
        out.append(y)
    return out
