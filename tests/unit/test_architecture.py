"""The package's shape, checked: no import circles, no private names imported across modules, small modules,
a training loop a reader can hold in mind, and a model-free alignment package."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "lmc_core"
MAX_LINES = 500


def modules() -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is package __init__)."""
    out = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(PKG.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (p, is_pkg)
    return out


def imports(name: str, path: Path, is_pkg: bool, mods) -> list[tuple[str, str, int]]:
    """(imported module, imported name or '', line) for every import of the package, at any depth."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "lmc_core":
                continue
            for a in node.names:
                full = f"{target}.{a.name}"
                out.append((full, "", node.lineno) if full in mods else (target, a.name, node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, "", node.lineno) for a in node.names if a.name.split(".")[0] == "lmc_core"]
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    g = {m: set() for m in mods}
    for m, (p, is_pkg) in mods.items():
        for target, _, _ in imports(m, p, is_pkg, mods):
            if target in mods and target != m and target != "lmc_core":
                g[m].add(target)
    return g


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g[v]:
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

    for v in g:
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_planted_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle_in_the_package():
    assert cycles(graph()) == []


def test_no_module_imports_a_private_name_of_another():
    mods = modules()
    bad = [f"{m}:{line} imports {name} from {target}" for m, (p, is_pkg) in mods.items()
           for target, name, line in imports(m, p, is_pkg, mods)
           if name.startswith("_") and not name.startswith("__") and target != m]
    assert bad == []


def test_no_module_is_longer_than_the_limit():
    long = {str(p.relative_to(PKG.parent)): n for p, _ in modules().values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_alignment_knows_no_model():
    mods = modules()
    for m, (p, is_pkg) in mods.items():
        if m.startswith("lmc_core.align"):
            targets = {t for t, _, _ in imports(m, p, is_pkg, mods)}
            assert not any(t.startswith(("lmc_core.models", "lmc_core.families", "lmc_core.config")) for t in targets), m


def test_the_training_loop_fits_in_a_reader_s_mind():
    tree = ast.parse((PKG / "train" / "loop.py").read_text())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "train_copies")
    params = fn.args.args + fn.args.kwonlyargs
    assert len(params) <= 8, [a.arg for a in params]
    assert fn.end_lineno - fn.lineno + 1 <= 60
