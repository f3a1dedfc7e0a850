"""Across training seeds: every gap the results page states, as a mean with a 95% interval over seeds and test rows.

Each training seed's summary (``results/<dataset>/seed<S>.json``) names, per method, the knobs its accuracy at a
target FLOPs speed-up is interpolated between (``run.fair_figures``); each seed's answers file, next to it
(``answers.answers_path``), holds every knob's answer per reported test row. A gap is the per-row difference of
two methods' interpolated correctness, averaged over rows and seeds; its interval comes from a bootstrap that resamples seeds
and, paired, the same test rows for both methods (``points.seed_row_bootstrap``). The FLOPs weights of an
interpolation are held fixed in the resamples. A goal counts as met only where the interval says so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from geep_deploy.atomic import atomic_write_text
from geep_deploy.errors import ConfigError
from geep_deploy.suite.answers import load_answers
from geep_deploy.suite.points import (
    fastest_mix_at,
    interpolate_at,
    interpolated_correct,
    noise_knob,
    seed_row_bootstrap,
)
from geep_deploy.suite.protocol import ABLATIONS, ALL_DEPTH_L, FULL_MARGIN_POINTS, HEADLINE

CONTENDERS = (HEADLINE, *ABLATIONS, "pabee")
"""Every method compared with FastBERT; the first is the headline (``protocol.HEADLINE``), then the ablations."""


def seed_summaries(results: Path, dataset: str) -> dict[int, dict[str, Any]]:
    """Every seed's summary of ``dataset``, by seed."""
    out = {}
    for p in sorted((results / dataset).glob("seed*.json")):
        try:
            s = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ConfigError(f"suite | {p} is not a readable summary ({e}); rerun the suite for that seed.") from e
        out[int(s["seed"])] = s
    return out


def _curve(summary: dict[str, Any], method: str) -> list[dict[str, Any]]:
    by_knob = {c["knob"]: c for c in summary["curves"][method]}
    return [by_knob[k] for k in summary["fair"]["methods"][method]["frontier"]]


def area_rows(curve: list[dict[str, Any]], answers: dict[str, np.ndarray], labels: np.ndarray,
              lo: float, hi: float, steps: int = 201) -> np.ndarray | None:
    """Per-row contribution to the area under the interpolated accuracy/FLOPs curve over ``lo``..``hi`` (its
    mean over rows is ``points.area_under``); None when the curve does not span the range."""
    xs = np.linspace(lo, hi, steps)
    cols = []
    for x in xs:
        at = interpolate_at(curve, float(x))
        if at is None:
            return None
        cols.append(interpolated_correct(at, answers, labels))
    c = np.stack(cols, axis=1)
    return ((c[:, 1:] + c[:, :-1]) / 2).mean(axis=1)


def _gap(a: list[np.ndarray | None], b: list[np.ndarray | None], seed: int) -> dict[str, Any] | None:
    """Mean per-row difference (points) with its seed x row interval, or None if any seed lacks either side."""
    if not a or any(x is None for x in a) or any(x is None for x in b):
        return None
    mean, low, high = seed_row_bootstrap([x - y for x, y in zip(a, b)], seed=seed)
    return {"points": 100 * mean, "low": 100 * low, "high": 100 * high, "seeds": len(a)}


def verdict(gap: dict[str, Any] | None, margin: float = 0.0) -> str:
    """Without a margin: ``ahead`` (the whole interval above 0), ``behind`` (below 0) or ``level``. With one:
    ``met`` when the interval's low end is at or above ``-margin`` points, else ``missed``. ``-``: not measured."""
    if gap is None:
        return "-"
    if margin:
        return "met" if gap["low"] >= -margin - 1e-9 else "missed"
    if gap["low"] > 0:
        return "ahead"
    return "behind" if gap["high"] < 0 else "level"


def _rows(summary: dict[str, Any], answers: dict[str, np.ndarray], labels: np.ndarray, method: str,
          target: str) -> np.ndarray | None:
    at = summary["fair"]["methods"].get(method, {}).get("at", {}).get(target)
    return None if at is None else interpolated_correct(at, answers, labels)


