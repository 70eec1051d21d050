"""Run the top-level cocotb bench (:mod:`lgn_fpga.sim.tb_top`) with Icarus, via ``cocotb_tools.runner``.

``python -m lgn_fpga.sim.run_top [MODEL.lgn] [--images N] [--dataset D]`` runs it on a
model (default: a small random netlist on random images); the tests call
:func:`run_top_bench`.  (Debian's Verilator 5.006 is too old for cocotb, so
the bench uses Icarus.)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .icarus import have_icarus


# Fast benches: 8 cycles per UART bit (the receiver samples mid-bit), a frame timeout of 48 bit times.
CYCLES_PER_BIT = 8
TIMEOUT_BITS = 48
BAUD = 115200


@dataclass
class TopBenchRun:
    tests: int
    failed: int
    seconds: float
    results_xml: Path


def make_top(net, *, cycles_per_bit: int = CYCLES_PER_BIT, timeout_bits: int = TIMEOUT_BITS, n_leds: int = 4,
             stages: int = 1):
    from lgn_fpga.hdl.top import ClassifierTop
    return ClassifierTop(net, clk_hz=BAUD * cycles_per_bit, baud=BAUD, n_leds=n_leds, stages=stages,
                         frame_timeout=timeout_bits * cycles_per_bit)


def run_top_bench(net, images, build_dir, *, testcase=None, cycles_per_bit: int = CYCLES_PER_BIT,
                  timeout_bits: int = TIMEOUT_BITS, n_leds: int = 4, stages: int = 1) -> TopBenchRun:
    """Build the top level of ``net`` into ``build_dir`` and run the cocotb tests on ``images``.

    Raises :class:`lgn_fpga.sim.verilator.SimError` when Icarus is missing or produced no results;
    failing tests are counted in ``failed``.
    """
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    from lgn_fpga.hdl.export import to_verilog
    from lgn_fpga.netlist.evaluate import predict
    from .verilator import SimError

    if not have_icarus():
        raise SimError("iverilog not found: apt-get install iverilog")
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    images = np.ascontiguousarray(images, dtype=np.uint8).reshape(len(images), -1)
    top = make_top(net, cycles_per_bit=cycles_per_bit, timeout_bits=timeout_bits, n_leds=n_leds, stages=stages)
    vfile = build_dir / "top.v"
    vfile.write_text(to_verilog(top, name="top"))
    job = build_dir / "job.json"
    job.write_text(json.dumps({
        "images": images.tolist(), "expected": predict(net, images.reshape(len(images), *net.encoding.shape)).tolist(),
        "cycles_per_bit": cycles_per_bit, "frame_timeout": top.timeout, "n_leds": n_leds,
        "info": top.info.encode().hex(), "latency": top.latency}))
    runner = get_runner("icarus")
    runner.build(sources=[vfile], hdl_toplevel="top", build_dir=build_dir, timescale=("1ns", "1ps"), always=True,
                 log_file=build_dir / "build.log")
    t0 = time.perf_counter()
    xml = runner.test(test_module="lgn_fpga.sim.tb_top", hdl_toplevel="top", build_dir=build_dir, test_dir=build_dir,
                      testcase=testcase, extra_env={"LGN_TOP_JOB": str(job)},
                      results_xml=str(build_dir / "results.xml"), log_file=build_dir / "cocotb.log")
    secs = time.perf_counter() - t0
    try:
        tests, failed = get_results(Path(xml))
    except RuntimeError as e:
        raise SimError(f"icarus: {e}; see {build_dir / 'cocotb.log'}") from None
    return TopBenchRun(tests, failed, secs, Path(xml))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lgn_fpga.sim.run_top", description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", help=".lgn netlist (default: a small random one)")
    ap.add_argument("--dataset", help="stream this dataset's test images (default: random images)")
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--build", default="build/sim_top")
    ap.add_argument("--testcase", help="run one test: stream, info or faults")
    a = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    if a.model:
        from lgn_fpga.netlist.format import load
        net = load(a.model)
    else:
        from lgn_fpga.netlist.random import random_netlist
        net = random_netlist(rng, shape=(1, 4, 4), thresholds=3, widths=(48, 32, 20), n_classes=4)
    if a.dataset:
        from lgn_fpga.data.datasets import load as load_data
        imgs = load_data(a.dataset).test.images[:a.images]
    else:
        imgs = rng.integers(0, 256, (a.images, *net.encoding.shape), np.uint8)
    r = run_top_bench(net, imgs, a.build, testcase=a.testcase)
    print(f"{r.tests} tests, {r.failed} failed, {r.seconds:.1f} s (results: {r.results_xml})")
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
