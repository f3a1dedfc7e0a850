"""The docs' blocks and values from the multi-dataset suite (``bench/multi_dataset.py``): the README's headline,
the probe's figures per set in docs/exit_prediction.md, and inline values. The full page is docs/results.md
(``results_page``); both read the suite's JSON through ``suite_results`` and share ``suite_tables``."""

from __future__ import annotations

from typing import Any

from geep_deploy.reporting.all_depth_l import (
    IDENTICAL,
    identical_seeds_within,
    load_checks,
    per_set_text,
    sets_within,
    summary_text,
    within_count,
)
from geep_deploy.reporting.format import NONE, gap_text, mean_sd, table
from geep_deploy.reporting.sources import Results, generated_line
from geep_deploy.reporting.suite_results import SOURCE, SetResults, aggregated, learns, load_sets, seed_mean
from geep_deploy.reporting.suite_tables import (
    LABELS,
    TARGET,
    all_depth_l_sets_text,
    dispatch_text,
    distill_weight_text,
    losses,
    set_goals,
)
from geep_deploy.suite.protocol import HEADLINE, PLANNED_SEEDS

MD_PLANNED = (".venv/bin/python bench/multi_dataset.py --datasets all --data-root ../shared/data --seeds "
              + ",".join(map(str, PLANNED_SEEDS)))


def _md_sets(r: Results) -> tuple[list[SetResults], list[SetResults]]:
    """Every suite set (``SetResults``, measured or not) and the measured ones that learn."""
    sets = load_sets(r.root / "multi_dataset")
    return sets, [s for s in aggregated(sets) if learns(s)]


def _md_source(sets: list[SetResults]) -> str:
    """The first line of every suite block: the JSON it reads and the command that wrote it."""
    cmds = sorted({x["command"] for s in sets for x in s.seeds.values()})
    written = f"written by `{'`; `'.join(cmds)}`" if cmds else f"to be written by `{MD_PLANNED}` (no set measured yet)"
    return generated_line(f"`{SOURCE}/<set>/seed<S>.json` and `summary.json`",
                          f"{written}; summaries by `.venv/bin/python bench/multi_dataset.py --page-only`")


def _span(xs: list[float], fmt: str = "{:.2f}") -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return NONE
    lo, hi = fmt.format(min(xs)), fmt.format(max(xs))
    return lo if lo == hi else f"{lo} to {hi}"


def value_md_distill_weight(r: Results) -> str:
    """The distillation weight GEEP was trained with in the suite's seed files (the suite's setting until a seed
    is measured)."""
    weights = distill_weight_text(_md_sets(r)[0])
    if "," in weights:
        raise SystemExit(f"the suite's sets were trained with different distillation weights: {weights}")
    return weights


def value_md_auc(r: Results) -> str:
    learned = _md_sets(r)[1]
    if not learned:
        return (f"not measured yet under the fair protocol (`{SOURCE}/<set>/seed<S>.json`, "
                "`hard_row_auc`)")

    def span(key: str) -> str:
        return _span([seed_mean(s, lambda x: (x.get("hard_row_auc") or {}).get(key)) for s in learned])

    return (f"ROC AUC {span('predictor_expected_depth')} for the table, {span('length')} for length, "
            f"{span('depth1_entropy')} for depth 1's entropy and {span('probe')} for the layer-1 probe (means over "
            f"seeds per set; `{SOURCE}/<set>/seed<S>.json`, `hard_row_auc`)")


def _md_headline_row(s: SetResults) -> list[str]:
    if s.summary is None:
        return [s.name, "not measured yet"] + [NONE] * 7
    g, acc = set_goals(s.summary), s.summary["accuracy_at"]
    # a set where no classifier beats the majority class gets no verdict: its gaps are between guesses
    said = (g["vs_fastbert_verdict"], g["vs_full_verdict"]) if learns(s) else (LEFT_OUT, LEFT_OUT)
    return [s.name, ", ".join(map(str, s.summary["seeds"])), mean_sd(acc[HEADLINE].get(TARGET)),
            mean_sd(acc["fastbert"].get(TARGET)), mean_sd(s.summary["full_accuracy"]), gap_text(g["vs_fastbert"]),
            said[0], gap_text(g["vs_full"]), said[1]]


LEFT_OUT = "left out (does not learn)"


def block_multi_dataset(r: Results) -> list[str]:
    """The README's headline: the pre-registered GEEP against FastBERT and `full` at exactly 2x FLOPs."""
    sets, learned = _md_sets(r)
    flat = [s.name for s in sets if s.summary is not None and not learns(s)]
    return [_md_source(sets), "",
            "Protocol in one sentence: FastBERT as published (its teacher is `full`, then its own distillation "
            "epochs), every method on the same padding-aware runtime path, one GEEP named before any test row was "
            "scored (the layer-1 probe dispatch), every knob chosen on tuning rows, accuracy interpolated at exactly "
            "2x FLOPs on each method's frontier, and 95% intervals over training seeds and test rows "
            "([docs/results.md](docs/results.md) states it in full and has every table).", "",
            *table(["set", "seeds", "GEEP % at 2x", "FastBERT % at 2x", "full %", "GEEP - FastBERT (pts, 95% CI)",
                    "verdict", "GEEP - full (pts, 95% CI)", "verdict"], [_md_headline_row(s) for s in sets],
                   "--" + "r" * 7), "",
            *(losses(learned) if learned else ["No set has been measured under this protocol yet."]),
            *(["- Which dispatch on GEEP's own heads, batch 64, equal accuracy "
               "([docs/results.md](docs/results.md#which-dispatch-on-geeps-heads-probe-or-entropy-exit-cpu-batch-64)): "
               + dispatch_text(learned)] if learned else []),
            *_suite_all_depth_l_line(aggregated(sets)),
            *_all_depth_l_line(r, [s.name for s in sets]),
            *([f"Left out (no classifier beats the majority class by more than a point): {', '.join(flat)}."]
              if flat else [])]


