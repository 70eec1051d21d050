"""lgn-fpga export / eval / stats, including one clear line (and a non-zero exit) for every bad input."""
import json
import struct
import subprocess
import sys

import numpy as np
import pytest

from lgn_fpga.cli import main
from lgn_fpga.netlist.format import load, save
from lgn_fpga.netlist.random import random_netlist, random_netlists


def run_cli(capsys, *argv):
    """(exit code, stdout, stderr) of ``lgn-fpga argv`` run in this process."""
    try:
        main(list(map(str, argv)))
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def model(tmp_path):
    net = random_netlist(np.random.default_rng(0), shape=(1, 8, 8), thresholds=3, widths=(200, 150, 100),
                         n_classes=10, skip_prob=0.2)
    net.meta = {"dataset": "digits"}
    return save(net, tmp_path / "m.lgn")


def test_export_eval_stats_on_a_trained_run(tiny_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LGN_FPGA_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "model.lgn"
    code, text, err = run_cli(capsys, "export", tiny_run, "-o", out)
    assert code == 0, err
    for word in ("raw", "propagate_constants", "fold_wires", "remove_dead", "carry regs", "iCE40 LUT4"):
        assert word in text
    net = load(out)
    assert net.meta["dataset"] == "digits" and net.meta["passes"]
    code, text, err = run_cli(capsys, "export", tiny_run, "-o", tmp_path / "raw.lgn", "--no-optimize")
    assert code == 0 and load(tmp_path / "raw.lgn").n_gates == 360
    # the optimized and the raw netlist, and the run itself, classify every image the same way
    lines = []
    for m in (out, tmp_path / "raw.lgn", tiny_run):
        code, text, err = run_cli(capsys, "eval", m, "--backend", "numpy")
        assert code == 0, err
        lines.append(text.splitlines()[0])
    assert lines[0] == lines[1] == lines[2] and "digits test: 360 images, accuracy" in lines[0]
    code, text, err = run_cli(capsys, "stats", out)
    assert code == 0 and "carry registers" in text and "gates by op" in text
    code, text, err = run_cli(capsys, "stats", out, "--json", "--stages", "2")
    assert code == 0 and json.loads(text)["stages"] == 2


def test_eval_options(model, capsys):
    code, text, err = run_cli(capsys, "eval", model, "--limit", "50", "--split", "val", "--backend", "reference")
    assert code == 0, err
    assert "digits val: 50 images" in text and "reference backend" in text and "images/s" in text


def test_eval_needs_a_dataset_that_fits(tmp_path, capsys):
    net = random_netlists(1, 1)[0]            # 1x4x4 images, no dataset recorded
    p = save(net, tmp_path / "n.lgn")
    code, _, err = run_cli(capsys, "eval", p)
    assert code != 0 and "pass --dataset" in err
    code, _, err = run_cli(capsys, "eval", p, "--dataset", "digits")
    assert code != 0 and "digits images are 1x8x8 but" in err and err.count("\n") == 1


def _bad_files(model, tmp_path):
    data = model.read_bytes()
    trunc = tmp_path / "trunc.lgn"
    trunc.write_bytes(data[:len(data) // 2])
    corrupt = tmp_path / "corrupt.lgn"
    b = bytearray(data)
    b[-3] ^= 0xFF
    corrupt.write_bytes(bytes(b))
    version = tmp_path / "version.lgn"
    b = bytearray(data)
    struct.pack_into("<I", b, 8, 7)
    version.write_bytes(bytes(b))
    edited = tmp_path / "edited.lgn"
    edited.write_bytes(data.replace(b'"dataset": "digits"', b'"dataset": "mnist!"'))
    other = tmp_path / "notes.lgn"
    other.write_text("hello")
    return {trunc: "truncated", corrupt: "checksum mismatch", version: "format version 7",
            edited: "checksum mismatch", other: "not an .lgn netlist", tmp_path / "missing.lgn": "no such netlist"}


@pytest.mark.parametrize("command", ["stats", "eval"])
def test_bad_netlists_one_line_each(model, tmp_path, capsys, command):
    for path, pattern in _bad_files(model, tmp_path).items():
        code, out, err = run_cli(capsys, command, path)
        assert code != 0, path
        assert err.startswith("error: ") and err.count("\n") == 1 and pattern in err, err
        assert "Traceback" not in err + out


def test_bad_netlist_through_the_real_entry_point(model, tmp_path):
    path = next(iter(_bad_files(model, tmp_path)))
    r = subprocess.run([sys.executable, "-m", "lgn_fpga", "stats", str(path)], capture_output=True, text=True)
    assert r.returncode != 0
    assert r.stderr.startswith("error: ") and "truncated" in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1


def test_export_of_a_missing_run(tmp_path, capsys):
    code, _, err = run_cli(capsys, "export", tmp_path / "nothing", "-o", tmp_path / "x.lgn")
    assert code != 0 and err.startswith("error: ") and "Traceback" not in err


# -- any netlist in, any netlist out (issue 13 item 2) ----------------------------------------------------

@pytest.fixture
def raw_model(tmp_path):
    """A netlist the passes shrink (random: many gates unread), as an imported or raw-exported one would be."""
    net = random_netlist(np.random.default_rng(3), shape=(1, 8, 8), thresholds=3, widths=(300, 200, 100),
                         n_classes=10)
    net.meta = {"dataset": "digits"}
    return save(net, tmp_path / "raw.lgn")


def test_export_reoptimizes_a_netlist(raw_model, tmp_path, capsys):
    from lgn_fpga.netlist.passes import optimize
    raw = load(raw_model)
    code, text, err = run_cli(capsys, "export", raw_model, "-o", tmp_path / "opt.lgn")
    assert code == 0, err
    assert "input" in text and "remove_dead" in text and "not a readable checkpoint" not in err
    opt = load(tmp_path / "opt.lgn")
    assert opt.n_gates == optimize(raw)[0].n_gates < raw.n_gates and opt.meta["passes"]
    assert opt.meta["dataset"] == "digits"
    # an optimized netlist is at a fixed point: exporting it again changes nothing
    code, text, err = run_cli(capsys, "export", tmp_path / "opt.lgn", "-o", tmp_path / "opt2.lgn")
    assert code == 0 and load(tmp_path / "opt2.lgn").content_hash() == opt.content_hash()
    # --no-optimize copies
    code, text, err = run_cli(capsys, "export", raw_model, "-o", tmp_path / "copy.lgn", "--no-optimize")
    assert code == 0 and load(tmp_path / "copy.lgn").content_hash() == raw.content_hash()


def test_export_of_a_netlist_without_the_suffix(raw_model, tmp_path, capsys):
    other = tmp_path / "model.bin"
    other.write_bytes(raw_model.read_bytes())
    code, text, err = run_cli(capsys, "export", other, "-o", tmp_path / "opt.lgn")
    assert code == 0, err


def test_info_describes_a_netlist(raw_model, tmp_path, capsys):
    import lgn_fpga
    code, text, err = run_cli(capsys, "info", raw_model)
    assert code == 0, err
    assert "checkpoint" not in text + err and f"written by lgn-fpga {lgn_fpga.__version__}" in text
    assert "optimized    no" in text and "the passes would remove" in text and "gates by op" in text
    run_cli(capsys, "export", raw_model, "-o", tmp_path / "opt.lgn")
    code, text, err = run_cli(capsys, "info", tmp_path / "opt.lgn")
    assert code == 0 and "optimized    yes; passes run: propagate_constants" in text


def test_hdl_and_build_say_when_a_netlist_is_not_optimized(raw_model, tmp_path, capsys):
    from lgn_fpga.netlist.passes import optimize
    raw = load(raw_model)
    removed = raw.n_gates - optimize(raw)[0].n_gates
    want = f"not optimized: the passes would remove {removed:,} of its {raw.n_gates:,} gates"
    code, text, err = run_cli(capsys, "hdl", raw_model, "-o", tmp_path / "hdl", "--no-verilog")
    assert code == 0 and want in err, err
    code, text, err = run_cli(capsys, "build", raw_model, "--board", "icebreaker", "--plan-only",
                              "-o", tmp_path / "b")
    assert code == 0 and want in err, err
    run_cli(capsys, "export", raw_model, "-o", tmp_path / "opt.lgn")
    code, text, err = run_cli(capsys, "build", tmp_path / "opt.lgn", "--board", "icebreaker", "--plan-only",
                              "-o", tmp_path / "b2")
    assert code == 0 and "not optimized" not in err


def test_sim_says_when_a_netlist_is_not_optimized(tmp_path, capsys):
    from lgn_fpga.sim.run import main as sim_main
    net = random_netlist(np.random.default_rng(4), shape=(1, 4, 4), thresholds=2, widths=(80, 40), n_classes=4)
    path = save(net, tmp_path / "raw.lgn")
    assert sim_main([str(path), "--dataset", "digits"]) == 2     # the wrong image size stops it before any sim
    assert "raw.lgn is not optimized: the passes would remove" in capsys.readouterr().err
