"""Logic-layer kernels behind one function, :func:`logic_layer`.

Backends: ``reference`` (pure torch, always there), ``cpu`` (C + OpenMP via
ctypes), ``triton`` (GPU).  ``auto`` picks triton for CUDA tensors, the C
kernel for CPU tensors when it builds, and the reference otherwise.  GPU code
is imported lazily so that nothing here needs triton or CUDA on a CPU machine.
Layout, algorithms and measurements: docs/kernels.md.
"""
from __future__ import annotations

import os

import torch

from ..errors import LgnError
from . import reference
from . import connections
from .connections import connection_grad, connection_pick
from .reference import check_groups, group_counts

__all__ = ["gumbel_noise", "group_counts", "logic_layer", "logic_stack", "gumbel_ste_coefficients", "connection_pick", "connection_grad", "available_backends", "resolve_backend", "BACKENDS"]

BACKENDS = ("auto", "reference", "cpu", "triton")


def _c_available() -> bool:
    try:
        from . import cpu
        return cpu.available()
    except Exception:
        return False


def gumbel_noise(shape, generator=None, device=None, lazy: bool = False):
    """Standard Gumbel samples ``-log(-log(U))``, ``U ~ Uniform(0, 1)``, drawn from ``generator``.

    On a CPU with the C kernel: one 62-bit key from ``generator``, then the counter-based stream of
    ``lgn_gumbel_noise`` (logic_cpu.c), about 1 ns a value where torch's ``-log(-log(rand))`` took 10 ns
    (half of a 48k-gate Gumbel-STE step; docs/kernels.md).  Every backend draws through here, so reference
    and C kernels see the same noise, and the generator's state (checkpointed) fixes it.  Elsewhere (a GPU,
    no C compiler): torch's uniforms, from which the clamp keeps the inner log finite.

    ``lazy``: on that CPU path return the key only (:class:`.cpu.GumbelKey`; the generator advances the
    same), for :func:`gumbel_ste_coefficients`, whose C op makes the values where it uses them.
    """
    dev = torch.device(device) if device is not None else (
        generator.device if generator is not None else torch.device("cpu"))
    if dev.type == "cpu" and _c_available():
        from . import cpu
        key = int(torch.randint(0, 1 << 62, (), generator=generator, dtype=torch.int64))
        return cpu.GumbelKey(key, shape) if lazy else cpu.gumbel_noise(shape, key)
    u = torch.rand(shape, generator=generator, device=device)
    return -torch.log(-torch.log(u.clamp_min(1e-38)))


def available_backends() -> list[str]:
    """Backends usable on this machine, fastest first."""
    out = []
    if torch.cuda.is_available():
        try:
            from . import triton_kernels  # noqa: F401
            out.append("triton")
        except Exception:
            pass
    if _c_available():
        out.append("cpu")
    out.append("reference")
    return out


def resolve_backend(backend: str, device) -> str:
    """Name of the backend that runs for ``backend`` on ``device``.

    ``auto``: triton on a CUDA device, the C kernel on the CPU when it
    builds, else the reference.  A concrete name is checked against the
    device, and an unusable one raises :class:`~lgn_fpga.errors.LgnError`
    saying why and what to use instead.
    """
    if backend not in BACKENDS:
        raise ValueError(f"kernel must be one of {', '.join(BACKENDS)}, not {backend!r}")
    dev = torch.device(device)
    if backend == "auto":
        avail = available_backends()
        if dev.type == "cuda" and "triton" in avail:
            return "triton"
        if dev.type == "cpu" and "cpu" in avail:
            return "cpu"
        return "reference"
    if backend == "cpu":
        if dev.type != "cpu":
            raise LgnError(f"kernel 'cpu' runs on the CPU, not on {dev}; use --kernel auto or triton")
        from . import cpu
        if not cpu.available():
            raise LgnError(f"kernel 'cpu' is unavailable: {cpu.unavailable_reason()}; use --kernel reference")
    if backend == "triton":
        interpret = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
        if dev.type != "cuda" and not interpret:
            raise LgnError(f"kernel 'triton' needs a CUDA GPU, not {dev}; use --kernel auto or cpu")
        try:
            from . import triton_kernels  # noqa: F401
        except ImportError as e:
            raise LgnError(f"kernel 'triton' needs triton ({e}); pip install triton, or use --kernel auto") from None
    return backend


