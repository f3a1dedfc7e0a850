"""The results page's tables and verdict sentences, each built from the suite's JSON (``suite_results.SetResults``).

Every figure comes from a seed file (``<results>/<set>/seed<S>.json``, ``run.run_dataset``) or the summary across
seeds (``<results>/<set>/summary.json``, ``aggregate.aggregate_dataset``); nothing here computes a new statistic
beyond means over seeds and counts of verdicts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from geep_deploy.names import DEFAULT_PREDICTOR, ENTROPY, PROBE
from geep_deploy.reporting.all_depth_l import mean_interval, set_phrase
from geep_deploy.reporting.format import NONE, gap_text, mean, mean_sd, pct, slashed
from geep_deploy.reporting.suite_results import SetResults
from geep_deploy.suite.aggregate import mixed_wall_pairs, verdict
from geep_deploy.suite.consistency import violation_summary
from geep_deploy.suite.protocol import ABLATIONS, ALL_DEPTH_L, HEADLINE, SUITE_DISTILL_WEIGHT
from runtime.dispatch import DISPATCH_REVISION

LABELS = {"full": "full", "probe": "GEEP (pre-registered: layer-1 probe)", "geep": "GEEP, token table",
          "probe_esc": "GEEP, probe + escalation", "probe_skip": "GEEP, probe, shared exit path",
          "geep_entropy": "GEEP's students, entropy exit", "fastbert": "FastBERT (entropy)",
          "pabee": "PABEE (patience)", "static": "static truncation (GEEP's students)"}
BASELINES = (HEADLINE, "fastbert", "pabee")
TARGET = "2"  # the goal tally's target FLOPs speed-up (a key of the summary's per-target dicts)
TRAINED = ("full", "geep", "pabee", "fastbert")


def names(sets: Iterable[Any]) -> str:
    return ", ".join(s.name for s in sets) or "none"


def distill_weight_text(sets: list[Any]) -> str:
    """The distillation weight GEEP was trained with in the seed files (the suite's setting until a seed is
    measured); several, comma-separated, where seeds differ."""
    found = {x["geep_loss"]["distill_weight"] for s in sets for x in s.seeds.values()}
    return ", ".join(f"{w:g}" for w in sorted(found)) if found else f"{SUITE_DISTILL_WEIGHT:g}"


# -- the goal tally --------------------------------------------------------------------------------------------

def wall_verdict(pairs_by_seed: dict[str, list[dict[str, Any]]], target: float = 2.0) -> str:
    """One set's equal-accuracy wall-clock verdict at ``target`` over its seeds (``aggregate.wall_clock_pairs``):
    the seeds' common verdict (``ahead`` / ``level`` / ``behind``; ``unmatched`` where no benched GEEP point was
    as accurate on the tuning rows), ``behind/unmatched`` when every seed loses but not all the same way, ``mixed``
    when the seeds disagree otherwise, ``-`` when nothing was benched."""
    verdicts = seed_wall_verdicts(pairs_by_seed, target)
    if not verdicts:
        return "-"
    if len(verdicts) == 1:
        return verdicts.pop()
    return WALL_LOST if verdicts <= {"behind", "unmatched"} else "mixed"


WALL_LOST = "behind/unmatched"
"""Every seed loses the equal-accuracy wall-clock comparison, some behind, some with no GEEP point as accurate."""


def seed_wall_verdicts(pairs_by_seed: dict[str, list[dict[str, Any]]], target: float = 2.0) -> set[str]:
    """The distinct equal-accuracy verdicts at ``target`` over a set's benched seeds (``unmatched`` where no
    benched GEEP point was as accurate on the tuning rows)."""
    return {"unmatched" if p["geep"] is None else p["verdict"]
            for pairs in pairs_by_seed.values() for p in pairs if p["target"] == target}


def set_goals(summary: dict[str, Any]) -> dict[str, Any]:
    """The pre-registered GEEP's three goals on one set, each with its interval and verdict."""
    fb = summary["gaps"]["vs_fastbert"][HEADLINE][TARGET]
    full = summary["gaps"]["vs_full"][HEADLINE][TARGET]
    return {"vs_fastbert": fb, "vs_fastbert_verdict": verdict(fb),
            "vs_full": full, "vs_full_verdict": verdict(full, summary["full_margin_points"]),
            "wall": wall_verdict(summary["wall_clock"])}