def wall_clock_pairs(summary: dict[str, Any], headline: str = HEADLINE, batch: str = "64") -> list[dict[str, Any]]:
    """At equal accuracy, GEEP's wall-clock against FastBERT's, chosen on the tuning rows only: for each target,
    FastBERT's operating point, and the headline's fastest benched point (by tuning FLOPs) whose tuning accuracy
    is at least FastBERT's there. Each carries both wall-clock speed-ups (mean of the bench runs, each run's too)
    and the run's noise; ``ahead`` is said only when the difference is larger than that noise and the run-to-run
    spread of both points."""
    bench = (summary.get("bench") or {}).get(batch)
    if not bench:
        return []
    recs, noise = bench["records"], bench.get("noise") or 0.0
    ours = [p for p in summary["points"].get(headline, []) if p is not None and p["knob"] in recs]
    out = []
    for fb in summary["points"].get("fastbert", []):
        if fb is None or fb["knob"] not in recs:
            continue
        ok = [p for p in ours if p["held_out"]["accuracy"] >= fb["held_out"]["accuracy"]]
        if not ok:
            out.append({"target": fb["target"], "fastbert": fb["knob"], "geep": None})
            continue
        g = max(ok, key=lambda p: (p["held_out"]["flops_speedup"], p["held_out"]["accuracy"]))
        wg, wf = recs[g["knob"]], recs[fb["knob"]]
        spread = max([noise, *(max(r["wall_speedup_runs"]) - min(r["wall_speedup_runs"]) for r in (wg, wf))])
        diff = wg["wall_speedup"] - wf["wall_speedup"]
        out.append({"target": fb["target"], "fastbert": fb["knob"], "geep": g["knob"],
                    "fastbert_wall": wf["wall_speedup"], "geep_wall": wg["wall_speedup"],
                    "fastbert_runs": wf["wall_speedup_runs"], "geep_runs": wg["wall_speedup_runs"],
                    "geep_test_accuracy": g["accuracy"], "fastbert_test_accuracy": fb["accuracy"],
                    "spread": spread, "verdict": "ahead" if diff > spread else "behind" if -diff > spread else "level"})
    return out


def mixed_wall_pairs(summary: dict[str, Any], contender: str, reference: str,
                     batch: str = "64") -> list[dict[str, Any]]:
    """At each of ``reference``'s benched operating points, ``contender``'s fastest wall-clock speed-up at that
    point's tuning accuracy or above, mixing two of its benched points (``points.fastest_mix_at``; tuning
    accuracies only). ``ahead`` (the contender faster) or ``behind`` only when the difference is larger than the
    run's noise line and the run-to-run spread of both sides; ``-`` where no contender point is that accurate;
    ``out of range`` where every benched contender point is more accurate than asked and slower: its sweep was not
    benched down to that accuracy, so the pair says nothing about which is faster there.

    Unlike ``wall_clock_pairs`` (the pre-registered FastBERT check, which takes the contender's fastest single
    benched point), a mix does not force the contender to a point far more accurate than asked, so it can be read
    in both directions; it answers which dispatch to run on the same heads (issue 23, item 3)."""
    bench = (summary.get("bench") or {}).get(batch)
    if not bench:
        return []
    recs, noise = bench["records"], bench.get("noise") or 0.0

    def benched(method: str) -> list[tuple[str, float, dict[str, Any]]]:
        return [(p["knob"], p["held_out"]["accuracy"], recs[p["knob"]]) for p in summary["points"].get(method, [])
                if p is not None and p["knob"] in recs]

    ours = benched(contender)
    out = []
    for knob, acc, ref in {b[0]: b for b in benched(reference)}.values():  # a knob chosen at two targets: once
        runs = len(ref["wall_speedup_runs"])
        mixes = [fastest_mix_at([(a, r["wall_speedup_runs"][i]) for _, a, r in ours], acc) for i in range(runs)]
        mean = fastest_mix_at([(a, r["wall_speedup"]) for _, a, r in ours], acc)
        row = {"reference": knob, "tuning_accuracy": acc, "reference_wall": ref["wall_speedup"],
               "contender_wall": mean, "verdict": "-"}
        if mean is not None and None not in mixes:
            spread = max(noise, max(mixes) - min(mixes), max(ref["wall_speedup_runs"]) - min(ref["wall_speedup_runs"]))
            diff = mean - ref["wall_speedup"]
            row.update(spread=spread, verdict="ahead" if diff > spread else "behind" if -diff > spread else "level")
            if row["verdict"] == "behind" and min(a for _, a, _ in ours) > acc:
                row["verdict"] = "out of range"
        out.append(row)
    return out


