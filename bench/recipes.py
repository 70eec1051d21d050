#!/usr/bin/env python3
"""Training recipes side by side: same architecture, seed, data and steps, one table and one plot.

For every (width, seed, recipe) it trains one run (``lgn_fpga.train.loop.Trainer``, the code behind
``lgn-fpga train``), tests its best checkpoint, exports and optimizes the netlist (what ``lgn-fpga export``
does) and prints one row: steps and training seconds to the target validation accuracy, total training
seconds, the CPU time of one training step (measured apart, so that timings on a shared machine compare) and
the CPU seconds to target it implies, each as a speed-up over softmax, final discretized test accuracy, the project's gap and the paper-style gap, unused and unread
gates (docs/method.md, "Metrics"), and the gates left after export.  The plot shows validation accuracy
against steps and against training seconds, one row of panels per width.

Run directories go under ``--out``; a run that already holds its test record is read back, not retrained,
so an interrupted study continues where it stopped.  Usage::

    python bench/recipes.py --dataset mnist --widths 4000,16000 --depth 4 --thresholds 1 --steps 2000 \\
        --recipes softmax,seed,scaled --seeds 0,1 --target 0.9 --out out/recipes
    python bench/recipes.py --quick      # digits, 2 x 200, 60 steps: a few seconds
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

from lgn_fpga.errors import LgnError
from lgn_fpga.fileio import atomic_write_bytes, atomic_write_text
from lgn_fpga.train.config import RECIPES, parse_set, resolve_config
from lgn_fpga.train.metrics import read_metrics, records_of, time_to_target
from _table import table

# Config keys that do not change a run's numbers (where it runs, with how many threads).
_NOT_RESULTS = {"threads", "device", "data_dir"}

HEADER = ["width", "seed", "recipe", "steps to target", "s to target", "speed-up (wall)", "s total",
          "CPU ms/step", "CPU s to target", "speed-up (CPU)", "test acc", "gap", "gap (paper)", "unused", "unread",
          "gates after export"]
STEP_COST = "step_cost.json"   # in each run directory: the measured CPU time of one training step


def _ints(text: str) -> list[int]:
    try:
        out = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers, not {text!r}") from None
    if not out or min(out) < 0:
        raise argparse.ArgumentTypeError(f"must be comma-separated non-negative integers, not {text!r}")
    return out


def _recipes(text: str) -> list[str]:
    out = [r.strip() for r in text.split(",") if r.strip()]
    bad = [r for r in out if r not in RECIPES]
    if not out or bad:
        raise argparse.ArgumentTypeError(f"unknown recipe {', '.join(map(repr, bad)) or repr(text)}; known: "
                                         f"{', '.join(RECIPES)}")
    return out


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--widths", type=_ints, default=[4000], help="neurons per layer, comma-separated")
    ap.add_argument("--depth", type=int, default=4, help="logic layers")
    ap.add_argument("--thresholds", type=int, default=1)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--recipes", type=_recipes, default=None,
                    help="comma-separated (default softmax,seed,scaled; --quick: those and noiseless)")
    ap.add_argument("--seeds", type=_ints, default=[0])
    ap.add_argument("--target", type=float, default=0.9, help="target validation accuracy (a fraction)")
    ap.add_argument("--group-tau", type=float, default=None, help="GroupSum tau (default: the config default)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads per run (runs go one after another)")
    ap.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                    help="any other config key for every run (repeatable)")
    ap.add_argument("--out", default="out/recipes", help="folder for the run directories, results and plot")
    ap.add_argument("--quick", action="store_true",
                    help="digits, 2 x 200, 3 thresholds, 60 steps, eval every 30, target 0.3 (the test's setting)")
    a = ap.parse_args(argv)
    if a.quick:
        a.dataset, a.widths, a.depth, a.thresholds, a.steps, a.eval_every = "digits", [200], 2, 3, 60, 30
        a.target = 0.3
        a.recipes = a.recipes or ["softmax", "seed", "scaled", "noiseless"]
    a.recipes = a.recipes or ["softmax", "seed", "scaled"]
    for name in ("depth", "steps", "eval_every", "threads"):
        if getattr(a, name) <= 0:
            ap.error(f"--{name.replace('_', '-')} must be positive, not {getattr(a, name)}")
    if not 0 < a.target <= 1:
        ap.error(f"--target must be a fraction in (0, 1], not {a.target}")
    return a


def run_one(a, width: int, seed: int, recipe: str, extra: dict) -> Path:
    """Train one run unless ``--out`` already holds it finished (with the same settings); its directory."""
    from lgn_fpga.train.loop import Trainer
    rd = Path(a.out) / f"{a.dataset}-{a.depth}x{width}-{recipe}-s{seed}"
    cli = dict(dataset=a.dataset, layers=a.depth, width=width, thresholds=a.thresholds, steps=a.steps,
               eval_every=a.eval_every, recipe=recipe, seed=seed, target_acc=a.target, threads=a.threads,
               **({"group_tau": a.group_tau} if a.group_tau else {}), **extra)
    cfg = resolve_config({}, cli)
    if records_of(read_metrics(rd, required=False), "test"):
        import yaml
        have = yaml.safe_load((rd / "config.yaml").read_text())
        differ = sorted(k for k, v in cfg.to_dict().items() if k not in _NOT_RESULTS and have.get(k) != v)
        if differ:
            raise LgnError(f"{rd} holds a run with other settings ({', '.join(differ)}); choose another --out")
    else:
        if rd.exists():
            import shutil
            shutil.rmtree(rd)   # a run cut off before its test record: start it again, same seed, same result
        t = Trainer(cfg, rd, progress=False)
        t.train()
        t.test()
    return rd


def step_cpu_ms(rd: Path, steps: int = 30, warmup: int = 5) -> float:
    """Median process CPU time (ms) of one whole training step of ``rd``'s config: data, forward, backward, AdamW.

    CPU time, not wall time, so that runs timed on a loaded, shared machine compare (one thread per run).
    Measured once on a fresh model in a scratch directory, then kept in ``rd/step_cost.json``.
    """
    import statistics
    import tempfile
    import yaml
    from lgn_fpga.train.config import TrainConfig
    from lgn_fpga.train.loop import Trainer
    p = rd / STEP_COST
    if p.is_file():
        return json.loads(p.read_text())["cpu_ms_per_step"]
    cfg = TrainConfig(**yaml.safe_load((rd / "config.yaml").read_text()))
    cfg.steps, cfg.target_acc = warmup + steps, None
    with tempfile.TemporaryDirectory() as tmp:
        t = Trainer(cfg, Path(tmp) / "r", progress=False)
        times = []
        for _ in range(warmup + steps):
            c0 = time.process_time()
            t._one_step()
            times.append(time.process_time() - c0)
    ms = 1000 * statistics.median(times[warmup:])
    atomic_write_text(p, json.dumps({"cpu_ms_per_step": ms, "steps": steps, "threads": cfg.threads}) + "\n")
    return ms


def row_of(rd: Path, target: float) -> dict:
    """One finished run directory as a table row (its config says width, seed and recipe)."""
    import yaml
    from lgn_fpga.netlist.passes import optimize
    from lgn_fpga.train.export import from_run
    cfg = yaml.safe_load((rd / "config.yaml").read_text())
    ms = read_metrics(rd)
    test = records_of(ms, "test")[-1]
    hit = time_to_target(ms, target)
    net, _ = optimize(from_run(rd))
    val = records_of(ms, "val")
    widths = cfg.get("widths") or [cfg["width"]] * cfg["layers"]
    return {"width": widths[0], "seed": cfg["seed"], "recipe": rd.name.split("-")[-2], "run": str(rd),
            "target_step": hit and hit["step"], "target_wall_s": hit and hit["wall_s"],
            "wall_s": val[-1]["wall_s"], "cpu_ms_step": step_cpu_ms(rd),
            "test_acc": test["test_acc_discrete"], "gap": test["gap"],
            "gap_paper": test.get("gap_paper"), "unused_frac": test["unused_frac"],
            "unread_frac": test.get("unread_frac"), "gates_export": net.n_gates,
            "curve": [(m["step"], m["wall_s"], m["val_acc_discrete"]) for m in val]}


def _fmt(rows: list[dict]) -> list[list[str]]:
    cpu = lambda r: r["target_step"] and r["target_step"] * r["cpu_ms_step"] / 1000
    soft = {(r["width"], r["seed"]): r for r in rows if r["recipe"] == "softmax"}
    ratio = lambda base, v: f"{base / v:.2f}x" if base and v else "-"
    out = []
    for r in rows:
        base = soft.get((r["width"], r["seed"]))
        pp = lambda v: "-" if v is None else f"{100 * v:+.2f} pp"
        pc = lambda v: "-" if v is None else f"{100 * v:.1f} %"
        out.append([r["width"], r["seed"], r["recipe"], r["target_step"] or "not reached",
                    "-" if r["target_wall_s"] is None else f"{r['target_wall_s']:.1f}",
                    ratio(base and base["target_wall_s"], r["target_wall_s"]), f"{r['wall_s']:.1f}",
                    f"{r['cpu_ms_step']:.1f}", "-" if not cpu(r) else f"{cpu(r):.1f}",
                    ratio(base and cpu(base), cpu(r)),
                    f"{100 * r['test_acc']:.2f} %", pp(r["gap"]), pp(r["gap_paper"]), pc(r["unused_frac"]),
                    pc(r["unread_frac"]), f"{r['gates_export']:,}"])
    return out


def markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in _fmt(rows)]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], a, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    widths = sorted({r["width"] for r in rows})
    fig, axes = plt.subplots(len(widths), 2, figsize=(12, 3.6 * len(widths)), squeeze=False)
    colors = {rc: f"C{i}" for i, rc in enumerate(dict.fromkeys(r["recipe"] for r in rows))}
    for wi, w in enumerate(widths):
        for r in (r for r in rows if r["width"] == w):
            s, t, acc = zip(*r["curve"])
            style = ["-", "--", ":", "-."][r["seed"] % 4]
            label = f"{r['recipe']} seed {r['seed']}"
            axes[wi][0].plot(s, [100 * v for v in acc], style, color=colors[r["recipe"]], label=label)
            axes[wi][1].plot(t, [100 * v for v in acc], style, color=colors[r["recipe"]], label=label)
        for ax, x in zip(axes[wi], ("step", "training seconds (1 thread, shared machine)")):
            ax.axhline(100 * a.target, color="grey", lw=0.8, ls=":")
            ax.set_title(f"{a.dataset} {a.depth} x {w}: validation accuracy (%, discretized)", fontsize=9)
            ax.set_xlabel(x); ax.grid(alpha=0.3); ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(path, buf.getvalue())


def main(argv=None) -> int:
    a = parse_args(argv)
    extra = parse_set(a.extra)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for w in a.widths:
        for seed in a.seeds:
            for rc in a.recipes:
                rd = run_one(a, w, seed, rc, extra)
                print(f"done {rd.name} ({time.perf_counter() - t0:.0f} s so far)", file=sys.stderr, flush=True)
    # The table is every finished run under --out, those of earlier invocations (other widths, seeds or
    # recipes) included: the run directories are the one record of the study.
    rows = {}
    for m in sorted(out.glob("*/metrics.jsonl")):
        if records_of(read_metrics(m.parent), "test"):
            r = row_of(m.parent, a.target)
            rows[r["run"]] = r
    order = {rc: i for i, rc in enumerate(dict.fromkeys([*a.recipes, *RECIPES]))}
    rows = sorted(rows.values(), key=lambda r: (r["width"], r["seed"], order.get(r["recipe"], len(order)), r["run"]))
    title = (f"{a.dataset}, {a.depth} layers, {a.thresholds} threshold(s), {a.steps} steps, eval every "
             f"{a.eval_every}, target {100 * a.target:g} % validation, {a.threads} thread(s) per run; every run "
             f"under {out}")
    table(title, HEADER, _fmt(rows))
    atomic_write_text(out / "results.jsonl", "".join(json.dumps({k: v for k, v in r.items() if k != "curve"}) + "\n"
                                                      for r in rows))
    atomic_write_text(out / "results.md", f"{title}\n\n{markdown(rows)}")
    plot(rows, a, out / "recipes.png")
    print(f"\nwrote {out / 'results.md'}, {out / 'results.jsonl'}, {out / 'recipes.png'}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except LgnError as e:
        sys.exit(f"error: {e}")
