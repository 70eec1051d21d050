#!/usr/bin/env python3
"""Routing benchmark: trained netlists x hardware/flow variants, side by side, on the real build flow.

For every netlist and variant, the board build of ``lgn-fpga build`` runs (``plan_build`` +
``run_build``: the whole top level, UART and framing included) with a time limit per step, and the
table shows what a user would want to know before waiting for a build:

* gates (live, after the passes), and the fit estimate's split of LUT4s (gates / popcount / binarizer
  and the rest) and flip-flops (gate outputs / carry registers / frame buffer and the rest);
* LUT4 and FF after synthesis (carry cells counted as the 2 LUT4s they hold), LUT4 per gate;
* synthesis, placement and routing time, or "not routed in T" with the overused wires left;
* router progress (router2's overused wires per iteration, against time), drawn with ``--plot``;
* Fmax from nextpnr's report, and whether the board clock is met.

Variants (``--variants``, comma-separated; each is a set of build options on top of lgn_fpga/flows/<family>.yaml):

``default``      what ``lgn-fpga build`` does (flow file, the board's default stages and count tables)
``stages1``, ``stages2``  one / two gate layers per register stage (abc9 packs gate(gate, gate) into one LUT4)
``tmdriv``       timing-driven placement and routing (nextpnr's default; the flow file turns it off)
``heap``         nextpnr's HeAP placer instead of the flow's electrostatic one (``--placer static``)
``seed2``        another placement seed (run-to-run variation)
``tables``, ``notables``  the popcount with / without block-RAM count tables (default: the board's,
                 ``Board.build_options``)
``stages2-tables``, ``stages2-notables``  both

Usage::

    python bench/route.py runs/a.lgn runs/b.lgn --variants default,stages2 --limit 1800 --plot route.png
    python bench/route.py --quick          # a small random netlist, synthesis only (smoke test)

Results are appended to ``--json`` (one object per build) so long runs can be tabulated later
(``--table-only``).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from lgn_fpga.fpga.boards import load_board
from lgn_fpga.fpga.fit import estimate
from lgn_fpga.fpga.flow import BuildError, BuildTimeout, flow_options, plan_build, run_build
from lgn_fpga.netlist.format import load
from _table import table

VARIANTS = {
    "default": {},
    "stages1": {"stages": 1},
    "stages2": {"stages": 2},
    "tmdriv": {"drop": ["--no-tmdriv"]},
    "heap": {"placer": "heap"},
    "seed2": {"nextpnr": ["--seed", "2"]},
    "tables": {"tables": True},
    "notables": {"tables": False},
    "stages2-tables": {"stages": 2, "tables": True},
    "stages2-notables": {"stages": 2, "tables": False},
}
_OVERUSED = re.compile(r"router2 iteration (\d+): ([\d,]+) overused")


def _nextpnr_opts(family: str, variant: dict) -> list:
    opts = list(flow_options(family).get("nextpnr_opts", []))
    for d in variant.get("drop", []):
        opts = [o for o in opts if o != d]
    if "placer" in variant:
        if "--placer" in opts:
            i = opts.index("--placer")
            del opts[i:i + 2]
        opts += ["--placer", variant["placer"]]
    extra = list(variant.get("nextpnr", []))
    if "--seed" in extra and "--seed" in opts:           # replace, don't repeat
        i = opts.index("--seed")
        del opts[i:i + 2]
    return opts + extra


def _synth_counts(out: Path, name: str = "top") -> dict:
    st = json.loads((out / f"{name}.stat.json").read_text())
    cells = st["design"]["num_cells_by_type"]
    lut = cells.get("LUT4", 0) + cells.get("SB_LUT4", 0) + 2 * cells.get("CCU2C", 0)
    ff = sum(v for k, v in cells.items() if "FF" in k and not k.startswith("$"))
    return {"lut4": int(lut), "ff": int(ff), "bram": int(cells.get("DP16KD", 0) + cells.get("SB_RAM40_4K", 0))}


def run_one(model: Path, board_name: str, variant_name: str, limit: float, work: Path, stop_after=None) -> dict:
    net = load(model)
    board = load_board(board_name)
    var = VARIANTS[variant_name]
    tables = var.get("tables")                 # None: the board's default, as lgn-fpga build
    stages, geometry = board.build_options(var.get("stages"), tables)
    fit = estimate(net, board, stages=stages, count_tables=tables)
    parts = fit.parts["classifier"]
    from lgn_fpga.netlist.stats import estimate_resources
    core = estimate_resources(net, board.family, stages=stages, count_tables=geometry)["parts"]
    row = {"model": str(model), "gates": int(net.n_gates), "variant": variant_name, "board": board.name,
           "stages": stages, "count_tables": geometry[0] > 0, "limit_s": limit,
           "estimate": {"lut": fit.lut, "ff": fit.ff, "gates_lut": core["gates"]["lut"],
                        "popcount_lut": core["popcount"]["lut"], "gate_ff": core["gates"]["ff"] - core["gates"]["carry_registers"],
                        "carry_ff": core["gates"]["carry_registers"], "popcount_ff": core["popcount"]["ff"],
                        "io_ff": fit.parts["io"]["ff"], "classifier_lut": parts["lut"]},
           "meta": {k: v for k, v in net.meta.items() if k in ("dataset", "step", "recipe")}}
    flow_opts = {"nextpnr_opts": _nextpnr_opts(board.family, var)}
    # The flow file with the variant's nextpnr options (plan_build adds the report options itself).
    fp = plan_build(net, board, stages=stages, flow_file=_flow_file(board.family, flow_opts, work),
                    count_tables=tables)
    out = work / f"{Path(model).stem}-{variant_name}"
    t0 = time.perf_counter()
    try:
        res = run_build(fp, out, time_limit=limit, stop_after=stop_after, progress_every=60,
                        log=lambda s: print(f"  [{Path(model).stem} {variant_name}] {s}", flush=True))
        row["status"] = "routed" if stop_after is None else f"stopped after {stop_after}"
    except BuildTimeout as e:
        res = e.result
        row["status"] = "timeout"
    except BuildError as e:
        row["status"] = f"failed: {e}"
        res = getattr(e, "result", None)
    row["seconds"] = res.step_seconds if res else {}
    row["total_s"] = round(time.perf_counter() - t0, 1)
    row["progress"] = res.progress if res else []
    if (out / "top.stat.json").exists():
        row["synth"] = _synth_counts(out)
    rep = out / "top.report.json"
    if row["status"] == "routed" and rep.exists():
        r = json.loads(rep.read_text())
        fmax = [v.get("achieved") for v in r.get("fmax", {}).values() if v.get("achieved")]
        row["fmax_mhz"] = round(min(fmax), 1) if fmax else None
        row["clock_mhz"] = fp.clock_hz / 1e6
    return row


def _flow_file(family: str, opts: dict, work: Path) -> Path:
    import yaml
    d = flow_options(family)
    d.update(opts)
    work.mkdir(parents=True, exist_ok=True)
    p = work / f"flow-{family}-{abs(hash(json.dumps(d, sort_keys=True))) % 10**8}.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def _route_cell(r: dict) -> str:
    s = r["seconds"]
    if r["status"] == "routed":
        return f"{s.get('pnr', 0) / 60:.1f} min"
    over = [m for _, _, t in r["progress"] for m in [_OVERUSED.search(t)] if m]
    left = f", {over[-1].group(2)} overused at iter {over[-1].group(1)}" if over else ""
    if r["status"] == "timeout":
        return f"not routed in {r['limit_s'] / 60:.0f} min{left}"
    return r["status"][:60]


def print_table(rows):
    body = []
    for r in rows:
        sy = r.get("synth", {})
        e = r["estimate"]
        lut = sy.get("lut4")
        body.append([
            Path(r["model"]).stem, f"{r['gates']:,}", r["variant"],
            f"{e['gates_lut']:,}/{e['popcount_lut']:,}/{e['classifier_lut'] - e['gates_lut'] - e['popcount_lut']:,}",
            f"{e['gate_ff']:,}/{e['carry_ff']:,}/{e['popcount_ff']:,}/{e['io_ff']:,}",
            f"{lut:,}" if lut else "-", f"{sy['ff']:,}" if sy.get("ff") else "-",
            f"{lut / r['gates']:.2f}" if lut else "-",
            f"{r['seconds'].get('synth', 0) / 60:.1f} min", _route_cell(r),
            f"{r['fmax_mhz']} / {r['clock_mhz']:.0f}" if r.get("fmax_mhz") else "-"])
    table("ECP5 routing (est. split LUT4 gates/popcount/other, FF gates/carry/popcount/io; synthesized LUT4, FF)",
          ["model", "gates", "variant", "est. LUT4 split", "est. FF split", "LUT4", "FF", "LUT4/gate", "synth",
           "place+route", "Fmax / clock MHz"], body)


def _plot_series(series, path, xlabel, ylabel, title):
    """A log-scale line plot of ``series`` (``(label, [(x, y), ...])``), saved to ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, pts in series:
        if pts:
            ax.plot(*zip(*pts), marker=".", label=label)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def plot(rows, path):
    series = [(f"{Path(r['model']).stem} ({r['gates']:,} gates) {r['variant']}",
               [(t / 60, int(m.group(2).replace(",", ""))) for step, t, txt in r["progress"]
                for m in [_OVERUSED.search(txt)] if m and step == "pnr"]) for r in rows]
    _plot_series(series, path, "minutes into place and route", "overused wires (router2)",
                 "Router progress: fewer overused wires is closer to a routed design")


