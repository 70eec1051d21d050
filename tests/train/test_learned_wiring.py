"""Learned connections (``candidates > 1``): forward, gradients against a naive autograd form, export."""
import numpy as np
import pytest
import torch

from lgn_fpga.gates import naive_mix_terms
from lgn_fpga.kernels import reference
from lgn_fpga.train.model import LogicLayer, LogicNet, Relaxation, gumbel_noise


def _mix(A, B, w):
    return sum(w[:, i:i + 1] * t for i, t in enumerate(naive_mix_terms(A, B)))


def _naive_layer(layer, x, r, seed):
    """The straight-through layer written out with autograd: soft candidate reads, hard values forward."""
    gen = torch.Generator().manual_seed(seed)
    w = layer.conn_logits
    ws = w + r.noise * gumbel_noise(w.shape, gen) if r.kind == "sample" and r.noise else w
    p = torch.softmax(ws / (r.tau if r.kind == "sample" else 1.0), -1)
    j = ws.detach().argmax(-1)
    reads = []
    for side in range(2):
        cand = layer.cand[side]                                     # [N, K]
        xc = x[cand]                                                # [N, K, B]
        soft = (p[side].unsqueeze(-1) * xc.detach()).sum(1)         # gradient to the logits only
        hard = xc.gather(1, j[side][:, None, None].expand(-1, 1, x.shape[1])).squeeze(1)
        reads.append(hard + soft - soft.detach())
    z = layer.logits
    if r.kind == "sample":
        zs = z + r.noise * gumbel_noise(z.shape, gen) if r.noise else z
        soft = torch.softmax(zs / r.tau, -1)
        gw = torch.nn.functional.one_hot(zs.argmax(-1), 16).to(z.dtype) + soft - soft.detach()
        w_in = soft.detach() if r.input_grad == "soft" else gw.detach()
    else:
        gw = torch.softmax(z, -1)
        w_in = gw.detach()
    A, B = reads
    # gate logits see the inputs' values; the inputs' (and the connections') gradient flows through w_in
    y_z = _mix(A.detach(), B.detach(), gw)
    y_x = _mix(A, B, w_in)
    return y_z + y_x - y_x.detach()


@pytest.mark.parametrize("kernel", ["reference", "cpu"])
@pytest.mark.parametrize("kind,input_grad", [("sample", "soft"), ("sample", "hard"), ("soft", "soft")])
def test_connection_gradients_match_naive(kernel, kind, input_grad):
    if kernel == "cpu":
        from lgn_fpga.kernels import cpu
        if not cpu.available():
            pytest.skip(cpu.unavailable_reason())
    F, N, B, K = 23, 31, 37, 4
    layer = LogicLayer(F, N, generator=torch.Generator().manual_seed(1), candidates=K)
    x = (torch.rand(F, B, generator=torch.Generator().manual_seed(2)) > 0.5).float().requires_grad_(True)
    r = Relaxation(kind, noise=0.5, tau=0.7, input_grad=input_grad, generator=torch.Generator().manual_seed(9))
    G = torch.randn(N, B, generator=torch.Generator().manual_seed(3))
    y = layer(x, r, kernel)
    (y * G).sum().backward()
    got = x.grad.clone(), layer.logits.grad.clone(), layer.conn_logits.grad.clone()
    x.grad = layer.logits.grad = layer.conn_logits.grad = None

    yn = _naive_layer(layer, x, r, 9)
    torch.testing.assert_close(y.detach(), yn.detach(), rtol=0, atol=1e-6)   # the forward reads the picked candidates
    if kind == "sample":                                  # ... and a hard sample of the gates: exactly 0/1
        assert torch.equal(y.detach(), yn.detach().round()) and set(y.detach().unique().tolist()) <= {0.0, 1.0}
    (yn * G).sum().backward()
    for g, want in zip(got, (x.grad, layer.logits.grad, layer.conn_logits.grad)):
        torch.testing.assert_close(g, want, rtol=1e-4, atol=1e-4)
    assert got[2].abs().sum() > 0


