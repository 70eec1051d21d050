#!/usr/bin/env python3
"""Image-by-image agreement on a whole split: the trained model's discretized torch forward against the raw and
the optimized netlist, each through the C and the numpy evaluator.

    python bench/agreement.py runs/mnist-scaled-... [--split test]

Prints accuracy per path and how many images differ from torch (must be 0: any difference is a bug).
Exit status 1 if any path disagrees.
"""
from __future__ import annotations

import argparse
import sys

import torch


from lgn_fpga.data.datasets import load
from lgn_fpga.kernels import resolve_backend
from lgn_fpga.netlist.evaluate import available_backends, predict
from lgn_fpga.train.export import from_run
from lgn_fpga.netlist.passes import optimize
from lgn_fpga.train.checkpoint import load_checkpoint
from lgn_fpga.train.loop import evaluate
from lgn_fpga.train.model import model_from_state
from lgn_fpga.train.model import Relaxation


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="run directory (or .pt checkpoint)")
    ap.add_argument("--split", default="test", choices=["train", "val", "test"])
    ap.add_argument("--data-dir")
    args = ap.parse_args(argv)
    raw = from_run(args.run)
    opt = optimize(raw)[0]
    split = load(raw.meta["dataset"], args.data_dir).split(args.split)
    model, _ = model_from_state(load_checkpoint(args.run, "best.pt"))
    model.eval()
    with torch.no_grad():
        _, ref = evaluate(model, torch.from_numpy(split.images), torch.from_numpy(split.labels), raw.encoding,
                          Relaxation("hard"), resolve_backend("auto", torch.device("cpu")))
    ref = ref.numpy()
    print(f"{raw.meta['dataset']} {args.split}: {len(ref)} images; netlist {raw.n_gates:,} gates raw, "
          f"{opt.n_gates:,} optimized")
    bad = 0
    rows = [("torch (discretized)", ref)]
    for name, net in (("raw", raw), ("optimized", opt)):
        for be in [b for b in ("c", "numpy") if b in available_backends()]:
            rows.append((f"{name} netlist, {be}", predict(net, split.images, backend=be)))
    for name, p in rows:
        diff = int((p != ref).sum())
        bad += diff
        print(f"  {name:24s} accuracy {100 * (p == split.labels).mean():6.2f} %   differs from torch on {diff} images")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
