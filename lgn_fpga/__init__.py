"""lgn-fpga: train logic gate networks and put them on open-source FPGA boards."""
__version__ = "0.1.0"
