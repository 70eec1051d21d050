"""The .lgn file: round trips, and one clear NetlistError line for every kind of bad file."""
import json
import struct
import zlib

import numpy as np
import pytest

from lgn_fpga.data.encoding import ThermometerEncoding
from lgn_fpga.errors import LgnError
from lgn_fpga.netlist import Layer, Netlist, NetlistError
from lgn_fpga.netlist.format import FORMAT_VERSION, MAGIC, dumps, load, loads, save

from lgn_fpga.netlist.random import random_netlists as random_nets

PRE = struct.Struct("<8sIIQII")


def same(a: Netlist, b: Netlist):
    assert a.content_hash() == b.content_hash()
    assert a.encoding == b.encoding
    assert a.class_names == b.class_names
    assert a.meta == b.meta
    assert [len(l) for l in a.layers] == [len(l) for l in b.layers]
    for la, lb in zip(a.layers, b.layers):
        assert np.array_equal(la.ops, lb.ops) and np.array_equal(la.a, lb.a) and np.array_equal(la.b, lb.b)
    assert all(np.array_equal(x, y) for x, y in zip(a.outputs, b.outputs))
    assert np.array_equal(a.bias, b.bias)


@pytest.mark.parametrize("i", range(12))
def test_round_trip_random(tmp_path, i):
    net = random_nets(100 + i, 12)[i]
    net.meta = {"source": "test", "step": np.int64(7), "acc": np.float32(0.5), "nested": {"a": [1, 2]}}
    net.class_names = [f"c{k}" for k in range(net.n_classes)]
    p = save(net, tmp_path / "m.lgn")
    back = load(p)
    net.meta = {"source": "test", "step": 7, "acc": 0.5, "nested": {"a": [1, 2]}}
    same(net, back)
    # the arrays are writable (views of a private buffer), as a freshly built netlist's are
    back.layers[0].ops[0] = back.layers[0].ops[0]


def test_round_trip_edge_shapes(tmp_path):
    enc = ThermometerEncoding.make((1, 2, 2), 1)
    # no layers at all: outputs read input bits; an empty class; duplicate outputs; a big bias
    net = Netlist(enc, [], [np.array([0, 0, 3]), np.array([], np.int32)], bias=[0, 2**30])
    back = loads(dumps(net))
    same(net, back)
    assert back.depth == 0 and len(back.outputs[1]) == 0


def test_layout_is_documented_one(tmp_path):
    net = random_nets(1, 1)[0]
    data = dumps(net)
    magic, version, hlen, dlen, crc, reserved = PRE.unpack_from(data)
    assert magic == MAGIC and version == FORMAT_VERSION and reserved == 0
    assert len(data) == 32 + hlen + dlen and hlen % 8 == 0
    header = json.loads(data[32:32 + hlen])
    assert header["format"] == "lgn-netlist" and header["content_hash"] == net.content_hash()
    assert header["layers"] == [len(l) for l in net.layers]
    ops = header["arrays"]["ops"]
    assert ops["offset"] % 8 == 0 and ops["count"] == net.n_gates
    a = header["arrays"]["a"]
    got = np.frombuffer(data, "<i4", count=a["count"], offset=32 + hlen + a["offset"])
    assert np.array_equal(got, np.concatenate([l.a for l in net.layers]))
    assert zlib.crc32(data[32:]) == crc


def test_save_is_atomic(tmp_path):
    net = random_nets(2, 1)[0]
    p = save(net, tmp_path / "m.lgn")
    before = p.read_bytes()
    bad = net.copy()
    bad.meta = {"x": object()}
    with pytest.raises(NetlistError, match="meta cannot be saved as JSON"):
        save(bad, p)
    assert p.read_bytes() == before
    assert [f.name for f in tmp_path.iterdir()] == ["m.lgn"]   # no temporary file left behind


def test_save_refuses_invalid_netlist(tmp_path):
    net = random_nets(3, 1)[0]
    net.layers[0].a[0] = 10**6
    with pytest.raises(NetlistError, match="out of range"):
        save(net, tmp_path / "m.lgn")


# -- bad files ---------------------------------------------------------------------------

def _parts(data: bytes):
    _, _, hlen, dlen, _, _ = PRE.unpack_from(data)
    return json.loads(data[32:32 + hlen]), bytearray(data[32 + hlen:])


def _assemble(header: dict, body: bytes, version=FORMAT_VERSION) -> bytes:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    crc = zlib.crc32(bytes(body), zlib.crc32(text))
    return PRE.pack(MAGIC, version, len(text), len(body), crc, 0) + text + bytes(body)


@pytest.fixture
def good():
    return dumps(random_nets(4, 3)[1])


