"""The Gumbel noise stream: the C kernel against a numpy transcription, its statistics and reproducibility."""
import numpy as np
import pytest
import torch

from lgn_fpga.kernels import cpu, gumbel_noise

pytestmark = pytest.mark.skipif(not cpu.available(), reason="C kernel unavailable")

GOLDEN, M1, M2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def numpy_gumbel(n: int, key: int) -> np.ndarray:
    """What docs/kernels.md says the stream is: splitmix64 of key + (j+1)*golden, two 23-bit uniforms per pair."""
    j = np.arange((n + 1) // 2, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(key) + (j + np.uint64(1)) * GOLDEN
        z = (z ^ (z >> np.uint64(30))) * M1
        z = (z ^ (z >> np.uint64(27))) * M2
    z = z ^ (z >> np.uint64(31))
    v = np.empty(2 * len(j), np.uint64)
    v[0::2], v[1::2] = z >> np.uint64(41), (z >> np.uint64(8)) & np.uint64(0x7FFFFF)
    u = (v[:n].astype(np.float64) + 0.5) / 2.0 ** 23
    return -np.log(-np.log(u))


@pytest.mark.parametrize("n,key", [(1, 0), (7, 5), (1000, 2**62 - 1), (100_001, 123456789)])
def test_every_value_is_the_transcriptions(n, key):
    got = cpu.gumbel_noise((n,), key).numpy().astype(np.float64)
    want = numpy_gumbel(n, key)
    assert np.abs(got - want).max() < 1e-5


@pytest.mark.parametrize("n,key", [(31, 1), (64, 7), (1003, 2**64 - 5), (100_001, 123456789)])
def test_simd_stream_equals_the_generic_loop(n, key, simd_and_generic):
    """The AVX-512 form (16 pairs at a time) and the generic loop give the same bits, tails included."""
    simd, generic = simd_and_generic(lambda: cpu.gumbel_noise((n,), key))
    assert torch.equal(simd, generic)


def test_shape_threads_and_generator(monkeypatch):
    a = cpu.gumbel_noise((3, 1 << 19), 99)            # 1.5M values: the threaded loop
    monkeypatch.setenv("LGN_FPGA_THREADS", "1")
    assert torch.equal(a, cpu.gumbel_noise((3, 1 << 19), 99))
    assert a.shape == (3, 1 << 19) and a.dtype == torch.float32
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    x = gumbel_noise((64, 16), g1)
    assert torch.equal(x, gumbel_noise((64, 16), g2))           # the generator's state fixes the noise
    assert not torch.equal(x, gumbel_noise((64, 16), g2))       # and each draw advances it


def test_statistics_are_gumbels():
    x = cpu.gumbel_noise((2_000_000,), 7).numpy().astype(np.float64)
    assert abs(x.mean() - 0.5772157) < 3e-3                  # Euler's constant; sd of the mean 1e-3
    assert abs(x.var() - np.pi ** 2 / 6) < 1e-2
    # The CDF exp(-exp(-t)) at a few points, within 4 standard errors.
    for t in (-1.0, 0.0, 1.0, 3.0):
        p = np.exp(-np.exp(-t))
        assert abs((x <= t).mean() - p) < 4 * np.sqrt(p * (1 - p) / len(x))
    assert np.isfinite(x).all()
