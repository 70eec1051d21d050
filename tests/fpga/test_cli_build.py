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
