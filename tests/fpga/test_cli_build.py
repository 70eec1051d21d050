"""``lgn-fpga build`` and ``flash`` on the command line (no FPGA tools run here)."""
import json
import stat

import numpy as np
import pytest

from lgn_fpga.cli import main
from lgn_fpga.netlist.format import save
from lgn_fpga.netlist.random import random_netlist


def _save(tmp_path, widths, name="m.lgn"):
    net = random_netlist(np.random.default_rng(0), shape=(1, 8, 8), thresholds=3, widths=widths, n_classes=10)
    return save(net, tmp_path / name)


def _spy(tmp_path, monkeypatch):
    """Point every tool variable at a script that records that it ran."""
    spy = tmp_path / "spy.sh"
    spy.write_text(f'#!/bin/sh\necho "$0 $@" >> "{tmp_path}/ran.txt"\nexit 1\n')
    spy.chmod(spy.stat().st_mode | stat.S_IEXEC)
    for v in ("YOSYS", "NEXTPNR_ICE40", "NEXTPNR_ECP5", "ICEPACK", "ECPPACK"):
        monkeypatch.setenv(v, str(spy))
    return tmp_path / "ran.txt"


def test_oversized_model_refused_before_synthesis(tmp_path, monkeypatch, capsys):
    ran = _spy(tmp_path, monkeypatch)
    m = _save(tmp_path, (1500, 1500, 1000))
    with pytest.raises(SystemExit) as e:
        main(["build", str(m), "--board", "icestick", "-o", str(tmp_path / "b")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "model does not fit icestick (iCE40HX1K): logic cells: estimated" in err and "> 1,280 available" in err
    assert not ran.exists() and not (tmp_path / "b").exists()


def test_plan_only(tmp_path, monkeypatch, capsys):
    ran = _spy(tmp_path, monkeypatch)
    m = _save(tmp_path, (60, 40, 30))
    main(["build", str(m), "--board", "ulx3s-12f", "-o", str(tmp_path / "b"), "--plan-only", "--baud", "3000000"])
    out = tmp_path / "b"
    assert (out / "build_top.sh").exists() and (out / "top.lpf").exists() and (out / "top.il").exists()
    est = json.loads((out / "estimate.json").read_text())
    assert est["budget"]["lut"] == 12288 and est["lut"] > 0
    text = capsys.readouterr().out
    assert "3000000 baud" in text and not ran.exists()
    assert f"run: sh {out.resolve()}/rerun.sh" in text and "spy.sh" in (out / "rerun.sh").read_text()


def test_missing_model_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["build", "--board", "icebreaker"])
    assert "no MODEL given, no ./model.lgn and no trained run under ./runs: train one" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["build", "other.lgn", "--board", "icebreaker"])
    assert "model other.lgn not found" in capsys.readouterr().err


def test_unknown_board(tmp_path, capsys):
    m = _save(tmp_path, (60, 40, 30))
    with pytest.raises(SystemExit):
        main(["build", str(m), "--board", "de10"])
    assert "unknown board 'de10'; choose one of" in capsys.readouterr().err


def test_flash_dry_run(tmp_path, monkeypatch, capsys):
    tool = tmp_path / "iceprog"
    tool.write_text("#!/bin/sh\nexit 0\n")
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("ICEPROG", str(tool))
    bit = tmp_path / "top.bin"
    bit.write_bytes(b"x")
    main(["flash", "--board", "icebreaker", "--bitstream", str(bit), "--dry-run"])
    assert f"{tool} {bit}" in capsys.readouterr().out