@pytest.mark.parametrize("B", [1, 64, 65, 130])
def test_connection_c_kernels_equal_reference(B):
    from lgn_fpga.kernels import cpu
    if not cpu.available():
        pytest.skip(cpu.unavailable_reason())
    gen = torch.Generator().manual_seed(B)
    F, N, K = 50, 70, 3
    x = (torch.rand(F, B, generator=gen) > 0.5).float()
    g = torch.randn(N, B, generator=gen)
    c = torch.randn(N, 4, generator=gen)
    cand = torch.randint(F, (2, N, K), generator=gen)
    w, noise = torch.randn(2, N, K, generator=gen), torch.randn(2, N, K, generator=gen)
    w[0, :4] = 0.5                                          # ties: the first maximum, as torch.argmax
    for nz in (None, noise):
        got, want = cpu.conn_pick(w, nz, 0.3, cand), reference.connection_pick(w, nz, 0.3, cand)
        assert all(torch.equal(p, q) for p, q in zip(got, want))
    ws, a, b = reference.connection_pick(w, noise, 0.3, cand)
    a[:5] = b[:5]                                          # gates reading one signal twice
    torch.testing.assert_close(cpu.conn_grad(g, x, a, b, c, cand, ws, 0.7),
                               reference.connection_grad(g, x, a, b, c, cand, ws, 0.7), rtol=1e-5, atol=1e-5)
    xf = torch.rand(F, B, generator=gen)                                  # soft activations: the float kernel
    torch.testing.assert_close(cpu.conn_grad(g, xf, a, b, c, cand, ws, 0.7),
                               reference.connection_grad(g, xf, a, b, c, cand, ws, 0.7), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="candidate indices"):
        cpu.conn_grad(g, x, a, b, c, cand + F, ws, 0.7)


