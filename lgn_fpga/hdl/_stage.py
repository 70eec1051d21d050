"""Shared plumbing of the fixed-latency stream components.

Every component in :mod:`lgn_fpga.hdl` is a stream stage of fixed latency
``n``: a shift register of ``n`` valid bits runs beside the data registers,
and the whole stage advances when its last slot is empty or being taken
(``en = ~valid[n-1] | o.ready``).  The stage therefore accepts an item every
clock while the consumer is ready, and holds everything in place (losing and
duplicating nothing) while it is not.  ``en`` drives the clock enable of every
register in the stage: a free pin of the flip-flops on iCE40 and ECP5.

``i.ready`` depends combinationally on ``o.ready`` (one OR gate per
component), which the stream rules allow.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal, Value

__all__ = ["stage_control", "cat_bits", "Bits", "CHUNK", "chunks", "drive_chunked"]

#: Widest vector built from gathered bits.  Every gathered vector (operands
#: of one gate op, a register, an output) is cut into pieces of at most this
#: many bits: a ``Cat`` of thousands of bits becomes an expression thousands
#: deep in the Verilog, which Verilator turns into C++ that takes gcc minutes
#: to compile; 64 bits also map onto one machine word in the simulators.
CHUNK = 64


def chunks(n: int, size: int | None = None):
    """``(start, stop)`` pairs covering ``range(n)`` in pieces of at most ``size`` (default :data:`CHUNK`)."""
    size = size or CHUNK
    return [(j, min(j + size, n)) for j in range(0, n, size)]


def drive_chunked(m: Module, target: Value, bits: list, name: str = "out") -> None:
    """``target = Cat(bits)``: one combinational assignment of a ``Cat`` of :data:`CHUNK`-bit pieces.

    The pieces keep the Verilog expressions shallow; the single assignment
    matters to event-driven simulators (a wide signal driven slice by slice
    makes Icarus re-evaluate all its readers once per slice).
    """
    pieces = []
    for c, (lo, hi) in enumerate(chunks(len(bits))):
        piece = Signal(hi - lo, name=f"{name}_{c}")
        m.d.comb += piece.eq(cat_bits(bits[lo:hi]))
        pieces.append(piece)
    if pieces:
        m.d.comb += target.eq(Cat(*pieces))


def stage_control(m: Module, i, o, latency: int):
    """Add valid/ready handling for a stage of ``latency`` cycles; return its enable.

    With ``latency == 0`` the stage is combinational: ``o.valid = i.valid``,
    ``i.ready = o.ready`` and the returned enable is constant 1 (no registers use it).
    """
    if latency == 0:
        m.d.comb += [o.valid.eq(i.valid), i.ready.eq(o.ready)]
        return Const(1, 1)
    en = Signal(name="en")
    valid = Signal(latency, name="valid")   # valid[j]: slot j holds an item
    m.d.comb += [
        en.eq(~valid[-1] | o.ready),
        i.ready.eq(en),
        o.valid.eq(valid[-1]),
    ]
    with m.If(en):
        m.d.sync += valid.eq(Cat(i.valid, valid[:-1]) if latency > 1 else i.valid)
    return en


class Bits:
    """A reference to one bit: bit ``index`` of ``value``, or a constant ``const``."""

    __slots__ = ("value", "index", "const")

    def __init__(self, value: Value | None, index: int = 0, const: int | None = None):
        self.value, self.index, self.const = value, index, const

    @classmethod
    def constant(cls, v: int) -> "Bits":
        return cls(None, 0, int(v) & 1)


def cat_bits(bits) -> Value:
    """``Cat`` of single-bit references, merging runs of adjacent bits into one slice.

    A layer of a freshly registered netlist reads whole runs of one register;
    merging keeps the Amaranth expression tree (and generation time) small.
    """
    parts = []
    run_val, run_lo, run_hi = None, 0, 0
    const_run = []

    def flush():
        nonlocal run_val
        if run_val is not None:
            parts.append(run_val[run_lo:run_hi])
            run_val = None

    def flush_const():
        if const_run:
            v = sum(b << k for k, b in enumerate(const_run))
            parts.append(Const(v, len(const_run)))
            const_run.clear()

    for b in bits:
        if b.const is not None:
            flush()
            const_run.append(b.const)
            continue
        flush_const()
        if run_val is not None and b.value is run_val and b.index == run_hi:
            run_hi += 1
            continue
        flush()
        run_val, run_lo, run_hi = b.value, b.index, b.index + 1
    flush()
    flush_const()
    if not parts:
        return Const(0, 0)
    return parts[0] if len(parts) == 1 else Cat(*parts)


def owned(part):
    """Mark a sub-component built in a parent's constructor as used.

    The parent exposes its parts (for latency and reports) before elaboration;
    if the parent itself is never elaborated, Amaranth already warns about
    the parent, so a second warning per part would only be noise.
    """
    part._MustUse__used = True
    return part
