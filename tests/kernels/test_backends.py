"""Every logic-layer backend against difflogic's naive 16-op layer: outputs and all gradients.

The naive layer runs in float64 as the ground truth; the backends run in
float32 and must agree within a tight tolerance (bit-exactly where every value
is exact: hard gates on 0/1 inputs).  Shapes are odd on purpose, and the
wiring repeats inputs (``a == b``, many neurons per input) so that the
scatter-add of the input gradient is exercised.
"""
import importlib

import pytest
import torch

from lgn_fpga.gates import COEFFS, NUM_GATES, torch_coeffs
from lgn_fpga.kernels import logic_layer
from lgn_fpga.kernels.naive import naive_layer
from lgn_fpga.train.model import gumbel_noise

BACKENDS = ["reference", "cpu", "triton"]


def backend_device(name):
    """The device a backend runs on here, or skip with the reason it cannot run."""
    if name == "reference":
        return "cpu"
    if name == "cpu":
        from lgn_fpga.kernels import cpu
        if not cpu.available():
            pytest.skip(f"C kernel unavailable: {cpu.unavailable_reason()}")
        return "cpu"
    try:
        tk = importlib.import_module("lgn_fpga.kernels.triton_kernels")
    except ImportError as e:
        pytest.skip(f"triton not importable: {e}")
    if torch.cuda.is_available() and not tk.INTERPRET:
        return "cuda"
    if not tk.INTERPRET:
        pytest.skip("no GPU and triton_kernels was imported without TRITON_INTERPRET=1")
    return "cpu"


