"""The one Verilator builder, and the plain C++ stream bench (``verilator_harness.cpp``) run on it.

:func:`build` compiles a design with a C++ harness (package data beside this
file: ``verilator_harness.cpp`` for the classifier's stream ports,
``vboard_harness.cpp`` for the virtual board's UART pins) into one binary,
cached by the hash of the design, the harness and the options, and built in a
scratch folder that replaces the old one only when complete.
Debian's Verilator 5.006 is too old for cocotb (which needs 5.036 or later)
but compiles these harnesses fine; it simulates about a hundred times faster
than Icarus, which makes whole test sets practical.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import LgnError
from ..tools import find_tool

HERE = Path(__file__).resolve().parent
HARNESS = HERE / "verilator_harness.cpp"
VBOARD_HARNESS = HERE / "vboard_harness.cpp"
MIN_VERSION = (4, 210)   # VerilatedContext


class SimError(LgnError):
    """A simulator is missing, failed to build, or the design broke the stream protocol."""


def verilator_path() -> str | None:
    """Verilator (found as :mod:`lgn_fpga.tools` says: ``$VERILATOR``, then PATH), if it runs and is new enough
    for the harness."""
    exe = find_tool("verilator", SimError)
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"Verilator (\d+)\.(\d+)", out)
    if not m or (int(m[1]), int(m[2])) < MIN_VERSION:
        return None
    return exe


@dataclass
class VerilatorRun:
    classes: np.ndarray      # uint16 per image, 0xFFFF where none came out
    stats: dict              # the harness's JSON line
    seconds: float           # simulation time (excluding the build)

    @property
    def images_per_second(self) -> float:
        return self.stats["images"] / max(self.stats["seconds"], 1e-9)


def build(verilog: Path, top: str, build_dir: Path, *, jobs: int | None = None, opt: str = "-O0",
          harness: Path = HARNESS) -> Path:
    """Compile ``verilog`` with ``harness`` into ``build_dir/Vharness`` (reused when nothing changed).

    The design's class is ``Vdut`` (``#include "Vdut.h"`` in the harness).
    ``opt`` is the C++ optimization level.  ``-O0`` (default) compiles an
    8k-gate MNIST design about 4x faster than Verilator's ``-Os`` (measured:
    28 s against 126 s of CPU) and still simulates 10,000 images in about
    3 s; pass ``-Os`` for runs of millions of images.

    Raises
    ------
    SimError
        If Verilator is missing or the build fails.
    """
    exe = verilator_path()
    if exe is None:
        raise SimError("verilator (4.210 or later) not found: apt-get install verilator, or set VERILATOR")
    build_dir = Path(build_dir)
    harness = Path(harness)
    key = hashlib.sha256(Path(verilog).read_bytes() + harness.read_bytes() + f"{top} {opt}".encode()).hexdigest()
    binary, stamp = build_dir / "Vharness", build_dir / "build.sha256"
    if binary.exists() and stamp.exists() and stamp.read_text() == key:
        return binary
    build_dir.parent.mkdir(parents=True, exist_ok=True)
    # A scratch folder moved into place when complete: an interrupted or concurrent build is never reused.
    tmp = Path(tempfile.mkdtemp(prefix=f".{build_dir.name}.build-", dir=build_dir.parent))
    try:
        jobs = jobs or max(1, min(4, os.cpu_count() or 1))
        cmd = [exe, "--cc", "--exe", "--build", "-j", str(jobs), "--prefix", "Vdut", "--top-module", top,
               "-Wno-fatal", "-Wno-lint", "-Wno-style", "--x-assign", "0", "--x-initial", "0",
               "-MAKEFLAGS", f"OPT_FAST={opt} OPT_SLOW={opt} OPT_GLOBAL={opt}", "-Mdir", str(tmp / "obj"),
               "-o", str((tmp / "Vharness").resolve()), str(Path(verilog).resolve()), str(harness.resolve())]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode or not (tmp / "Vharness").exists():
            tail = " | ".join((r.stderr or r.stdout).strip().splitlines()[-6:])
            raise SimError(f"verilator build failed (exit {r.returncode}): {tail}")
        (tmp / "build.sha256").write_text(key)
        if build_dir.exists():
            shutil.rmtree(build_dir, ignore_errors=True)
        try:
            os.replace(tmp, build_dir)
        except OSError:
            if not (binary.exists() and stamp.exists() and stamp.read_text() == key):   # lost a race: fine if done
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return binary


def run(binary: Path, payloads: np.ndarray, latency: int, work_dir: Path, *, valid_prob: float = 1.0,
        ready_prob: float = 1.0, seed: int = 1) -> VerilatorRun:
    """Stream ``payloads`` (uint8 ``[N, payload_bytes]``) through the built harness.

    Raises
    ------
    SimError
        If the harness reports a protocol error (lost, duplicated or late classes).
    """
    payloads = np.ascontiguousarray(payloads, dtype=np.uint8)
    n, nbytes = payloads.shape
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    vec, out = work_dir / "vectors.bin", work_dir / "classes.bin"
    payloads.tofile(vec)
    cmd = [str(binary), str(vec), str(out), str(n), str(nbytes), str(latency), repr(float(valid_prob)),
           repr(float(ready_prob)), str(int(seed))]
    r = subprocess.run(cmd, capture_output=True, text=True)
    line = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    try:
        stats = json.loads(line)
    except json.JSONDecodeError:
        raise SimError(f"verilator harness failed (exit {r.returncode}): {r.stderr.strip()[-300:]}") from None
    if r.returncode:
        raise SimError(f"verilator: stream protocol broken: {line}")
    classes = np.fromfile(out, dtype="<u2")
    return VerilatorRun(classes, stats, stats["seconds"])
