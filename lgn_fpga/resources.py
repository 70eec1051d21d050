"""The data files shipped inside the package: ``configs/``, ``boards/`` and ``flows/``.

They are package data (``pyproject.toml``), found through :mod:`importlib.resources`, so a wheel or a
``pip install .`` carries them and no code looks for the source checkout.  The package is installed
unzipped (its C kernels are compiled from files beside the modules), so each folder is a real directory.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["package_dir", "CONFIGS", "BOARDS", "FLOWS"]

CONFIGS, BOARDS, FLOWS = "configs", "boards", "flows"


def package_dir(name: str) -> Path:
    """The folder ``name`` (one of :data:`CONFIGS`, :data:`BOARDS`, :data:`FLOWS`) inside the installed package."""
    return Path(str(resources.files("lgn_fpga").joinpath(name)))
