#!/usr/bin/env python3
"""What a user waits for: milliseconds per training step of a shipped config, everything included.

bench/kernels.py times the logic layers on random bits; this times ``lgn-fpga train``'s own step on the real
data (``Trainer._one_step``: batch, augmentation, thermometer encoding, the noise, forward, loss, backward,
the fused AdamW update), for each config and thread count in a fresh subprocess, after a few warm-up steps,
and prints the median over repeats with what the config's whole run would take at that speed (evaluations
not included).  Needs the datasets (``--data-dir`` or ``$LGN_FPGA_DATA``); nothing is written but a
temporary run directory.

To compare two commits, run it from each tree (``PYTHONPATH`` at a ``git worktree`` of the other one),
alternating, on a quiet machine: the host's noise is larger than most changes.

Usage::

    python bench/train_step.py                         # cifar10 and mnist, 1 and 2 threads
    python bench/train_step.py --configs cifar10 --threads 1 --steps 40 --repeats 3
    python bench/train_step.py --quick                 # a smoke run (seconds)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from _table import table


def worker(args) -> dict:
    import torch

    from lgn_fpga.train.config import load_yaml, resolve_config
    from lgn_fpga.train.loop import Trainer
    cli = {"threads": args.threads}
    if args.data_dir:
        cli["data_dir"] = args.data_dir
    cfg = resolve_config(load_yaml(args.config), cli)
    with tempfile.TemporaryDirectory() as tmp:
        tr = Trainer(cfg, tmp, progress=False, log=lambda *a, **k: None)
        for _ in range(args.warmup):
            tr._one_step()
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for _ in range(args.steps):
                tr._one_step()
            times.append((time.perf_counter() - t0) / args.steps * 1e3)
    return {"ms": times, "total_steps": cfg.steps, "threads": torch.get_num_threads(),
            "gates": sum(cfg.widths_list())}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="cifar10,mnist", help="shipped config names, comma-separated")
    ap.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    ap.add_argument("--steps", type=int, default=30, help="steps per repeat (default 30)")
    ap.add_argument("--repeats", type=int, default=3, help="repeats; the median is reported (default 3)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: the digits-tiny config (data embedded), 1 thread, a few steps")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.configs, args.threads, args.steps, args.repeats, args.warmup = "digits-tiny", "1", 5, 1, 1
    if args.worker:
        args.threads = int(args.threads)
        print(json.dumps(worker(args)))
        return 0
    rows = []
    for name in [c.strip() for c in args.configs.split(",") if c.strip()]:
        for t in [int(x) for x in args.threads.split(",")]:
            env = dict(os.environ, OMP_NUM_THREADS=str(t), LGN_FPGA_THREADS=str(t))
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--config", name, "--threads", str(t),
                   "--steps", str(args.steps), "--repeats", str(args.repeats), "--warmup", str(args.warmup)]
            if args.data_dir:
                cmd += ["--data-dir", args.data_dir]
            p = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if p.returncode:
                err = (p.stderr.strip().splitlines() or ["failed"])[-1]
                rows.append((name, t, "-", "-", "-", err[:100]))
                continue
            r = json.loads(p.stdout.strip().splitlines()[-1])
            ms = statistics.median(r["ms"])
            rows.append((name, t, f"{r['gates']:,}", f"{ms:.1f}", " ".join(f"{m:.1f}" for m in r["ms"]),
                         f"{ms * r['total_steps'] / 60e3:.1f} min for {r['total_steps']:,} steps"))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    table(f"Training step of shipped configs, everything included (load average {load:.2f} at the end)",
          ("config", "threads", "gates", "ms/step (median)", "repeats", "the config's run"), rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
