"""The autograd wrapper shared by the fused backends (C and Triton).

A backend supplies ``forward(x, a, b, c)``, ``backward(g, x, a, b, c_in, rev,
need_x, need_c) -> (dx, dc)`` and ``rev(a, b, F)``, the reverse index its input
gradient needs.  The Function saves only ``x``, the indices and the coefficients
the input gradient flows through (``c_in``, or ``c`` when it is None).
"""
from __future__ import annotations

import torch


def logic_function(forward, backward, rev, backend: str) -> type:
    """A ``torch.autograd.Function`` over one backend's kernels; ``apply(x, a, b, c, c_in)``."""

    class LogicFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, a, b, c, c_in):
            x = x.contiguous()
            y = forward(x, a, b, c.detach())
            ctx.rev = rev(a, b, x.shape[0]) if ctx.needs_input_grad[0] else None
            ctx.save_for_backward(x, a, b, (c if c_in is None else c_in).detach())
            return y

        @staticmethod
        def backward(ctx, g):
            x, a, b, c_in = ctx.saved_tensors
            dx, dc = backward(g, x, a, b, c_in, ctx.rev, ctx.needs_input_grad[0], ctx.needs_input_grad[3])
            return dx, None, None, dc, None

    LogicFunction.__doc__ = f"autograd.Function over the {backend} kernels.  Saves only ``x``, the indices and the coefficients."
    LogicFunction.__qualname__ = LogicFunction.__name__ = f"LogicFunction[{backend}]"
    return LogicFunction
