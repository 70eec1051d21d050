"""C backend of the golden evaluator: straight-line word code generated per netlist.

:func:`generate_c` turns a netlist into one C file:

* ``encode``: thermometer encoding straight from row-major uint8 images.  With
  SSE2, 16 images x 16 bytes are transposed in registers, then one compare and
  one ``movemask`` per (byte, threshold) give the bits of 16 images at once.
* the gates: one statement per gate that can reach a class output,
  ``s[d] = <gates.c_expression(op, s[a], s[b])>``, over a word type of
  ``lanes`` x 64 images (a GCC/Clang vector type, so a statement is one SIMD
  instruction).  Signals live in slots reused once their last reader has run,
  so the working set stays near two layers wide.
* the popcount: a bit-sliced carry-save adder tree per class (full adders of
  XOR/AND/OR, again from ``gates.c_expression``), then the bit planes of every
  score are turned into integers 8 images at a time with a 256-entry table.

The library is compiled with the system C compiler (``$CC`` or ``cc``; extra
flags from ``$LGN_FPGA_CFLAGS``) into ``$LGN_FPGA_CACHE/netlist-c`` (default
``$XDG_CACHE_HOME/lgn-fpga/netlist-c`` or ``~/.cache/lgn-fpga/netlist-c``),
keyed by the netlist's content hash, this generator's source, the compiler,
its flags and (for ``-march=native``) the CPU.  The library is written to a
temporary name and renamed, so concurrent builds never clash.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from .. import gates
from ..ccompile import cache_root, cc_command, compiler_id, cpu_fingerprint, extra_cflags, lib_suffix
from ..errors import LgnError
from ..gates import GATES, by_name, c_expression
from .analysis import structural_live
from .ir import Netlist

__all__ = ["CompileError", "CompiledNetlist", "available", "unavailable_reason", "compile_netlist", "is_built",
           "generate_c", "cache_dir", "DEFAULT_LANES"]

ABI_VERSION = 1
DEFAULT_LANES = 4          # 256 images per statement: one AVX2 op, two SSE2 ops, four scalar ops
_FUNC_STATEMENTS = 256     # statements per generated C function
_UNIT_STATEMENTS = 2048    # at least this many statements per translation unit (units compile in parallel)
# GCC's dead-store elimination, GCSE/FRE and RTL CSE are what make -O1/-O2 slow on long straight-line
# code (minutes for a 48k-gate netlist at -O2); without them the code runs as fast (measured: one
# load-load-op-store per statement either way) and compiles ~15x faster.  Tried in order.
_FAST = ["-fno-tree-dse", "-fno-dse", "-fno-gcse", "-fno-tree-fre", "--param=max-cse-insns=20",
         "--param=max-cse-path-length=2"]
_FLAG_SETS = (["-O1", "-march=native"] + _FAST, ["-O1", "-march=native"], ["-O1"])
_COMMON = ["-std=gnu11", "-fPIC", "-fno-strict-aliasing"]

_lock = threading.Lock()
_loaded: dict = {}     # key -> CompiledNetlist
_probe: dict = {}      # "ok", "reason": whether a trivial program compiles


class CompileError(LgnError):
    """The C compiler is missing or could not build a netlist."""


def cache_dir() -> Path:
    return cache_root("netlist-c")


def _cc() -> list[str]:
    return cc_command()


def _flag_sets(extra_flags=()) -> list[list[str]]:
    extra = extra_cflags() + list(extra_flags)
    return [f + _COMMON + extra for f in _FLAG_SETS]


def available() -> bool:
    """Whether a C compiler is there and builds a trivial shared library (checked once per process)."""
    with _lock:
        if "ok" not in _probe:
            _probe["ok"], _probe["reason"] = _check_compiler()
        return _probe["ok"]


def unavailable_reason() -> str:
    """Why :func:`available` is False ('' when it is True)."""
    available()
    return _probe["reason"]


def _check_compiler() -> tuple[bool, str]:
    if sys.byteorder != "little":
        return False, "the C backend assumes a little-endian machine"
    cc = _cc()
    if not cc or shutil.which(cc[0]) is None:
        return False, f"no C compiler found ({cc[0] if cc else ''!r} is not on PATH); install gcc or clang, or set CC"
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "probe.c"
        src.write_text("typedef unsigned long long w_t __attribute__((vector_size(32)));\n"
                       "int probe(void) { w_t x = {1}; x = ~x; return (int)x[0]; }\n")
        errs = []
        for flags in _flag_sets():
            try:
                p = subprocess.run(cc + flags + ["-shared", "-o", str(Path(d) / "probe.so"), str(src)], capture_output=True,
                                   text=True, timeout=120)
            except (OSError, subprocess.SubprocessError) as e:
                errs.append(str(e))
                continue
            if p.returncode == 0:
                return True, ""
            errs.append((p.stderr or p.stdout).strip().splitlines()[-1:] or [f"exit {p.returncode}"])
        return False, f"{cc[0]} cannot build a shared library: {errs[-1]}"


# -- code generation -------------------------------------------------------------------

_XOR, _AND, _OR = (by_name(n).id for n in ("XOR", "AND", "OR"))


def _program(net: Netlist):
    """The straight-line program: ``(dest, fmt, srcs)`` statements over variable ids.

    Variables ``0 .. n_signals-1`` are the netlist's signals; temporaries of
    the adder trees follow.  ``fmt`` is a C expression with ``{0}``, ``{1}``,
    ... standing for the source operands.  Returns the statements, the needed
    inputs and, per class, the variables holding the bits of its count
    (least significant first).
    """
    need = structural_live(net)
    stmts = []
    # Gate statements, in signal order (a gate only reads earlier signals).
    off = net.layer_offsets()
    for i, l in enumerate(net.layers):
        idx = np.nonzero(need[off[i]:off[i + 1]])[0]
        for j, op, a, b in zip(idx.tolist(), l.ops[idx].tolist(), l.a[idx].tolist(), l.b[idx].tolist()):
            srcs = [v for v, used in ((a, GATES[op].uses_a), (b, GATES[op].uses_b)) if used]
            # Operands an op ignores are not read: they need not be computed.
            names = {a: "{0}", b: "{%d}" % (len(srcs) - 1)} if srcs else {}
            expr = c_expression(op, names.get(a, "{0}"), names.get(b, "{0}"))
            if op in gates.CONST_GATES:
                expr = "ZERO" if expr == "0" else "ONES"
            stmts.append((int(off[i]) + j, expr, srcs))
    nxt = net.n_signals

    def new():
        nonlocal nxt
        nxt += 1
        return nxt - 1

    xor = lambda x, y: c_expression(_XOR, x, y)
    planes = []
    for o in net.outputs:
        # Column-wise carry-save reduction: full adders while a column holds 3+ bits, then a
        # half adder; carries move one column up.  Popping from the front balances the tree.
        cols = [list(map(int, o))]
        j = 0
        while j < len(cols):
            col = cols[j]
            while len(col) >= 2:
                if j + 1 == len(cols):
                    cols.append([])
                if len(col) >= 3:
                    x, y, z = col.pop(0), col.pop(0), col.pop(0)
                    s, c = new(), new()
                    # sum = x ^ y ^ z; carry = (x & y) | ((x ^ y) & z)
                    stmts.append((s, xor(xor("{0}", "{1}"), "{2}"), [x, y, z]))
                    stmts.append((c, c_expression(_OR, c_expression(_AND, "{0}", "{1}"),
                                                  c_expression(_AND, xor("{0}", "{1}"), "{2}")), [x, y, z]))
                else:
                    x, y = col.pop(0), col.pop(0)
                    s, c = new(), new()
                    stmts.append((s, xor("{0}", "{1}"), [x, y]))
                    stmts.append((c, c_expression(_AND, "{0}", "{1}"), [x, y]))
                col.append(s)
                cols[j + 1].append(c)
            j += 1
        planes.append([c[0] for c in cols if c])
    inputs = np.nonzero(need[:net.n_inputs])[0]
    return stmts, inputs, planes, nxt


def _allocate(stmts, inputs, planes, n_vars):
    """Slot of every variable: linear scan, a slot is reused after its variable's last reader."""
    last = np.full(n_vars, -1, np.int64)
    for k, (_, _, srcs) in enumerate(stmts):
        for v in srcs:
            last[v] = k
    keep = set(v for p in planes for v in p)
    slot = np.full(n_vars, -1, np.int64)
    free, top = [], 0
    for v in inputs.tolist():
        slot[v] = top
        top += 1
    for k, (dest, _, srcs) in enumerate(stmts):
        for v in set(srcs):
            if last[v] == k and v not in keep:
                free.append(int(slot[v]))
        if free:
            slot[dest] = free.pop()
        else:
            slot[dest] = top
            top += 1
    return slot, max(top, 1)


