"""The build report: resource use against the board's budget, Fmax against the clock, latency, throughput.

Read from the files the flow leaves behind: nextpnr's ``--report`` JSON
(placed logic cells, block RAM, Fmax per clock) and yosys' ``stat -json``
after synthesis (LUT and flip-flop cells).  Written as ``report.json`` and
``report.md`` next to the bitstream.

Numbers, per family:

* ``lut``: iCE40: placed logic cells (``ICESTORM_LC``, one LUT4 + one FF each);
  ECP5: placed LUT4 slots (``TRELLIS_COMB``, carry cells included).
* ``ff``: flip-flops after synthesis (``SB_DFF*`` / ``TRELLIS_FF``).
* ``bram``: ``ICESTORM_RAM`` (4 kbit) / ``DP16KD`` (18 kbit) blocks.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..fileio import atomic_write_text

__all__ = ["collect", "to_markdown", "write_report", "fmax_of", "lut_summary"]


def lut_summary(rep: dict) -> str:
    """``3,685/5,280 logic cells (69.8 %, 2,842 LUT4)`` on iCE40, ``41,162/83,640 LUTs (49.2 %)`` on ECP5."""
    lut = rep["resources"]["lut"]
    if rep.get("family") == "ice40":
        return (f"{lut['used']:,}/{lut['budget']:,} logic cells ({lut['percent']} %, "
                f"{rep.get('luts_after_synthesis', 0):,} LUT4)")
    return f"{lut['used']:,}/{lut['budget']:,} LUTs ({lut['percent']} %)"


def _load(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _cells(stat) -> dict:
    if not stat:
        return {}
    design = stat.get("design") or next(iter(stat.get("modules", {}).values()), {})
    return {k: int(v) for k, v in design.get("num_cells_by_type", {}).items() if not k.startswith("$")}


def fmax_of(nextpnr_report) -> tuple:
    """(achieved MHz, constraint MHz) of the design's clock (the slowest one if there are several)."""
    fm = (nextpnr_report or {}).get("fmax") or {}
    if not fm:
        return None, None
    worst = min(fm.values(), key=lambda v: v.get("achieved", 0.0) / max(v.get("constraint", 1e-9), 1e-9))
    return float(worst.get("achieved", 0.0)), float(worst.get("constraint", 0.0))


def _use(used, budget):
    return {"used": used, "budget": budget,
            "percent": round(100.0 * used / budget, 1) if (used is not None and budget) else None}


def collect(fp, result, netlist, *, model_path=None, estimate=None) -> dict:
    """The report of a finished build, as a JSON-ready dict."""
    from .. import protocol as P
    from .. import __version__
    out = Path(result.out_dir)
    pnr = _load(out / f"{fp.name}.report.json")
    cells = _cells(_load(out / f"{fp.name}.stat.json"))
    util = (pnr or {}).get("utilization", {})

    def placed(key):
        return util.get(key, {}).get("used")
    b = fp.board
    if b.family == "ice40":
        lut = placed("ICESTORM_LC")
        ff = sum(v for k, v in cells.items() if k.startswith("SB_DFF"))
        bram = placed("ICESTORM_RAM")
        luts_synth = cells.get("SB_LUT4", 0)
    else:
        lut = placed("TRELLIS_COMB")
        ff = placed("TRELLIS_FF")
        if ff is None:
            ff = cells.get("TRELLIS_FF", 0)
        bram = placed("DP16KD")
        luts_synth = cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0)
    achieved, constraint = fmax_of(pnr)
    clk = fp.clock_hz
    top = fp.top
    req = P.request_len(top.payload_bytes)
    rep = {
        "format": "lgn-fpga-build-report/1",
        "lgn_fpga_version": __version__,
        "board": b.name, "device": b.device, "package": b.package, "family": b.family,
        "model": {"path": str(model_path) if model_path else None, "hash": netlist.content_hash(),
                  "gates": netlist.n_gates, "layers": netlist.depth, "inputs": netlist.n_inputs,
                  "classes": netlist.n_classes, "image_shape": list(netlist.encoding.shape),
                  "image_bytes": netlist.encoding.image_bytes},
        "resources": {"lut": _use(lut, b.budget["lut"]), "ff": _use(ff, b.budget["ff"]),
                      "bram": _use(bram, b.budget["bram"])},
        "luts_after_synthesis": luts_synth,
        "cells": cells,
        "clock_mhz": round(clk / 1e6, 3),
        "fmax_mhz": round(achieved, 2) if achieved is not None else None,
        "timing_met": (achieved is not None and achieved >= clk / 1e6 * (1 - 1e-6)),
        "stages": fp.stages,
        "count_table_lookups": int(sum(top.core.popcount.lookups)),
        "count_table_brams": int(top.core.popcount.brams),
        "latency_cycles": top.latency,
        "latency_us": round(top.latency / clk * 1e6, 3),
        "images_per_s_at_fmax": int(achieved * 1e6) if achieved else None,
        "images_per_s_at_clock": int(clk),
        "baud": fp.baud,
        "images_per_s_uart": round(P.link_images_per_s(fp.baud, top.payload_bytes), 1),
        "wire": top.wire,
        "frame_bytes": req,
        "frame_timeout_cycles": top.timeout,
        "step_seconds": dict(result.step_seconds),
        "build_seconds": round(sum(result.step_seconds.values()), 1),
        "bitstream": str(result.bitstream),
        "tools": dict(result.tools),
        "estimate": estimate,
    }
    return rep


