"""Wiring schemes: which two signals of the previous layer each gate reads.

The wiring is fixed at initialization and saved with the model (the layers' ``a``/``b`` buffers), so a
scheme only has to be reproducible from the seed.  Three schemes:

* ``random`` (difflogic): the ``2*out`` input slots cycle through a random permutation of the inputs, so
  every input is read about equally often.  An expander graph: no placement on a chip keeps its wires short.
* ``unique``: ``random`` without repeated pairs or a gate reading one input twice.
* ``local``: wiring the fabric can carry (docs/wiring.md).  Every signal has a *site* on the image's
  ``H x W`` pixel grid: an input bit sits on its pixel (all channels and thresholds of a pixel share the
  site), the gates of a hidden layer are spread evenly over the grid in index order, and the last layer's
  class groups are each spread over the whole grid (so every region feeds every class, and a class's
  popcount starts with local partial counts).  A gate at site ``(y, x)`` draws each of its two inputs from
  a ``window x window`` patch of sites around ``(y, x)`` in the previous layer (the patch is shifted to
  stay inside the grid), then uniformly among the signals of that site.  The receptive field grows by
  ``window - 1`` per layer, as in a convolutional network without weight sharing.

This module is torch-free apart from the generator that draws the random numbers (passed in by the
caller), so the same seed gives the same wiring everywhere.
"""
from __future__ import annotations

import numpy as np

__all__ = ["SCHEMES", "input_sites", "layer_sites", "local_connections", "check_window", "z_order"]

SCHEMES = ("random", "unique", "local")


def check_window(window, n_layers: int) -> list[int]:
    """``window`` (one odd size, or one per layer) as a list of ``n_layers`` odd positive integers."""
    ws = list(window) if isinstance(window, (list, tuple)) else [window] * n_layers
    if len(ws) != n_layers or any(isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 1 or w % 2 == 0
                                  for w in ws):
        raise ValueError(f"window must be an odd positive integer or a list of {n_layers} of them, not {window!r}")
    return [int(w) for w in ws]


def input_sites(n_inputs: int, grid: tuple[int, int]) -> np.ndarray:
    """Site of every input bit: its pixel ``y*W + x`` (bit order ``((c*T + j)*H + y)*W + x``)."""
    H, W = grid
    if n_inputs % (H * W):
        raise ValueError(f"{n_inputs} input bits do not tile a {H} x {W} pixel grid")
    return np.arange(n_inputs, dtype=np.int64) % (H * W)


def layer_sites(n: int, grid: tuple[int, int], groups: int = 1) -> np.ndarray:
    """Sites of a layer of ``n`` gates in ``groups`` contiguous blocks, each block spread over the whole grid."""
    P = grid[0] * grid[1]
    if n % groups:
        raise ValueError(f"a layer of {n} gates does not split into {groups} equal groups")
    g = n // groups
    return ((np.arange(n, dtype=np.int64) % g) * P) // g


def local_connections(in_sites: np.ndarray, out_sites: np.ndarray, grid: tuple[int, int], window: int,
                      uniforms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``(a, b)`` of gates at ``out_sites`` drawn from ``window`` patches of ``in_sites``.

    ``uniforms``: floats in ``[0, 1)`` of shape ``[2, 3, len(out_sites)]`` from the caller's seeded
    generator: for input ``a`` then ``b``, the row offset, the column offset in the patch and the pick among
    the site's signals.  A site with no signal (a layer narrower than the grid) lends the nearest populated
    site's signals.
    """
    H, W = grid
    P = H * W
    in_sites = np.asarray(in_sites, np.int64)
    order = np.argsort(in_sites, kind="stable")
    counts = np.bincount(in_sites, minlength=P)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    populated = np.flatnonzero(counts)
    if not len(populated):
        raise ValueError("the previous layer has no signals")
    # Nearest populated site of every site (Chebyshev distance on the grid, ties to the lower index).
    if len(populated) < P:
        py, px = np.divmod(populated, W)
        yy, xx = np.divmod(np.arange(P), W)
        near = np.empty(P, np.int64)
        for s0 in range(0, P, 1024):
            d = np.maximum(np.abs(yy[s0:s0 + 1024, None] - py[None]), np.abs(xx[s0:s0 + 1024, None] - px[None]))
            near[s0:s0 + 1024] = populated[d.argmin(1)]
    else:
        near = np.arange(P)
    u = np.asarray(uniforms, np.float64).reshape(2, 3, len(out_sites))
    oy, ox = np.divmod(np.asarray(out_sites, np.int64), W)
    r = window // 2
    # Window centres clamped so the patch stays on the grid (a grid smaller than the patch: the whole grid).
    cy = np.clip(oy, min(r, (H - 1) // 2), max(H - 1 - r, (H - 1) // 2)) if H > window else np.full_like(oy, (H - 1) // 2)
    cx = np.clip(ox, min(r, (W - 1) // 2), max(W - 1 - r, (W - 1) // 2)) if W > window else np.full_like(ox, (W - 1) // 2)
    hy, hx = min(window, H), min(window, W)
    picks = []
    for side in range(2):
        dy, dx, pick = u[side]
        y = cy - (hy - 1) // 2 + np.minimum((dy * hy).astype(np.int64), hy - 1)
        x = cx - (hx - 1) // 2 + np.minimum((dx * hx).astype(np.int64), hx - 1)
        site = near[np.clip(y, 0, H - 1) * W + np.clip(x, 0, W - 1)]
        k = np.minimum((pick * counts[site]).astype(np.int64), counts[site] - 1)
        picks.append(order[starts[site] + k])
    return picks[0], picks[1]


def z_order(sites: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Indices that sort ``sites`` along a Z-order (Morton) curve over the grid (stable for equal sites).

    The popcount adds a class's bits in the order of its output list, three neighbours at a time, then
    neighbours of neighbours: in Z order each partial count covers a square-ish patch of the die instead of
    a band of whole rows, so its wires stay short.
    """
    W = grid[1]
    y, x = np.divmod(np.asarray(sites, np.int64), W)
    code = np.zeros_like(y)
    for bit in range(16):
        code |= ((x >> bit) & 1) << (2 * bit) | ((y >> bit) & 1) << (2 * bit + 1)
    return np.argsort(code, kind="stable")
