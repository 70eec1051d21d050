#!/usr/bin/env python3
"""The resource estimate against yosys: how far ``estimate_resources`` / the fit check are from synthesis.

For each netlist and family, the board's synthesis step of the real build
flow (``plan_build`` + ``run_build(stop_after="synth")``: the whole board top
level, UART and framing included) is compared with the fit check's estimate
(:func:`lgn_fpga.fpga.fit.estimate`).  With ``--parts``, the classifier core
alone is also synthesized with ``-noflatten`` and compared part by part with
:func:`lgn_fpga.netlist.stats.estimate_resources` (without flattening,
constants do not cross from the gates into the popcount, so the popcount row
is the raw popcount's).  No place and route: a 16,000-gate net synthesizes in
about a minute.

LUT counts are LUT4 cells after synthesis, carry cells counted as the LUT4s
they hold (ECP5: ``LUT4 + 2 CCU2C``, what nextpnr places as ``TRELLIS_COMB``
within 1 %; iCE40: ``SB_LUT4``); FF: flip-flop cells.

Netlists (``--nets``, comma-separated): ``mnist16k`` (784 input bits, 4 x 4,000
random gates: the ULX3S build of docs/boards.md), ``digits`` (192 input bits,
800-800-500 random gates), ``NAME-opt`` (the same after ``optimize``), or a
path to a ``.lgn`` file.  Usage::

    python bench/estimate.py --nets digits,digits-opt --families ecp5,ice40
    python bench/estimate.py --nets mnist16k --families ecp5 --parts
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from lgn_fpga.fpga.boards import load_board
from lgn_fpga.fpga.fit import estimate
from lgn_fpga.fpga.flow import plan_build, run_build
from lgn_fpga.netlist.format import load as load_netlist
from lgn_fpga.netlist.passes import optimize
from lgn_fpga.netlist.random import random_netlist
from lgn_fpga.netlist.stats import estimate_resources
from _table import table

BOARDS = {"ecp5": "ulx3s", "ice40": "icebreaker"}
NETS = {
    "mnist16k": lambda: random_netlist(np.random.default_rng(2), shape=(1, 28, 28), thresholds=1,
                                       widths=(4000,) * 4, n_classes=10),
    "digits": lambda: random_netlist(np.random.default_rng(1), shape=(1, 8, 8), thresholds=3,
                                     widths=(800, 800, 500), n_classes=10),
}


def load_net(spec: str):
    if spec.endswith(".lgn"):
        return load_netlist(spec)
    base, opt = (spec[:-4], True) if spec.endswith("-opt") else (spec, False)
    if base not in NETS:
        raise SystemExit(f"unknown netlist {spec!r}: use {', '.join(NETS)}, NAME-opt or a .lgn path")
    net = NETS[base]()
    return optimize(net)[0] if opt else net


def synth_cells(cells: dict, family: str) -> tuple:
    """(LUT4, FF) of yosys cell counts."""
    if family == "ecp5":
        return cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0), cells.get("TRELLIS_FF", 0)
    return cells.get("SB_LUT4", 0), sum(v for k, v in cells.items() if k.startswith("SB_DFF"))


def board_synth(net, family: str, stages: int, workdir: Path) -> tuple:
    """(LUT4, FF, seconds) of the board top level after the build flow's synthesis step."""
    fp = plan_build(net, load_board(BOARDS[family]), stages=stages)
    t0 = time.perf_counter()
    run_build(fp, workdir, stop_after="synth")
    stat = json.loads((workdir / f"{fp.name}.stat.json").read_text())
    design = stat.get("design") or next(iter(stat["modules"].values()))
    cells = {k: int(v) for k, v in design["num_cells_by_type"].items() if not k.startswith("$")}
    return (*synth_cells(cells, family), time.perf_counter() - t0)


def core_parts_synth(net, family: str, stages: int, workdir: Path) -> dict:
    """{part: (LUT4, FF)} of ``ClassifierCore`` synthesized with ``-noflatten``."""
    from lgn_fpga.hdl.core import ClassifierCore
    from lgn_fpga.hdl.export import to_rtlil, yosys_command
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "core.il").write_text(to_rtlil(ClassifierCore(net, stages), "top"))
    subprocess.run([*yosys_command(), "-q", "-l", "core.rpt", "-p",
                    f"read_rtlil core.il; synth_{family} -top top -noflatten; tee -q -o core.stat.json stat -json"],
                   cwd=workdir, check=True, capture_output=True)
    mods = json.loads((workdir / "core.stat.json").read_text())["modules"]
    out = {}
    for name, m in mods.items():
        part = next((p for p in ("pipeline", "popcount", "argmax") if name.endswith("." + p)), "control")
        lut, ff = synth_cells({k: int(v) for k, v in m["num_cells_by_type"].items()}, family)
        o = out.setdefault(part, [0, 0])
        o[0] += lut
        o[1] += ff
    return {k: tuple(v) for k, v in out.items()}


def pct(est, real) -> str:
    return f"{100 * (est - real) / real:+.1f} %" if real else "-"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nets", default="digits,digits-opt")
    ap.add_argument("--families", default="ecp5,ice40")
    ap.add_argument("--stages", default="1", help="comma-separated levels per register stage")
    ap.add_argument("--parts", action="store_true", help="also synthesize the core's parts (-noflatten)")
    ap.add_argument("--keep", help="keep the synthesis folders here")
    args = ap.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.1f} (timings are provisional)")
    rows, part_rows = [], []
    with tempfile.TemporaryDirectory(prefix="lgn-est-") as tmp:
        base = Path(args.keep) if args.keep else Path(tmp)
        for spec in args.nets.split(","):
            net = load_net(spec)
            for family in args.families.split(","):
                for k in (int(s) for s in args.stages.split(",")):
                    d = base / f"{Path(spec).stem}-{family}-s{k}"
                    est = estimate(net, load_board(BOARDS[family]), stages=k)
                    lut, ff, secs = board_synth(net, family, k, d / "board")
                    rows.append((spec, net.n_gates, family, k, f"{est.lut:,} / {lut:,}", pct(est.lut, lut),
                                 f"{est.ff:,} / {ff:,}", pct(est.ff, ff), f"{secs:.0f}"))
                    if args.parts:
                        e = estimate_resources(net, family, k)["parts"]
                        e["pipeline"] = e["gates"]        # ClassifierCore takes bits: no binarizer
                        for part, (pl, pf) in sorted(core_parts_synth(net, family, k, d / "core").items()):
                            part_rows.append((spec, family, k, part, f"{e[part]['lut']:,} / {pl:,}",
                                              pct(e[part]["lut"], pl), f"{e[part]['ff']:,} / {pf:,}",
                                              pct(e[part]["ff"], pf)))
    table("Board top level: fit estimate vs yosys (flow synthesis step)",
          ["netlist", "gates", "family", "stages", "LUT4 est / yosys", "LUT err", "FF est / yosys", "FF err",
           "synth s"], rows)
    if part_rows:
        table("Classifier core parts: estimate_resources vs yosys -noflatten",
              ["netlist", "family", "stages", "part", "LUT4 est / yosys", "LUT err", "FF est / yosys", "FF err"],
              part_rows)


if __name__ == "__main__":
    main()
