"""What the two compiled-C paths share: the C compiler, the cache folder and the build-key parts.

The training kernel (``lgn_fpga.kernels.cpu``) and the netlist evaluator
(``lgn_fpga.netlist.cbackend``) both compile C with the system compiler
(``$CC``, else ``cc``; extra flags from ``$LGN_FPGA_CFLAGS``) into a per-user
cache (``$LGN_FPGA_CACHE``, else ``$XDG_CACHE_HOME/lgn-fpga`` or
``~/.cache/lgn-fpga``), keyed by everything the binary depends on.  No torch here:
nothing downstream of the netlist imports it.
"""
from __future__ import annotations

import os
import platform
import shlex
import subprocess
from pathlib import Path

__all__ = ["cache_root", "cc_command", "extra_cflags", "cpu_fingerprint", "compiler_id", "lib_suffix"]


def cache_root(sub: str) -> Path:
    """``<cache>/<sub>``: the folder one kind of compiled library lives in (not created here)."""
    d = os.environ.get("LGN_FPGA_CACHE")
    if d:
        return Path(d).expanduser() / sub
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lgn-fpga" / sub


def cc_command(cc: str | None = None) -> list[str]:
    """The compiler command as a list: ``cc`` if given, else ``$CC``, else ``cc``."""
    return shlex.split(cc if cc is not None else os.environ.get("CC") or "cc")


def extra_cflags() -> list[str]:
    """Flags from ``$LGN_FPGA_CFLAGS``, appended to every compile."""
    return shlex.split(os.environ.get("LGN_FPGA_CFLAGS", ""))


def cpu_fingerprint() -> str:
    """What ``-march=native`` depends on: the CPU model and its feature flags."""
    parts = [platform.machine(), platform.processor()]
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key = line.split(":", 1)[0].strip()
                if key in ("model name", "flags", "Features", "CPU part") and line not in parts:
                    parts.append(line.strip())
                if key in ("flags", "Features"):
                    break
    except OSError:
        pass
    return "\n".join(parts)


def compiler_id(cc: list[str]) -> str:
    """First line of ``cc --version`` (part of every build key), or '' if it cannot run."""
    try:
        out = subprocess.run(cc + ["--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.splitlines()[0] if out.stdout else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def lib_suffix() -> str:
    return ".dylib" if platform.system() == "Darwin" else ".so"
