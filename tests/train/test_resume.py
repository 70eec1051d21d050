"""Exact resume at any interrupt point, and metrics.jsonl / temporaries after an interruption (issue 15)."""
import signal

import pytest
import torch

from lgn_fpga.errors import CheckpointError, ConfigError
from lgn_fpga.train import loop as L
from lgn_fpga.train.checkpoint import load_checkpoint
from lgn_fpga.train.config import resolve_config
from lgn_fpga.train.metrics import read_metrics


def tiny(**kw):
    base = dict(dataset="digits", layers=2, width=60, steps=24, eval_every=8, batch_size=32, kernel="reference",
                thresholds=1, noise_schedule="linear", noise=0.3, noise_final=0.05, lr_schedule="cosine",
                lr_final=0.001)
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
    for k in ("step", "best", "loss_ema", "acc_ema", "torch_rng"):
        assert (torch.equal(cka[k], ckb[k]) if k == "torch_rng" else cka[k] == ckb[k]), k
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
    if where in ("forward", "optimizer"):
        # forward: after the step's Gumbel noise was drawn; optimizer: after the parameters moved, before the
        # step is counted
        obj, attr = (trainer.model, "forward") if where == "forward" else (trainer.opt, "step")
        real = getattr(obj, attr)

        def wrapped(*a, **k):
            out = real(*a, **k)
            fire()
            return out
        setattr(obj, attr, wrapped)
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
    patch = _signal_inside(t, where, step, signum)
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


def test_an_ignored_signal_stays_ignored(tmp_path):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with L._Interrupts() as stop:
        signal.raise_signal(signal.SIGINT)
        assert stop.signum is None
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_second_signal_stops_at_once_keeping_the_last_checkpoint(tmp_path, reference):
    run = tmp_path / "run"
    t = L.Trainer(tiny(), run, progress=False)
    real = t.opt.step

    def twice(*a, **k):          # two Ctrl-C inside the update of step 13: the state in memory is half-updated
        out = real(*a, **k)
        if t.step == 13:
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
        return out
    t.opt.step = twice
    with pytest.raises(KeyboardInterrupt):
        t.train()
    assert t.saved_step == 8 and load_checkpoint(run)["step"] == 8   # not the half-updated step 13
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    t2 = L.Trainer(tiny(), run, resume=True, progress=False)
    t2.train()
    t2.test()
    _assert_same(reference, _state(run))


class Killed(Exception):
    """Stands for a SIGKILL: the process ends with no chance to clean up."""


def test_killed_between_record_and_checkpoint_resumes_without_duplicates(tmp_path, monkeypatch, reference):
    run = tmp_path / "run"
    t = L.Trainer(tiny(), run, progress=False)
    real = L.save_checkpoint

    def killed_at_16(path, state):
        if state["step"] == 16:
            (path.parent / f".{path.name}.x1y2z3.tmp").write_bytes(b"\0" * 1000)  # what the kill leaves behind
            raise Killed
        real(path, state)
    monkeypatch.setattr(L, "save_checkpoint", killed_at_16)
    with pytest.raises(Killed):
        t.train()
    monkeypatch.undo()
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 24, "val_acc')                     # a record cut off mid-write
    assert [m["step"] for m in read_metrics(run)] == [8, 16]  # readers skip the cut-off line
    t2 = L.Trainer(tiny(), run, resume=True, progress=False)
    assert t2.step == 8 and not list(run.glob(".*.tmp"))
    assert [m["step"] for m in read_metrics(run)] == [8]     # what checkpoint.pt covers
    t2.train()
    t2.test()
    ms = read_metrics(run)
    assert [m["step"] for m in ms[:3]] == [8, 16, 24] and len(ms) == 4 and ms[3]["split"] == "test"
    _assert_same(reference, _state(run))


def test_damaged_metrics_line_is_one_error(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 8}\nnot json\n{"step": 16}\n')
    with pytest.raises(CheckpointError, match=r"metrics.jsonl: line 2 is not a metrics record"):
        read_metrics(run)
    with pytest.raises(CheckpointError, match="has no metrics.jsonl"):
        read_metrics(tmp_path)
    assert read_metrics(tmp_path, required=False) == []


@pytest.mark.parametrize("setup,pattern", [
    ("missing", r"does not exist; --resume -o RUN continues a run directory .*without --resume, -o .* starts a new"),
    ("no-checkpoint", r"holds no checkpoint.pt to resume from \(best.pt there keeps only the model"),
    ("best-copied", r"checkpoint.pt lacks the training state --resume needs \(optimizer; is it a copy of best.pt"),
])
def test_resume_errors_name_what_to_do(tmp_path, setup, pattern):
    run = tmp_path / "run"
    if setup != "missing":
        L.Trainer(tiny(steps=8), run, progress=False).train()
        if setup == "no-checkpoint":
            (run / "checkpoint.pt").unlink()
        else:
            (run / "checkpoint.pt").write_bytes((run / "best.pt").read_bytes())
    with pytest.raises(CheckpointError, match=pattern):
        L.Trainer(tiny(), run, resume=True, progress=False)


def test_resume_steps(tmp_path):
    run = tmp_path / "run"
    L.Trainer(tiny(steps=16), run, progress=False).train()
    with pytest.raises(ConfigError, match=r"--steps 12 is below this run's 16 steps \(it is at step 16\); "
                                          r"--resume can only lengthen"):
        L.Trainer(tiny(steps=12), run, resume=True, progress=False)
    t = L.Trainer(tiny(steps=24), run, resume=True, progress=False)
    assert (t.cfg.steps, t.steps_before) == (24, 16)
    t.train()
    assert load_checkpoint(run)["step"] == 24 and load_checkpoint(run)["config"]["steps"] == 24
