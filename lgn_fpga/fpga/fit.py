"""The fit check: refuse a model that cannot fit a board, before any tool runs.

The estimate has two parts:

* the classifier (binarizer, gate pipeline, popcounts, argmax):
  :func:`lgn_fpga.netlist.stats.estimate_resources`;
* the board I/O (UART, framer, frame buffer, replies): :func:`io_estimate`,
  measured with yosys on the top level around a trivial classifier.

On iCE40 the budget's ``lut`` is logic cells, each one LUT4 plus one
flip-flop; a flip-flop whose input is not a LUT of its own (the frame buffer,
register chains) takes a cell alone, so cells are LUTs plus those unpaired
flip-flops.  On ECP5 a slice holds two LUTs and two flip-flops, so LUTs and
flip-flops are checked against their own budgets.  Measured so far
(docs/boards.md): within 6 % of nextpnr's cell count on iCE40; on ECP5 high
(LUTs 18 %, FFs 54 % on a 16,000-gate net), so a model near an ECP5 budget
may be refused although it would fit (``--no-fit-check`` tries anyway).
"""
from __future__ import annotations

from dataclasses import dataclass, field


from .boards import Board
from .flow import BuildError

__all__ = ["FitEstimate", "FitError", "check_fit", "estimate", "io_estimate", "frame_buffer_bits"]


class FitError(BuildError):
    """The model does not fit the board (the message gives the estimate and the budget)."""


# UART receiver and transmitter, framer (CRC, timeout, state), reply serializer (CRC, INFO ROM), sequence FIFO:
# yosys synth_ice40 / synth_ecp5 of ClassifierTop around a 10-gate classifier (frame buffer excluded).
_IO_LUT = {"ice40": 400, "ecp5": 500}
_IO_FF = {"ice40": 280, "ecp5": 270}
# Of those flip-flops, the ones without a LUT of their own (counters' carries, the reply byte, sync chains).
_IO_UNPAIRED = 0.3


def frame_buffer_bits(net, binarize: str = "auto") -> int:
    """Frame-buffer flip-flops of ``net``'s top level (:func:`lgn_fpga.hdl.framing.buffer_plan`)."""
    from ..hdl.framing import buffer_plan
    from ..netlist.analysis import structural_live
    return buffer_plan(net.encoding, structural_live(net)[:net.n_inputs], binarize)[1]


def io_estimate(net, family: str, binarize: str = "auto") -> dict:
    """LUTs and flip-flops of the board I/O around the classifier (``unpaired_ff``: those without a LUT)."""
    fb = frame_buffer_bits(net, binarize)
    return {"lut": _IO_LUT[family], "ff": _IO_FF[family] + fb,
            "unpaired_ff": fb + int(_IO_UNPAIRED * _IO_FF[family]), "bram": 0}


@dataclass
class FitEstimate:
    """Estimated use of a board's resources, with the budget it is checked against."""

    board: str
    device: str
    family: str
    lut: int
    ff: int
    bram: int
    cells: int                 # what counts against budget["lut"] (logic cells on iCE40, LUTs on ECP5)
    budget: dict
    parts: dict = field(default_factory=dict)
    source: str = ""

    def over(self) -> list:
        """``(name, estimate, budget)`` for every resource over budget."""
        out = []
        for name, est, key in (("LUTs" if self.family == "ecp5" else "logic cells", self.cells, "lut"),
                               ("FFs", self.ff, "ff"), ("BRAM blocks", self.bram, "bram")):
            if est > self.budget[key]:
                out.append((name, est, self.budget[key]))
        return out

    @property
    def fits(self) -> bool:
        return not self.over()

    def summary(self) -> str:
        unit = "LUTs" if self.family == "ecp5" else "logic cells"
        return (f"{self.cells:,} {unit} ({100 * self.cells / self.budget['lut']:.0f} % of {self.budget['lut']:,}), "
                f"{self.ff:,} FFs ({100 * self.ff / self.budget['ff']:.0f} %), {self.bram} BRAM")

    def as_dict(self) -> dict:
        return {"lut": self.lut, "ff": self.ff, "bram": self.bram, "cells": self.cells, "budget": dict(self.budget),
                "parts": self.parts, "source": self.source}


def estimate(net, board: Board, stages: int | None = None, count_tables: bool | None = None) -> FitEstimate:
    """Estimate what ``net`` needs on ``board`` (classifier plus board I/O), built as ``lgn-fpga build`` does."""
    from ..netlist.stats import estimate_resources
    stages, tables = board.build_options(stages, count_tables)
    core = estimate_resources(net, board.family, stages=stages, count_tables=tables)
    io = io_estimate(net, board.family)
    lut, ff, bram = (int(core[k]) + io[k] for k in ("lut", "ff", "bram"))
    # ECP5: LUTs and FFs are checked against their own budgets (a slice holds two of each).
    cells = int(core["cells"]) + io["lut"] + io["unpaired_ff"] if board.family == "ice40" else lut
    parts = {"classifier": {k: int(core[k]) for k in ("lut", "ff", "cells")}, "io": io}
    return FitEstimate(board.name, board.device, board.family, lut, ff, bram, cells, dict(board.budget), parts,
                       "lgn_fpga.netlist.stats.estimate_resources + lgn_fpga.fpga.fit.io_estimate")


def check_fit(net, board: Board, stages: int | None = None, enforce: bool = True,
              count_tables: bool | None = None) -> FitEstimate:
    """:func:`estimate`, raising :class:`FitError` when ``enforce`` and something is over budget."""
    est = estimate(net, board, stages, count_tables)
    over = est.over()
    if over and enforce:
        parts = "; ".join(f"{name}: estimated {e:,} > {b:,} available ({100 * e / b:.0f} %)" for name, e, b in over)
        raise FitError(f"model does not fit {board.name} ({board.device}): {parts}. Use a larger board, "
                       f"a smaller model, or --no-fit-check to try anyway")
    return est
