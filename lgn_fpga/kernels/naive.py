"""difflogic's pure-PyTorch logic layer, kept faithfully as the reference and the baseline.

This is the formulation of ``difflogic.LogicLayer.forward_python``: batch-major
activations ``[B, F]``, the two inputs gathered as ``x[:, a]`` and ``x[:, b]``,
the 16 gate relaxations evaluated one by one and mixed with the weights::

    r = 0
    for i in range(16):
        r = r + w[:, i] * op_i(a, b)

with autograd doing the backward (it saves every intermediate: about 18
batch-by-neuron tensors per layer).  The 16 terms come from
:func:`lgn_fpga.gates.naive_mix_terms`, derived from the gate table.

It is what the fused kernels are tested against (outputs and all gradients)
and the "naive 16-op" column of ``bench/kernels.py``.  Nothing here is fast.
"""
from __future__ import annotations

import torch

from ..gates import NUM_GATES, naive_mix_terms

__all__ = ["gate_weights", "mix", "naive_layer", "naive_net_forward", "MODES"]

MODES = ("softmax", "gumbel-ste", "hard")


def mix(a, b, w):
    """difflogic's ``bin_op_s``: ``sum_i w[:, i] * op_i(a, b)`` for ``a, b [B, N]`` and ``w [N, 16]``."""
    r = torch.zeros_like(a)
    for i, u in enumerate(naive_mix_terms(a, b)):
        r = r + w[..., i] * u
    return r


def gate_weights(logits, mode: str = "softmax", gumbel=None, noise: float = 1.0, tau: float = 1.0):
    """``(w, w_soft)``: the per-neuron mixing weights ``[N, 16]`` of a training mode.

    Parameters
    ----------
    logits : Tensor [N, 16]
    mode : {"softmax", "gumbel-ste", "hard"}
        ``softmax``: ``w = softmax(z)`` (difflogic).  ``gumbel-ste``:
        ``zs = z + noise*gumbel``; ``w = onehot(argmax zs) + (s - s.detach())``
        with ``s = softmax(zs / tau)``: exactly one-hot in the forward, the
        gradient of ``s`` in the backward (straight-through).  ``hard``:
        ``onehot(argmax z)``, no gradient.
    gumbel : Tensor [N, 16], optional
        The Gumbel draw (one per neuron, shared by the batch); zeros if None.

    Returns
    -------
    (w, w_soft) where ``w_soft`` is ``s`` for gumbel-ste (else ``w``).
    """
    if mode == "softmax":
        w = torch.softmax(logits, dim=-1)
        return w, w
    if mode == "hard":
        w = torch.nn.functional.one_hot(logits.detach().argmax(-1), NUM_GATES).to(logits.dtype)
        return w, w
    if mode != "gumbel-ste":
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    zs = logits if gumbel is None else logits + noise * gumbel.to(logits.dtype)
    s = torch.softmax(zs / tau, dim=-1)
    hard = torch.nn.functional.one_hot(zs.detach().argmax(-1), NUM_GATES).to(logits.dtype)
    # s - s.detach() is exactly zero, so w is exactly one-hot in the forward.
    return hard + (s - s.detach()), s


def naive_layer(x, a, b, logits, mode: str = "softmax", gumbel=None, noise: float = 1.0, tau: float = 1.0,
                input_grad: str = "hard"):
    """One logic layer in difflogic's pure-PyTorch form.

    Parameters
    ----------
    x : Tensor [B, F]
        Batch-major activations.
    a, b : Tensor [N] int64
    logits : Tensor [N, 16]
    mode, gumbel, noise, tau
        See :func:`gate_weights`.
    input_grad : {"hard", "soft"}
        gumbel-ste only: the gradient w.r.t. ``x`` flows through the sampled
        gate (``hard``) or through the soft mixture ``s`` (``soft``); the forward
        value is the sampled gate either way.

    Returns
    -------
    Tensor [B, N]
    """
    if input_grad not in ("hard", "soft"):
        raise ValueError(f"input_grad must be 'hard' or 'soft', not {input_grad!r}")
    xa, xb = x[..., a], x[..., b]
    w, w_soft = gate_weights(logits, mode, gumbel, noise, tau)
    if mode != "gumbel-ste" or input_grad == "hard":
        return mix(xa, xb, w)
    # Logit gradient through w (inputs detached); input gradient through the soft mixture, whose
    # forward value is cancelled exactly by subtracting its detached copy.
    y = mix(xa.detach(), xb.detach(), w)
    ys = mix(xa, xb, w_soft.detach())
    return y + (ys - ys.detach())


def naive_net_forward(bits, layers, k: int, tau: float = 1.0, **mode):
    """Class scores ``[B, k]`` of a stack of naive layers and difflogic's GroupSum.

    ``layers`` is a sequence of ``(a, b, logits)`` (or anything with ``.a``,
    ``.b``, ``.logits`` such as :class:`lgn_fpga.train.model.LogicLayer`);
    ``mode`` holds :func:`naive_layer`'s keyword arguments, except that a
    ``gumbel`` entry is a list with one draw per layer.
    """
    gumbels = mode.pop("gumbel", None)
    x = bits
    for i, layer in enumerate(layers):
        a, b, z = (layer.a, layer.b, layer.logits) if hasattr(layer, "logits") else layer
        x = naive_layer(x, a, b, z, gumbel=None if gumbels is None else gumbels[i], **mode)
    return x.reshape(*x.shape[:-1], k, x.shape[-1] // k).sum(-1) / tau
