"""Triton kernels on a real GPU at training sizes (skipped without CUDA; the interpreter covers CI)."""
import pytest
import torch

from lgn_fpga.kernels import logic_layer

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("F,N,B", [(784, 8000, 128), (8000, 8000, 256), (4097, 12345, 100)])
@pytest.mark.parametrize("soft_input_grad", [False, True])
def test_triton_matches_reference_on_gpu(F, N, B, soft_input_grad):
    from lgn_fpga.kernels import triton_kernels
    if triton_kernels.INTERPRET:
        pytest.skip("triton_kernels was imported under TRITON_INTERPRET=1")
    gen = torch.Generator(device="cuda").manual_seed(F + N + B)
    a = torch.randint(F, (N,), device="cuda", generator=gen)
    b = torch.randint(F, (N,), device="cuda", generator=gen)
    b[:100] = a[:100]
    x0 = torch.rand(F, B, device="cuda", generator=gen)
    c0 = torch.randn(N, 4, device="cuda", generator=gen)
    c_in = torch.randn(N, 4, device="cuda", generator=gen) if soft_input_grad else None
    g = torch.randn(N, B, device="cuda", generator=gen)
    out = {}
    for be in ("reference", "triton"):
        x = x0.clone().requires_grad_()
        c = c0.clone().requires_grad_()
        y = logic_layer(x, a, b, c, c_in, backend=be)
        y.backward(g)
        out[be] = (y.detach(), x.grad, c.grad)
    for name, u, v in zip(("y", "dx", "dc"), out["triton"], out["reference"]):
        scale = max(1.0, float(v.abs().max()))
        torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-5 * scale, msg=lambda m: f"{name}: {m}")


def test_triton_hard_gates_on_bits_are_exact_on_gpu():
    from lgn_fpga.gates import torch_coeffs
    gen = torch.Generator(device="cuda").manual_seed(0)
    F, N, B = 784, 8000, 256
    a = torch.randint(F, (N,), device="cuda", generator=gen)
    b = torch.randint(F, (N,), device="cuda", generator=gen)
    x = (torch.rand(F, B, device="cuda", generator=gen) < 0.5).float()
    c = torch_coeffs(device="cuda")[torch.randint(16, (N,), device="cuda", generator=gen)]
    assert torch.equal(logic_layer(x, a, b, c, backend="triton"), logic_layer(x, a, b, c, backend="reference"))
