"""Local wiring: every gate reads inside its window, every class covers the whole image, reproducible."""
import numpy as np
import pytest
import torch

from lgn_fpga.train.model import LogicNet
from lgn_fpga.train.wiring import check_window, input_sites, layer_sites, local_connections


def _sites(net, grid, n_inputs, n_classes):
    dims = [n_inputs] + [l.out_dim for l in net.layers]
    s = [input_sites(n_inputs, grid)]
    s += [layer_sites(d, grid, n_classes if i == len(dims) - 2 else 1) for i, d in enumerate(dims[1:])]
    return s


@pytest.mark.parametrize("grid,ch,window,widths", [((8, 8), 3, 3, (200, 150, 60)), ((7, 5), 2, 5, (40, 30, 20)),
                                                    ((4, 4), 1, 9, (16, 10))])
def test_inputs_lie_in_the_window(grid, ch, window, widths):
    H, W = grid
    n_in = ch * H * W
    n_classes = widths[-1] // 10 if widths[-1] >= 10 else 2
    net = LogicNet(n_in, widths, n_classes, connections="local", grid=grid, window=window, seed=1)
    sites = _sites(net, grid, n_in, n_classes)
    for li, layer in enumerate(net.layers):
        oy, ox = np.divmod(sites[li + 1], W)
        for src in (layer.a.numpy(), layer.b.numpy()):
            assert src.min() >= 0 and src.max() < len(sites[li])
            iy, ix = np.divmod(sites[li][src], W)
            # The patch is shifted inward at the borders, so an input is at most window-1 sites away.
            reach = window - 1 if len(np.unique(sites[li])) == H * W else H + W
            assert np.abs(iy - oy).max() <= reach and np.abs(ix - ox).max() <= reach


def test_first_layer_sees_all_channels_of_its_patch():
    grid, ch = (6, 6), 3
    net = LogicNet(ch * 36, [2000, 10], 2, connections="local", grid=grid, window=3, seed=0)
    a = net.layers[0].a.numpy()
    assert set(np.unique(a // 36)) == {0, 1, 2}          # every channel plane is read


def test_class_groups_each_cover_the_whole_grid():
    grid = (8, 8)
    s = layer_sites(640, grid, groups=10)
    for k in range(10):
        g = s[k * 64:(k + 1) * 64]
        assert sorted(g.tolist()) == list(range(64))     # one gate per site in every class group
    assert (layer_sites(128, grid) == np.arange(128) // 2).all()


def test_reproducible_and_seed_dependent():
    kw = dict(connections="local", grid=(5, 5), window=3)
    a1 = LogicNet(50, [40, 20], 2, seed=3, **kw).layers[1].a
    a2 = LogicNet(50, [40, 20], 2, seed=3, **kw).layers[1].a
    a3 = LogicNet(50, [40, 20], 2, seed=4, **kw).layers[1].a
    assert torch.equal(a1, a2) and not torch.equal(a1, a3)


def test_narrow_layer_borrows_the_nearest_site():
    # 3 gates on a 4 x 4 grid: most sites are empty; every read still lands on a real gate, near its reader.
    ins = layer_sites(3, (4, 4))
    outs = layer_sites(16, (4, 4))
    u = np.random.default_rng(0).random((2, 3, 16))
    a, b = local_connections(ins, outs, (4, 4), 3, u)
    assert a.min() >= 0 and a.max() < 3 and b.max() < 3


def test_arguments():
    with pytest.raises(ValueError, match=r"window must be an odd positive integer or a list of 2 of them, not 2"):
        check_window(2, 2)
    with pytest.raises(ValueError, match=r"'local' connections need the image grid"):
        LogicNet(16, [8, 4], 2, connections="local")
    with pytest.raises(ValueError, match=r"17 input bits do not tile a 4 x 4 pixel grid"):
        LogicNet(17, [8, 4], 2, connections="local", grid=(4, 4))
    assert check_window([3, 5], 2) == [3, 5]


def test_netlist_lists_class_outputs_in_z_order():
    # The bridge reorders each class's outputs along a Z curve (the popcount adds neighbours first);
    # each class still counts exactly its own block of the last layer.
    from lgn_fpga.data.encoding import ThermometerEncoding
    from lgn_fpga.train.export import from_model
    from lgn_fpga.train.wiring import z_order
    enc = ThermometerEncoding.make((1, 8, 8), 1)
    net = LogicNet(64, [64, 128], 2, connections="local", grid=(8, 8), window=3, seed=0)
    nl = from_model(net, enc)
    base = 64 + 64
    for k, o in enumerate(nl.outputs):
        assert sorted(o.tolist()) == list(range(base + 64 * k, base + 64 * (k + 1)))
    # 64 gates per class on 64 sites: the first four outputs are the 2 x 2 patch at the origin
    assert (nl.outputs[0][:4] - base).tolist() == [0, 1, 8, 9]
    assert z_order(np.array([9, 0, 1, 8]), (8, 8)).tolist() == [1, 2, 3, 0]
