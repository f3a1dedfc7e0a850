"""The names in ``geep_deploy/names.py`` are the only spelling of backends, predictor kinds, graph kinds and exit
modes in the core modules and the layers that load and run exports (``geep_deploy/*.py``, ``engines/``,
``runtime/``, ``export/``): a comparison, a default or
a ``kind=``/``backend=``/``exit_mode=``/``predictor=`` argument spelled as a string literal would keep working
after a rename in names.py and quietly take the wrong branch. Strings in messages and docstrings are not checked.
"""

from __future__ import annotations

import ast
from pathlib import Path

from geep_deploy import names

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("engines", "runtime", "export")
VOCABULARY = {*names.BACKENDS, names.ONNX_REFERENCE, names.AUTO, *names.PREDICTOR_KINDS, *names.GRAPH_KINDS,
              *names.EXIT_MODES}
ARGS = {"kind", "backend", "exit_mode", "predictor"}
OTHER_MEANINGS = {
    ("runtime/dispatch.py", "auto"): "call_cost='auto' (the per-device default cost), not the backend",
    ("runtime/engine.py", "auto"): "call_cost='auto'",
    ("export/options.py", "entropy"): "the calibration's exit rule (entropy or consistency), not the predictor",
    ("geep_deploy/exits.py", "entropy"): "the exit rule",
}


def _files() -> list[Path]:
    """The core modules (``geep_deploy/*.py``; its app subpackages aside) and every module of ``PACKAGES``."""
    return sorted((ROOT / "geep_deploy").glob("*.py")) + [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]


def _literals(tree: ast.AST) -> list[ast.Constant]:
    """String constants compared against, passed as one of ``ARGS``, or the default of one of ``ARGS``."""
    def strings(nodes: list[ast.expr]) -> list[ast.Constant]:
        out = []
        for n in nodes:
            elts = n.elts if isinstance(n, (ast.Tuple, ast.List, ast.Set)) else [n]
            out += [e for e in elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
        return out

    found: list[ast.Constant] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            found += strings([node.left, *node.comparators])
        elif isinstance(node, ast.keyword) and node.arg in ARGS:
            found += strings([node.value])
        elif isinstance(node, ast.arguments):
            args = node.posonlyargs + node.args
            pairs = list(zip(args[len(args) - len(node.defaults):], node.defaults))
            pairs += [(a, d) for a, d in zip(node.kwonlyargs, node.kw_defaults) if d is not None]
            found += strings([d for a, d in pairs if a.arg in ARGS])
        elif isinstance(node, ast.ClassDef):  # an engine's ``backend = "..."``
            for stmt in node.body:
                if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "backend"
                                                        for t in stmt.targets):
                    found += strings([stmt.value])
    return found


def test_backends_kinds_and_exit_modes_are_spelled_by_names_py() -> None:
    spelled = []
    for path in _files():
        rel = path.relative_to(ROOT).as_posix()
        for c in _literals(ast.parse(path.read_text(encoding="utf-8"))):
            if c.value in VOCABULARY and (rel, c.value) not in OTHER_MEANINGS:
                spelled.append(f"{rel}:{c.lineno} {c.value!r}")
    assert spelled == [], "use the constant from geep_deploy/names.py:\n" + "\n".join(spelled)


def test_the_scan_finds_each_form_it_checks() -> None:
    source = '''
class E:
    backend = "torch"
def f(kind="depth", *, exit_mode="skip"):
    if kind == "prefix" or exit_mode in ("student",):
        g(predictor="probe")
'''
    assert sorted(c.value for c in _literals(ast.parse(source))) == ["depth", "prefix", "probe", "skip", "student",
                                                                     "torch"]
