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
keyed by the netlist's content hash, this generator's source and its C files
(``netlist/c/word.h``, ``netlist/c/runtime.c``: the word type, the encoder, the
score extraction and the exported functions), the compiler, its flags and (for
``-march=native``) the CPU, by :func:`lgn_fpga.ccompile.build_library`, the
builder the training kernel uses too.
"""
from __future__ import annotations

import ctypes
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
from ..ccompile import build_library, cache_root, cc_command, extra_cflags, library_path
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



_C_DIR = Path(__file__).with_name("c")
_C_FILES = ("word.h", "runtime.c")


def _c_source(name: str) -> str:
    return (_C_DIR / name).read_text()


def _head(net: Netlist, lanes: int) -> str:
    """What every generated file starts with: the word type for ``lanes``."""
    return (f"/* Generated by lgn_fpga.netlist.cbackend from netlist {net.content_hash()}; do not edit. */\n"
            f"#define LANES {lanes}\n" + _c_source("word.h"))


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
    common = _head(net, lanes)
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
    sizes = dict(ABI_VERSION=ABI_VERSION, N_SLOTS=n_slots, N_INPUTS=net.n_inputs, IMAGE_BYTES=enc.image_bytes,
                 PIXELS=enc.pixels, LEVELS=enc.levels, N_CLASSES=net.n_classes, MAX_PLANES=max_planes)
    main = [common,
            "".join(f"#define {k} {v}\n" for k, v in sizes.items()),
            _c_array("TH", "uint8_t", enc.threshold_array().reshape(-1)),
            _c_array("IN_SLOT", "int32_t", in_slot),
            _c_array("PLANES", "int32_t", [len(p) for p in planes]),
            _c_array("PLANE_SLOT", "int32_t", plane_slot.reshape(-1)),
            _c_array("BIAS", "int32_t", net.bias),
            "".join(f"PART void lgn_part{i}(w_t *restrict s);\n" for i in range(funcs)),
            "static void run(w_t *restrict s) {\n" + "".join(f"  lgn_part{i}(s);\n" for i in range(funcs))
            + "  (void)s;\n}\n",
            _c_source("runtime.c")]
    files["main.c"] = "".join(main)
    return files


# -- build, cache, load ----------------------------------------------------------------

def _key_parts(net: Netlist, lanes: int) -> list:
    """What the generated sources depend on: the netlist, the lanes, the generator and its C files."""
    return [net.content_hash(), str(lanes), Path(__file__).read_bytes(), Path(gates.__file__).read_bytes()] + \
        [(_C_DIR / n).read_bytes() for n in _C_FILES]


def _lib_path(net, lanes, flags):
    return library_path(cache_dir(), "net", _key_parts(net, lanes), _cc(), flags)


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
        t0 = time.perf_counter()
        jobs = os.cpu_count() or 1
        try:
            built = build_library(d, "net", _key_parts(net, lanes), lambda: generate_c(net, lanes, units=2 * jobs),
                                  flag_sets, cc=_cc(), jobs=jobs)
        except OSError as e:
            raise CompileError(f"cannot write to the C cache {d} ({e}); set LGN_FPGA_CACHE to a writable folder") \
                from None
        if built.path is None:
            raise CompileError(f"{_cc()[0]} could not compile the netlist: {'; '.join(built.errors)}")
        cn = CompiledNetlist(net, built.path, built.flags, lanes, time.perf_counter() - t0 if built.compiled else 0.0)
        _loaded[(net.content_hash(), lanes, tuple(built.flags))] = cn
        return cn
