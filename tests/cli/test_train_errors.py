"""Bad numbers, devices and resumes, and the messages of interrupted runs: one line each (issue 15)."""
import re

import pytest
import torch

from lgn_fpga.cli import main

TINY = ["--set", "widths=[60,60]", "--thresholds", "1", "--batch-size", "32", "--kernel", "reference", "--quiet"]


def run(capsys, *args):
    with pytest.raises(SystemExit) as e:
        main(list(args))
        raise SystemExit(0)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def one_line_error(code, err, pattern):
    assert code != 0 and "Traceback" not in err
    lines = [l for l in err.splitlines() if l.startswith("error")]
    assert len(lines) == 1, err
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """A finished 10-step run."""
    rd = tmp_path_factory.mktemp("cli") / "r"
    main(["train", "digits", *TINY, "--steps", "10", "--eval-every", "5", "-o", str(rd)])
    return rd


@pytest.mark.parametrize("args,pattern", [
    (["--lr", "nan"], r"--lr \(key 'lr'\) must be a finite number, not nan"),
    (["--lr", "inf"], r"--lr \(key 'lr'\) must be a finite number, not inf"),
    (["--weight-decay", "nan"], r"--weight-decay \(key 'weight_decay'\) must be a finite number"),
    (["--epochs", "nan"], r"--epochs \(key 'epochs'\) must be a finite number"),
    (["--noise", "nan"], r"--noise \(key 'noise'\) must be a finite number"),
    (["--noise-final", "-inf"], r"--noise-final \(key 'noise_final'\) must be a finite number"),
    (["--val-size", "inf"], r"--val-size \(key 'val_size'\) must be a finite number"),
    (["--group-tau", "nan"], r"--group-tau \(key 'group_tau'\) must be a finite number"),
    (["--set", "gumbel_tau=.nan"], r"--gumbel-tau \(key 'gumbel_tau'\) must be a finite number"),
    (["--device", "gpu"], r"--device \(key 'device'\) must be auto, cpu, cuda or cuda:N, not 'gpu'"),
])
def test_bad_numbers_and_devices(capsys, tmp_path, args, pattern):
    one_line_error(*run(capsys, "train", "digits", *TINY, *args, "-o", str(tmp_path / "r"))[::2], pattern)
    assert not (tmp_path / "r").exists()


def test_nan_in_yaml(capsys, tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("dataset: digits\nlr: .nan\n")
    one_line_error(*run(capsys, "train", "--config", str(p), "-o", str(tmp_path / "r"))[::2],
                   r"key 'lr' in .*c.yaml must be a finite number, not nan")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_cuda_without_cuda(capsys, tmp_path):
    one_line_error(*run(capsys, "train", "digits", *TINY, "--device", "cuda", "-o", str(tmp_path / "r"))[::2],
                   r"--device cuda: (this torch is built without CUDA|no GPU is visible); use --device cpu")


def test_resume_missing_run_suggests_what_o_takes(capsys, tmp_path):
    line = one_line_error(*run(capsys, "train", "--resume", "-o", str(tmp_path / "missing"))[::2],
                          r"missing does not exist; --resume -o RUN continues a run directory")
    assert ".pt" not in line


def test_resume_steps_below_the_run(capsys, done):
    one_line_error(*run(capsys, "train", "--resume", "-o", str(done), "--steps", "4")[::2],
                   r"--steps 4 is below this run's 10 steps \(it is at step 10\); --resume can only lengthen a run")
    code, _, err = run(capsys, "train", "--resume", "-o", str(done))
    assert code == 0 and "already at its last step 10: nothing left to train" in err


def test_export_names_the_target_not_the_temporary(capsys, done):
    line = one_line_error(*run(capsys, "export", str(done), "-o", "/proc/m.lgn")[::2], r"/proc/m\.lgn")
    assert ".tmp" not in line


def test_info_plot_report_read_a_cut_off_record(capsys, done, tmp_path):
    m = done / "metrics.jsonl"
    before = m.read_bytes()
    try:
        m.write_bytes(before + b'{"step": 15, "val_acc')       # a write cut off by a kill
        for cmd in (["info", str(done)], ["plot", str(done), "-o", str(tmp_path / "c.png")], ["report", str(done)]):
            code, out, err = run(capsys, *cmd)
            assert code == 0, err
        m.write_bytes(b"garbage\n" + before)
        for cmd in (["info", str(done)], ["report", str(done)]):
            one_line_error(*run(capsys, *cmd)[::2], r"metrics.jsonl: line 1 is not a metrics record")
    finally:
        m.write_bytes(before)


def test_interrupt_message_names_the_saved_step(capsys, tmp_path, monkeypatch):
    import signal
    from lgn_fpga.train import loop as L
    real = L.batch_indices

    def sigint_at_7(seed, step, n, batch):
        if step == 7:
            signal.raise_signal(signal.SIGINT)
        return real(seed, step, n, batch)
    monkeypatch.setattr(L, "batch_indices", sigint_at_7)
    code, _, err = run(capsys, "train", "digits", *TINY, "--steps", "20", "--eval-every", "5", "-o",
                       str(tmp_path / "r"))
    assert code == 130 and "interrupted at step 8; checkpoint at step 8 saved. Continue with: lgn-fpga train " \
                           f"--resume -o {tmp_path / 'r'}" in err
