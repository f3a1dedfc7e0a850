"""The suite's result JSON as the docs read it: every set's seed files (``<results>/<set>/seed<S>.json``,
``suite.run.run_dataset``) and its summary across seeds (``<results>/<set>/summary.json``,
``suite.aggregate.aggregate_dataset``); sets or seeds not measured yet are kept, empty, so the docs can name them."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geep_deploy.errors import ConfigError
from geep_deploy.suite.aggregate import seed_summaries
from geep_deploy.suite.datasets import DATASETS

LEARN_MARGIN = 0.01  # a set "learns" when some classifier beats the majority-class share by more than this
SOURCE = "bench/results/multi_dataset"
"""Where the committed suite JSON lives, as the docs name it."""


@dataclass
class SetResults:
    """One dataset's JSON: its seed files by seed and its summary across seeds (None until aggregated)."""

    name: str
    title: str
    seeds: dict[int, dict[str, Any]]
    summary: dict[str, Any] | None

    @property
    def first(self) -> dict[str, Any]:
        return self.seeds[min(self.seeds)]


def load_sets(results: Path) -> list[SetResults]:
    """Every suite dataset (and any other folder under ``results``), measured or not, in the suite's order."""
    results = Path(results)
    extra = sorted(p.name for p in results.glob("*/") if p.is_dir() and p.name not in DATASETS)
    out = []
    for name in (*DATASETS, *extra):
        seeds = seed_summaries(results, name) if (results / name).is_dir() else {}
        path = results / name / "summary.json"
        try:
            summary = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        except (OSError, ValueError) as e:
            raise ConfigError(f"suite | {path} is not readable ({e}); run bench/multi_dataset.py --page-only.") from e
        title = DATASETS[name].title if name in DATASETS else name
        out.append(SetResults(name, title, seeds, summary))
    return out


def learns(s: SetResults) -> bool:
    """Some classifier (any method at any depth) beats the majority-class share by more than a point on the tuning
    rows of some seed; otherwise the set's accuracy comparisons say nothing. Decided on the tuning rows (seed
    files written before they recorded them: on the reported rows)."""
    for seed in s.seeds.values():
        t = seed.get("tuning")
        if t is not None:
            best, majority = t["best_accuracy"], t["majority_share"]
        else:
            best = max([a for v in seed["per_depth_accuracy"].values() for a in v] + [seed["full_accuracy"]])
            majority = seed["majority_share"]
        if best > majority + LEARN_MARGIN:
            return True
    return False


def aggregated(sets: list[SetResults]) -> list[SetResults]:
    return [s for s in sets if s.summary is not None]


def seed_mean(s: SetResults, get: Callable[[dict[str, Any]], float | None]) -> float | None:
    """The mean of ``get`` over a set's seed files; None when a seed lacks it (or there is no seed)."""
    vals = [get(x) for x in s.seeds.values()]
    return None if not vals or any(v is None for v in vals) else sum(vals) / len(vals)
