"""Amaranth hardware generated from a netlist.

Parts (each a ``lib.wiring`` component with ``lib.stream`` ports and a fixed
``latency``): :mod:`.binarizer` (bytes -> thermometer bits),
:mod:`.pipeline` (gate layers), :mod:`.popcount` (per-class compressor trees),
:mod:`.argmax` (comparator tree), :mod:`.core` (the classifier), and
:mod:`.export` (Verilog / RTLIL text).  Submodules are imported on use so
that importing this package costs nothing.
"""