def aggregate_dataset(results: Path, work: Path, dataset: str) -> dict[str, Any] | None:
    """``results/<dataset>/summary.json`` from every seed measured so far; None when no seed is."""
    seeds = seed_summaries(results, dataset)
    if not seeds:
        return None
    per_seed = {seed: load_answers(results, work, dataset, seed, seeds[seed]) for seed in seeds}
    order = sorted(seeds)
    first = seeds[order[0]]
    targets = [f"{t:g}" for t in first["fair"]["targets"]]
    lo, hi = first["fair"]["area_range"]
    labels = {s: per_seed[s].pop("labels") for s in order}

    def rows(method: str, target: str) -> list[np.ndarray | None]:
        return [_rows(seeds[s], per_seed[s], labels[s], method, target) for s in order]

    def full_rows() -> list[np.ndarray]:
        return [(per_seed[s]["full"] == labels[s]).astype(np.float64) for s in order]

    def areas(method: str) -> list[np.ndarray | None]:
        return [area_rows(_curve(seeds[s], method), per_seed[s], labels[s], lo, hi)
                if method in seeds[s]["fair"]["methods"] else None for s in order]

    gaps: dict[str, Any] = {"vs_fastbert": {}, "vs_full": {}, "area_vs_fastbert": {}}
    fastbert = {t: rows("fastbert", t) for t in targets}
    full, fastbert_area = full_rows(), areas("fastbert")
    for m in CONTENDERS:
        ours = {t: rows(m, t) for t in targets}
        gaps["vs_fastbert"][m] = {t: _gap(ours[t], fastbert[t], order[0]) for t in targets}
        gaps["vs_full"][m] = {t: _gap(ours[t], full, order[0]) for t in targets}
        gaps["area_vs_fastbert"][m] = _gap(areas(m), fastbert_area, order[0])
    # what the prediction ahead of the deep layers buys in accuracy: GEEP's own heads under the entropy exit
    # against the headline probe on the same heads (positive: the entropy exit is more accurate)
    gaps["entropy_exit_vs_headline"] = {t: _gap(rows("geep_entropy", t), rows(CONTENDERS[0], t), order[0])
                                        for t in targets}
    geep_l = [(per_seed[s][f"static:{len(first['per_depth_accuracy']['geep'])}"] == labels[s]).astype(np.float64)
              for s in order]
    methods = list(first["fair"]["methods"])
    all_depth_l = {str(s): _all_depth_l(seeds[s]) for s in order}
    summary = {
        "dataset": first["dataset"], "seeds": order, "headline": first.get("headline", HEADLINE),
        "rows": first["rows"], "test_dropped_duplicates": first.get("test_dropped_duplicates"),
        "full_accuracy": _mean_sd([seeds[s]["full_accuracy"] for s in order]),
        "accuracy_at": {m: {t: _mean_sd([(seeds[s]["fair"]["methods"][m]["at"].get(t) or {}).get("accuracy")
                                         for s in order]) for t in targets} for m in methods},
        "area": {m: _mean_sd([seeds[s]["fair"]["methods"][m]["area"] for s in order]) for m in methods},
        "gaps": gaps,
        "depth_l_minus_full": _gap(geep_l, full, order[0]),
        "fastbert_depth_l_equals_full": _same_answers(per_seed, order, "fastbert:0", "full"),
        "train_seconds": {m: _mean_sd([(seeds[s].get("train_seconds") or {}).get(m) for s in order])
                          for m in ("full", "geep", "pabee", "fastbert")},
        "wall_clock": {str(s): wall_clock_pairs(seeds[s], first.get("headline", HEADLINE)) for s in order},
        "all_depth_l_check": all_depth_l,
        "all_depth_l_set_check": set_all_depth_l(all_depth_l),
        "full_margin_points": FULL_MARGIN_POINTS,
    }
    out = results / dataset / "summary.json"
    atomic_write_text(out, json.dumps(summary, indent=1) + "\n")
    return summary


def _same_answers(per_seed: dict[int, dict[str, np.ndarray]], order: list[int], a: str, b: str) -> bool | None:
    """Whether knobs ``a`` and ``b`` answer every row alike in every seed; None when a seed lacks either."""
    if any(a not in per_seed[s] or b not in per_seed[s] for s in order):
        return None
    return all(bool(np.array_equal(per_seed[s][a], per_seed[s][b])) for s in order)


