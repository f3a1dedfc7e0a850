"""GEEP with every row at depth L (``probe:0``) against ``full``, timed on its own: the check issue 23 names.

The suite's bench times ``probe:0`` among some twenty contenders and takes its noise from GEEP's ``static:L``
against ``full`` (two exports). ``bench/all_depth_l_overhead.py`` times ``full``, ``full`` again on the same engines,
``full`` on a second load of its export (the identical contender: one export, one path, sessions of its own as
``probe:0`` has) and ``probe:0`` on the same seed's batch-64 bench rows, in separate runs of interleaved repeats,
and applies the suite's rule with each noise (its JSON's ``check``, and ``check_same_engines`` for the rule before).
This module reads those JSON files (``bench/results/all_depth_l_overhead/<set>_seed<S>.json``) for the results
page; files written before the bench timed the second load (no ``check_same_engines``) are left out.

Per set (`set_check`), the same rule runs over every run of every seed of the set, the per-set rule named in the
bench's docstring before the run that first applied it. Beside each rule, the same rule applied to ``full_again``
(the same engines timed twice, identical by construction) shows how often the rule fails a contender that cannot
differ from ``full``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from geep_deploy.errors import ConfigError
from geep_deploy.reporting.format import slashed
from geep_deploy.suite.aggregate import rule_over_runs
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
            if all(key in data for key in (*RULES, "runs")):
                found[int(seed)] = data
        out[name] = dict(sorted(found.items()))
    return out


IDENTICAL = "full_again"
"""The contender that cannot differ from ``full`` (its own engines timed again): the rules' false-alarm check."""
SET_HEAD = ["set", "seeds", "runs", "`probe:0` speed-up (mean over runs)", "noise: `full` loaded again (largest, "
            "any run)", "verdict", "`full` again (identical): speed-up", "verdict",
            "seeds within one by one: `probe:0` / `full` again"]


def verdict(check: dict[str, Any]) -> str:
    """``within`` the noise, or which way the contender (``probe:0`` unless the check says ``speedup``) falls
    outside it."""
    if check["within_noise"]:
        return "within"
    return "OUTSIDE (slower)" if check.get("speedup", check.get("probe0_speedup")) < 1.0 else "OUTSIDE (faster)"


def _run_medians(seeds: dict[int, dict[str, Any]]) -> tuple[list[dict[str, float]], str]:
    """Every run's medians over ``seeds``, and the noise contender their checks took (one for all).

    Raises:
        ConfigError: the seeds' checks took their noise from different contenders.
    """
    noise = {d["check"]["noise_contender"] for d in seeds.values()}
    if len(noise) != 1:
        raise ConfigError(f"results | the all-depth-L checks of one set took their noise from {sorted(noise)}; "
                          f"rewrite them with one bench: {COMMAND}.")
    return [run["median_s"] for d in seeds.values() for run in d["runs"]], noise.pop()


def set_check(seeds: dict[int, dict[str, Any]], contender: str = "probe0") -> dict[str, Any] | None:
    """The per-set rule: the suite's rule over every run of every seed of the set (``contender``'s speed-up the
    mean over those runs, the noise the identical contender's largest distance from 1.00x in any of them); None
    when no seed was measured."""
    if not seeds:
        return None
    runs, noise = _run_medians(seeds)
    return rule_over_runs(runs, contender, noise)


def identical_check(bench: dict[str, Any]) -> dict[str, Any]:
    """One seed's check applied to ``full_again`` instead of ``probe:0``, with the same noise."""
    runs, noise = _run_medians({0: bench})
    return rule_over_runs(runs, IDENTICAL, noise)


def sets_within(checks: dict[str, dict[int, dict[str, Any]]], contender: str = "probe0") -> tuple[int, int]:
    """(sets within noise, sets measured) by the per-set rule."""
    found = [set_check(seeds, contender) for seeds in checks.values() if seeds]
    return sum(c["within_noise"] for c in found), len(found)  # type: ignore[index]


def identical_seeds_within(checks: dict[str, dict[int, dict[str, Any]]]) -> tuple[int, int]:
    """(seeds where ``full`` timed again is within the noise, seeds measured) by the per-seed rule."""
    seeds = [d for by_seed in checks.values() for d in by_seed.values()]
    return sum(identical_check(d)["within_noise"] for d in seeds), len(seeds)


