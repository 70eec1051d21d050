"""C/OpenMP logic-layer kernel for CPUs, built at first use and loaded through ctypes.

The source is ``logic_cpu.c`` beside this file.  At first use it is compiled
with the system C compiler (``$CC``, else ``cc``) into a per-user cache
directory (``$LGN_FPGA_CACHE``, else ``$XDG_CACHE_HOME/lgn-fpga`` or
``~/.cache/lgn-fpga``), under a name keyed by a hash of the source, the
compiler, its flags and (for ``-march=native``) the CPU, so a changed source or
machine gets a fresh build and concurrent first uses cannot clash.  No torch
C++ extension and no CUDA toolkit are involved.

Threads: ``LGN_FPGA_THREADS`` when set, else ``torch.get_num_threads()``.

The build is :func:`lgn_fpga.ccompile.build_library`'s: flag sets are tried from
the fastest down (``-march=native -fopenmp`` first); one that fails leaves a
``.failed`` marker so that later processes go straight to the next (delete the
cache directory to retry).  If no compiler works,
:func:`available` is False and :func:`unavailable_reason` says why;
``backend="auto"`` then falls back to the reference kernel.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import threading
from pathlib import Path

import torch

from ..ccompile import build_library, cache_root, cc_command, extra_cflags
from ..errors import LgnError
from .autograd import logic_function
from .reverse_index import check_indices
from .reverse_index import reverse_index as _cached_reverse_index

__all__ = ["available", "unavailable_reason", "library_info", "num_threads", "forward", "backward",
           "LogicFunction", "GumbelKey", "build", "truth_tables", "hard_stack", "gumbel_ste_coefficients",
           "conn_pick", "conn_grad", "reverse_index_c"]

SOURCE = Path(__file__).with_name("logic_cpu.c")
ABI_VERSION = 10

_i64 = ctypes.c_int64
_int = ctypes.c_int
# The C entry points: (argument types, return type); ``_p`` is a pointer.
_p = ctypes.c_void_p
_f32 = ctypes.c_float
_SIGNATURES = {
    "lgn_forward": ([_p, _i64, _p, _p, _p, _p, _i64, _int], None),
    "lgn_backward_c": ([_p, _i64, _p, _p, _p, _p, _i64, _int], None),
    "lgn_backward_xc": ([_p, _i64, _i64, _p, _p, _p, _p, _p, _p, _p, _p, _int], None),
    "lgn_pack": ([_p, _i64, _i64, _p, _int], _i64),
    "lgn_use_tiles": ([_int], _int),
    "lgn_gumbel_noise": ([_p, _i64, ctypes.c_uint64, _int], None),
    "lgn_gumbel_coeffs": ([_p, _p, _f32, _f32, _p, _i64, _p, _p, _p, _p, ctypes.c_uint64, _int, _int], _int),
    "lgn_gumbel_coeffs_backward": ([_p, _p, _f32, _p, _i64, _p, _int], None),
    "lgn_truth_tables": ([_p, _i64, _p], _i64),
    "lgn_conn_pick": ([_p, _p, _f32, _p, _i64, _i64, _p, _p, ctypes.c_uint64, _int, _int], None),
    "lgn_conn_grad": ([_p, _i64, _p, _i64, _p, _p, _p, _p, _p, _f32, _i64, _i64, _p, _int], _int),
    "lgn_conn_grad_float": ([_p, _i64, _p, _i64, _p, _p, _p, _p, _p, _f32, _i64, _i64, _p, _int], _int),
    "lgn_reverse_index": ([_p, _p, _i64, _i64, _p, _p], None),
    "lgn_unpack": ([_p, _i64, _i64, _p, _int], None),
    "lgn_group_counts": ([_p, _i64, _i64, _i64, _p, _int], None),
    "lgn_forward_bits": ([_p, _i64, _p, _p, _p, _p, _i64, _int], None),
    "lgn_backward_c_bits": ([_p, _i64, _p, _p, _p, _i64, _p, _i64, _int], None),
    "lgn_backward_xc_bits": ([_p, _i64, _i64, _p, _p, _p, _p, _i64, _p, _p, _p, _p, _int], None),
}

_lock = threading.Lock()
_state: dict = {}   # "lib", "reason", "info": filled once per process by _load()


def cache_dir() -> Path:
    """Directory of the built libraries (created on demand)."""
    return cache_root("kernels")


# Tried in order until one builds.  -ffp-contract=off: no fused multiply-add, so the rounding
# of the forward is the one written in the source on every machine.
_FLAG_SETS = (
    ["-O3", "-march=native", "-fopenmp"],
    ["-O3", "-fopenmp"],
    ["-O3", "-march=native", "-fopenmp-simd"],   # no OpenMP runtime (e.g. Apple clang): one thread, SIMD kept
    ["-O3", "-march=native"],
    ["-O2"],
)
_COMMON = ["-std=c11", "-fPIC", "-ffp-contract=off", "-fno-math-errno"]


def build(cc: str | None = None, directory: Path | None = None) -> tuple[Path | None, str, list[str]]:
    """Compile ``logic_cpu.c`` (or find it already built), through :func:`lgn_fpga.ccompile.build_library`.

    Parameters
    ----------
    cc : str, optional
        Compiler command (may contain arguments); default ``$CC`` or ``cc``.
    directory : Path, optional
        Cache directory; default :func:`cache_dir`.

    Returns
    -------
    (path, reason, flags)
        ``path`` of the shared library, or None with ``reason`` saying why
        nothing could be built; ``flags`` are those the library was built with.
    """
    cc_cmd = cc_command(cc)
    if not cc_cmd or shutil.which(cc_cmd[0]) is None:
        name = cc_cmd[0] if cc_cmd else "''"
        return None, (f"no C compiler found ({name!r} is not on PATH); install gcc or clang, "
                      f"or set CC to one"), []
    directory = Path(directory) if directory is not None else cache_dir()
    src = SOURCE.read_text()
    flag_sets = [f + _COMMON + extra_cflags() for f in _FLAG_SETS]
    try:
        built = build_library(directory, "logic_cpu", [src], {SOURCE.name: src}, flag_sets, cc=cc_cmd,
                              remember_failures=True, timeout=300)
    except OSError as e:
        return None, f"cannot write to the kernel cache {directory} ({e}); set LGN_FPGA_CACHE to a writable dir", []
    if built.path is None:
        return None, f"{cc_cmd[0]} could not build {SOURCE.name}: " + "; ".join(built.errors), []
    return built.path, "", built.flags


def _load():
    with _lock:
        if _state:
            return _state.get("lib")
        path, reason, flags = build()
        lib = None
        if path is not None:
            try:
                lib = ctypes.CDLL(str(path))
                if lib.lgn_abi_version() != ABI_VERSION:
                    lib, reason = None, f"{path} has ABI {lib.lgn_abi_version()}, expected {ABI_VERSION}"
            except OSError as e:
                lib, reason = None, f"cannot load {path}: {e}"
        if lib is not None:
            for name, (argtypes, restype) in _SIGNATURES.items():
                fn = getattr(lib, name)
                fn.argtypes, fn.restype = argtypes, restype
            _state["info"] = {"path": str(path), "flags": flags, "openmp": bool(lib.lgn_has_openmp())}
        _state["lib"] = lib
        _state["reason"] = reason
        return lib


def available() -> bool:
    """Whether the C kernel is built (building it now if needed) and loadable."""
    return _load() is not None


def unavailable_reason() -> str:
    """Why :func:`available` is False ('' when it is True)."""
    _load()
    return _state.get("reason", "")


def library_info() -> dict:
    """``{"path", "flags", "openmp"}`` of the loaded library (empty when unavailable)."""
    _load()
    return dict(_state.get("info", {}))


def num_threads() -> int:
    """Threads the C kernel uses: ``LGN_FPGA_THREADS`` if set, else ``torch.get_num_threads()``."""
    v = os.environ.get("LGN_FPGA_THREADS")
    if v:
        try:
            n = int(v)
        except ValueError:
            raise LgnError(f"LGN_FPGA_THREADS must be a positive integer, not {v!r}") from None
        if n < 1:
            raise LgnError(f"LGN_FPGA_THREADS must be a positive integer, not {v!r}")
        return n
    return torch.get_num_threads()


def _lib():
    lib = _load()
    if lib is None:
        raise LgnError(f"the C kernel is unavailable: {_state['reason']}; use --kernel reference")
    return lib


def gumbel_noise(shape, key: int) -> torch.Tensor:
    """Standard Gumbel samples ``[shape]`` (float32), a pure function of ``key`` (0 <= key < 2**64) and the
    element's index: ``lgn_gumbel_noise`` in logic_cpu.c (the definition of the stream)."""
    out = torch.empty(shape, dtype=torch.float32)
    _lib().lgn_gumbel_noise(out.data_ptr(), out.numel(), int(key), num_threads())
    return out


