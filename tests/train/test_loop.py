"""Training loop: exact resume, Ctrl-C, non-finite loss, checkpoint errors."""
import json

import pytest
import torch

from lgn_fpga.errors import CheckpointError, TrainingError
from lgn_fpga.train import loop as L
from lgn_fpga.train.checkpoint import load_checkpoint
from lgn_fpga.train.config import resolve_config


def tiny(**kw):
    base = dict(dataset="digits", layers=2, width=60, steps=20, eval_every=10, batch_size=32, kernel="reference",
                thresholds=1)
    base.update(kw)
    return resolve_config({}, base)


def params(run):
    return load_checkpoint(run)["model"]


@pytest.mark.parametrize("mode,extra", [("gumbel-ste", {}), ("softmax", {}),
                                        ("gumbel-ste", {"candidates": 4, "kernel": "auto"}),
                                        ("gumbel-ste", {"flip": True, "shift": 1})])
def test_resume_is_exact(tmp_path, mode, extra):
    """Also with learned connections on the C kernel (their noise comes from the run's generator) and with
    augmentation (its draws come from the seed and the step)."""
    a = L.Trainer(tiny(mode=mode, **extra), tmp_path / "a", progress=False)
    a.train()
    b = L.Trainer(tiny(mode=mode, steps=10, **extra), tmp_path / "b", progress=False)
    b.train()
    b2 = L.Trainer(tiny(steps=20), tmp_path / "b", resume=True, progress=False)
    assert b2.step == 10
    b2.train()
    pa, pb = params(tmp_path / "a"), params(tmp_path / "b")
    for k in pa:
        assert torch.equal(pa[k], pb[k]), k
    ma = [json.loads(l) for l in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    mb = [json.loads(l) for l in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    strip = lambda ms: [{k: v for k, v in m.items() if k not in ("wall_s", "loss", "train_acc")} for m in ms]
    assert strip(ma) == strip(mb)


def test_ctrl_c_leaves_a_usable_checkpoint(tmp_path, monkeypatch):
    ref = L.Trainer(tiny(), tmp_path / "ref", progress=False)
    ref.train()
    real = L.batch_indices

    def interrupt_at_7(seed, step, n, batch):
        if step == 7:
            raise KeyboardInterrupt
        return real(seed, step, n, batch)
    monkeypatch.setattr(L, "batch_indices", interrupt_at_7)
    t = L.Trainer(tiny(), tmp_path / "run", progress=False)
    with pytest.raises(KeyboardInterrupt):
        t.train()
    assert load_checkpoint(tmp_path / "run")["step"] == 7
    assert (tmp_path / "run" / "best.pt").exists()
    monkeypatch.setattr(L, "batch_indices", real)
    t2 = L.Trainer(tiny(), tmp_path / "run", resume=True, progress=False)
    t2.train()
    pa, pb = params(tmp_path / "ref"), params(tmp_path / "run")
    assert all(torch.equal(pa[k], pb[k]) for k in pa)


def test_non_finite_loss_stops_cleanly(tmp_path):
    t = L.Trainer(tiny(group_tau=1e-45, steps=5, eval_every=2), tmp_path / "nan", progress=False)
    with pytest.raises(TrainingError, match="loss became (nan|inf) at step 0; no checkpoint was written yet"):
        t.train()


def test_refuses_to_overwrite_a_run(tmp_path):
    L.Trainer(tiny(steps=10), tmp_path / "r", progress=False).train()
    before = (tmp_path / "r" / "checkpoint.pt").read_bytes()
    with pytest.raises(CheckpointError, match="already holds a run; pass --resume"):
        L.Trainer(tiny(), tmp_path / "r", progress=False)
    assert (tmp_path / "r" / "checkpoint.pt").read_bytes() == before


def test_corrupt_checkpoint(tmp_path):
    L.Trainer(tiny(steps=10), tmp_path / "r", progress=False).train()
    p = tmp_path / "r" / "checkpoint.pt"
    p.write_bytes(p.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable checkpoint .* truncated or corrupt"):
        L.Trainer(tiny(), tmp_path / "r", resume=True, progress=False)
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        load_checkpoint(tmp_path)


def test_metrics_and_test_record(tmp_path):
    t = L.Trainer(tiny(), tmp_path / "r", progress=False)
    t.train()
    rec = t.test()
    lines = [json.loads(l) for l in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines[:-1]] == [10, 20] and lines[-1]["split"] == "test"
    for key in ("val_acc_train_mode", "val_acc_discrete", "gap", "unused_frac", "const_frac", "wall_s"):
        assert key in lines[0]
    assert 0 <= rec["test_acc_discrete"] <= 1 and rec["gates"] == 120
    assert (tmp_path / "r" / "config.yaml").exists() and "code" in json.loads((tmp_path / "r" / "meta.json").read_text())


def test_lr_schedule_sets_each_steps_learning_rate(tmp_path):
    seen = []
    t = L.Trainer(tiny(lr=0.02, lr_final=0.002, lr_schedule="linear"), tmp_path / "r", progress=False)
    real = t.opt.step

    def step(*a, **k):
        seen.append(t.opt.param_groups[0]["lr"])
        return real(*a, **k)
    t.opt.step = step
    t.train()
    assert len(seen) == 20 and abs(seen[0] - 0.02) < 1e-12 and abs(seen[-1] - 0.002) < 1e-12
    assert all(a > b for a, b in zip(seen, seen[1:]))
    lines = [json.loads(l) for l in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert abs(lines[-1]["lr"] - 0.002) < 1e-12


def test_batch_order_is_a_function_of_seed_and_step():
    a = L.batch_indices(3, 41, 1000, 32)
    assert torch.equal(a, L.batch_indices(3, 41, 1000, 32))
    assert not torch.equal(a, L.batch_indices(4, 41, 1000, 32))
    epoch = torch.cat([L.batch_indices(0, s, 100, 10) for s in range(10)])
    assert sorted(epoch.tolist()) == list(range(100))  # every image once per epoch


def test_shift_as_large_as_the_image_is_a_config_error(tmp_path):
    from lgn_fpga.errors import ConfigError
    with pytest.raises(ConfigError, match="shift 8 must be below the image size 8 x 8"):
        L.Trainer(tiny(shift=8), tmp_path / "run", progress=False)
