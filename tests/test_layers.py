"""The architecture, as a test: imports run one way, no module imports itself round a cycle, and
``docs/architecture.md`` states the layering this test enforces.

The layers are read from the table in ``docs/architecture.md`` (core <- engines <- runtime <- export <- app), so
the page and the check cannot disagree. Every import counts: lazy ones inside functions, relative ones,
``importlib.import_module("pkg.mod")`` / ``__import__`` with a literal name, and a string naming a project module
(the lazy re-export tables of ``runtime/__init__.py`` and ``engines/registry.py``). Every top-level package or
module of the repository is scanned (``tests/`` and ``runs/`` aside); one in no layer of the page fails.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = Path("docs/architecture.md")
NOT_SCANNED = {"tests", "runs", "docs", "build", "dist"}  # plus hidden folders and *.egg-info
IMPORT_CALLS = {"import_module", "__import__"}


@dataclass(frozen=True)
class Layering:
    """Layer names in import order, and the package prefixes that belong to each (the longest prefix wins)."""

    order: dict[str, int]
    prefixes: dict[str, str]

    def layer_of(self, module: str) -> str | None:
        best = max((p for p in self.prefixes if module == p or module.startswith(p + ".")), key=len, default=None)
        return None if best is None else self.prefixes[best]


def read_layering(root: Path = ROOT) -> Layering:
    """The "Layers" table of ``docs/architecture.md``: rows ``| N name | `pkg`, `pkg.sub` | ... |``."""
    order: dict[str, int] = {}
    prefixes: dict[str, str] = {}
    for line in (root / DOC).read_text(encoding="utf-8").splitlines():
        m = re.match(r"\|\s*(\d+)\s+(\w+)\s*\|([^|]*)\|", line)
        if m:
            order[m[2]] = int(m[1])
            for pkg in re.findall(r"`([\w.]+)`", m[3]):
                prefixes[pkg] = m[2]
    assert order and prefixes, f"{DOC} has no layers table"
    return Layering(order, prefixes)


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def top_levels(root: Path = ROOT) -> list[Path]:
    """Every top-level folder holding Python files, and every top-level ``.py`` file, that the scan covers."""
    out = []
    for p in sorted(root.iterdir()):
        if p.name.startswith(".") or p.name in NOT_SCANNED or p.name.endswith(".egg-info"):
            continue
        if (p.is_dir() and next(p.rglob("*.py"), None) is not None) or p.suffix == ".py":
            out.append(p)
    return out


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    files = [f for top in top_levels(root) for f in ([top] if top.is_file() else top.rglob("*.py"))]
    return {module_name(p, root): p for p in files if "__pycache__" not in p.parts}


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute module of ``from {'.' * level}{name} import ...`` written in ``module``."""
    package = module if is_package else module.rpartition(".")[0]
    for _ in range(level - 1):
        package = package.rpartition(".")[0]
    return ".".join(x for x in (package, name) if x)


def imported_modules(path: Path, known: set[str], module: str = "") -> set[str]:
    """Project modules ``path`` imports anywhere in its body (``from pkg import mod`` resolves to ``pkg.mod``)."""
    out: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (node.module or "") if node.level == 0 else _resolve_relative(module, is_package, node.level,
                                                                               node.module)
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Call) and _call_name(node.func) in IMPORT_CALLS and node.args and \
                isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            names = [node.args[0].value]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in known:
            names = [node.value] if "." in node.value else []  # a lazy table's "runtime.engine"
        else:
            continue
        for name in names:
            # the deepest project module named (``a.b.c`` -> ``a.b`` if ``a.b.c`` is an attribute)
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    return out


def _call_name(func: ast.expr) -> str | None:
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    mods = project_modules(root)
    known = set(mods)
    return {m: imported_modules(p, known, m) - {m} for m, p in mods.items()}


def backward_imports(graph: dict[str, set[str]], layering: Layering) -> list[str]:
    """``importer -> imported`` pairs where a lower layer imports a higher one."""
    bad = []
    for src, targets in sorted(graph.items()):
        for dst in sorted(targets):
            ls, ld = layering.layer_of(src), layering.layer_of(dst)
            if ls is not None and ld is not None and layering.order[ld] > layering.order[ls]:
                bad.append(f"{src} ({ls}) -> {dst} ({ld})")
    return bad


def unplaced(graph: dict[str, set[str]], layering: Layering) -> list[str]:
    """Modules in no layer of the page (a new top-level package, say)."""
    return sorted(f"{m}: in no layer of {DOC}" for m in graph if layering.layer_of(m) is None)


def layer_problems(root: Path = ROOT) -> list[str]:
    layering = read_layering(root)
    graph = import_graph(root)
    return unplaced(graph, layering) + backward_imports(graph, layering)