class GumbelKey:
    """Gumbel noise not drawn yet: the ``shape`` first values of the stream of ``key`` (:func:`gumbel_noise`).
    The C Gumbel-STE op makes the values where it uses them (a 48k-gate step no longer writes 3 MB of noise
    and reads it back); anything else takes :meth:`tensor`, the same values."""
    __slots__ = ("key", "shape")

    def __init__(self, key: int, shape):
        self.key, self.shape = int(key), tuple(int(d) for d in shape)

    def tensor(self) -> torch.Tensor:
        return gumbel_noise(self.shape, self.key)


def _noise_args(noise) -> tuple:
    """``(pointer, key, keyed)``: how a C op that takes noise (``lgn_gumbel_coeffs``, ``lgn_conn_pick``) reads
    ``noise``: a float32 tensor's data, the stream of a :class:`GumbelKey` (made in the op), or none."""
    if isinstance(noise, GumbelKey):
        return None, noise.key, 1
    return (None if noise is None else noise.data_ptr()), 0, 0


def noise_tensor(noise, dtype):
    """``noise`` (a tensor, a :class:`GumbelKey`, or None) as a tensor of ``dtype`` (None stays None)."""
    if noise is None:
        return None
    return (noise if isinstance(noise, torch.Tensor) else noise.tensor()).to(dtype)


