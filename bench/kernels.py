#!/usr/bin/env python3
"""Training-step speed and peak memory of the logic-layer kernels, side by side, in one table.

A *training step* is what one optimizer step costs minus the optimizer: the
gate coefficients from the logits (the O(N*16) part: softmax mixture, or the
Gumbel draw, its argmax and the surrogate softmax), the forward of every layer,
GroupSum, cross-entropy, and the backward down to the logits.  Both training
modes are timed, in one table: ``gumbel-ste`` (the shipped method; its forward
is hard, so the C kernel runs it bit-packed) and ``softmax`` (difflogic's).  Inputs are random bits (784 of them, MNIST's thermometer-free
size), 10 classes, GroupSum tau 10.

Models are named by their total gate count, as in difflogic's tables, with
their shape given as ``layers x width``:

* ``8k``   = 4 x 2,000
* ``48k``  = 6 x 8,000   (difflogic's MNIST model; the issue's done-when row)
* ``256k`` = 8 x 32,000

CPU columns (each configuration in a fresh subprocess, so that peak memory is
its own): ``naive`` (difflogic's pure-PyTorch 16-op layer, batch-major,
autograd), ``ref`` (the 4-coefficient pure-torch kernel), ``C`` (the
C/OpenMP kernel), each at every thread count asked for.  Peak memory is the
growth of the process's peak resident set during the steps over its size just
before them (Linux resets the high-water mark through /proc/self/clear_refs),
so the ~300 MB of torch itself is not counted; it is measured at the first
thread count.

``--gpu``: the same models on a CUDA GPU, columns ``ref`` (torch),
``triton`` and difflogic's CUDA kernel (when ``difflogic_cuda`` imports;
``bench/gpu_check.sh`` builds it), with ``torch.cuda.max_memory_allocated``
as peak memory and a correctness check of triton against the reference.

Timings on a shared or loaded machine are contaminated: the table header
prints the load average so a reader can judge.

Usage::

    python bench/kernels.py                 # the full CPU table, both modes (many minutes)
    python bench/kernels.py --quick         # a smoke run (seconds)
    python bench/kernels.py --gpu           # on a GPU machine
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = {"8k": (4, 2000), "48k": (6, 8000), "256k": (8, 32000)}
MODES = ("gumbel-ste", "softmax")
QUICK_MODELS = {"1k": (2, 500)}
N_INPUTS, N_CLASSES, GROUP_TAU = 784, 10, 10.0


def parse_models(spec: str) -> dict:
    """``"48k,256k"`` (names from MODELS) or explicit ``"6x8000,8x32000"``."""
    out = {}
    for item in spec.split(","):
        item = item.strip()
        if item in MODELS:
            out[item] = MODELS[item]
        elif "x" in item:
            L, W = item.split("x")
            out[item] = (int(L), int(W))
        else:
            raise SystemExit(f"--models: {item!r} is neither one of {', '.join(MODELS)} nor LAYERSxWIDTH")
    return out


# ----------------------------------------------------------------------------------------------- worker side

def _rss_now_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if platform.system() == "Darwin" else r / 1024


def build_net(layers, width, device, seed=0, candidates=1):
    from lgn_fpga.train.model import LogicNet
    return LogicNet(N_INPUTS, [width] * layers, N_CLASSES, tau=GROUP_TAU, seed=seed, candidates=candidates).to(device)


def make_step(net, backend, bits, labels, mode):
    """A closure running one training step (no optimizer) with ``backend``."""
    import torch

    from lgn_fpga.kernels.naive import naive_net_forward
    from lgn_fpga.train.model import Relaxation, gumbel_noise
    gen = torch.Generator(device=bits.device).manual_seed(1)
    r = Relaxation("soft") if mode == "softmax" else Relaxation("sample", noise=1.0, generator=gen)

    if backend == "naive":
        def forward():
            if mode == "softmax":
                return naive_net_forward(bits, net.layers, N_CLASSES, GROUP_TAU, mode="softmax")
            g = [gumbel_noise(l.logits.shape, gen) for l in net.layers]
            return naive_net_forward(bits, net.layers, N_CLASSES, GROUP_TAU, mode="gumbel-ste", gumbel=g)
    elif backend == "difflogic":
        dl_net = _difflogic_net(net, bits.device)

        def forward():
            return dl_net(bits)
    else:
        def forward():
            return net(bits, r, backend=backend)

    params = list(net.parameters()) if backend != "difflogic" else list(dl_net.parameters())

    def step():
        for p in params:
            p.grad = None
        loss = torch.nn.functional.cross_entropy(forward(), labels)
        loss.backward()
        return loss
    return step


def _difflogic_net(net, device):
    """difflogic's own LogicLayer/GroupSum (CUDA implementation) with our wiring and logits."""
    import difflogic
    import numpy as np
    import torch
    layers = []
    for l in net.layers:
        dl = difflogic.LogicLayer(l.in_dim, l.out_dim, device="cuda", implementation="cuda")
        with torch.no_grad():
            dl.weights.copy_(l.logits)
        dl.indices = (l.a.clone(), l.b.clone())
        # Rebuild its reverse index for our wiring, the way its __init__ does.
        rev = [[] for _ in range(l.in_dim)]
        for y, (i, j) in enumerate(zip(l.a.tolist(), l.b.tolist())):
            rev[i].append(y)
            rev[j].append(y)
        dl.given_x_indices_of_y_start = torch.tensor(np.array([0] + [len(r) for r in rev]).cumsum(),
                                                     device=device, dtype=torch.int64)
        dl.given_x_indices_of_y = torch.tensor([y for r in rev for y in r], device=device, dtype=torch.int64)
        layers.append(dl)
    model = torch.nn.Sequential(*layers, difflogic.GroupSum(N_CLASSES, GROUP_TAU, device="cuda"))
    return model.train()


