"""The train/info/plot commands, and bad input: one line, non-zero exit, nothing written is lost."""
import re

import pytest
import torch

from lgn_fpga.cli import main


def run(capsys, *args):
    with pytest.raises(SystemExit) as e:
        main(list(args))
        raise SystemExit(0)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


TINY = ["--set", "widths=[60,60]", "--thresholds", "1", "--batch-size", "32", "--kernel", "reference", "--quiet"]


def test_train_info_plot(tmp_path, capsys):
    code, out, err = run(capsys, "train", "digits", *TINY, "--steps", "20", "--eval-every", "10", "-o", str(tmp_path / "r"))
    assert code == 0, err
    assert "test accuracy" in out and "unused gates" in out and "gap" in out
    code, out, _ = run(capsys, "info", str(tmp_path / "r"))
    assert code == 0 and "gumbel-ste (recipe scaled)" in out and "step 20 / 20" in out and "test " in out
    code, out, _ = run(capsys, "plot", str(tmp_path / "r"), "-o", str(tmp_path / "c.png"))
    assert code == 0 and (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_augmentation_options_reach_the_run_and_info(tmp_path, capsys):
    code, out, err = run(capsys, "train", "digits", *TINY, "--steps", "4", "--eval-every", "4", "--flip", "--shift",
                         "1", "-o", str(tmp_path / "r"))
    assert code == 0, err
    code, out, _ = run(capsys, "info", str(tmp_path / "r"))
    assert "augmentation left-right flips, shifts up to 1 px" in out
    code, out, err = run(capsys, "train", "digits", *TINY, "--shift", "-1", "-o", str(tmp_path / "s"))
    assert code != 0 and "shift" in err and "Traceback" not in err


def test_info_plot_show_target_and_paper_metrics_and_read_older_runs(tmp_path, capsys):
    import json
    code, _, err = run(capsys, "train", "digits", *TINY, "--steps", "20", "--eval-every", "10", "--target-acc", "0.01",
                       "-o", str(tmp_path / "r"))
    assert code == 0, err
    code, out, _ = run(capsys, "info", str(tmp_path / "r"))
    assert code == 0 and "target       1.00% validation: reached at step 10 (" in out
    assert "paper-style  last: train-mode" in out and "unread gates" in out and "paper-style gap" in out
    code, out, _ = run(capsys, "plot", str(tmp_path / "r"), "-o", str(tmp_path / "c.png"))
    assert code == 0 and (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    # A run made before these metrics: no paper-style line, no error.
    m = tmp_path / "r" / "metrics.jsonl"
    old = [{k: v for k, v in json.loads(l).items() if "paper" not in k and "unread" not in k and "target" not in k}
           for l in m.read_text().splitlines()]
    m.write_text("".join(json.dumps(r) + "\n" for r in old))
    code, out, _ = run(capsys, "info", str(tmp_path / "r"))
    assert code == 0 and "paper-style" not in out and "reached at step 10" in out   # recomputed from the records
    code, _, err = run(capsys, "plot", str(tmp_path / "r"), "-o", str(tmp_path / "c.png"))
    assert code == 0, err


@pytest.mark.parametrize("value", ["2", "0", "nan"])
def test_bad_target_acc_is_one_line(tmp_path, capsys, value):
    _one_line_error(*run(capsys, "train", "digits", *TINY, "--target-acc", value, "-o", str(tmp_path / "r"))[::2],
                    r"target_acc")


def test_help_explains(capsys):
    code, out, _ = run(capsys, "train", "--help")
    assert code == 0 and "--recipe" in out and "the paper exactly" in out and "--resume" in out


def _one_line_error(code, err, pattern):
    assert code != 0
    assert "Traceback" not in err
    lines = [l for l in err.splitlines() if l.startswith("error")]
    assert len(lines) == 1, err
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


def test_unknown_dataset(capsys, tmp_path):
    _one_line_error(*run(capsys, "train", "svhn", "-o", str(tmp_path / "r"))[::2], "unknown dataset 'svhn'")


def test_missing_data(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("LGN_FPGA_DATA", raising=False)
    code, _, err = run(capsys, "train", "cifar10", "--data-dir", str(tmp_path / "none"), "-o", str(tmp_path / "r"))
    _one_line_error(code, err, r"data folder .*none does not exist; create it")
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "train", "cifar10", "--data-dir", str(tmp_path / "empty"), "-o", str(tmp_path / "r"))
    _one_line_error(code, err, r"cifar10 not found .*put data_batch_1..5.bin")


def test_unknown_and_ill_typed_yaml(capsys, tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("dataset: digits\nlearning_rate: 0.1\n")
    code, _, err = run(capsys, "train", "--config", str(p), "-o", str(tmp_path / "r"))
    _one_line_error(code, err, "unknown key 'learning_rate'")
    p.write_text("dataset: digits\nsteps: lots\n")
    code, _, err = run(capsys, "train", "--config", str(p), "-o", str(tmp_path / "r"))
    _one_line_error(code, err, "key 'steps' .* must be an integer, not 'lots'")
    assert not (tmp_path / "r").exists()


def test_corrupt_checkpoint_keeps_files(capsys, tmp_path):
    code, _, err = run(capsys, "train", "digits", *TINY, "--steps", "10", "--eval-every", "10", "-o", str(tmp_path / "r"))
    assert code == 0, err
    p = tmp_path / "r" / "checkpoint.pt"
    p.write_bytes(b"garbage")
    best = (tmp_path / "r" / "best.pt").read_bytes()
    code, _, err = run(capsys, "info", str(tmp_path / "r"))
    _one_line_error(code, err, "not a readable checkpoint")
    code, _, err = run(capsys, "train", "--resume", "-o", str(tmp_path / "r"), "--steps", "20")
    _one_line_error(code, err, "not a readable checkpoint")
    assert p.read_bytes() == b"garbage" and (tmp_path / "r" / "best.pt").read_bytes() == best


def test_non_finite_loss(capsys, tmp_path):
    code, _, err = run(capsys, "train", "digits", *TINY, "--group-tau", "1e-45", "--steps", "5", "-o", str(tmp_path / "r"))
    _one_line_error(code, err, "loss became nan at step 0; no checkpoint was written yet")


def test_resume_refuses_other_options_and_tests_once(capsys, tmp_path):
    code, _, err = run(capsys, "train", "digits", *TINY, "--steps", "10", "--eval-every", "10", "-o", str(tmp_path / "r"))
    assert code == 0, err
    code, _, err = run(capsys, "train", "mnist", "--resume", "-o", str(tmp_path / "r"), "--lr", "0.1")
    _one_line_error(code, err, r"--resume continues .* only --steps may change \(drop DATASET, --lr")
    for _ in range(2):          # nothing left to train: the recorded test result is reused, not re-appended
        code, out, err = run(capsys, "train", "--resume", "-o", str(tmp_path / "r"), "--steps", "10")
        assert code == 0, err
    lines = (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    assert sum('"split": "test"' in l for l in lines) == 1


def test_dataset_default_config_only_without_architecture_options(tmp_path, capsys, monkeypatch):
    # `train mnist` alone takes configs/mnist.yaml; given an architecture, the plain defaults apply (and a
    # window list for 4 layers cannot clash with --layers 5).
    from lgn_fpga.cli import main as cli_main
    import pytest as _p
    calls = []
    import lgn_fpga.train.loop as loop

    class Stop(Exception):
        pass

    def fake_init(self, cfg, run_dir, resume=False, progress=True, log=print):
        calls.append(cfg)
        raise Stop
    monkeypatch.setattr(loop.Trainer, "__init__", fake_init)
    for argv in (["train", "mnist"], ["train", "mnist", "--layers", "5", "--width", "400"]):
        with _p.raises(Stop):
            cli_main(argv + ["-o", str(tmp_path / "r")])
    from lgn_fpga.train.config import load_yaml
    want = load_yaml("mnist")
    assert calls[0].connections == want["connections"] == "local"
    assert (calls[0].window, calls[0].width) == (want["window"], want["width"])
    assert calls[1].connections == "random" and calls[1].layers == 5 and calls[1].width == 400
    err = capsys.readouterr().err
    assert err.count("configs/mnist.yaml (the default for mnist") == 1
    assert "config: the plain defaults (--layers, --width given), not mnist's own; --config mnist" in err


def test_window_without_local_wiring_is_an_error(capsys, tmp_path):
    # the plain defaults wire randomly: a --window there would be silently ignored
    code, _, err = run(capsys, "train", "cifar10", "--window", "5", "-o", str(tmp_path / "r"))
    _one_line_error(code, err, r"--window applies to local wiring only, and this run's is random \(add --connections local\)")


# -- issue 15: bad numbers, devices and resumes, interrupted runs ----------------------------------------

@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """A finished 10-step run."""
    rd = tmp_path_factory.mktemp("cli") / "r"
    main(["train", "digits", *TINY, "--steps", "10", "--eval-every", "5", "-o", str(rd)])
    return rd


@pytest.mark.parametrize("args,pattern", [
    (["--lr", "nan"], r"key 'lr' on the command line must be a finite number, not nan"),
    (["--lr", "inf"], r"key 'lr' on the command line must be a finite number, not inf"),
    (["--weight-decay", "nan"], r"key 'weight_decay' on the command line must be a finite number"),
    (["--epochs", "nan"], r"key 'epochs' on the command line must be a finite number"),
    (["--noise", "nan"], r"key 'noise' on the command line must be a finite number"),
    (["--noise-final", "-inf"], r"key 'noise_final' on the command line must be a finite number"),
    (["--val-size", "inf"], r"key 'val_size' on the command line must be a finite number"),
    (["--group-tau", "nan"], r"key 'group_tau' on the command line must be a finite number"),
    (["--set", "gumbel_tau=.nan"], r"key 'gumbel_tau' on the command line must be a finite number"),
    (["--threads", "100000"], r"key 'threads' on the command line must be at most 1024, not 100000"),
    (["--device", "gpu"], r"key 'device' on the command line must be auto, cpu, cuda or cuda:N, not 'gpu'"),
])
def test_bad_numbers_and_devices(capsys, tmp_path, args, pattern):
    _one_line_error(*run(capsys, "train", "digits", *TINY, *args, "-o", str(tmp_path / "r"))[::2], pattern)
    assert not (tmp_path / "r").exists()


def test_nan_in_yaml(capsys, tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("dataset: digits\nlr: .nan\n")
    _one_line_error(*run(capsys, "train", "--config", str(p), "-o", str(tmp_path / "r"))[::2],
                   r"key 'lr' in .*c.yaml must be a finite number, not nan")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_cuda_without_cuda(capsys, tmp_path):
    _one_line_error(*run(capsys, "train", "digits", *TINY, "--device", "cuda", "-o", str(tmp_path / "r"))[::2],
                   r"device 'cuda': (this torch is built without CUDA|no GPU is visible); use --device cpu")


def test_resume_missing_run_suggests_what_o_takes(capsys, tmp_path):
    line = _one_line_error(*run(capsys, "train", "--resume", "-o", str(tmp_path / "missing"))[::2],
                          r"missing does not exist; --resume -o RUN continues a run directory")
    assert ".pt" not in line


def test_resume_steps_below_the_run(capsys, done):
    _one_line_error(*run(capsys, "train", "--resume", "-o", str(done), "--steps", "4")[::2],
                   r"--steps 4 is below this run's 10 steps \(it is at step 10\); --resume can only lengthen a run")
    code, _, err = run(capsys, "train", "--resume", "-o", str(done))
    assert code == 0 and "already at its last step 10: nothing left to train" in err


def test_export_names_the_target_not_the_temporary(capsys, done):
    line = _one_line_error(*run(capsys, "export", str(done), "-o", "/proc/m.lgn")[::2], r"/proc/m\.lgn")
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
            _one_line_error(*run(capsys, *cmd)[::2], r"metrics.jsonl: line 1 is not a metrics record")
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


def test_second_interrupt_message_names_the_kept_checkpoint(capsys, tmp_path, monkeypatch):
    import signal
    real, calls = torch.optim.AdamW.step, []

    def twice_in_update_13(self, *a, **k):
        out = real(self, *a, **k)
        calls.append(1)
        if len(calls) == 13:
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
        return out
    monkeypatch.setattr(torch.optim.AdamW, "step", twice_in_update_13)
    code, _, err = run(capsys, "train", "digits", *TINY, "--steps", "20", "--eval-every", "5", "-o",
                       str(tmp_path / "r"))
    assert code == 130 and "interrupted at step 12; checkpoint at step 10 kept (stopped inside a step" in err


def test_board_sizes_the_width(capsys, tmp_path):
    import yaml

    from lgn_fpga.fpga.boards import load_board
    from lgn_fpga.fpga.fit import lut_budget, size_width, trained_gates_for, trained_lut_cost
    b = load_board("icebreaker")
    code, _, err = run(capsys, "train", "digits", "--board", "icebreaker", "--layers", "3", "--thresholds", "1",
                       "--kernel", "reference", "--steps", "2", "--eval-every", "2", "--quiet", "-o", str(tmp_path / "r"))
    assert code == 0, err
    cfg = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    bits = 64                                      # digits: 8 x 8 pixels, 1 threshold (the frame buffer's share)
    width = size_width(b, 3, 10, bits)
    assert cfg["layers"] == 3 and cfg["width"] == width and cfg.get("widths") in (None, [width] * 3)
    assert 3 * width <= trained_gates_for(b, 3, bits) < 3 * (width + 10) + 10 and width % 10 == 0
    assert trained_lut_cost("ice40", [width] * 3) <= lut_budget(b, bits) < trained_lut_cost("ice40", [width + 10] * 3)
    assert f"sized for icebreaker: 3 x {width:,} gates" in err
    # the GroupSum temperature follows the last layer (square root of the width ratio), unless --group-tau is given
    from lgn_fpga.fpga.fit import scaled_group_tau
    from lgn_fpga.train.config import TrainConfig
    d = TrainConfig()
    assert abs(cfg["group_tau"] - scaled_group_tau(d.group_tau, d.width, width)) < 1e-9 and cfg["group_tau"] != d.group_tau
    assert abs(scaled_group_tau(10.0, 12000, 480) - 2.0) < 1e-12
    code, _, err = run(capsys, "train", "digits", "--board", "icebreaker", "--width", "100", "-o", str(tmp_path / "x"))
    _one_line_error(code, err, r"--board sizes the network's width: drop --width")
    # a hidden gate costs little (most die in export), but every layer needs a gate per class
    code, _, err = run(capsys, "train", "digits", "--board", "icestick", "--layers", "2000", "-o", str(tmp_path / "y"))
    _one_line_error(code, err, r"icestick holds about [0-9,]+ trained gates: too few for 2000 layers")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_board_keeps_the_configs_shape(capsys, tmp_path):
    """A config with per-layer widths is scaled as a whole, and its GroupSum temperature with the last layer."""
    import yaml

    from lgn_fpga.fpga.boards import load_board
    from lgn_fpga.fpga.fit import lut_budget, size_widths, trained_lut_cost
    b = load_board("icebreaker")
    code, _, err = run(capsys, "train", "digits", "--config", "digits-tiny", "--board", "icebreaker", "--kernel",
                       "reference", "--steps", "2", "--eval-every", "2", "--quiet", "-o", str(tmp_path / "r"))
    assert code == 0, err
    cfg = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    widths = size_widths(b, [800, 800, 500], 10, 192)          # digits-tiny: 64 pixels x 3 thresholds
    assert cfg["widths"] == widths and all(w % 10 == 0 for w in widths)
    assert widths[0] == widths[1] and abs(widths[2] / widths[0] - 500 / 800) < 0.05
    assert trained_lut_cost("ice40", widths) <= lut_budget(b, 192) < trained_lut_cost("ice40", [w + 10 for w in widths])
    assert abs(cfg["group_tau"] - 10.0 * (widths[2] / 500) ** 0.5) < 1e-9      # fit.scaled_group_tau
    assert f"sized for icebreaker: {widths[0]:,} + {widths[1]:,} + {widths[2]:,} gates" in err
    code, _, err = run(capsys, "train", "digits", "--config", "digits-tiny", "--board", "icebreaker", "--group-tau",
                       "7", "--kernel", "reference", "--steps", "2", "--eval-every", "2", "--quiet", "-o",
                       str(tmp_path / "t"))
    assert code == 0, err
    assert yaml.safe_load((tmp_path / "t" / "config.yaml").read_text())["group_tau"] == 7.0


def test_recipe_choices_are_the_recipes():
    from lgn_fpga.cli.train import _OVERRIDES
    from lgn_fpga.train.config import RECIPES
    choice = next(t for _, key, t, _ in _OVERRIDES if key == "recipe")
    assert sorted(choice.choices) == sorted(RECIPES)
