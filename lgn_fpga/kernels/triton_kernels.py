"""Triton logic-layer kernels for GPUs (neuron-major layout).

Three kernels, each a launcher and an autograd.Function in front:

* forward: one program per ``BLOCK_N`` neurons x ``BLOCK_B`` samples; the two
  input rows are gathered with coalesced loads along the batch, the 4
  coefficients broadcast along it.
* backward, coefficients: one program per ``BLOCK_N`` neurons, looping over
  the batch; the 4 sums ``(g, gA, gB, gAB)`` are kept in registers.
* backward, inputs: a gather over the reverse index (see
  :mod:`.reverse_index`), one program per ``BLOCK_I`` input rows x ``BLOCK_B``
  samples, looping over the consumers of its rows (up to the block's
  largest in-degree, masked beyond each row's own): every element of ``dx`` is
  written by one program, without atomics, deterministically.

Nothing is saved for backward but ``x``, the indices and the coefficients.

Set ``TRITON_INTERPRET=1`` *before this module is imported* to run the
kernels on CPU tensors in Triton's interpreter (that is how CI tests them).
This module imports triton at import time; :mod:`lgn_fpga.kernels` imports it
only when the triton backend is used.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .autograd import logic_function
from .reverse_index import reverse_index

__all__ = ["forward", "backward", "LogicFunction", "INTERPRET"]

#: Whether the kernels were created for Triton's CPU interpreter.
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")

BLOCK_N_FWD = 32
BLOCK_B_FWD = 64
BLOCK_N_DC = 32
BLOCK_B_DC = 64
BLOCK_I_DX = 16
BLOCK_B_DX = 64


@triton.jit
def _forward_kernel(x_ptr, a_ptr, b_ptr, c_ptr, y_ptr, N, B,
                    BLOCK_N: tl.constexpr, BLOCK_B: tl.constexpr):
    rn = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    rs = tl.program_id(1).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    mn = rn < N
    ms = rs < B
    ia = tl.load(a_ptr + rn, mask=mn, other=0)
    ib = tl.load(b_ptr + rn, mask=mn, other=0)
    c0 = tl.load(c_ptr + rn * 4 + 0, mask=mn, other=0.0)[:, None]
    c1 = tl.load(c_ptr + rn * 4 + 1, mask=mn, other=0.0)[:, None]
    c2 = tl.load(c_ptr + rn * 4 + 2, mask=mn, other=0.0)[:, None]
    c3 = tl.load(c_ptr + rn * 4 + 3, mask=mn, other=0.0)[:, None]
    m = mn[:, None] & ms[None, :]
    xa = tl.load(x_ptr + ia[:, None] * B + rs[None, :], mask=m, other=0.0)
    xb = tl.load(x_ptr + ib[:, None] * B + rs[None, :], mask=m, other=0.0)
    y = ((c0 + c1 * xa) + c2 * xb) + c3 * (xa * xb)
    tl.store(y_ptr + rn[:, None] * B + rs[None, :], y, mask=m)


@triton.jit
def _backward_c_kernel(x_ptr, a_ptr, b_ptr, g_ptr, dc_ptr, N, B,
                       BLOCK_N: tl.constexpr, BLOCK_B: tl.constexpr):
    rn = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    mn = rn < N
    ia = tl.load(a_ptr + rn, mask=mn, other=0)
    ib = tl.load(b_ptr + rn, mask=mn, other=0)
    s0 = tl.zeros((BLOCK_N, BLOCK_B), dtype=tl.float32)
    s1 = tl.zeros((BLOCK_N, BLOCK_B), dtype=tl.float32)
    s2 = tl.zeros((BLOCK_N, BLOCK_B), dtype=tl.float32)
    s3 = tl.zeros((BLOCK_N, BLOCK_B), dtype=tl.float32)
    for s_start in range(0, B, BLOCK_B):
        rs = s_start + tl.arange(0, BLOCK_B)
        m = mn[:, None] & (rs < B)[None, :]
        g = tl.load(g_ptr + rn[:, None] * B + rs[None, :], mask=m, other=0.0)
        xa = tl.load(x_ptr + ia[:, None] * B + rs[None, :], mask=m, other=0.0)
        xb = tl.load(x_ptr + ib[:, None] * B + rs[None, :], mask=m, other=0.0)
        ga = g * xa
        s0 += g
        s1 += ga
        s2 += g * xb
        s3 += ga * xb
    tl.store(dc_ptr + rn * 4 + 0, tl.sum(s0, axis=1), mask=mn)
    tl.store(dc_ptr + rn * 4 + 1, tl.sum(s1, axis=1), mask=mn)
    tl.store(dc_ptr + rn * 4 + 2, tl.sum(s2, axis=1), mask=mn)
    tl.store(dc_ptr + rn * 4 + 3, tl.sum(s3, axis=1), mask=mn)


@triton.jit
def _backward_x_kernel(x_ptr, a_ptr, b_ptr, cin_ptr, g_ptr, off_ptr, idx_ptr, maxdeg_ptr, dx_ptr, F, B,
                       BLOCK_I: tl.constexpr, BLOCK_B: tl.constexpr):
    pid_i = tl.program_id(0)
    ri = pid_i.to(tl.int64) * BLOCK_I + tl.arange(0, BLOCK_I)
    rs = tl.program_id(1).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    mi = ri < F
    ms = rs < B
    start = tl.load(off_ptr + ri, mask=mi, other=0)
    end = tl.load(off_ptr + ri + 1, mask=mi, other=0)
    acc = tl.zeros((BLOCK_I, BLOCK_B), dtype=tl.float32)
    deg = tl.load(maxdeg_ptr + pid_i)
    for k in range(0, deg):
        pos = start + k
        valid = pos < end
        code = tl.load(idx_ptr + pos, mask=valid, other=0)
        n = code >> 1
        is_a = (code & 1) == 0
        # The partner is the neuron's other input; the coefficient is c1' (input is A) or c2' (input is B).
        partner = tl.where(is_a, tl.load(b_ptr + n, mask=valid, other=0), tl.load(a_ptr + n, mask=valid, other=0))
        k_lin = tl.where(is_a, tl.load(cin_ptr + n * 4 + 1, mask=valid, other=0.0),
                         tl.load(cin_ptr + n * 4 + 2, mask=valid, other=0.0))
        k_bil = tl.load(cin_ptr + n * 4 + 3, mask=valid, other=0.0)
        m = valid[:, None] & ms[None, :]
        g = tl.load(g_ptr + n[:, None] * B + rs[None, :], mask=m, other=0.0)
        p = tl.load(x_ptr + partner[:, None] * B + rs[None, :], mask=m, other=0.0)
        acc += g * (k_lin[:, None] + k_bil[:, None] * p)
    tl.store(dx_ptr + ri[:, None] * B + rs[None, :], acc, mask=mi[:, None] & ms[None, :])


def _grid_2d(rows, block_rows, B, block_b):
    return (triton.cdiv(rows, block_rows), triton.cdiv(B, block_b))


def _block_max_degree(offsets, block):
    """Largest in-degree within each block of ``block`` input rows (int32, on the index's device)."""
    deg = offsets[1:] - offsets[:-1]
    F = deg.shape[0]
    pad = (-F) % block
    if pad:
        deg = torch.cat([deg, deg.new_zeros(pad)])
    return deg.view(-1, block).amax(1).to(torch.int32) if deg.numel() else deg.to(torch.int32)


def _rev_with_degrees(a, b, F):
    """Reverse index plus per-block max degree, cached with it."""
    off, idx = reverse_index(a, b, F)
    cache = getattr(off, "_lgn_maxdeg", None)
    if cache is None or cache[0] != BLOCK_I_DX:
        cache = (BLOCK_I_DX, _block_max_degree(off, BLOCK_I_DX))
        off._lgn_maxdeg = cache
    return off, idx, cache[1]


def _check(x, a, b, c):
    for name, t in (("a", a), ("b", b), ("c", c)):
        if t.device != x.device:
            raise ValueError(f"{name} must be on {x.device} with x, not on {t.device}")
    if x.device.type != "cuda" and not INTERPRET:
        raise ValueError(f"the triton kernel needs CUDA tensors (or TRITON_INTERPRET=1 set before import), "
                         f"not x on {x.device}")
    if x.dtype != torch.float32 or x.dim() != 2:
        raise ValueError(f"x must be a 2-d float32 tensor [features, batch], not {x.dtype} {tuple(x.shape)}")
    if c.dtype != torch.float32 or c.dim() != 2 or c.shape[1] != 4 or c.shape[0] != a.shape[0]:
        raise ValueError(f"c must be float32 [{a.shape[0]}, 4], not {c.dtype} {tuple(c.shape)}")


def forward(x, a, b, c):
    """``y [N, B]`` for float32 ``x [F, B]``, int64 ``a, b [N]``, ``c [N, 4]`` on one device."""
    _check(x, a, b, c)
    reverse_index(a, b, x.shape[0])  # validates the indices once per index tensor version
    x, a, b, c = x.contiguous(), a.contiguous(), b.contiguous(), c.contiguous()
    N, B = a.shape[0], x.shape[1]
    y = torch.empty((N, B), dtype=torch.float32, device=x.device)
    if N and B:
        _forward_kernel[_grid_2d(N, BLOCK_N_FWD, B, BLOCK_B_FWD)](
            x, a, b, c, y, N, B, BLOCK_N=BLOCK_N_FWD, BLOCK_B=BLOCK_B_FWD)
    return y


def backward(g, x, a, b, c_in, rev=None, need_x=True, need_c=True):
    """``(dx, dc)`` for ``g = dL/dy``; either is None when not needed.

    ``rev`` is ``(offsets, entries, block_max_degree)`` from the forward
    (looked up when None).
    """
    g = g.contiguous().float()
    x, a, b, c_in = x.contiguous(), a.contiguous(), b.contiguous(), c_in.contiguous()
    F, B = x.shape
    N = a.shape[0]
    dx = dc = None
    if need_c:
        if N and B:
            dc = torch.empty((N, 4), dtype=torch.float32, device=x.device)
            _backward_c_kernel[(triton.cdiv(N, BLOCK_N_DC),)](
                x, a, b, g, dc, N, B, BLOCK_N=BLOCK_N_DC, BLOCK_B=BLOCK_B_DC)
        else:
            dc = torch.zeros((N, 4), dtype=torch.float32, device=x.device)
    if need_x:
        if F and B and N:
            off, idx, maxdeg = rev if rev is not None else _rev_with_degrees(a, b, F)
            dx = torch.empty((F, B), dtype=torch.float32, device=x.device)  # every element is written
            _backward_x_kernel[_grid_2d(F, BLOCK_I_DX, B, BLOCK_B_DX)](
                x, a, b, c_in, g, off, idx, maxdeg, dx, F, B, BLOCK_I=BLOCK_I_DX, BLOCK_B=BLOCK_B_DX)
        else:
            dx = torch.zeros((F, B), dtype=torch.float32, device=x.device)
    return dx, dc


LogicFunction = logic_function(forward, backward, _rev_with_degrees, "Triton")