def _c_array(name: str, ctype: str, values) -> str:
    vals = [int(v) for v in values] or [0]
    lines = []
    for i in range(0, len(vals), 24):
        lines.append("  " + ", ".join(map(str, vals[i:i + 24])) + ",")
    return f"static const {ctype} {name}[{len(vals)}] = {{\n" + "\n".join(lines) + "\n};\n"


_TEMPLATE_COMMON = r"""/* Generated by lgn_fpga.netlist.cbackend from netlist {hash}; do not edit. */
#include <stdint.h>
#define LANES {lanes}
#if LANES == 1
typedef uint64_t w_t;
static const w_t ZERO = 0;
#else
typedef uint64_t w_t __attribute__((vector_size(8 * LANES)));
static const w_t ZERO = {{0}};
#endif
#define ONES (~ZERO)
#define PART __attribute__((noinline, visibility("hidden")))
"""

_TEMPLATE_MAIN = r"""#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__) && !defined(LGN_NO_SIMD)
#include <emmintrin.h>
#define LGN_SSE2 1
#endif
#define BLOCK (64 * LANES)
#define ABI_VERSION {abi}
#define N_SLOTS {n_slots}
#define N_INPUTS {n_inputs}
#define IMAGE_BYTES {image_bytes}
#define PIXELS {pixels}
#define LEVELS {levels}
#define N_CLASSES {n_classes}
#define MAX_PLANES {max_planes}
#define ACC_WORDS ((MAX_PLANES + 7) / 8 + 1)
typedef uint16_t u16a __attribute__((may_alias));
"""

