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

import math
from dataclasses import dataclass, field


from .boards import Board
from .flow import BuildError

__all__ = ["FitEstimate", "FitError", "check_fit", "estimate", "io_estimate", "frame_buffer_bits", "size_width",
           "trained_gates_for", "TRAINED_GATE_COST", "ROUTABLE_FILL", "size_widths", "lut_budget",
           "trained_lut_cost", "scaled_group_tau", "budget_unit"]


class FitError(BuildError):
    """The model does not fit the board (the message gives the estimate and the budget)."""


# UART receiver and transmitter, framer (CRC, timeout, state), reply serializer (CRC, INFO ROM), sequence FIFO:
# yosys synth_ice40 / synth_ecp5 of ClassifierTop around a 10-gate classifier (frame buffer excluded).
_IO_LUT = {"ice40": 400, "ecp5": 500}
_IO_FF = {"ice40": 280, "ecp5": 270}
# Of those flip-flops, the ones without a LUT of their own (counters' carries, the reply byte, sync chains).
_IO_UNPAIRED = 0.3


def budget_unit(family: str) -> str:
    """What a board's ``budget["lut"]`` counts: logic cells on iCE40 (a LUT4 and a flip-flop each), LUTs on ECP5."""
    return "LUTs" if family == "ecp5" else "logic cells"


def _io_unpaired_ff(family: str, frame_bits: int) -> int:
    """Flip-flops of the board I/O without a LUT of their own: the frame buffer's and a share of the rest."""
    return frame_bits + int(_IO_UNPAIRED * _IO_FF[family])


def frame_buffer_bits(net, binarize: str = "auto", wire: str = "bytes") -> int:
    """Frame-buffer flip-flops of ``net``'s top level (:func:`lgn_fpga.hdl.framing.buffer_plan`)."""
    from ..hdl.framing import buffer_plan
    from ..netlist.analysis import structural_live
    return buffer_plan(net.encoding, structural_live(net)[:net.n_inputs], binarize, wire)[1]


def io_estimate(net, family: str, binarize: str = "auto", wire: str = "bytes") -> dict:
    """LUTs and flip-flops of the board I/O around the classifier (``unpaired_ff``: those without a LUT)."""
    fb = frame_buffer_bits(net, binarize, wire)
    return {"lut": _IO_LUT[family], "ff": _IO_FF[family] + fb,
            "unpaired_ff": _io_unpaired_ff(family, fb), "bram": 0}


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
        for name, est, key in ((budget_unit(self.family), self.cells, "lut"),
                               ("FFs", self.ff, "ff"), ("BRAM blocks", self.bram, "bram")):
            if est > self.budget[key]:
                out.append((name, est, self.budget[key]))
        return out

    @property
    def fits(self) -> bool:
        return not self.over()

    def summary(self) -> str:
        unit = budget_unit(self.family)
        return (f"{self.cells:,} {unit} ({100 * self.cells / self.budget['lut']:.0f} % of {self.budget['lut']:,}), "
                f"{self.ff:,} FFs ({100 * self.ff / self.budget['ff']:.0f} %), {self.bram} BRAM")

    def as_dict(self) -> dict:
        return {"lut": self.lut, "ff": self.ff, "bram": self.bram, "cells": self.cells, "budget": dict(self.budget),
                "parts": self.parts, "source": self.source}


def estimate(net, board: Board, stages: int | None = None, count_tables: bool | None = None,
             wire: str | None = None) -> FitEstimate:
    """Estimate what ``net`` needs on ``board`` (classifier plus board I/O), built as ``lgn-fpga build`` does."""
    from .. import protocol as P
    from ..netlist.stats import estimate_resources
    stages, tables = board.build_options(stages, count_tables)
    wire = P.DEFAULT_WIRE if wire is None else wire
    core = estimate_resources(net, board.family, stages=stages, count_tables=tables, wire=wire)
    io = io_estimate(net, board.family, wire=wire)
    lut, ff, bram = (int(core[k]) + io[k] for k in ("lut", "ff", "bram"))
    # ECP5: LUTs and FFs are checked against their own budgets (a slice holds two of each).
    cells = int(core["cells"]) + io["lut"] + io["unpaired_ff"] if board.family == "ice40" else lut
    parts = {"classifier": {k: int(core[k]) for k in ("lut", "ff", "cells")}, "io": io}
    return FitEstimate(board.name, board.device, board.family, lut, ff, bram, cells, dict(board.budget), parts,
                       "lgn_fpga.netlist.stats.estimate_resources + lgn_fpga.fpga.fit.io_estimate")


def check_fit(net, board: Board, stages: int | None = None, enforce: bool = True,
              count_tables: bool | None = None, wire: str | None = None) -> FitEstimate:
    """:func:`estimate`, raising :class:`FitError` when ``enforce`` and something is over budget."""
    est = estimate(net, board, stages, count_tables, wire)
    over = est.over()
    if over and enforce:
        parts = "; ".join(f"{name}: estimated {e:,} > {b:,} available ({100 * e / b:.0f} %)" for name, e, b in over)
        raise FitError(f"model does not fit {board.name} ({board.device}): {parts}. Use a larger board, "
                       f"a smaller model, or --no-fit-check to try anyway")
    return est


