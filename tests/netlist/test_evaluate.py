"""Golden evaluator: every backend gives the reference's integer scores, bit for bit."""
import numpy as np
import pytest

from lgn_fpga.data.encoding import ThermometerEncoding
from lgn_fpga.gates import TRUTH, apply_bitwise
from lgn_fpga.netlist import Netlist, cbackend
from lgn_fpga.netlist import evaluate as ev
from lgn_fpga.netlist.evaluate import _ANF, pack_bits, predict, scores
from lgn_fpga.netlist.passes import optimize
from lgn_fpga.netlist.random import random_bits, random_netlist, random_netlists

needs_cc = pytest.mark.skipif(not cbackend.available(), reason="no working C compiler")


@pytest.fixture
def c_cache(tmp_path, monkeypatch):
    """Compiled netlists go to a private cache (and the in-process cache starts empty)."""
    monkeypatch.setenv("LGN_FPGA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cbackend, "_loaded", {})
    return tmp_path / "cache"


def test_anf_table_matches_the_gate_table():
    ones = np.uint64(0xFFFFFFFFFFFFFFFF)
    a = np.array([0, 0, 1, 1], np.uint64) * ones
    b = np.array([0, 1, 0, 1], np.uint64) * ones
    for op in range(16):
        k0, k1, k2, k3 = _ANF[op]
        got = k0 ^ (a & k1) ^ (b & k2) ^ (a & b & k3)
        assert np.array_equal(got, apply_bitwise(op, a, b, ones)), op
        assert np.array_equal(got & np.uint64(1), TRUTH[op].astype(np.uint64))


def test_pack_bits_layout():
    bits = np.zeros((130, 3), bool)
    bits[0, 0] = bits[63, 1] = bits[64, 2] = bits[129, 0] = True
    w = pack_bits(bits)
    assert w.shape == (3, 3) and w.dtype == np.uint64
    assert w[0].tolist() == [1, 0, 2] and w[1].tolist() == [1 << 63, 0, 0] and w[2].tolist() == [0, 1, 0]


@pytest.mark.parametrize("n", [1, 63, 64, 65, 300])
def test_numpy_matches_reference(n):
    for i, net in enumerate(random_netlists(20 + n, 20)):
        bits = random_bits(net, n, seed=i)
        ref = scores(net, bits=bits, backend="reference")
        assert ref.dtype == np.int64
        assert np.array_equal(scores(net, bits=bits, backend="numpy"), ref)


def test_images_and_bits_give_the_same_scores():
    rng = np.random.default_rng(3)
    # three channels, each with its own thresholds
    net = random_netlist(rng, shape=(3, 5, 6), thresholds=[[10, 100, 200], [0, 128, 254], [50, 60, 70]],
                         widths=(60, 40, 30), n_classes=3, skip_prob=0.3, bias=True)
    imgs = rng.integers(0, 256, (150, 3, 5, 6), dtype=np.uint8)
    ref = scores(net, bits=ev.encode_images(net, imgs), backend="reference")
    for backend in ("reference", "numpy"):
        assert np.array_equal(scores(net, imgs, backend=backend), ref)
        assert np.array_equal(scores(net, imgs.reshape(150, -1), backend=backend), ref)


def test_edge_netlists():
    enc = ThermometerEncoding.make((1, 2, 2), 1)
    net = Netlist(enc, [], [np.array([0, 0, 3]), np.array([], np.int32)], bias=[0, 5]).validate()
    bits = np.array([[1, 0, 0, 1], [0, 1, 1, 0], [1, 1, 1, 1]], bool)
    want = np.array([[3, 5], [0, 5], [3, 5]])
    for backend in ("reference", "numpy"):
        assert np.array_equal(scores(net, bits=bits, backend=backend), want)
    assert predict(net, bits=bits, backend="numpy").tolist() == [1, 1, 1]
    assert scores(net, bits=np.zeros((0, 4), bool), backend="numpy").shape == (0, 2)


def test_ties_go_to_the_lowest_class():
    assert ev.argmax_lowest(np.array([[1, 3, 3], [2, 2, 2], [0, 0, 1]])).tolist() == [1, 0, 2]


def test_argument_checks():
    net = random_netlists(1, 1)[0]
    with pytest.raises(TypeError, match="exactly one of images or bits"):
        scores(net)
    with pytest.raises(ValueError, match="backend must be one of"):
        scores(net, bits=random_bits(net, 2), backend="fast")
    with pytest.raises(ValueError, match="bits must have shape"):
        scores(net, bits=np.zeros((2, net.n_inputs + 1), bool))
    with pytest.raises(TypeError, match="images must be uint8"):
        scores(net, np.zeros((2, 16), np.int32))
    with pytest.raises(ValueError, match="images must have"):
        scores(net, np.zeros((2, 15), np.uint8))


def test_auto_picks_numpy_for_small_jobs(monkeypatch):
    net = random_netlists(2, 1)[0]
    monkeypatch.setattr(cbackend, "is_built", lambda *a, **k: False)
    assert ev.resolve_backend("auto", net, 10) == "numpy"
    assert ev.resolve_backend("reference", net, 10) == "reference"


# -- C backend ---------------------------------------------------------------------------------

@pytest.mark.heavy
@needs_cc
def test_c_matches_reference_on_random_netlists(c_cache):
    nets = random_netlists(30, 9) + [optimize(n)[0] for n in random_netlists(31, 3)]
    for i, net in enumerate(nets):
        for n in (1, 255, 256, 257, 700):
            bits = random_bits(net, n, seed=n + i)
            ref = scores(net, bits=bits, backend="reference")
            assert np.array_equal(scores(net, bits=bits, backend="c"), ref), (i, n)


@needs_cc
@pytest.mark.parametrize("lanes,extra", [(1, ()), (2, ()), (8, ()), (4, ("-DLGN_NO_SIMD",))])
def test_c_lanes_and_scalar_encoder(c_cache, lanes, extra):
    rng = np.random.default_rng(lanes)
    # 3 x 5 x 7 = 105 image bytes: six 16-byte SIMD chunks and a scalar tail; 2 thresholds
    net = random_netlist(rng, shape=(3, 5, 7), thresholds=2, widths=(80, 50, 40), n_classes=5, skip_prob=0.3,
                         bias=True)
    imgs = rng.integers(0, 256, (600, 3, 5, 7), dtype=np.uint8)
    imgs[:5] = 0
    imgs[5:10] = 255
    cn = cbackend.compile_netlist(net, lanes=lanes, extra_flags=extra)
    assert cn.simd == (not extra)
    ref = scores(net, bits=ev.encode_images(net, imgs), backend="reference")
    assert np.array_equal(cn.scores_images(imgs), ref)
    assert np.array_equal(cn.scores_bits(ev.encode_images(net, imgs)), ref)


@needs_cc
def test_c_thresholds_at_the_extremes(c_cache):
    # thresholds 0 and 254 and every byte value: the unsigned compare is exact at both ends
    enc = ThermometerEncoding.make((1, 4, 4), [0, 1, 127, 128, 254])
    rng = np.random.default_rng(0)
    net = random_netlist(rng, shape=(1, 4, 4), thresholds=[0, 1, 127, 128, 254], widths=(64, 32), n_classes=2)
    assert net.encoding == enc
    imgs = np.arange(256 * 16, dtype=np.int64).reshape(256, 16) % 256
    imgs = ((imgs + np.arange(16)) % 256).astype(np.uint8)
    assert np.array_equal(scores(net, imgs, backend="c"), scores(net, imgs, backend="reference"))


@needs_cc
def test_c_is_cached_and_reused(c_cache):
    net = random_netlists(40, 1)[0]
    a = cbackend.compile_netlist(net)
    assert a.compile_seconds > 0 and a.path.parent == c_cache / "netlist-c"
    assert cbackend.compile_netlist(net) is a
    cbackend._loaded.clear()
    b = cbackend.compile_netlist(net)            # from the disk cache this time
    assert b.compile_seconds == 0 and b.path == a.path
    assert cbackend.is_built(net)
    assert ev.resolve_backend("auto", net, 1) == "c"


def test_no_compiler(monkeypatch, c_cache):
    monkeypatch.setenv("CC", "/nonexistent/cc")
    monkeypatch.setattr(cbackend, "_probe", {})
    net = random_netlists(41, 1)[0]
    assert not cbackend.available()
    assert "no C compiler" in cbackend.unavailable_reason()
    with pytest.raises(cbackend.CompileError, match="no C compiler"):
        scores(net, bits=random_bits(net, 3), backend="c")
    # auto quietly uses numpy, whatever the size of the job
    monkeypatch.setattr(ev, "_AUTO_C_WORK", 0)
    bits = random_bits(net, 3)
    assert np.array_equal(scores(net, bits=bits), scores(net, bits=bits, backend="reference"))
    assert ev.available_backends() == ["numpy", "reference"]


@needs_cc
def test_generated_code_uses_the_gate_table(c_cache):
    net = random_netlists(42, 1)[0]
    files = cbackend.generate_c(net, units=3)
    assert "main.c" in files and any(k.startswith("part") for k in files)
    text = "".join(files.values())
    assert "s[" in text and "lgn_scores_images" in files["main.c"]
    with pytest.raises(ValueError, match="lanes must be"):
        cbackend.generate_c(net, lanes=3)
