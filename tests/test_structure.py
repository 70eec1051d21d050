"""The package's layering (docs/ARCHITECTURE.md): no import cycles, torch only where training happens, no
``sys.path`` edits.  Read from the source with ``ast``, so lazy imports inside functions count too."""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "lgn_fpga"
TORCH_FREE = ("netlist", "hdl", "fpga", "host", "sim")


def _modules() -> dict:
    out = {}
    for f in PKG.rglob("*.py"):
        parts = list(f.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _imports(name: str, path: Path, mods: dict):
    """(modules of the package this module imports, every top-level package name it imports)."""
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    inside, top = set(), set()
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.ImportFrom):
            if n.level:
                base = pkg.split(".")[:len(pkg.split(".")) - (n.level - 1)]
                target = ".".join(base + ([n.module] if n.module else []))
            else:
                target = n.module or ""
            top.add(target.split(".")[0])
            subs = [f"{target}.{a.name}" for a in n.names if f"{target}.{a.name}" in mods]
            inside.update(subs or [target])
        elif isinstance(n, ast.Import):
            for a in n.names:
                top.add(a.name.split(".")[0])
                inside.add(a.name)
    return {m for m in inside if m in mods and m != name}, top


def _graph():
    mods = _modules()
    return {m: _imports(m, f, mods) for m, f in mods.items()}


def _cycles(edges: dict) -> list:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    g = _graph()
    assert _cycles({m: inside for m, (inside, _) in g.items()}) == []


def test_hardware_side_is_torch_free():
    g = _graph()
    offenders = sorted(m for m, (_, top) in g.items()
                       if m.split(".")[1:2] and m.split(".")[1] in TORCH_FREE and "torch" in top)
    assert offenders == []
    assert any("torch" in top for m, (_, top) in g.items() if m.startswith("lgn_fpga.train"))   # the check sees


def test_no_sys_path_edits():
    root = PKG.parent
    files = [*PKG.rglob("*.py"), *(root / "tests").rglob("*.py"), *(root / "bench").glob("*.py")]
    offenders = [str(f.relative_to(root)) for f in files if "sys.path." in f.read_text() and f.name != Path(__file__).name]
    assert offenders == []
