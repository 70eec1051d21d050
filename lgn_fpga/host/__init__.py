"""The host side of the UART link: the serial client (:mod:`.client`), flashing (:mod:`.flash`), the
virtual board (:mod:`lgn_fpga.sim.vboard`) and its pyserial ``sim://`` handler (:mod:`.protocol_sim`).
Submodules are imported on use (pyserial's URL lookup imports ``protocol_sim`` by name)."""