def goal_tally(learning: list[Any]) -> dict[str, Any]:
    """Counts of each verdict over the measured sets that learn: ``{goal: {verdict: [set names]}}``."""
    out: dict[str, dict[str, list[str]]] = {"vs_fastbert_verdict": {}, "vs_full_verdict": {}, "wall": {}}
    for s in learning:
        g = set_goals(s.summary)
        for k in out:
            out[k].setdefault(g[k], []).append(s.name)
    return {"sets": [s.name for s in learning], **out}


def tally_lines(t: dict[str, Any], margin: float) -> list[str]:
    n = len(t["sets"])

    def counts(goal: str, order: tuple[str, ...]) -> str:
        """Every verdict that occurs (the goal's own, first, always), with its sets; ``-``: not measured."""
        shown = [v for v in order if t[goal].get(v) or v == order[0]]
        return "; ".join(f"{'not measured' if v == '-' else v} on {len(t[goal].get(v, []))} of {n}"
                         + (f" ({', '.join(t[goal][v])})" if t[goal].get(v) else "") for v in shown)

    return ["- at exactly 2x FLOPs, the pre-registered GEEP against FastBERT: "
            + counts("vs_fastbert_verdict", ("ahead", "level", "behind", "-")) + ";",
            f"- at exactly 2x FLOPs, against `full` (goal: the interval's low end at most {margin:g} point below): "
            + counts("vs_full_verdict", ("met", "missed", "-")) + ";",
            "- at equal accuracy (chosen on tuning rows), batch-64 wall-clock against FastBERT at the 2x target: "
            + counts("wall", ("ahead", "level", "behind", "unmatched", WALL_LOST, "mixed", "-")) + "."]


def goal_rows(learning: list[Any]) -> list[list[str]]:
    rows = []
    for s in learning:
        g = set_goals(s.summary)
        rows.append([s.name, ", ".join(map(str, s.summary["seeds"])), gap_text(g["vs_fastbert"]),
                     g["vs_fastbert_verdict"], gap_text(g["vs_full"]), g["vs_full_verdict"], g["wall"]])
    return rows


GOAL_HEAD = ["set", "seeds", "GEEP - FastBERT at 2x (pts, 95% CI)", "verdict", "GEEP - full at 2x (pts, 95% CI)",
             "verdict", "b64 wall-clock at equal accuracy"]


def losses(learning: list[Any]) -> list[str]:
    """Plain sentences for every set where the pre-registered GEEP loses a comparison."""
    t = goal_tally(learning)
    out = []
    behind = t["vs_fastbert_verdict"].get("behind", [])
    if behind:
        out.append(f"GEEP loses to FastBERT at 2x FLOPs on {', '.join(behind)}: the whole interval is below zero.")
        out += [why_behind(s) for s in learning if s.name in behind]
    missed = t["vs_full_verdict"].get("missed", [])
    if missed:
        margin = learning[0].summary["full_margin_points"]
        out.append(f"GEEP is not shown within {margin:g} point of `full` at 2x FLOPs (the interval's low end is "
                   f"further below) on {', '.join(missed)}.")
    seeds_say = {s.name: seed_wall_verdicts(s.summary["wall_clock"]) for s in learning}
    lost = t["wall"].get(WALL_LOST, [])  # every seed a loss, of either kind
    slow = t["wall"].get("behind", []) + t["wall"].get("unmatched", []) + lost
    if slow:
        out.append(f"At equal accuracy FastBERT is faster at batch 64, or GEEP has no point as accurate, on "
                   f"{', '.join(slow)}" + (f" (on {', '.join(lost)} the seeds differ only in which)" if lost else "")
                   + ".")
    split = [f"{n} ({', '.join(sorted(seeds_say[n]))})" for n in t["wall"].get("mixed", [])]
    if split:
        out.append(f"At equal accuracy the seeds disagree on the batch-64 wall-clock verdict on {', '.join(split)}.")
    by_verdict: dict[str, list[str]] = {}
    for s in learning:
        gap = s.summary["gaps"].get("entropy_exit_vs_headline", {}).get("2")
        by_verdict.setdefault(verdict(gap), []).append(
            s.name if gap is None else f"{s.name} ({gap_text(gap)})")
    if by_verdict.get("ahead"):
        out.append(f"GEEP's own students under FastBERT's entropy exit are more accurate at 2x than the probe "
                   f"dispatch (whole interval above 0) on {', '.join(by_verdict['ahead'])}: what the prediction "
                   "ahead of the deep layers buys there is dense groups, not accuracy.")
    if by_verdict.get("level"):
        out.append(f"At 2x, GEEP's students under the entropy exit and the probe dispatch are level (entropy minus "
                   f"probe, points) on {', '.join(by_verdict['level'])}.")
    return [f"- {x}" for x in out] or ["The pre-registered GEEP loses no comparison of the tally on the sets "
                                       "measured so far."]