def reverse_index(a, b, F):
    """The cached reverse index of ``a``, ``b`` (:mod:`.reverse_index`), built in C; validates the indices."""
    return _cached_reverse_index(a, b, F, builder=reverse_index_c)


def _check(x, a, b, c):
    for name, t in (("x", x), ("a", a), ("b", b), ("c", c)):
        if t.device.type != "cpu":
            raise ValueError(f"the cpu kernel needs CPU tensors, not {name} on {t.device}")
    if x.dtype != torch.float32 or x.dim() != 2:
        raise ValueError(f"x must be a 2-d float32 tensor [features, batch], not {x.dtype} {tuple(x.shape)}")
    if c.dtype != torch.float32 or c.dim() != 2 or c.shape[1] != 4 or c.shape[0] != a.shape[0]:
        raise ValueError(f"c must be float32 [{a.shape[0]}, 4], not {c.dtype} {tuple(c.shape)}")


def forward(x, a, b, c):
    """``y [N, B]`` for contiguous float32 ``x [F, B]``, int64 ``a, b [N]``, ``c [N, 4]``.

    Indices are checked (once per index tensor version, see :func:`reverse_index`).
    """
    lib = _lib()
    _check(x, a, b, c)
    reverse_index(a, b, x.shape[0])  # validates the indices (cached): C must never read out of bounds
    x, a, b, c = x.contiguous(), a.contiguous(), b.contiguous(), c.contiguous()
    N, B = a.shape[0], x.shape[1]
    y = torch.empty((N, B), dtype=torch.float32)
    if N and B:
        lib.lgn_forward(x.data_ptr(), B, a.data_ptr(), b.data_ptr(), c.data_ptr(), y.data_ptr(), N, num_threads())
    return y


def backward(g, x, a, b, c_in, rev=None, need_x=True, need_c=True):
    """``(dx, dc)`` for ``g = dL/dy``; either is None when not needed.

    ``rev`` is the ``(offsets, entries)`` reverse index of ``(a, b)`` over
    ``x.shape[0]`` inputs (looked up when None).
    """
    lib = _lib()
    g = g.contiguous().float()
    x, a, b, c_in = x.contiguous(), a.contiguous(), b.contiguous(), c_in.contiguous()
    F, B = x.shape
    N = a.shape[0]
    nt = num_threads()
    empty = not (F and B and N)
    # The kernels write every element; only a degenerate shape needs zeros.
    dc = (torch.zeros if empty else torch.empty)((N, 4), dtype=torch.float32) if need_c else None
    dx = (torch.zeros if empty else torch.empty)((F, B), dtype=torch.float32) if need_x else None
    if empty:
        return dx, dc
    if need_x:
        off, idx = rev if rev is not None else reverse_index(a, b, F)
        lib.lgn_backward_xc(x.data_ptr(), F, B, a.data_ptr(), b.data_ptr(), c_in.data_ptr(), g.data_ptr(),
                            off.data_ptr(), idx.data_ptr(), dx.data_ptr(),
                            dc.data_ptr() if need_c else None, nt)
    elif need_c:
        lib.lgn_backward_c(x.data_ptr(), B, a.data_ptr(), b.data_ptr(), g.data_ptr(), dc.data_ptr(), N, nt)
    return dx, dc


