"""Exact resume at any interrupt point, and metrics.jsonl / temporaries after an interruption (issue 15)."""
import json
import signal

import pytest
import torch

from lgn_fpga.errors import CheckpointError
from lgn_fpga.train import loop as L
from lgn_fpga.train.checkpoint import load_checkpoint
from lgn_fpga.train.config import resolve_config
import json as _j
def read_metrics(run):
    return [_j.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]


def tiny(**kw):
    base = dict(dataset="digits", layers=2, width=60, steps=24, eval_every=8, batch_size=32, kernel="reference",
                thresholds=1, noise_schedule="linear", noise=0.3, noise_final=0.05)
    base.update(kw)
    return resolve_config({}, base)


def _state(run):
    """Everything of a finished run that must not depend on interruptions (wall-clock times aside)."""
    ck = load_checkpoint(run)
    best = load_checkpoint(run, "best.pt")
    ms = [{k: v for k, v in m.items() if k != "wall_s"} for m in read_metrics(run)]
    return ck, best, ms


def _assert_same(a, b):
    (cka, besta, ma), (ckb, bestb, mb) = a, b
    assert ma == mb
    for k in ("step", "best"):
        assert cka[k] == ckb[k], k
    for k in cka["model"]:
        assert torch.equal(cka["model"][k], ckb["model"][k]), k
        assert torch.equal(besta["model"][k], bestb["model"][k]), k
    assert torch.equal(cka["noise_rng"], ckb["noise_rng"])
    assert besta["step"] == bestb["step"]
    oa, ob = cka["optimizer"]["state"], ckb["optimizer"]["state"]
    for i in oa:
        for k in oa[i]:
            assert torch.equal(torch.as_tensor(oa[i][k]), torch.as_tensor(ob[i][k])), (i, k)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run = tmp_path_factory.mktemp("ref") / "run"
    t = L.Trainer(tiny(), run, progress=False)
    t.train()
    t.test()
    return _state(run)


def _signal_inside(trainer, where, step, signum):
    """Deliver ``signum`` to this process from inside ``where`` of training step ``step`` (0-based)."""
    def fire():
        if trainer.step == step and not fired:
            fired.append(1)
            signal.raise_signal(signum)
    fired = []
    if where == "batch":          # before the step draws anything
        real = L.batch_indices

        def wrapped(*a):
            fire()
            return real(*a)
        return ("batch_indices", wrapped)
    if where == "forward":        # after the step's Gumbel noise was drawn
        real = trainer.model.forward

        def wrapped(*a, **k):
            out = real(*a, **k)
            fire()
            return out
        trainer.model.forward = wrapped
    elif where == "optimizer":    # after the parameters moved, before the step is counted
        real = trainer.opt.step

        def wrapped(*a, **k):
            out = real(*a, **k)
            fire()
            return out
        trainer.opt.step = wrapped
    elif where == "validate":     # during the evaluation (and before the checkpoint) of an eval step
        real = trainer.validate

        def wrapped():
            fire()
            return real()
        trainer.validate = wrapped
    return None


@pytest.mark.parametrize("where,step,signum", [
    ("batch", 3, signal.SIGINT), ("forward", 5, signal.SIGINT), ("optimizer", 11, signal.SIGTERM),
    ("validate", 16, signal.SIGINT), ("forward", 0, signal.SIGTERM)])
def test_interrupt_anywhere_then_resume_is_bit_exact(tmp_path, monkeypatch, reference, where, step, signum):
    run = tmp_path / "run"
    t = L.Trainer(tiny(), run, progress=False)
    patch = _signal_inside(t, where, step if where != "validate" else step, signum)
    if patch:
        monkeypatch.setattr(L, *patch)
    with pytest.raises(KeyboardInterrupt):
        t.train()
    monkeypatch.undo()
    saved = load_checkpoint(run)["step"]
    assert saved in (step, step + 1)
    t2 = L.Trainer(tiny(), run, resume=True, progress=False)
    assert t2.step == saved
    t2.train()
    t2.test()
    _assert_same(reference, _state(run))