def doc_problems(root: Path = ROOT) -> list[str]:
    """Names in ``docs/architecture.md`` that are no module, and packages the page leaves out."""
    text = (root / DOC).read_text(encoding="utf-8")
    mods = project_modules(root)
    tops = {m.split(".")[0] for m in mods}
    named = {n for n in re.findall(r"`([\w.]+)`", text) if n.split(".")[0] in tops}
    packages = {m for m, p in mods.items() if p.name == "__init__.py"} | {t.stem for t in top_levels(root)}
    out = [f"{DOC} names `{n}`, which is no module" for n in sorted(named - set(mods) - packages)]
    out += [f"{DOC} leaves out the package `{p}`" for p in sorted(packages - named)]
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), ignoring package ``__init__`` edges
    to their own submodules (a package re-exporting its modules is not a cycle of code)."""
    def edges(m: str) -> set[str]:
        return {t for t in graph.get(m, ()) if not t.startswith(m + ".") and not m.startswith(t + ".")}

    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges(v):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_graph_sees_the_project(graph: dict[str, set[str]]) -> None:
    # guards the scanner itself: it must find modules of every layer and real edges between them
    layering = read_layering()
    assert set(layering.order) == {"core", "engines", "runtime", "export", "app"}
    assert {layering.layer_of(m) for m in graph} == set(layering.order)
    assert "runtime.artifacts" in graph["runtime.loading"]
    assert "engines.registry" in graph["runtime.loading"]
    assert "runtime.engine" in graph["runtime"]  # the lazy table
    assert "engines.ort" in graph["engines.registry"]  # the backend table, imported by name


def test_imports_run_one_way() -> None:
    bad = layer_problems()
    assert not bad, "imports against the layering of docs/architecture.md:\n" + "\n".join(bad)


def test_no_import_cycles(graph: dict[str, set[str]]) -> None:
    found = cycles(graph)
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_architecture_page_names_what_exists() -> None:
    bad = doc_problems()
    assert not bad, "\n".join(bad)


def test_checker_catches_a_backward_import() -> None:
    g = {"runtime.loading": {"export.bundle"}, "export.bundle": set()}
    assert backward_imports(g, read_layering()) == ["runtime.loading (runtime) -> export.bundle (export)"]
    assert cycles({"a.x": {"a.y"}, "a.y": {"a.x"}, "a.z": set()}) == [["a.x", "a.y"]]


@pytest.fixture()
def copy_root(tmp_path: Path) -> Path:
    """A copy of the scanned sources and the architecture page, to inject faults into (never the real tree)."""
    def ignore(folder: str, names: list[str]) -> list[str]:
        return [n for n in names if n == "__pycache__" or not (n.endswith(".py") or Path(folder, n).is_dir())]

    for top in top_levels():
        if top.is_dir():
            shutil.copytree(top, tmp_path / top.name, ignore=ignore)
        else:
            shutil.copy2(top, tmp_path / top.name)
    (tmp_path / DOC).parent.mkdir()
    shutil.copy2(ROOT / DOC, tmp_path / DOC)
    assert layer_problems(tmp_path) == [] and doc_problems(tmp_path) == []
    return tmp_path


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


def test_checker_catches_importlib_by_name(copy_root: Path) -> None:
    _append(copy_root / "engines/registry.py",
            '\n\ndef _sneak():\n    import importlib\n\n    return importlib.import_module("runtime.engine")\n')
    assert layer_problems(copy_root) == ["engines.registry (engines) -> runtime.engine (runtime)"]


def test_checker_catches_a_relative_import(copy_root: Path) -> None:
    _append(copy_root / "geep_deploy/model.py", "\n\ndef _sneak():\n    from .cli import main\n\n    return main\n")
    assert layer_problems(copy_root) == ["geep_deploy.model (core) -> geep_deploy.cli (app)"]


def test_checker_catches_a_lazy_table_pointing_up(copy_root: Path) -> None:
    init = copy_root / "runtime/__init__.py"
    text = init.read_text(encoding="utf-8")
    assert "_LAZY = {\n" in text
    init.write_text(text.replace("_LAZY = {\n", '_LAZY = {\n    "run_export": "export.pipeline",\n'),
                    encoding="utf-8")
    assert layer_problems(copy_root) == ["runtime (runtime) -> export.pipeline (export)"]


def test_checker_catches_a_new_top_level_package(copy_root: Path) -> None:
    (copy_root / "tools").mkdir()
    (copy_root / "tools/__init__.py").write_text("")
    (copy_root / "tools/helper.py").write_text("from runtime import GeepEngine\n")
    assert layer_problems(copy_root) == [f"tools.helper: in no layer of {DOC}", f"tools: in no layer of {DOC}"]
    assert doc_problems(copy_root) == [f"{DOC} leaves out the package `tools`"]


def test_checker_catches_a_page_naming_what_is_gone(copy_root: Path) -> None:
    _append(copy_root / DOC, "\n- `runtime.benchmark`: gone\n")
    assert doc_problems(copy_root) == [f"{DOC} names `runtime.benchmark`, which is no module"]


def test_serving_loads_no_bench_harness() -> None:
    """Every ``runtime`` module (what serving imports) loads no dataset loader, plotting or bench code."""
    code = ("import pkgutil, importlib, sys, runtime\n"
            "from geep_deploy.errors import BackendUnavailable\n"
            "for m in pkgutil.walk_packages(runtime.__path__, 'runtime.'):\n"
            "    try:\n"
            "        importlib.import_module(m.name)\n"
            "    except BackendUnavailable:\n"  # CuPy kernels where CuPy is not installed
            "        pass\n"
            "for name in runtime.__all__:\n"
            "    getattr(runtime, name)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib' or m == 'geep_deploy.data'"
            " or m.startswith('geep_deploy.bench')))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", f"runtime loads bench-only modules: {out.stdout.strip()}"


def test_optional_imports_name_one_install_hint() -> None:
    from geep_deploy.errors import BackendUnavailable
    from geep_deploy.optional import require

    with pytest.raises(BackendUnavailable, match=r"onnx \| `import no_such_lib_xyz` for tests fails here .*"
                                                 r"Try: pip install no_such_lib_xyz\."):
        require("no_such_lib_xyz", "onnx", "for tests")
    assert require("json", "core").dumps([]) == "[]"