def test_reverse_index_in_c_equals_torch():
    from lgn_fpga.kernels import cpu
    from lgn_fpga.kernels.reverse_index import build
    if not cpu.available():
        pytest.skip(cpu.unavailable_reason())
    gen = torch.Generator().manual_seed(0)
    for F, N in ((1, 5), (40, 300), (300, 40), (7, 0)):
        a, b = torch.randint(F, (N,), generator=gen), torch.randint(F, (N,), generator=gen)
        a[: N // 3] = b[: N // 3]
        got, want = cpu.reverse_index_c(a, b, F), build(a, b, F)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    with pytest.raises(ValueError, match="wiring indices"):
        cpu.reverse_index_c(torch.tensor([0, 9]), torch.tensor([1, 2]), 5)


def test_candidates_keep_the_fixed_wiring_stream():
    """From one generator state a layer's candidate 0 and gate logits are those of fixed wiring; K=1 is fixed wiring."""
    lf = LogicLayer(60, 40, generator=torch.Generator().manual_seed(4))
    ll = LogicLayer(60, 40, generator=torch.Generator().manual_seed(4), candidates=3)
    assert torch.equal(lf.logits, ll.logits)
    assert torch.equal(ll.cand[0, :, 0], lf.a) and torch.equal(ll.cand[1, :, 0], lf.b)
    assert not hasattr(lf, "conn_logits") and not hasattr(LogicLayer(60, 40, candidates=1), "conn_logits")
    j = ll.conn_logits.argmax(-1)
    assert torch.equal(ll.a, ll.cand[0].gather(1, j[0][:, None]).squeeze(1))
    assert torch.equal(ll.b, ll.cand[1].gather(1, j[1][:, None]).squeeze(1))
    with pytest.raises(ValueError, match="candidates"):
        LogicLayer(60, 40, candidates=0)


def test_learned_net_hard_forward_is_the_exported_netlist():
    """After training steps the deployed wiring moves; the netlist export evaluates to the hard forward."""
    from lgn_fpga.data.encoding import ThermometerEncoding
    from lgn_fpga.netlist.evaluate import scores as netlist_scores
    from lgn_fpga.train.export import from_model
    torch.manual_seed(0)
    enc = ThermometerEncoding(shape=(1, 4, 4), thresholds=((128,),))
    net = LogicNet(enc.n_bits, [30, 20], 2, tau=2.0, seed=0, candidates=4)
    opt = torch.optim.Adam(net.parameters(), lr=0.5)
    bits = (torch.rand(64, enc.n_bits) > 0.5).float()
    labels = bits[:, 0].long()
    before = [l.deployed_wiring()[0].clone() for l in net.layers]
    r = Relaxation("sample", noise=0.1, tau=1.0, generator=torch.Generator().manual_seed(1))
    for _ in range(10):
        loss = torch.nn.functional.cross_entropy(net(bits, r, "cpu"), labels)
        opt.zero_grad(); loss.backward(); opt.step()
    after = [l.deployed_wiring()[0].clone() for l in net.layers]
    assert any(not torch.equal(p, q) for p, q in zip(before, after))
    with torch.no_grad():
        scores = net(bits, Relaxation("hard"), "cpu")
    netlist = from_model(net, enc)
    counts = netlist_scores(netlist, bits=bits.numpy().astype(np.uint8))
    assert np.array_equal(counts, (scores * 2.0).round().numpy().astype(counts.dtype))


@pytest.mark.parametrize("input_grad", ["soft", "hard"])
def test_learned_net_with_class_groups_cpu_equals_reference(input_grad):
    """A whole LogicNet with learned connections: the C stack (class counts popcounted from the last layer's bits,
    the top layer's gradient read one row per class group) against the reference backend, forward and gradients."""
    from lgn_fpga.kernels import cpu
    if not cpu.available():
        pytest.skip(cpu.unavailable_reason())
    net = LogicNet(30, [40, 35], 5, tau=2.0, seed=3, candidates=4)
    bits = (torch.rand(37, 30, generator=torch.Generator().manual_seed(4)) > 0.5).float()
    G = torch.randn(37, 5, generator=torch.Generator().manual_seed(5))
    out = {}
    for kernel in ("reference", "cpu"):
        r = Relaxation("sample", noise=0.5, tau=0.7, input_grad=input_grad, generator=torch.Generator().manual_seed(6))
        net.zero_grad(set_to_none=True)
        y = net(bits, r, kernel)
        (y * G).sum().backward()
        out[kernel] = (y.detach(), *[p.grad.clone() for p in net.parameters()])
    assert torch.equal(out["cpu"][0], out["reference"][0])             # counts of 0/1 bits: exact
    for got, want in zip(out["cpu"][1:], out["reference"][1:]):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert all(g.abs().sum() > 0 for g in out["cpu"][1:])


@pytest.mark.parametrize("K", [3, 8, 17])
@pytest.mark.parametrize("N,B", [(32, 128), (70, 37), (45, 130)])
def test_simd_connection_gradient_equals_the_generic_loop(K, N, B, simd_and_generic):
    """The AVX-512 connection gradient (register tiles, the softmax of 16 gates' rows per vector, blocks of 16
    gates and a tail) against the generic loop: the same floats (sums of the same terms in the same order)."""
    from lgn_fpga.kernels import cpu
    gen = torch.Generator().manual_seed(K * N + B)
    F = 60
    x = (torch.rand(F, B, generator=gen) > 0.5).float()
    g, c = torch.randn(N, B, generator=gen), torch.randn(N, 4, generator=gen)
    cand = torch.randint(F, (2, N, K), generator=gen)
    ws = torch.randn(2, N, K, generator=gen) * 2
    ws[0, :3] = 0.25                                        # ties in the softmax's maximum
    a, b = cand[0, :, 0].clone(), cand[1, :, 0].clone()
    simd, generic = simd_and_generic(lambda: cpu.conn_grad(g, x, a, b, c, cand, ws, 0.7))
    assert torch.equal(simd, generic)


@pytest.mark.parametrize("K", [1, 3, 8, 16, 17, 64])
def test_connection_pick_simd_keyed_and_generic_agree(K):
    """The pick of the C kernel: its AVX-512 form (K <= 16) and the generic loop, each with the noise as a tensor
    and as the stream's key (made in the kernel), all the same ws bits and picks as the reference; ties and NaNs
    (the first maximum, the first NaN) included; 150 rows: blocks of 64 and a tail, odd offsets when K is odd."""
    from lgn_fpga.kernels import cpu, reference
    if not cpu.available():
        pytest.skip(cpu.unavailable_reason())
    gen = torch.Generator().manual_seed(K)
    N, F = 75, 40
    w = torch.randn(2, N, K, generator=gen)
    w[0, :5] = 0.5                                          # ties (with no noise)
    w[1, 3, K // 2] = float("nan")                          # a NaN wins
    cand = torch.randint(F, (2, N, K), generator=gen)
    key = cpu.GumbelKey(K + 11, w.shape)
    want = [reference.connection_pick(w, nz, 0.3, cand) for nz in (None, key.tensor())]
    lib = cpu._lib()
    try:
        for tiles in (1, 0):
            lib.lgn_use_tiles(tiles)
            for nz, ref in ((None, want[0]), (key.tensor(), want[1]), (key, want[1])):
                got = cpu.conn_pick(w, nz, 0.3, cand)
                assert all(torch.equal(p, q) for p, q in zip(got[1:], ref[1:]))
                assert torch.equal(got[0].view(torch.int32), ref[0].view(torch.int32))   # bits, NaN included
    finally:
        lib.lgn_use_tiles(1)


def test_connection_pick_does_not_depend_on_thread_count(monkeypatch):
    """Blocks of rows on threads (the noise made per block from the key): the same ws and picks."""
    from lgn_fpga.kernels import cpu
    if not cpu.available():
        pytest.skip(cpu.unavailable_reason())
    gen = torch.Generator().manual_seed(5)
    w, cand = torch.randn(2, 3000, 8, generator=gen), torch.randint(100, (2, 3000, 8), generator=gen)
    key = cpu.GumbelKey(77, w.shape)
    monkeypatch.setenv("LGN_FPGA_THREADS", "1")
    one = cpu.conn_pick(w, key, 0.5, cand)
    monkeypatch.setenv("LGN_FPGA_THREADS", "2")
    two = cpu.conn_pick(w, key, 0.5, cand)
    assert all(torch.equal(p, q) for p, q in zip(one, two))
