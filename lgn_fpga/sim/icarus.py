"""Run the cocotb bench (:mod:`lgn_fpga.sim.tb_classifier`) on exported Verilog with Icarus, via ``cocotb_tools.runner``."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..tools import find_tool
from .verilator import SimError



def have_icarus() -> bool:
    return find_tool("iverilog") is not None and find_tool("vvp") is not None


@dataclass
class CocotbRun:
    classes: np.ndarray      # what the full-rate test saw (-1 where nothing came out)
    tests: int
    failed: int
    seconds: float           # full-rate streaming time inside the simulator
    results_xml: Path

    @property
    def images_per_second(self) -> float:
        return len(self.classes) / max(self.seconds, 1e-9)


def run_cocotb(verilog: Path, top: str, payloads: np.ndarray, expected: np.ndarray, latency: int,
               build_dir: Path, *, testcase: str | None = None, stall_images: int = 200, seed: int = 1,
               simulator: str = "icarus") -> CocotbRun:
    """Build ``verilog`` in ``build_dir`` (one directory per bench) and run the cocotb tests.

    Returns the result counts; raises :class:`SimError` when the simulator is
    missing or did not produce results.  Failing tests are reported in
    ``failed`` (the caller decides how to fail).
    """
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    if simulator == "icarus" and not have_icarus():
        raise SimError("iverilog not found: apt-get install iverilog (make test installs it when run as root)")
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    vec, exp, out = build_dir / "vectors.npy", build_dir / "expected.npy", build_dir / "classes.npy"
    np.save(vec, np.ascontiguousarray(payloads, dtype=np.uint8))
    np.save(exp, np.asarray(expected, dtype=np.int64))
    if out.exists():
        out.unlink()
    job = build_dir / "job.json"
    job.write_text(json.dumps({"vectors": str(vec), "expected": str(exp), "latency": int(latency),
                               "out": str(out), "stall_images": int(stall_images), "seed": int(seed)}))
    runner = get_runner(simulator)
    runner.build(sources=[Path(verilog).resolve()], hdl_toplevel=top, build_dir=build_dir,
                 timescale=("1ns", "1ps"), always=True, log_file=build_dir / "build.log")
    t0 = time.perf_counter()
    xml = build_dir / "results.xml"
    if xml.exists():
        xml.unlink()
    try:
        runner.test(test_module="lgn_fpga.sim.tb_classifier", hdl_toplevel=top, build_dir=build_dir,
                    test_dir=build_dir, testcase=testcase, extra_env={"LGN_SIM_JOB": str(job)},
                    results_xml=str(xml), log_file=build_dir / "cocotb.log")
    except SystemExit:
        # Under pytest (and on a simulator crash) the runner exits on failing tests;
        # the results file below says what happened either way.
        pass
    wall = time.perf_counter() - t0
    try:
        tests, failed = get_results(Path(xml))
    except RuntimeError as e:
        raise SimError(f"{simulator}: {e}; see {build_dir / 'cocotb.log'}") from None
    if out.exists():
        classes = np.load(out)
        seconds = json.loads(Path(str(out) + ".json").read_text())["seconds"]
    else:
        classes, seconds = np.full(len(expected), -1, np.int64), wall
    return CocotbRun(classes, tests, failed, seconds, xml)
