"""Boards as data: one YAML file per board (``boards/*.yaml``) -> an amaranth-boards platform.

A board file names the amaranth-boards platform class and adds what a build
and a host need: the UART resource and baud rate, the LEDs that show the last
class, the resource budget the fit check uses, and the programmers that can
load a bitstream.  Adding a board means adding one file; ``extends: NAME``
copies another board's file and overrides some keys (``ulx3s`` is the 85F).

Board files are found, in order, in: the directories in ``$LGN_FPGA_BOARDS``
(``os.pathsep``-separated), ``./boards`` and the package's own ``lgn_fpga/boards/``.
``--board`` also takes a path to a YAML file.  See ``docs/boards.md``.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..tools import env_var
from ..resources import BOARDS, package_dir

__all__ = ["Board", "Programmer", "load_board", "list_boards", "board_dirs", "BoardError", "FAMILIES"]

FAMILIES = ("ice40", "ecp5")
# Popcount count tables per block RAM: (address bits, read ports).  ECP5 DP16KD as 4096 x 4 in true dual
# port mode; iCE40 SB_RAM40_4K as 512 x 8 with one read port (yosys maps both from an Amaranth ROM).
COUNT_TABLE_GEOMETRY = {"ecp5": (12, 2), "ice40": (9, 1)}
_KEYS = {"name", "description", "platform", "family", "device", "package", "clock_hz", "uart", "leds",
         "budget", "programmers", "extends"}


class BoardError(ConfigError):
    """A board name that is unknown or a board file that is malformed."""


@dataclass(frozen=True)
class Programmer:
    """A tool that can load a bitstream: ``tool`` (``$TOOL`` overrides its path) and its arguments."""

    tool: str
    args: tuple

    @property
    def env_var(self) -> str:
        return env_var(self.tool)

    def command(self, bitstream) -> list:
        return [str(a).replace("{bitstream}", str(bitstream)) for a in self.args]


@dataclass(frozen=True)
class Board:
    """One board, as described by its YAML file.

    Attributes
    ----------
    name, description : str
    platform : str
        ``module:Class`` of the amaranth-boards platform.
    family : {"ice40", "ecp5"}
    device, package : str
        As the platform declares them (checked).
    clock_hz : int
        The platform's default clock (checked).
    uart : (str, int)
        UART resource name and number.
    baud, max_baud : int
        Default line rate, and the highest the board's USB-UART bridge supports.
    leds : tuple of (str, int)
        LED resources, lowest class bit first.
    budget : dict
        ``lut``, ``ff``, ``bram``: what the device offers (the fit check compares against it).
    programmers : tuple of Programmer
        In order of preference.
    path : Path
        The YAML file.
    """

    name: str
    description: str
    platform: str
    family: str
    device: str
    package: str
    clock_hz: int
    uart: tuple
    baud: int
    max_baud: int
    leds: tuple
    budget: dict
    programmers: tuple
    path: Path = field(default=None, compare=False)

    def platform_class(self) -> type:
        return _platform_class(self.platform, f"board {self.name}")

    def make_platform(self):
        """A fresh platform instance (the open-source toolchain)."""
        return self.platform_class()()

    def build_options(self, stages: int | None = None, count_tables: bool | None = None) -> tuple[int, tuple]:
        """``(stages, count-table geometry)`` a build for this board uses; ``None`` takes the board's default.

        2 gate layers per register stage on both families: abc9 packs two gate layers into one LUT4 (ECP5: 9 %
        fewer LUTs, 41 % fewer flip-flops, fewer overused wires per router iteration, Fmax above 25 MHz; iCE40:
        MNIST 4 x 800 took 4,322 logic cells at 2 stages, 35.0 MHz, where 1 stage needed 5,045 and did not place,
        docs/boards.md).  ECP5 without count tables (the RAM rows made routing much harder), iCE40 with them
        (fewer LUTs; the small dies route).  docs/routing.md.
        """
        if stages is None:
            stages = 2
        if count_tables is None:
            count_tables = self.family == "ice40"
        return int(stages), self.count_tables(count_tables)

    def count_tables(self, use: bool = True) -> tuple:
        """``(tables, table_bits, table_ports)`` for the popcount's count tables: every block RAM, two
        4096 x 4 read ports each on ECP5 (DP16KD), one 512 x 4 read port on iCE40 (SB_RAM40_4K)."""
        bits, ports = COUNT_TABLE_GEOMETRY[self.family]
        return (ports * self.budget["bram"] if use else 0, bits, ports)

    @property
    def bitstream_suffix(self) -> str:
        return ".bin" if self.family == "ice40" else ".bit"

    def check_baud(self, baud: int) -> int:
        """``baud`` if this board can run it, else a BoardError that says the limits."""
        from ..hdl.uart import check_baud
        try:
            check_baud(self.clock_hz, baud)
        except ValueError as e:
            raise BoardError(f"board {self.name}: {e}") from None
        if baud > self.max_baud:
            raise BoardError(f"board {self.name}: baud rate {baud} is above what its USB-UART supports "
                             f"({self.max_baud}); choose --baud {self.max_baud} or lower")
        return baud


def board_dirs() -> list:
    dirs = [Path(p) for p in os.environ.get("LGN_FPGA_BOARDS", "").split(os.pathsep) if p]
    dirs.append(Path.cwd() / "boards")
    dirs.append(package_dir(BOARDS))
    out = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def list_boards() -> list:
    """Names of every board file found, sorted."""
    names = set()
    for d in board_dirs():
        names.update(p.stem for p in d.glob("*.yaml"))
    return sorted(names)


def _find(name: str) -> Path:
    p = Path(name)
    if p.suffix in (".yaml", ".yml") or os.sep in name:
        if not p.is_file():
            raise BoardError(f"board file {name} not found")
        return p
    for d in board_dirs():
        f = d / f"{name}.yaml"
        if f.is_file():
            return f
    raise BoardError(f"unknown board {name!r}; choose one of {', '.join(list_boards()) or '(none found)'} "
                     f"or give a board YAML file")


def _read(path: Path, seen=()) -> dict:
    import yaml
    try:
        d = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise BoardError(f"board file {path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(d, dict):
        raise BoardError(f"board file {path}: must be a mapping of keys, not {type(d).__name__}")
    unknown = set(d) - _KEYS
    if unknown:
        raise BoardError(f"board file {path}: unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(_KEYS))})")
    if "extends" in d:
        base = d.pop("extends")
        if base in seen:
            raise BoardError(f"board file {path}: 'extends' loops back to {base!r}")
        parent = _read(_find(str(base)), seen + (base,))
        parent.update(d)
        d = parent
    return d


def _get(d, key, kind, path, what=None):
    if key not in d:
        raise BoardError(f"board file {path}: missing key {key!r}")
    v = d[key]
    ok = isinstance(v, kind) and not (kind is int and isinstance(v, bool))
    if not ok:
        raise BoardError(f"board file {path}: {key} must be {what or kind.__name__}, not {v!r}")
    return v


def _resource(v, path, key):
    if (not isinstance(v, (list, tuple)) or len(v) != 2 or not isinstance(v[0], str)
            or not isinstance(v[1], int) or isinstance(v[1], bool)):
        raise BoardError(f"board file {path}: {key} must be [resource name, number], not {v!r}")
    return (v[0], int(v[1]))


def load_board(name) -> Board:
    """The board called ``name`` (or the board file at that path), checked against its platform.

    Raises
    ------
    BoardError
        Unknown board, malformed file, or a file that contradicts its platform class.
    """
    path = _find(str(name))
    d = _read(path)
    uart = _get(d, "uart", dict, path, "a mapping with resource and baud")
    budget = _get(d, "budget", dict, path, "a mapping with lut, ff and bram")
    for k in ("lut", "ff", "bram"):
        if not isinstance(budget.get(k), int) or isinstance(budget.get(k), bool) or budget[k] < 0:
            raise BoardError(f"board file {path}: budget.{k} must be a non-negative integer, not {budget.get(k)!r}")
    progs = []
    for i, p in enumerate(d.get("programmers") or []):
        if not isinstance(p, dict) or not isinstance(p.get("tool"), str) or not isinstance(p.get("args", []), list):
            raise BoardError(f"board file {path}: programmers[{i}] must have tool (a name) and args (a list), not {p!r}")
        progs.append(Programmer(p["tool"], tuple(str(a) for a in p.get("args", []))))
    leds = d.get("leds") or []
    if not isinstance(leds, list):
        raise BoardError(f"board file {path}: leds must be a list of [resource name, number], not {leds!r}")
    platform = _get(d, "platform", str, path, "'module:Class'")
    plat = _platform_class(platform, f"board file {path}")()
    # What the platform knows comes from it; a board file may restate it (then it must agree).
    derived = {"family": str(getattr(plat, "family", "")).lower(), "device": plat.device, "package": plat.package,
               "clock_hz": int(plat.default_clk_frequency)}
    if "family" in d and d["family"] not in FAMILIES:
        raise BoardError(f"board file {path}: family must be one of {', '.join(FAMILIES)}, not {d['family']!r}")
    for key, value in derived.items():
        if key in d and d[key] != value:
            said = (f"the platform's default clock runs at {value} Hz" if key == "clock_hz"
                    else f"{platform} says {value!r}")
            raise BoardError(f"board file {path}: {key} is {d[key]!r} but {said}")
    if derived["family"] not in FAMILIES:
        raise BoardError(f"board file {path}: {platform} is a {derived['family'] or 'non-Lattice'} platform; "
                         f"lgn-fpga builds for {', '.join(FAMILIES)}")
    baud = _get(uart, "baud", int, path, "a positive integer (uart.baud)")
    board = Board(
        name=_get(d, "name", str, path), description=d.get("description", ""), platform=platform,
        family=derived["family"], device=derived["device"], package=derived["package"],
        clock_hz=derived["clock_hz"], uart=_resource(uart.get("resource"), path, "uart.resource"),
        baud=baud, max_baud=int(uart.get("max_baud", baud)),
        leds=tuple(_resource(l, path, "leds[]") for l in leds),
        budget={k: int(budget[k]) for k in ("lut", "ff", "bram")}, programmers=tuple(progs), path=path)
    for res in (board.uart, *board.leds):
        try:
            plat.lookup(*res)
        except Exception:
            raise BoardError(f"board file {board.path}: {board.platform} has no resource {res[0]}#{res[1]}") from None
    return board


def _platform_class(spec: str, where: str) -> type:
    """The amaranth-boards platform class ``module:Class``."""
    mod, _, cls = spec.partition(":")
    try:
        return getattr(importlib.import_module(mod), cls)
    except (ImportError, AttributeError) as e:
        raise BoardError(f"{where}: cannot import platform {spec!r} ({e}); "
                         f"is amaranth-boards installed and up to date?") from None
