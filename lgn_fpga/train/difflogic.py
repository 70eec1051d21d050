"""Models trained with difflogic (``LogicLayer`` / ``GroupSum``, Petersen et al. 2022) -> netlist.

Two kinds of file are read, both with ``torch.load(weights_only=True)`` (no code from the file runs):

* a **pickled module** (``torch.save(model)``): difflogic's classes are mapped to stand-ins, so difflogic need
  not be installed; each layer's wiring (``indices``) comes with it;
* a **state_dict** (``torch.save(model.state_dict())``): it holds each layer's ``weights`` but not its wiring
  (``indices`` is a plain attribute, not a buffer), so the wiring is regenerated from the seed with difflogic
  0.1.0's own connection code (:func:`difflogic_connections`), which consumes torch's CPU generator exactly as
  difflogic does.  A model built with ``device='cuda'`` drew its weights from the CUDA generator, one built on
  the CPU drew them from the CPU generator before each layer's wiring: ``built_on`` says which.  The random
  streams depend on the torch version, so this is only as good as the seed and the version; the importer says
  that it regenerated.

Every neuron becomes its argmax gate (difflogic's eval mode: ``one_hot(weights.argmax(-1))``; the gate ids are
difflogic's, see :mod:`lgn_fpga.gates`), and GroupSum's ``k`` contiguous blocks of the last layer become the
class groups.  difflogic's input binarization becomes integer thresholds on the 0..255 scale, computed in
float32 as ``ToTensor`` and the comparison do: ``round`` (``x.round()``, its MNIST setting) or ``k`` thresholds
(``x > (i + 1) / (k + 1)``, its CIFAR-10 setting, concatenated threshold-major along the channels; the first
layer's wiring is permuted into this project's channel-major bit order).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data.encoding import ThermometerEncoding
from ..errors import CheckpointError
from ..netlist.ir import Netlist

__all__ = ["read_difflogic", "difflogic_connections", "difflogic_encoding", "to_netlist", "DifflogicModel"]


class _LogicLayer(torch.nn.Module):
    """Stand-in for ``difflogic.LogicLayer`` when unpickling: holds its attributes, computes nothing."""


class _GroupSum(torch.nn.Module):
    """Stand-in for ``difflogic.GroupSum``."""


_SAFE = [(_LogicLayer, "difflogic.difflogic.LogicLayer"), (_GroupSum, "difflogic.difflogic.GroupSum"),
         (_LogicLayer, "difflogic.LogicLayer"), (_GroupSum, "difflogic.GroupSum"),
         torch.nn.Sequential, torch.nn.Flatten, torch.nn.ModuleList, torch.nn.Identity]


@dataclass
class DifflogicModel:
    weights: list          # float [out, 16] per layer
    a: list                # int64 [out] per layer (local to the layer before), or None before wiring
    b: list
    k: int | None          # GroupSum's class count (None: a state_dict, which does not record it)
    tau: float | None
    wiring: str            # where the wiring came from, in words

    @property
    def widths(self) -> list:
        return [len(w) for w in self.weights]


def difflogic_connections(kind: str, in_dim: int, out_dim: int):
    """``LogicLayer.get_connections`` of difflogic 0.1.0 (``random`` and ``unique``) on torch's CPU generator."""
    if out_dim * 2 < in_dim:
        raise CheckpointError(f"a difflogic layer of {out_dim} neurons cannot read {in_dim} inputs "
                              f"(difflogic needs at least in_dim / 2 neurons)")
    if kind == "random":
        c = torch.randperm(2 * out_dim) % in_dim
        c = torch.randperm(in_dim)[c]
        c = c.reshape(2, out_dim)
        return c[0].to(torch.int64), c[1].to(torch.int64)
    if kind != "unique":
        raise CheckpointError(f"difflogic connections must be random or unique, not {kind!r}")
    x = torch.arange(in_dim).long().unsqueeze(0)
    a, b = x[..., ::2], x[..., 1::2]
    m = min(a.shape[-1], b.shape[-1])
    a, b = a[..., :m], b[..., :m]
    if a.shape[-1] < out_dim:
        a, b = torch.cat([a, x[..., 1::2]], dim=-1), torch.cat([b, x[..., 2::2]], dim=-1)
        m = min(a.shape[-1], b.shape[-1])
        a, b = a[..., :m], b[..., :m]
    offset = 2
    while out_dim > a.shape[-1] > offset:
        a, b = torch.cat([a, x[..., :-offset]], dim=-1), torch.cat([b, x[..., offset:]], dim=-1)
        offset += 1
    if a.shape[-1] < out_dim:
        raise CheckpointError(f"difflogic's unique wiring cannot give {out_dim} pairs of {in_dim} inputs")
    a, b = a[..., :out_dim], b[..., :out_dim]
    perm = torch.randperm(out_dim)
    return a[:, perm].squeeze(0).to(torch.int64), b[:, perm].squeeze(0).to(torch.int64)


