"""Every cache folder of the package follows LGN_FPGA_CACHE (then XDG_CACHE_HOME, then ~/.cache)."""
from lgn_fpga.data import datasets
from lgn_fpga.kernels import cpu
from lgn_fpga.netlist import cbackend
from lgn_fpga.sim import vboard


def test_cache_folders_follow_lgn_fpga_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LGN_FPGA_CACHE", str(tmp_path / "c"))
    for f in (datasets.cache_dir, vboard.cache_dir, cpu.cache_dir, cbackend.cache_dir):
        assert f().parent == tmp_path / "c", f.__module__
    monkeypatch.delenv("LGN_FPGA_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    for f in (datasets.cache_dir, vboard.cache_dir, cpu.cache_dir, cbackend.cache_dir):
        assert f().parent == tmp_path / "x" / "lgn-fpga", f.__module__
