"""A real package: `pip wheel .`, installed (not editable) into a fresh venv, works from another folder.

The fresh venv gets its dependencies (torch, amaranth, YoWASP, ...) from the environment running the tests,
through a ``.pth`` line, so the test costs a wheel build and two short commands, not a reinstall of torch.
Python does not process ``.pth`` files inside a folder that a ``.pth`` line adds, so an editable install of
lgn-fpga in that environment stays out of sight: the fresh interpreter imports the wheel's copy or nothing.
"""
import json
import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

import lgn_fpga

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.install


def _run(cmd, cwd, env, timeout=300):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


def _build_wheel(tmp, env) -> Path:
    out = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(ROOT), "-w", str(tmp / "dist")],
               tmp, env)
    wheels = list((tmp / "dist").glob("lgn_fpga-*.whl"))
    assert len(wheels) == 1, out
    names = zipfile.ZipFile(wheels[0]).namelist()
    for f in ("lgn_fpga/configs/digits-tiny.yaml", "lgn_fpga/boards/icebreaker.yaml", "lgn_fpga/flows/ice40.yaml",
              "lgn_fpga/kernels/logic_cpu.c", "lgn_fpga/sim/verilator_harness.cpp"):
        assert f in names, f"{f} is not in the wheel"
    assert wheels[0].name.startswith(f"lgn_fpga-{lgn_fpga.__version__}-")
    return wheels[0]


@pytest.fixture(scope="module", params=["pip wheel", "pip install"])
def fresh(request, tmp_path_factory):
    """(python, lgn-fpga, work folder, env) of a fresh venv holding only lgn-fpga as built from this checkout:
    by `pip wheel .` then installing that wheel, or by `pip install .` (not editable)."""
    tmp = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    # the C kernel compiles afresh from the installed source (once: both ways install the same file)
    env["LGN_FPGA_CACHE"] = str(tmp_path_factory.getbasetemp() / "wheel-test-cache")
    vdir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(vdir)
    py = vdir / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp, env).strip())
    deps = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    (site / "_test_deps.pth").write_text("".join(d + "\n" for d in sorted(deps)))
    if request.param == "pip wheel":
        wheel = _build_wheel(tmp, env)
        _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q",
              str(wheel)], tmp, env)
    else:
        _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(ROOT)], tmp, env)
    work = tmp / "elsewhere"
    work.mkdir()
    where = _run([str(py), "-c", "import lgn_fpga; print(lgn_fpga.__file__)"], work, env).strip()
    assert Path(where).resolve().is_relative_to(site.resolve()), f"imported {where}, not the installed wheel"
    return py, vdir / "bin" / "lgn-fpga", work, env


def test_wheel_trains_and_plans_from_another_folder(fresh):
    py, lgn, work, env = fresh
    assert _run([str(lgn), "--version"], work, env).strip() == f"lgn-fpga {lgn_fpga.__version__}"
    out = _run([str(lgn), "train", "digits", "--config", "digits-tiny", "--steps", "40", "--eval-every", "40",
                "--quiet", "-o", "runs/tiny"], work, env)
    assert "test accuracy" in out
    meta = json.loads((work / "runs" / "tiny" / "meta.json").read_text())
    assert meta["code"]["lgn_fpga"] == lgn_fpga.__version__ and "git_commit" not in meta["code"]
    out = _run([str(lgn), "build", "--board", "icebreaker", "--plan-only"], work, env)
    assert "wrote the build plan to build/icebreaker" in out
    assert (work / "build" / "icebreaker" / "rerun.sh").is_file()
    # the netlist the build exported records the same version
    from lgn_fpga.netlist.format import read_header
    (model,) = (work / "runs" / "tiny").glob("*.lgn")
    assert read_header(model)["writer"] == f"lgn-fpga {lgn_fpga.__version__}"