_TEMPLATE_RUNTIME = r"""
/* SPREAD[x] has byte i = bit i of x: eight images' bits of one score plane become eight byte counters. */
static uint64_t SPREAD[256];
static void init_spread(void) {
  for (int x = 0; x < 256; x++) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)((x >> i) & 1) << (8 * i);
    SPREAD[x] = v;
  }
}

#ifdef LGN_SSE2
/* 16x16 byte transpose: out[m] byte i = in[i] byte m (image i, image byte m). */
static inline void tr16(const __m128i in[16], __m128i out[16]) {
  __m128i a[16], b[16];
  for (int k = 0; k < 8; k++) {
    a[k] = _mm_unpacklo_epi8(in[2 * k], in[2 * k + 1]);
    a[k + 8] = _mm_unpackhi_epi8(in[2 * k], in[2 * k + 1]);
  }
  for (int h = 0; h < 2; h++)
    for (int k = 0; k < 4; k++) {
      b[h * 8 + k] = _mm_unpacklo_epi16(a[h * 8 + 2 * k], a[h * 8 + 2 * k + 1]);
      b[h * 8 + 4 + k] = _mm_unpackhi_epi16(a[h * 8 + 2 * k], a[h * 8 + 2 * k + 1]);
    }
  for (int q = 0; q < 4; q++)
    for (int k = 0; k < 2; k++) {
      a[q * 4 + 2 * k] = _mm_unpacklo_epi32(b[q * 4 + 2 * k], b[q * 4 + 2 * k + 1]);
      a[q * 4 + 2 * k + 1] = _mm_unpackhi_epi32(b[q * 4 + 2 * k], b[q * 4 + 2 * k + 1]);
    }
  for (int q = 0; q < 4; q++)
    for (int e = 0; e < 2; e++) {
      out[4 * q + 2 * e] = _mm_unpacklo_epi64(a[q * 4 + e], a[q * 4 + 2 + e]);
      out[4 * q + 2 * e + 1] = _mm_unpackhi_epi64(a[q * 4 + e], a[q * 4 + 2 + e]);
    }
}
#endif

/* Bits of image byte q for 16 images (rows of IMAGE_BYTES bytes from base), scalar. */
static void encode_byte_scalar(const uint8_t *base, int q, int g, w_t *restrict s) {
  const int c = q / PIXELS, p = q % PIXELS;
  for (int j = 0; j < LEVELS; j++) {
    const int32_t slot = IN_SLOT[(c * LEVELS + j) * PIXELS + p];
    if (slot < 0) continue;
    const uint8_t th = TH[c * LEVELS + j];
    uint16_t w = 0;
    for (int i = 0; i < 16; i++) w |= (uint16_t)(base[(int64_t)i * IMAGE_BYTES + q] > th) << i;
    ((u16a *)&s[slot])[g] = w;
  }
}

/* Thermometer bits of BLOCK row-major images into their slots: bit i of 16-bit chunk g is image 16g+i. */
static void encode(const uint8_t *img, w_t *restrict s) {
  for (int g = 0; g < BLOCK / 16; g++) {
    const uint8_t *base = img + (int64_t)g * 16 * IMAGE_BYTES;
    int q0 = 0;
#ifdef LGN_SSE2
    const __m128i flip = _mm_set1_epi8((char)0x80);
    for (; q0 + 16 <= IMAGE_BYTES; q0 += 16) {
      __m128i r[16], t[16];
      for (int i = 0; i < 16; i++) r[i] = _mm_loadu_si128((const __m128i *)(base + (int64_t)i * IMAGE_BYTES + q0));
      tr16(r, t);
      for (int m = 0; m < 16; m++) {
        const int q = q0 + m, c = q / PIXELS, p = q % PIXELS;
        const __m128i v = _mm_xor_si128(t[m], flip);  /* unsigned > as signed > after flipping the top bit */
        for (int j = 0; j < LEVELS; j++) {
          const int32_t slot = IN_SLOT[(c * LEVELS + j) * PIXELS + p];
          if (slot < 0) continue;
          const __m128i th = _mm_set1_epi8((char)(TH[c * LEVELS + j] ^ 0x80));
          ((u16a *)&s[slot])[g] = (uint16_t)_mm_movemask_epi8(_mm_cmpgt_epi8(v, th));
        }
      }
    }
#endif
    for (int q = q0; q < IMAGE_BYTES; q++) encode_byte_scalar(base, q, g, s);
  }
}

/* Scores of the block's images [0, nvalid) from the bit planes of every class count. */
static void extract(const w_t *restrict s, int32_t *restrict out, int64_t nvalid) {
  for (int k = 0; k < N_CLASSES; k++) {
    const int np = PLANES[k];
    for (int g = 0; g < BLOCK / 8 && 8 * g < nvalid; g++) {
      uint64_t acc[ACC_WORDS] = {0};
      for (int j = 0; j < np; j++)
        acc[j >> 3] += SPREAD[((const uint8_t *)&s[PLANE_SLOT[k * MAX_PLANES + j]])[g]] << (j & 7);
      for (int i = 0; i < 8 && 8 * g + i < nvalid; i++) {
        int32_t v = BIAS[k];
        for (int h = 0; h < (np + 7) / 8; h++) v += (int32_t)((acc[h] >> (8 * i)) & 0xFF) << (8 * h);
        out[(int64_t)(8 * g + i) * N_CLASSES + k] = v;
      }
    }
  }
}

int lgn_abi_version(void) { return ABI_VERSION; }
int lgn_lanes(void) { return LANES; }
int lgn_simd(void) {
#ifdef LGN_SSE2
  return 1;
#else
  return 0;
#endif
}

static w_t *alloc_slots(void) {
  return (w_t *)aligned_alloc(64, ((sizeof(w_t) * N_SLOTS + 63) / 64) * 64);
}

/* Scores [n, N_CLASSES] of n row-major uint8 images of IMAGE_BYTES bytes each. Returns 0, or -1 out of memory. */
int lgn_scores_images(const uint8_t *images, int64_t n, int32_t *out) {
  w_t *s = alloc_slots();
  uint8_t *tail = NULL;
  if (!s) return -1;
  init_spread();
  for (int64_t i = 0; i < n; i += BLOCK) {
    const int64_t m = n - i < BLOCK ? n - i : BLOCK;
    const uint8_t *src = images + i * IMAGE_BYTES;
    if (m < BLOCK) {  /* last, partial block: pad with zero images */
      tail = (uint8_t *)calloc(BLOCK, IMAGE_BYTES);
      if (!tail) { free(s); return -1; }
      memcpy(tail, src, (size_t)(m * IMAGE_BYTES));
      src = tail;
    }
    encode(src, s);
    run(s);
    extract(s, out + i * N_CLASSES, m);
  }
  free(tail);
  free(s);
  return 0;
}

/* Scores of n images given as packed bits: words[block][N_INPUTS][LANES], bit b of lane l is image 64l+b. */
int lgn_scores_words(const uint64_t *words, int64_t n, int32_t *out) {
  w_t *s = alloc_slots();
  if (!s) return -1;
  init_spread();
  for (int64_t i = 0, blk = 0; i < n; i += BLOCK, blk++) {
    const int64_t m = n - i < BLOCK ? n - i : BLOCK;
    for (int k = 0; k < N_INPUTS; k++)
      if (IN_SLOT[k] >= 0) memcpy(&s[IN_SLOT[k]], words + (blk * N_INPUTS + k) * LANES, sizeof(w_t));
    run(s);
    extract(s, out + i * N_CLASSES, m);
  }
  free(s);
  return 0;
}
"""


