"""Trained model -> netlist: the argmax gate of every neuron (imports torch lazily)."""
from __future__ import annotations

from ..data.encoding import ThermometerEncoding
from ..netlist.ir import Netlist

__all__ = ["from_model", "from_run"]


def from_model(model, encoding: ThermometerEncoding, class_names=None, meta=None) -> Netlist:
    """Netlist of a :class:`~lgn_fpga.train.model.LogicNet` (raw: nothing optimized)."""
    ops = [l.gate_ids() for l in model.layers]
    wiring = [l.deployed_wiring() for l in model.layers]
    a = [w[0].detach().cpu().numpy() for w in wiring]
    b = [w[1].detach().cpu().numpy() for w in wiring]
    net = Netlist.from_layered(encoding, ops, a, b, model.group.k, class_names=class_names, meta=meta)
    if getattr(model, "last_sites", None) is not None:
        # Local wiring: list each class's outputs along a Z-order curve of their sites, so the popcount adds
        # neighbours first (the sum, and so every score, is the same in any order).
        from .wiring import z_order
        g = len(model.last_sites) // model.group.k
        for k, o in enumerate(net.outputs):
            o[:] = o[z_order(model.last_sites[k * g:(k + 1) * g], model.grid)]
        net.validate()
    return net


def from_run(path, prefer: str = "best.pt") -> Netlist:
    """Netlist of a run directory (its ``best.pt`` by default) or a checkpoint file."""
    from .checkpoint import load_checkpoint
    from .model import model_from_state
    state = load_checkpoint(path, prefer)
    model, enc = model_from_state(state)
    meta = {"source": state["path"], "step": state["step"], "dataset": state["config"].get("dataset"),
            "mode": state["config"].get("mode"), "recipe": state["config"].get("recipe")}
    return from_model(model, enc, state["classes"], meta)