def make_wiring(F, N, gen, dup=True):
    a = torch.randint(F, (N,), generator=gen)
    b = torch.randint(F, (N,), generator=gen)
    if dup:
        b[: N // 5] = a[: N // 5]              # a == b
        a[N // 5: N // 3] = a[0]               # one input read by many neurons
        b[N // 3: N // 2] = a[N // 3: N // 2].flip(0)
    return a, b


def coefficients(z, mode, gumbel=None, tau=1.0, input_grad="hard"):
    """(c, c_in) as the model forms them, from logits ``z``."""
    M = torch_coeffs(device=z.device, dtype=z.dtype)
    if mode == "softmax":
        return torch.softmax(z, -1) @ M, None
    zs = z + gumbel
    c_hard = M[zs.detach().argmax(-1)]
    c_soft = torch.softmax(zs / tau, -1) @ M
    c = c_hard + (c_soft - c_soft.detach())
    return c, (c_soft.detach() if input_grad == "soft" else None)


def run_backend(backend, device, x, a, b, z, R, mode, gumbel=None, tau=1.0, input_grad="hard"):
    """Batch-major in and out, like the naive layer: ``(y [B, N], dx [B, F], dz [N, 16])``."""
    xb = x.detach().to(device).requires_grad_()
    zz = z.detach().to(device).requires_grad_()
    c, c_in = coefficients(zz, mode, None if gumbel is None else gumbel.to(device), tau, input_grad)
    y = logic_layer(xb.t().contiguous(), a.to(device), b.to(device), c, c_in, backend=backend).t()
    (y * R.to(device)).sum().backward()
    return y.detach().cpu(), xb.grad.cpu(), zz.grad.cpu()


def run_naive(x, a, b, z, R, mode, gumbel=None, tau=1.0, input_grad="hard", dtype=torch.float64):
    xb = x.detach().to(dtype).requires_grad_()
    zz = z.detach().to(dtype).requires_grad_()
    y = naive_layer(xb, a, b, zz, mode=mode, gumbel=None if gumbel is None else gumbel.to(dtype), tau=tau,
                    input_grad=input_grad)
    (y * R.to(dtype)).sum().backward()
    return y.detach(), xb.grad, zz.grad


def assert_close(actual, truth, what):
    scale = max(1.0, float(truth.abs().max()))
    torch.testing.assert_close(actual.double(), truth.double(), rtol=2e-5, atol=2e-5 * scale, msg=lambda m: f"{what}: {m}")


SHAPES = [(123, 42, 6), (123, 42, 65), (7, 50, 33), (40, 300, 1)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("F,N,B", SHAPES)
def test_softmax_mode(backend, F, N, B):
    device = backend_device(backend)
    gen = torch.Generator().manual_seed(F * 1000 + N + B)
    a, b = make_wiring(F, N, gen)
    x = torch.rand(B, F, generator=gen)
    z = torch.randn(N, NUM_GATES, generator=gen) * 2
    R = torch.randn(B, N, generator=gen)
    y, dx, dz = run_backend(backend, device, x, a, b, z, R, "softmax")
    ty, tdx, tdz = run_naive(x, a, b, z, R, "softmax")
    assert_close(y, ty, "y")
    assert_close(dx, tdx, "dx")
    assert_close(dz, tdz, "dlogits")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("input_grad", ["hard", "soft"])
@pytest.mark.parametrize("F,N,B", [(123, 42, 6), (7, 50, 33)])
def test_gumbel_ste_mode(backend, input_grad, F, N, B):
    device = backend_device(backend)
    gen = torch.Generator().manual_seed(7 * F + N + B)
    a, b = make_wiring(F, N, gen)
    x = (torch.rand(B, F, generator=gen) < 0.5).float()       # binary inputs: every value is exact
    z = torch.randn(N, NUM_GATES, generator=gen)
    gumbel = gumbel_noise((N, NUM_GATES), gen)
    R = torch.randn(B, N, generator=gen)
    y, dx, dz = run_backend(backend, device, x, a, b, z, R, "gumbel-ste", gumbel, 0.7, input_grad)
    ty, tdx, tdz = run_naive(x, a, b, z, R, "gumbel-ste", gumbel, 0.7, input_grad)
    # The forward is the sampled hard gate: exactly 0/1, bit-equal to the naive layer and to the truth table.
    assert torch.equal(y, ty.float())
    assert set(y.unique().tolist()) <= {0.0, 1.0}
    ids = (z + gumbel).argmax(-1)
    truth = torch.tensor(COEFFS)[ids]
    xa, xb = x[:, a], x[:, b]
    assert torch.equal(y, truth[:, 0] + truth[:, 1] * xa + truth[:, 2] * xb + truth[:, 3] * xa * xb)
    assert_close(dx, tdx, "dx")
    assert_close(dz, tdz, "dlogits")


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_gate_hard_on_bits_is_exact(backend):
    """Each of the 16 gates, one neuron each, on all 4 input combinations: the truth table, bit for bit."""
    device = backend_device(backend)
    from lgn_fpga.gates import TRUTH
    x = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])   # samples (A, B) = 00, 01, 10, 11
    a = torch.full((NUM_GATES,), 0, dtype=torch.int64)
    b = torch.full((NUM_GATES,), 1, dtype=torch.int64)
    c = torch_coeffs()[torch.arange(NUM_GATES)]
    y = logic_layer(x.t().contiguous().to(device), a.to(device), b.to(device), c.to(device), backend=backend)
    assert torch.equal(y.cpu(), torch.tensor(TRUTH, dtype=torch.float32))


@pytest.mark.parametrize("backend", BACKENDS)
def test_partial_gradients_and_no_grad(backend):
    """Only what autograd asks for: no x gradient (first layer), no c gradient, and no graph at all."""
    device = backend_device(backend)
    gen = torch.Generator().manual_seed(3)
    F, N, B = 31, 45, 17
    a, b = make_wiring(F, N, gen)
    a, b = a.to(device), b.to(device)
    x = torch.rand(F, B, generator=gen).to(device)
    c0 = torch.randn(N, 4, generator=gen).to(device)
    ref = logic_layer(x.cpu(), a.cpu(), b.cpu(), c0.cpu(), backend="reference")

    c = c0.clone().requires_grad_()
    y = logic_layer(x, a, b, c, backend=backend)
    y.sum().backward()
    cr = c0.cpu().clone().requires_grad_()
    logic_layer(x.cpu(), a.cpu(), b.cpu(), cr, backend="reference").sum().backward()
    assert_close(c.grad.cpu(), cr.grad, "dc without dx")

    xg = x.clone().requires_grad_()
    logic_layer(xg, a, b, c0, backend=backend).sum().backward()
    xr = x.cpu().clone().requires_grad_()
    logic_layer(xr, a.cpu(), b.cpu(), c0.cpu(), backend="reference").sum().backward()
    assert_close(xg.grad.cpu(), xr.grad, "dx without dc")

    with torch.no_grad():
        y2 = logic_layer(x, a, b, c, backend=backend)
    assert not y2.requires_grad
    assert_close(y2.cpu(), ref, "no_grad forward")


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_input_and_inputs_nobody_reads(backend):
    device = backend_device(backend)
    gen = torch.Generator().manual_seed(5)
    F, N, B = 50, 9, 20                       # most inputs are read by no neuron: their gradient is 0
    a = torch.randint(5, (N,), generator=gen).to(device)
    b = torch.randint(5, (N,), generator=gen).to(device)
    xbm = torch.rand(B, F, generator=gen).to(device).requires_grad_()
    c = torch.randn(N, 4, generator=gen).to(device)
    y = logic_layer(xbm.t(), a, b, c, backend=backend)          # a transposed view, not contiguous
    y.sum().backward()
    xr = xbm.detach().cpu().requires_grad_()
    yr = logic_layer(xr.t(), a.cpu(), b.cpu(), c.cpu(), backend="reference")
    yr.sum().backward()
    assert_close(y.detach().cpu(), yr.detach(), "y")
    assert_close(xbm.grad.cpu(), xr.grad, "dx")
    assert torch.count_nonzero(xbm.grad[:, 5:]) == 0


@pytest.mark.parametrize("backend", ["cpu", "triton"])
def test_out_of_range_wiring_is_refused(backend):
    device = backend_device(backend)
    x = torch.rand(10, 4, device=device)
    a = torch.tensor([0, 10], device=device)
    b = torch.tensor([1, 2], device=device)
    with pytest.raises(ValueError, match=r"wiring indices must lie in \[0, 10\), not \[0, 10\]"):
        logic_layer(x, a, b, torch.zeros(2, 4, device=device), backend=backend)
    with pytest.raises(ValueError, match="must be a 1-d int64 tensor"):
        logic_layer(x, a.int(), b, torch.zeros(2, 4, device=device), backend=backend)


@pytest.mark.parametrize("backend", ["cpu", "triton"])
def test_wrong_dtype_is_refused(backend):
    device = backend_device(backend)
    x = torch.rand(10, 4, dtype=torch.float64, device=device)
    a = torch.tensor([0, 1], device=device)
    with pytest.raises(ValueError, match="x must be a 2-d float32 tensor"):
        logic_layer(x, a, a, torch.zeros(2, 4, device=device), backend=backend)


@pytest.mark.parametrize("backend", ["cpu", "triton"])
def test_wiring_changed_in_place_is_noticed(backend):
    """The cached reverse index is keyed by the index tensors' versions."""
    device = backend_device(backend)
    gen = torch.Generator().manual_seed(11)
    F, N, B = 20, 30, 8
    a, b = make_wiring(F, N, gen)
    a, b = a.to(device), b.to(device)
    x = torch.rand(F, B, generator=gen).to(device)
    c = torch.randn(N, 4, generator=gen).to(device)
    for step in range(2):
        xg = x.clone().requires_grad_()
        logic_layer(xg, a, b, c, backend=backend).square().sum().backward()
        xr = x.cpu().clone().requires_grad_()
        logic_layer(xr, a.cpu(), b.cpu(), c.cpu(), backend="reference").square().sum().backward()
        assert_close(xg.grad.cpu(), xr.grad, f"dx, step {step}")
        a[:10] = (a[:10] + 7) % F   # rewire in place


@pytest.mark.parametrize("backend", ["cpu", "triton"])
def test_model_step_matches_reference(backend):
    """A LogicNet step through the model code: scores and logit gradients as with the reference kernel."""
    device = backend_device(backend)
    from lgn_fpga.train.model import LogicNet, Relaxation
    gen = torch.Generator().manual_seed(0)
    bits = (torch.rand(13, 37, generator=gen) < 0.5).float()
    labels = torch.randint(3, (13,), generator=gen)
    modes = [("soft", "hard"), ("sample", "hard"), ("sample", "soft")]
    out = {}
    for be in ("reference", backend):
        for kind, input_grad in modes:
            net = LogicNet(37, [60, 45, 30], 3, tau=3.0, seed=4).to(device)
            r = Relaxation(kind, noise=1.0, tau=0.8, input_grad=input_grad,
                           generator=torch.Generator(device=device).manual_seed(9))
            scores = net(bits.to(device), r, backend=be)
            torch.nn.functional.cross_entropy(scores, labels.to(device)).backward()
            out[be, kind, input_grad] = (scores.detach().cpu(), [l.logits.grad.cpu() for l in net.layers])
    for mode in modes:
        s_ref, g_ref = out[("reference",) + mode]
        s, g = out[(backend,) + mode]
        if mode[0] == "sample":
            assert torch.equal(s, s_ref)      # hard gates on bits: exact
        else:
            assert_close(s, s_ref, "scores")
        for i, (gi, gr) in enumerate(zip(g, g_ref)):
            assert_close(gi, gr, f"layer {i} logit grad {mode}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("F,N,B", [(5, 0, 3), (5, 3, 0)])
def test_degenerate_shapes(backend, F, N, B):
    device = backend_device(backend)
    a = torch.arange(N, device=device) % F
    x = torch.rand(F, B, device=device, requires_grad=True)
    c = torch.randn(N, 4, device=device, requires_grad=True)
    y = logic_layer(x, a, a.flip(0), c, backend=backend)
    assert y.shape == (N, B)
    y.sum().backward()
    assert torch.count_nonzero(x.grad) == 0 and torch.count_nonzero(c.grad) == 0
