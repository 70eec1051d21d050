"""Both training modes against the naive 16-op formulation (outputs and gradients)."""
import numpy as np
import pytest
import torch

from lgn_fpga.gates import TRUTH, naive_mix_terms
from lgn_fpga.train.model import GroupSum, LogicLayer, LogicNet, Relaxation, gumbel_noise, make_connections


def naive(x_bm, a, b, w, w_in=None):
    """difflogic's form: batch-major, y = sum_i w_i * op_i(A, B); w_in: weights the input gradient sees."""
    A, B = x_bm[:, a], x_bm[:, b]
    if w_in is None:
        return sum(w[:, i] * t for i, t in enumerate(naive_mix_terms(A, B)))
    y_logits = sum(w[:, i] * t for i, t in enumerate(naive_mix_terms(A.detach(), B.detach())))
    y_x = sum(w_in[:, i] * t for i, t in enumerate(naive_mix_terms(A, B)))
    return y_logits + y_x - y_x.detach()


def gumbel_like_layer(z, seed):
    return gumbel_noise(z.shape, torch.Generator().manual_seed(seed))


def _setup(F=37, N=29, B=11, seed=0, binary=True):
    g = torch.Generator().manual_seed(seed)
    layer = LogicLayer(F, N, generator=g)
    x = (torch.rand(F, B, generator=g) > 0.5).float() if binary else torch.rand(F, B, generator=g)
    return layer, x.requires_grad_(True)