def student_gaps(seeds: dict[int, dict[str, Any]]) -> list[float]:
    """GEEP's exit classifier minus FastBERT's at each depth below L, points, mean over seeds."""
    first = next(iter(seeds.values()))
    n = len(first["per_depth_accuracy"]["geep"]) - 1
    return [100 * mean([s["per_depth_accuracy"]["geep"][k] - s["per_depth_accuracy"]["fastbert"][k]
                        for s in seeds.values()]) for k in range(n)]


def why_behind(s: Any) -> str:
    """The measured reason a set is lost to FastBERT: the students' per-depth accuracy, GEEP's depth L against
    `full`, and whether the dispatch (entropy exit on GEEP's own heads vs the probe) accounts for any of it."""
    gaps = student_gaps(s.seeds)
    below = sum(g < 0 for g in gaps)
    each = ", ".join(f"d{k + 1} {g:+.1f}" for k, g in enumerate(gaps))
    text = (f"Why GEEP loses on {s.name}, measured: GEEP's exit classifiers are below FastBERT's at {below} of the "
            f"{len(gaps)} depths below L (GEEP minus FastBERT, points, mean over seeds: {each}), and GEEP's depth L "
            f"minus `full` is {gap_text(s.summary['depth_l_minus_full'])}.")
    gap = s.summary["gaps"].get("entropy_exit_vs_headline", {}).get("2")
    if gap is None:
        return text
    v = verdict(gap)
    if v == "ahead":
        return text + (f" FastBERT's entropy exit on GEEP's own heads is ahead of the probe at 2x ({gap_text(gap)}), "
                       "so part of the loss is the dispatch.")
    relation = "level with" if v == "level" else "below"
    return text + (f" FastBERT's entropy exit on GEEP's own heads is {relation} the probe at 2x ({gap_text(gap)}), "
                   "so the points are lost in training the students, not in the dispatch.")


# -- accuracy at each target, area, ablations ------------------------------------------------------------------

def accuracy_rows(sets: list[Any]) -> tuple[list[str], list[list[str]]]:
    """Per set and method: accuracy at each target (mean ± sd over seeds) and its gap to FastBERT with interval."""
    s0 = sets[0].summary
    targets = list(next(iter(s0["accuracy_at"].values())))
    head = ["set", "method"] + [f"{t}x: accuracy %; - FastBERT (pts, 95% CI)" for t in targets]
    rows = []
    for s in sets:
        summ = s.summary
        rows.append([s.name, "full (depth L)"] + [mean_sd(summ["full_accuracy"])] * len(targets))
        for m in (*BASELINES, "static"):
            gaps = summ["gaps"]["vs_fastbert"].get(m, {})
            rows.append([s.name, LABELS[m]] + [
                mean_sd(summ["accuracy_at"].get(m, {}).get(t))
                + ("" if m == "fastbert" else f"; {gap_text(gaps.get(t))}") for t in targets])
    return head, rows


def area_rows(sets: list[Any]) -> list[list[str]]:
    rows = []
    for s in sets:
        summ = s.summary
        for m in (*BASELINES, *ABLATIONS):
            g = summ["gaps"]["area_vs_fastbert"].get(m)
            rows.append([s.name, LABELS[m], mean_sd(summ["area"].get(m)),
                         NONE if m == "fastbert" else gap_text(g), NONE if m == "fastbert" else verdict(g)])
    return rows


AREA_HEAD = ["set", "method", "mean accuracy over [1x, 3x] FLOPs %", "- FastBERT (pts, 95% CI)", "verdict"]