def _suite_all_depth_l_line(sets: list[SetResults]) -> list[str]:
    """GEEP with every row at depth L against `full` in the suite's own bench (noise: `static:L`)."""
    said = all_depth_l_sets_text(sets)
    if not said:
        return []
    return ["- GEEP's dispatch with every row at depth L (`probe:0`) against `full`, batch 64, in the suite's own "
            "bench (the noise: GEEP's `static:L`, an identical graph on the cut path; per-set rule, "
            "[docs/results.md](docs/results.md#the-protocol)): " + said + "."]


def _all_depth_l_line(r: Results, names: list[str]) -> list[str]:
    """GEEP with every row at depth L against `full`, timed on its own (`bench/all_depth_l_overhead.py`)."""
    checks = {n: seeds for n, seeds in load_checks(r.root, names).items() if seeds}
    if not checks:
        return []
    within, total = within_count(checks)
    sets, measured = sets_within(checks)
    return ["- GEEP's dispatch with every row at depth L (`probe:0`) against `full`, batch 64, timed on its own with "
            "`full` loaded a second time for the noise (`bench/all_depth_l_overhead.py`, "
            "[docs/results.md](docs/results.md#geep-with-every-row-at-depth-l-against-full-batch-64)): by the "
            "per-set rule (the suite's rule over every run of a set's seeds) within the noise on "
            f"{sets} of {measured} sets, and on {within} of {total} seeds one by one (`full` timed again on its own "
            f"engines, identical by construction: {sets_within(checks, IDENTICAL)[0]} of {measured} sets, "
            f"{identical_seeds_within(checks)[0]} of {total} seeds); "
            + "; ".join(f"{n} {per_set_text(seeds)}" for n, seeds in checks.items()) + ". " + summary_text(checks)]


PROBE_SUITE_METHODS = ("probe", "geep", "probe_esc", "probe_skip", "geep_entropy", "fastbert")


def _probe_cost(x: dict[str, Any]) -> float | None:
    """The probe's own time over model time at batch 64, at its 2x operating point (None when not benched)."""
    p = (x["points"].get("probe") or [None] * len(x["targets"]))[x["targets"].index(2.0)]
    rec = (x.get("bench") or {}).get("64", {}).get("records", {}).get(p["knob"]) if p else None
    if not rec or rec.get("exit_s") is None or not rec.get("model_s"):
        return None
    return rec["exit_s"] / rec["model_s"]


AUC_HEAD = ["dataset", "seeds", "rows needing > depth 1", "table: expected depth", "length", "depth 1 entropy",
            "probe", "probe with the table's features"]


def _auc_row(s: SetResults) -> list[str]:
    def mean(key: str) -> str:
        v = seed_mean(s, lambda x: x["hard_row_auc"].get(key))
        return NONE if v is None else f"{v:.2f}"

    share = seed_mean(s, lambda x: x["hard_row_auc"]["hard_share"])
    return [s.name, str(len(s.seeds)), f"{100 * share:.0f}%",
            *(mean(k) for k in ("predictor_expected_depth", "length", "depth1_entropy", "probe", "probe_with_table"))]


def _at2_row(s: SetResults) -> list[str]:
    cost = seed_mean(s, _probe_cost)
    return [s.name, *(mean_sd(s.summary["accuracy_at"][m][TARGET]) for m in PROBE_SUITE_METHODS),
            NONE if cost is None else f"{100 * cost:.1f}%"]


def block_probe_suite(r: Results) -> list[str]:
    """Per measured set: how well each signal finds the rows that need more than depth 1, and GEEP's predictors
    against FastBERT at exactly 2x FLOPs (means over seeds)."""
    sets, learned = _md_sets(r)
    return [_md_source(sets), "",
            "ROC AUC on the test rows for \"needs more than depth 1\" (consistency rule), mean over seeds; the "
            "probe (depth 1's entropy, margin and top probability, and the length) is fitted on the held-out pool:",
            "", *table(AUC_HEAD, [_auc_row(s) for s in learned]), "",
            "Accuracy % at exactly 2x FLOPs (interpolated on each method's frontier chosen on the tuning rows; mean "
            "± sd over seeds), and the probe's own time over model time at batch 64 at its 2x point:", "",
            *table(["dataset", *(LABELS[m] for m in PROBE_SUITE_METHODS), "probe's own time"],
                   [_at2_row(s) for s in learned])]
