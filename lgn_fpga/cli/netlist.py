"""``lgn-fpga export``, ``eval`` and ``stats``: the netlist commands (no torch unless a run is read)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import click

from ..errors import LgnError

_BACKENDS = ("auto", "c", "numpy", "reference")


def _is_run(path: str) -> bool:
    p = Path(path)
    return p.is_dir() or p.suffix == ".pt"


def is_netlist(path) -> bool:
    """``path`` names a netlist: a ``.lgn`` name, or a file that starts with the ``.lgn`` magic bytes."""
    from ..netlist.format import MAGIC, SUFFIX
    p = Path(path)
    if p.suffix == SUFFIX:
        return True
    try:
        with open(p, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def echo_optimization_note(net, name) -> None:
    from ..netlist.passes import optimization_note
    note = optimization_note(net, name)
    if note:
        click.echo(note, err=True)


def _from_run(path: str):
    from ..train.export import from_run
    return from_run(path)


def _load_model(path: str, optimize: bool = True):
    """A netlist from a ``.lgn`` file, or extracted (and optimized) from a run directory / checkpoint."""
    from ..netlist.format import load
    if _is_run(path):
        net = _from_run(path)
        if optimize:
            from ..netlist.passes import optimize as run_passes
            net, _ = run_passes(net)
        return net
    return load(path)


def _pass_table(steps, stages: int) -> str:
    from ..netlist.analysis import analyze
    from ..hdl.plan import register_counts
    from ..netlist.stats import estimate_resources
    head = (f"{'step':<24} {'gates':>8} {'removed':>8} {'unused':>7} {'carry regs':>10} {'FF':>8} "
            f"{'iCE40 LUT4':>10} {'ECP5 LUT4':>10}")
    lines = [head, "-" * len(head)]
    prev = None
    for label, net in steps:
        an = analyze(net)
        regs = register_counts(net, stages)
        ice, ecp = (estimate_resources(net, f, stages) for f in ("ice40", "ecp5"))
        removed = "" if prev is None else f"{prev - net.n_gates:d}"
        lines.append(f"{label:<24} {net.n_gates:>8} {removed:>8} {int((~an.gate_live).sum()):>7} "
                     f"{regs['carry']:>10} {ice['ff']:>8} {ice['lut']:>10} {ecp['lut']:>10}")
        prev = net.n_gates
    return "\n".join(lines)


@click.command()
@click.argument("run", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Netlist file to write (.lgn).")
@click.option("--no-optimize", is_flag=True, help="Keep the raw network: the argmax gate of every neuron "
              "(for a .lgn input: copy it as it is).")
@click.option("--stages", type=click.IntRange(min=1), default=1, show_default=True,
              help="Layers per register stage, for the carry-register and resource columns (and --relevel).")
@click.option("--relevel", is_flag=True,
              help="Also move gates between layers where that saves pipeline registers at --stages.")
def export(run, output, no_optimize, stages, relevel):
    """Turn a trained RUN (run directory or .pt checkpoint) or a netlist (.lgn) into a netlist file.

    Every neuron becomes its argmax gate; then, unless --no-optimize, the passes
    (constant propagation, wire folding, duplicate merging, dead-gate removal)
    run to a fixed point.  A table shows what each pass removed.  Given a .lgn
    (a raw export, an imported model), the passes run on it the same way.
    """
    from ..netlist.format import load, save
    from ..netlist.passes import optimize
    from ..netlist.passes import relevel as relevel_pass
    t0 = time.perf_counter()
    given = is_netlist(run) and not Path(run).is_dir()
    net = load(run) if given else _from_run(run)
    steps = [("input" if given else "raw", net)]
    if not no_optimize:
        net, more = optimize(net)
        steps += more
    if relevel:
        moved = relevel_pass(net, stages)
        if moved is not net:
            moved.meta["passes"] = list(moved.meta.get("passes", [])) + [f"relevel(stages={stages})"]
            net = moved
            steps.append((f"relevel (stages={stages})", net))
    click.echo(_pass_table(steps, stages))
    path = save(net, output)
    click.echo(f"wrote {path} ({path.stat().st_size:,} bytes, {net.n_gates:,} gates, hash "
               f"{net.content_hash()[:16]}) in {time.perf_counter() - t0:.1f} s")


def describe_netlist(path) -> None:
    """``lgn-fpga info X.lgn``: what the netlist is, where it came from, and whether it is optimized."""
    from ..netlist.format import load, read_header
    from ..netlist.passes import optimization_note
    from ..netlist.stats import format_summary, summarize
    net, header = load(path), read_header(path)
    meta = net.meta
    click.echo(f"netlist      {path} ({Path(path).stat().st_size:,} bytes, written by {header.get('writer', 'an older lgn-fpga')})")
    origin = ", ".join(f"{k} {meta[k]}" for k in ("dataset", "source", "step", "mode", "recipe", "imported_from")
                       if meta.get(k) is not None)
    click.echo(f"origin       {origin or '(not recorded)'}")
    passes = meta.get("passes")
    note = optimization_note(net, path)
    click.echo(f"optimized    {'no' if note else 'yes'}"
               f"{'; passes run: ' + ', '.join(passes) if passes else ''}"
               f"{'; ' + note.split(': ', 1)[1] if note else ''}")
    click.echo(format_summary(summarize(net, 1)))


def _split(dataset: str, split: str, data_dir, limit):
    from ..data.datasets import load
    bundle = load(dataset, data_dir)
    s = bundle.split(split)
    if limit is not None:
        s = s.head(limit)
    if len(s) == 0:
        raise LgnError(f"the {split} split of {dataset} holds no images; choose another --split")
    return bundle, s


@click.command("eval")
@click.argument("model", type=click.Path())
@click.option("--dataset", help="Dataset name (default: the one recorded in the netlist).")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True)
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate only the first N images.")
@click.option("--backend", type=click.Choice(_BACKENDS), default="auto", show_default=True,
              help="Evaluator: c (compiled, fastest), numpy (bit-parallel), reference (slow, simplest).")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Dataset folder (default: $LGN_FPGA_DATA).")
@click.option("--no-optimize", is_flag=True, help="For a run directory: evaluate the raw extracted netlist.")
def eval_cmd(model, dataset, split, limit, backend, data_dir, no_optimize):
    """Accuracy and speed of a netlist MODEL (.lgn file, or a run directory extracted in memory)."""
    from ..netlist import evaluate
    net = _load_model(model, optimize=not no_optimize)
    dataset = dataset or net.meta.get("dataset")
    if not dataset:
        raise LgnError(f"{model} does not record its dataset; pass --dataset")
    bundle, s = _split(dataset, split, data_dir, limit)
    if tuple(bundle.shape) != tuple(net.encoding.shape):
        raise LgnError(f"{dataset} images are {'x'.join(map(str, bundle.shape))} but {model} takes "
                       f"{'x'.join(map(str, net.encoding.shape))}; pick the dataset the model was trained on")
    kind = evaluate.resolve_backend(backend, net, len(s))
    compile_s = None
    if kind == "c":
        from ..netlist import cbackend
        try:
            cn = cbackend.compile_netlist(net)
            compile_s = cn.compile_seconds
        except LgnError as e:
            if backend == "c":
                raise
            click.echo(f"note: C backend unavailable ({e}); using numpy", err=True)
            kind = "numpy"
    t0 = time.perf_counter()
    pred = evaluate.predict(net, s.images, backend=kind)
    dt = time.perf_counter() - t0
    acc = float((pred == s.labels).mean())
    extra = f"; compiled in {compile_s:.1f} s" if compile_s else ""
    click.echo(f"{dataset} {split}: {len(s):,} images, accuracy {100 * acc:.2f}% "
               f"({int((pred == s.labels).sum()):,} correct)")
    click.echo(f"{kind} backend: {len(s) / max(dt, 1e-9):,.0f} images/s ({dt:.3f} s, one thread{extra})")


@click.command()
@click.argument("model", type=click.Path())
@click.option("--stages", type=click.IntRange(min=1), default=1, show_default=True,
              help="Layers per register stage (pipeline registers and resource estimates).")
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
@click.option("--no-optimize", is_flag=True, help="For a run directory: statistics of the raw extracted netlist.")
def stats(model, stages, as_json, no_optimize):
    """Gates by op, depth, fan-out, carry registers and iCE40 / ECP5 estimates of a netlist MODEL."""
    from ..netlist.stats import format_summary, summarize
    net = _load_model(model, optimize=not no_optimize)
    s = summarize(net, stages)
    click.echo(json.dumps(s, indent=1) if as_json else format_summary(s))


@click.group("import")
def import_cmd():
    """Bring a model trained elsewhere in as a netlist (.lgn)."""


@import_cmd.command("difflogic")
@click.argument("ckpt", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Netlist file to write (.lgn).")
@click.option("-d", "--dataset", default="mnist", show_default=True,
              help="The dataset it was trained on: image shape, class names, and the default of eval/stream.")
@click.option("--thresholds", type=click.IntRange(1, 255),
              help="difflogic's binarization x > (i+1)/(k+1) with k thresholds (its CIFAR-10 setting); "
                   "default: x.round() (its MNIST setting).")
@click.option("--seed", type=int, help="For a state_dict: the torch.manual_seed the model was built after.")
@click.option("--connections", default="random", show_default=True,
              help="For a state_dict: difflogic's connections= (random or unique) of every layer, or one per layer "
                   "separated by commas (random,unique,random).")
@click.option("--built-on", type=click.Choice(["cuda", "cpu"]), default="cuda", show_default=True,
              help="For a state_dict: the device= the model was built with (where its weights were drawn).")
@click.option("--no-optimize", is_flag=True, help="Keep the raw network (the argmax gate of every neuron).")
def import_difflogic(ckpt, output, dataset, thresholds, seed, connections, built_on, no_optimize):
    """A difflogic model CKPT (pickled module or state_dict) -> netlist.

    \b
    Every neuron becomes its argmax gate, GroupSum's contiguous blocks the
    classes, the input binarization integer thresholds; then the passes run
    (unless --no-optimize).  It says where the wiring came from: the pickled
    module, or regenerated from --seed with difflogic's connection code.
    """
    from ..data.datasets import SHAPES, class_names
    from ..netlist.format import save
    from ..netlist.passes import optimize
    from ..train.difflogic import difflogic_encoding, read_difflogic, to_netlist
    classes = class_names(dataset)
    enc, perm = difflogic_encoding(SHAPES[dataset], thresholds or "round")
    kinds = connections.split(",")
    if any(k not in ("random", "unique") for k in kinds):
        raise click.BadParameter(f"must be random or unique, or a comma-separated list of them, not {connections!r}",
                                 param_hint="'--connections'")
    model = read_difflogic(ckpt, in_dim=enc.n_bits, seed=seed, connections=kinds if len(kinds) > 1 else kinds[0],
                           built_on=built_on)
    if model.k is not None and model.k != len(classes):
        raise LgnError(f"{ckpt}: GroupSum has k={model.k} classes, {dataset} has {len(classes)}; pass --dataset")
    net = to_netlist(model, enc, perm, len(classes), classes,
                     meta={"dataset": dataset, "imported_from": f"difflogic {Path(ckpt).name}",
                           "wiring": model.wiring, "binarization": f"{thresholds} thresholds" if thresholds
                           else "round"})
    click.echo(f"{ckpt}: {len(model.widths)} difflogic layers {model.widths}, wiring {model.wiring}")
    click.echo(f"input: {enc.n_bits} bits, thresholds {list(enc.thresholds[0])} (bit = byte > threshold)")
    raw = net.n_gates
    if not no_optimize:
        net, _ = optimize(net)
    path = save(net, output)
    click.echo(f"wrote {path}: {raw:,} gates imported, {net.n_gates:,} after the passes, hash "
               f"{net.content_hash()[:16]}")
