"""GEEP with every row at depth L (``probe:0``) against ``full``, timed on its own: the check issue 23 names.

The suite's bench times ``probe:0`` among some twenty contenders and takes its noise from GEEP's ``static:L``
against ``full`` (two exports). ``bench/all_depth_l_overhead.py`` times ``full``, ``full`` again on the same engines,
``full`` on a second load of its export (the identical contender: one export, one path, sessions of its own as
``probe:0`` has) and ``probe:0`` on the same seed's batch-64 bench rows, in separate runs of interleaved repeats,
and applies the suite's rule with each noise (its JSON's ``check``, and ``check_same_engines`` for the rule before).
This module reads those JSON files (``bench/results/all_depth_l_overhead/<set>_seed<S>.json``) for the results
page; files written before the bench timed the second load (no ``check_same_engines``) are left out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from geep_deploy.errors import ConfigError
from geep_deploy.reporting.format import slashed
from geep_deploy.suite.points import seed_row_bootstrap

FOLDER = "all_depth_l_overhead"
COMMAND = (".venv/bin/python bench/all_depth_l_overhead.py --work runs/multi_dataset/<set>/seed<S> "
           "--json bench/results/all_depth_l_overhead/<set>_seed<S>.json")
HEAD = ["set", "seed", "mean tokens", "runs x repeats", "`probe:0` speed-up (runs)",
        "noise: `full` loaded again (runs)", "verdict", "noise: same engines (runs)", "verdict",
        "`prefix` + `cont{L}` / depth-L graph", "machine"]
RULES = {"check": "`full` loaded again", "check_same_engines": "the same engines timed twice"}
"""Each check in the JSON, by the identical contender its noise comes from; ``check`` is the one the issue's rule
takes (named before it was run, ``bench/all_depth_l_overhead.py``)."""


def load_checks(bench_results: Path, sets: list[str]) -> dict[str, dict[int, dict[str, Any]]]:
    """``{set: {seed: the bench's JSON}}`` for the named sets, seeds in order; sets without a file map to {}.

    Raises:
        ConfigError: a file is not valid JSON (named, with the command that rewrites it).
    """
    folder = Path(bench_results) / FOLDER
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for name in sets:
        found: dict[int, dict[str, Any]] = {}
        for path in sorted(folder.glob(f"{name}_seed*.json")):
            seed = path.stem.removeprefix(f"{name}_seed")
            if not seed.isdigit():
                continue
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise ConfigError(f"results | {path} is not readable ({e}); rewrite it with {COMMAND}.") from e
            if all(key in data for key in RULES):
                found[int(seed)] = data
        out[name] = dict(sorted(found.items()))
    return out


def verdict(check: dict[str, Any]) -> str:
    """``within`` the noise, or which way ``probe:0`` falls outside it."""
    if check["within_noise"]:
        return "within"
    return "OUTSIDE (slower)" if check["probe0_speedup"] < 1.0 else "OUTSIDE (faster)"


def within_count(checks: dict[str, dict[int, dict[str, Any]]], rule: str = "check") -> tuple[int, int]:
    """(seeds within noise, seeds measured) over every set, by ``rule`` (a key of `RULES`)."""
    seeds = [d for by_seed in checks.values() for d in by_seed.values()]
    return sum(d[rule]["within_noise"] for d in seeds), len(seeds)


def per_set_text(seeds: dict[int, dict[str, Any]]) -> str:
    """``2 of 3 seeds within noise``, or ``not measured``."""
    if not seeds:
        return "not measured"
    within, n = within_count({"": seeds})
    return f"{within} of {n} seeds within noise"


def _noise(check: dict[str, Any]) -> str:
    return f"{100 * check['noise']:.1f}% ({slashed([100 * n for n in check['noise_runs']], '{:.1f}')})"


def rows(checks: dict[str, dict[int, dict[str, Any]]]) -> list[list[str]]:
    """One row per measured seed: the check by the suite's rule with each noise, and where the time goes (the
    graphs alone)."""
    out = []
    for name, seeds in checks.items():
        for seed, d in seeds.items():
            c, same, cfg = d["check"], d["check_same_engines"], d["config"]
            graphs = d["ratios"].get("graphs_probe_over_graphs_full")
            out.append([name, str(seed), f"{cfg['mean_tokens']:.1f}", f"{cfg['runs']} x {cfg['repeats']}",
                        f"{c['probe0_speedup']:.3f}x ({slashed(c['probe0_speedup_runs'], '{:.3f}')})",
                        _noise(c), verdict(c), _noise(same), verdict(same),
                        "-" if graphs is None else f"{graphs:.3f}x", d["machine"].get("cpu", "?")])
    return out


def mean_interval(values: list[float], resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """The mean of ``values`` (one per seed) and its 95% bootstrap interval over seeds (the suite's
    `seed_row_bootstrap`, one value per seed): what the cost is across seeds, where one seed's check is a coin toss
    against this machine's noise."""
    if not values:
        raise ValueError("mean_interval needs at least one value")
    return seed_row_bootstrap([np.array([v], dtype=float) for v in values], resamples=resamples, seed=seed)


def _with_interval(values: list[float]) -> str:
    mean, lo, hi = mean_interval(values)
    return f"mean {mean:.3f}x, 95% interval over seeds [{lo:.3f}, {hi:.3f}]"


def summary_text(checks: dict[str, dict[int, dict[str, Any]]]) -> str:
    """Across every measured seed: which way ``probe:0`` leans, what the split costs the graphs, the check's count."""
    seeds = [d for by_seed in checks.values() for d in by_seed.values()]
    if not seeds:
        return "Not measured yet."
    speedups = [d["check"]["probe0_speedup"] for d in seeds]
    graphs = [g for d in seeds if (g := d["ratios"].get("graphs_probe_over_graphs_full")) is not None]
    slower = sum(not d["check"]["within_noise"] and d["check"]["probe0_speedup"] < 1.0 for d in seeds)
    within, n = within_count(checks)
    faster = n - within - slower
    text = (f"Over the {n} seeds, `probe:0`'s speed-up against `full` is below 1.00x on "
            f"{sum(s < 1.0 for s in speedups)} ({_with_interval(speedups)}); ")
    if graphs:
        text += (f"its two graphs alone take longer than the depth-L graph alone on {sum(g > 1.0 for g in graphs)} "
                 f"of {len(graphs)} ({_with_interval(graphs)}). ")
    same, _ = within_count(checks, "check_same_engines")
    wider = sum(d["check"]["noise"] > d["check_same_engines"]["noise"] for d in seeds)
    return text + (f"Within the noise of {RULES['check']} on {within} of {n} seeds, outside it and slower on "
                   f"{slower}, outside it and faster on {faster}: the check (within the noise on every seed) is "
                   + ("met." if within == n else "not met. The split into two graphs is a cost of predicting after "
                      "layer 1 of about the size of this machine's run-to-run noise, so whether a seed passes "
                      "depends on how noisy its runs were.")
                   + f" With the noise of {RULES['check_same_engines']} (the rule before), within on {same} of "
                   f"{n}; the noise of {RULES['check']} is the larger of the two on {wider} of {n}.")
