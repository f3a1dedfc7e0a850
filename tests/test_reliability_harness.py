"""The project's hostile harness (``geep_deploy.bench.reliability``, whose command line is ``bench/reliability.py``)
in CI: its fast categories on the harness's own tiny workspace, every case clean or correct (no traceback, silent
wrong answer, lost data or hang).

The full run (every category, interrupted exports and the HTTP service included) regenerates
docs/reliability.md: ``python bench/reliability.py --json bench/results/reliability.json --doc docs/reliability.md``.
"""

from __future__ import annotations

from pathlib import Path

from geep_deploy.bench import reliability as rel


def test_fast_hostile_categories_end_clean_or_correct(tmp_path: Path) -> None:
    ws = rel.build_workspace(tmp_path)
    result = rel.run_all(ws, tmp_path, set(rel.FAST))
    assert set(result["categories"]) == set(rel.FAST)
    bad = [(cat, c["case"], c["outcome"], c["detail"]) for cat, cc in result["categories"].items()
           for c in cc["cases"] if c["outcome"] in rel.BAD]
    assert not bad, bad
    assert result["total"]["tried"] > 300