def logic_layer(x, a, b, c, c_in=None, backend: str = "reference"):
    """One logic layer, neuron-major.

    Parameters
    ----------
    x : Tensor [F, B] float32
        Inputs, one row per feature, one column per sample.
    a, b : Tensor [N] int64
        Indices of each neuron's two inputs (rows of ``x``).
    c : Tensor [N, 4] float32
        Gate coefficients ``(c0, c1, c2, c3)``; receives a gradient.
    c_in : Tensor [N, 4] or None
        Coefficients the *input* gradient flows through (no gradient of its
        own); ``None`` means ``c``.
    backend : str
        A concrete backend name (see :func:`resolve_backend`).

    Returns
    -------
    Tensor [N, B] float32
    """
    if backend == "auto":
        backend = resolve_backend("auto", x.device)
    if backend == "reference":
        return reference.LogicFunction.apply(x, a, b, c, c_in)
    if backend == "cpu":
        from . import cpu
        y = cpu.hard_stack(x, [(a, b, c, c_in)])
        return y if y is not None else cpu.LogicFunction.apply(x, a, b, c, c_in)
    if backend == "triton":
        from . import triton_kernels
        return triton_kernels.LogicFunction.apply(x, a, b, c, c_in)
    raise ValueError(f"kernel must be one of {', '.join(BACKENDS)}, not {backend!r}")


def logic_stack(x, layers, backend: str = "reference", groups: int | None = None):
    """Logic layers one after the other: ``layers`` is a list of ``(a, b, c, c_in)`` (see :func:`logic_layer`),
    or ``(a, b, c, c_in, conn)`` with ``conn`` None or a layer's learned connections ``(w, ws, cand, tau)``
    (their logits receive the straight-through gradient, :class:`.connections.ConnectionSTE`).

    With the C kernel and a hard forward (every gate hard, every input 0/1: Gumbel-STE training, argmax
    evaluation) the whole stack runs bit-packed, 64 samples per word, and keeps only bits for the backward;
    otherwise it is :func:`logic_layer` layer by layer.  Returns the last layer's ``[N, B]`` float output, or
    with ``groups`` the sums ``[groups, B]`` of its ``groups`` contiguous blocks (GroupSum's counts).
    """
    if backend == "auto":
        backend = resolve_backend("auto", x.device)
    if groups is not None and layers:   # before any work is done
        check_groups(layers[-1][0].shape[0], groups)
    if backend == "cpu":
        from . import cpu
        y = cpu.hard_stack(x, list(layers), groups)
        if y is not None:
            return y
    for layer in layers:
        a, b, c, c_in = layer[:4]
        conn = layer[4] if len(layer) > 4 else None
        y = logic_layer(x, a, b, c, c_in, backend=backend)
        if conn is not None:
            w, ws, cand, tau = conn
            y = connections.ConnectionSTE.apply(y, w, ws, x, cand, a, b, (c if c_in is None else c_in).detach(), tau,
                                                backend)
        x = y
    return x if groups is None else group_counts(x, groups)


def gumbel_ste_coefficients(z, noise, scale: float, tau: float, M, backend: str = "reference"):
    """``(c, c_soft)`` of a Gumbel-STE layer (see :func:`.reference.gumbel_ste_coefficients`); the C kernel
    forms them in one pass (same sampled gate, the soft part equal up to rounding).  ``noise``: a tensor,
    None, or :func:`gumbel_noise`'s lazy key (made into values here unless the C op takes it)."""
    if backend == "auto":
        backend = resolve_backend("auto", z.device)
    if backend == "cpu":
        from . import cpu
        out = cpu.gumbel_ste_coefficients(z, noise, scale, tau, M)
        if out is not None:
            return out
    from .cpu import noise_tensor
    return reference.gumbel_ste_coefficients(z, noise_tensor(noise, z.dtype), scale, tau, M)
