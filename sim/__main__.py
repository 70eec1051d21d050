"""``python -m sim MODEL ...``: see :mod:`sim.run`."""
from .run import main

import sys

sys.exit(main())