def worker(args) -> dict:
    """One configuration in this process; returns a JSON-able dict."""
    import torch
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    L, W = args.shape
    if args.backend == "cpu":
        from lgn_fpga.kernels import cpu
        if not cpu.available():
            return {"error": f"C kernel unavailable: {cpu.unavailable_reason()}"}
    net = build_net(L, W, "cpu", candidates=args.candidates)
    gen = torch.Generator().manual_seed(0)
    bits = (torch.rand(args.batch, N_INPUTS, generator=gen) < 0.5).float()
    labels = torch.randint(N_CLASSES, (args.batch,), generator=gen)
    step = make_step(net, args.backend, bits, labels, args.mode)
    base = _rss_now_mb()
    exact_peak = _reset_peak()
    step()                                   # warm-up (also builds caches: reverse index, C library)
    times, cpu_times = [], []
    t_end = time.perf_counter() + args.min_time
    while len(times) < args.max_steps and (len(times) < args.min_steps or time.perf_counter() < t_end):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    times.sort()
    cpu_times.sort()
    wall, cpu_ms = 1e3 * times[len(times) // 2], 1e3 * cpu_times[len(cpu_times) // 2]
    return {"ms": cpu_ms if args.clock == "cpu" else wall, "wall_ms": wall, "cpu_ms": cpu_ms, "steps": len(times),
            "peak_mb": _peak_mb() - base, "base_mb": base, "exact_peak": exact_peak}


# ----------------------------------------------------------------------------------------------- parent side

def mem_available_mb() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def naive_estimate_mb(L, W, batch) -> float:
    """Peak of the naive step: measured at about 55 [batch, width] float32 tensors per layer (saved
    intermediates, gradients in flight and allocator slack); 60 to be safe."""
    return 60 * L * W * batch * 4 / 2**20


def run_config(name, shape, batch, backend, threads, mode, args, candidates=1) -> dict:
    if backend == "naive" and candidates > 1:
        return {"error": "the naive layer has fixed wiring (no learned connections)"}
    if backend == "naive" and not args.no_skip:
        est, avail = naive_estimate_mb(*shape, batch), mem_available_mb()
        if avail is not None and est > 0.6 * avail:
            return {"error": f"skipped: needs ~{est / 1024:.1f} GB, more than 60% of the {avail / 1024:.1f} GB "
                             f"available (--no-skip runs it anyway)"}
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), LGN_FPGA_THREADS=str(threads))
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--backend", backend, "--threads", str(threads),
           "--shape", f"{shape[0]}x{shape[1]}", "--batch", str(batch), "--mode", mode,
           "--min-time", str(args.min_time), "--min-steps", str(args.min_steps), "--max-steps", str(args.max_steps),
           "--clock", args.clock, "--candidates", str(candidates)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.timeout} s"}
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
    if p.returncode < 0 or p.returncode == 137:
        tail = f"killed (signal {-p.returncode}; out of memory?)"
    return {"error": tail}


