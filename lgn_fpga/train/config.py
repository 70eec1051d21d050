"""Training configuration: a dataclass with defaults, overridden by a recipe, YAML, then the command line.

Precedence, lowest first: dataclass defaults < the YAML file's ``recipe`` <
the YAML file's keys < ``--recipe`` on the command line < other command-line
options.  A recipe is a named set of the method's knobs (see :data:`RECIPES`),
so ``--recipe seed`` reproduces the paper's exact setting whatever the file says.
"""
from __future__ import annotations

import difflib
import math
import re
import types
import typing
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from ..errors import ConfigError
from ..resources import CONFIGS, package_dir
from .wiring import check_window

__all__ = ["TrainConfig", "RECIPES", "DEFAULT_RECIPE", "resolve_config", "load_yaml", "parse_set", "CONFIG_DIR"]

CONFIG_DIR = package_dir(CONFIGS)   # the built-in recipes, shipped inside the package


@dataclass
class TrainConfig:
    # -- data ---------------------------------------------------------------
    dataset: str = "digits"
    data_dir: str | None = None        # None: $LGN_FPGA_DATA, then the download cache
    val_size: float | None = None      # images (>=1) or fraction (<1) from the end of train; None: dataset default
    thresholds: int | list = 3         # per channel: a count (uniform on 0..255) or explicit integer thresholds
    flip: bool = False                 # augmentation: mirror each training image left-right with probability 1/2
    shift: int = 0                     # augmentation: translate each training image by up to this many pixels
    # -- architecture ---------------------------------------------------------
    layers: int = 4
    width: int = 1000                  # neurons per layer (a multiple of the class count for the last layer)
    widths: list | None = None         # explicit per-layer widths; overrides layers x width
    connections: str = "random"        # "random" (difflogic), "unique" (no repeated pairs) or "local" (patches, docs/wiring.md)
    window: int | list = 5             # local wiring: odd patch size in pixels (or one per layer)
    candidates: int = 1                # learned connections: signals each gate input chooses among (1: fixed wiring)
    init: str = "normal"               # "normal": logits ~ N(0,1); "residual": pass-through-A logit set high
    residual_logit: float = 5.0        # the pass-through-A logit under init=residual (conv-LGN paper: 5)
    group_tau: float = 10.0            # GroupSum temperature: scores = popcount / tau
    # -- method ------------------------------------------------------------------
    mode: str = "gumbel-ste"           # "gumbel-ste" (the method we ship) or "softmax" (difflogic baseline)
    recipe: str | None = None          # named preset of the knobs below (see RECIPES)
    noise: float = 0.1                 # Gumbel noise scale; the paper uses 1.0 (fails at FPGA scale, see README)
    noise_final: float | None = None   # end value of the noise schedule; None: constant
    noise_schedule: str = "constant"   # "constant", "linear" or "cosine" from noise to noise_final
    gumbel_tau: float = 1.0            # temperature of the surrogate softmax gradient (paper: 1.0)
    input_grad: str = "soft"           # "hard": through the sampled gate (paper); "soft": through the softmax mix
    # -- optimization ------------------------------------------------------------
    lr: float = 0.01                   # AdamW, as in difflogic and the paper
    lr_final: float | None = None      # end value of the learning-rate schedule; None: constant
    lr_schedule: str = "constant"      # "constant", "linear" or "cosine" from lr to lr_final
    weight_decay: float = 0.0
    batch_size: int = 128
    steps: int = 3000
    epochs: float | None = None        # if set, steps = ceil(epochs * train_images / batch_size)
    seed: int = 0
    # -- bookkeeping ---------------------------------------------------------------
    eval_every: int = 500              # steps between validation evaluations and checkpoints
    eval_batch: int = 4096
    target_acc: float | None = None    # validation accuracy (0..1) whose first step and time are logged
    kernel: str = "auto"               # "auto", "reference", "cpu" (C/OpenMP) or "triton" (GPU)
    device: str = "auto"               # "auto": CUDA when available, else CPU
    threads: int | None = None         # CPU threads for torch and the C kernel; None: torch's default

    def widths_list(self) -> list[int]:
        return [int(w) for w in self.widths] if self.widths else [int(self.width)] * int(self.layers)

    def to_dict(self) -> dict:
        return asdict(self)