def plot_logs(named_logs, path):
    """Overused wires per router2 iteration from nextpnr logs (``LABEL=top.tim``), one line each."""
    rx = re.compile(r"iter=(\d+) wires=\d+ overused=(\d+)")
    series = []
    for item in named_logs:
        label, _, log = item.partition("=")
        text = Path(log).read_text(errors="replace")
        series.append((label, [(int(m.group(1)), max(int(m.group(2)), 1)) for m in rx.finditer(text)]))
    _plot_series(series, path, "router2 iteration", "overused wires (0 drawn as 1)",
                 "ECP5-85F routing: overused wires per router2 iteration")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", type=Path, help=".lgn netlists (optimized, as `lgn-fpga export` writes)")
    ap.add_argument("--board", default="ulx3s")
    ap.add_argument("--variants", default="default")
    ap.add_argument("--limit", type=float, default=1800, help="seconds per step before giving up (default 1800)")
    ap.add_argument("--work", type=Path, default=None, help="build folders (default: a temporary folder)")
    ap.add_argument("--json", type=Path, default=None, help="append one result object per build to this file")
    ap.add_argument("--plot", type=Path, default=None, help="router progress plot (PNG)")
    ap.add_argument("--table-only", action="store_true", help="print the table of --json without building")
    ap.add_argument("--synth-only", action="store_true", help="stop after synthesis")
    ap.add_argument("--quick", action="store_true", help="smoke test: a small random netlist, synthesis only")
    ap.add_argument("--plot-logs", nargs="+", metavar="LABEL=LOG",
                    help="plot overused wires per router2 iteration from nextpnr logs (top.tim) to --plot")
    a = ap.parse_args(argv)
    if a.plot_logs:
        plot_logs(a.plot_logs, a.plot or Path("route.png"))
        return 0
    if a.table_only:
        rows = [json.loads(l) for l in a.json.read_text().splitlines() if l.strip()]
        print_table(rows)
        if a.plot:
            plot(rows, a.plot)
        return 0
    variants = a.variants.split(",")
    for v in variants:
        if v not in VARIANTS:
            ap.error(f"unknown variant {v!r} (known: {', '.join(VARIANTS)})")
    tmp = tempfile.TemporaryDirectory(prefix="lgn-route-") if a.work is None else None
    work = Path(tmp.name) if tmp else a.work
    models = list(a.models)
    stop_after = "synth" if (a.synth_only or a.quick) else None
    if a.quick:
        from lgn_fpga.netlist.format import save
        from lgn_fpga.netlist.random import random_netlist
        net = random_netlist(np.random.default_rng(0), shape=(1, 4, 4), thresholds=3, widths=(48, 32, 20),
                             n_classes=4)
        models = [work / "quick.lgn"]
        save(net, models[0])
    if not models:
        ap.error("give at least one .lgn netlist (or --quick)")
    rows = []
    for m in models:
        for v in variants:
            r = run_one(m, a.board, v, a.limit, work, stop_after=stop_after)
            rows.append(r)
            if a.json:
                with open(a.json, "a") as f:
                    f.write(json.dumps(r) + "\n")
    print_table(rows)
    if a.plot:
        plot(rows, a.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
