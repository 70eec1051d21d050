"""LogicLayer, GroupSum and LogicNet: the trainable network (neuron-major layout).

Activations flow as ``[features, batch]`` tensors: each neuron's row is
contiguous, which is what the fused kernels want.  Two training modes:

* ``softmax`` (difflogic): forward mixes the 16 gates with ``softmax(z)``.
* ``gumbel-ste`` (Mind the Gap): one Gumbel draw ``g`` per neuron per step,
  shared by the batch; the forward evaluates the hard gate
  ``argmax(z + s*g)`` *exactly*, the backward uses the gradient of
  ``softmax((z + s*g) / tau_g)``.  ``s`` is the noise scale (1 in the paper).
  Input gradients go through the sampled gate (``input_grad="hard"``, the
  paper) or through the soft mixture (``input_grad="soft"``).

Evaluation ("discretized") always uses ``argmax(z)``: that network is the
netlist that gets deployed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..data.encoding import ThermometerEncoding
from ..errors import CheckpointError, ConfigError
from ..gates import NUM_GATES, PASS_A, torch_coeffs
from ..kernels import connection_pick, group_counts, gumbel_noise, gumbel_ste_coefficients, logic_stack
from .config import TrainConfig
from .wiring import SCHEMES, check_window, input_sites, layer_sites, local_connections

__all__ = ["Relaxation", "LogicLayer", "GroupSum", "LogicNet", "make_connections", "gumbel_noise", "MODES", "build_model",
           "model_from_state"]

MODES = ("softmax", "gumbel-ste")


@dataclass
class Relaxation:
    """How a forward pass turns logits into gate coefficients.

    ``kind`` is ``"soft"`` (softmax mixture), ``"sample"`` (Gumbel-STE hard
    sample), or ``"hard"`` (argmax, no noise: the deployed network).
    """

    kind: str = "hard"
    noise: float = 1.0          # scale of the Gumbel noise (kind="sample")
    tau: float = 1.0            # softmax temperature of the surrogate gradient
    input_grad: str = "hard"    # "hard": through the sampled gate; "soft": through the mixture
    generator: torch.Generator | None = None


def make_connections(in_dim: int, out_dim: int, scheme: str, gen: torch.Generator, local=None):
    """Fixed random wiring of ``out_dim`` neurons to ``in_dim`` inputs.

    ``local``: for ``scheme="local"``, ``(in_sites, out_sites, grid, window)`` (see :mod:`.wiring`).

    ``random``: difflogic's scheme; the ``2*out_dim`` input slots cycle through a
    random permutation of the inputs, so every input is used about equally often.
    ``unique``: additionally no two neurons read the same unordered pair and no
    neuron reads one input twice (needs ``out_dim <= in_dim*(in_dim-1)/2``).
    """
    if scheme == "random":
        c = torch.randperm(2 * out_dim, generator=gen) % in_dim
        c = torch.randperm(in_dim, generator=gen)[c]
        return c[:out_dim].clone(), c[out_dim:].clone()
    if scheme == "unique":
        if in_dim < 2 or out_dim > in_dim * (in_dim - 1) // 2:
            raise ValueError(f"'unique' connections need out_dim <= in_dim*(in_dim-1)/2, "
                             f"not {out_dim} neurons over {in_dim} inputs")
        a, b = make_connections(in_dim, out_dim, "random", gen)
        seen: set = set()
        a, b = a.tolist(), b.tolist()
        for i in range(out_dim):
            tries = 0
            while a[i] == b[i] or (min(a[i], b[i]), max(a[i], b[i])) in seen:
                b[i] = int(torch.randint(in_dim, (1,), generator=gen))
                tries += 1
                if tries > 64:  # rare: draw a fresh pair
                    a[i] = int(torch.randint(in_dim, (1,), generator=gen))
            seen.add((min(a[i], b[i]), max(a[i], b[i])))
        return torch.tensor(a), torch.tensor(b)
    if scheme == "local":
        if local is None:
            raise ValueError("'local' connections need the sites of both layers and the pixel grid")
        in_sites, out_sites, grid, window = local
        u = torch.rand(2, 3, out_dim, generator=gen, dtype=torch.float64).numpy()
        a, b = local_connections(in_sites, out_sites, grid, window, u)
        return torch.from_numpy(a), torch.from_numpy(b)
    raise ValueError(f"connections must be one of {', '.join(SCHEMES)}, not {scheme!r}")


class LogicLayer(nn.Module):
    """``out_dim`` two-input gates over ``in_dim`` inputs, each with 16 logits.

    Parameters
    ----------
    in_dim, out_dim : int
    connections : {"random", "unique", "local"}
    local : tuple, optional
        ``(in_sites, out_sites, grid, window)`` for ``connections="local"``.
    init : {"normal", "residual"}
        ``normal``: logits ~ N(0, 1).  ``residual``: N(0, 1) except the
        pass-through-A logit, set to ``residual_logit`` (convolutional LGN paper).
    generator : torch.Generator
        Source of the wiring and the initial logits (reproducible from a seed).
    candidates : int
        Learned wiring (docs/wiring.md, "Learned connections"): each of a gate's two inputs picks one of
        ``candidates`` signals drawn by the scheme, by its own logits (sampled like the gate: argmax of logits
        plus Gumbel noise forward, the softmax's gradient backward).  1: the fixed wiring of difflogic.  The
        first candidate of each input is the fixed wiring's draw (the other candidates are drawn after the logits):
        from one generator state, candidate 0 and the logits are those of fixed wiring.
    """

    def __init__(self, in_dim: int, out_dim: int, connections: str = "random", init: str = "normal",
                 residual_logit: float = 5.0, generator: torch.Generator | None = None, local=None,
                 candidates: int = 1):
        super().__init__()
        gen = generator or torch.Generator().manual_seed(0)
        self.in_dim, self.out_dim = int(in_dim), int(out_dim)
        a, b = make_connections(self.in_dim, self.out_dim, connections, gen, local)
        logits = torch.randn(self.out_dim, NUM_GATES, generator=gen)
        if init == "residual":
            logits[:, PASS_A] = residual_logit
        elif init != "normal":
            raise ValueError(f"init must be 'normal' or 'residual', not {init!r}")
        self.logits = nn.Parameter(logits)
        self.register_buffer("M", torch_coeffs(), persistent=False)
        self.candidates = int(candidates)
        if self.candidates < 1:
            raise ValueError(f"candidates must be at least 1, not {candidates!r}")
        if self.candidates > 1:
            # Drawn after the logits, so candidate 0 and the logits are those of fixed wiring from the same seed.
            more = [make_connections(self.in_dim, self.out_dim, connections, gen, local)
                    for _ in range(self.candidates - 1)]
            cand = torch.stack([torch.stack([a] + [m[0] for m in more], 1), torch.stack([b] + [m[1] for m in more], 1)])
            self.register_buffer("cand", cand.to(torch.int64).contiguous())        # [2, N, K]
            self.conn_logits = nn.Parameter(torch.randn(2, self.out_dim, self.candidates, generator=gen))
            a, b = (t.clone() for t in connection_pick(self.conn_logits, None, 0.0, self.cand)[1:])
        # The deployed wiring (with candidates: the argmax pick, refreshed by deployed_wiring()).
        self.register_buffer("a", a.to(torch.int64))
        self.register_buffer("b", b.to(torch.int64))

    def wiring(self, r: Relaxation, backend: str = "reference"):
        """``(a, b, conn)``: the inputs each gate reads in this forward and, with learned connections and
        gradients on, ``conn = (w, ws, cand, tau)`` for :func:`lgn_fpga.kernels.logic_stack` (the logits, the
        logits plus this step's noise, the candidates, the surrogate's temperature), else None."""
        if self.candidates == 1:
            return self.a, self.b, None
        w = self.conn_logits
        sample = r.kind == "sample" and r.noise > 0
        noise = gumbel_noise(w.shape, r.generator, w.device, lazy=True) if sample else None
        ws, a, b = connection_pick(w, noise, r.noise if sample else 0.0, self.cand, backend)
        if r.kind == "hard" or not (torch.is_grad_enabled() and w.requires_grad):
            return a, b, None
        return a, b, (w, ws, self.cand, r.tau if r.kind == "sample" else 1.0)

    def deployed_wiring(self):
        """The wiring of the deployed network (``a``, ``b``): fixed, or the argmax pick of learned connections."""
        if self.candidates > 1:
            _, a, b = connection_pick(self.conn_logits, None, 0.0, self.cand)
            self.a.copy_(a)
            self.b.copy_(b)
        return self.a, self.b

    def coefficients(self, r: Relaxation, backend: str = "reference"):
        """``(c, c_in)``: forward coefficients and those the input gradient uses (``backend``: whose
        Gumbel-STE op forms them)."""
        z = self.logits
        if r.kind == "soft":
            return torch.softmax(z, dim=-1) @ self.M, None
        if r.kind == "hard":
            return self.M[z.detach().argmax(-1)], None
        if r.kind != "sample":
            raise ValueError(f"relaxation kind must be soft, hard or sample, not {r.kind!r}")
        noise = gumbel_noise(z.shape, r.generator, z.device, lazy=True) if r.noise > 0 else None
        c, c_soft = gumbel_ste_coefficients(z, noise, r.noise, r.tau, self.M, backend)
        return c, (c_soft if r.input_grad == "soft" else None)

    def forward(self, x, r: Relaxation, backend: str = "reference"):
        a, b, conn = self.wiring(r, backend)
        return logic_stack(x, [(a, b, *self.coefficients(r, backend), conn)], backend)

    def gate_ids(self) -> np.ndarray:
        """The deployed gate of every neuron (argmax of its logits)."""
        return self.logits.detach().argmax(-1).cpu().numpy().astype(np.uint8)


class GroupSum(nn.Module):
    """Class scores: popcount of ``k`` equal, contiguous groups of the last layer, divided by ``tau``."""

    def __init__(self, k: int, tau: float = 1.0):
        super().__init__()
        self.k, self.tau = int(k), float(tau)

    def forward(self, y):  # y: [N, B] -> [B, k]
        return self.scores(group_counts(y, self.k))

    def scores(self, counts):  # counts: [k, B] -> [B, k]
        return counts.t() / self.tau


class LogicNet(nn.Module):
    """Input bits -> logic layers -> GroupSum.

    ``grid`` (the image's ``(H, W)``) and ``window`` (odd patch size, or one per layer) are needed by
    ``connections="local"`` only.
    """

    def __init__(self, n_inputs: int, widths, n_classes: int, tau: float = 10.0, connections: str = "random",
                 init: str = "normal", residual_logit: float = 5.0, seed: int = 0, grid=None, window=5,
                 candidates: int = 1):
        super().__init__()
        gen = torch.Generator().manual_seed(int(seed))
        dims = [int(n_inputs)] + [int(w) for w in widths]
        locals_ = [None] * len(widths)
        self.grid, self.last_sites = None, None
        if connections == "local":
            if grid is None:
                raise ValueError("'local' connections need the image grid (H, W)")
            grid = (int(grid[0]), int(grid[1]))
            windows = check_window(window, len(widths))
            sites = [input_sites(dims[0], grid)]
            sites += [layer_sites(w, grid, n_classes if li == len(widths) - 1 else 1) for li, w in enumerate(dims[1:])]
            locals_ = [(sites[li], sites[li + 1], grid, windows[li]) for li in range(len(widths))]
            self.grid, self.last_sites = grid, sites[-1]
        self.layers = nn.ModuleList(
            LogicLayer(i, o, connections, init, residual_logit, gen, loc, candidates)
            for i, o, loc in zip(dims[:-1], dims[1:], locals_))
        self.group = GroupSum(n_classes, tau)

    def forward(self, bits, r: Relaxation, backend: str = "reference"):
        """``bits``: float ``[B, n_inputs]`` of 0/1 -> class scores ``[B, k]``."""
        x = bits.t().contiguous()
        layers = []
        for l in self.layers:
            a, b, conn = l.wiring(r, backend)       # (the wiring draws its noise before the gates)
            layers.append((a, b, *l.coefficients(r, backend), conn))
        # The stack sums the last layer's groups itself (the C kernel without a float copy of the last layer).
        return self.group.scores(logic_stack(x, layers, backend, groups=self.group.k))

    @property
    def n_gates(self) -> int:
        return sum(l.out_dim for l in self.layers)


def build_model(cfg: TrainConfig, enc: ThermometerEncoding, n_classes: int) -> LogicNet:
    widths = cfg.widths_list()
    if widths[-1] % n_classes:
        raise ConfigError(f"the last layer's width ({widths[-1]}) must be a multiple of the {n_classes} classes")
    try:
        return LogicNet(enc.n_bits, widths, n_classes, tau=cfg.group_tau, connections=cfg.connections, init=cfg.init,
                        residual_logit=cfg.residual_logit, seed=cfg.seed, grid=enc.shape[1:], window=cfg.window,
                        candidates=cfg.candidates)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def model_from_state(state: dict):
    """Rebuild the model and encoding stored in a checkpoint dict."""
    try:
        cfg = TrainConfig(**state["config"])
        enc = ThermometerEncoding.from_dict(state["encoding"])
        model = build_model(cfg, enc, len(state["classes"]))
        model.load_state_dict(state["model"])
    except (TypeError, KeyError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"{state.get('path', 'checkpoint')} does not match its own config "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    return model, enc