def within_noise(speedup: float, noise: float) -> bool:
    """The suite's rule: a speed-up against `full` is within the run's noise when it is no further from 1.00x than
    the identical contender's largest distance from 1.00x (``noise``)."""
    return abs(speedup - 1.0) <= noise + 1e-9


def rule_over_runs(run_medians: list[dict[str, float]], contender: str, noise_contender: str,
                   reference: str = "full") -> dict[str, Any]:
    """The suite's rule over separate runs, from each run's median seconds per contender: in a run a speed-up is
    ``reference``'s median over the contender's; ``contender``'s speed-up is the mean over runs, the noise
    ``noise_contender``'s (an identical contender's) largest distance from 1.00x in any run.

    Raises:
        ConfigError: no runs, or a run without one of the three contenders.
    """
    need = (reference, contender, noise_contender)
    if not run_medians or any(k not in m for m in run_medians for k in need):
        raise ConfigError(f"suite | the rule over runs needs at least one run timing {', '.join(need)}; got "
                          f"{[sorted(m) for m in run_medians]}.")
    return rule_over_speedups([m[reference] / m[contender] for m in run_medians],
                              [abs(m[reference] / m[noise_contender] - 1.0) for m in run_medians], noise_contender)


def rule_over_speedups(speedups: list[float], noise_runs: list[float], noise_contender: str) -> dict[str, Any]:
    """The suite's rule from each run's speed-up against `full` and each run's noise (the identical contender's
    distance from 1.00x): the contender's speed-up is the mean over runs, the noise the largest distance.

    Raises:
        ConfigError: no run, or no noise.
    """
    if not speedups or not noise_runs:
        raise ConfigError(f"suite | the rule over runs needs at least one run and one noise; got {len(speedups)} "
                          f"speed-ups and {len(noise_runs)} noises.")
    mean = float(np.mean(speedups))
    return {"speedup": mean, "speedup_runs": list(speedups), "noise": max(noise_runs), "noise_runs": list(noise_runs),
            "noise_contender": noise_contender, "within_noise": within_noise(mean, max(noise_runs))}


def set_all_depth_l(checks: dict[str, dict[str, Any] | None]) -> dict[str, Any] | None:
    """The per-set rule over the suite's own timings: `rule_over_speedups` over every run of every seed of the set
    (``probe:0``'s speed-up the mean over those runs, the noise the identical contender's largest distance from
    1.00x in any of them), the rule `bench/all_depth_l_overhead.py` names for issue 23's "for every set". None
    unless every seed was benched with its noise runs."""
    found = list(checks.values())
    if not found or any(c is None or not c.get("noise_runs") for c in found):
        return None
    out = rule_over_speedups([r for c in found for r in c["runs"]], [n for c in found for n in c["noise_runs"]],
                             found[0]["noise_contender"])
    out["seeds_within"] = sum(c["within_noise"] for c in found)  # type: ignore[index]
    out["seeds"] = len(found)
    return out


def _all_depth_l(summary: dict[str, Any], batch: str = "64") -> dict[str, Any] | None:
    """GEEP with every row at depth L (``probe:0``) against ``full``: within the run's noise or not."""
    bench = (summary.get("bench") or {}).get(batch)
    if not bench or ALL_DEPTH_L not in bench["records"]:
        return None
    r = bench["records"][ALL_DEPTH_L]
    noise = bench.get("noise") or 0.0
    L = len(summary["per_depth_accuracy"]["geep"])
    same = bench["records"].get(noise_knob(L))
    return {"wall_speedup": r["wall_speedup"], "runs": r["wall_speedup_runs"], "noise": noise,
            "noise_contender": noise_knob(L),
            "noise_runs": [abs(s - 1.0) for s in same["wall_speedup_runs"]] if same else None,
            "within_noise": within_noise(r["wall_speedup"], noise),
            # None: timed before the runtime recorded its session settings (SkipLayerNormFusion still on)
            "engine_settings": summary.get("engine_settings")}


def _mean_sd(values: list[float | None]) -> dict[str, Any] | None:
    vals = [v for v in values if v is not None]
    if not vals or len(vals) < len(values):
        return None
    a = np.asarray(vals, dtype=np.float64)
    return {"mean": float(a.mean()), "sd": float(a.std(ddof=1)) if a.size > 1 else 0.0, "n": int(a.size)}
