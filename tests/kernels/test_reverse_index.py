"""The reverse index (consumers of every input) and its cache."""
import pytest
import torch

from lgn_fpga.kernels.reverse_index import build, check_indices, reverse_index


def consumers(a, b, F):
    """The same index written the obvious way."""
    out = [[] for _ in range(F)]
    for n, i in enumerate(a.tolist()):
        out[i].append(2 * n)
    for n, i in enumerate(b.tolist()):
        out[i].append(2 * n + 1)
    return out


@pytest.mark.parametrize("F,N", [(1, 1), (5, 3), (7, 40), (100, 10)])
def test_csr_lists_every_consumer_once_per_slot(F, N):
    gen = torch.Generator().manual_seed(F + N)
    a = torch.randint(F, (N,), generator=gen)
    b = torch.randint(F, (N,), generator=gen)
    b[: N // 2] = a[: N // 2]
    off, idx = build(a, b, F)
    assert off.shape == (F + 1,) and idx.shape == (2 * N,)
    assert off[0] == 0 and off[-1] == 2 * N
    want = consumers(a, b, F)
    for i in range(F):
        assert idx[off[i]:off[i + 1]].tolist() == want[i]


def test_cache_hits_and_invalidates_on_in_place_change():
    a = torch.tensor([0, 1, 2, 2])
    b = torch.tensor([3, 3, 0, 1])
    r1 = reverse_index(a, b, 4)
    assert reverse_index(a, b, 4) is r1
    assert reverse_index(a, b, 5) is not r1             # another input count
    a[0] = 1
    r2 = reverse_index(a, b, 5)
    assert r2 is not r1 and r2[1].tolist() == [c for l in consumers(a, b, 5) for c in l]
    b2 = b.clone()
    assert reverse_index(a, b2, 5) is not r2            # another b tensor


@pytest.mark.parametrize("a,b,msg", [
    (torch.tensor([0, 4]), torch.tensor([1, 1]), r"wiring indices must lie in \[0, 4\), not \[0, 4\]"),
    (torch.tensor([-1, 0]), torch.tensor([1, 1]), r"wiring indices must lie in \[0, 4\), not \[-1, 1\]"),
    (torch.tensor([0, 1]), torch.tensor([1]), "a and b must have the same length, not 2 and 1"),
    (torch.tensor([0.0, 1.0]), torch.tensor([1, 1]), "a must be a 1-d int64 tensor, not torch.float32"),
    (torch.tensor([0, 1]), torch.tensor([[1, 1]]), r"b must be a 1-d int64 tensor, not torch.int64 \(1, 2\)"),
])
def test_bad_indices_are_refused(a, b, msg):
    with pytest.raises(ValueError, match=msg):
        check_indices(a, b, 4)
