"""``python -m lgn_fpga.sim MODEL``: the hardware classifies a data set exactly as the software does.

::

    python -m lgn_fpga.sim model.lgn [--dataset digits] [--split test] [--limit N]
                            [--sim verilator --sim icarus --sim amaranth] [--stages K]

MODEL is a ``.lgn`` netlist, or ``random:GATES`` for a random netlist shaped
for the data set (MNIST-sized agreement and speed checks before a trained
model exists).  The design simulated is the byte-input classifier
(:class:`~lgn_fpga.hdl.core.ImageClassifier`: binarizer + core), exported to
Verilog exactly as ``lgn-fpga hdl --inputs bytes`` writes it.

Every simulator streams the images back to back (checking the fixed latency
and one image per clock), then a subset with random valid gaps and ready
back-pressure; every class is compared with
:func:`lgn_fpga.netlist.evaluate.predict`.  One line per simulator, and the
last line is the verdict, e.g.::

    10000/10000 images agree; hardware accuracy 97.12% = software 97.12%

Exit status 0 when every simulator agreed on every image, 1 otherwise, 2 on a
usage error.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from lgn_fpga.protocol import DEFAULT_WIRE, WIRE_FORMATS

ROOT = Path(__file__).resolve().parents[2]   # the checkout, when run from one (its ../shared/data)
SIMS = ("verilator", "icarus", "amaranth")
_SHAPE_TO_DATASET = {(1, 8, 8): "digits", (1, 28, 28): "mnist", (3, 32, 32): "cifar10"}


def _default_data_dir():
    shared = ROOT.parent / "shared" / "data"
    if "LGN_FPGA_DATA" not in os.environ and shared.is_dir():
        os.environ["LGN_FPGA_DATA"] = str(shared)


def random_model(spec: str, dataset: str, seed: int = 0):
    """``random:GATES[:LAYERS]``: a random netlist for ``dataset``'s image shape (3 thresholds)."""
    from lgn_fpga.data.datasets import load
    from lgn_fpga.errors import LgnError
    from lgn_fpga.netlist.random import random_netlist

    parts = spec.split(":")
    try:
        gates = int(parts[1])
        layers = int(parts[2]) if len(parts) > 2 else 4
    except (IndexError, ValueError):
        raise LgnError(f"random model must be written random:GATES[:LAYERS], not {spec!r}") from None
    data = load(dataset, val_size=0)
    k = len(data.classes)
    width = max(k, gates // layers // k * k)
    rng = np.random.default_rng(seed)
    net = random_netlist(rng, shape=data.shape, thresholds=3, widths=(width,) * layers, n_classes=k,
                         skip_prob=0.1, bias=True)
    net.meta["dataset"] = dataset
    return net


def load_model(model: str, dataset: str | None, seed: int = 0):
    if model.startswith("random:"):
        return random_model(model, dataset or "mnist", seed)
    from lgn_fpga.netlist.format import load
    return load(model)


def pick_dataset(net, dataset: str | None) -> str:
    from lgn_fpga.errors import LgnError
    if dataset:
        return dataset
    meta = net.meta.get("dataset") if isinstance(net.meta, dict) else None
    if isinstance(meta, str):
        return meta
    if isinstance(meta, dict) and isinstance(meta.get("name"), str):
        return meta["name"]
    guess = _SHAPE_TO_DATASET.get(tuple(net.encoding.shape))
    if guess is None:
        raise LgnError(f"cannot tell the data set of a {net.encoding.shape} netlist: pass --dataset")
    return guess


def available_sims() -> list[str]:
    from .icarus import have_icarus
    from .verilator import verilator_path
    out = []
    if verilator_path():
        out.append("verilator")
    if have_icarus():
        out.append("icarus")
    out.append("amaranth")
    return out


def agreement_line(hw: np.ndarray, sw: np.ndarray, labels: np.ndarray) -> tuple[str, bool]:
    """The verdict line: images agreeing, hardware accuracy vs software accuracy."""
    n = len(sw)
    agree = int((hw == sw).sum())
    acc_hw = 100.0 * float((hw == labels).mean()) if n else 0.0
    acc_sw = 100.0 * float((sw == labels).mean()) if n else 0.0
    ok = agree == n
    rel = "=" if ok and f"{acc_hw:.2f}" == f"{acc_sw:.2f}" else "!="
    return f"{agree}/{n} images agree; hardware accuracy {acc_hw:.2f}% {rel} software {acc_sw:.2f}%", ok


def simulate(sim: str, net, images: np.ndarray, expected: np.ndarray, build: Path, *, stages: int,
             popcount_levels: int | None, limit: int | None, stall_images: int, seed: int, verilog: Path,
             info: dict, verilator_opt: str = "-O0", log=print, count_tables=(0, 12, 2), wire: str = "bytes"):
    """Run one simulator; return (classes, images/s, protocol_ok, note)."""
    from lgn_fpga import protocol as P
    from lgn_fpga.hdl.simulate import pack_bytes, run_stream

    n = len(images) if limit is None else min(limit, len(images))
    exp = expected[:n]
    payloads = P.encode_payloads(images[:n], net.encoding, wire)     # the images as the wire carries them
    L = info["latency"]
    if sim == "verilator":
        from . import verilator as V
        t0 = time.perf_counter()
        binary = V.build(verilog, info["top"], build / "verilator", opt=verilator_opt)
        log(f"  verilator: built in {time.perf_counter() - t0:.1f} s")
        full = V.run(binary, payloads, L, build / "verilator", seed=seed)
        m = min(n, max(stall_images, 0))
        stalled = V.run(binary, payloads[:m], L, build / "verilator" / "stall", valid_prob=0.5, ready_prob=0.5,
                        seed=seed)
        ok = bool((stalled.classes.astype(np.int64) == exp[:m]).all())
        return full.classes.astype(np.int64), full.images_per_second, ok, \
            f"{m} images with valid gaps / back-pressure {'agree' if ok else 'DISAGREE'}"
    if sim == "icarus":
        from .icarus import run_cocotb
        r = run_cocotb(verilog, info["top"], payloads, exp, L, build / "icarus", stall_images=stall_images,
                       seed=seed)
        ok = r.failed == 0
        return r.classes.astype(np.int64), r.images_per_second, ok, \
            f"cocotb: {r.tests - r.failed}/{r.tests} tests passed ({r.results_xml}" + \
            ("" if ok else f"; log {r.results_xml.with_name('cocotb.log')}") + ")"
    if sim == "amaranth":
        from lgn_fpga.hdl.core import ImageClassifier
        kw = dict(popcount_levels=popcount_levels, count_tables=count_tables, wire=wire)
        dut = ImageClassifier(net, stages, **kw)
        t0 = time.perf_counter()
        r = run_stream(dut, pack_bytes(payloads))
        secs = time.perf_counter() - t0
        ok = (r.in_cycles == list(range(n)) and (r.latencies() == dut.latency).all()
              and len(r.outputs) == n)
        m = min(n, max(stall_images, 0), 50)   # the Python simulator is slow: a short stalled run
        rs = run_stream(ImageClassifier(net, stages, **kw), pack_bytes(payloads[:m]), valid_prob=0.5, ready_prob=0.5,
                        seed=seed)
        ok = ok and rs.outputs == exp[:m].tolist()
        classes = np.full(n, -1, np.int64)
        classes[:min(n, len(r.outputs))] = r.outputs[:n]
        return classes, n / max(secs, 1e-9), ok, \
            f"latency {dut.latency} exact, {m} images with valid gaps / back-pressure " \
            f"{'agree' if rs.outputs == exp[:m].tolist() else 'DISAGREE'}"
    raise ValueError(f"sim must be one of {SIMS}, not {sim!r}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m lgn_fpga.sim", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help=".lgn netlist, or random:GATES[:LAYERS]")
    p.add_argument("--dataset", help="digits, mnist, fashion-mnist, cifar10 (default: from the netlist)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--limit", type=int, help="first N images of the split (default: all)")
    p.add_argument("--sim", action="append", choices=SIMS,
                   help="simulator (repeatable; default: every one installed)")
    p.add_argument("--amaranth-limit", type=int, default=100,
                   help="images through the (slow) Amaranth simulator (default 100)")
    p.add_argument("--icarus-limit", type=int, help="images through cocotb + Icarus (default: all)")
    p.add_argument("--stall-images", type=int, default=200, help="images streamed with random stalls (default 200)")
    p.add_argument("--stages", type=int, default=None,
                   help="gate layers per register stage (default 1; with --board, that board's build default)")
    p.add_argument("--popcount-levels", type=int, help="full-adder levels per popcount stage (default 2 x stages)")
    p.add_argument("--board", help="simulate the classifier as `lgn-fpga build --board B` makes it (its block-RAM "
                   "count tables; default: no count tables)")
    p.add_argument("--wire", choices=WIRE_FORMATS,
                   help="what the classifier reads: pixel bytes or packed levels (default bytes; with --board, "
                        "levels, as `lgn-fpga build` makes the board)")
    p.add_argument("--verilator-opt", default="-O0", help="C++ optimization of the Verilator build (default -O0: "
                   "fastest build; -Os for millions of images)")
    p.add_argument("--seed", type=int, default=1, help="seed of the stall pattern and of random: models")
    p.add_argument("--build-dir", type=Path, help="default: build/sim/<netlist hash>")
    args = p.parse_args(argv)

    from lgn_fpga.errors import LgnError
    _default_data_dir()
    try:
        return _main(args)
    except LgnError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _main(args) -> int:
    from lgn_fpga.data.datasets import load
    from lgn_fpga.hdl.export import export_core
    from lgn_fpga.netlist.evaluate import predict

    net = load_model(args.model, args.dataset, args.seed)
    if not args.model.startswith("random:"):
        from lgn_fpga.netlist.passes import optimization_note
        note = optimization_note(net, args.model)
        if note:
            print(note, file=sys.stderr)
    dataset = pick_dataset(net, args.dataset)
    split = load(dataset).split(args.split).head(args.limit)
    if tuple(split.images.shape[1:]) != tuple(net.encoding.shape):
        from lgn_fpga.errors import LgnError
        raise LgnError(f"{dataset} images are {split.images.shape[1:]}, the netlist expects "
                       f"{tuple(net.encoding.shape)}: pass the right --dataset")
    images, labels = split.images, split.labels
    t0 = time.perf_counter()
    expected = predict(net, images).astype(np.int64)
    print(f"{args.model}: {net.n_gates} gates, {net.depth} layers; {dataset} {args.split}: {len(images)} images; "
          f"software predictions in {time.perf_counter() - t0:.1f} s")
    tables = (0, 12, 2)
    if args.board:
        from lgn_fpga.fpga.boards import load_board
        args.stages, tables = load_board(args.board).build_options(args.stages)
    if args.stages is None:
        args.stages = 1
    if args.wire is None:
        args.wire = DEFAULT_WIRE if args.board else "bytes"
    build = args.build_dir or Path("build") / "sim" / (
        f"{net.content_hash()[:12]}-s{args.stages}-p{args.popcount_levels or 2 * args.stages}"
        + (f"-t{tables[0]}x{tables[1]}" if tables[0] else "") + ("-levels" if args.wire == "levels" else ""))
    t0 = time.perf_counter()
    r = export_core(net, build, stages=args.stages, popcount_levels=args.popcount_levels, inputs=args.wire,
                    name="lgn_classifier", count_tables=tables)
    print(f"exported {r.verilog} (latency {r.info['latency']} cycles) in {time.perf_counter() - t0:.1f} s")
    sims = args.sim or available_sims()
    limits = {"amaranth": args.amaranth_limit, "icarus": args.icarus_limit, "verilator": None}
    results, records = [], []
    all_ok = True
    for sim in sims:
        t0 = time.perf_counter()
        classes, ips, proto_ok, note = simulate(sim, net, images, expected, build, stages=args.stages,
                                                popcount_levels=args.popcount_levels, limit=limits[sim],
                                                stall_images=args.stall_images, seed=args.seed,
                                                verilog=r.verilog, info=r.info, verilator_opt=args.verilator_opt,
                                                count_tables=tables, wire=args.wire)
        n = len(classes)
        line, agree = agreement_line(classes, expected[:n], labels[:n])
        ok = agree and proto_ok
        all_ok &= ok
        results.append((n, line, ok))
        records.append({"simulator": sim, "images": n, "agree": int((classes == expected[:n]).sum()),
                        "hw_acc": float((classes == labels[:n]).mean()) if n else None,
                        "sw_acc": float((expected[:n] == labels[:n]).mean()) if n else None,
                        "ok": bool(ok), "images_per_s": ips, "note": note})
        print(f"{sim}: {line} [{ips:,.0f} images/s, {time.perf_counter() - t0:.1f} s; {note}]")
    n, line, _ = max(results, key=lambda t: t[0])
    # A machine-readable verdict beside the build, for `lgn-fpga report --sim DIR`.
    from lgn_fpga.fileio import atomic_write_text
    atomic_write_text(Path(build) / "sim.json", json.dumps(
        {"model": str(args.model), "netlist_hash": net.content_hash(), "dataset": dataset, "split": args.split,
         "latency": r.info["latency"], "all_ok": bool(all_ok), "line": line, "simulators": records}, indent=2))
    print(line if all_ok else f"{line} -- SOME SIMULATION FAILED (see above)")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
