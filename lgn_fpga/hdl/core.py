"""ClassifierCore: thermometer bits in, predicted class out, one image per clock.

::

    i (bits) -> GatePipeline -> PopCount -> ArgMax -> o (class)

Each part is a fixed-latency stream stage (see :mod:`lgn_fpga.hdl._stage`),
so the core's latency is the sum of theirs and back-pressure on ``o`` holds
every image in place.  :class:`ImageClassifier` puts the :class:`Binarizer`
in front, for designs (and simulations) that start from pixel bytes.
"""
from __future__ import annotations

from amaranth.hdl import Module, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..netlist.ir import Netlist
from .argmax import ArgMax, class_width
from .binarizer import Binarizer
from .pipeline import GatePipeline
from .plan import check_stages
from .popcount import PopCount
from ._stage import owned

__all__ = ["ClassifierCore", "ImageClassifier"]


class ClassifierCore(wiring.Component):
    """A netlist as a pipelined classifier.

    Parameters
    ----------
    netlist : Netlist
        A valid netlist (checked).
    stages : int
        Gate layers (and comparator levels of the argmax) per register stage
        (default 1: the highest clock).
    popcount_levels : int, optional
        Full-adder levels per register stage in the popcount; default
        ``2 * stages``.  A full-adder level is one LUT with short routes, a
        gate layer one LUT with netlist-wide routes; registering every FA level
        costs about 20% more popcount area for flip-flops that carry bits
        across stages (see docs/hdl.md).
    count_tables : (int, int, int)
        ``(tables, table_bits, table_ports)`` of the popcount's block-RAM count
        tables (see :class:`PopCount`); default none.

    Attributes
    ----------
    i : In(stream.Signature(unsigned(netlist.n_inputs)))
        Payload bit ``j`` is input signal ``j`` (thermometer bit ``j``).
    o : Out(stream.Signature(unsigned(max(1, ceil_log2(n_classes)))))
        The predicted class (highest ``bias + popcount``, ties to the lowest index).
    latency : int
        Cycles from an accepted input to its class on ``o`` when ``o.ready``
        stays high; the core accepts one image per clock.
    pipeline, popcount, argmax : the parts, for reports and tests.

    Raises
    ------
    TypeError, ValueError
        On a non-Netlist, an invalid netlist or a bad ``stages``.
    """

    def __init__(self, netlist: Netlist, stages: int = 1, *, popcount_levels: int | None = None,
                 count_tables: tuple = (0, 12, 2)):
        if not isinstance(netlist, Netlist):
            raise TypeError(f"netlist must be a Netlist, not {netlist!r}")
        stages = check_stages(stages)
        self.netlist, self.stages = netlist, stages
        self.popcount_levels = 2 * stages if popcount_levels is None else popcount_levels
        self.pipeline = owned(GatePipeline(netlist, stages))
        tables, table_bits, table_ports = count_tables
        self.popcount = owned(PopCount([len(o) for o in netlist.outputs], netlist.bias.tolist(),
                                       levels_per_stage=self.popcount_levels, tables=tables,
                                       table_bits=table_bits, table_ports=table_ports))
        self.argmax = owned(ArgMax(netlist.n_classes, self.popcount.score_width, levels_per_stage=stages))
        self.latency = self.pipeline.latency + self.popcount.latency + self.argmax.latency
        super().__init__({
            "i": In(stream.Signature(unsigned(netlist.n_inputs))),
            "o": Out(stream.Signature(unsigned(class_width(netlist.n_classes)))),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.pipeline = self.pipeline
        m.submodules.popcount = self.popcount
        m.submodules.argmax = self.argmax
        wiring.connect(m, wiring.flipped(self.i), self.pipeline.i)
        wiring.connect(m, self.pipeline.o, self.popcount.i)
        wiring.connect(m, self.popcount.o, self.argmax.i)
        wiring.connect(m, self.argmax.o, wiring.flipped(self.o))
        return m


class ImageClassifier(wiring.Component):
    """:class:`Binarizer` followed by :class:`ClassifierCore`: pixel bytes in, class out.

    Parameters
    ----------
    netlist : Netlist
    stages, popcount_levels, count_tables
        As for :class:`ClassifierCore`.
    registered_binarizer : bool
        Give the comparators their own register stage (default ``False``).
    wire : {"bytes", "levels"}
        What ``i`` carries: pixel bytes or packed levels (:mod:`lgn_fpga.protocol`).

    Attributes
    ----------
    i : In(stream.Signature(unsigned(8 * payload_bytes)))
        The image as the wire format has it (see :class:`Binarizer`).
    o : Out(stream.Signature(unsigned(max(1, ceil_log2(n_classes)))))
    latency : int
        Binarizer latency plus core latency.
    binarizer, core : the parts.
    """

    def __init__(self, netlist: Netlist, stages: int = 1, *, popcount_levels: int | None = None,
                 registered_binarizer: bool = False, count_tables: tuple = (0, 12, 2), wire: str = "bytes"):
        if not isinstance(netlist, Netlist):
            raise TypeError(f"netlist must be a Netlist, not {netlist!r}")
        self.netlist = netlist
        self.binarizer = owned(Binarizer(netlist.encoding, registered=registered_binarizer, wire=wire))
        self.core = owned(ClassifierCore(netlist, stages, popcount_levels=popcount_levels,
                                         count_tables=count_tables))
        self.latency = self.binarizer.latency + self.core.latency
        super().__init__({
            "i": In(stream.Signature(unsigned(self.binarizer.i.payload.shape().width))),
            "o": Out(stream.Signature(unsigned(class_width(netlist.n_classes)))),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.binarizer = self.binarizer
        m.submodules.core = self.core
        wiring.connect(m, wiring.flipped(self.i), self.binarizer.i)
        wiring.connect(m, self.binarizer.o, self.core.i)
        wiring.connect(m, self.core.o, wiring.flipped(self.o))
        return m
