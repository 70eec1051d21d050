"""`lgn-fpga import difflogic`: nets built and saved with difflogic's own code (the vendored sdist) import and
agree with difflogic's forward pass, image by image."""
import importlib.util
import sys
import tarfile
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from lgn_fpga.cli import main
from lgn_fpga.netlist.evaluate import predict
from lgn_fpga.netlist.format import load, read_header

SDIST = Path(__file__).resolve().parents[2] / "bench" / "vendor" / "difflogic-0.1.0.tar.gz"


@pytest.fixture(scope="module")
def difflogic(tmp_path_factory):
    """difflogic 0.1.0's Python modules (its CUDA extension replaced by an empty stub: the python path only)."""
    d = tmp_path_factory.mktemp("difflogic")
    with tarfile.open(SDIST) as t:
        t.extractall(d, filter="data")
    # Imported from the extracted folder by file location (no sys.path edit); the CUDA extension is an empty
    # module, so difflogic takes its Python path.
    sys.modules["difflogic_cuda"] = types.ModuleType("difflogic_cuda")
    pkg = d / "difflogic-0.1.0" / "difflogic"
    spec = importlib.util.spec_from_file_location("difflogic", pkg / "__init__.py", submodule_search_locations=[str(pkg)])
    dl = importlib.util.module_from_spec(spec)
    sys.modules["difflogic"] = dl
    spec.loader.exec_module(dl)
    yield dl
    for m in [m for m in sys.modules if m == "difflogic_cuda" or m.split(".")[0] == "difflogic"]:
        del sys.modules[m]


def _net(dl, in_dim, widths, k, connections):
    layers = [torch.nn.Flatten()]
    for w, c in zip(widths, connections):
        layers.append(dl.LogicLayer(in_dim, w, device="cpu", implementation="python", connections=c))
        in_dim = w
    return torch.nn.Sequential(*layers, dl.GroupSum(k, 10.0, device="cpu")).eval()


def _difflogic_classes(model, images, thresholds):
    x = torch.from_numpy(images).to(torch.float32).div(255)
    x = x.round() if thresholds is None else torch.cat([(x > (i + 1) / (thresholds + 1)).float()
                                                        for i in range(thresholds)], dim=1)
    with torch.no_grad():
        return model(x).argmax(-1).numpy()