LogicFunction = logic_function(forward, backward, reverse_index, "C")


# ----------------------------------------------------------------------------------------------- bit-packed path

def truth_tables(c: torch.Tensor) -> torch.Tensor | None:
    """uint8 ``[N]`` truth tables ``f(0,0) | f(1,0)<<1 | f(0,1)<<2 | f(1,1)<<3`` when ``c [N, 4]`` holds hard
    gates only, else None.

    Hard: every row is exactly the coefficient row of one of the 16 gates (what argmax and the Gumbel-STE
    sample give), so that on 0/1 inputs the float forward is exactly that gate.
    """
    known = getattr(c, "_lgn_tt", None)           # set by GumbelSTE: the sampled gates' tables, formed with c
    if known is not None and known[1] == c._version:
        return known[0]
    c = c.detach()
    if c.dtype != torch.float32 or c.dim() != 2 or c.shape[1] != 4 or c.device.type != "cpu":
        return None
    c = c.contiguous()
    tt = torch.empty(c.shape[0], dtype=torch.uint8)
    return None if _lib().lgn_truth_tables(c.data_ptr(), c.shape[0], tt.data_ptr()) else tt


_scratch = threading.local()


def _scratch_rows(slot: int, rows: int, B: int) -> torch.Tensor:
    """A reused ``[rows, B]`` float buffer (two slots per thread) for the gradients between the layers of
    :class:`HardStack`: fresh multi-MB tensors cost a page fault per 4 KB on every step."""
    bufs = getattr(_scratch, "bufs", None)
    if bufs is None:
        bufs = _scratch.bufs = [torch.empty(0), torch.empty(0)]
    if bufs[slot].numel() < rows * B:
        bufs[slot] = torch.empty(rows * B, dtype=torch.float32)
    return bufs[slot][: rows * B].view(rows, B)


