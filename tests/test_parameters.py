"""No public function of the library takes more than 8 parameters (issue 26), and there is no allow-list: a boundary
with more options takes an options object (`runtime.options.LoadOptions`, `export.options.ExportOptions`,
`export.options.CalibrationOptions`, `engines.EngineOptions`, `export.probe_fit.ProbeSweep`) or a record of what
belongs together (`runtime.engine.EngineParts`, `geep_deploy.suite.consistency.ScoredRows`).

Read from the source (ast), so modules whose optional imports are missing here (Ray, CuPy) are checked too. Public:
a top-level function or a method (``__init__`` included) of a top-level class, neither named with a leading
underscore, in a module that is not private. ``self``/``cls`` do not count; ``*args``/``**kwargs`` count one each.
Dataclass fields are not parameters: a dataclass is an options object or a record, not a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("geep_deploy", "engines", "runtime", "export")
LIMIT = 8


def _count(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    a = fn.args
    names = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
    n = len(names) - (1 if names and names[0] in ("self", "cls") else 0)
    return n + (a.vararg is not None) + (a.kwarg is not None)


def public_functions() -> list[tuple[str, int]]:
    out = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if any(part.startswith("_") and part not in ("__init__.py", "__main__.py") for part in path.parts[-1:]):
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in tree.body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
                    out.append((f"{rel}:{node.name}", _count(node)))
                elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                    for item in node.body:
                        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
                                item.name == "__init__" or not item.name.startswith("_")):
                            out.append((f"{rel}:{node.name}.{item.name}", _count(item)))
    return out


def test_walk_finds_the_boundaries() -> None:
    found = dict(public_functions())
    assert "runtime/engine.py:GeepEngine.load" in found and "export/bundle.py:export_checkpoint" in found
    assert len(found) > 300


def test_no_public_function_takes_more_than_8_parameters() -> None:
    over = {name: n for name, n in public_functions() if n > LIMIT}
    assert not over, (f"public functions with more than {LIMIT} parameters (group them into an options object, "
                      f"see docs/architecture.md): {over}")