# -- sizing a network for a board before training (`lgn-fpga train DATASET --board B`) ---------------------
# Measured LUT4 (iCE40: logic cells) per *trained* gate after `export`, with the board's default options
# (README, "FPGA builds"), split between the hidden layers and the last one: the last layer's gates are
# counted by the popcount and keep the gates that feed them alive, while most hidden gates die in `export`.
# ECP5, CIFAR-10 (3 thresholds): 16,000 x 3 + 4,000 -> 22,756 LUT4 and 4 x 16,000 -> 64,033 give
# 0.19 per hidden and 3.4 per last-layer gate; they predict 4 x 8,000 (31,588 measured) within 1.3 %,
# 24,000 x 3 + 6,000 (33,117) within 3 % and 37,930 x 3 + 9,480 (52,606, learned wiring, the config) within
# 2.4 %. MNIST (1 threshold) costs less: 4 x 8,000 -> 25,584, 4 x 12,000 -> 39,357 (the model: 31,760 and 47,640).
# iCE40 (2 gate layers per stage, count tables), MNIST trained at 4 x {480, 640, 800, 960, 1120} and
# {960, 1120, 1600, 2400} x 3 + {480, 640, 800}, 20,000 steps: the classifier's cells (the estimate after
# `export`, within 1 % of the builds: 4 x 960 -> 4,988 cells placed; least squares over 12 nets) give 0.09 per hidden
# and 4.0 per last-layer gate, within 5 % (4 x 480: 11 % high) (docs/method.md, "MNIST on the iCEBreaker").
TRAINED_GATE_COST = {"ecp5": (0.19, 3.4), "ice40": (0.09, 4.0)}      # (per hidden gate, per last-layer gate)
# The share of the device's LUTs a design may fill: on ECP5 what routes with YoWASP on 2 cores inside
# 30 minutes, with margin: the 64,033-LUT4 CIFAR-10 build (77 %, 33,775 gates, per-byte frame buffer) routed in
# 27 router2 iterations, 33.6 min of build with four jobs on the 2 cores (synthesis 12.4 min, 7.3 alone);
# with the shift-register frame buffer the same net had not routed after 30 min and 47 % was the largest
# that had (docs/routing.md). The small iCE40 dies route nearly full: MNIST 4 x 960 placed and routed at
# 94.5 % of the iCEBreaker's cells in 68 s.
ROUTABLE_FILL = {"ecp5": 0.65, "ice40": 0.90}
# iCE40 logic cells also hold the frame buffer (one flip-flop per live input bit, no LUT to pair with): MNIST
# nets kept 336-511 of their 784 input bits live, so the sizing reserves this share of the input bits.
FRAME_BUFFER_LIVE = 0.6


def lut_budget(board: Board, input_bits: int = 0) -> int:
    """LUT4 (iCE40: logic cells) the network may take on ``board``: the share that routes, less the I/O (on
    iCE40 also its unpaired flip-flops and the frame buffer of a model with ``input_bits`` input bits)."""
    f = board.family
    io = _IO_LUT[f] + (_io_unpaired_ff(f, int(FRAME_BUFFER_LIVE * input_bits)) if f == "ice40" else 0)
    return max(int(ROUTABLE_FILL[f] * board.budget["lut"] - io), 0)


def trained_lut_cost(family: str, widths) -> float:
    """Estimated LUT4 after `export` of a network with trained layer ``widths`` (:data:`TRAINED_GATE_COST`)."""
    hidden, last = TRAINED_GATE_COST[family]
    widths = [float(w) for w in widths]
    return hidden * sum(widths[:-1]) + last * widths[-1]


def trained_gates_for(board: Board, layers: int = 4, input_bits: int = 0) -> int:
    """Trained gates a uniform ``layers``-deep network for ``board`` may have: the budget the router can take."""
    return max(int(lut_budget(board, input_bits) / trained_lut_cost(board.family, [1.0] * max(layers, 1))
                   * max(layers, 1)), 0)


def size_width(board: Board, layers: int, n_classes: int, input_bits: int = 0) -> int:
    """Gates per layer of a ``layers``-deep network sized for ``board`` (a multiple of ``n_classes``).

    Raises :class:`FitError` when not even ``n_classes`` gates per layer fit.
    """
    return size_widths(board, [1] * max(layers, 1), n_classes, input_bits)[0]


def size_widths(board: Board, shape, n_classes: int, input_bits: int = 0) -> list[int]:
    """Per-layer widths in the proportions of ``shape``, scaled to the trained gates ``board`` holds.

    Each width is rounded down to a multiple of ``n_classes``; the estimated LUT4 of the result
    (:func:`trained_lut_cost`, hidden and last-layer gates priced apart) stays within :func:`lut_budget`.

    Raises :class:`FitError` when a layer would get fewer than ``n_classes`` gates.
    """
    shape = [float(w) for w in shape]
    budget = lut_budget(board, input_bits)
    if budget <= 0:
        raise FitError(f"{board.name} has no logic left for gates after the I/O and a frame buffer for {input_bits:,} "
                       f"input bits; use fewer thresholds or a larger board")
    scale = budget / trained_lut_cost(board.family, shape)
    widths = [int(w * scale) // n_classes * n_classes for w in shape]
    if min(widths) < n_classes:
        total = int(scale * sum(shape))
        raise FitError(f"{board.name} holds about {total:,} trained gates: too few for {len(shape)} layers of "
                       f"{n_classes} classes; use fewer --layers or a larger board")
    return widths


def scaled_group_tau(tau: float, last_from: int, last_to: int) -> float:
    """The GroupSum temperature of a recipe whose last layer goes from ``last_from`` to ``last_to`` gates.

    ``tau * sqrt(last_to / last_from)``: a class's count over ``n`` bits spreads as ``sqrt(n)``, and the temperature
    follows that spread, not the count's range.  Measured (docs/method.md, "The GroupSum temperature at a board's
    size"): the MNIST recipe (4 x 12,000 at tau 10) cut to the iCEBreaker's 4 x 480 reached 91.56 % validation at
    this rule's tau 2.0, against 86.94 % at tau 10 (the temperature kept) and 86.68 % at tau 0.8 (the range kept).
    """
    return float(tau) * math.sqrt(float(last_to) / float(last_from))
