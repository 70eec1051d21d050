"""Shared netlist test fixture: a tiny trained run in each training mode."""
import pytest


@pytest.fixture(scope="session", params=["gumbel-ste", "softmax"])
def tiny_run(request, tmp_path_factory):
    """A trained digits run directory (3 layers x 120 gates, 40 steps)."""
    loop = pytest.importorskip("lgn_fpga.train.loop")
    from lgn_fpga.train.config import resolve_config
    cfg = resolve_config({}, dict(dataset="digits", layers=3, width=120, steps=40, eval_every=40, batch_size=64,
                                  kernel="reference", thresholds=2, mode=request.param))
    d = tmp_path_factory.mktemp("run") / request.param
    loop.Trainer(cfg, d, progress=False).train()
    return d
