"""Pure-PyTorch reference kernel in the 4-coefficient form (neuron-major layout).

A layer computes, for every neuron ``n`` and sample ``s``::

    y[n, s] = c0[n] + c1[n]*A + c2[n]*B + c3[n]*A*B,   A = x[a[n], s],  B = x[b[n], s]

Backward (``g = dL/dy``)::

    dc[n]  = sum_s g * (1, A, B, A*B)
    dx[a[n], s] += g * (c1' + c3'*B);   dx[b[n], s] += g * (c2' + c3'*A)

where ``c'`` is ``c_in`` (the coefficients the input gradient flows through)
or ``c`` itself.  Only ``x``, the indices and the coefficients are saved; the
gathers are recomputed in backward, so memory stays O(N*B) for the output only.
"""
from __future__ import annotations

import torch

from .autograd import logic_function

__all__ = ["forward", "backward", "LogicFunction", "gumbel_ste_coefficients", "connection_pick", "connection_grad",
           "check_groups", "group_counts"]


def forward(x, a, b, c):
    A = x.index_select(0, a)
    B = x.index_select(0, b)
    c0, c1, c2, c3 = (c[:, i:i + 1] for i in range(4))
    return torch.addcmul(torch.addcmul(c0 + c1 * A, c2, B), c3, A * B)


def backward(g, x, a, b, c_in, need_x=True, need_c=True):
    A = x.index_select(0, a)
    B = x.index_select(0, b)
    gc = gx = None
    if need_c:
        gA = g * A
        gc = torch.stack([g.sum(1), gA.sum(1), (g * B).sum(1), (gA * B).sum(1)], dim=1)
    if need_x:
        c1, c2, c3 = (c_in[:, i:i + 1] for i in (1, 2, 3))
        gx = torch.zeros_like(x)
        gx.index_add_(0, a, g * (c1 + c3 * B))
        gx.index_add_(0, b, g * (c2 + c3 * A))
    return gx, gc


def _backward(g, x, a, b, c_in, rev, need_x, need_c):
    return backward(g.contiguous(), x, a, b, c_in, need_x, need_c)


LogicFunction = logic_function(forward, _backward, lambda a, b, F: None, "reference")


def gumbel_ste_coefficients(z, noise, scale: float, tau: float, M):
    """``(c, c_soft)`` of a Gumbel-STE layer with logits ``z [N, 16]`` and Gumbel ``noise`` (None: none).

    ``zs = z + scale*noise``; ``c`` is the coefficient row of ``argmax zs`` in the forward, with the gradient
    of ``c_soft = softmax(zs / tau) @ M`` (straight-through); ``c_soft`` is returned detached.
    """
    zs = z + scale * noise if noise is not None else z
    c_hard = M[zs.detach().argmax(-1)]
    c_soft = torch.softmax(zs / tau, dim=-1) @ M
    # c_soft - c_soft.detach() is exactly zero: the forward uses c_hard bit-exactly,
    # the gradient w.r.t. c reaches the logits through the softmax (straight-through).
    return c_hard + (c_soft - c_soft.detach()), c_soft.detach()


def connection_pick(w, noise, scale: float, cand):
    """Learned connections: ``(ws, a, b)`` with ``ws = w + scale * noise`` (``w``, ``noise``, ``cand``
    ``[2, N, K]``; no noise when None) and the signals each gate's two inputs read, ``cand`` at the argmax of ``ws``."""
    ws = w.detach() + scale * noise if noise is not None else w.detach()
    ab = cand.gather(2, ws.argmax(-1, keepdim=True)).squeeze(-1)
    return ws, ab[0], ab[1]


def connection_grad(g, x, a, b, c, cand, ws, tau: float):
    """``dw [2, N, K]``, the gradient of the connection logits (see :class:`lgn_fpga.kernels.connections.ConnectionSTE`):
    ``d = (g (c1 + c3 x[b]), g (c2 + c3 x[a]))``, ``h[s, n, k] = sum_t d[s, n, t] x[cand[s, n, k], t]``,
    ``dw = p (h - <p, h>) / tau`` with ``p = softmax(ws / tau)``."""
    A, B = x.index_select(0, a), x.index_select(0, b)
    d = torch.stack([g * (c[:, 1:2] + c[:, 3:4] * B), g * (c[:, 2:3] + c[:, 3:4] * A)])
    S, N, K = cand.shape
    h = torch.empty(S, N, K, dtype=d.dtype, device=d.device)
    for s in range(S):
        for k in range(K):
            h[s, :, k] = (d[s] * x.index_select(0, cand[s, :, k])).sum(1)
    p = torch.softmax(ws / tau, dim=-1)
    return p * (h - (p * h).sum(-1, keepdim=True)) / tau


def check_groups(N: int, groups: int) -> None:
    """A last layer of ``N`` rows splits into ``groups`` equal class blocks, or ValueError."""
    if N % groups:
        raise ValueError(f"last layer width {N} is not divisible by {groups} classes")


def group_counts(y, groups: int):
    """The sums ``[groups, B]`` of the ``groups`` equal, contiguous blocks of rows of ``y [N, B]`` (GroupSum's
    class counts, before its temperature)."""
    N, B = y.shape
    check_groups(N, groups)
    return y.reshape(groups, N // groups, B).sum(1)
