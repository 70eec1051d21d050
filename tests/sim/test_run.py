# amaranth: UnusedElaboratable=no
"""The ``python -m lgn_fpga.sim`` runner (the ``make sim`` entry point)."""
import json
import re

import numpy as np
import pytest

from lgn_fpga.netlist.format import save as save_netlist
from lgn_fpga.netlist.random import random_netlist

from lgn_fpga.sim.run import agreement_line, main, pick_dataset


def test_agreement_line():
    sw = np.array([0, 1, 2, 2])
    labels = np.array([0, 1, 1, 2])
    line, ok = agreement_line(sw.copy(), sw, labels)
    assert ok and line == "4/4 images agree; hardware accuracy 75.00% = software 75.00%"
    hw = sw.copy()
    hw[1] = 0
    line, ok = agreement_line(hw, sw, labels)
    assert not ok and line == "3/4 images agree; hardware accuracy 50.00% != software 75.00%"


def test_dataset_from_shape_or_meta():
    net = random_netlist(np.random.default_rng(0), shape=(1, 8, 8))
    assert pick_dataset(net, None) == "digits"
    net.meta["dataset"] = "fashion-mnist"
    assert pick_dataset(net, None) == "fashion-mnist"
    assert pick_dataset(net, "mnist") == "mnist"


@pytest.mark.heavy
def test_runner_on_a_saved_model_through_amaranth(tmp_path, capsys):
    net = random_netlist(np.random.default_rng(3), shape=(1, 8, 8), thresholds=3, widths=(200, 150), n_classes=10,
                         skip_prob=0.1, bias=True)
    model = tmp_path / "m.lgn"
    save_netlist(net, model)
    rc = main([str(model), "--limit", "30", "--sim", "amaranth", "--stall-images", "20",
               "--build-dir", str(tmp_path / "b")])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0, out
    assert re.fullmatch(r"30/30 images agree; hardware accuracy \d+\.\d\d% = software \d+\.\d\d%", out[-1])
    assert out[-2].startswith("amaranth: 30/30 images agree")


@pytest.mark.sim
def test_runner_with_a_boards_count_tables_through_verilator(tmp_path, capsys):
    # --board: the classifier as that board's build makes it (block-RAM count tables in the popcount).
    from lgn_fpga.sim.vboard import have_verilator
    if not have_verilator():
        pytest.skip("verilator not installed")
    net = random_netlist(np.random.default_rng(4), shape=(1, 8, 8), thresholds=3, widths=(300, 200), n_classes=10,
                         skip_prob=0.1, bias=True)
    model = tmp_path / "m.lgn"
    save_netlist(net, model)
    rc = main([str(model), "--sim", "verilator", "--board", "icebreaker", "--build-dir", str(tmp_path / "b")])  # iCE40: tables on
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0, out
    assert re.fullmatch(r"360/360 images agree; hardware accuracy \d+\.\d\d% = software \d+\.\d\d%", out[-1])
    assert "count_table" in (tmp_path / "b" / "lgn_classifier.v").read_text()
    # ... and reading the images as the board does: packed levels, 2 bits a pixel for 3 thresholds
    info = json.loads((tmp_path / "b" / "lgn_classifier.json").read_text())
    assert info["inputs"] == "levels" and info["input_width"] == 2 * 64


def test_runner_reads_bytes_or_levels(tmp_path, capsys):
    net = random_netlist(np.random.default_rng(5), shape=(1, 8, 8), thresholds=3, widths=(120, 100), n_classes=10,
                         skip_prob=0.1, bias=True)
    model = tmp_path / "m.lgn"
    save_netlist(net, model)
    for wire, width in (("bytes", 8 * 64), ("levels", 2 * 64)):
        rc = main([str(model), "--limit", "12", "--sim", "amaranth", "--stall-images", "6", "--wire", wire,
                   "--build-dir", str(tmp_path / wire)])
        out = capsys.readouterr().out.strip().splitlines()
        assert rc == 0 and out[-1].startswith("12/12 images agree"), out
        info = json.loads((tmp_path / wire / "lgn_classifier.json").read_text())
        assert info["inputs"] == wire and info["input_width"] == width


def test_runner_refuses_a_mismatched_dataset(tmp_path, capsys):
    net = random_netlist(np.random.default_rng(3), shape=(1, 5, 5))
    model = tmp_path / "m.lgn"
    save_netlist(net, model)
    assert main([str(model), "--sim", "amaranth", "--build-dir", str(tmp_path)]) == 2
    assert "pass --dataset" in capsys.readouterr().err
    assert main([str(model), "--dataset", "digits", "--sim", "amaranth", "--build-dir", str(tmp_path)]) == 2
    assert "the netlist expects (1, 5, 5)" in capsys.readouterr().err