def check_error(data: bytes, pattern: str, tmp_path):
    p = tmp_path / "bad.lgn"
    p.write_bytes(data)
    with pytest.raises(NetlistError, match=pattern) as ei:
        load(p)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(str(p))
    assert isinstance(ei.value, LgnError)
    return msg


def test_not_a_netlist(tmp_path):
    check_error(b"PK\x03\x04 this is a zip", "not an .lgn netlist file", tmp_path)
    check_error(b"", "truncated", tmp_path)


@pytest.mark.parametrize("frac", [0.1, 0.3, 0.5, 0.9, 0.999])
def test_truncated(good, tmp_path, frac):
    check_error(good[:int(len(good) * frac)], "truncated", tmp_path)


def test_truncated_in_preamble(good, tmp_path):
    for n in (4, 8, 20, 31):
        check_error(good[:n], "truncated", tmp_path)


def test_trailing_bytes(good, tmp_path):
    check_error(good + b"\0", "unexpected bytes after the end", tmp_path)


@pytest.mark.parametrize("version,hint", [(FORMAT_VERSION + 1, "upgrade lgn-fpga"), (0, "re-export")])
def test_wrong_version(good, tmp_path, version, hint):
    data = bytearray(good)
    struct.pack_into("<I", data, 8, version)
    msg = check_error(bytes(data), f"format version {version}", tmp_path)
    assert hint in msg


@pytest.mark.parametrize("where", ["header", "data", "last"])
def test_corrupt_byte(good, tmp_path, where):
    data = bytearray(good)
    _, _, hlen, _, _, _ = PRE.unpack_from(data)
    i = {"header": 40, "data": 32 + hlen + 5, "last": len(data) - 1}[where]
    data[i] ^= 0x10
    check_error(bytes(data), "checksum mismatch", tmp_path)


def test_hand_edited_threshold_is_caught_by_the_hash(good, tmp_path):
    header, body = _parts(good)
    header["encoding"]["thresholds"][0][0] += 1        # a plausible edit, with the CRC recomputed
    check_error(_assemble(header, body), "content hash mismatch", tmp_path)


def test_hand_edited_bias_is_caught_by_the_hash(good, tmp_path):
    header, body = _parts(good)
    header["bias"][0] += 1
    check_error(_assemble(header, body), "content hash mismatch", tmp_path)


def test_hand_edited_array_names_the_fault(good, tmp_path):
    header, body = _parts(good)
    body[header["arrays"]["ops"]["offset"]] = 200    # an op that does not exist
    check_error(_assemble(header, body), "unknown op 200", tmp_path)
    header, body = _parts(good)
    off = header["arrays"]["a"]["offset"]
    body[off:off + 4] = struct.pack("<i", 10**6)
    check_error(_assemble(header, body), "input a=1000000 out of range", tmp_path)


def test_header_faults(good, tmp_path):
    header, body = _parts(good)
    h = dict(header); h["layers"] = header["layers"] + [5]
    check_error(_assemble(h, body), "array 'ops' has", tmp_path)
    h = dict(header); del h["encoding"]
    check_error(_assemble(h, body), "'encoding' is missing", tmp_path)
    h = json.loads(json.dumps(header)); h["encoding"]["shape"] = [1, 0, 3]
    check_error(_assemble(h, body), "'encoding' is invalid", tmp_path)
    h = dict(header); h["arrays"] = dict(header["arrays"], b={"dtype": "<i8", "offset": 0, "count": 1})
    check_error(_assemble(h, body), "array table entry 'b'", tmp_path)
    h = json.loads(json.dumps(header)); h["arrays"]["outputs"]["offset"] = len(body)
    check_error(_assemble(h, body), "outside the data section", tmp_path)
    h = dict(header); h["version"] = 99
    check_error(_assemble(h, body), "disagrees with the preamble", tmp_path)
    h = dict(header); h["format"] = "something-else"
    check_error(_assemble(h, body), "does not describe", tmp_path)
    h = dict(header); h["classes"] = header["classes"][:-1]
    check_error(_assemble(h, body), "class names", tmp_path)


def test_header_not_json(good, tmp_path):
    header, body = _parts(good)
    text = b"{not json" + b" " * 7
    crc = zlib.crc32(bytes(body), zlib.crc32(text))
    check_error(PRE.pack(MAGIC, FORMAT_VERSION, len(text), len(body), crc, 0) + text + bytes(body),
                "header is not valid JSON", tmp_path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(NetlistError, match="no such netlist file"):
        load(tmp_path / "nope.lgn")
    with pytest.raises(NetlistError, match="is a directory"):
        load(tmp_path)


def test_layer_of_loaded_net_is_plain_layer(tmp_path):
    net = loads(dumps(random_nets(6, 1)[0]))
    assert all(isinstance(l, Layer) and l.a.dtype == np.int32 for l in net.layers)