#: Named presets of the method's knobs.  Numbers behind the default are in the README.
RECIPES: dict[str, dict] = {
    # "Mind the Gap" exactly: full-scale Gumbel noise, tau 1, input gradients through the sampled gate.
    "seed": dict(mode="gumbel-ste", noise=1.0, noise_final=None, noise_schedule="constant", gumbel_tau=1.0,
                 input_grad="hard"),
    # Ours: the same straight-through estimator with the noise scaled down to 0.1 and the input gradient
    # taken through the softmax mixture; learns at FPGA scale where the seed recipe does not (README, docs/training.md "Recipes").
    "scaled": dict(mode="gumbel-ste", noise=0.1, noise_final=None, noise_schedule="constant", gumbel_tau=1.0,
                   input_grad="soft"),
    # Hard forward with no noise at all: zero gap by construction, soft gradients.
    "noiseless": dict(mode="gumbel-ste", noise=0.0, noise_final=None, noise_schedule="constant", gumbel_tau=1.0,
                      input_grad="soft"),
    # difflogic's softmax relaxation, the baseline.
    "softmax": dict(mode="softmax"),
}
DEFAULT_RECIPE = "scaled"

SCHEDULES = ("constant", "linear", "cosine")     # of the noise and the learning rate (`scheduled`)
_CHOICES = {
    "mode": ("gumbel-ste", "softmax"), "connections": ("random", "unique", "local"), "init": ("normal", "residual"),
    "noise_schedule": SCHEDULES, "lr_schedule": SCHEDULES, "input_grad": ("hard", "soft"),
    "kernel": ("auto", "reference", "cpu", "triton"), "recipe": tuple(RECIPES) + (None,),
}
_POSITIVE = {"layers", "width", "candidates", "batch_size", "steps", "epochs", "eval_every", "eval_batch", "group_tau", "gumbel_tau",
             "lr", "threads", "val_size", "target_acc"}
_NON_NEGATIVE = {"shift", "noise", "noise_final", "lr_final", "weight_decay", "residual_logit"}
_AT_MOST = {"threads": 1024,  # torch segfaults creating 100,000 OpenMP threads
            "target_acc": 1}  # an accuracy, a fraction (0.9, not 90)


def _type_ok(value, tp) -> bool:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, t) for t in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if tp is list or origin is list:
        return isinstance(value, list)
    return True


def _type_name(tp) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(t) for t in typing.get_args(tp))
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false", list: "a list",
            type(None): "null"}.get(tp, getattr(tp, "__name__", str(tp)))


def _hints():
    return typing.get_type_hints(TrainConfig)


_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def _check_keys(d: dict, source: str) -> None:
    """Every check of a key's name, type and value: the one place a YAML file, ``--set`` and the options meet."""
    hints = _hints()
    for key, value in d.items():
        if key not in hints:
            close = difflib.get_close_matches(key, hints, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(hints)}"
            raise ConfigError(f"unknown key '{key}' in {source}{hint}")
        name = f"key '{key}' on the command line" if source == "command line" else f"key '{key}' in {source}"
        if not _type_ok(value, hints[key]):
            want = _type_name(hints[key])
            raise ConfigError(f"{name} must be {want}, not {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, not {value!r}")
        if key in _CHOICES and value not in _CHOICES[key]:
            raise ConfigError(f"{name} must be one of "
                              f"{', '.join(str(c) for c in _CHOICES[key] if c)}, not {value!r}")
        if key in _POSITIVE and value is not None and value <= 0:
            raise ConfigError(f"{name} must be positive, not {value!r}")
        if key in _NON_NEGATIVE and value is not None and value < 0:
            raise ConfigError(f"{name} must be >= 0, not {value!r}")
        if key in _AT_MOST and value is not None and value > _AT_MOST[key]:
            raise ConfigError(f"{name} must be at most {_AT_MOST[key]}, not {value!r}")
        if key == "thresholds" and isinstance(value, int) and not 1 <= value <= 255:
            raise ConfigError(f"{name} must be a count in 1..255 or a list of integers, not {value!r}")
        if key == "device" and not _DEVICE.fullmatch(value):
            raise ConfigError(f"{name} must be auto, cpu, cuda or cuda:N, not {value!r}")