class HardStack(torch.autograd.Function):
    """Logic layers with hard gates on 0/1 inputs, bit-packed: ``apply(x, xbits, wiring, conns, *ts) -> y`` (float).

    ``wiring``: one ``(a, b, tt)`` per layer; ``conns``: per layer None, or ``(ws, cand, tau)`` of its learned
    connections; ``ts``: ``c, c_in, w`` per layer (``c_in`` may be None; ``w`` the connection logits, or None).
    Saves the packed input of every layer (1 bit per activation) and the input-gradient coefficients;
    the backward reads the bits (also for the connection logits' gradient, :func:`conn_grad`).
    """

    @staticmethod
    def forward(ctx, x, xbits, wiring, conns, groups, *ts):
        lib, nt = _lib(), num_threads()
        B = x.shape[1]
        W = xbits.shape[1]
        bits = [xbits]
        for a, b, tt in wiring:
            y = torch.empty((a.shape[0], W), dtype=torch.int64)
            lib.lgn_forward_bits(bits[-1].data_ptr(), W, a.data_ptr(), b.data_ptr(), tt.data_ptr(), y.data_ptr(),
                                 a.shape[0], nt)
            bits.append(y)
        N = bits[-1].shape[0]
        if groups:
            # The class counts [groups, B], popcounts of the last layer's bits (no float copy of the layer).
            out = torch.empty((groups, B), dtype=torch.float32)
            lib.lgn_group_counts(bits[-1].data_ptr(), N, B, groups, out.data_ptr(), nt)
        else:
            out = torch.empty((N, B), dtype=torch.float32)
            lib.lgn_unpack(bits[-1].data_ptr(), N, B, out.data_ptr(), nt)
        ctx.bits, ctx.wiring, ctx.conns, ctx.B, ctx.groups = bits[:-1], wiring, conns, B, groups
        # The reverse indices of the wiring as it was in this forward, as the float path keeps them (cached:
        # hard_stack built them when it checked the indices).
        ctx.revs = [reverse_index(a, b, xb.shape[0]) for (a, b, _), xb in zip(wiring, ctx.bits)]
        ctx.c_in = [(ts[3 * l] if ts[3 * l + 1] is None else ts[3 * l + 1]).detach().contiguous()
                    for l in range(len(wiring))]
        return out

    @staticmethod
    def backward(ctx, gy):
        lib, nt, B = _lib(), num_threads(), ctx.B
        need = ctx.needs_input_grad
        L = len(ctx.wiring)
        need_c = [need[5 + 3 * l] for l in range(L)]
        need_w = [need[7 + 3 * l] for l in range(L)]
        grads = [None] * (3 * L)
        gy = gy.float()
        # With groups the top layer reads the class counts' gradient [groups, B] directly: every neuron of a group
        # the same row (gdiv neurons per row; a broadcast copy of it took 2 ms of a 9 ms 48k-gate step as
        # autograd's, 0.15 ms as a contiguous copy).  Else an [N, B] gradient (contiguous: it may arrive broadcast).
        gdiv = 1
        if ctx.groups:
            g, gdiv = gy.contiguous(), ctx.wiring[-1][0].shape[0] // ctx.groups
        else:
            g = gy if gy.is_contiguous() else _scratch_rows(L % 2, *gy.shape).copy_(gy)
        dx = None
        for l in reversed(range(L)):
            a, b, _ = ctx.wiring[l]
            xb, N = ctx.bits[l], a.shape[0]
            F = xb.shape[0]
            if need_w[l]:
                ws, cand, tau = ctx.conns[l]
                grads[3 * l + 2] = _conn_grad_bits(xb, B, g, a, b, ctx.c_in[l], cand, ws, tau, gdiv)
            want_x = need[0] if l == 0 else (need[0] or any(need_c[:l]) or any(need_w[:l]))
            dc = torch.empty((N, 4), dtype=torch.float32) if need_c[l] else None
            dx = None
            if want_x:
                off, idx = ctx.revs[l]
                # Between layers the gradient lives in the two scratch slots, alternately; the input's is fresh.
                dx = torch.empty((F, B), dtype=torch.float32) if l == 0 else _scratch_rows(l % 2, F, B)
                lib.lgn_backward_xc_bits(xb.data_ptr(), F, B, a.data_ptr(), b.data_ptr(), ctx.c_in[l].data_ptr(),
                                         g.data_ptr(), gdiv, off.data_ptr(), idx.data_ptr(), dx.data_ptr(),
                                         dc.data_ptr() if dc is not None else None, nt)
            elif dc is not None:
                lib.lgn_backward_c_bits(xb.data_ptr(), B, a.data_ptr(), b.data_ptr(), g.data_ptr(), gdiv,
                                        dc.data_ptr(), N, nt)
            grads[3 * l] = dc
            if dx is None:
                break
            g, gdiv = dx, 1
        return (dx if need[0] else None, None, None, None, None, *grads)