def ablation_rows(sets: list[Any]) -> list[list[str]]:
    rows = []
    for s in sets:
        summ = s.summary
        for m in (HEADLINE, *ABLATIONS):
            g = summ["gaps"]["vs_fastbert"].get(m, {}).get(TARGET)
            rows.append([s.name, LABELS[m] + (" (headline)" if m == HEADLINE else ""),
                         mean_sd(summ["accuracy_at"].get(m, {}).get(TARGET)), gap_text(g), verdict(g)])
    return rows


ABLATION_HEAD = ["set", "GEEP variant", "accuracy at 2x %", "- FastBERT at 2x (pts, 95% CI)", "verdict"]


# -- training compute ------------------------------------------------------------------------------------------

def _distill_seconds(seeds: dict[int, dict[str, Any]]) -> float | None:
    secs = [sum((((s.get("stage_seconds") or {}).get("fastbert")) or {}).values()) for s in seeds.values()]
    return sum(secs) / len(secs) if secs and all(secs) else None


def training_rows(sets: list[Any]) -> list[list[str]]:
    """Seconds per method (mean over seeds); FastBERT = its teacher `full` + its distillation."""
    rows = []
    for s in sets:
        t = s.summary["train_seconds"]
        distill = _distill_seconds(s.seeds)
        fb = mean_sd(t.get("fastbert"), 1.0, "{:.0f}")
        if distill is not None:
            fb += f" (distillation {distill:.0f})"
        ratio = (NONE if not t.get("geep") or not t.get("fastbert") or not t["fastbert"]["mean"] > 0
                 else f"{t['geep']['mean'] / t['fastbert']['mean']:.2f}")  # a tiny run can round to 0 s
        rows.append([s.name, ", ".join(map(str, s.summary["seeds"]))]
                    + [mean_sd(t.get(m), 1.0, "{:.0f}") for m in TRAINED[:3]] + [fb, ratio])
    return rows


TRAINING_HEAD = ["set", "seeds", "full s", "GEEP s", "PABEE s", "FastBERT s (full + distillation)",
                 "GEEP / FastBERT"]


# -- issue 27: the consistency guarantee -----------------------------------------------------------------------

def _wall(r: dict[str, Any], summ: dict[str, Any]) -> str:
    """The knob's batch-64 wall-clock speed-up where this seed's bench timed it; '-' where it did not."""
    rec = ((summ.get("bench") or {}).get("64") or {}).get("records", {}).get(r.get("knob_name"))
    return f"{rec['wall_speedup']:.2f}x" if rec else NONE


def _cert_cell(r: dict[str, Any] | None, summ: dict[str, Any]) -> str:
    if r is None:
        return NONE
    if "error" in r:
        return f"pool too small ({r.get('rows_needed', '?')} rows needed)"
    flag = " **exceeds**" if r["violated"] else ""
    return (f"{pct(r['test_disagreement'], '')}{flag} / {pct(r['upper_bound'], '')} / {r['flops_speedup']:.2f}x / "
            f"{_wall(r, summ)}" + ("" if r["certified"] else " (none certified: depth L)"))


def _drop_cell(r: dict[str, Any] | None, eps: float, summ: dict[str, Any]) -> str:
    if r is None:
        return NONE
    flag = " **exceeds**" if r["violated_at"].get(f"{eps:g}") else ""
    return f"{pct(r['test_disagreement'], '')}{flag} / {r['flops_speedup']:.2f}x / {_wall(r, summ)}"


def consistency_rows(sets: list[Any]) -> list[list[str]]:
    rows = []
    for s in sets:
        for seed, summ in sorted(s.seeds.items()):
            recs = summ.get("consistency") or []
            drop = next((r for r in recs if r["rule"] == "max_drop"), None)
            for eps in sorted({r["eps"] for r in recs if r["rule"] == "max_disagree"}):
                by = {r["method"]: r for r in recs if r["rule"] == "max_disagree" and r["eps"] == eps}
                rows.append([s.name, str(seed), f"{100 * eps:g}%", _cert_cell(by.get("geep_probe"), summ),
                             _cert_cell(by.get("fastbert"), summ), _drop_cell(drop, eps, summ)])
    return rows


CONSISTENCY_HEAD = ["set", "seed", "EPS",
                    "GEEP probe: test disagreement % / certified bound % / FLOPs x / wall x b64",
                    "FastBERT: test disagreement % / bound % / FLOPs x / wall x b64",
                    "max-drop rule: disagreement % / FLOPs x / wall x b64"]


