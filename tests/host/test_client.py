"""The host client against the virtual board (sim:// through pyserial), faults included."""
import numpy as np
import pytest

from lgn_fpga import protocol as P
from lgn_fpga.host.client import BoardClient, HostError, open_port
from lgn_fpga.host.protocol_sim import Serial as SimSerial
from lgn_fpga.sim.vboard import VirtualBoard, have_verilator
from lgn_fpga.netlist.evaluate import predict
from lgn_fpga.netlist.format import save

pytestmark = [pytest.mark.sim, pytest.mark.skipif(not have_verilator(), reason="verilator not installed")]

BAUD = 115200


@pytest.fixture(scope="module")
def net(small_net):
    return small_net


@pytest.fixture(scope="module")
def images(net):
    return np.random.default_rng(4).integers(0, 256, (120, *net.encoding.shape), np.uint8)


@pytest.fixture(scope="module")
def model_file(net, tmp_path_factory):
    return save(net, tmp_path_factory.mktemp("m") / "m.lgn")


def _port(net, url="sim://"):
    """A sim:// port on a board we own (the tests close it)."""
    return SimSerial(url, baudrate=BAUD, timeout=0.02, board=VirtualBoard(net, baud=BAUD, backend="verilator"))


def test_stream_equals_golden(net, images):
    port = _port(net)
    try:
        c = BoardClient(port, BAUD, window=8)
        st = c.classify(images)
    finally:
        port.board.close()
        port.close()
    assert st.predictions.tolist() == predict(net, images).tolist()
    assert st.frames_sent == len(images) and st.retries == 0 and st.timeouts == 0 and not st.failed
    # Board time: the line, not the classifier, limits the rate (frames are sent back to back).
    line_rate = BAUD / (10 * P.request_len(net.encoding.image_bytes))
    assert 0.9 * line_rate < len(images) / st.board_seconds <= line_rate * 1.001


def test_info(net):
    port = _port(net)
    try:
        info = BoardClient(port, BAUD).info()
    finally:
        port.board.close()
    assert info.model_hash == bytes.fromhex(net.content_hash())[:8] and info.n_classes == net.n_classes


@pytest.mark.parametrize("window", [1, 3])
def test_faults_are_retried_until_every_answer_is_right(net, images, window):
    # Every fault kind, often: each write may lose a byte, flip a bit, stop halfway or gain garbage.
    port = _port(net, f"sim://?drop=0.08&flip=0.08&cut=0.05&garbage=0.08&seed={window}")
    try:
        st = BoardClient(port, BAUD, window=window, retries=8).classify(images[:60])
    finally:
        port.board.close()
    kinds = set(port.fault_log)
    assert kinds == {"drop", "flip", "cut", "garbage"}, kinds
    assert st.predictions.tolist() == predict(net, images[:60]).tolist() and not st.failed
    assert st.retries > 0 and (st.timeouts > 0 or sum(st.error_replies.values()) > 0)


@pytest.mark.parametrize("wire", ["levels", "bytes"])
def test_open_port_sim_url_with_model(model_file, net, images, wire):
    # sim:// reads the images as `lgn-fpga build` makes boards read them (levels) unless told otherwise
    url = "sim://?backend=verilator" + ("" if wire == P.DEFAULT_WIRE else f"&wire={wire}")
    ser = open_port(url, BAUD, model_path=model_file)
    try:
        assert ser.board.top.info.wire == wire
        st = BoardClient(ser, BAUD).classify(P.encode_payloads(images[:10], net.encoding, wire))
    finally:
        ser.close()
    assert st.predictions.tolist() == predict(net, images[:10]).tolist()


def test_silent_port_is_a_clear_error():
    import serial
    port = serial.serial_for_url("loop://", timeout=0.01)     # echoes our own requests: never a valid reply
    with pytest.raises(HostError, match=r"no answer from the board at 115200 baud: is it flashed"):
        BoardClient(port, BAUD, reply_timeout=0.05).info(attempts=2)


def test_bad_port_is_a_clear_error():
    with pytest.raises(HostError, match=r"cannot open /dev/nonexistent-lgn: .* \(check --port"):
        open_port("/dev/nonexistent-lgn", BAUD)
    with pytest.raises(HostError, match=r"sim:// option 'bogus' unknown"):
        open_port("sim://?bogus=1", BAUD)


def test_client_arguments():
    with pytest.raises(ValueError, match=r"window must be an integer in 1..128, not 0"):
        BoardClient(None, BAUD, window=0)
    with pytest.raises(ValueError, match=r"retries must be a non-negative integer, not -1"):
        BoardClient(None, BAUD, retries=-1)
    with pytest.raises(ValueError, match=r"baud must be a positive number, not 0"):
        BoardClient(None, 0)                       # issue 15: a ZeroDivisionError in the deadlines once


def test_stream_baud_zero_is_a_one_line_error(tmp_path, capsys):
    from lgn_fpga.cli import main
    with pytest.raises(SystemExit) as e:
        main(["stream", "--port", "sim://", "--baud", "0"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Invalid value for '--baud': 0 is not in the range x>=300" in err and "Traceback" not in err