def hard_stack(x, layers, groups: int | None = None):
    """The output ``[N, B]`` of logic ``layers`` (each ``(a, b, c, c_in)`` or ``(a, b, c, c_in, conn)``, ``conn``
    None or the learned connections' ``(w, ws, cand, tau)``), or with ``groups`` the counts ``[groups, B]`` of
    the last layer's ones in each of its ``groups`` contiguous blocks, through the bit-packed kernels, or None when the
    forward is not hard (a gate that is not hard, an input that is not 0/1, an empty shape): the caller then
    runs the float kernels.  Same values and gradients as :func:`forward`/:func:`backward` layer by layer
    (gradient sums in another order)."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or x.dim() != 2 or 0 in x.shape or not layers:
        return None
    wiring, conns, ts, F = [], [], [], x.shape[0]
    for layer in layers:
        a, b, c, c_in = layer[:4]
        conn = layer[4] if len(layer) > 4 else None
        if a.shape[0] == 0:
            return None
        _check(x, a, b, c)
        tt = truth_tables(c)
        if tt is None:
            return None
        reverse_index(a, b, F)  # validates the indices (cached): C must never read out of bounds
        wiring.append((a.contiguous(), b.contiguous(), tt))
        if conn is not None:
            w, ws, cand, tau = conn
            if cand.shape[-1] > 64:
                return None
            _check_candidates(cand, F)
            conns.append((ws.detach().contiguous().float(), cand.contiguous(), float(tau)))
            ts += [c, c_in, w]
        else:
            conns.append(None)
            ts += [c, c_in, None]
        F = a.shape[0]
    lib = _lib()
    x = x.contiguous()
    xbits = torch.empty((x.shape[0], (x.shape[1] + 63) // 64), dtype=torch.int64)
    if lib.lgn_pack(x.data_ptr(), x.shape[0], x.shape[1], xbits.data_ptr(), num_threads()):
        return None
    return HardStack.apply(x, xbits, tuple(wiring), tuple(conns), groups, *ts)


# ----------------------------------------------------------------------------------------------- Gumbel-STE coefficients

class GumbelSTE(torch.autograd.Function):
    """``apply(z, noise, scale, tau, M) -> (c, c_soft)``: the sampled gate's coefficients (gradient through
    ``softmax((z + scale*noise) / tau) @ M``, straight-through) and the soft mixture (no gradient)."""

    @staticmethod
    def forward(ctx, z, noise, scale, tau, M):
        lib, nt = _lib(), num_threads()
        z = z.detach().contiguous()
        N = z.shape[0]
        c_hard = torch.empty((N, 4), dtype=torch.float32)
        c_soft = torch.empty((N, 4), dtype=torch.float32)
        p = torch.empty((N, 16), dtype=torch.float32)
        tt = torch.empty(N, dtype=torch.uint8)
        tables = True
        if N:
            g, key, keyed = _noise_args(noise)
            tables = lib.lgn_gumbel_coeffs(z.data_ptr(), g, scale, tau, M.data_ptr(), N, c_hard.data_ptr(),
                                           c_soft.data_ptr(), p.data_ptr(), tt.data_ptr(), key, keyed, nt) == 1
        ctx.save_for_backward(p, M)
        ctx.tau = tau
        ctx.mark_non_differentiable(c_soft)
        # The sampled gates' truth tables ride along (with the version they hold for), so that the bit-packed
        # stack need not recover them from c_hard (truth_tables: 0.15 ms a 48k-gate step); the same tables.
        if tables:                                  # (M not the 16 gates: no tables, the stack checks c itself)
            c_hard._lgn_tt = (tt, c_hard._version)
        return c_hard, c_soft

    @staticmethod
    def backward(ctx, dc, _):
        p, M = ctx.saved_tensors
        dz = torch.empty_like(p)
        if p.shape[0]:
            lib = _lib()
            lib.lgn_gumbel_coeffs_backward(p.data_ptr(), dc.contiguous().float().data_ptr(), ctx.tau, M.data_ptr(),
                                           p.shape[0], dz.data_ptr(), num_threads())
        return dz, None, None, None, None


def gumbel_ste_coefficients(z, noise, scale: float, tau: float, M):
    """The C version of :func:`lgn_fpga.kernels.reference.gumbel_ste_coefficients` (one pass, no torch ops:
    at 8,000 neurons a dozen small torch ops cost more than the layer's kernels); None when ``z`` is not a
    float32 CPU tensor with 16 logits per neuron."""
    if z.device.type != "cpu" or z.dtype != torch.float32 or z.dim() != 2 or z.shape[1] != 16:
        return None
    if isinstance(noise, GumbelKey):
        if tuple(noise.shape) != tuple(z.shape):
            return None
    elif noise is not None:
        noise = noise.detach().to(torch.float32).contiguous()
        if noise.shape != z.shape or noise.device.type != "cpu":
            return None
    M = M.detach().to(torch.float32).contiguous()
    return GumbelSTE.apply(z, noise, float(scale), float(tau), M)


def _check_candidates(cand, F):
    """Raise ValueError unless every candidate index lies in ``[0, F)``.  Checked once per candidate tensor
    version (the candidates are a buffer that training never changes; the check ran twice per layer per step)."""
    key = (cand.data_ptr(), cand._version, tuple(cand.shape), int(F))
    if getattr(cand, "_lgn_checked", None) == key:
        return
    if cand.numel() and (int(cand.min()) < 0 or int(cand.max()) >= F):
        raise ValueError(f"candidate indices must lie in [0, {F})")
    try:
        cand._lgn_checked = key
    except (AttributeError, RuntimeError):
        pass  # some tensor subclasses refuse attributes: checked every time, still correct


def conn_pick(w, noise, scale: float, cand):
    """``(ws, a, b)``: the logits plus ``scale * noise`` and the signals each gate's inputs pick (the first
    argmax, as torch's), for float32 CPU ``w`` ``[2, N, K]`` and int64 ``cand`` ``[2, N, K]``."""
    lib = _lib()
    w = w.detach().contiguous().float()
    if w.dim() != 3 or (w.numel() == 0 and w.shape[1] > 0):
        raise ValueError(f"connection logits must be [2, N, K] with K >= 1, not {list(w.shape)}")
    if isinstance(noise, GumbelKey):          # the kernel makes the stream's values where it uses them
        if tuple(noise.shape) != tuple(w.shape) or w.shape[-1] > 64:
            noise = noise.tensor()
    elif noise is not None:
        noise = noise.detach().contiguous().float()
    cand = cand.contiguous()
    S, N, K = w.shape
    ws = torch.empty_like(w)
    sel = torch.empty((S, N), dtype=torch.int64)
    if w.numel():
        n_ptr, key, keyed = _noise_args(noise)
        lib.lgn_conn_pick(w.data_ptr(), n_ptr, float(scale), cand.data_ptr(), S * N, K, ws.data_ptr(),
                          sel.data_ptr(), key, keyed, num_threads())
    return ws, sel[0], sel[1]


def conn_grad(g, x, a, b, c, cand, ws, tau: float):
    """``dw [2, N, K]``, the connection logits' gradient (see :class:`lgn_fpga.kernels.connections.ConnectionSTE`)
    for a float32 CPU input ``x`` ``[F, B]``: bit-packed when ``x`` is 0/1, on the floats otherwise; None for
    more than 64 candidates (the caller's torch path runs)."""
    lib = _lib()
    F, B = x.shape
    if cand.shape[-1] > 64:
        return None
    _check_candidates(cand, F)
    reverse_index(a, b, F)  # validates a and b (cached)
    x = x.detach().contiguous()
    bits = torch.empty((F, (B + 63) // 64), dtype=torch.int64)
    if F and B and lib.lgn_pack(x.data_ptr(), F, B, bits.data_ptr(), num_threads()) == 0:
        return _conn_grad_bits(bits, B, g, a, b, c, cand, ws, tau)
    return _conn_grad_call(lib.lgn_conn_grad_float, x, B, g, a, b, c, cand, ws, tau)


def _conn_grad_bits(bits, B, g, a, b, c, cand, ws, tau, gdiv: int = 1):
    """:func:`conn_grad` on the packed input ``bits`` ``[F, ceil(B/64)]`` (validated indices); ``g`` has a row per
    ``gdiv`` neurons (the class counts' gradient of the top layer: one row per group)."""
    return _conn_grad_call(_lib().lgn_conn_grad, bits, B, g, a, b, c, cand, ws, tau, gdiv)


def _conn_grad_call(fn, x, B, g, a, b, c, cand, ws, tau, gdiv: int = 1):
    """``dw [2, N, K]`` from one of the C connection-gradient kernels (``x``: bits or floats, as ``fn`` reads;
    ``gdiv``: neurons per row of ``g``)."""
    _, N, K = cand.shape
    g, c, cand, ws = g.contiguous().float(), c.contiguous().float(), cand.contiguous(), ws.contiguous().float()
    dw = (torch.empty if N and B else torch.zeros)((2, N, K), dtype=torch.float32)   # the kernel writes every row
    if N and B and fn(x.data_ptr(), B, g.data_ptr(), int(gdiv), a.contiguous().data_ptr(), b.contiguous().data_ptr(),
                      c.data_ptr(), cand.data_ptr(), ws.data_ptr(), float(tau), N, K, dw.data_ptr(), num_threads()):
        raise MemoryError("the connection-gradient kernel ran out of memory for its per-thread buffers")
    return dw


def reverse_index_c(a, b, F):
    """``(offsets, entries)`` of :func:`lgn_fpga.kernels.reverse_index.build` by a counting sort in C (a
    learned wiring changes every step, and torch's stable sort cost 4 ms per 16,000-gate layer)."""
    check_indices(a, b, F)
    lib = _lib()
    N = a.shape[0]
    offsets = torch.empty(F + 1, dtype=torch.int64)
    entries = torch.empty(2 * N, dtype=torch.int64)
    lib.lgn_reverse_index(a.contiguous().data_ptr(), b.contiguous().data_ptr(), N, F, offsets.data_ptr(),
                          entries.data_ptr())
    if F >= 0 and int(offsets[F]) < 0:
        raise MemoryError("lgn_reverse_index: out of memory")
    return offsets, entries