def to_markdown(rep: dict) -> str:
    def row(name, r):
        pct = f"{r['percent']:.1f} %" if r.get("percent") is not None else "-"
        used = "-" if r.get("used") is None else f"{r['used']:,}"
        return f"| {name} | {used} | {r['budget']:,} | {pct} |"
    m = rep["model"]
    res = rep["resources"]
    est = rep.get("estimate") or {}
    lines = [
        f"# Build report: {rep['board']} ({rep['device']})",
        "",
        f"Model {m['path'] or '(in memory)'}: {m['gates']:,} gates in {m['layers']} layers, "
        f"{m['inputs']:,} input bits, {m['classes']} classes, images {'x'.join(map(str, m['image_shape']))} "
        f"(hash {m['hash'][:12]}).",
        "",
        "| resource | used | available | use |",
        "|---|---:|---:|---:|",
        row("LUT" if rep["family"] == "ecp5" else "logic cells (LUT4+FF)", res["lut"]),
        row("FF", res["ff"]),
        row("BRAM", res["bram"]),
        "",
        "| timing and throughput | |",
        "|---|---:|",
        f"| Fmax | {rep['fmax_mhz']} MHz |",
        f"| clock | {rep['clock_mhz']} MHz ({'met' if rep['timing_met'] else 'NOT MET'}) |",
        f"| pipeline latency | {rep['latency_cycles']} cycles = {rep['latency_us']} us |",
        f"| classifier throughput at Fmax | {rep['images_per_s_at_fmax'] or 0:,} images/s |",
        f"| classifier throughput at the clock | {rep['images_per_s_at_clock']:,} images/s |",
        f"| UART throughput at {rep['baud']:,} baud | {rep['images_per_s_uart']:,} images/s ({rep['frame_bytes']} bytes/frame, {rep.get('wire', 'bytes')} wire format) |",
        "",
        "Build time: " + ", ".join(f"{k} {v:.1f} s" for k, v in rep["step_seconds"].items())
        + f" (total {rep['build_seconds']:.1f} s).",
    ]
    if est:
        lines += ["", "Estimate before synthesis: " + ", ".join(f"{k} {v:,}" for k, v in est.items()
                                                               if isinstance(v, (int, float))) + "."]
    lines += ["", f"Bitstream: `{rep['bitstream']}`. Rerun by hand: `sh rerun.sh` in this folder."]
    return "\n".join(lines) + "\n"


def write_report(rep: dict, out_dir) -> tuple:
    """Write ``report.json`` and ``report.md`` into ``out_dir``; return their paths."""
    out = Path(out_dir)
    j, md = out / "report.json", out / "report.md"
    atomic_write_text(j, json.dumps(rep, indent=2) + "\n")
    atomic_write_text(md, to_markdown(rep))
    return j, md
