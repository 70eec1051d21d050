"""Run directories and checkpoints.

A run directory holds::

    config.yaml      the resolved configuration (every key, after YAML and CLI overrides)
    meta.json        code version (package version, git commit), command line, host, start time
    metrics.jsonl    one JSON object per evaluation (and a final "test" record)
    checkpoint.pt    the latest state: model, optimizer, step, RNG and data-order state
    best.pt          the model with the best validation discretized accuracy so far

Checkpoints are written to a temporary file and renamed, so an interrupted
write never destroys the previous one.
"""
from __future__ import annotations

import io
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..fileio import atomic_write_bytes, atomic_write_text

__all__ = ["CHECKPOINT_FORMAT", "save_checkpoint", "load_checkpoint", "load_resume_state", "find_checkpoint",
           "atomic_write_bytes", "atomic_write_text", "RUN_FILES"]

#: The files a run directory holds (their stale temporaries are removed when a run starts or resumes).
RUN_FILES = ("config.yaml", "meta.json", "metrics.jsonl", "checkpoint.pt", "best.pt")
#: What --resume needs beyond a model: the state of everything a training step depends on.
RESUME_KEYS = ("optimizer", "noise_rng", "best", "elapsed")

CHECKPOINT_FORMAT = "lgn-fpga-checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(path, state: dict) -> None:
    """Save ``state`` (with format tag and version added) atomically."""
    buf = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}, buf)
    atomic_write_bytes(path, buf.getvalue())


def find_checkpoint(path, prefer: str = "checkpoint.pt") -> Path:
    """A checkpoint file from a run directory (``prefer`` inside it) or a ``.pt`` path."""
    p = Path(path)
    if p.is_dir():
        for name in (prefer, "checkpoint.pt", "best.pt"):
            if (p / name).is_file():
                return p / name
        raise CheckpointError(f"{p} holds no checkpoint.pt or best.pt; is it a run directory made by 'lgn-fpga train'?")
    if not p.exists():
        raise CheckpointError(f"{p} does not exist; pass a run directory or a .pt checkpoint")
    return p


def _other_hint(p: Path, resume: bool = False) -> str:
    """What to try instead of a broken checkpoint: its sibling in the run folder, else training again."""
    other = p.with_name("checkpoint.pt" if p.name == "best.pt" else "best.pt")
    if resume:
        best = f"; {other} can still be exported (lgn-fpga export {other} -o model.lgn)" if other.exists() else ""
        return f"this run cannot be resumed{best}, or train again"
    if p.name in ("best.pt", "checkpoint.pt") and other.exists():
        return f"try {other} instead, or train again"
    return "train again"


def load_checkpoint(path, prefer: str = "checkpoint.pt", resume: bool = False) -> dict:
    """Load and check a checkpoint; one clear error for anything unreadable."""
    p = find_checkpoint(path, prefer)
    try:
        state = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:
        raise CheckpointError(f"{p} is not a readable checkpoint ({type(e).__name__}); it may be truncated or "
                              f"corrupt: {_other_hint(p, resume)}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{p} is not an lgn-fpga checkpoint")
    if state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{p} has checkpoint version {state.get('version')}, this lgn-fpga reads "
                              f"version {CHECKPOINT_VERSION}")
    for key in ("config", "model", "encoding", "classes", "step"):
        if key not in state:
            raise CheckpointError(f"{p} lacks '{key}'; it is incomplete")
    state["path"] = str(p)
    return state


def load_resume_state(run_dir) -> dict:
    """The state ``--resume`` continues: ``run_dir/checkpoint.pt`` (never best.pt, which has no optimizer)."""
    d = Path(run_dir)
    if not d.is_dir():
        what = "does not exist" if not d.exists() else "is a file, not a run directory"
        raise CheckpointError(f"{d} {what}; --resume -o RUN continues a run directory made by 'lgn-fpga train' "
                              f"(without --resume, -o {d} starts a new run there)")
    p = d / "checkpoint.pt"
    if not p.is_file():
        best = (" (best.pt there keeps only the model: export it with 'lgn-fpga export', it cannot be resumed)"
                if (d / "best.pt").is_file() else "")
        raise CheckpointError(f"{d} holds no checkpoint.pt to resume from{best}; start a new run without --resume")
    state = load_checkpoint(p, resume=True)
    missing = [k for k in RESUME_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{p} lacks the training state --resume needs ({', '.join(missing)}; is it a copy "
                              f"of best.pt?); {_other_hint(p, resume=True)}")
    return state
