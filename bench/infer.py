#!/usr/bin/env python3
"""Inference speed of the netlist evaluators and of a plain torch discretized forward, in one table.

The model is difflogic's MNIST shape: 784 input bits (28x28, one threshold),
6 layers x 8,000 gates, 10 classes of 800 output bits, random gates and
difflogic's random wiring, unless ``--model`` names a ``.lgn`` file.  A random
netlist and a trained one of the same shape cost the evaluators the same per
gate; they differ only in what the passes remove (the ``optimized`` rows).

Rows (every one on one thread):

* ``reference``  the bool evaluator of ``lgn_fpga.netlist.evaluate`` (the definition)
* ``numpy``      bit-parallel numpy, 64 images per word
* ``c``          the generated straight-line C (``lanes`` x 64 images per statement); compile
                 time is reported apart and not counted
* ``torch``      ``LogicNet`` with the argmax gates (``Relaxation("hard")``, the pure-torch
                 reference kernel), ``torch.set_num_threads(1)``: how training evaluates
                 the discretized network

Every row starts from uint8 images (encoding included).  Images are the test
set of the dataset the model was trained on (its ``meta["dataset"]``; MNIST for
the random MNIST-shaped model), or of ``--dataset``, else random bytes when the
data is not there (speed does not depend on the data; the header says which).  The last column checks that each row's predictions
equal the reference's on the images both saw.  A second table times writing
and loading a 1,000,000-gate ``.lgn`` file.

Timings on a shared or loaded machine are contaminated: the header prints the
load average.  Usage::

    python bench/infer.py                   # the table (a few minutes: mostly the C compile)
    python bench/infer.py --quick           # a smoke run on a small model (seconds)
    python bench/infer.py --model m.lgn --lanes 1,4,8
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if (ROOT.parent / "shared" / "data").is_dir():
    os.environ.setdefault("LGN_FPGA_DATA", str(ROOT.parent / "shared" / "data"))
os.environ.setdefault("LGN_FPGA_OFFLINE", "1")   # a benchmark never downloads: random images instead

from lgn_fpga.data.encoding import ThermometerEncoding
from lgn_fpga.netlist import Netlist, cbackend
from lgn_fpga.netlist.analysis import structural_live
from lgn_fpga.netlist import evaluate as ev
from lgn_fpga.netlist.format import load, save
from lgn_fpga.netlist.passes import optimize


def mnist_shaped(layers: int, width: int, seed: int = 0, n_in: int = 784, classes: int = 10) -> Netlist:
    """Random gates, difflogic's 'random' wiring (every input slot used about equally), contiguous groups."""
    rng = np.random.default_rng(seed)
    enc = ThermometerEncoding.make((1, 28, 28) if n_in == 784 else (1, 1, n_in), 1)
    ops, a, b, prev = [], [], [], n_in
    for _ in range(layers):
        c = rng.permutation(rng.permutation(2 * width) % prev)
        ops.append(rng.integers(0, 16, width))
        a.append(c[:width])
        b.append(c[width:])
        prev = width
    meta = {"source": f"random {layers}x{width}"} | ({"dataset": "mnist"} if n_in == 784 else {})
    return Netlist.from_layered(enc, ops, a, b, classes, meta=meta)


def images_for(net: Netlist, n: int, dataset: str | None = None) -> tuple[np.ndarray, str]:
    """``n`` images (test images of ``dataset``, else of the model's own dataset, repeated) and what they are."""
    from lgn_fpga.data.datasets import load as load_data
    from lgn_fpga.errors import DataError
    name = dataset or net.meta.get("dataset")
    rand = np.random.default_rng(1).integers(0, 256, (n, net.encoding.image_bytes), dtype=np.uint8)
    if not name:
        return rand, "random bytes (the model names no dataset; pass --dataset)"
    try:
        test = load_data(name).test.images
    except DataError as e:
        if dataset:
            raise SystemExit(f"error: {e}")
        return rand, f"random bytes ({name} is not available: {e})"
    if tuple(test.shape[1:]) != tuple(net.encoding.shape):
        raise SystemExit(f"error: {name} images are {'x'.join(map(str, test.shape[1:]))}, the model takes "
                         f"{'x'.join(map(str, net.encoding.shape))}; pass the --dataset it was trained on")
    return np.resize(test.reshape(len(test), -1), (n, net.encoding.image_bytes)), f"the {name} test set"


def best_rate(fn, n: int, repeats: int, budget_s: float = 20.0):
    """Images/s of the best of ``repeats`` runs of ``fn`` (fewer when one run is slow), and its output."""
    best, out, spent = 0.0, None, 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t
        best, spent = max(best, n / dt), spent + dt
        if spent > budget_s:
            break
    return best, out


def torch_model(net: Netlist):
    """A LogicNet computing ``net`` (strictly layered, equal contiguous class groups), or None."""
    try:
        import torch

        from lgn_fpga.train.model import LogicNet
    except ImportError:
        return None
    off = net.layer_offsets()
    for i, l in enumerate(net.layers):
        lo = int(off[i - 1]) if i else 0
        if l.a.min(initial=lo) < lo or l.b.min(initial=lo) < lo:
            return None
    g = len(net.outputs[0])
    last = int(off[-2])
    want = [np.arange(last + k * g, last + (k + 1) * g) for k in range(net.n_classes)]
    if g * net.n_classes != len(net.layers[-1]) or any(not np.array_equal(o, w) for o, w in zip(net.outputs, want)) \
            or net.bias.any():
        return None
    model = LogicNet(net.n_inputs, [len(l) for l in net.layers], net.n_classes, tau=1.0)
    with torch.no_grad():
        for i, (layer, l) in enumerate(zip(model.layers, net.layers)):
            lo = int(off[i - 1]) if i else 0
            layer.a.copy_(torch.from_numpy(l.a.astype(np.int64) - lo))
            layer.b.copy_(torch.from_numpy(l.b.astype(np.int64) - lo))
            z = torch.zeros_like(layer.logits)
            z[torch.arange(len(l)), torch.from_numpy(l.ops.astype(np.int64))] = 1.0
            layer.logits.copy_(z)
    return model


