"""The bit-packed hard forward of the C kernel: the same outputs and gradients as the reference kernel."""
import pytest
import torch

from lgn_fpga.gates import COEFFS, NUM_GATES, torch_coeffs
from lgn_fpga.kernels import cpu, logic_layer, logic_stack

pytestmark = pytest.mark.skipif(not cpu.available(), reason=f"C kernel unavailable: {cpu.unavailable_reason()}")


def assert_close(u, v, what):
    scale = max(1.0, float(v.abs().max()))
    torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-5 * scale, msg=lambda m: f"{what}: {m}")


def wiring(F, N, gen):
    a = torch.randint(F, (N,), generator=gen)
    b = torch.randint(F, (N,), generator=gen)
    b[: N // 5] = a[: N // 5]                  # a == b
    a[N // 5: N // 3] = a[0]                   # one input read by many neurons
    return a, b


def hard_layers(dims, gen, soft_input_grad):
    """(a, b, z, gumbel) per layer: every one of the 16 gates appears."""
    out = []
    for F, N in zip(dims[:-1], dims[1:]):
        a, b = wiring(F, N, gen)
        z = torch.randn(N, NUM_GATES, generator=gen)
        z[torch.arange(N), torch.arange(N) % NUM_GATES] += 50.0   # sample every gate
        out.append((a, b, z, torch.rand(N, NUM_GATES, generator=gen)))
    return out


def run(backend, x0, layers, R, soft_input_grad, x_grad, groups=None):
    """Gumbel-STE coefficients as the model forms them; returns (y, dx, [dz per layer]) (with ``groups``, y is
    the sums of the last layer's contiguous groups)."""
    M = torch_coeffs()
    x = x0.clone().requires_grad_(x_grad)
    zs, stack = [], []
    for a, b, z, gum in layers:
        z = z.clone().requires_grad_()
        zz = z + gum
        c_soft = torch.softmax(zz / 0.7, -1) @ M
        c = M[zz.detach().argmax(-1)] + (c_soft - c_soft.detach())
        stack.append((a, b, c, c_soft.detach() if soft_input_grad else None))
        zs.append(z)
    if backend == "reference":
        y = x
        for a, b, c, c_in in stack:
            y = logic_layer(y, a, b, c, c_in, backend="reference")
        if groups:
            y = y.reshape(groups, -1, y.shape[1]).sum(1)
    else:
        y = logic_stack(x, stack, backend="cpu", groups=groups)
        assert type(y.grad_fn).__name__.startswith("HardStack"), y.grad_fn   # the bit-packed path ran
    (y * R).sum().backward()
    return y.detach(), x.grad, [z.grad for z in zs]


@pytest.mark.parametrize("B", [1, 37, 64, 65, 130, 513])   # 513: rows of 9 words, the switch path
@pytest.mark.parametrize("soft_input_grad", [False, True])
@pytest.mark.parametrize("x_grad", [False, True])
@pytest.mark.parametrize("groups", [None, 5])
def test_hard_stack_equals_reference(B, soft_input_grad, x_grad, groups):
    gen = torch.Generator().manual_seed(B + 10 * soft_input_grad + 100 * x_grad)
    dims = [53, 77, 41, 30]
    layers = hard_layers(dims, gen, soft_input_grad)
    x = (torch.rand(dims[0], B, generator=gen) < 0.5).float()
    R = torch.randn(groups or dims[-1], B, generator=gen)
    ref = run("reference", x, layers, R, soft_input_grad, x_grad, groups)
    got = run("cpu", x, layers, R, soft_input_grad, x_grad, groups)
    assert torch.equal(got[0], ref[0])                     # hard gates on bits: exact
    if x_grad:
        assert_close(got[1], ref[1], "dx")
    else:
        assert got[1] is None
    for i, (u, v) in enumerate(zip(got[2], ref[2])):
        assert_close(u, v, f"layer {i} dlogits")


def test_groups_must_divide_the_last_layer():
    a, b = torch.zeros(6, dtype=torch.int64), torch.ones(6, dtype=torch.int64)
    c = torch_coeffs()[torch.full((6,), 3)]
    with pytest.raises(ValueError, match="width 6 is not divisible by 4"):
        logic_stack(torch.ones(2, 3), [(a, b, c, None)], "cpu", groups=4)


def test_every_gate_matches_its_truth_table():
    c = torch.tensor(COEFFS, dtype=torch.float32)
    tt = cpu.truth_tables(c)
    assert tt is not None and len(set(tt.tolist())) == NUM_GATES
    for g, (c0, c1, c2, c3) in enumerate(COEFFS):
        f = [c0 + c1 * A + c2 * B + c3 * A * B for A, B in ((0, 0), (1, 0), (0, 1), (1, 1))]
        assert int(tt[g]) == sum(int(v) << k for k, v in enumerate(f))


def test_soft_or_inexact_coefficients_are_not_hard():
    c = torch.tensor(COEFFS, dtype=torch.float32)
    assert cpu.truth_tables(torch.softmax(torch.randn(5, NUM_GATES), -1) @ torch_coeffs()) is None
    assert cpu.truth_tables(c + 1e-7 * (c != 0)) is None
    assert cpu.truth_tables(c.double()) is None


def test_non_binary_input_falls_back_to_the_float_kernel():
    gen = torch.Generator().manual_seed(3)
    a, b = wiring(20, 30, gen)
    c = torch.tensor(COEFFS, dtype=torch.float32)[torch.arange(30) % NUM_GATES]
    x = (torch.rand(20, 70, generator=gen) < 0.5).float()
    assert cpu.hard_stack(x, [(a, b, c, None)]) is not None
    x[3, 69] = 0.5
    assert cpu.hard_stack(x, [(a, b, c, None)]) is None
    torch.testing.assert_close(logic_stack(x, [(a, b, c, None)], "cpu"), logic_layer(x, a, b, c, backend="reference"),
                               rtol=0, atol=0)


def assert_same_on_1_2_3_threads(monkeypatch, fn):
    """``fn()`` (a tuple of tensors) gives the same bits with the C kernel on 1, 2 and 3 threads."""
    res = []
    for t in ("1", "2", "3"):
        monkeypatch.setenv("LGN_FPGA_THREADS", t)
        res.append(fn())
    for r in res[1:]:
        assert len(r) == len(res[0]) and all(torch.equal(u, v) for u, v in zip(r, res[0]))


def test_bits_do_not_depend_on_thread_count(monkeypatch):
    gen = torch.Generator().manual_seed(5)
    dims = [40, 300, 200]
    layers = hard_layers(dims, gen, False)
    x = (torch.rand(dims[0], 100, generator=gen) < 0.5).float()
    R = torch.randn(dims[-1], 100, generator=gen)

    def outputs_and_grads():
        y, dx, dzs = run("cpu", x, layers, R, False, True)
        return (y, dx, *dzs)
    assert_same_on_1_2_3_threads(monkeypatch, outputs_and_grads)


def test_the_model_trains_and_evaluates_bit_packed(monkeypatch):
    """LogicNet with the C kernel takes the packed path for Gumbel-STE and for argmax, not for softmax."""
    from lgn_fpga.train.model import LogicNet, Relaxation
    calls = []
    real = cpu.HardStack.apply
    monkeypatch.setattr(cpu.HardStack, "apply", lambda *a: calls.append(1) or real(*a))
    net = LogicNet(37, [60, 45, 30], 3, tau=3.0, seed=4)
    bits = (torch.rand(13, 37) < 0.5).float()
    for kind, packed in (("sample", True), ("hard", True), ("soft", False)):
        calls.clear()
        scores = net(bits, Relaxation(kind, generator=torch.Generator().manual_seed(0)), backend="cpu")
        if scores.requires_grad:
            scores.sum().backward()
        assert bool(calls) == packed, kind


@pytest.mark.parametrize("scale,tau", [(1.0, 1.0), (0.1, 0.7), (0.0, 2.0)])
def test_fused_gumbel_coefficients_equal_the_reference(scale, tau):
    from lgn_fpga.kernels import gumbel_ste_coefficients
    from lgn_fpga.train.model import gumbel_noise
    gen = torch.Generator().manual_seed(int(10 * scale + tau))
    z0 = torch.randn(3001, NUM_GATES, generator=gen) * 2
    noise = gumbel_noise(z0.shape, gen) if scale else None
    R = torch.randn(3001, 4, generator=gen)
    out = {}
    for be in ("reference", "cpu"):
        z = z0.clone().requires_grad_()
        c, c_soft = gumbel_ste_coefficients(z, noise, scale, tau, torch_coeffs(), be)
        assert not c_soft.requires_grad
        (c * R).sum().backward()
        out[be] = (c.detach(), c_soft, z.grad)
    assert type(out["cpu"][0]) is torch.Tensor and cpu.truth_tables(out["cpu"][0]) is not None
    assert torch.equal(out["cpu"][0], out["reference"][0])          # the same sampled gates
    assert_close(out["cpu"][1], out["reference"][1], "c_soft")
    assert_close(out["cpu"][2], out["reference"][2], "dlogits")


def test_gumbel_coefficients_do_not_depend_on_thread_count(monkeypatch):
    """From 4,096 neurons the coefficient op and its backward run on several threads: the same bits."""
    from lgn_fpga.kernels import gumbel_ste_coefficients
    from lgn_fpga.train.model import gumbel_noise
    gen = torch.Generator().manual_seed(8)
    z0 = torch.randn(9001, NUM_GATES, generator=gen)
    noise = gumbel_noise(z0.shape, gen)
    R = torch.randn(9001, 4, generator=gen)

    def coefficients_and_grad():
        z = z0.clone().requires_grad_()
        c, c_soft = gumbel_ste_coefficients(z, noise, 0.5, 0.8, torch_coeffs(), "cpu")
        (c * R).sum().backward()
        return c.detach(), c_soft, z.grad
    assert_same_on_1_2_3_threads(monkeypatch, coefficients_and_grad)


def test_wiring_changed_in_place_is_noticed():
    """The bit-packed path checks and reverse-indexes the wiring as it is at each forward."""
    gen = torch.Generator().manual_seed(11)
    a, b = wiring(20, 30, gen)
    c = torch.tensor(COEFFS, dtype=torch.float32)[torch.arange(30) % NUM_GATES]
    x = (torch.rand(20, 70, generator=gen) < 0.5).float()
    for step in range(2):
        xg, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
        y = logic_stack(xg, [(a, b, c, None)], "cpu")
        assert type(y.grad_fn).__name__.startswith("HardStack")
        (y * torch.arange(70.)).sum().backward()
        (logic_layer(xr, a, b, c, backend="reference") * torch.arange(70.)).sum().backward()
        assert_close(xg.grad, xr.grad, f"dx, step {step}")
        a[:10] = (a[:10] + 7) % 20   # rewire in place
    a[0] = 20
    with pytest.raises(ValueError, match=r"wiring indices must lie in \[0, 20\)"):
        logic_stack(x, [(a, b, c, None)], "cpu")


@pytest.mark.parametrize("B", [1, 16, 37, 128, 130, 300])
def test_tiled_backward_equals_the_generic_one(B, simd_and_generic):
    """The AVX-512 backward (register tiles of 128 samples) against the generic loop: dx bit for bit, dc up to
    the order of its sums; B covers partial chunks, one tile, and tiles plus a tail."""
    gen = torch.Generator().manual_seed(B)
    layers = hard_layers([40, 90, 50], gen, True)
    x = (torch.rand(40, B, generator=gen) < 0.5).float()
    R = torch.randn(50, B, generator=gen)
    (tiled, tiled_c), (generic, generic_c) = simd_and_generic(
        lambda: (run("cpu", x, layers, R, True, True), run("cpu", x, layers, R, True, False)))
    assert torch.equal(tiled[0], generic[0]) and torch.equal(tiled[1], generic[1])
    for u, v in zip(tiled[2], generic[2]):
        torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-6)
    # Without an input gradient the first layer takes the dc-only kernel: its register form is bit for bit
    assert torch.equal(tiled_c[2][0], generic_c[2][0])


@pytest.mark.parametrize("N", [16, 37, 1003])
@pytest.mark.parametrize("noisy", [False, True])
@pytest.mark.parametrize("tau", [1.0, 0.8])
def test_simd_gumbel_coefficients_equal_the_generic_loop(N, noisy, tau, simd_and_generic):
    """The AVX-512 Gumbel-STE coefficients (16 neurons transposed in registers) against the generic loop: the
    sampled gates, both coefficient sets, the saved probabilities and the backward, all bit for bit, and the
    same again when the op makes the noise from its key; N covers whole blocks and a tail, and rounded logits
    make ties (the first maximum must win)."""
    gen = torch.Generator().manual_seed(N)
    z = torch.randn(N, 16, generator=gen) * 3
    z[::3] = z[::3].round()                                   # ties within a neuron
    noise = cpu.gumbel_noise((N, 16), N) if noisy else None
    M = torch_coeffs()
    dc = torch.randn(N, 4, generator=gen)

    def once(noise):
        zz = z.clone().requires_grad_(True)
        c, c_soft = cpu.gumbel_ste_coefficients(zz, noise, 0.7 if noisy else 0.0, tau, M)
        (c * dc).sum().backward()
        return c.detach(), c_soft, zz.grad, c._lgn_tt[0]
    key = cpu.GumbelKey(N, (N, 16)) if noisy else None       # the op making the stream's values itself
    (simd, simd_keyed), (generic, generic_keyed) = simd_and_generic(lambda: (once(noise), once(key)))
    for u, v, w, x in zip(simd, generic, simd_keyed, generic_keyed):
        assert torch.equal(u, v) and torch.equal(u, w) and torch.equal(u, x)


def test_gumbel_ste_carries_the_sampled_gates_truth_tables():
    """The C Gumbel-STE op hands its sampled gates' truth tables to the bit-packed stack: the same tables that
    truth_tables recovers from the coefficients, and not used once the coefficients change in place."""
    M = torch_coeffs()
    for N in (1, 16, 1003):                                   # the op's 16-neuron blocks and its tail
        z = torch.randn(N, 16, generator=torch.Generator().manual_seed(N), requires_grad=True)
        c, _ = cpu.gumbel_ste_coefficients(z, cpu.gumbel_noise((N, 16), N), 0.7, 1.0, M)
        carried = cpu.truth_tables(c)
        assert c._lgn_tt[0] is carried
        del c._lgn_tt
        assert torch.equal(carried, cpu.truth_tables(c))
    c, _ = cpu.gumbel_ste_coefficients(z, None, 0.0, 1.0, M)
    with torch.no_grad():
        c[0] = 0.5                                            # no longer a gate: the carried tables must not be used
    assert cpu.truth_tables(c) is None


def test_gumbel_ste_carries_no_tables_for_coefficients_that_are_not_gates():
    """With a coefficient matrix whose rows are not the 16 gates, the op writes no tables and hangs none on c."""
    M = torch_coeffs() * 0.5
    z = torch.randn(40, 16, generator=torch.Generator().manual_seed(1), requires_grad=True)
    c, _ = cpu.gumbel_ste_coefficients(z, None, 0.0, 1.0, M)
    assert not hasattr(c, "_lgn_tt") and cpu.truth_tables(c) is None
