"""The architecture, as a test: imports run one way and no module imports itself round a cycle.

core (``geep_deploy`` model, data, training) <- ``engines`` <- ``runtime`` (serving) <- ``export`` (compiler,
calibration) <- app (``geep_deploy.cli``, ``geep_deploy.suite``, ``geep_deploy.service``, ``bench/``).
Every import counts, lazy ones inside functions included: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("geep_deploy", "engines", "runtime", "export")
APP_PREFIXES = ("geep_deploy.cli", "geep_deploy.suite", "geep_deploy.service", "geep_deploy.bench", "bench")
LAYERS = {"core": 0, "engines": 1, "runtime": 2, "export": 3, "app": 4}


def layer_of(module: str) -> str:
    """The layer a dotted module name belongs to."""
    if module == "bench" or module.startswith(APP_PREFIXES):
        return "app"
    top = module.split(".")[0]
    return "core" if top == "geep_deploy" else top


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    files = [p for pkg in (*PACKAGES, "bench") for p in (ROOT / pkg).rglob("*.py")]
    return {module_name(p): p for p in files if "__pycache__" not in p.parts}


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Project modules ``path`` imports anywhere in its body (``from pkg import mod`` resolves to ``pkg.mod``)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            # the deepest project module named (``a.b.c`` -> ``a.b`` if ``a.b.c`` is an attribute)
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    return out


def import_graph() -> dict[str, set[str]]:
    mods = project_modules()
    known = set(mods)
    return {m: imported_modules(p, known) - {m} for m, p in mods.items()}


def backward_imports(graph: dict[str, set[str]]) -> list[str]:
    """``importer -> imported`` pairs where a lower layer imports a higher one."""
    bad = []
    for src, targets in sorted(graph.items()):
        for dst in sorted(targets):
            if LAYERS[layer_of(dst)] > LAYERS[layer_of(src)]:
                bad.append(f"{src} ({layer_of(src)}) -> {dst} ({layer_of(dst)})")
    return bad


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
    assert {layer_of(m) for m in graph} == set(LAYERS)
    assert "runtime.artifacts" in graph["runtime.loading"]
    assert "engines.registry" in graph["runtime.loading"]


def test_imports_run_one_way(graph: dict[str, set[str]]) -> None:
    bad = backward_imports(graph)
    assert not bad, "imports against the layering (core <- engines <- runtime <- export <- app):\n" + "\n".join(bad)


def test_no_import_cycles(graph: dict[str, set[str]]) -> None:
    found = cycles(graph)
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_checker_catches_a_backward_import() -> None:
    g = {"runtime.loading": {"export.bundle"}, "export.bundle": set()}
    assert backward_imports(g) == ["runtime.loading (runtime) -> export.bundle (export)"]
    assert cycles({"a.x": {"a.y"}, "a.y": {"a.x"}, "a.z": set()}) == [["a.x", "a.y"]]


def test_serving_loads_no_bench_harness() -> None:
    """Every ``runtime`` module (what serving imports) loads no dataset loader, plotting or bench code."""
    import subprocess
    import sys

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