def fmt_ms(r):
    return f"{r['ms']:.1f}" if "ms" in r else "–"


def fmt_mb(r):
    return f"{r['peak_mb']:.0f}" if "peak_mb" in r else "–"


def ratio(u, v):
    return f"{u['ms'] / v['ms']:.1f}x" if "ms" in u and "ms" in v else "–"


def mem_ratio(u, v):
    if "peak_mb" in u and "peak_mb" in v and v["peak_mb"] > 0:
        return f"{u['peak_mb'] / v['peak_mb']:.0f}x"
    return "–"


def machine_line() -> str:
    import torch
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "?"
    # OpenMP's spin-waiting decides multi-thread timings on a busy machine: say how it was set.
    env = [f"{k}={os.environ[k]}" for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in os.environ]
    return (f"{cpu}, {os.cpu_count()} logical CPUs, load average {load} at start, "
            f"torch {torch.__version__}, python {platform.python_version()}" + (", " + " ".join(env) if env else ""))


def cpu_table(args) -> str:
    models = parse_models(args.models) if args.models else (QUICK_MODELS if args.quick else MODELS)
    batches = [int(b) for b in args.batches.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    backends = [b for b in args.backends.split(",")]
    from lgn_fpga.kernels import cpu
    c_info = cpu.library_info() if cpu.available() else {"flags": [f"unavailable: {cpu.unavailable_reason()}"]}
    modes = [m.strip() for m in args.modes.split(",")]
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise SystemExit(f"--modes: {bad[0]!r} is not one of {', '.join(MODES)}")
    head = [f"# Training step (fwd+bwd, no optimizer), {N_INPUTS} input bits, {N_CLASSES} classes, CPU",
            f"# {machine_line()}",
            f"# C kernel flags: {' '.join(c_info.get('flags', []))}",
            f"# ms: median {'process CPU' if args.clock == 'cpu' else 'wall-clock'} time per step; "
            f"MB: peak memory growth during the steps (at {threads[0]} thread{'s' if threads[0] > 1 else ''})"]
    if max(threads) > (os.cpu_count() or 1):
        head.append(f"# warning: {max(threads)} threads on {os.cpu_count()} CPUs")
    label = {"naive": "naive", "reference": "ref", "cpu": "C"}
    cols = [f"{label[b]} {t}T ms" for b in backends for t in threads] + [f"{label[b]} MB" for b in backends]
    speed_cols = [f"C vs naive {t}T" for t in threads] if "naive" in backends and "cpu" in backends else []
    mem_cols = ["mem naive/C"] if speed_cols else []
    rows = []
    notes = []
    raw = []
    cands = [int(k) for k in str(args.candidates).split(",")]
    for mode, K, (name, shape), batch in itertools.product(modes, cands, models.items(), batches):
        mode_k = mode if K == 1 else f"{mode}, {K} candidates"
        res = {}
        for b in backends:
            for t in threads:
                r = run_config(name, shape, batch, b, t, mode, args, K)
                res[b, t] = r
                raw.append({"mode": mode, "candidates": K, "model": name, "layers": shape[0], "width": shape[1],
                            "batch": batch, "backend": b, "threads": t, **r})
                if "error" in r:
                    notes.append(f"{mode_k} {name} b{batch} {b} {t}T: {r['error']}")
                if not args.quiet:
                    print(f"  {mode_k:>10} {name:>5} ({shape[0]}x{shape[1]}) batch {batch:>4} {b:>9} {t}T: "
                          f"{fmt_ms(r):>9} ms {fmt_mb(r):>7} MB", file=sys.stderr, flush=True)
        cells = [mode_k, f"{name} ({shape[0]}x{shape[1]:,})", str(batch)]
        cells += [fmt_ms(res[b, t]) for b in backends for t in threads]
        cells += [fmt_mb(res[b, threads[0]]) for b in backends]
        cells += [ratio(res["naive", t], res["cpu", t]) for t in threads] if speed_cols else []
        cells += [mem_ratio(res["naive", threads[0]], res["cpu", threads[0]])] if mem_cols else []
        rows.append(cells)
    header = ["mode", "model", "batch"] + cols + speed_cols + mem_cols
    lines = head + ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += [f"- {n}" for n in dict.fromkeys(notes)]
    if args.json:
        write_out(json.dumps({"header": head, "results": raw}, indent=1), args.json, echo=False)
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- GPU mode

def _sync(device):
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize()


def gpu_check_and_time(args) -> tuple[str, bool]:
    """Correctness of triton against the reference, then timings of ref / triton / difflogic CUDA."""
    import torch
    dry = args.dry_run
    device = torch.device("cpu" if dry else "cuda")
    if not dry and not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA GPU (use --dry-run to exercise this path on a CPU "
                         "with TRITON_INTERPRET=1)")
    if dry and os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):
        raise SystemExit("--gpu --dry-run needs TRITON_INTERPRET=1 in the environment")
    from lgn_fpga.kernels import logic_layer
    have_dl, dl_reason = False, "not tried (dry run: no CUDA)" if dry else ""
    if not dry:
        try:
            import difflogic  # noqa: F401  (imports difflogic_cuda)
            have_dl = True
        except Exception as e:  # ImportError, or a broken build's OSError
            dl_reason = f"{type(e).__name__}: {e}"
    name = "CPU (dry run, triton interpreter)" if dry else torch.cuda.get_device_name(0)
    head = [f"# Training step (fwd+bwd, no optimizer), {args.mode} mode, {N_INPUTS} input bits, "
            f"{N_CLASSES} classes, {name}, torch {torch.__version__}"]
    try:
        import triton
        head[0] += f", triton {triton.__version__}"
    except ImportError:
        pass

    # 1. correctness: one layer per size, triton vs reference, outputs and gradients.
    check_lines = []
    ok = True
    sizes = [(97, 300, 33), (784, 2000, 64)] if dry else [(784, 8000, 128), (8000, 8000, 256), (32000, 32000, 256),
                                                         (4097, 12345, 100)]
    for F, N, B in sizes:
        gen = torch.Generator(device=device).manual_seed(F + N)
        a = torch.randint(F, (N,), device=device, generator=gen)
        b = torch.randint(F, (N,), device=device, generator=gen)
        b[: N // 10] = a[: N // 10]
        x0 = torch.rand(F, B, device=device, generator=gen)
        c0 = torch.randn(N, 4, device=device, generator=gen)
        g = torch.randn(N, B, device=device, generator=gen)
        out = {}
        for be in ("reference", "triton"):
            x = x0.clone().requires_grad_()
            c = c0.clone().requires_grad_()
            y = logic_layer(x, a, b, c, backend=be)
            y.backward(g)
            out[be] = (y.detach(), x.grad, c.grad)
        errs = []
        for what, u, v in zip(("y", "dx", "dc"), out["triton"], out["reference"]):
            scale = max(1.0, float(v.abs().max()))
            err = float((u - v).abs().max()) / scale
            errs.append(f"{what} {err:.1e}")
            ok &= err < 1e-5
        check_lines.append(f"# check triton vs reference, F={F} N={N} B={B}: max rel err " + ", ".join(errs))
    head += check_lines + [f"# check: {'PASS' if ok else 'FAIL'}"]
    if not have_dl:
        head.append(f"# difflogic CUDA: unavailable ({dl_reason})")

    # 2. timings
    models = parse_models(args.models) if args.models else ({"tiny": (2, 300)} if dry else MODELS)
    batches = [16] if dry else [int(b) for b in args.batches.split(",")]
    backends = ["reference", "triton"] + (["difflogic"] if have_dl else [])
    label = {"reference": "ref", "triton": "triton", "difflogic": "difflogic CUDA"}
    header = ["model", "batch"] + [f"{label[b]} ms" for b in backends] + [f"{label[b]} MB" for b in backends]
    header += ["difflogic/triton"] if have_dl else []
    rows = []
    for mname, (L, W) in models.items():
        for batch in batches:
            cells = [f"{mname} ({L}x{W:,})", str(batch)]
            ms, mb = {}, {}
            for be in backends:
                torch.manual_seed(0)
                net = build_net(L, W, device)
                gen = torch.Generator(device=device).manual_seed(0)
                bits = (torch.rand(batch, N_INPUTS, device=device, generator=gen) < 0.5).float()
                labels = torch.randint(N_CLASSES, (batch,), device=device, generator=gen)
                try:
                    step = make_step(net, be, bits, labels, args.mode)
                    for _ in range(1 if dry else 3):
                        step()        # warm-up: JIT compilation, caches
                    _sync(device)
                    if device.type == "cuda":
                        torch.cuda.reset_peak_memory_stats()
                        base = torch.cuda.memory_allocated()
                    n = 2 if dry else 20
                    t0 = time.perf_counter()
                    for _ in range(n):
                        step()
                    _sync(device)
                    ms[be] = 1e3 * (time.perf_counter() - t0) / n
                    mb[be] = ((torch.cuda.max_memory_allocated() - base) / 2**20) if device.type == "cuda" else None
                except Exception as e:  # one failing column must not lose the rest of the table
                    head.append(f"# {be} {mname} b{batch}: {type(e).__name__}: {e}")
                del net
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            cells += [f"{ms[b]:.2f}" if b in ms else "–" for b in backends]
            cells += [f"{mb[b]:.0f}" if mb.get(b) is not None else "–" for b in backends]
            if have_dl:
                cells.append(f"{ms['difflogic'] / ms['triton']:.2f}x" if "difflogic" in ms and "triton" in ms else "–")
            rows.append(cells)
            if not args.quiet:
                print("  " + " | ".join(cells), file=sys.stderr, flush=True)
    lines = head + ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines), ok


