"""``lgn-fpga report``: one short summary of a run, its netlist, simulation and bitstream."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ..fpga.report import lut_summary
from ..errors import LgnError
from ..train.metrics import read_metrics, records_of


def _json(path: Path, what: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise LgnError(f"{path} not found: {what}") from None
    except ValueError:
        raise LgnError(f"{path} is not valid JSON (damaged?); rerun the step that writes it") from None


def summarize(run=None, model=None, sim=None, build=None) -> list[tuple[str, str]]:
    """(label, text) rows for whatever stages were given."""
    import yaml
    rows = []
    if run is not None:
        run = Path(run)
        ms = read_metrics(run)
        cfg = yaml.safe_load((run / "config.yaml").read_text()) if (run / "config.yaml").is_file() else {}
        test, val = records_of(ms, "test"), records_of(ms, "val")
        if cfg:
            knobs = ("" if cfg.get("mode") == "softmax" else
                     f", noise {cfg.get('noise')}, tau {cfg.get('gumbel_tau')}, input grad {cfg.get('input_grad')}")
            rows.append(("training", f"{cfg.get('dataset')}, {cfg.get('mode')} (recipe {cfg.get('recipe')}{knobs}), "
                                     f"{cfg.get('steps')} steps"))
        if test:
            t = test[-1]
            rows.append(("accuracy", f"{100 * t['test_acc_discrete']:.2f}% on the test split (discretized network, "
                                     f"best validation checkpoint, step {t['step']})"))
            rows.append(("gap", f"{100 * t['gap']:+.2f} pp (train-mode {100 * t['test_acc_train_mode']:.2f}%)"))
            rows.append(("gates", f"{t['gates']:,} trained, {100 * t['unused_frac']:.1f}% unused, "
                                  f"{100 * t['const_frac']:.1f}% constant"))
        elif val:
            rows.append(("accuracy", f"{100 * val[-1]['val_acc_discrete']:.2f}% on validation (no test record yet)"))
    if model is not None:
        from ..netlist.format import load as load_netlist
        net = load_netlist(model)
        rows.append(("netlist", f"{model}: {net.n_gates:,} gates after optimization, {net.depth} layers, "
                                f"{net.n_inputs} input bits"))
    if sim is not None:
        s = _json(Path(sim) / "sim.json", "run the simulation first (make sim)")
        sims = ", ".join(f"{r['simulator']} {r['agree']}/{r['images']}" for r in s["simulators"])
        rows.append(("simulation", f"{'bit-exact' if s['all_ok'] else 'MISMATCH'}: {sims} (latency "
                                   f"{s['latency']} cycles)"))
    if build is not None:
        b = _json(Path(build) / "report.json", "run 'lgn-fpga build' first")
        ff = b["resources"]["ff"]
        rows.append(("bitstream", f"{b['board']} ({b['device']}): {lut_summary(b)}, {ff['used']:,} FFs, Fmax {b['fmax_mhz']} MHz at a "
                                  f"{b['clock_mhz']} MHz clock ({'met' if b['timing_met'] else 'NOT MET'}), latency "
                                  f"{b['latency_cycles']} cycles"))
        rows.append(("throughput", f"{b['images_per_s_at_clock']:,} images/s in the fabric, "
                                   f"{b['images_per_s_uart']:,} images/s over UART at {b['baud']:,} baud"))
    return rows


@click.command()
@click.argument("run", required=False, type=click.Path())
@click.option("--model", type=click.Path(), help="Netlist (.lgn) exported from the run.")
@click.option("--sim", "sim_dir", type=click.Path(), help="Simulation build folder holding sim.json.")
@click.option("--build", "build_dir", type=click.Path(), help="Build folder holding report.json.")
def report(run, model, sim_dir, build_dir):
    """Summarize RUN and, when given, its netlist, simulation and bitstream (the end of `make demo`)."""
    if not any((run, model, sim_dir, build_dir)):
        raise LgnError("give a run directory and/or --model, --sim, --build")
    rows = summarize(run, model, sim_dir, build_dir)
    width = max(len(k) for k, _ in rows)
    click.echo("summary")
    for k, v in rows:
        click.echo(f"  {k:<{width}}  {v}")
