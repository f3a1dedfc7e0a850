"""The suite's results page: refresh every set's summary across seeds, then write ``docs/results.md``.

The page itself is rendered by ``geep_deploy.reporting.results_page`` (the one docs renderer); this module keeps
the suite's entry points (``bench/multi_dataset.py --page-only`` and ``run.run_suite`` import them from here).
"""

from __future__ import annotations

from pathlib import Path

from geep_deploy.errors import ConfigError
from geep_deploy.reporting.results_page import write_page
from geep_deploy.suite.protocol import PLANNED_SEEDS

__all__ = ["PLANNED_SEEDS", "refresh_summaries", "write_page"]


def refresh_summaries(results: Path, work: Path) -> list[str]:
    """``aggregate_dataset`` for every folder of ``results`` with seed files; returns a warning per set with a
    seed whose answers are missing (next to its seed file, or from an earlier run, under ``work``) or are not that
    seed's (its committed summary.json is kept as it is)."""
    from geep_deploy.suite.aggregate import aggregate_dataset

    warnings = []
    for folder in sorted(p for p in Path(results).glob("*/") if any(p.glob("seed*.json"))):
        try:
            aggregate_dataset(Path(results), Path(work), folder.name)
        except ConfigError as e:
            warnings.append(f"{folder.name}: kept the committed summary.json ({e})")
    return warnings
