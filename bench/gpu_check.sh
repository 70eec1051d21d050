#!/usr/bin/env bash
# GPU check of the logic-layer kernels, in one call that fits in 5 minutes on a lent H100/H200
# (no network there; it needs python with torch and triton, and nvcc for the difflogic column).
#
#   bench/gpu_check.sh             1. kernel tests (pytest tests/kernels, on the GPU)
#                                  2. build difflogic's CUDA extension from its sdist (torch.utils.cpp_extension)
#                                  3. bench/kernels.py --gpu: triton vs reference (outputs and gradients),
#                                     then ms/step and peak memory of ref, triton and difflogic CUDA
#                                  4. with 2 or more GPUs: a DDP smoke run, lgn-fpga train digits --nproc 2
#                                     --device cuda (NCCL); in a dry run the same on 2 CPU processes (gloo)
#   bench/gpu_check.sh --dry-run   the same on a CPU with the Triton interpreter, tiny sizes, no difflogic
#
# Writes gpu_kernels.md (the table) and gpu_check.log to $OUT (default: out/gpu_check).
# DIFFLOGIC_SDIST overrides the sdist (default bench/vendor/difflogic-0.1.0.tar.gz).
# Every stage has its own time limit, and a failing stage is reported, never fatal to the others.
set -uo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
DRY=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1
OUTDIR=${OUT:-$ROOT/out/gpu_check}
mkdir -p "$OUTDIR"
LOG=$OUTDIR/gpu_check.log
: >"$LOG"
if [[ -n "${PYTHON:-}" ]]; then PY=$PYTHON
elif [[ -x "$ROOT/.venv/bin/python" ]]; then PY=$ROOT/.venv/bin/python
else PY=$(command -v python3 || command -v python); fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
T0=$(date +%s)
STATUS=0

say() { echo "[gpu_check +$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }
run() {  # run LIMIT_S CMD...: output to the log and the terminal, never longer than LIMIT_S
    local limit=$1; shift
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    [[ $rc == 124 || $rc == 137 ]] && say "timed out after ${limit}s: $*"
    return "$rc"
}

say "python: $PY; out: $OUTDIR; dry run: $DRY"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$LOG"
"$PY" -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available(), '| triton', triton.__version__)" 2>&1 | tee -a "$LOG"

if [[ $DRY == 1 ]]; then
    export TRITON_INTERPRET=1
    export CUDA_VISIBLE_DEVICES=""
elif ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    say "no CUDA GPU visible: run with --dry-run on a CPU"
    exit 2
fi

# 1. tests (the conftest of tests/kernels runs Triton on CUDA when there is a GPU, else in the interpreter)
if "$PY" -c "import pytest" 2>/dev/null; then
    say "stage 1: pytest tests/kernels"
    run 100 "$PY" -m pytest tests/kernels -q -x -p no:cacheprovider || { say "stage 1 FAILED"; STATUS=1; }
else
    say "stage 1 skipped: pytest is not installed (stage 3 still checks triton against the reference)"
fi

# 2. difflogic's CUDA extension
DL_DIR=""
if [[ $DRY == 1 ]]; then
    say "stage 2 skipped: dry run (no CUDA, no nvcc)"
else
    SDIST=${DIFFLOGIC_SDIST:-$ROOT/bench/vendor/difflogic-0.1.0.tar.gz}
    if [[ ! -f "$SDIST" ]]; then
        say "stage 2 skipped: no difflogic sdist at $SDIST (see bench/vendor/README.md, or set DIFFLOGIC_SDIST)"
    else
        say "stage 2: building difflogic_cuda from $(basename "$SDIST")"
        BUILD=$(mktemp -d)
        tar xzf "$SDIST" -C "$BUILD"
        SRC=$(ls -d "$BUILD"/difflogic-*/ | head -1)
        # Two spellings that newer PyTorch headers no longer accept (Tensor::type() in dispatch macros and
        # checks); the kernels themselves are left exactly as they are.
        sed -i -E 's/\b([a-z_]+)\.type\(\)\.is_cuda\(\)/\1.is_cuda()/; s/(AT_DISPATCH_[A-Z_]+\()([a-z_]+)\.type\(\)/\1\2.scalar_type()/' \
            "$SRC"/difflogic/cuda/difflogic_kernel.cu
        if run 170 "$PY" - "$SRC" <<'EOF'
import os, shutil, sys, glob, subprocess
import torch
from torch.utils import cpp_extension
src = sys.argv[1]
if cpp_extension.CUDA_HOME is None:
    sys.exit("no CUDA toolkit (nvcc) found: set CUDA_HOME; the difflogic column is left out")
major, minor = torch.cuda.get_device_capability(0)
os.environ.setdefault("TORCH_CUDA_ARCH_LIST", f"{major}.{minor}")   # one architecture: a faster build
os.environ.setdefault("MAX_JOBS", str(os.cpu_count() or 4))
sources = [os.path.join(src, "difflogic", "cuda", f) for f in ("difflogic.cpp", "difflogic_kernel.cu")]
have_ninja = shutil.which("ninja") is not None
try:
    import ninja  # noqa: F401
    have_ninja = True
except ImportError:
    pass
if have_ninja:
    cpp_extension.load(name="difflogic_cuda", sources=sources, extra_cuda_cflags=["-lineinfo"],
                       build_directory=src, verbose=False)
else:
    print("ninja not found: building with setup.py build_ext (slower)")
    subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=src, check=True,
                   stdout=subprocess.DEVNULL)
print("built:", ", ".join(os.path.basename(p) for p in glob.glob(os.path.join(src, "difflogic_cuda*.so"))))
EOF
        then
            DL_DIR=$SRC
            if PYTHONPATH="$DL_DIR:$PYTHONPATH" "$PY" -c "import difflogic" 2>>"$LOG"; then
                say "stage 2: difflogic_cuda imports"
            else
                say "stage 2: built, but 'import difflogic' fails (see the log); the difflogic column is left out"
                DL_DIR=""
            fi
        else
            say "stage 2 FAILED: difflogic_cuda did not build (see the log); the difflogic column is left out"
        fi
    fi
fi

# 3. correctness on the GPU and the table
say "stage 3: bench/kernels.py --gpu"
ARGS=(--gpu --out "$OUTDIR/gpu_kernels.md")
[[ $DRY == 1 ]] && ARGS+=(--dry-run)
PYTHONPATH="${DL_DIR:+$DL_DIR:}$PYTHONPATH" run 200 "$PY" "$ROOT/bench/kernels.py" "${ARGS[@]}" || { say "stage 3 FAILED"; STATUS=1; }

# 4. training on 2 processes (DDP): NCCL on 2 GPUs, gloo on the CPU in a dry run
NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
if [[ $DRY == 1 || $NGPU -ge 2 ]]; then
    DEV=cuda; [[ $DRY == 1 ]] && DEV=cpu
    say "stage 4: lgn-fpga train digits --nproc 2 --device $DEV"
    rm -rf "$OUTDIR/ddp_run"
    run 200 "$PY" -m lgn_fpga train digits --layers 2 --width 200 --thresholds 1 --steps 60 --eval-every 30 \
        --batch-size 128 --nproc 2 --device "$DEV" --quiet -o "$OUTDIR/ddp_run" || { say "stage 4 FAILED"; STATUS=1; }
else
    say "stage 4 skipped: $NGPU GPU(s), the DDP smoke run needs 2"
fi

say "done (status $STATUS); table: $OUTDIR/gpu_kernels.md; log: $LOG"
exit $STATUS
