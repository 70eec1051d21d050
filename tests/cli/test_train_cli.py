"""The train/info/plot commands, and bad input: one line, non-zero exit, nothing written is lost."""
import pytest

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


def test_help_explains(capsys):
    code, out, _ = run(capsys, "train", "--help")
    assert code == 0 and "--recipe" in out and "the paper exactly" in out and "--resume" in out


def _one_line_error(code, err, pattern):
    assert code != 0
    assert "Traceback" not in err
    lines = [l for l in err.splitlines() if l.startswith("error")]
    assert len(lines) == 1, err
    import re
    assert re.search(pattern, lines[0]), lines[0]


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
