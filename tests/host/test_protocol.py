"""The frame format shared by the board and the host (lgn_fpga.protocol)."""
import numpy as np
import pytest

from lgn_fpga import protocol as P


def test_request_layout():
    img = np.arange(6, dtype=np.uint8).reshape(1, 2, 3)
    f = P.encode_request(9, img)
    assert f[:3] == bytes([0xA5, 0x5A, 9])
    assert f[3:9] == bytes(range(6))                  # C*H*W order
    assert len(f) == P.request_len(6) == 11
    assert P.crc16(f[2:]) == 0                         # CRC over SEQ..CRC is zero: the board's check
    assert P.crc16(f[2:-2]) == int.from_bytes(f[-2:], "big")


def test_info_request_and_reply():
    q = P.encode_info_request(3)
    assert q[:3] == bytes([0xA5, 0x3C, 3]) and len(q) == 5 and P.crc16(q[2:]) == 0
    info = P.Info(1, 10, 784, 40, 25_000_000, bytes(range(8)))
    assert P.Info.decode(info.encode()) == info and len(info.encode()) == P.INFO_LEN == 19
    assert info.wire == "bytes" and P.Info(2, 10, 98, 40, 1, bytes(8), 1).wire == "levels"
    reps = P.ReplyParser().feed(P.encode_reply(3, P.CODE_INFO, info.encode()))
    assert reps == [P.Reply(3, P.CODE_INFO, info.encode())] and reps[0].info() == info


@pytest.mark.parametrize("bad", [-1, 256, 1.0, "1"])
def test_seq_checked(bad):
    with pytest.raises(ValueError, match=r"seq must be an integer in 0..255, not"):
        P.encode_request(bad, np.zeros(4, np.uint8))


def test_image_dtype_checked():
    with pytest.raises(TypeError, match="image must be uint8, not float64"):
        P.encode_request(0, np.zeros(4))


def test_parser_resyncs_and_counts():
    good = [P.encode_reply(i, i % 3) for i in range(5)]
    corrupt = bytearray(P.encode_reply(7, 1))
    corrupt[2] ^= 4
    stream = b"\x00\x13" + good[0] + bytes(corrupt) + good[1] + b"\x5a" + good[2] + good[3] + good[4]
    p = P.ReplyParser()
    out = []
    for i in range(0, len(stream), 3):              # arbitrary chunking
        out += p.feed(stream[i:i + 3])
    assert [(r.seq, r.code) for r in out] == [(i, i % 3) for i in range(5)]
    assert p.bad >= 1 and p.skipped >= 3


def test_reply_kinds():
    assert P.Reply(1, 5).is_class and not P.Reply(1, 5).is_error
    assert P.Reply(1, P.ERR_CRC).is_error and not P.Reply(1, P.ERR_CRC).is_class
    assert P.describe_code(P.ERR_TIMEOUT) == "timeout" and P.describe_code(3) == "class 3"


def test_frame_timeout_cycles():
    assert P.frame_timeout_cycles(25e6, 115200) == 250_000                 # 10 ms
    assert P.frame_timeout_cycles(12e6, 9600, ms=1.0) == int(16 * 10 * 12e6 / 9600)   # 16 byte times


def test_decoder_model_basics():
    d = P.FrameDecoder(2, 100)
    out = []
    for b in P.encode_request(5, np.array([1, 2], np.uint8)):
        out += d.feed(b, gap=10)
    assert out == [("image", 5, bytes([1, 2]))]
    # A gap longer than timeout + 1 inside a frame aborts it with ERR_TIMEOUT.
    f = P.encode_request(6, np.array([1, 2], np.uint8))
    out = [e for i, b in enumerate(f) for e in d.feed(b, gap=102 if i == 4 else 10)]
    assert out == [("error", 6, P.ERR_TIMEOUT)]


def test_wire_formats():
    from lgn_fpga.data.encoding import ThermometerEncoding
    enc = ThermometerEncoding.make((3, 32, 32), 3)
    assert P.payload_bytes(enc, "bytes") == 3072 and P.payload_bytes(enc, "levels") == 768
    assert P.payload_bytes(ThermometerEncoding.make((1, 28, 28), 1), "levels") == 98
    imgs = np.random.default_rng(0).integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    assert (P.encode_payloads(imgs, enc, "bytes") == imgs.reshape(4, -1)).all()
    assert (P.encode_payloads(imgs, enc, "levels") == enc.pack_levels(imgs)).all()
    with pytest.raises(ValueError, match="wire format must be one of bytes, levels, not 'bits'"):
        P.payload_bytes(enc, "bits")