def _load(path):
    try:
        with torch.serialization.safe_globals(_SAFE):
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except Exception as e:  # unpickling errors of every kind: one line
        raise CheckpointError(f"{path} is not a difflogic model that can be read safely "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None


def read_difflogic(path, *, in_dim: int, seed: int | None = None, connections="random",
                   built_on: str = "cuda") -> DifflogicModel:
    """The layers of a difflogic model file (pickled module or state_dict; see the module doc).

    ``connections``: for a state_dict, difflogic's ``connections=`` of every layer (one name) or of each layer
    (a list).
    """
    obj = _load(path)
    if isinstance(obj, torch.nn.Module):
        layers = [m for m in obj.modules() if isinstance(m, _LogicLayer)]
        groups = [m for m in obj.modules() if isinstance(m, _GroupSum)]
        if not layers:
            raise CheckpointError(f"{path}: a {type(obj).__name__} without difflogic LogicLayers")
        ws, a, b = [], [], []
        for i, l in enumerate(layers):
            idx = getattr(l, "indices", None)
            w = dict(l.named_parameters()).get("weights")
            if w is None or idx is None or len(idx) != 2:
                raise CheckpointError(f"{path}: LogicLayer {i} lacks its weights or indices")
            ws.append(w.detach().float().numpy())
            a.append(idx[0].cpu().long().numpy())
            b.append(idx[1].cpu().long().numpy())
        g = groups[-1] if groups else None
        return DifflogicModel(ws, a, b, int(g.k) if g else None, float(g.tau) if g else None,
                              "from the pickled module (its own indices)")
    if isinstance(obj, dict):
        for key in ("model_state_dict", "state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
        ws = [v.detach().float().numpy() for k, v in obj.items()
              if isinstance(k, str) and k.endswith("weights") and isinstance(v, torch.Tensor) and v.ndim == 2
              and v.shape[1] == 16]
        if not ws:
            raise CheckpointError(f"{path}: a dict without difflogic layer weights ([neurons, 16] tensors)")
        if seed is None:
            raise CheckpointError(f"{path} is a state_dict: it holds the gates but not the wiring; pass --seed "
                                  f"(the torch.manual_seed the model was built after) and --connections to "
                                  f"regenerate it, or save the whole module (torch.save(model))")
        if built_on not in ("cuda", "cpu"):
            raise CheckpointError(f"built_on must be cuda or cpu, not {built_on!r}")
        kinds = [connections] * len(ws) if isinstance(connections, str) else list(connections)
        if len(kinds) != len(ws):
            raise CheckpointError(f"{path} has {len(ws)} layers, but {len(kinds)} connections were given "
                                  f"({','.join(kinds)}); give one for all or one per layer")
        a, b = [], []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            dim = in_dim
            for w, kind in zip(ws, kinds):
                if built_on == "cpu":
                    torch.randn(len(w), 16)        # difflogic draws the layer's weights first, on the same generator
                ai, bi = difflogic_connections(kind, dim, len(w))
                a.append(ai.numpy())
                b.append(bi.numpy())
                dim = len(w)
        return DifflogicModel(ws, a, b, None, None,
                              f"regenerated from seed {seed} with difflogic's {','.join(sorted(set(kinds)))} connection code "
                              f"(torch {torch.__version__}, weights drawn on {built_on})")
    raise CheckpointError(f"{path}: a {type(obj).__name__}, neither a difflogic module nor a state_dict")


def difflogic_encoding(shape, thresholds) -> tuple[ThermometerEncoding, np.ndarray]:
    """Integer thresholds equal to difflogic's binarization, and ``perm[difflogic bit] = our bit``.

    ``thresholds``: ``"round"`` (``x.round()``) or a count ``k`` (``x > (i + 1) / (k + 1)``), on
    ``x = byte / 255`` in float32.
    """
    C, H, W = (int(s) for s in shape)
    x = torch.arange(256, dtype=torch.uint8).to(torch.float32).div(255)
    if thresholds == "round":
        cuts = [x.round() > 0.5]
    elif isinstance(thresholds, int) and not isinstance(thresholds, bool) and 1 <= thresholds <= 255:
        cuts = [x > (i + 1) / (thresholds + 1) for i in range(thresholds)]
    else:
        raise CheckpointError(f"difflogic input binarization must be 'round' or a threshold count, "
                              f"not {thresholds!r}")
    th = []
    for on in cuts:
        first = int(torch.nonzero(on)[0]) if on.any() else 256
        if first == 0 or first == 256 or not on[first:].all():
            raise CheckpointError("difflogic's binarization gives a constant bit here; it has no integer threshold")
        th.append(first - 1)                     # bit = byte > first - 1
    enc = ThermometerEncoding((C, H, W), (tuple(th),) * C)
    T, P = len(th), H * W
    i = np.arange(C * T * P)
    j, c, p = i // (C * P), (i // P) % C, i % P   # difflogic: torch.cat over thresholds of [C, H, W] images
    return enc, ((c * T + j) * P + p).astype(np.int64)


def to_netlist(model: DifflogicModel, encoding: ThermometerEncoding, perm: np.ndarray, n_classes: int,
               class_names=None, meta=None) -> Netlist:
    """The raw netlist: argmax gate per neuron, GroupSum's contiguous class blocks."""
    if model.widths[-1] % n_classes:
        raise CheckpointError(f"the last layer's {model.widths[-1]} neurons do not split into {n_classes} classes")
    dims = [encoding.n_bits] + model.widths[:-1]
    for i, (ai, bi, d) in enumerate(zip(model.a, model.b, dims)):
        if len(ai) != model.widths[i] or len(bi) != model.widths[i] or ai.min() < 0 or bi.min() < 0 or \
                max(ai.max(), bi.max()) >= d:
            raise CheckpointError(f"layer {i}: wiring does not fit ({model.widths[i]} neurons reading {d} "
                                  f"{'input bits' if i == 0 else 'neurons'}){'; check --dataset and --thresholds' if i == 0 else ''}")
    a = [perm[model.a[0]]] + model.a[1:]
    b = [perm[model.b[0]]] + model.b[1:]
    ops = [np.argmax(w, axis=1).astype(np.uint8) for w in model.weights]
    return Netlist.from_layered(encoding, ops, a, b, n_classes, class_names=class_names, meta=meta)