def set_rows(checks: dict[str, dict[int, dict[str, Any]]]) -> list[list[str]]:
    """One row per measured set: the per-set rule for ``probe:0`` and, beside it, for ``full`` timed again."""
    out = []
    for name, seeds in checks.items():
        if not seeds:
            continue
        p0, same = set_check(seeds), set_check(seeds, IDENTICAL)
        one_by_one = f"{within_count({name: seeds})[0]} / {identical_seeds_within({name: seeds})[0]} of {len(seeds)}"
        out.append([name, ", ".join(map(str, seeds)), str(len(p0["speedup_runs"])), f"{p0['speedup']:.3f}x",
                    f"{100 * p0['noise']:.1f}%", verdict(p0), f"{same['speedup']:.3f}x", verdict(same), one_by_one])
    return out


def set_summary_text(checks: dict[str, dict[int, dict[str, Any]]]) -> str:
    """The per-set rule's count over sets, with the identical contender's count under each rule beside it."""
    measured = {name: seeds for name, seeds in checks.items() if seeds}
    if not measured:
        return "Not measured yet."
    p0 = {name: set_check(seeds) for name, seeds in measured.items()}
    outside = [f"{name}, {'slower' if c['speedup'] < 1.0 else 'faster'}" for name, c in p0.items()
               if not c["within_noise"]]
    seeds = [d for by_seed in measured.values() for d in by_seed.values()]
    n = len(measured)
    same_seeds, p0_seeds = identical_seeds_within(measured)[0], within_count(measured)[0]
    return (f"By the per-set rule `probe:0` is within the noise of `full` loaded again on "
            f"{n - len(outside)} of {n} sets" + (f" (outside: {'; '.join(outside)})" if outside else "")
            + ": the check (within the noise on every set) is " + ("met" if not outside else "not met")
            + f". The same rule holds `full` timed again on its own engines, which cannot differ from `full`, "
            f"within on {sets_within(measured, IDENTICAL)[0]} of {n} sets. One seed at a time, `full` "
            f"timed again is within on {same_seeds} of {len(seeds)} "
            f"seeds and `probe:0` on {p0_seeds}: the per-seed rule fails a contender that cannot differ from "
            + ("`full` as often as or more often than it fails `probe:0`, so a seed outside it is not on its own "
               "evidence of a difference. " if same_seeds <= p0_seeds else
               "`full` less often than it fails `probe:0`. ")
            + "The per-set rule is lenient (a mean over more runs against the largest of more distances); the mean "
            "over seeds with its interval, above, is the figure with power.")


def within_count(checks: dict[str, dict[int, dict[str, Any]]], rule: str = "check") -> tuple[int, int]:
    """(seeds within noise, seeds measured) over every set, by ``rule`` (a key of `RULES`)."""
    seeds = [d for by_seed in checks.values() for d in by_seed.values()]
    return sum(d[rule]["within_noise"] for d in seeds), len(seeds)


def per_set_text(seeds: dict[int, dict[str, Any]]) -> str:
    """``within the noise over its 3 seeds (2 of 3 seeds one by one)``, or ``not measured``."""
    if not seeds:
        return "not measured"
    within, n = within_count({"": seeds})
    return set_phrase(set_check(seeds), within, n)  # type: ignore[arg-type]


def set_phrase(check: dict[str, Any], seeds_within: int, seeds: int) -> str:
    """A per-set check in words: ``within the noise (0.996x, noise 4.0%) over its 3 seeds (2 of 3 seeds one by
    one)``."""
    where = ("within the noise" if check["within_noise"] else
             f"OUTSIDE the noise, {'slower' if check['speedup'] < 1.0 else 'faster'}")
    return (f"{where} ({check['speedup']:.3f}x, noise {100 * check['noise']:.1f}%) over its {seeds} seeds "
            f"({seeds_within} of {seeds} seeds one by one)")


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
        _, lo, hi = mean_interval(graphs)
        cost = ("the split costs the engines time" if lo > 1.0 else "the split saves the engines time" if hi < 1.0
                else "the interval holds 1.00x: this machine does not resolve what the split costs the engines")
        text += (f"its two graphs alone take longer than the depth-L graph alone on {sum(g > 1.0 for g in graphs)} "
                 f"of {len(graphs)} ({_with_interval(graphs)}; {cost}). ")
    same, _ = within_count(checks, "check_same_engines")
    wider = sum(d["check"]["noise"] > d["check_same_engines"]["noise"] for d in seeds)
    return text + (f"Within the noise of {RULES['check']} on {within} of {n} seeds, outside it and slower on "
                   f"{slower}, outside it and faster on {faster}: the per-seed check (within the noise on every seed) is "
                   + ("met." if within == n else "not met.")
                   + f" With the noise of {RULES['check_same_engines']} (the rule before), within on {same} of "
                   f"{n}; the noise of {RULES['check']} is the larger of the two on {wider} of {n}.")
