"""One small netlist for the host tests, so the virtual board is compiled once per session."""
import numpy as np
import pytest

from lgn_fpga.netlist.random import random_netlist


@pytest.fixture(scope="session")
def small_net():
    return random_netlist(np.random.default_rng(21), shape=(1, 4, 4), thresholds=3, widths=(64, 48, 30), n_classes=5)