def test_build_without_model_takes_the_newest_run(tmp_path, monkeypatch, capsys):
    # `lgn-fpga train ...` then `lgn-fpga build --board B`: the newest run is exported and built, and said so.
    _spy(tmp_path, monkeypatch)
    monkeypatch.chdir(tmp_path)
    for name in ("old", "new"):
        main(["train", "digits", "--layers", "2", "--width", "60", "--steps", "4", "--eval-every", "2",
              "--quiet", "-o", f"runs/{name}"])
    capsys.readouterr()
    main(["build", "--board", "ulx3s", "--plan-only", "-o", "b"])
    out = capsys.readouterr().out
    assert "exported runs/new -> runs/new/model.lgn" in out
    assert "model: runs/new/model.lgn (the newest run under ./runs" in out
    assert (tmp_path / "runs/new/model.lgn").is_file() and not (tmp_path / "runs/old/model.lgn").exists()
    # A run directory as MODEL is exported once, then reused.
    main(["build", "runs/old", "--board", "ulx3s", "--plan-only", "-o", "b"])
    assert "exported runs/old" in capsys.readouterr().out
    main(["build", "runs/old", "--board", "ulx3s", "--plan-only", "-o", "b"])
    assert "exported" not in capsys.readouterr().out


def test_second_build_into_a_folder_being_built_is_a_one_line_error(tmp_path, capsys):
    # Issue 15: two builds into one folder both exited 0 and mixed their files.
    from lgn_fpga.fpga.flow import _lock
    m = _save(tmp_path, (60, 40, 30))
    out = tmp_path / "b"
    fd = _lock(tmp_path / ".b.lock")              # what a running build holds
    try:
        with pytest.raises(SystemExit) as e:
            main(["build", str(m), "--board", "icebreaker", "--plan-only", "-o", str(out)])
        assert e.value.code != 0
        err = capsys.readouterr().err
        assert f"another lgn-fpga build is writing {out} (lock {tmp_path / '.b.lock'})" in err
        # one error line (a random netlist also gets the "not optimized" note first)
        assert len([l for l in err.splitlines() if l.startswith("error")]) == 1 and not out.exists()
    finally:
        import os
        os.close(fd)
    main(["build", str(m), "--board", "icebreaker", "--plan-only", "-o", str(out)])   # free again
    assert (out / "rerun.sh").is_file()


def test_failed_or_interrupted_rebuild_leaves_the_previous_build(tmp_path, monkeypatch, capsys):
    # Issue 15: Ctrl-C during a rebuild left the new top.il beside the old bitstream and report.
    import subprocess

    from lgn_fpga.fpga import flow
    _spy(tmp_path, monkeypatch)                    # every tool fails
    a, b = _save(tmp_path, (60, 40, 30), "a.lgn"), _save(tmp_path, (90, 50, 30), "b.lgn")
    out = tmp_path / "b"
    main(["build", str(a), "--board", "icebreaker", "--plan-only", "-o", str(out)])
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(SystemExit) as e:
        main(["build", str(b), "--board", "icebreaker", "-o", str(out)])
    assert e.value.code != 0
    err = capsys.readouterr().err
    assert f"see {tmp_path / 'b.failed'}" in err and (tmp_path / "b.failed" / "synth.log").is_file()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(flow.subprocess, "Popen", interrupted)
    with pytest.raises(SystemExit) as e:                 # the CLI's Ctrl-C exit
        main(["build", str(b), "--board", "icebreaker", "-o", str(out)])
    assert e.value.code == 130
    monkeypatch.setattr(flow.subprocess, "Popen", subprocess.Popen)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not list(tmp_path.glob(".b.new-*"))
    # A successful plan then replaces the whole folder: nothing of the old build stays beside it.
    (out / "top.bin").write_bytes(b"old bitstream")
    main(["build", str(b), "--board", "icebreaker", "--plan-only", "-o", str(out)])
    assert not (out / "top.bin").exists() and (out / "top.il").read_bytes() != before["top.il"]


def test_build_refuses_to_replace_a_folder_it_did_not_make(tmp_path, monkeypatch, capsys):
    m = _save(tmp_path, (60, 40, 30))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    for target in (str(mine), "."):
        monkeypatch.chdir(tmp_path if target == str(mine) else mine)
        with pytest.raises(SystemExit):
            main(["build", str(m), "--board", "icebreaker", "--plan-only", "-o", target])
        assert "a build replaces" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "keep me"