def generate_c(net: Netlist, lanes: int = DEFAULT_LANES, units: int = 1) -> dict[str, str]:
    """C sources of the evaluator of ``net``: ``{file name: source}``.

    ``main.c`` holds the tables, the encoder, the score extraction and the
    exported functions; ``part<i>.c`` hold the straight-line statements, split
    into about ``units`` files so that they compile in parallel.
    """
    if lanes not in (1, 2, 4, 8):
        raise ValueError(f"lanes must be 1, 2, 4 or 8, not {lanes!r}")
    if not isinstance(units, int) or units < 1:
        raise ValueError(f"units must be a positive integer, not {units!r}")
    enc = net.encoding
    stmts, inputs, planes, n_vars = _program(net)
    slot, n_slots = _allocate(stmts, inputs, planes, n_vars)
    max_planes = max([len(p) for p in planes] + [1])
    in_slot = np.full(net.n_inputs, -1, np.int64)
    in_slot[inputs] = slot[inputs]
    plane_slot = np.zeros((net.n_classes, max_planes), np.int64)
    for k, p in enumerate(planes):
        plane_slot[k, :len(p)] = slot[p] if p else []
    common = _TEMPLATE_COMMON.format(hash=net.content_hash(), lanes=lanes)
    files, funcs = {}, 0
    per_unit = max(_UNIT_STATEMENTS, -(-len(stmts) // units))
    for u, start in enumerate(range(0, len(stmts), per_unit)):
        text = [common]
        chunk = stmts[start:start + per_unit]
        for fs in range(0, len(chunk), _FUNC_STATEMENTS):
            body = []
            for dest, fmt, srcs in chunk[fs:fs + _FUNC_STATEMENTS]:
                expr = fmt.format(*(f"s[{slot[v]}]" for v in srcs))
                body.append(f"  s[{slot[dest]}] = {expr};\n")
            text.append(f"PART void lgn_part{funcs}(w_t *restrict s) {{\n{''.join(body)}}}\n")
            funcs += 1
        files[f"part{u}.c"] = "".join(text)
    main = [common,
            _TEMPLATE_MAIN.format(abi=ABI_VERSION, n_slots=n_slots, n_inputs=net.n_inputs,
                                  image_bytes=enc.image_bytes, pixels=enc.pixels, levels=enc.levels,
                                  n_classes=net.n_classes, max_planes=max_planes),
            _c_array("TH", "uint8_t", enc.threshold_array().reshape(-1)),
            _c_array("IN_SLOT", "int32_t", in_slot),
            _c_array("PLANES", "int32_t", [len(p) for p in planes]),
            _c_array("PLANE_SLOT", "int32_t", plane_slot.reshape(-1)),
            _c_array("BIAS", "int32_t", net.bias),
            "".join(f"PART void lgn_part{i}(w_t *restrict s);\n" for i in range(funcs)),
            "static void run(w_t *restrict s) {\n" + "".join(f"  lgn_part{i}(s);\n" for i in range(funcs))
            + "  (void)s;\n}\n",
            _TEMPLATE_RUNTIME]
    files["main.c"] = "".join(main)
    return files


# -- build, cache, load ----------------------------------------------------------------

def _key(net: Netlist, lanes: int, cc: list[str], flags: list[str]) -> str:
    h = hashlib.sha256()
    for part in (net.content_hash(), str(lanes), Path(__file__).read_bytes(), Path(gates.__file__).read_bytes(),
                 " ".join(cc), compiler_id(cc), " ".join(flags)):
        h.update(part if isinstance(part, bytes) else part.encode())
        h.update(b"\0")
    if "-march=native" in flags:
        h.update(cpu_fingerprint().encode())
    return h.hexdigest()[:24]


_suffix = lib_suffix()


def _lib_path(net, lanes, flags):
    cc = _cc()
    return cache_dir() / f"net-{_key(net, lanes, cc, flags)}{_suffix}"


def is_built(net: Netlist, lanes: int = DEFAULT_LANES, extra_flags=()) -> bool:
    """Whether ``net`` is already compiled (in this process or in the cache) for the first flag set."""
    if any(k[0] == net.content_hash() and k[1] == lanes for k in _loaded):
        return True
    if not available():
        return False
    return _lib_path(net, lanes, _flag_sets(extra_flags)[0]).exists()


class CompiledNetlist:
    """A netlist compiled to a shared library; call :meth:`scores_images` or :meth:`scores_bits`.

    Attributes
    ----------
    path : Path
        The shared library.
    flags : list of str
        Compiler flags it was built with.
    lanes : int
        64-image words per statement.
    compile_seconds : float
        Time spent generating and compiling (0 when loaded from the cache).
    """

    def __init__(self, net: Netlist, path: Path, flags, lanes: int, compile_seconds: float):
        self.n_inputs, self.n_classes = net.n_inputs, net.n_classes
        self.image_bytes = net.encoding.image_bytes
        self.path, self.flags, self.lanes, self.compile_seconds = path, list(flags), lanes, compile_seconds
        lib = ctypes.CDLL(str(path))
        if lib.lgn_abi_version() != ABI_VERSION or lib.lgn_lanes() != lanes:
            raise CompileError(f"{path} was built by another version of lgn-fpga; delete it and retry")
        for fn in (lib.lgn_scores_images, lib.lgn_scores_words):
            fn.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p]
            fn.restype = ctypes.c_int
        self.simd = bool(lib.lgn_simd())
        self._lib = lib

    def scores_images(self, images: np.ndarray) -> np.ndarray:
        """int32 scores ``[N, n_classes]`` of uint8 images ``[N, ...]`` (``image_bytes`` each)."""
        x = np.ascontiguousarray(images, dtype=np.uint8).reshape(len(images), -1)
        if x.shape[1] != self.image_bytes:
            raise ValueError(f"images must have {self.image_bytes} bytes each, not {x.shape[1]}")
        out = np.empty((len(x), self.n_classes), np.int32)
        if len(x) and self._lib.lgn_scores_images(x.ctypes.data, len(x), out.ctypes.data) != 0:
            raise MemoryError("C evaluator: out of memory")
        return out

    def scores_bits(self, bits: np.ndarray) -> np.ndarray:
        """int32 scores of bool input bits ``[N, n_inputs]``."""
        bits = np.asarray(bits, dtype=bool)
        n = len(bits)
        block = 64 * self.lanes
        nb = -(-n // block)
        padded = np.zeros((nb * block, self.n_inputs), dtype=bool)
        padded[:n] = bits
        # [blocks, lanes, 64, inputs] -> [blocks, inputs, lanes, 64] -> pack the 64 images of a lane word
        words = np.packbits(padded.reshape(nb, self.lanes, 64, self.n_inputs).transpose(0, 3, 1, 2), axis=-1,
                            bitorder="little")
        words = np.ascontiguousarray(words).view("<u8")
        out = np.empty((n, self.n_classes), np.int32)
        if n and self._lib.lgn_scores_words(words.ctypes.data, n, out.ctypes.data) != 0:
            raise MemoryError("C evaluator: out of memory")
        return out


def compile_netlist(net: Netlist, lanes: int = DEFAULT_LANES, extra_flags=()) -> CompiledNetlist:
    """Compile ``net`` (or load it from the cache) and return the loaded library.

    Raises
    ------
    CompileError
        If no C compiler works or none of the flag sets builds the generated code.
    """
    if not available():
        raise CompileError(unavailable_reason())
    flag_sets = _flag_sets(extra_flags)
    with _lock:
        for flags in flag_sets:
            key = (net.content_hash(), lanes, tuple(flags))
            if key in _loaded:
                return _loaded[key]
        d = cache_dir()
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CompileError(f"cannot create the C cache {d} ({e}); set LGN_FPGA_CACHE to a writable folder") \
                from None
        for flags in flag_sets:
            path = _lib_path(net, lanes, flags)
            if path.exists():
                cn = CompiledNetlist(net, path, flags, lanes, 0.0)
                _loaded[(net.content_hash(), lanes, tuple(flags))] = cn
                return cn
        t0 = time.perf_counter()
        jobs = os.cpu_count() or 1
        files = generate_c(net, lanes, units=2 * jobs)
        errors = []
        with tempfile.TemporaryDirectory(dir=d) as tmp:
            for name, text in files.items():
                (Path(tmp) / name).write_text(text)
            for flags in flag_sets:
                path = _lib_path(net, lanes, flags)
                err = _build(Path(tmp), list(files), flags, Path(tmp) / path.name, jobs)
                if err is None:
                    os.replace(Path(tmp) / path.name, path)   # atomic: a concurrent build writes the same bytes
                    cn = CompiledNetlist(net, path, flags, lanes, time.perf_counter() - t0)
                    _loaded[(net.content_hash(), lanes, tuple(flags))] = cn
                    return cn
                errors.append(f"{' '.join(flags[:2])}: {err}")
        raise CompileError(f"{_cc()[0]} could not compile the netlist: {'; '.join(errors)}")


def _build(tmp: Path, names, flags, out: Path, jobs: int):
    """Compile ``names`` (in ``tmp``) to objects, ``jobs`` at a time, and link them; None or an error line."""
    cc = _cc()
    pending = list(names)
    running = []
    failed = None
    try:
        while (pending or running) and failed is None:
            while pending and len(running) < jobs:
                n = pending.pop(0)
                running.append(subprocess.Popen(cc + flags + ["-c", "-o", str(tmp / (n + ".o")), str(tmp / n)],
                                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
            p = running.pop(0)
            text, _ = p.communicate(timeout=3600)
            if p.returncode != 0:
                lines = text.strip().splitlines()
                failed = lines[-1] if lines else f"exit {p.returncode}"
    except (OSError, subprocess.SubprocessError) as e:
        failed = str(e)
    finally:
        for p in running:
            p.kill()
            p.wait()
    if failed is not None:
        return failed
    try:
        p = subprocess.run(cc + ["-shared", "-o", str(out)] + [str(tmp / (n + ".o")) for n in names],
                           capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as e:
        return str(e)
    if p.returncode != 0:
        lines = (p.stderr or p.stdout).strip().splitlines()
        return lines[-1] if lines else f"link: exit {p.returncode}"
    return None
