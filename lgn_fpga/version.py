"""The code version, from one place: ``lgn_fpga.__version__`` (which ``pyproject.toml`` reads too).

``lgn-fpga --version``, every run directory (``meta.json``, checkpoints), every netlist header and every build
report take it from here.
"""
from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

from . import __version__

__all__ = ["__version__", "code_version"]

_CHECKOUT = Path(__file__).resolve().parents[1]   # the source checkout, for an editable install or a run from it


def _git_commit():
    """HEAD of the checkout this package is imported from (+``-dirty``), or None for an installed package.

    An installed package may sit inside some unrelated git work tree (a venv in a checkout): only a checkout
    whose top level holds this very ``lgn_fpga/`` counts.
    """
    try:
        def git(*args):
            return subprocess.run(["git", *args], cwd=_CHECKOUT, capture_output=True, text=True,
                                  timeout=5).stdout.strip()
        top = git("rev-parse", "--show-toplevel")
        if not top or Path(top).resolve() != _CHECKOUT:
            return None
        commit = git("rev-parse", "HEAD")
        if not commit:
            return None
        dirty = git("status", "--porcelain", "--untracked-files=no")
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def code_version() -> dict:
    """Package version, Python (and torch, when loaded) and, from a git checkout, the commit (+dirty flag)."""
    out = {"lgn_fpga": __version__, "python": platform.python_version()}
    if "torch" in sys.modules:
        out["torch"] = sys.modules["torch"].__version__
    commit = _git_commit()
    if commit:
        out["git_commit"] = commit
    return out
