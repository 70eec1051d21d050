"""Simulation of the exported classifier against the golden evaluator.

* :mod:`lgn_fpga.sim.run` (``python -m lgn_fpga.sim MODEL``, ``make sim``): a data set through
  the Amaranth simulator, cocotb + Icarus and the Verilator C++ bench, image
  by image against :func:`lgn_fpga.netlist.evaluate.predict`.
* :mod:`lgn_fpga.sim.tb_classifier`: the cocotb bench (``TB`` class, tests).
* :mod:`lgn_fpga.sim.icarus`: runs it through ``cocotb_tools.runner``.
* :mod:`lgn_fpga.sim.verilator`: builds and runs ``verilator_harness.cpp``.
"""
