"""``lgn-fpga stream`` against the virtual board: the same answers and accuracy as the software model."""
import json
import re

import numpy as np
import pytest

from lgn_fpga.cli import main
from lgn_fpga.data.datasets import load as load_data
from lgn_fpga.sim.vboard import have_verilator
from lgn_fpga.netlist.evaluate import predict
from lgn_fpga.netlist.format import save
from lgn_fpga.netlist.random import random_netlist

pytestmark = [pytest.mark.sim, pytest.mark.skipif(not have_verilator(), reason="verilator not installed")]


def _model(tmp_path, seed, name):
    net = random_netlist(np.random.default_rng(seed), shape=(1, 8, 8), thresholds=3, widths=(120, 80, 50),
                         n_classes=10)
    net.meta["dataset"] = "digits"
    return net, save(net, tmp_path / name)


def test_stream_sim_matches_software_accuracy(tmp_path, capsys):
    net, path = _model(tmp_path, 1, "a.lgn")
    out = tmp_path / "r.json"
    main(["stream", "--port", "sim://", "--model", str(path), "--limit", "80", "--json", str(out)])
    r = json.loads(out.read_text())
    test = load_data("digits").test.head(80)
    golden = predict(net, test.images)
    assert r["images"] == 80 and r["mismatches"] == [] and r["unanswered"] == []
    assert r["accuracy_board"] == r["accuracy_golden"] == float((golden == test.labels).mean())
    text = capsys.readouterr().out
    assert "mismatches board vs golden: 0" in text and "of the link's limit" in text and "at 115,200 baud" in text
    # The same number `lgn-fpga eval` reports for these images.
    main(["eval", str(path), "--limit", "80"])
    ev = re.search(r"accuracy ([\d.]+)%", capsys.readouterr().out)
    assert ev and ev.group(1) == f"{100 * r['accuracy_board']:.2f}"


def test_stream_refuses_a_board_running_another_model(tmp_path, capsys):
    _, a = _model(tmp_path, 1, "a.lgn")
    _, b = _model(tmp_path, 2, "b.lgn")
    with pytest.raises(SystemExit) as e:
        main(["stream", "--port", f"sim://?model={a}", "--model", str(b), "--limit", "4"])
    assert e.value.code != 0
    assert "the board runs another model" in capsys.readouterr().err


def test_stream_without_model_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["stream", "--port", "sim://"])
    assert "no MODEL given and ./model.lgn does not exist" in capsys.readouterr().err
