"""``lgn-fpga train``, ``info`` and ``plot``."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from ..errors import CheckpointError, ConfigError
from ..train.config import SCHEDULES, parse_set

_OVERRIDES = [
    # (option, config key, type, help)
    ("--mode", "mode", click.Choice(["gumbel-ste", "softmax"]), "Training mode (default: gumbel-ste)."),
    ("--recipe", "recipe", click.Choice(["seed", "scaled", "noiseless", "softmax"]),
     "Named preset of the method's knobs: seed = the paper exactly (noise 1, input grads through the sampled "
     "gate); scaled = noise 0.1, soft input grads (default); noiseless = noise 0; softmax = difflogic."),
    ("--steps", "steps", int, "Training steps (default 3000); with --resume, a longer total for the run."),
    ("--epochs", "epochs", float, "Train for this many epochs instead of --steps."),
    ("--batch-size", "batch_size", int, "Batch size (default 128)."),
    ("--lr", "lr", float, "AdamW learning rate (default 0.01); with --lr-schedule, the first step's."),
    ("--lr-final", "lr_final", float, "End value of the learning-rate schedule."),
    ("--lr-schedule", "lr_schedule", click.Choice(SCHEDULES),
     "Learning-rate schedule from --lr to --lr-final over the run's steps (default constant)."),
    ("--weight-decay", "weight_decay", float, "AdamW weight decay (default 0)."),
    ("--layers", "layers", int, "Number of logic layers."),
    ("--width", "width", int, "Neurons per layer."),
    ("--thresholds", "thresholds", int, "Thermometer thresholds per channel (1, 3, 7, 15, 31, ...)."),
    ("--group-tau", "group_tau", float, "GroupSum temperature."),
    ("--noise", "noise", float, "Gumbel noise scale (the paper: 1.0)."),
    ("--noise-final", "noise_final", float, "End value of the noise schedule."),
    ("--noise-schedule", "noise_schedule", click.Choice(SCHEDULES), "Noise schedule."),
    ("--gumbel-tau", "gumbel_tau", float, "Temperature of the surrogate softmax gradient."),
    ("--input-grad", "input_grad", click.Choice(["hard", "soft"]),
     "Input gradients through the sampled gate (hard, the paper) or the softmax mixture (soft)."),
    ("--connections", "connections", click.Choice(["random", "unique", "local"]),
     "Wiring scheme: random (difflogic), unique (no repeated pairs) or local (each gate reads a patch of the "
     "previous layer: routes on an FPGA at scale, docs/wiring.md)."),
    ("--window", "window", int, "Patch size (odd, in pixels) of local wiring (default 5)."),
    ("--candidates", "candidates", int, "Learned connections: each gate input chooses among this many signals "
     "drawn by the wiring scheme (default 1: fixed wiring; docs/wiring.md)."),
    ("--flip/--no-flip", "flip", None, "Augmentation: mirror each training image left-right with probability 1/2 "
     "(natural images such as CIFAR-10, not digits)."),
    ("--shift", "shift", int, "Augmentation: translate each training image by up to this many pixels (0 fill)."),
    ("--init", "init", click.Choice(["normal", "residual"]), "Logit initialization."),
    ("--seed", "seed", int, "Seed of wiring, initialization, data order and noise."),
    ("--eval-every", "eval_every", int, "Steps between validation evaluations and checkpoints."),
    ("--target-acc", "target_acc", float, "Validation accuracy (a fraction, e.g. 0.9) whose first step and training "
     "time are logged (`info`, `plot`)."),
    ("--val-size", "val_size", float, "Validation images (>=1) or fraction (<1) carved from the training set."),
    ("--kernel", "kernel", click.Choice(["auto", "reference", "cpu", "triton"]),
     "Layer kernel: auto = triton on a GPU, C on a CPU, else reference."),
    ("--device", "device", str, "auto, cpu or cuda[:N]."),
    ("--threads", "threads", int, "CPU threads (torch and the C kernel)."),
]


# Options that describe the network: given any of them, `train DATASET` does not pick configs/DATASET.yaml.
_ARCH_KEYS = {"layers", "width", "widths", "connections", "window", "thresholds"}   # --candidates keeps the config


def _add_overrides(f):
    for opt, key, typ, hlp in reversed(_OVERRIDES):
        f = click.option(opt, key, type=typ, default=None, help=hlp)(f)
    return f


def _flag(key: str) -> str:
    """The option of a config key (``lr_final`` -> ``--lr-final``)."""
    return f"--{key.replace('_', '-')}"


def _shape(widths, joiner: str) -> str:
    """Layer widths as ``4 x 8000``, or each one when they differ."""
    return f"{len(widths)} x {widths[0]}" if len(set(widths)) == 1 else joiner.join(map(str, widths))


def _default_run_dir(cfg) -> Path:
    return Path("runs") / f"{cfg.dataset}-{cfg.recipe or cfg.mode}-{time.strftime('%Y%m%d-%H%M%S')}"


@click.command()
@click.argument("dataset", required=False)
@click.option("-c", "--config", "config_path", help="Recipe YAML: a path or a name in lgn_fpga/configs/ (e.g. digits-tiny).")
@_add_overrides
@click.option("--set", "set_pairs", multiple=True, metavar="KEY=VALUE", help="Override any config key (repeatable).")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Dataset folder (default: $LGN_FPGA_DATA, "
              "then ~/.cache/lgn-fpga/data; missing data is downloaded there).")
@click.option("-o", "--run-dir", type=click.Path(file_okay=False), help="Run directory (default runs/<dataset>-<recipe>-<time>).")
@click.option("--resume", is_flag=True, help="Continue the run in --run-dir exactly where it stopped "
              "(--steps may raise its total).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--board", help="Size the network for this board (e.g. ulx3s, icebreaker): the gates per layer that "
              "its fit estimate says will fit and route; the rest of the recipe as without it.")
@click.option("--nproc", type=int, default=1, show_default=True,
              help="Train on N processes of this machine (torch.distributed DDP: gloo on CPUs, NCCL on N GPUs); "
                   "--batch-size is the global batch, split between them.")
def train(dataset, config_path, set_pairs, data_dir, run_dir, resume, quiet, board, nproc, **overrides):
    """Train a logic gate network on DATASET (digits, mnist, fashion-mnist, cifar10;
    default: the --config file's dataset, else digits).

    Without --config and without architecture options (--layers, --width, --thresholds, --connections,
    --window), configs/DATASET.yaml is used when it exists: `lgn-fpga train cifar10` and `lgn-fpga train
    mnist` train networks sized for the ULX3S-85F with wiring that routes there.

    Writes a run directory with the resolved config, metrics.jsonl, checkpoint.pt (latest, for --resume)
    and best.pt (best validation accuracy of the discretized network). Validation accuracy is printed
    during training; the test split is evaluated once, at the end. Ctrl-C (or SIGTERM) finishes the
    current step, saves a checkpoint and stops; --resume then continues bit for bit.

    \b
    Examples:
      lgn-fpga train digits --config digits-tiny
      lgn-fpga train mnist --config mnist-s --mode softmax --steps 2000
      lgn-fpga train cifar10 --config cifar10-s --recipe seed
      lgn-fpga train --resume -o runs/mnist-scaled-20261128-101500 --steps 10000
      lgn-fpga train mnist --config mnist-s --nproc 4 --batch-size 512
      lgn-fpga train mnist --board ulx3s-25f
    """
    from ..train.config import load_yaml, resolve_config

    cli = {k: v for k, v in overrides.items() if v is not None}
    set_keys = parse_set(set_pairs)
    arch = sorted(_ARCH_KEYS & (set(cli) | set(set_keys)))
    if config_path is None and dataset and not resume:
        from ..train.config import CONFIG_DIR
        if (CONFIG_DIR / f"{dataset}.yaml").is_file():
            # `lgn-fpga train cifar10` with no --config and no architecture: the dataset's own config, sized
            # for a board.  Given an architecture, the plain defaults apply (as they always did): say so.
            if not arch:
                config_path = dataset
                click.echo(f"config: {CONFIG_DIR / (dataset + '.yaml')} (the default for {dataset}; "
                           f"--config to choose another)", err=True)
            else:
                named = ", ".join(map(_flag, arch))
                click.echo(f"config: the plain defaults ({named} given), not {dataset}'s own; "
                           f"--config {dataset} starts from lgn_fpga/configs/{dataset}.yaml", err=True)
    ydict = load_yaml(config_path) if config_path else {}
    cli.update(set_keys)
    if dataset:
        cli["dataset"] = dataset
    if data_dir:
        cli["data_dir"] = data_dir
    if resume:
        if not run_dir:
            raise ConfigError("--resume needs --run-dir/-o RUN (the run to continue)")
        extra = sorted(k for k in cli if k != "steps") + (["--config"] if config_path else [])
        if extra:
            named = ", ".join(k if k.startswith("-") else "DATASET" if k == "dataset" else _flag(k) for k in extra)
            raise ConfigError(f"--resume continues {run_dir} with its saved config; only --steps may change "
                              f"(drop {named}, or start a new run without --resume)")
        cfg = resolve_config({}, {k: v for k, v in cli.items() if k == "steps"})
        if "steps" not in cli:
            cfg.steps = 0
    else:
        cfg = resolve_config(ydict, cli, source=str(config_path or "config"))
        if "window" in cli and cfg.connections != "local":
            raise ConfigError(f"--window applies to local wiring only, and this run's is {cfg.connections} "
                              f"(add --connections local)")
        if board:
            cfg = _size_for_board(board, ydict, cli, config_path, cfg)
    rd = Path(run_dir) if run_dir else _default_run_dir(cfg)
    if nproc < 1:
        raise ConfigError(f"--nproc must be at least 1, not {nproc}")
    if nproc == 1:
        _run(cfg, rd, resume, quiet)
        return
    if not resume and cfg.batch_size % nproc:
        raise ConfigError(f"the batch size ({cfg.batch_size}) must be a multiple of the {nproc} processes")
    from ..train.distributed import spawn
    try:
        spawn(nproc, cfg.device, _run, cfg, rd, resume, quiet)
    except KeyboardInterrupt:
        click.echo(f"interrupted; checkpoint saved. Continue with: lgn-fpga train --resume -o {rd} --nproc {nproc}",
                   err=True)
        sys.exit(130)


def _run(cfg, rd: Path, resume: bool, quiet: bool) -> None:
    """Train, test and report one run: in this process, or as one process of a group (rank 0 reports)."""
    from ..train.loop import Trainer
    t = Trainer(cfg, rd, resume=resume, progress=not quiet)
    c = t.cfg
    if not resume:
        going = ""
    elif t.step >= c.steps:
        going = f", already at its last step {t.step}: nothing left to train"
    else:
        going = (f", resuming at step {t.step} of {c.steps}"
                 + (f" (lengthened from {t.steps_before} steps)" if t.steps_before else ""))
    if t.rank == 0:
        click.echo(f"run {rd}: {c.dataset}, {c.mode} (recipe {c.recipe}), {_shape(c.widths_list(), ' + ')} gates, {t.enc.n_bits} input bits, kernel {t.backend} on {t.device}"
                   + (f" x {t.world} processes" if t.world > 1 else "") + going, err=True)
    try:
        t.train()
    except KeyboardInterrupt:
        if t.world > 1:
            raise
        if t.saved_step is None:
            click.echo(f"interrupted at step {t.step}, before the first checkpoint: nothing to resume", err=True)
        else:
            kept = ("saved" if t.saved_step == t.step else "kept (stopped inside a step: the steps after it "
                    "are trained again)")
            click.echo(f"interrupted at step {t.step}; checkpoint at step {t.saved_step} {kept}. Continue with: "
                       f"lgn-fpga train --resume -o {rd}", err=True)
        sys.exit(130)
    if t.rank != 0:
        return
    rec = t.test()
    click.echo(f"test accuracy {100 * rec['test_acc_discrete']:.2f}% (discretized, best val checkpoint at step "
               f"{rec['step']}), train-mode {100 * rec['test_acc_train_mode']:.2f}%, gap "
               f"{100 * rec['gap']:+.2f} pp, unused gates {100 * rec['unused_frac']:.1f}%, constant gates "
               f"{100 * rec['const_frac']:.1f}%, {rec['gates']} gates, {t.elapsed:.0f} s training")
    click.echo(f"run directory: {rd}")


def _size_for_board(board_name, ydict, cli, config_path, cfg):
    """``cfg`` with the gates per layer that ``board_name`` holds (:mod:`lgn_fpga.fpga.fit`); ``cli`` holds the
    command line's keys, ``--set`` ones included."""
    from ..data.datasets import SHAPES, class_names
    from ..data.encoding import ThermometerEncoding
    from ..fpga.boards import load_board
    from ..fpga.fit import (ROUTABLE_FILL, budget_unit, lut_budget, scaled_group_tau, size_width, size_widths,
                            trained_lut_cost)
    from ..train.config import resolve_config
    given = sorted({"width", "widths"} & set(cli))
    if given:
        raise ConfigError(f"--board sizes the network's width: drop --{given[0]} (or --board)")
    board = load_board(board_name)
    shape = cfg.widths_list()
    layers = len(shape)
    n_classes = len(class_names(cfg.dataset))          # known without reading the data (training reads it)
    input_bits = ThermometerEncoding.make(SHAPES[cfg.dataset], cfg.thresholds).n_bits
    def fill(widths):
        return (f"about {trained_lut_cost(board.family, widths):,.0f} of the {lut_budget(board, input_bits):,} "
                f"{budget_unit(board.family)} "
                f"that route, {100 * ROUTABLE_FILL[board.family]:.0f} % of {board.budget['lut']:,} less the I/O; "
                f"lgn_fpga/fpga/fit.py")
    # A uniform recipe stays uniform (width, layers); another keeps its shape, scaled (widths).  The GroupSum
    # temperature follows the last layer's width (fit.scaled_group_tau) unless --group-tau is given.
    uniform = len(set(shape)) == 1
    widths = ([size_width(board, layers, n_classes, input_bits)] * layers if uniform
              else size_widths(board, shape, n_classes, input_bits))
    tau = cfg.group_tau if "group_tau" in cli else scaled_group_tau(cfg.group_tau, shape[-1], widths[-1])
    if uniform:
        base, keys = {k: v for k, v in ydict.items() if k != "widths"}, {"width": widths[0], "layers": layers}
        what = f"{layers} x {widths[0]:,} gates ({sum(widths):,} trained"
    else:
        base, keys = ydict, {"widths": widths}
        what = f"{' + '.join(f'{w:,}' for w in widths)} gates ({sum(widths):,} trained, the config's shape"
    sized = resolve_config(base, {**cli, **keys, "group_tau": tau}, source=str(config_path or "config"))
    click.echo(f"sized for {board.name}: {what}; group tau {tau:.3g}; {fill(widths)})", err=True)
    return sized


@click.command()
@click.argument("run", type=click.Path())
def info(run):
    """Summarize a run directory (config, progress, best validation and test accuracy, gate usage) or a .lgn
    netlist (origin, size, whether the passes ran)."""
    from .netlist import describe_netlist, is_netlist
    if is_netlist(run) and not Path(run).is_dir():
        return describe_netlist(run)
    from ..train.checkpoint import load_checkpoint
    from ..train.metrics import read_metrics, records_of, time_to_target
    run = Path(run)
    st = load_checkpoint(run, "checkpoint.pt")
    cfg = st["config"]
    ms = read_metrics(run, required=False)
    val, test = records_of(ms, "val"), records_of(ms, "test")
    widths = cfg.get("widths") or [cfg["width"]] * cfg["layers"]
    click.echo(f"run          {run}")
    click.echo(f"dataset      {cfg['dataset']} ({len(st['classes'])} classes), thresholds {cfg['thresholds']}")
    click.echo(f"network      {_shape(widths, ' - ')} = {sum(widths)} gates, {cfg['connections']} wiring"
               f"{' (window ' + str(cfg.get('window')) + ')' if cfg['connections'] == 'local' else ''}"
               f"{', learned among ' + str(cfg.get('candidates')) + ' candidates' if cfg.get('candidates', 1) > 1 else ''}, "
               f"{cfg['init']} init, group tau {cfg['group_tau']}")
    knobs = "" if cfg["mode"] == "softmax" else (f": noise {cfg['noise']} ({cfg['noise_schedule']}), gumbel tau "
                                                  f"{cfg['gumbel_tau']}, input grad {cfg['input_grad']}")
    click.echo(f"method       {cfg['mode']} (recipe {cfg['recipe']}){knobs}")
    lr = (f"{cfg['lr']}" if cfg.get("lr_schedule", "constant") == "constant"
          else f"{cfg['lr']} -> {cfg['lr_final']} ({cfg['lr_schedule']})")
    click.echo(f"optimizer    AdamW lr {lr}, batch {cfg['batch_size']}, seed {cfg['seed']}")
    aug = [w for w, on in (("left-right flips", cfg.get("flip")),
                           (f"shifts up to {cfg.get('shift')} px", cfg.get("shift"))) if on]
    click.echo(f"augmentation {', '.join(aug) if aug else 'none'}")
    click.echo(f"progress     step {st['step']} / {cfg['steps']}, {st.get('elapsed', 0):.0f} s training")
    if val:
        b = max(val, key=lambda m: m["val_acc_discrete"])
        l = val[-1]
        click.echo(f"validation   best {100 * b['val_acc_discrete']:.2f}% at step {b['step']}; last: "
                   f"{100 * l['val_acc_discrete']:.2f}% discretized, {100 * l['val_acc_train_mode']:.2f}% train-mode, "
                   f"gap {100 * l['gap']:+.2f} pp, unused {100 * l['unused_frac']:.1f}%, const {100 * l['const_frac']:.1f}%")
        if "gap_paper" in l:  # runs made before these metrics lack them
            click.echo(f"paper-style  last: train-mode {100 * l['val_acc_train_mode_paper']:.2f}% (a draw per batch), "
                       f"gap {100 * l['gap_paper']:+.2f} pp, unread gates {100 * l['unread_frac']:.1f}%")
    if cfg.get("target_acc") is not None:
        hit = time_to_target(val, cfg["target_acc"])
        click.echo(f"target       {100 * cfg['target_acc']:.2f}% validation: " + (
            f"reached at step {hit['step']} ({hit['wall_s']:.1f} s training)" if hit else "not reached"))
    if test:
        t = test[-1]
        click.echo(f"test         {100 * t['test_acc_discrete']:.2f}% discretized (step {t['step']}), gap "
                   f"{100 * t['gap']:+.2f} pp" + (f", paper-style gap {100 * t['gap_paper']:+.2f} pp, unread "
                                                  f"{100 * t['unread_frac']:.1f}%" if "gap_paper" in t else ""))
    code = st.get("code", {})
    click.echo(f"code         lgn_fpga {code.get('lgn_fpga')} {code.get('git_commit', '')}".rstrip())


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", default="curves.png", show_default=True, help="PNG file to write.")
def plot(runs, output):
    """Plot validation curves of one or more runs side by side (accuracy, gap, unused gates).

    Dotted: the paper-style gap and the unread gates (docs/method.md); a dot marks where a run with
    target_acc first reached it."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ..fileio import atomic_write_bytes
    from ..train.metrics import read_metrics, records_of, time_to_target
    import io
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    targets = set()
    for r in runs:
        ms = records_of(read_metrics(r), "val")
        if not ms:
            raise CheckpointError(f"{r} has no validation records yet")
        s = [m["step"] for m in ms]
        label = Path(r).name
        line, = axes[0].plot(s, [100 * m["val_acc_discrete"] for m in ms], label=f"{label} discretized")
        axes[0].plot(s, [100 * m["val_acc_train_mode"] for m in ms], "--", color=line.get_color(),
                     label=f"{label} train-mode")
        axes[1].plot(s, [100 * m["gap"] for m in ms], color=line.get_color(), label=label)
        axes[2].plot(s, [100 * m["unused_frac"] for m in ms], color=line.get_color(), label=f"{label} unused")
        paper = [m for m in ms if "gap_paper" in m]   # runs made before these metrics lack them
        if paper:
            ps = [m["step"] for m in paper]
            axes[1].plot(ps, [100 * m["gap_paper"] for m in paper], ":", color=line.get_color(),
                         label=f"{label} paper-style")
            axes[2].plot(ps, [100 * m["unread_frac"] for m in paper], ":", color=line.get_color(),
                         label=f"{label} unread")
        target = ms[-1].get("target_acc")
        if target is not None:
            targets.add(target)
            hit = time_to_target(ms, target)
            if hit:
                axes[0].plot([hit["step"]], [100 * target], "o", color=line.get_color())
    for t in sorted(targets):
        axes[0].axhline(100 * t, color="grey", lw=0.8, ls=":")
    for ax, t in zip(axes, ["validation accuracy (%); o = target reached", "discretization gap (pp)",
                            "unused (solid) / unread (dotted) gates (%)"]):
        ax.set_title(t); ax.set_xlabel("step"); ax.grid(alpha=0.3); ax.legend(fontsize=7)
    buf = io.BytesIO()
    fig.tight_layout(); fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(output, buf.getvalue())
    click.echo(f"wrote {output}")