@pytest.mark.parametrize("binary", [True, False])
def test_softmax_mode_matches_naive(binary):
    layer, x = _setup(binary=binary)
    G = torch.randn(layer.out_dim, x.shape[1])
    y = layer(x, Relaxation("soft"))
    (y * G).sum().backward()
    gx, gz = x.grad.clone(), layer.logits.grad.clone()
    x.grad = None; layer.logits.grad = None
    w = torch.softmax(layer.logits, -1)
    yn = naive(x.t(), layer.a, layer.b, w).t()
    (yn * G).sum().backward()
    torch.testing.assert_close(y, yn, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gx, x.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gz, layer.logits.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("input_grad", ["hard", "soft"])
@pytest.mark.parametrize("noise,tau", [(1.0, 1.0), (0.3, 0.5), (0.0, 1.0)])
def test_gumbel_ste_matches_naive(input_grad, noise, tau):
    layer, x = _setup()
    G = torch.randn(layer.out_dim, x.shape[1])
    r = Relaxation("sample", noise=noise, tau=tau, input_grad=input_grad, generator=torch.Generator().manual_seed(5))
    y = layer(x, r)
    (y * G).sum().backward()
    gx, gz = x.grad.clone(), layer.logits.grad.clone()
    x.grad = None; layer.logits.grad = None

    z = layer.logits
    zs = z + noise * gumbel_like_layer(z, 5) if noise else z
    soft = torch.softmax(zs / tau, -1)
    hard = torch.nn.functional.one_hot(zs.argmax(-1), 16).float()
    # the forward is exactly the sampled hard gate: 0/1 outputs, bit for bit
    y_hard = naive(x.t().detach(), layer.a, layer.b, hard).t()
    assert torch.equal(y, y_hard) and set(y.unique().tolist()) <= {0.0, 1.0}
    w = hard - soft.detach() + soft
    yn = naive(x.t(), layer.a, layer.b, w, soft.detach() if input_grad == "soft" else None).t()
    (yn * G).sum().backward()
    torch.testing.assert_close(gz, layer.logits.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gx, x.grad, rtol=1e-4, atol=1e-5)


def test_one_gumbel_draw_per_neuron_shared_by_batch():
    """With inputs enumerating (A, B) corners, each neuron's 4 outputs are one gate's truth table."""
    layer = LogicLayer(2, 500, generator=torch.Generator().manual_seed(0))
    layer.a.copy_(torch.zeros(500, dtype=torch.long)); layer.b.copy_(torch.ones(500, dtype=torch.long))
    corners = torch.tensor([[0., 0., 1., 1.], [0., 1., 0., 1.]])
    x = corners.repeat(1, 8)  # 32 samples: the same 4 corners 8 times
    r = Relaxation("sample", noise=1.0, generator=torch.Generator().manual_seed(3))
    y = layer(x, r).detach()
    assert torch.equal(y[:, :4].repeat(1, 8), y)  # same gate for every sample of the batch
    truth = torch.tensor(TRUTH, dtype=torch.float32)
    g = gumbel_noise((500, 16), torch.Generator().manual_seed(3))
    assert torch.isfinite(g).all() and abs(g.mean().item() - 0.5772) < 0.02  # Euler-Mascheroni constant
    z = layer.logits.detach() + gumbel_like_layer(layer.logits, 3)
    assert torch.equal(y[:, :4], truth[z.argmax(-1)])
    # a second step draws new noise: some gates change
    y2 = layer(x, r).detach()
    assert not torch.equal(y, y2)


def test_discrete_forward_is_argmax_without_noise():
    layer, x = _setup()
    y = layer(x, Relaxation("hard"))
    want = naive(x.t().detach(), layer.a, layer.b,
                 torch.nn.functional.one_hot(layer.logits.argmax(-1), 16).float()).t()
    assert torch.equal(y, want)
    assert (layer.gate_ids() == layer.logits.argmax(-1).numpy()).all()


def test_groupsum():
    y = torch.arange(12.).reshape(6, 2)  # 6 neurons, 2 samples, 3 classes
    out = GroupSum(3, tau=2.0)(y)
    assert out.shape == (2, 3)
    assert out[0].tolist() == [(0 + 2) / 2, (4 + 6) / 2, (8 + 10) / 2]
    with pytest.raises(ValueError, match="not divisible"):
        GroupSum(4)(y)


def test_groupsum_gradient_is_autograds():
    y = torch.randn(12, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 4, dtype=torch.float64)
    (GroupSum(4, tau=3.0)(y) * w).sum().backward()
    y2 = y.detach().clone().requires_grad_()
    (y2.reshape(4, 3, 5).sum(1).t() / 3.0 * w).sum().backward()
    assert torch.equal(y.grad, y2.grad)
    assert torch.autograd.gradcheck(lambda t: GroupSum(4, tau=3.0)(t), (y.detach().requires_grad_(),))


def test_connections():
    g = torch.Generator().manual_seed(0)
    a, b = make_connections(100, 80, "random", g)
    used = torch.cat([a, b]).bincount(minlength=100)
    assert used.min() >= 1 and used.max() <= 2  # balanced: 160 slots over 100 inputs
    a, b = make_connections(30, 200, "unique", g)
    pairs = {(min(x, y), max(x, y)) for x, y in zip(a.tolist(), b.tolist())}
    assert len(pairs) == 200 and all(x != y for x, y in zip(a.tolist(), b.tolist()))
    with pytest.raises(ValueError, match="'unique' connections need"):
        make_connections(4, 100, "unique", g)
    with pytest.raises(ValueError, match="connections must be"):
        make_connections(4, 4, "dense", g)


def test_residual_init():
    layer = LogicLayer(10, 50, init="residual", generator=torch.Generator().manual_seed(0))
    assert (layer.gate_ids() == 3).all()  # pass-through A wins the argmax


@pytest.mark.parametrize("connections", ["random", "local"])
def test_discretized_model_equals_netlist_evaluator(connections):
    """Invariant: the discretized torch model == the netlist evaluator, score for score."""
    from lgn_fpga.data.encoding import ThermometerEncoding
    from lgn_fpga.netlist.evaluate import scores
    from lgn_fpga.train.export import from_model
    enc = ThermometerEncoding.make((1, 6, 6), 3)
    net = LogicNet(enc.n_bits, [120, 90, 60], 6, tau=3.0, seed=4, connections=connections, grid=(6, 6), window=3)
    imgs = np.random.default_rng(0).integers(0, 256, (200, 1, 6, 6), dtype=np.uint8)
    with torch.no_grad():
        t = net(enc.encode_torch(torch.from_numpy(imgs)), Relaxation("hard")) * 3.0
    s = scores(from_model(net, enc), imgs)
    assert np.array_equal(np.rint(t.numpy()).astype(np.int64), s)
    assert (t.argmax(1).numpy() == s.argmax(1)).all()
