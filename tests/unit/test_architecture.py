"""The package's shape, checked: no import circles, no private names imported across modules, small modules,
a training loop a reader can hold in mind, and a model-free alignment package."""
from __future__ import annotations

import ast
import re
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


# ------------------------------------------------------------------ studies/: what a study may hold (the findings layer
# judges; a study computes, draws and words its setting)
STUDIES_DIR = PKG / "studies"
STUDIES_MAX_LINES = 5150  # 5100 until notebook 04 trained every cell of its grid (issue 27), 4500 until the capped runs' sizes (issue 31), 4600 until the decisive designs of 00-03 (issue 26), 4750 until those of 04-07 (issue 27), 5000 until notebook 00's Hugging Face transformers and LoRA pair (issue 28)
MAX_FUNCTION_LINES = 60
VERDICT_WORDS = re.compile(r"\b(stable|unstable|inconclusive|supported|contradicted)\b", re.IGNORECASE)
RESAMPLING_CALLS = {"default_rng", "integers", "choice", "bootstrap", "permutation_test", "unit_bootstrap",
                    "seed_bootstrap", "permutation", "quantile", "shuffle"}
OWNER = {"lm_setup": "instability_init"}  # file stem -> its study


def _owner(stem: str) -> str | None:
    if stem in OWNER:
        return OWNER[stem]
    from lmc_core.studies.registry import MODULES

    return next((m for m in MODULES if stem == m or stem.startswith(m + "_")), "")


def study_files() -> list[Path]:
    """Every file of studies/ (each belongs to the seam or to a study of the registry)."""
    return sorted(STUDIES_DIR.glob("*.py"))


def test_every_file_of_studies_belongs_to_the_seam_or_a_registered_study():
    seam = {"__init__", "base", "params", "registry", "reference"}
    assert all(p.stem in seam or _owner(p.stem) for p in study_files())


def _calls(tree) -> list[tuple[str, int]]:
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Call):
            f = n.func
            out.append((f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", ""), n.lineno))
    return out


def test_studies_hold_no_resampling_code():
    bad = [f"{p.name}:{line} calls {name}" for p in study_files() for name, line in _calls(ast.parse(p.read_text()))
           if name in RESAMPLING_CALLS]
    assert bad == [], "resampling belongs to lmc_core.analysis.stats / findings"


def _strings(tree) -> list[ast.Constant]:
    """String constants that are not docstrings (documentation may name the verdicts it explains)."""
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef)) and n.body and isinstance(n.body[0], ast.Expr)}
    return [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_studies_print_no_verdict_word_of_their_own():
    bad = [f"{p.name}:{n.lineno}: {n.value[:60]!r}" for p in study_files() for n in _strings(ast.parse(p.read_text()))
           if VERDICT_WORDS.search(n.value)]
    assert bad == [], "verdict words come from lmc_core.analysis.findings (Finding.text, the VERDICTS)"


def test_studies_spell_no_threshold():
    bad = []
    for p in study_files():
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, ast.Compare):
                for o in (n.left, *n.comparators):
                    if isinstance(o, ast.Constant) and type(o.value) in (int, float) and o.value not in (0, 1):
                        bad.append(f"{p.name}:{n.lineno} compares with {o.value}")
    assert bad == [], "thresholds live in lmc_core.analysis.criteria / stats (named, with their source)"


def test_no_function_in_studies_is_longer_than_the_limit():
    long = [f"{p.name}:{n.name} ({n.end_lineno - n.lineno + 1} lines)" for p in study_files()
            for n in ast.walk(ast.parse(p.read_text()))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []


def test_studies_fit_their_line_budget():
    total = sum(len(p.read_text().splitlines()) for p in study_files())
    assert total <= STUDIES_MAX_LINES, total


def test_the_rules_catch_what_they_look_for(tmp_path):
    planted = ast.parse('x = rng.integers(0, 3)\nif v >= 2.0:\n    s = "inconclusive"\n')
    assert [n for n, _ in _calls(planted) if n in RESAMPLING_CALLS] == ["integers"]
    assert any(VERDICT_WORDS.search(n.value) for n in _strings(planted))


# -------------------------------------------------------------------- folders depend one way (docs/architecture.md)
ORDER = (("domains", "capped", "config", "rng", "files", "progress", "machine"), ("nn",), ("data",), ("models",), ("align",), ("families",),
         ("ensemble",), ("train",), ("runs",), ("analysis",), ("publish",), ("studies",))
RANK = {name: i for i, names in enumerate(ORDER) for name in names}


def _rank(module: str) -> int | None:
    parts = module.split(".")
    return RANK.get(parts[1]) if len(parts) > 1 else None


def test_every_folder_is_in_the_documented_order():
    top = {p.stem for p in PKG.glob("*.py") if p.stem not in ("__init__", "__main__")}
    top |= {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert top == set(RANK), "docs/architecture.md and ORDER list every folder and top-level module"
    doc = (PKG.parent / "docs" / "architecture.md").read_text()
    positions = [doc.index(f"| `{names[0]}") for names in ORDER]
    assert positions == sorted(positions), "docs/architecture.md lists the folders in ORDER"


def test_folders_import_only_folders_below_them():
    mods = modules()
    bad = []
    for m, (p, is_pkg) in mods.items():
        r = _rank(m)
        if r is None:
            continue  # the package's lazy API and the command line sit above everything
        for target, _, line in imports(m, p, is_pkg, mods):
            t = _rank(target)
            if t is not None and t > r:
                bad.append(f"{m}:{line} imports {target}")
    assert bad == []


def test_no_folder_names_a_module_above_it_in_a_string():
    bad = []
    for m, (p, _) in modules().items():
        r = _rank(m)
        if r is None:
            continue
        for n in _strings(ast.parse(p.read_text())):
            for name, t in RANK.items():
                if t > r and f"lmc_core.{name}." in n.value:
                    bad.append(f"{m}:{n.lineno} names lmc_core.{name} ({n.value[:50]!r})")
    assert bad == []