def violation_lines(sets: list[Any]) -> list[str]:
    summ = violation_summary(r for s in sets for seed in s.seeds.values() for r in seed.get("consistency") or [])
    if not summ:
        return ["No consistency rows measured yet."]
    return [f"{m}: {v['violations']} of {v['cases']} certified cases exceed EPS on test (delta {v['delta']:g})."
            for m, v in summ.items()]


# -- one set: wall-clock, per-depth accuracy, exit prediction --------------------------------------------------

def _runs(rec: dict[str, Any] | None) -> str:
    if rec is None:
        return NONE
    return f"{rec['wall_speedup']:.2f}x ({slashed(rec['wall_speedup_runs'])})"


def noise_line(seed: int, summ: dict[str, Any]) -> str:
    bench = summ.get("bench") or {}
    parts = [f"batch {bs}: {100 * b['noise']:.1f}%" for bs, b in bench.items() if b.get("noise") is not None]
    first = next(iter(bench.values()), {})
    cpu = (summ.get("machine") or {}).get("cpu")
    return (f"Seed {seed}{f' ({cpu})' if cpu else ''}: {first.get('runs', '?')} bench runs x "
            f"{first.get('repeats', '?')} interleaved repeats; "
            f"noise (the identical contender's largest distance from 1.00x in any run) {'; '.join(parts) or NONE}; "
            "a difference is called ahead only outside the noise and both points' run-to-run spread.")


def wall_rows(seed: int, summ: dict[str, Any], num_layers: int) -> list[list[str]]:
    """Every benched operating point of the headline and the baselines, with each bench run's speed-up."""
    bench = summ.get("bench") or {}
    recs = {bs: b["records"] for bs, b in bench.items()}
    rows = []
    for m in (*BASELINES, "static"):
        for p in summ["points"].get(m) or []:
            if p is None:
                continue
            rows.append([str(seed), f"{LABELS[m]} @{p['target']:g}x", f"`{p['knob']}`", pct(p["accuracy"], ""),
                         f"{p['flops_speedup']:.2f}x"] + [_runs(r.get(p["knob"])) for r in recs.values()])
    for knob, what in ((f"static:{num_layers}", "noise: identical contender"),
                       (ALL_DEPTH_L, "GEEP, every row at depth L")):
        first = next(iter(recs.values()), {}).get(knob)
        if first is not None:
            rows.append([str(seed), what, f"`{knob}`", pct(first["accuracy"], ""), f"{first['flops_speedup']:.2f}x"]
                        + [_runs(r.get(knob)) for r in recs.values()])
    return rows


def equal_accuracy_rows(summary: dict[str, Any]) -> list[list[str]]:
    rows = []
    for seed, pairs in summary["wall_clock"].items():
        for p in pairs:
            if p["geep"] is None:
                rows.append([seed, f"{p['target']:g}x", f"`{p['fastbert']}`", NONE, "no GEEP point as accurate "
                             "on tuning rows", NONE, "unmatched"])
                continue
            rows.append([seed, f"{p['target']:g}x", f"`{p['fastbert']}` {p['fastbert_wall']:.2f}x "
                         f"({slashed(p['fastbert_runs'])})",
                         f"`{p['geep']}` {p['geep_wall']:.2f}x ({slashed(p['geep_runs'])})",
                         f"{pct(p['geep_test_accuracy'], '')} vs {pct(p['fastbert_test_accuracy'], '')}",
                         f"{p['spread']:.2f}", p["verdict"]])
    return rows


EQUAL_ACCURACY_HEAD = ["seed", "target", "FastBERT point, b64 wall (runs)", "GEEP point, b64 wall (runs)",
                       "test accuracy % GEEP vs FastBERT", "spread", "verdict"]


DISPATCHES = (("geep_entropy", "entropy exit"), (HEADLINE, "probe"))
"""The two dispatches over GEEP's own students that issue 23 asks to choose between per device."""


