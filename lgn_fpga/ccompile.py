"""The one compile-and-cache builder of the package's C code, and what goes into it.

The training kernel (``lgn_fpga.kernels.cpu``, source ``kernels/logic_cpu.c``) and
the netlist evaluator (``lgn_fpga.netlist.cbackend``, sources generated around
``netlist/c/*``) both build shared libraries with :func:`build_library`: the system
compiler (``$CC``, else ``cc``; extra flags from ``$LGN_FPGA_CFLAGS``), flag sets
tried from the fastest down, into a per-user cache (``$LGN_FPGA_CACHE``, else
``$XDG_CACHE_HOME/lgn-fpga`` or ``~/.cache/lgn-fpga``) under a name keyed by
everything the binary depends on (the caller's key parts, the compiler and its
version, the flags, and for ``-march=native`` the CPU).  A library is written
under a temporary name and renamed, so concurrent builds never clash.  No torch
here: nothing downstream of the netlist imports it.
"""
from __future__ import annotations

import hashlib
import os
import platform
import shlex
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

__all__ = ["cache_root", "cc_command", "extra_cflags", "cpu_fingerprint", "compiler_id", "lib_suffix",
           "library_path", "build_library", "Built"]


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


def _last_line(text: str, fallback: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else fallback


def library_path(directory: Path, prefix: str, key_parts, cc: list[str], flags: list[str],
                 cid: str | None = None) -> Path:
    """Where the library of ``key_parts`` (bytes or str) built by ``cc`` with ``flags`` lives in ``directory``."""
    h = hashlib.sha256()
    for part in list(key_parts) + [" ".join(cc), compiler_id(cc) if cid is None else cid, " ".join(flags)]:
        h.update(part if isinstance(part, bytes) else str(part).encode())
        h.update(b"\0")
    if "-march=native" in flags:
        h.update(cpu_fingerprint().encode())
    return Path(directory) / f"{prefix}-{h.hexdigest()[:24]}{lib_suffix()}"


@dataclass
class Built:
    """What :func:`build_library` did: ``path`` (None when nothing built), the ``flags`` it was built with,
    one line per flag set that failed (``errors``), and whether it was compiled now (``compiled``)."""
    path: Path | None
    flags: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    compiled: bool = False


def build_library(directory: Path, prefix: str, key_parts, sources: Callable[[], dict] | dict, flag_sets,
                  cc: list[str] | None = None, jobs: int = 1, remember_failures: bool = False,
                  timeout: float = 3600) -> Built:
    """Find or compile a shared library, trying ``flag_sets`` in order.

    ``sources``: ``{file name: C text}`` (or a function returning it, called only when something must be
    compiled); several files compile in parallel, ``jobs`` at a time, and are linked with the same flags.
    ``key_parts`` must determine the sources.  A library already built with any of the flag sets is
    taken first.  ``remember_failures``: a flag set that fails leaves a
    ``.failed`` marker beside its library, so that later processes go straight to the next one (delete
    the cache folder to retry).  Raises OSError when ``directory`` cannot be created or written.
    """
    cc = cc_command() if cc is None else cc
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cid = compiler_id(cc)
    out = Built(None)
    texts = None
    flag_sets = [list(f) for f in flag_sets]
    paths = [library_path(directory, prefix, key_parts, cc, f, cid) for f in flag_sets]
    for flags, path in zip(flag_sets, paths):   # one built earlier with any of the flag sets
        if path.exists():
            out.path, out.flags = path, flags
            return out
    for flags, path in zip(flag_sets, paths):
        failed = path.with_suffix(".failed")
        if remember_failures and failed.exists():
            out.errors.append(f"{' '.join(flags[:3])}: {failed.read_text().strip()} (cached in {failed.name})")
            continue
        if texts is None:
            texts = sources() if callable(sources) else sources
        with tempfile.TemporaryDirectory(dir=directory, prefix=path.stem + ".") as tmp:
            tmp = Path(tmp)
            for name, text in texts.items():
                (tmp / name).write_text(text)
            err = _compile(cc, flags, tmp, list(texts), tmp / path.name, jobs, timeout)
            if err is None:
                os.replace(tmp / path.name, path)   # atomic: a concurrent build of the same key writes the same bytes
                out.path, out.flags, out.compiled = path, flags, True
                return out
        out.errors.append(f"{' '.join(flags[:3])}: {err}")
        if remember_failures:
            try:
                failed.write_text(err + "\n")
            except OSError:
                pass
    return out


def _compile(cc, flags, tmp: Path, names, lib: Path, jobs: int, timeout: float) -> str | None:
    """Compile ``names`` (files in ``tmp``) into the shared library ``lib``; None, or the error's last line."""
    try:
        if len(names) == 1:
            p = subprocess.run(cc + flags + ["-shared", "-o", str(lib), str(tmp / names[0])], capture_output=True,
                               text=True, timeout=timeout)
            return None if p.returncode == 0 else _last_line(p.stderr or p.stdout, f"exit {p.returncode}")
        pending, running, failed = list(names), [], None
        try:
            while (pending or running) and failed is None:
                while pending and len(running) < max(1, jobs):
                    n = pending.pop(0)
                    running.append(subprocess.Popen(cc + flags + ["-c", "-o", str(tmp / (n + ".o")), str(tmp / n)],
                                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
                p = running.pop(0)
                text, _ = p.communicate(timeout=timeout)
                if p.returncode != 0:
                    failed = _last_line(text, f"exit {p.returncode}")
        finally:
            for p in running:
                p.kill()
                p.wait()
        if failed is not None:
            return failed
        p = subprocess.run(cc + flags + ["-shared", "-o", str(lib)] + [str(tmp / (n + ".o")) for n in names],
                           capture_output=True, text=True, timeout=timeout)
        return None if p.returncode == 0 else _last_line(p.stderr or p.stdout, f"link: exit {p.returncode}")
    except (OSError, subprocess.SubprocessError) as e:
        return str(e)
