"""One version everywhere: lgn_fpga.__version__ in --version, run directories, netlists; git only of this checkout."""
import shutil
import subprocess

import numpy as np
import pytest

import lgn_fpga
from lgn_fpga import version
from lgn_fpga.cli import main


def test_version_option(capsys):
    try:
        main(["--version"])
    except SystemExit as e:
        assert e.code == 0
    assert capsys.readouterr().out.strip() == f"lgn-fpga {lgn_fpga.__version__}"


def test_netlist_header_names_the_writer(tmp_path):
    from lgn_fpga.netlist.format import read_header, save
    from lgn_fpga.netlist.random import random_netlist
    save(random_netlist(np.random.default_rng(0)), tmp_path / "m.lgn")
    assert read_header(tmp_path / "m.lgn")["writer"] == f"lgn-fpga {lgn_fpga.__version__}"


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_an_installed_package_inside_another_repository_reports_no_commit(tmp_path, monkeypatch):
    """A venv inside some git work tree: its site-packages/lgn_fpga is not that repository's code."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q",
                    "--allow-empty", "-m", "x"], check=True)
    site = tmp_path / ".venv" / "lib" / "site-packages"
    site.mkdir(parents=True)
    monkeypatch.setattr(version, "_CHECKOUT", site)
    assert "git_commit" not in version.code_version()
    monkeypatch.setattr(version, "_CHECKOUT", tmp_path.resolve())      # the checkout itself: its commit
    assert version.code_version()["git_commit"].startswith(
        subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip())
    assert version.code_version()["lgn_fpga"] == lgn_fpga.__version__
