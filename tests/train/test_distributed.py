"""Training on 2 CPU processes (lgn-fpga train --nproc 2, DDP over gloo) is training on one with the same
global batch: the same noise, the same data, gradients summed in another order; one set of files; exact resume."""
import json

import pytest
import torch

from lgn_fpga.errors import ConfigError
from lgn_fpga.train.checkpoint import load_checkpoint

pytestmark = pytest.mark.train      # two processes train a model (about 30 s)

# With augmentation: every process draws the same shifts for the global batch before taking its half.
ARGS = ["train", "digits", "--layers", "2", "--width", "60", "--thresholds", "1", "--eval-every", "10",
        "--batch-size", "64", "--kernel", "cpu", "--shift", "1", "--quiet"]


def metrics(run):
    recs = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("wall_s", "loss", "train_acc")} for r in recs]


def test_two_processes_equal_one_with_the_summed_batch(tmp_path, lgn_cli):
    lgn_cli(ARGS + ["--steps", "20", "--nproc", "2", "-o", str(tmp_path / "two")])
    lgn_cli(ARGS + ["--steps", "20", "-o", str(tmp_path / "one")])
    lgn_cli(ARGS + ["--steps", "10", "--nproc", "2", "-o", str(tmp_path / "resumed")])
    lgn_cli(["train", "--resume", "--steps", "20", "--quiet", "--nproc", "2", "-o", str(tmp_path / "resumed")])
    two, one, res = (load_checkpoint(tmp_path / n)["model"] for n in ("two", "one", "resumed"))
    for k in one:
        # float sums in another order (each process sums half the batch, DDP averages): not bit-exact
        torch.testing.assert_close(two[k], one[k], rtol=0, atol=1e-5, msg=lambda m: f"{k}: {m}")
        assert torch.equal(res[k], two[k]), k               # resume on 2 processes is exact
    # rank 0 alone writes: one line per evaluation plus the test record, as on one process
    assert len(metrics(tmp_path / "two")) == len(metrics(tmp_path / "one")) == 3
    assert [m["step"] for m in metrics(tmp_path / "two")] == [10, 20, 20]
    meta = json.loads((tmp_path / "two" / "meta.json").read_text())
    assert meta["processes"] == 2


def test_batch_must_split_evenly(tmp_path):
    from lgn_fpga.train.config import resolve_config
    from lgn_fpga.train.loop import Trainer
    cfg = resolve_config({}, dict(dataset="digits", layers=2, width=60, steps=2, batch_size=63, kernel="reference",
                                  thresholds=1))
    import lgn_fpga.train.loop as L
    orig = L.rank_and_world
    try:
        L.rank_and_world = lambda: (0, 2)
        with pytest.raises(ConfigError, match="batch size .63. must be a multiple of the 2 processes"):
            Trainer(cfg, tmp_path / "r", progress=False)
    finally:
        L.rank_and_world = orig


@pytest.mark.parametrize("extra,msg", [(["--nproc", "0"], "--nproc must be at least 1"),
                                       (["--nproc", "2", "--batch-size", "63"],
                                        "error: the batch size (63) must be a multiple of the 2 processes")])
def test_bad_nproc_is_one_line(tmp_path, capsys, extra, msg):
    from lgn_fpga.cli import main
    with pytest.raises(SystemExit) as e:
        main(ARGS + ["--steps", "2", "-o", str(tmp_path / "r")] + extra)
    err = capsys.readouterr().err
    assert e.value.code != 0 and msg in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
