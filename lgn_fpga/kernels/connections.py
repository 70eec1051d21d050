"""Learned connections in the float path: the straight-through connection logits' gradient as an autograd node.

The bit-packed stack (:class:`lgn_fpga.kernels.cpu.HardStack`) computes the same gradient inside its own
backward; :func:`lgn_fpga.kernels.logic_stack` uses this node whenever a layer runs on the float kernels.
"""
from __future__ import annotations

import torch

from . import reference

__all__ = ["ConnectionSTE", "connection_pick", "connection_grad"]


def _c_kernel(backend: str, t) -> bool:
    """Whether the C kernel serves ``t`` under ``backend`` (``auto``: on a CPU when the library builds)."""
    if backend not in ("cpu", "auto") or t.device.type != "cpu" or t.dtype != torch.float32:
        return False
    from . import cpu
    return backend == "cpu" or cpu.available()


def connection_pick(w, noise, scale: float, cand, backend: str = "reference"):
    """Learned connections: ``(ws, a, b)``, the connection logits plus ``scale * noise`` and the signal each
    gate input reads (the argmax candidate), see :func:`.reference.connection_pick`.  ``noise``: a tensor,
    None, or :func:`~lgn_fpga.kernels.gumbel_noise`'s lazy key (made into values here unless the C kernel
    takes it)."""
    if _c_kernel(backend, w):
        from . import cpu
        return cpu.conn_pick(w, noise, scale, cand)
    from .cpu import noise_tensor
    return reference.connection_pick(w, noise_tensor(noise, w.dtype), scale, cand)


def connection_grad(g, x, a, b, c, cand, ws, tau: float, backend: str = "reference"):
    """The gradient of the connection logits ``[2, N, K]`` (see :class:`ConnectionSTE`): the C kernel for a
    float32 CPU input under the ``cpu`` or ``auto`` backend (bit-packed when the input is 0/1), else torch."""
    if _c_kernel(backend, x):
        from . import cpu
        dw = cpu.conn_grad(g, x, a, b, c, cand, ws, tau)
        if dw is not None:
            return dw
    return reference.connection_grad(g, x, a, b, c, cand, ws, tau)


class ConnectionSTE(torch.autograd.Function):
    """Identity on a layer's output ``y``; its backward adds the gradient of the connection logits.

    Straight-through, like the gates: the forward read ``x[a]`` (the picked candidate), the backward takes the
    gradient of the soft read ``sum_k p_k x[cand_k]``, ``p = softmax(ws / tau)`` (``ws``: the logits plus the
    step's noise).  With ``dA = g * (c1 + c3 B)`` the gradient a gate's A input gets (``c``: the coefficients the
    input gradient flows through), ``h_k = sum_s dA[s] x[cand_k, s]`` and ``dw_k = p_k (h_k - sum_j p_j h_j) / tau``
    (:func:`lgn_fpga.kernels.connection_grad`); the same for B with ``dB = g * (c2 + c3 A)``.  The input
    gradient itself goes through the picked candidate (the layer's kernel).
    """

    @staticmethod
    def forward(ctx, y, w, ws, x, cand, a, b, c, tau, backend):
        ctx.save_for_backward(ws, x, cand, a, b, c)
        ctx.tau, ctx.backend = tau, backend
        return y.view_as(y)

    @staticmethod
    def backward(ctx, g):
        ws, x, cand, a, b, c = ctx.saved_tensors
        dw = None
        if ctx.needs_input_grad[1]:
            dw = connection_grad(g, x, a, b, c, cand, ws, ctx.tau, ctx.backend).to(ws.dtype)
        return g, dw, None, None, None, None, None, None, None, None
