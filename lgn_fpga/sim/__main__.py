"""``python -m lgn_fpga.sim MODEL ...``: see :mod:`lgn_fpga.sim.run`."""
from .run import main

import sys

sys.exit(main())
