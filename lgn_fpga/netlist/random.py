"""Random netlists for property tests (hardware == golden, passes preserve outputs)."""
from __future__ import annotations

import numpy as np

from ..data.encoding import ThermometerEncoding
from .ir import Layer, Netlist

__all__ = ["random_netlist", "random_netlists", "random_bits"]


def random_netlist(rng: np.random.Generator, shape=(1, 4, 4), thresholds=2, widths=(32, 24, 20),
                   n_classes: int = 4, skip_prob: float = 0.0, group: int | None = None,
                   bias: bool = False) -> Netlist:
    """A valid random netlist.

    ``skip_prob`` is the probability that a gate input reads any earlier signal
    instead of the previous layer (optimized netlists look like that).  Class
    groups are random subsets of the last layer of size ``group`` (default:
    width // n_classes), possibly overlapping when ``skip_prob`` > 0.
    """
    enc = ThermometerEncoding.make(shape, thresholds)
    layers, lo, hi = [], 0, enc.n_bits
    for w in widths:
        ops = rng.integers(0, 16, w)
        a = rng.integers(lo, hi, w)
        b = rng.integers(lo, hi, w)
        if skip_prob > 0:
            sk = rng.random(w) < skip_prob
            a = np.where(sk, rng.integers(0, hi, w), a)
            sk = rng.random(w) < skip_prob
            b = np.where(sk, rng.integers(0, hi, w), b)
        layers.append(Layer(ops, a, b))
        lo, hi = hi, hi + w
    g = group or max(1, widths[-1] // n_classes)
    if skip_prob > 0:
        outputs = [rng.choice(np.arange(lo, hi), size=g, replace=False) for _ in range(n_classes)]
    else:
        perm = rng.permutation(np.arange(lo, hi))
        outputs = [perm[k * g:(k + 1) * g] for k in range(n_classes)]
    b = rng.integers(0, 3, n_classes) if bias else None
    return Netlist(enc, layers, outputs, bias=b).validate()


def random_netlists(seed: int, n: int) -> list:
    """``n`` varied random netlists for property tests.

    Cycles through three input shapes and ``skip_prob`` 0 / 0.3 / 0.8 (layered,
    some skips, mostly skips); 1-4 layers of 4-39 gates, 1-3 thresholds,
    1-5 classes, every other one with a bias.
    """
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        depth = int(rng.integers(1, 5))
        widths = tuple(int(w) for w in rng.integers(4, 40, depth))
        shape = [(1, 4, 4), (2, 3, 5), (1, 5, 5)][i % 3]
        out.append(random_netlist(rng, shape=shape, thresholds=int(rng.integers(1, 4)), widths=widths,
                                  n_classes=int(rng.integers(1, 6)), skip_prob=[0.0, 0.3, 0.8][i % 3],
                                  bias=bool(i % 2)))
    return out


def random_bits(net: Netlist, n: int = 200, seed: int = 0) -> np.ndarray:
    """``n`` random input vectors (bool ``[n, net.n_inputs]``)."""
    return np.random.default_rng(seed).random((n, net.n_inputs)) < 0.5
