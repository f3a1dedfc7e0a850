"""``bench/`` scripts are thin (issue 26): they import the installed packages (no ``sys.path`` edits, no sibling
script imports) and open engines only through ``engines.registry.open_engine``."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "bench").glob("*.py"))
ENGINE_CLASSES = {"OrtEngine", "TorchEngine", "TrtEngine", "ReferenceEngine"}


def _problems(path: Path) -> list[str]:
    tree, out = ast.parse(path.read_text(encoding="utf-8")), []
    siblings = {p.stem for p in SCRIPTS}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if isinstance(f, ast.Attribute) and name == "insert" and ast.unparse(f.value) == "sys.path":
                out.append(f"{path.name}:{node.lineno} edits sys.path")
            if name in ENGINE_CLASSES:
                out.append(f"{path.name}:{node.lineno} builds {name} directly (use open_engine)")
        if isinstance(node, ast.Import | ast.ImportFrom):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            out += [f"{path.name}:{node.lineno} imports sibling script {m}" for m in mods if m.split(".")[0] in siblings]
    return out


def test_bench_scripts_import_packages_and_open_engines_one_way() -> None:
    assert SCRIPTS
    assert [p for s in SCRIPTS for p in _problems(s)] == []


def test_the_check_catches_each_case(tmp_path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import sys\nimport exit_table_bench\nfrom engines.ort import OrtEngine\n"
                   "sys.path.insert(0, '.')\nOrtEngine('g.onnx').load()\n")
    got = _problems(bad)
    assert any("edits sys.path" in g for g in got) and any("builds OrtEngine" in g for g in got)
    assert any("sibling script exit_table_bench" in g for g in got)
