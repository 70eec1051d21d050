"""Simulation of the exported classifier against the golden evaluator.

* :mod:`lgn_fpga.sim.run` (``python -m lgn_fpga.sim MODEL``, ``make sim``): a data set through
  the Amaranth simulator, cocotb + Icarus and the Verilator C++ bench, image
  by image against :func:`lgn_fpga.netlist.evaluate.predict`.
* :mod:`lgn_fpga.sim.tb_classifier`: the cocotb bench (``TB`` class, tests).
* :mod:`lgn_fpga.sim.icarus`: runs it through ``cocotb_tools.runner``.
* :mod:`lgn_fpga.sim.verilator`: the one Verilator builder (its harnesses, ``verilator_harness.cpp``
  and ``vboard_harness.cpp``, are package data) and the runner of the stream bench.
* :mod:`lgn_fpga.sim.vboard`: the virtual board behind ``sim://`` ports.
* :mod:`lgn_fpga.sim.uart_line`: the one host-side UART line model (driver and monitor) that the
  virtual board, the cocotb top-level bench (:mod:`lgn_fpga.sim.tb_top`) and the UART tests use.
"""
