"""A trained run: discretized torch == raw netlist == optimized netlist, image by image, score by score."""
import numpy as np
import pytest

from lgn_fpga.netlist import cbackend
from lgn_fpga.netlist.evaluate import scores
from lgn_fpga.netlist.passes import optimize

torch = pytest.importorskip("torch")


def torch_counts(run, images):
    """Class counts of the discretized model (GroupSum before its division by tau)."""
    from lgn_fpga.train.checkpoint import load_checkpoint
    from lgn_fpga.train.model import model_from_state
    from lgn_fpga.train.model import Relaxation
    model, enc = model_from_state(load_checkpoint(run, "best.pt"))
    model.group.tau = 1.0
    with torch.no_grad():
        s = model(enc.encode_torch(torch.from_numpy(images)), Relaxation("hard"), "reference")
    return s.numpy(), s.argmax(1).numpy()


def test_torch_raw_and_optimized_agree(tiny_run, tmp_path, monkeypatch):
    from lgn_fpga.data.datasets import load
    from lgn_fpga.train.export import from_run
    d = load("digits")
    images = np.concatenate([d.train.images, d.val.images, d.test.images])   # all 1797 images
    t_scores, t_pred = torch_counts(tiny_run, images)
    assert np.array_equal(t_scores, np.round(t_scores))                   # counts are exact in float32
    raw = from_run(tiny_run)
    opt, steps = optimize(raw)
    assert opt.n_gates < raw.n_gates and steps
    want = t_scores.astype(np.int64)
    backends = ["numpy"] + (["c"] if cbackend.available() else [])
    monkeypatch.setenv("LGN_FPGA_CACHE", str(tmp_path / "cache"))
    for net in (raw, opt):
        for backend in backends:
            got = scores(net, images, backend=backend)
            assert np.array_equal(got, want), backend
            assert np.array_equal(got.argmax(1), t_pred)
    assert np.array_equal(scores(opt, images[:200], backend="reference"), want[:200])