def _cli(capsys, *argv):
    try:
        main(list(map(str, argv)))
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def _images(shape, n=300, seed=0):
    # smooth-ish images: a random low-resolution pattern, upsampled, so bits are correlated like real pixels
    rng = np.random.default_rng(seed)
    C, H, W = shape
    low = rng.integers(0, 256, (n, C, (H + 3) // 4, (W + 3) // 4)).astype(np.uint8)
    return np.ascontiguousarray(low.repeat(4, 2).repeat(4, 3)[:, :, :H, :W])


def test_pickled_module_random_and_unique_3_thresholds(difflogic, tmp_path, capsys):
    torch.manual_seed(1)
    model = _net(difflogic, 3 * 3 * 32 * 32, [5000, 3000, 2000], 10, ["random", "unique", "random"])
    torch.save(model, tmp_path / "model.pt")
    images = _images((3, 32, 32))
    want = _difflogic_classes(model, images, 3)
    assert len(set(want)) > 3                              # a test that can tell classes apart
    for extra in ([], ["--no-optimize"]):
        code, out, err = _cli(capsys, "import", "difflogic", tmp_path / "model.pt", "-o", tmp_path / "m.lgn",
                              "--dataset", "cifar10", "--thresholds", "3", *extra)
        assert code == 0, err
        assert "wiring from the pickled module" in out
        net = load(tmp_path / "m.lgn")
        assert (predict(net, images) == want).all()
    assert net.n_gates == 10000 and net.meta["dataset"] == "cifar10" and net.class_names[0] == "airplane"
    assert read_header(tmp_path / "m.lgn")["meta"]["imported_from"] == "difflogic model.pt"


def test_state_dict_regenerates_the_wiring_from_the_seed(difflogic, tmp_path, capsys):
    torch.manual_seed(7)
    model = _net(difflogic, 784, [2000, 1500, 1000], 10, ["random", "unique", "random"])
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    images = _images((1, 28, 28), seed=1)
    want = _difflogic_classes(model, images, None)
    assert len(set(want)) > 3
    code, out, err = _cli(capsys, "import", "difflogic", tmp_path / "sd.pt", "-o", tmp_path / "m.lgn",
                          "--seed", "7", "--connections", "random", "--built-on", "cpu")
    # layer 1 was built with unique connections: --connections random regenerates another wiring
    assert code == 0, err
    assert (predict(load(tmp_path / "m.lgn"), images) != want).any()
    code, out, err = _cli(capsys, "import", "difflogic", tmp_path / "sd.pt", "-o", tmp_path / "m.lgn",
                          "--seed", "7", "--connections", "random,unique,random", "--built-on", "cpu")
    assert code == 0 and "difflogic's random,unique connection code" in out, err
    assert (predict(load(tmp_path / "m.lgn"), images) == want).all()
    torch.manual_seed(7)
    model = _net(difflogic, 784, [2000, 1500, 1000], 10, ["random"] * 3)
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    want = _difflogic_classes(model, images, None)
    code, out, err = _cli(capsys, "import", "difflogic", tmp_path / "sd.pt", "-o", tmp_path / "m.lgn",
                          "--seed", "7", "--built-on", "cpu")
    assert code == 0, err
    assert "regenerated from seed 7 with difflogic's random connection code" in out
    assert (predict(load(tmp_path / "m.lgn"), images) == want).all()
    assert load(tmp_path / "m.lgn").encoding.thresholds == ((127,),)     # x.round(): byte >= 128


def test_state_dict_without_a_seed_is_one_line(difflogic, tmp_path, capsys):
    torch.manual_seed(0)
    torch.save(_net(difflogic, 64, [100, 50], 10, ["random"] * 2).state_dict(), tmp_path / "sd.pt")
    code, out, err = _cli(capsys, "import", "difflogic", tmp_path / "sd.pt", "-o", tmp_path / "m.lgn",
                          "--dataset", "digits")
    assert code != 0 and "Traceback" not in err
    assert "is a state_dict: it holds the gates but not the wiring; pass --seed" in err
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    code, out, err = _cli(capsys, "import", "difflogic", tmp_path / "sd.pt", "-o", tmp_path / "m.lgn",
                          "--dataset", "digits", "--seed", "0", "--connections", "random,unique,random")
    assert code != 0 and "has 2 layers, but 3 connections were given" in err
    code, out, err = _cli(capsys, "import", "difflogic", tmp_path / "junk.pt", "-o", tmp_path / "m.lgn")
    assert code != 0 and "junk.pt is not a difflogic model that can be read safely" in err
    # a pickled module for another image size: the first layer's wiring does not fit
    torch.manual_seed(0)
    torch.save(_net(difflogic, 784, [1000, 500], 10, ["random"] * 2), tmp_path / "m.pt")
    code, out, err = _cli(capsys, "import", "difflogic", tmp_path / "m.pt", "-o", tmp_path / "m.lgn",
                          "--dataset", "digits")
    assert code != 0 and "check --dataset and --thresholds" in err


def test_state_dict_of_a_model_built_on_cuda(difflogic, tmp_path, capsys, monkeypatch):
    """device='cuda' draws the weights from the CUDA generator, the wiring from the CPU one: emulated here by
    drawing difflogic's torch.randn from a generator of its own while the model is built."""
    other = torch.Generator().manual_seed(123)
    randn = torch.randn
    monkeypatch.setattr(torch, "randn", lambda *s, device=None, **k: randn(*s, generator=other, **k))
    torch.manual_seed(5)
    model = _net(difflogic, 784, [1600, 1200, 1000], 10, ["unique", "random", "random"])
    monkeypatch.setattr(torch, "randn", randn)
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    images = _images((1, 28, 28), seed=2)
    want = _difflogic_classes(model, images, None)
    code, out, err = _cli(capsys, "import", "difflogic", tmp_path / "sd.pt", "-o", tmp_path / "m.lgn",
                          "--seed", "5", "--connections", "unique,random,random")     # --built-on cuda: the default
    assert code == 0, err
    assert "weights drawn on cuda" in out
    assert (predict(load(tmp_path / "m.lgn"), images) == want).all()
