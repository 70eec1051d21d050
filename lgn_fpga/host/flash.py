"""Loading a bitstream onto a board with whichever programmer is installed.

A board file lists its programmers in order of preference (``iceprog``,
``openFPGALoader``, ``fujprog``, ...); the first one found runs.  ``$TOOL``
(``ICEPROG``, ``OPENFPGALOADER``, ``FUJPROG``) overrides a tool's path.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .client import HostError

__all__ = ["find_programmer", "flash"]


def find_programmer(board):
    """``(Programmer, absolute path)`` of the first installed programmer of ``board``.

    Raises
    ------
    HostError
        When none is installed (the message lists what would work).
    """
    if not board.programmers:
        raise HostError(f"board {board.name} lists no programmers; add one under 'programmers' in {board.path}")
    for prog in board.programmers:
        env = os.environ.get(prog.env_var)
        path = shutil.which(env) if env else shutil.which(prog.tool)
        if path:
            return prog, path
    names = ", ".join(p.tool for p in board.programmers)
    raise HostError(f"no programmer for {board.name} found: install one of {names} "
                    f"(e.g. apt install openfpgaloader), or set {board.programmers[0].env_var} to its path")


def flash(board, bitstream, *, dry_run: bool = False, log=None) -> list:
    """Load ``bitstream`` onto ``board``; return the command run (only built when ``dry_run``).

    Raises
    ------
    HostError
        Missing bitstream or programmer, or the programmer failed.
    """
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
    r = subprocess.run(cmd)
    if r.returncode:
        raise HostError(f"{prog.tool} failed with exit code {r.returncode}: is the board plugged in and "
                        f"do you have access to its USB device (udev rules)?")
    return cmd
