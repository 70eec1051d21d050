"""Simulation of the exported classifier against the golden evaluator.

* :mod:`sim.run` (``python -m sim MODEL``, ``make sim``): a data set through
  the Amaranth simulator, cocotb + Icarus and the Verilator C++ bench, image
  by image against :func:`lgn_fpga.netlist.evaluate.predict`.
* :mod:`sim.tb_classifier`: the cocotb bench (``TB`` class, tests).
* :mod:`sim.icarus`: runs it through ``cocotb_tools.runner``.
* :mod:`sim.verilator`: builds and runs ``verilator_harness.cpp``.
"""
