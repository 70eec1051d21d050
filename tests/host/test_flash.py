"""Programmer discovery and invocation (fake programmers on PATH; no board needed)."""
import stat

import pytest

from lgn_fpga.fpga.boards import load_board
from lgn_fpga.host.client import HostError
from lgn_fpga.host.flash import find_programmer, flash


def _fake_tool(d, name, code=0):
    p = d / name
    p.write_text(f'#!/bin/sh\necho "$0 $@" >> "{d}/calls.txt"\nexit {code}\n')
    p.chmod(p.stat().st_mode | stat.S_IEXEC)
    return p


@pytest.fixture
def bare_path(tmp_path, monkeypatch):
    """PATH with nothing but our fakes (and no overriding variables)."""
    for var in ("ICEPROG", "OPENFPGALOADER", "FUJPROG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
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
