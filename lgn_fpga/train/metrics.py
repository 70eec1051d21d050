"""``metrics.jsonl``: the one reader and writer of a run's evaluation records (torch-free).

One JSON object per line: a validation record per evaluation (``step``, ``val_*``) and a final
``"split": "test"`` record.  A line is complete when it ends in a newline; a last line without one is a
write that was cut off (a SIGKILL, a full disk) and is ignored by readers and dropped on ``--resume``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import CheckpointError
from ..fileio import atomic_write_text

__all__ = ["METRICS", "read_metrics", "append_metric", "truncate_metrics", "records_of", "time_to_target"]

METRICS = "metrics.jsonl"


def _lines(p: Path) -> list[str]:
    """The complete lines of ``p`` (a cut-off last line is left out)."""
    text = p.read_bytes().decode("utf-8", errors="replace")
    return text.split("\n")[:-1]


def read_metrics(run, required: bool = True) -> list[dict]:
    """Every complete record of ``run/metrics.jsonl``, in order.

    ``required=False``: a run without the file (no evaluation yet) gives ``[]``.  A damaged line in the middle
    is one clear error naming the file and line.
    """
    run = Path(run)
    p = run / METRICS
    if not p.is_file():
        if not required:
            return []
        raise CheckpointError(f"{run} has no {METRICS}; is it a run directory made by 'lgn-fpga train'?")
    out = []
    for i, line in enumerate(_lines(p), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        if not isinstance(rec, dict) or not isinstance(rec.get("step"), int):
            raise CheckpointError(f"{p}: line {i} is not a metrics record (file damaged?)")
        out.append(rec)
    return out


def records_of(records: list[dict], split: str) -> list[dict]:
    """The validation (``split="val"``) or test (``"test"``) records among ``records``."""
    if split == "val":
        return [m for m in records if "val_acc_discrete" in m]
    if split == "test":
        return [m for m in records if m.get("split") == "test"]
    raise ValueError(f"split must be val or test, not {split!r}")


def time_to_target(records: list[dict], target: float) -> dict | None:
    """Steps and training seconds to the first validation record whose discretized accuracy reaches ``target``.

    ``{"step": s, "wall_s": t}`` of that record, or ``None`` if none reaches it.  The resolution is the run's
    ``eval_every``; ``wall_s`` counts optimizer steps only (evaluations are left out), so runs that evaluate
    differently compare fairly.
    """
    for m in records_of(records, "val"):
        if m["val_acc_discrete"] >= target:
            return {"step": m["step"], "wall_s": m.get("wall_s")}
    return None


def append_metric(run, rec: dict) -> None:
    """Append one record as one complete line (flushed to disk before returning)."""
    with open(Path(run) / METRICS, "a") as f:
        f.write(json.dumps(rec) + "\n")
        f.flush()
        os.fsync(f.fileno())


def truncate_metrics(run, step: int) -> int:
    """Keep only the complete records up to ``step`` (what a checkpoint at ``step`` covers).

    A resumed run rewrites the records after its checkpoint, so without this a run killed between a record
    and its checkpoint would list a step twice.  Returns how many records (or cut-off lines) were dropped.
    """
    p = Path(run) / METRICS
    if not p.is_file():
        return 0
    raw = p.read_bytes()
    records = read_metrics(run)
    keep = [r for r in records if r["step"] <= step]
    text = "".join(json.dumps(r) + "\n" for r in keep)
    dropped = len(records) - len(keep) + (0 if raw.endswith(b"\n") or not raw else 1)
    if dropped:
        atomic_write_text(p, text)
    return dropped