def load_yaml(path) -> dict:
    """Read a recipe YAML file (a path, or a name from configs/ such as ``digits-tiny``)."""
    p = Path(path)
    if not p.exists() and not p.suffix and (CONFIG_DIR / f"{path}.yaml").exists():
        p = CONFIG_DIR / f"{path}.yaml"
    if not p.is_file():
        avail = ", ".join(sorted(q.stem for q in CONFIG_DIR.glob("*.yaml"))) if CONFIG_DIR.is_dir() else "none"
        raise ConfigError(f"config file {path} not found (built-in configs: {avail})")
    try:
        d = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{p} is not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{p} must hold a mapping of keys to values, not {type(d).__name__}")
    _check_keys(d, str(p))
    return d


def resolve_config(yaml_dict: dict | None = None, cli: dict | None = None, source: str = "config") -> TrainConfig:
    """Merge defaults, recipes, a YAML mapping and command-line overrides into a checked config."""
    yaml_dict = dict(yaml_dict or {})
    cli = {k: v for k, v in (cli or {}).items() if v is not None}
    _check_keys(yaml_dict, source)
    _check_keys(cli, "command line")
    merged: dict = {}
    for layer in (yaml_dict, cli):
        if layer.get("recipe"):
            merged.update(RECIPES[layer["recipe"]])
        merged.update(layer)
    if "recipe" not in merged:
        # No recipe named anywhere: the default (or the softmax baseline) fills the knobs nobody set.
        name = "softmax" if merged.get("mode") == "softmax" else DEFAULT_RECIPE
        merged = {**RECIPES[name], "recipe": name, **merged}
    cfg = TrainConfig(**merged)
    if isinstance(cfg.val_size, float) and cfg.val_size >= 1:
        cfg.val_size = int(cfg.val_size)  # >= 1 counts images
    if cfg.mode == "softmax":
        cfg.recipe = "softmax"  # the Gumbel knobs don't apply; don't let a gumbel recipe name stick
    for key in ("noise", "lr"):
        if getattr(cfg, f"{key}_schedule") != "constant" and getattr(cfg, f"{key}_final") is None:
            raise ConfigError(f"{key}_schedule '{getattr(cfg, f'{key}_schedule')}' needs {key}_final "
                              f"(the value it ends at)")
    if cfg.widths is not None and (not cfg.widths or any(not isinstance(w, int) or w <= 0 for w in cfg.widths)):
        raise ConfigError(f"widths must be a list of positive integers, not {cfg.widths!r}")
    try:
        check_window(cfg.window, len(cfg.widths_list()))
    except ValueError as e:
        raise ConfigError(f"{e} (key 'window' in {source})") from None
    return cfg


def scheduled(start: float, final: float | None, schedule: str, step: int, total: int) -> float:
    """A knob's value at ``step`` of ``total``: ``start``, moving to ``final`` linearly or on a half cosine."""
    if schedule == "constant" or final is None:
        return float(start)
    t = min(max(step / max(total - 1, 1), 0.0), 1.0)
    if schedule == "linear":
        w = t
    else:  # cosine
        import math
        w = 0.5 * (1 - math.cos(math.pi * t))
    return float(start + (final - start) * w)


def noise_at(cfg: TrainConfig, step: int, total: int) -> float:
    """Noise scale at ``step`` of ``total`` under the configured schedule."""
    return scheduled(cfg.noise, cfg.noise_final, cfg.noise_schedule, step, total)


def lr_at(cfg: TrainConfig, step: int, total: int) -> float:
    """Learning rate of ``step`` of ``total`` under the configured schedule."""
    return scheduled(cfg.lr, cfg.lr_final, cfg.lr_schedule, step, total)


def parse_set(pairs) -> dict:
    """``--set KEY=VALUE`` pairs as config keys (``-`` read as ``_``), each value read as YAML."""
    out = {}
    for p in pairs:
        if "=" not in p:
            raise ConfigError(f"--set takes KEY=VALUE, not {p!r}")
        k, v = p.split("=", 1)
        out[k.strip().replace("-", "_")] = yaml.safe_load(v)
    return out
