"""The C kernel's build, cache, thread control and determinism."""
import os

import pytest
import torch

from lgn_fpga.errors import LgnError
from lgn_fpga.kernels import cpu, logic_layer, resolve_backend

needs_c = pytest.mark.skipif(not cpu.available(), reason=f"C kernel unavailable: {cpu.unavailable_reason()}")


def test_missing_compiler_gives_a_reason(tmp_path):
    path, reason, _ = cpu.build(cc="/nonexistent/cc-lgn", directory=tmp_path)
    assert path is None
    assert "no C compiler found" in reason and "set CC" in reason


def test_broken_compiler_gives_a_reason(tmp_path):
    path, reason, _ = cpu.build(cc="false", directory=tmp_path)
    assert path is None
    assert reason.startswith("false could not build logic_cpu.c")


@needs_c
def test_build_is_cached_by_content(tmp_path, monkeypatch):
    monkeypatch.delenv("LGN_FPGA_CFLAGS", raising=False)
    p1, reason, flags = cpu.build(directory=tmp_path)
    assert p1 is not None and reason == "" and "-ffp-contract=off" in flags
    mtime = p1.stat().st_mtime_ns
    p2, _, _ = cpu.build(directory=tmp_path)
    assert p2 == p1 and p2.stat().st_mtime_ns == mtime          # found, not rebuilt
    monkeypatch.setenv("LGN_FPGA_CFLAGS", "-DLGN_TEST_FLAG=1")   # other flags: another library
    p3, _, flags3 = cpu.build(directory=tmp_path)
    assert p3 != p1 and "-DLGN_TEST_FLAG=1" in flags3
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_thread_count_follows_torch_unless_overridden(monkeypatch):
    monkeypatch.delenv("LGN_FPGA_THREADS", raising=False)
    assert cpu.num_threads() == torch.get_num_threads()
    monkeypatch.setenv("LGN_FPGA_THREADS", "3")
    assert cpu.num_threads() == 3
    for bad in ("0", "two"):
        monkeypatch.setenv("LGN_FPGA_THREADS", bad)
        with pytest.raises(LgnError, match="LGN_FPGA_THREADS must be a positive integer"):
            cpu.num_threads()


@needs_c
def test_results_do_not_depend_on_thread_count(monkeypatch):
    """Every output element and every gradient row is owned by one thread: bit-identical results."""
    gen = torch.Generator().manual_seed(1)
    F, N, B = 300, 1000, 37
    a = torch.randint(F, (N,), generator=gen)
    b = torch.randint(F, (N,), generator=gen)
    x0 = torch.rand(F, B, generator=gen)
    c0 = torch.randn(N, 4, generator=gen)
    g = torch.randn(N, B, generator=gen)
    res = []
    for t in ("1", "2", "5"):
        monkeypatch.setenv("LGN_FPGA_THREADS", t)
        x = x0.clone().requires_grad_()
        c = c0.clone().requires_grad_()
        y = logic_layer(x, a, b, c, backend="cpu")
        y.backward(g)
        res.append((y.detach(), x.grad, c.grad))
    for r in res[1:]:
        for u, v in zip(r, res[0]):
            assert torch.equal(u, v)


def test_auto_falls_back_to_reference_without_a_compiler(monkeypatch):
    monkeypatch.setattr(cpu, "available", lambda: False)
    assert resolve_backend("auto", "cpu") == "reference"


@needs_c
def test_auto_picks_the_c_kernel_on_cpu():
    assert resolve_backend("auto", "cpu") == "cpu"
    assert cpu.library_info()["path"].startswith(str(cpu.cache_dir()))


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="kernel must be one of auto, reference, cpu, triton, not 'fast'"):
        resolve_backend("fast", "cpu")


def test_unavailable_kernel_raises_a_user_error(monkeypatch):
    monkeypatch.setattr(cpu, "_load", lambda: None)
    monkeypatch.setitem(cpu._state, "reason", "no C compiler found")
    with pytest.raises(LgnError, match="the C kernel is unavailable: no C compiler found; use --kernel reference"):
        cpu.forward(torch.zeros(2, 2), torch.tensor([0]), torch.tensor([1]), torch.zeros(1, 4))


def test_concrete_backends_are_checked_against_the_device(monkeypatch):
    with pytest.raises(LgnError, match="kernel 'cpu' runs on the CPU, not on cuda"):
        resolve_backend("cpu", "cuda")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(LgnError, match="kernel 'triton' needs a CUDA GPU, not cpu; use --kernel auto or cpu"):
        resolve_backend("triton", "cpu")
    monkeypatch.setattr(cpu, "available", lambda: False)
    monkeypatch.setattr(cpu, "unavailable_reason", lambda: "no C compiler found")
    with pytest.raises(LgnError, match="kernel 'cpu' is unavailable: no C compiler found; use --kernel reference"):
        resolve_backend("cpu", "cpu")
    assert resolve_backend("reference", "cpu") == "reference"


@needs_c
def test_falls_back_without_openmp_and_remembers_the_failure(tmp_path):
    """A compiler that rejects -fopenmp (Apple clang) still gives a working, single-threaded library."""
    import ctypes
    import shutil
    cc = tmp_path / "cc-no-openmp"
    cc.write_text('#!/bin/sh\nfor a in "$@"; do [ "$a" = -fopenmp ] && { echo "unsupported option -fopenmp" >&2; '
                  f'exit 1; }}; done\nexec {shutil.which(os.environ.get("CC") or "cc")} "$@"\n')
    cc.chmod(0o755)
    path, reason, flags = cpu.build(cc=str(cc), directory=tmp_path / "cache")
    assert path is not None, reason
    assert "-fopenmp" not in flags and "-fopenmp-simd" in flags
    assert ctypes.CDLL(str(path)).lgn_has_openmp() == 0
    markers = sorted(p.name for p in (tmp_path / "cache").glob("*.failed"))
    assert len(markers) == 2   # the two -fopenmp flag sets
    assert cpu.build(cc=str(cc), directory=tmp_path / "cache")[0] == path
