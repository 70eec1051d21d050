import numpy as np
import pytest
import torch

from lgn_fpga.data.encoding import ThermometerEncoding, uniform_thresholds


def test_uniform_thresholds():
    assert uniform_thresholds(1) == (127,)
    assert uniform_thresholds(3) == (63, 127, 191)
    assert uniform_thresholds(31)[:3] == (7, 15, 23) and uniform_thresholds(31)[-1] == 247
    for k in (1, 3, 7, 15, 31, 255):
        t = uniform_thresholds(k)
        assert len(t) == k and list(t) == sorted(set(t)) and 0 <= t[0] and t[-1] <= 254


def test_bit_order_and_comparison_are_exact():
    enc = ThermometerEncoding.make((3, 2, 5), [[10, 200], [0, 254], [100, 101]])
    x = np.random.default_rng(0).integers(0, 256, (50, 3, 2, 5), dtype=np.uint8)
    x[0] = 0; x[1] = 255; x[2] = 200; x[3] = 201  # edges: p > t is strict
    bits = enc.encode(x)
    assert bits.shape == (50, enc.n_bits) and enc.n_bits == 3 * 2 * 10
    for n in range(50):
        for c in range(3):
            for j in range(2):
                for y in range(2):
                    for xx in range(5):
                        idx = ((c * 2 + j) * 2 + y) * 5 + xx
                        assert bits[n, idx] == (x[n, c, y, xx] > enc.thresholds[c][j])
    src, th = enc.bit_sources()
    assert (bits == (x.reshape(50, -1)[:, src] > th)).all()
    assert (enc.encode_torch(torch.from_numpy(x)).numpy() == bits).all()
    assert not bits[0].any() and bits[1].all()


def test_forms_and_roundtrip():
    e = ThermometerEncoding.make((1, 8, 8), 3)
    assert e.thresholds == ((63, 127, 191),)
    assert ThermometerEncoding.from_dict(e.to_dict()) == e
    assert ThermometerEncoding.make((2, 1, 1), [5, 9]).thresholds == ((5, 9), (5, 9))


@pytest.mark.parametrize("shape,th,msg", [
    ((1, 8), 3, "image shape"),
    ((1, 2, 2), [5, 5], "strictly increasing"),
    ((1, 2, 2), [255], "0..254"),
    ((2, 2, 2), [[1], [1, 2]], "same, non-zero number"),
    ((1, 2, 2), 0, "integer in 1..255"),
    ((1, 2, 2), "three", "must be a count"),
])
def test_bad_encodings(shape, th, msg):
    with pytest.raises(ValueError, match=msg):
        ThermometerEncoding.make(shape, th)


def test_encode_checks_input():
    e = ThermometerEncoding.make((1, 2, 2), 1)
    with pytest.raises(TypeError, match="uint8"):
        e.encode(np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match="4 bytes"):
        e.encode(np.zeros((1, 5), np.uint8))


@pytest.mark.parametrize("th,bits", [([127], 1), ([63, 127, 191], 2), ([3, 50, 51, 100, 250], 3),
                                     (list(range(0, 248, 8)), 5), (list(range(255)), 8)])
def test_levels_pack_exactly_the_thermometer_bits(th, bits):
    # the `levels` wire format: a value is the count of thresholds it exceeds, packed LSB first
    enc = ThermometerEncoding.make((2, 3, 3), th)
    x = np.random.default_rng(1).integers(0, 256, (40, 2, 3, 3), dtype=np.uint8)
    x[0] = 0; x[1] = 255; x[2] = th[0]; x[3] = th[-1] + 1
    assert enc.level_bits == bits and enc.level_bytes == -(-18 * bits // 8)
    lv = enc.to_levels(x)
    assert lv.shape == (40, 18) and lv.max() <= len(th)
    src, j = enc.bit_ranks()
    assert (enc.encode(x) == (lv[:, src] > j)).all()
    packed = enc.pack_levels(x)
    assert packed.shape == (40, enc.level_bytes) and packed.dtype == np.uint8
    stream = np.unpackbits(packed, axis=1, bitorder="little")
    fields = stream[:, :18 * bits].reshape(40, 18, bits)
    assert (fields @ (1 << np.arange(bits)) == lv).all()
    assert not stream[:, 18 * bits:].any()                 # padding is 0
    with pytest.raises(TypeError, match="images must be uint8"):
        enc.pack_levels(x.astype(np.int32))
