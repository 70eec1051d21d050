"""Reverse index of a layer's wiring: for every input, the (neuron, slot) pairs that read it.

The input gradient of a logic layer is a scatter (``dx[a[n]] += ...``,
``dx[b[n]] += ...``).  Turned around, it is a gather per input row over the
neurons that read that row, so one thread (or program) owns each row of
``dx``: no atomics, and a result that does not depend on the thread count.
That is what difflogic's CUDA kernel does too.

Format (CSR): ``offsets`` int64 ``[F + 1]`` and ``entries`` int64 ``[2N]``;
the consumers of input ``i`` are ``entries[offsets[i]:offsets[i+1]]``, each
``2*n + slot`` with ``slot`` 0 when ``i == a[n]`` and 1 when ``i == b[n]``;
a-slots come first, each group in neuron order (a neuron with ``a[n] == b[n]``
appears twice).

The index is built once per layer and cached on the ``a`` tensor object, keyed
by both tensors' storage, version counters and the input count, so an in-place
change of the wiring is noticed.  Building it also validates the indices,
which the C and Triton kernels rely on to never read out of bounds.
"""
from __future__ import annotations

import torch

__all__ = ["reverse_index", "check_indices"]

_ATTR = "_lgn_reverse_index"


def check_indices(a, b, n_inputs: int) -> None:
    """Raise ValueError unless ``a``, ``b`` are int64 vectors of equal length with values in ``[0, n_inputs)``."""
    for name, t in (("a", a), ("b", b)):
        if not isinstance(t, torch.Tensor) or t.dtype != torch.int64 or t.dim() != 1:
            raise ValueError(f"{name} must be a 1-d int64 tensor, not "
                             f"{getattr(t, 'dtype', type(t).__name__)} {tuple(getattr(t, 'shape', ()))}")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same length, not {a.shape[0]} and {b.shape[0]}")
    if a.device != b.device:
        raise ValueError(f"a and b must be on one device, not {a.device} and {b.device}")
    if a.numel():
        lo = int(torch.minimum(a.min(), b.min()))
        hi = int(torch.maximum(a.max(), b.max()))
        if lo < 0 or hi >= n_inputs:
            raise ValueError(f"wiring indices must lie in [0, {n_inputs}), not [{lo}, {hi}]")


def _key(a, b, n_inputs):
    return (a.data_ptr(), a.storage_offset(), a._version, b.data_ptr(), b.storage_offset(), b._version,
            a.shape[0], int(n_inputs), str(a.device))


def build(a, b, n_inputs: int):
    """``(offsets, entries)`` of the reverse index (see the module doc), on ``a``'s device."""
    check_indices(a, b, n_inputs)
    N = a.shape[0]
    keys = torch.cat([a, b])
    # A stable sort keeps the consumers of each input in slot-major, neuron order: deterministic sums.
    order = torch.sort(keys, stable=True).indices
    entries = (order % max(N, 1)) * 2 + (order >= N).to(torch.int64)
    offsets = torch.zeros(n_inputs + 1, dtype=torch.int64, device=a.device)
    if N:
        offsets[1:] = torch.cumsum(torch.bincount(keys, minlength=n_inputs), 0)
    return offsets, entries


def reverse_index(a, b, n_inputs: int, builder=None):
    """Cached :func:`build` (or ``builder``, a faster one with the same result): the same ``(offsets,
    entries)`` while ``a``, ``b`` are unchanged."""
    key = _key(a, b, n_inputs)
    cached = getattr(a, _ATTR, None)
    if cached is not None and cached[0] == key:
        return cached[1]
    rev = (builder or build)(a, b, n_inputs)
    try:
        setattr(a, _ATTR, (key, rev))
    except (AttributeError, RuntimeError):
        pass  # some tensor subclasses refuse attributes: no cache, still correct
    return rev