def write_out(text: str, path: str | None, echo: bool = True):
    if echo:
        print(text)
    if not path:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    os.replace(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small models, one short step each: a smoke run")
    ap.add_argument("--models", help=f"comma list of {', '.join(MODELS)} or LAYERSxWIDTH (default: all three)")
    ap.add_argument("--batches", default="128,256")
    ap.add_argument("--threads", default="1,2", help="thread counts of the CPU columns")
    ap.add_argument("--backends", default="naive,reference,cpu", help="CPU columns: naive, reference, cpu")
    ap.add_argument("--modes", default=",".join(MODES),
                    help="comma list of training modes, rows of one table (default: gumbel-ste,softmax)")
    ap.add_argument("--mode", choices=MODES, help="one mode (the GPU table; the worker)")
    ap.add_argument("--candidates", default="1", help="comma list of learned-connection candidate counts (1: fixed "
                    "wiring; the naive column has fixed wiring only); the worker takes one")
    ap.add_argument("--min-time", type=float, default=2.0, help="seconds of timed steps per configuration")
    ap.add_argument("--min-steps", type=int, default=3)
    ap.add_argument("--max-steps", type=int, default=50)
    ap.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                    help="wall: elapsed time (default); cpu: process CPU time, a steadier proxy for 1-thread "
                         "columns on a loaded machine (for n threads it is the sum over them)")
    ap.add_argument("--json", help="also write every measurement (wall and CPU time) to this JSON file")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per configuration before giving up")
    ap.add_argument("--no-skip", action="store_true", help="run naive configurations even if memory looks short")
    ap.add_argument("--gpu", action="store_true", help="GPU table: reference, triton, difflogic CUDA")
    ap.add_argument("--dry-run", action="store_true", help="with --gpu: tiny sizes on the CPU (TRITON_INTERPRET=1)")
    ap.add_argument("--out", help="also write the table to this file")
    ap.add_argument("--quiet", action="store_true", help="no per-configuration progress on stderr")
    # worker mode (internal)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--backend", help=argparse.SUPPRESS)
    ap.add_argument("--shape", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.min_time, args.min_steps, args.max_steps = 0.0, 2, 2
        args.batches = "128" if args.batches == "128,256" else args.batches
    if args.worker:
        args.shape = tuple(int(v) for v in args.shape.split("x"))
        args.threads = int(args.threads)
        args.candidates = int(args.candidates)
        print(json.dumps(worker(args)), flush=True)
        return 0
    if args.mode:
        args.modes = args.mode
    args.mode = args.mode or args.modes.split(",")[0].strip()
    if args.gpu:
        text, ok = gpu_check_and_time(args)
        write_out(text, args.out)
        return 0 if ok else 1
    write_out(cpu_table(args), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