def torch_predict(model, enc: ThermometerEncoding, images: np.ndarray, batch: int = 1000) -> np.ndarray:
    import torch

    from lgn_fpga.train.model import Relaxation
    out = []
    with torch.no_grad():
        for s in range(0, len(images), batch):
            x = enc.encode_torch(torch.from_numpy(images[s:s + batch]))
            out.append(model(x, Relaxation("hard"), "reference").argmax(1).numpy())
    return np.concatenate(out)


def io_table(gates: int) -> list[str]:
    net = mnist_shaped(4, gates // 4, seed=3)
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "big.lgn"
        t = time.perf_counter(); save(net, p); t_save = time.perf_counter() - t
        t_load = min(_timed(lambda: load(p)) for _ in range(3))
        size = p.stat().st_size
    return [f"{'gates':>10} {'file MB':>8} {'save ms':>8} {'load ms':>8}   (load = read + CRC + validate + hash)",
            f"{net.n_gates:>10,} {size / 1e6:>8.1f} {1e3 * t_save:>8.0f} {1e3 * t_load:>8.0f}"]


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help=".lgn file to time instead of the random MNIST-shaped netlist")
    ap.add_argument("--dataset", help="images to time on (default: the model's own dataset, from its meta)")
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--width", type=int, default=8000)
    ap.add_argument("--lanes", default=str(cbackend.DEFAULT_LANES), help="C word widths to time, e.g. 1,4,8")
    ap.add_argument("--images", type=int, default=200_000, help="images for the C rows")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="small model, few images: a smoke run")
    ap.add_argument("--no-io", action="store_true", help="skip the file-format table")
    args = ap.parse_args()
    if args.quick:
        args.layers, args.width, args.images, args.repeats = 3, 500, 20_000, 1
    net = load(args.model) if args.model else mnist_shaped(args.layers, args.width)
    opt, _ = optimize(net)
    n_c = args.images
    imgs, images_what = images_for(net, n_c, args.dataset)
    n_np, n_ref, n_torch = min(n_c, 20_000), min(n_c, 1_000), min(n_c, 5_000)

    try:
        load_avg = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        load_avg = "?"
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average {load_avg}; "
          f"one thread per row")
    reach = int(structural_live(net)[net.n_inputs:].sum())
    print(f"# model: {net.meta.get('source', args.model)}: {net.n_gates:,} gates {[len(l) for l in net.layers]}, "
          f"{net.n_inputs} inputs, {net.n_classes} classes; {reach:,} gates reach an output (what C computes); "
          f"optimized: {opt.n_gates:,} gates")
    print(f"# images: {images_what}")

    ref_pred = ev.predict(net, imgs[:n_ref], backend="reference")
    rows = []

    def row(name, n, rate, pred, note=""):
        agree = "yes" if np.array_equal(pred[:n_ref], ref_pred[:len(pred[:n_ref])]) else "NO"
        rows.append((name, n, rate, agree, note))

    r, p = best_rate(lambda: ev.predict(net, imgs[:n_ref], backend="reference"), n_ref, 1)
    row("reference", n_ref, r, p)
    for label, m in (("numpy", net), ("numpy, optimized", opt)):
        r, p = best_rate(lambda m=m: ev.predict(m, imgs[:n_np], backend="numpy"), n_np, args.repeats)
        row(label, n_np, r, p)
    if cbackend.available():
        for lanes in [int(x) for x in args.lanes.split(",")]:
            for label, m in (("c", net), ("c, optimized", opt)):
                cn = cbackend.compile_netlist(m, lanes=lanes)
                r, p = best_rate(lambda cn=cn: ev.argmax_lowest(cn.scores_images(imgs)), n_c, args.repeats)
                note = (f"lanes {lanes}, compiled in {cn.compile_seconds:.1f} s" if cn.compile_seconds
                        else f"lanes {lanes}, from cache")
                row(f"{label} (x{64 * lanes})", n_c, r, p, note)
    else:
        rows.append(("c", 0, 0.0, "-", f"unavailable: {cbackend.unavailable_reason()}"))
    model = torch_model(net)
    if model is not None:
        import torch
        torch.set_num_threads(1)
        r, p = best_rate(lambda: torch_predict(model, net.encoding, imgs[:n_torch]), n_torch, args.repeats)
        row("torch (discretized)", n_torch, r, p, "LogicNet, Relaxation('hard'), reference kernel")
    else:
        rows.append(("torch (discretized)", 0, 0.0, "-", "n/a: netlist is not a plain layered LogicNet"))

    base = next((r[2] for r in rows if r[0].startswith("torch") and r[2] > 0), None)
    print(f"{'backend':<24} {'images':>9} {'images/s':>13} {'vs torch':>9} {'agrees':>7}  note")
    for name, n, rate, agree, note in rows:
        vs = f"{rate / base:.1f}x" if base and rate else "-"
        print(f"{name:<24} {n:>9,} {rate:>13,.0f} {vs:>9} {agree:>7}  {note}")
    if not args.no_io:
        print()
        for line in io_table(1_000_000 if not args.quick else 100_000):
            print(line)


if __name__ == "__main__":
    main()
