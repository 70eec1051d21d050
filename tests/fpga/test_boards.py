# amaranth: UnusedElaboratable=no
"""Board files: every one loads, matches its platform, and plans a build of the real top level."""
import numpy as np
import pytest

from lgn_fpga.fpga.boards import BoardError, list_boards, load_board
from lgn_fpga.hdl.top import BoardTop
from lgn_fpga.netlist.random import random_netlist

REQUIRED = {"icebreaker", "ulx3s", "ulx3s-12f", "ulx3s-25f", "ulx3s-45f", "ulx3s-85f", "icestick", "colorlight-5a75b"}


@pytest.fixture(scope="module")
def net():
    return random_netlist(np.random.default_rng(0), shape=(1, 3, 3), thresholds=2, widths=(16, 12), n_classes=3)


def test_required_boards_exist():
    assert REQUIRED <= set(list_boards())


def test_ulx3s_is_the_85f():
    a, b = load_board("ulx3s"), load_board("ulx3s-85f")
    assert a.device == b.device == "LFE5U-85F" and a.budget == b.budget and a.platform == b.platform
    assert a.name == "ulx3s"


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_smoke_build_plan(name, net):
    """Platform().build(design, do_build=False) on every board, with the real top level and its pins."""
    b = load_board(name)
    plat = b.make_platform()
    top = BoardTop(net, baud=b.baud, uart=b.uart, leds=b.leds)
    plan = plat.build(top, name="top", do_build=False)
    constraints = next(v for k, v in plan.files.items() if k.endswith((".pcf", ".lpf")))
    assert "uart_0__rx" in constraints and "uart_0__tx" in constraints
    placed = [l for l in constraints.splitlines() if l.startswith(("set_io", "LOCATE COMP"))]
    assert sum("led_" in l for l in placed) == len(b.leds)
    assert top.top.latency > 0 and float(top.top.divisor) == b.clock_hz / b.baud
    assert b.bitstream_suffix == (".bin" if b.family == "ice40" else ".bit")
    assert b.programmers and all(b.budget[k] > 0 for k in ("lut", "ff"))


def test_unknown_board_lists_the_known_ones():
    with pytest.raises(BoardError, match=r"unknown board 'nope'; choose one of .*icebreaker.*ulx3s"):
        load_board("nope")


def _write(tmp_path, text, name="b.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


BASE = """
name: mine
platform: amaranth_boards.icebreaker:ICEBreakerPlatform
family: ice40
device: iCE40UP5K
package: SG48
clock_hz: 12000000
uart: {resource: [uart, 0], baud: 115200}
leds: [[led, 0]]
budget: {lut: 5280, ff: 5280, bram: 30}
programmers: [{tool: iceprog, args: ["{bitstream}"]}]
"""


def test_board_from_a_file(tmp_path):
    b = load_board(_write(tmp_path, BASE))
    assert b.name == "mine" and b.max_baud == 115200 and b.leds == (("led", 0),)


def test_extends(tmp_path, monkeypatch):
    monkeypatch.setenv("LGN_FPGA_BOARDS", str(tmp_path))
    _write(tmp_path, BASE, "mine.yaml")
    _write(tmp_path, "extends: mine\nname: mine2\nleds: []\n", "mine2.yaml")
    b = load_board("mine2")
    assert b.name == "mine2" and b.leds == () and b.device == "iCE40UP5K"
    assert "mine2" in list_boards()


@pytest.mark.parametrize("edit, message", [
    (("clock_hz: 12000000", "clock_hz: 25000000"), r"clock_hz is 25000000 but the platform's default clock runs at 12000000 Hz"),
    (("device: iCE40UP5K", "device: iCE40HX1K"), r"device is 'iCE40HX1K' but amaranth_boards.icebreaker:ICEBreakerPlatform says 'iCE40UP5K'"),
    (("family: ice40", "family: xilinx"), r"family must be one of ice40, ecp5, not 'xilinx'"),
    (("leds: [[led, 0]]", "leds: [[led, 9]]"), r"has no resource led#9"),
    (("budget: {lut: 5280, ff: 5280, bram: 30}", "budget: {lut: lots, ff: 5280, bram: 30}"), r"budget.lut must be a non-negative integer, not 'lots'"),
    (("name: mine", "name: mine\ncolour: red"), r"unknown key 'colour'"),
    (("platform: amaranth_boards.icebreaker:ICEBreakerPlatform", "platform: amaranth_boards.nope:X"), r"cannot import platform 'amaranth_boards.nope:X'"),
    (("uart: {resource: [uart, 0], baud: 115200}", "uart: {resource: uart, baud: 115200}"), r"uart.resource must be \[resource name, number\], not 'uart'"),
])
def test_malformed_board_files(tmp_path, edit, message):
    with pytest.raises(BoardError, match=message):
        load_board(_write(tmp_path, BASE.replace(*edit)))


def test_baud_limits():
    b = load_board("icebreaker")
    assert b.check_baud(3_000_000) == 3_000_000
    with pytest.raises(BoardError, match=r"board icebreaker: baud rate 4000000 is too high for a 12 MHz clock"):
        b.check_baud(4_000_000)
    c = load_board("colorlight-5a75b")
    with pytest.raises(BoardError, match=r"above what its USB-UART supports \(1000000\)"):
        c.check_baud(3_000_000)


def test_build_options_are_the_boards_defaults():
    # One place for what `lgn-fpga build` does unless told: two layers per stage on both families, ECP5 without
    # count tables, iCE40 with a count table per block RAM.
    from lgn_fpga.fpga.boards import load_board
    assert load_board("ulx3s").build_options() == (2, (0, 12, 2))
    assert load_board("icebreaker").build_options() == (2, (30, 9, 1))
    assert load_board("icebreaker").build_options(1) == (1, (30, 9, 1))
    assert load_board("ulx3s").build_options(1, True) == (1, (416, 12, 2))


def test_variants_take_the_rest_from_the_base_and_the_platform():
    # ulx3s-12f.yaml names only its platform and budget: the FPGA comes from the platform class, the UART,
    # LEDs and programmers from ulx3s-85f.yaml.
    small, big = load_board("ulx3s-12f"), load_board("ulx3s-85f")
    assert (small.device, small.package, small.clock_hz, small.family) == ("LFE5U-12F", "BG381", 25_000_000, "ecp5")
    assert small.budget["lut"] == 12288 and small.leds == big.leds and small.programmers == big.programmers
    assert (small.uart, small.baud, small.max_baud) == (big.uart, big.baud, big.max_baud)
    text = (small.path).read_text()
    assert "device:" not in text and "leds:" not in text
