"""difflogic's naive 16-op layer (the reference the kernels are tested against) against the gate table."""
import numpy as np
import pytest
import torch

from lgn_fpga.gates import COEFFS, NUM_GATES, TRUTH
from lgn_fpga.kernels.naive import gate_weights, mix, naive_layer, naive_net_forward
from lgn_fpga.train.model import gumbel_noise

BITS = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])   # samples (A, B) = 00, 01, 10, 11


def test_hard_mix_is_the_truth_table():
    a = torch.zeros(NUM_GATES, dtype=torch.int64)
    b = torch.ones(NUM_GATES, dtype=torch.int64)
    logits = torch.eye(NUM_GATES) * 10
    y = naive_layer(BITS, a, b, logits, mode="hard")
    assert torch.equal(y.t(), torch.tensor(TRUTH, dtype=torch.float32))


def test_softmax_mix_is_the_coefficient_form():
    gen = torch.Generator().manual_seed(0)
    a_, b_ = torch.rand(9, 5, generator=gen, dtype=torch.float64), torch.rand(9, 5, generator=gen, dtype=torch.float64)
    w = torch.softmax(torch.randn(5, NUM_GATES, generator=gen, dtype=torch.float64), -1)
    c = w @ torch.tensor(COEFFS, dtype=torch.float64)
    want = c[:, 0] + c[:, 1] * a_ + c[:, 2] * b_ + c[:, 3] * a_ * b_
    torch.testing.assert_close(mix(a_, b_, w), want, rtol=1e-12, atol=1e-12)


def test_gumbel_ste_weights_are_exactly_one_hot_with_the_soft_gradient():
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(6, NUM_GATES, generator=gen, requires_grad=True)
    g = gumbel_noise((6, NUM_GATES), gen)
    w, s = gate_weights(z, "gumbel-ste", g, noise=0.5, tau=0.7)
    assert torch.equal(w, torch.nn.functional.one_hot((z + 0.5 * g).argmax(-1), NUM_GATES).float())
    R = torch.randn(6, NUM_GATES, generator=gen)
    (w * R).sum().backward()
    z2 = z.detach().requires_grad_()
    (torch.softmax((z2 + 0.5 * g) / 0.7, -1) * R).sum().backward()
    torch.testing.assert_close(z.grad, z2.grad)


def test_soft_input_gradient_goes_through_the_mixture():
    gen = torch.Generator().manual_seed(2)
    x = (torch.rand(8, 6, generator=gen) < 0.5).float().requires_grad_()
    a, b = torch.randint(6, (10,), generator=gen), torch.randint(6, (10,), generator=gen)
    z = torch.randn(10, NUM_GATES, generator=gen)
    g = gumbel_noise((10, NUM_GATES), gen)
    y = naive_layer(x, a, b, z, mode="gumbel-ste", gumbel=g, input_grad="soft")
    y_hard = naive_layer(x, a, b, z, mode="gumbel-ste", gumbel=g, input_grad="hard")
    assert torch.equal(y, y_hard)
    y.sum().backward()
    x2 = x.detach().requires_grad_()
    mix(x2[:, a], x2[:, b], torch.softmax(z + g, -1)).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)


def test_net_forward_groups_like_difflogic():
    layers = [(torch.tensor([0, 1, 0, 1]), torch.tensor([1, 0, 1, 0]), torch.eye(NUM_GATES)[[1, 7, 6, 14]] * 9)]
    scores = naive_net_forward(BITS, layers, k=2, tau=2.0, mode="hard")
    y = np.array([[0, 0, 0, 1], [0, 1, 1, 1], [0, 1, 1, 0], [1, 1, 1, 0]]).T   # AND, OR, XOR, NAND per sample
    assert torch.equal(scores, torch.tensor(np.stack([y[:, :2].sum(1), y[:, 2:].sum(1)], 1), dtype=torch.float32) / 2)


def test_bad_mode_is_refused():
    with pytest.raises(ValueError, match="mode must be one of softmax, gumbel-ste, hard, not 'x'"):
        gate_weights(torch.zeros(1, NUM_GATES), "x")
    with pytest.raises(ValueError, match="input_grad must be 'hard' or 'soft', not 'x'"):
        naive_layer(BITS, torch.tensor([0]), torch.tensor([1]), torch.zeros(1, NUM_GATES), input_grad="x")
