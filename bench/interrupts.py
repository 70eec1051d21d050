"""Interrupt real training processes and check that --resume ends bit-exact with an uninterrupted run.

    python bench/interrupts.py [OUT_DIR]

Trains digits-tiny for 400 steps once without interruption, then once per (signal, delay) below: the
signal is sent that many seconds after training starts, the run is resumed, and its final checkpoint
(model) and metrics.jsonl (wall times aside) are compared with the uninterrupted run's.
"""
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from lgn_fpga.train.metrics import read_metrics

ARGS = ["--config", "digits-tiny", "--steps", "400", "--eval-every", "100", "--quiet"]
CASES = [(signal.SIGINT, 0.4), (signal.SIGINT, 1.3), (signal.SIGTERM, 0.8), (signal.SIGTERM, 1.9),
         (signal.SIGKILL, 1.1), (signal.SIGKILL, 1.7)]


def train(rd, extra=(), sig=None, delay=0.0):
    p = subprocess.Popen([sys.executable, "-m", "lgn_fpga", "train", *ARGS, *extra, "-o", str(rd)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = p.stderr.readline()                  # "run ...": training starts now
    if sig is not None:
        time.sleep(delay)
        p.send_signal(sig)
    _, err = p.communicate()
    lines = (first + err).strip().splitlines()
    return p.returncode, lines[-1] if lines else ""


def state(rd):
    ck = torch.load(rd / "checkpoint.pt", weights_only=False)
    ms = [{k: v for k, v in m.items() if k != "wall_s"} for m in read_metrics(rd)]
    return ck["model"], ms


def main():
    base = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="lgn-interrupts-"))
    train(base / "ref")
    ref_model, ref_ms = state(base / "ref")
    print("| signal | after | exit | message | resumed run |\n|---|---|---|---|---|")
    for i, (sig, delay) in enumerate(CASES):
        rd = base / f"run{i}"
        rc, msg = train(rd, sig=sig, delay=delay)
        left = sorted(p.name for p in rd.glob(".*.tmp"))
        subprocess.run([sys.executable, "-m", "lgn_fpga", "train", "--resume", "-o", str(rd), "--quiet"],
                       capture_output=True, check=True)
        model, ms = state(rd)
        same = all(torch.equal(ref_model[k], model[k]) for k in model) and ms == ref_ms
        print(f"| {sig.name} | {delay} s | {rc} | {msg.split(';')[0] if rc == 130 else '-'} | "
              f"{'bit-exact' if same else 'DIFFERENT'}{', temporaries left: ' + ', '.join(left) if left else ''} |")


if __name__ == "__main__":
    main()
