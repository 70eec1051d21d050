"""Shared test setup: real data from ../shared/data when present, small defaults."""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

if "LGN_FPGA_DATA" not in os.environ and SHARED_DATA.is_dir():
    os.environ["LGN_FPGA_DATA"] = str(SHARED_DATA)
# Tests never reach the network: a missing dataset is a skip or an expected error.
os.environ.setdefault("LGN_FPGA_OFFLINE", "1")


def have_data(name: str) -> bool:
    from lgn_fpga.data.datasets import load
    from lgn_fpga.errors import DataError
    try:
        load(name)
        return True
    except DataError:
        return False


@pytest.fixture(scope="session")
def real_data_dir():
    d = os.environ.get("LGN_FPGA_DATA")
    if not d or not Path(d).is_dir():
        pytest.skip("real datasets not available (set LGN_FPGA_DATA)")
    return Path(d)
