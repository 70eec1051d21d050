"""Netlist IR, file format, passes, evaluator and statistics (numpy only, no torch)."""
from .ir import Layer, Netlist, NetlistError

__all__ = ["Layer", "Netlist", "NetlistError"]
