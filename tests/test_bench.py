"""The benchmark scripts still run (``--quick``: tiny sizes) and their correctness columns hold."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.heavy      # each runs a bench script in a subprocess


def run_bench(name, *args):
    r = subprocess.run([sys.executable, str(ROOT / "bench" / name), "--quick", *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return r.stdout


def test_infer_quick_rows_agree():
    out = run_bench("infer.py")
    rows = [l for l in out.splitlines() if l.startswith(("reference ", "numpy", "c ", "c,", "torch "))]
    assert len(rows) >= 5
    assert all(" yes " in l for l in rows), "\n".join(rows)


def test_infer_takes_the_models_dataset(tmp_path):
    """A digits model is timed on digits (it used to get random bytes, and any 28x28 model got MNIST)."""
    import numpy as np

    from lgn_fpga.netlist.format import save
    from lgn_fpga.netlist.random import random_netlist
    net = random_netlist(np.random.default_rng(0), shape=(1, 8, 8), thresholds=2, widths=(60, 40), n_classes=10)
    net.meta = {"dataset": "digits"}
    save(net, tmp_path / "d.lgn")
    out = run_bench("infer.py", "--model", str(tmp_path / "d.lgn"), "--no-io", "--lanes", "1")
    assert "# images: the digits test set" in out
    small = random_netlist(np.random.default_rng(0), shape=(1, 4, 4), thresholds=2, widths=(60, 40), n_classes=10)
    save(small, tmp_path / "s.lgn")
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "infer.py"), "--quick", "--no-io", "--model",
                        str(tmp_path / "s.lgn"), "--dataset", "digits"], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode != 0 and "digits images are 1x8x8, the model takes 1x4x4" in r.stderr


def test_kernels_quick_table():
    out = run_bench("kernels.py", "--threads", "1")
    assert "| model | batch |" in out and "C 1T ms" in out


@pytest.mark.sim
def test_train_step_quick_table():
    """The shipped-config step bench runs a real config's training step and tabulates it."""
    out = run_bench("train_step.py")
    row = [l for l in out.splitlines() if l.startswith("digits-tiny")]
    assert len(row) == 1 and "min for 3,000 steps" in row[0], out
    assert float(row[0].split()[3]) > 0


def test_hdl_quick_simulators_agree():
    out = run_bench("hdl.py")
    assert "Generation" in out and "ClassifierCore" in out
    sims = [l for l in out.splitlines() if l.startswith(("Amaranth (pysim)", "cocotb + Icarus", "Verilator"))]
    assert sims and all(l.rstrip().endswith("True") for l in sims), "\n".join(sims)


def test_agreement_on_a_trained_run(tmp_path, lgn_cli):
    lgn_cli(["train", "digits", "--set", "widths=[200,200]", "--steps", "60", "--eval-every", "30", "--quiet",
             "-o", str(tmp_path / "r")])
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "agreement.py"), str(tmp_path / "r")], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "differs from torch on 0 images" in r.stdout and "optimized netlist" in r.stdout


def test_route_quick_synthesizes_and_tabulates(tmp_path):
    # A small random netlist through the real ECP5 synthesis (no place and route): the table and the JSON row.
    out = run_bench("route.py", "--variants", "default,stages2", "--json", str(tmp_path / "r.jsonl"))
    assert "ECP5 routing" in out and "LUT4/gate" in out
    import json
    rows = [json.loads(l) for l in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [r["variant"] for r in rows] == ["default", "stages2"]
    assert all(r["synth"]["lut4"] > 0 and r["status"] == "stopped after synth" for r in rows)


def test_recipes_quick_table_plot_and_reuse(tmp_path):
    out = run_bench("recipes.py", "--out", str(tmp_path))
    rows = [l.split() for l in out.splitlines() if l.startswith("200 ")]
    assert [r[2] for r in rows] == ["softmax", "seed", "scaled", "noiseless"], out
    assert rows[-1][rows[-1].index("pp") + 1] == "+0.00"       # noiseless: paper-style gap exactly 0
    assert (tmp_path / "recipes.png").read_bytes()[:4] == b"\x89PNG"
    import json
    res = [json.loads(l) for l in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert all(r["gates_export"] > 0 and 0 <= r["unread_frac"] <= r["unused_frac"] for r in res)
    again = run_bench("recipes.py", "--out", str(tmp_path))           # read back, not retrained: same table
    assert [l.split() for l in again.splitlines() if l.startswith("200 ")] == rows


def test_recipes_reads_back_only_a_run_with_the_same_settings(tmp_path):
    run_bench("recipes.py", "--out", str(tmp_path), "--recipes", "noiseless")
    out = run_bench("recipes.py", "--out", str(tmp_path), "--recipes", "scaled")       # the table keeps noiseless
    assert [l.split()[2] for l in out.splitlines() if l.startswith("200 ")] == ["scaled", "noiseless"]
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "recipes.py"), "--quick", "--out", str(tmp_path),
                        "--recipes", "noiseless", "--set", "lr=0.02"], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "noiseless-s0 holds a run with other settings (lr); choose another --out" in r.stderr


def test_recipes_bad_option_is_one_line():
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "recipes.py"), "--recipes", "softmax,nope"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "Traceback" not in r.stderr and "unknown recipe 'nope'" in r.stderr