def dispatch_pairs(seed_file: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Both directions of ``aggregate.mixed_wall_pairs`` between the entropy exit and the probe on one seed's
    batch-64 bench: (the contender's name, record) per reference point."""
    (a, name_a), (b, name_b) = DISPATCHES
    return [(name_a, r) for r in mixed_wall_pairs(seed_file, contender=a, reference=b)] + [
        (name_b, r) for r in mixed_wall_pairs(seed_file, contender=b, reference=a)]


def dispatch_winner(sets: list[Any], out_of_range_loses: bool = False) -> tuple[dict[str, int], dict[str, str]]:
    """Per set: the dispatch faster at equal accuracy in more comparisons (both directions, every seed), or
    ``level``; returns (wins per dispatch and level, the verdict per set). ``out_of_range_loses`` counts an
    ``out of range`` pair as the contender's loss (the reading before that verdict existed)."""
    lost = ("behind", "out of range") if out_of_range_loses else ("behind",)
    per_set = {}
    for s in sets:
        wins = {name: 0 for _, name in DISPATCHES}
        for x in s.seeds.values():
            for contender, r in dispatch_pairs(x):
                other = next(n for _, n in DISPATCHES if n != contender)
                if r["verdict"] == "ahead" or r["verdict"] in lost:
                    wins[contender if r["verdict"] == "ahead" else other] += 1
        (n1, w1), (n2, w2) = wins.items()
        per_set[s.name] = n1 if w1 > w2 else n2 if w2 > w1 else "level"
    tally = {name: sum(v == name for v in per_set.values()) for _, name in DISPATCHES}
    tally["level"] = sum(v == "level" for v in per_set.values())
    return tally, per_set


def _winner(tally: dict[str, int]) -> str | None:
    """The dispatch (display name) that wins more sets in ``dispatch_winner``'s tally; None on a tie."""
    (_, a), (_, b) = DISPATCHES
    return a if tally[a] > tally[b] else b if tally[b] > tally[a] else None


def dispatch_text(sets: list[Any]) -> str:
    """The per-set winners of ``dispatch_winner`` and the tally, in one sentence."""
    tally, per_set = dispatch_winner(sets)
    (_, a), (_, b) = DISPATCHES
    verdicts = ", ".join(f"{name}: {v}" for name, v in per_set.items())
    winner, shipped = _winner(tally), DEFAULT_PREDICTOR["cpu"]
    return (f"A set goes to the dispatch faster in more of its comparisons (verdicts outside the spread): {verdicts}. "
            f"Sets: {a} {tally[a]}, {b} {tally[b]}, level {tally['level']}. "
            + (f"On this CPU the {winner} is the faster dispatch on more sets" if winner else
               "On this CPU neither dispatch is faster on more sets (the probe, the design's dispatch, stays)")
            + f"; the product's CPU default (`geep_deploy.names.DEFAULT_PREDICTOR`) is `{shipped}`"
            + ("." if shipped == _product_kind(winner) else ", which is NOT the measured winner.")
            + f" Counting *out of range* pairs as the contender's losses instead (that verdict was added after "
            f"ChnSentiCorp had been benched), the winner would be: {_winner(dispatch_winner(sets, True)[0]) or 'neither'}.")


def _product_kind(winner: str | None) -> str:
    """The predictor kind a winner ships as; the probe (the design's dispatch) on a tie."""
    return ENTROPY if winner == DISPATCHES[0][1] else PROBE


def measured_cpu_default(sets: list[Any]) -> str:
    """The predictor kind the CPU measurement picks (``dispatch_winner`` over ``sets``): the entropy exit only when
    it wins more sets than the probe; the probe (the design's dispatch) when it wins or neither does."""
    return _product_kind(_winner(dispatch_winner(sets)[0]))


def dispatch_rows(sets: list[Any]) -> list[list[str]]:
    rows = []
    for s in sets:
        for seed, x in sorted(s.seeds.items()):
            for contender, r in dispatch_pairs(x):
                mix = NONE if r["contender_wall"] is None else f"{r['contender_wall']:.2f}x"
                rows.append([s.name, str(seed), contender, f"`{r['reference']}`", pct(r["tuning_accuracy"], ""),
                             f"{r['reference_wall']:.2f}x", mix,
                             f"{r['spread']:.2f}" if "spread" in r else NONE,
                             "unmatched" if r["verdict"] == "-" else r["verdict"]])
    return rows


DISPATCH_HEAD = ["set", "seed", "contender", "other dispatch's point", "its tuning accuracy %", "its b64 wall",
                 "contender's fastest mix at that accuracy", "spread", "contender"]


def all_depth_l_text(summary: dict[str, Any]) -> str:
    checks = {s: c for s, c in summary["all_depth_l_check"].items() if c is not None}
    if not checks:
        return f"`{ALL_DEPTH_L}` against `full`: not benched."
    return f"`{ALL_DEPTH_L}` (GEEP's dispatch with every row at depth L) against `full` at batch 64: " + "; ".join(
        f"seed {s}: {c['wall_speedup']:.2f}x (runs {slashed(c['runs'])}), noise "
        f"{100 * c['noise']:.1f}%, {'within' if c['within_noise'] else 'OUTSIDE'} noise{_settings_note(c)}"
        for s, c in checks.items()) + "." + _set_check_text(summary)


def _set_check_text(summary: dict[str, Any]) -> str:
    """The per-set rule over every run of the set's seeds, after the seeds one by one."""
    pooled = summary.get("all_depth_l_set_check")
    if not pooled:
        return ""
    return (f" By the per-set rule (every run of the {pooled['seeds']} seeds, noise `{pooled['noise_contender']}`): "
            + set_phrase(pooled, pooled["seeds_within"], pooled["seeds"]) + ".")


def all_depth_l_sets_text(sets: list[SetResults]) -> str:
    """The suite's own all-depth-L check across sets, as ``within the noise on 6 of 6 sets by the per-set rule (11
    of 18 seeds one by one); over the 18 seeds its speed-up is ...``, with the mean over every seed and its interval
    (the figure with power); "" until every set has its per-set check."""
    pooled = [s.summary.get("all_depth_l_set_check") for s in sets]
    if not sets or any(c is None for c in pooled):
        return ""
    speedups = [c["wall_speedup"] for s in sets for c in s.summary["all_depth_l_check"].values() if c is not None]
    mean, lo, hi = mean_interval(speedups)
    return (f"within the noise on {sum(c['within_noise'] for c in pooled)} of {len(sets)} sets by the per-set "  # type: ignore[index]
            f"rule ({sum(c['seeds_within'] for c in pooled)} of {len(speedups)} seeds one by one); over the "  # type: ignore[index]
            f"{len(speedups)} seeds its speed-up is {mean:.3f}x (95% interval over seeds [{lo:.3f}, {hi:.3f}])")


def stale_timing(check: dict[str, Any]) -> str | None:
    """Why an all-depth-L check was timed under older runtime settings than today's, or None when it was not."""
    settings = check.get("engine_settings")
    if not settings:
        return "timed before SkipLayerNormFusion was turned off"
    if settings.get("dispatch_revision") != DISPATCH_REVISION:
        return f"timed before dispatch revision {DISPATCH_REVISION}, which copies no state it does not need"
    return None


def _settings_note(check: dict[str, Any]) -> str:
    why = stale_timing(check)
    return f" ({why})" if why else ""


def per_depth_rows(seeds: dict[int, dict[str, Any]]) -> list[list[str]]:
    """Per-depth accuracy of every exit classifier, mean over seeds."""
    first = next(iter(seeds.values()))
    rows = [[m] + [pct(mean([s["per_depth_accuracy"][m][k] for s in seeds.values()]), "") for k in range(len(accs))]
            for m, accs in first["per_depth_accuracy"].items()]
    shared = first.get("per_depth_shared_path")
    if shared:
        rows.insert(1, ["geep, shared exit path (+1 layer)"]
                    + [pct(mean([s["per_depth_shared_path"][k] for s in seeds.values()]), "") for k in range(len(shared))]
                    + [NONE])
    return rows


AUC_KEYS = (("probe", "layer-1 probe"), ("depth1_entropy", "depth 1's entropy"),
            ("predictor_expected_depth", "token table's expected depth"), ("length", "row length"))


def auc_text(seeds: dict[int, dict[str, Any]]) -> str:
    """ROC AUC for the rows that need more than depth 1, mean over seeds."""
    aucs = [s["hard_row_auc"] for s in seeds.values() if s.get("hard_row_auc")]
    if not aucs:
        return ""
    parts = []
    for k, label in AUC_KEYS:
        vals = [a[k] for a in aucs if a.get(k) is not None]
        if vals:
            parts.append(f"{label} {mean(vals):.2f}")
    if not parts:
        return ""
    share = mean([a["hard_share"] for a in aucs])
    return (f"Finding the {100 * share:.0f}% of test rows that need more than depth 1 (ROC AUC, mean over "
            f"{len(aucs)} seed(s); 0.5 is chance): {', '.join(parts)}.")
