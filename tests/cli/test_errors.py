"""Every command, given a bad argument, ends in one error line: no traceback, a non-zero exit status."""
import numpy as np
import pytest

from lgn_fpga.cli import main
from lgn_fpga.netlist.format import save
from lgn_fpga.netlist.random import random_netlist


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad-args")
    save(random_netlist(np.random.default_rng(0), shape=(1, 8, 8), thresholds=1, widths=(40, 20), n_classes=10),
         d / "ok.lgn")
    (d / "garbage.lgn").write_bytes(b"not a netlist at all")
    (d / "garbage.pt").write_bytes(b"not a checkpoint either")
    (d / "empty-run").mkdir()
    (d / "bad.yaml").write_text("layers: [\n")
    return d


CASES = [
    ["train", "no-such-dataset"],
    ["train", "digits", "--layers", "0"],
    ["train", "digits", "--config", "no-such-config"],
    ["train", "digits", "--config", "{d}/bad.yaml"],
    ["train", "digits", "--lr", "nan"],
    ["train", "digits", "--window", "0", "--connections", "local"],
    ["info", "{d}/no-such-run"],
    ["info", "{d}/empty-run"],
    ["info", "{d}/garbage.pt"],
    ["plot", "{d}/no-such-run"],
    ["report", "{d}/no-such-run"],
    ["export", "{d}/no-such-run", "-o", "{d}/x.lgn"],
    ["export", "{d}/garbage.pt", "-o", "{d}/x.lgn"],
    ["export", "{d}/empty-run", "-o", "{d}/x.lgn"],
    ["import", "difflogic", "{d}/garbage.pt", "-o", "{d}/x.lgn"],
    ["import", "difflogic", "{d}/no-such.pt", "-o", "{d}/x.lgn"],
    ["import", "torchlogix", "{d}/garbage.pt", "-o", "{d}/x.lgn"],
    ["eval", "{d}/garbage.lgn"],
    ["eval", "{d}/ok.lgn", "--dataset", "no-such-dataset"],
    ["stats", "{d}/garbage.lgn"],
    ["stats", "{d}/ok.lgn", "--stages", "0"],
    ["hdl", "{d}/ok.lgn", "--name", "9x", "-o", "{d}/hw"],
    ["hdl", "{d}/garbage.lgn", "-o", "{d}/hw"],
    ["build", "{d}/ok.lgn", "--board", "no-such-board", "-o", "{d}/b"],
    ["build", "{d}/garbage.lgn", "--board", "icebreaker", "-o", "{d}/b"],
    ["build", "{d}/ok.lgn", "--board", "icebreaker", "--stages", "0", "-o", "{d}/b"],
    ["flash", "{d}/no-such.bin", "--board", "icebreaker"],
    ["flash", "--board", "no-such-board"],
    ["stream", "--port", "sim://", "--baud", "0", "--model", "{d}/ok.lgn"],
    ["stream", "--port", "sim://", "--model", "{d}/garbage.lgn"],
    ["stream", "--port", "sim://?nonsense=1", "--model", "{d}/ok.lgn", "--limit", "1"],
]


@pytest.mark.parametrize("argv", CASES, ids=[" ".join(c[:2] + c[2:4]).replace("{d}/", "") for c in CASES])
def test_bad_argument_is_one_line(argv, files, capsys, monkeypatch):
    monkeypatch.chdir(files)
    args = [a.replace("{d}", str(files)) for a in argv]
    with pytest.raises(SystemExit) as e:
        main(args)
    out, err = capsys.readouterr()
    assert e.value.code not in (0, None), f"lgn-fpga {' '.join(args)} exited 0"
    assert "Traceback" not in out + err
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert lines and lines[-1].lower().startswith("error"), err
    assert "[" not in lines[-1] or "'" not in lines[-1].split("[", 1)[1][:2], f"a Python list in: {lines[-1]}"
