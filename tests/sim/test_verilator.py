# amaranth: UnusedElaboratable=no
"""The plain C++ Verilator bench on exported Verilog, and the 8k-gate MNIST agreement run."""
import numpy as np
import pytest

from lgn_fpga.hdl.export import export_core
from lgn_fpga.netlist.evaluate import predict
from lgn_fpga.netlist.random import random_netlist

from lgn_fpga.sim import verilator as V
from lgn_fpga.sim.icarus import have_icarus
from lgn_fpga.sim.run import main as sim_main

needs_verilator = pytest.mark.skipif(V.verilator_path() is None, reason="verilator not installed")


@pytest.mark.sim
@needs_verilator
def test_verilator_harness_full_rate_and_stalls(tmp_path):
    rng = np.random.default_rng(8)
    net = random_netlist(rng, shape=(1, 6, 6), thresholds=3, widths=(150, 120, 100), n_classes=10,
                         skip_prob=0.3, bias=True)
    imgs = (rng.random((3000,) + net.encoding.shape) * rng.integers(1, 256, (3000, 1, 1, 1))).astype(np.uint8)
    imgs[0], imgs[1] = 0, 255
    want = predict(net, imgs)
    r = export_core(net, tmp_path / "hw", inputs="bytes")
    binary = V.build(r.verilog, r.info["top"], tmp_path / "vl")
    full = V.run(binary, imgs.reshape(len(imgs), -1), r.info["latency"], tmp_path / "run")
    assert full.stats["latency_errors"] == 0 and full.stats["refused"] == 0
    # one image per clock: the run ends latency + 5 cycles after the last class (the drain)
    assert full.stats["cycles"] <= len(imgs) + 2 * r.info["latency"] + 6
    assert (full.classes == want).all()
    stalled = V.run(binary, imgs.reshape(len(imgs), -1), r.info["latency"], tmp_path / "stall",
                    valid_prob=0.5, ready_prob=0.3, seed=5)
    assert stalled.stats["extra"] == 0 and (stalled.classes == want).all()
    # The harness's latency check can fail: claim one cycle less than the design has.
    with pytest.raises(V.SimError, match="stream protocol broken"):
        V.run(binary, imgs[:50].reshape(50, -1), r.info["latency"] - 1, tmp_path / "bad")


@pytest.mark.sim
@pytest.mark.data
def test_trained_mnist_model_agrees(tmp_path, trained_mnist):
    """A trained MNIST model of >= 8,000 gates: all 10,000 test images with Verilator, else 2,000 with Icarus."""
    from lgn_fpga.netlist.format import load as load_netlist
    assert load_netlist(trained_mnist).n_gates >= 8000
    use_verilator = V.verilator_path() is not None
    if not use_verilator and not have_icarus():
        pytest.skip("neither verilator nor iverilog installed")
    n = 10_000 if use_verilator else 2_000
    argv = [str(trained_mnist), "--limit", str(n), "--build-dir", str(tmp_path),
            "--sim", "verilator" if use_verilator else "icarus", "--stall-images", "100"]
    assert sim_main(argv) == 0
    import json
    rec = json.loads((tmp_path / "sim.json").read_text())
    assert rec["all_ok"] and rec["simulators"][0]["images"] == n and rec["simulators"][0]["agree"] == n
