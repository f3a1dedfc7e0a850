"""The consistency guarantee on held-out data (issue 27): certify on the pool, check on the test rows.

For each disagreement budget EPS, ``consistency_table`` calibrates on the pool rows, with the procedure of
``calibrate --max-disagree`` (``export.consistency``), GEEP's probe dispatch (risk, escalation) and FastBERT's
entropy threshold, then measures on the test rows what the guarantee is about: the share of rows whose answer
differs from depth L's, next to the FLOPs speed-up. Today's ``--max-drop`` rule (fastest probe setting within an
accuracy budget on the pool's gold labels) is measured the same way, without a guarantee. Every row is JSON-able.

The guarantee needs the pool scores to come from a probe that did not fit those pool rows (e.g. fitted on another
part of the pool or on training rows); cross-fitted scores approximate that. Pure NumPy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from export.calibration import choose
from export.consistency import TooFewRows
from export.guarantee import KnobFamily, depth_l_answer, entropy_family, probe_family
from export.probe_calibration import PROBE_RISKS
from export.probe_fit import ProbeSweep, probe_curve, probe_knob
from geep_deploy.config import BertShape
from geep_deploy.exits import SPEED_GRID, predictions_at

EPS_LIST = (0.01, 0.02, 0.05)
DELTA = 0.1


def _measure(family: KnobFamily, logits: np.ndarray, labels: np.ndarray | None) -> dict[str, Any]:
    """Test-row figures of a one-knob family: disagreement with depth L, FLOPs speed-up, accuracy."""
    answers = family.answers[0]
    pred = predictions_at(logits, answers)
    out = {"test_disagreement": float((pred != depth_l_answer(logits)).mean()),
           "flops_speedup": float(family.speedup[0]), "mean_depth": float(answers.mean())}
    if labels is not None:
        out["test_accuracy"] = float((pred == np.asarray(labels)).mean())
        out["full_test_accuracy"] = float((depth_l_answer(logits) == np.asarray(labels)).mean())
    return out


def _certified_row(method: str, family: KnobFamily, logits: np.ndarray, eps: float, delta: float,
                   test: Any, name: Any) -> dict[str, Any]:
    """Certify on the pool (``family``, ``logits``) and measure the chosen knob on the test rows (``test(knob)``)."""
    row: dict[str, Any] = {"method": method, "rule": "max_disagree", "eps": eps, "delta": delta,
                           "pool_rows": int(logits.shape[0])}
    try:
        g = family.certify(logits, depth_l_answer(logits), eps, delta, "pool rows")
    except TooFewRows as e:
        return {**row, "certified": False, "error": str(e), "rows_needed": e.needed}
    knob = g.knob if g.knob is not None else family.knobs[0]  # nothing certified: the safest knob (depth L)
    measured = test(knob)
    return {**row, "certified": g.index is not None, "knob": knob, "knob_name": name(knob),
            "pool_disagreement": g.disagreement, "upper_bound": g.upper_bound, "pool_flops_speedup": g.speedup,
            "knobs_tested": g.knobs, "knobs_certified": g.certified, "message": g.message, **measured,
            "violated": measured["test_disagreement"] > eps}


@dataclass(frozen=True, eq=False)
class ScoredRows:
    """One split's per-row arrays for `consistency_table`: the pool that certifies, or the test rows that check.
    One record per split, so the two splits' arrays cannot be passed crosswise.

    Args:
        logits: (N, L, C) logits of the exits GEEP's dispatch answers from (per depth). Depth L's answer is the
            reference.
        lengths: (N,) real token counts.
        probe_probs: (N, L-1) the probe's P(exit > k); the pool's from a probe that did not fit those rows.
        labels: gold labels, for the ``--max-drop`` row (pool) and accuracy (test). Optional: the guarantee needs
            none.
        fastbert_logits: (N, L, C) of the FastBERT checkpoint; its rows are left out unless both splits have them.
    """

    logits: np.ndarray
    lengths: np.ndarray
    probe_probs: np.ndarray
    labels: np.ndarray | None = None
    fastbert_logits: np.ndarray | None = None


@dataclass(frozen=True)
class ConsistencyGrid:
    """The budgets `consistency_table` certifies at and the knob grids it searches, as one value (the suite runs
    the defaults; a test names what differs).

    Args:
        eps_list: disagreement budgets. Defaults to 1%, 2%, 5%.
        delta: error level (confidence 1 - delta). Defaults to 0.1.
        risks, escalations: the probe's grid (escalation chains share delta, Bonferroni).
        taus: FastBERT's entropy thresholds (0 = depth L is always tested first).
        max_drop: the ``--max-drop`` budget in accuracy points (needs the pool's labels); None leaves its row out.
        exit_mode: ``"student"`` or ``"skip"`` (then the logits are the shared exit path's; FLOPs priced so).
    """

    eps_list: Sequence[float] = EPS_LIST
    delta: float = DELTA
    risks: Sequence[float] = PROBE_RISKS
    escalations: Sequence[float | None] = (None,)
    taus: Sequence[float] = SPEED_GRID
    max_drop: float | None = 0.5
    exit_mode: str = "student"


def consistency_table(shape: BertShape, pool: ScoredRows, test: ScoredRows,
                      grid: ConsistencyGrid | None = None) -> list[dict[str, Any]]:
    """Rows per EPS for GEEP's probe dispatch and FastBERT's entropy exit, both certified on the pool, plus the
    ``--max-drop`` rule's row; each measured on the test rows.

    Args:
        shape: the backbone (FLOPs).
        pool / test: the calibration (pool) rows and the test rows (`ScoredRows`).
        grid: the budgets and knob grids (`ConsistencyGrid`). Defaults to ``ConsistencyGrid()``.

    Returns:
        JSON-able rows: ``method`` (``geep_probe`` or ``fastbert``), ``rule`` (``max_disagree`` or ``max_drop``),
        ``eps``, ``delta``, ``knob`` / ``knob_name`` (what the runtime bench runs), ``certified``,
        ``pool_disagreement``, ``upper_bound`` (the chosen knob's Clopper-Pearson bound at the testing level; the
        guarantee itself is ``eps``), ``test_disagreement``, ``violated`` (test disagreement above ``eps``),
        ``flops_speedup`` (on test), ``test_accuracy`` when labels are given; a budget the pool is too small for
        gives ``error`` and ``rows_needed`` instead.
    """
    g = grid if grid is not None else ConsistencyGrid()
    delta, escalations, exit_mode = g.delta, g.escalations, g.exit_mode
    risks = tuple(sorted({0.0, *(float(r) for r in g.risks)}))
    taus = tuple(sorted({0.0, *(float(t) for t in g.taus)}))
    pool_probe = probe_family(pool.probe_probs, pool.logits, pool.lengths, shape, risks, escalations, exit_mode)

    def probe_test(knob: dict[str, Any]) -> dict[str, Any]:
        fam = probe_family(test.probe_probs, test.logits, test.lengths, shape, (knob["risk"],), (knob["escalate"],),
                           exit_mode)
        return _measure(fam, test.logits, test.labels)

    def probe_name(knob: dict[str, Any]) -> str:
        return probe_knob(knob["risk"], knob["escalate"])

    fb_test = test.fastbert_logits
    fastbert = pool.fastbert_logits is not None and fb_test is not None
    fb_pool = entropy_family(pool.fastbert_logits, pool.lengths, shape, taus) if fastbert else None
    rows = []
    for eps in g.eps_list:
        rows.append(_certified_row("geep_probe", pool_probe, pool.logits, eps, delta, probe_test, probe_name))
        if fb_pool is not None:
            rows.append(_certified_row(
                "fastbert", fb_pool, pool.fastbert_logits, eps, delta,
                lambda k: _measure(entropy_family(fb_test, test.lengths, shape, (k["tau"],)), fb_test, test.labels),
                lambda k: f"fastbert:{k['tau']:g}"))
    if g.max_drop is not None and pool.labels is not None:
        pool_labels = np.asarray(pool.labels)
        curve = probe_curve(pool.probe_probs, pool.logits, pool_labels, pool.lengths, shape,
                            ProbeSweep(risks, escalations, exit_mode))
        full = float((depth_l_answer(pool.logits) == pool_labels).mean())
        c = choose(curve, full, g.max_drop, None)
        knob = {"risk": c["risk"], "escalate": c["escalate"]}
        measured = probe_test(knob)
        rows.append({"method": "geep_probe", "rule": "max_drop", "max_drop_points": g.max_drop, "delta": None,
                     "pool_rows": int(pool.logits.shape[0]), "certified": False, "knob": knob,
                     "knob_name": probe_name(knob), "pool_accuracy": c["accuracy"], "pool_full_accuracy": full,
                     **measured, "violated_at": {f"{e:g}": measured["test_disagreement"] > e for e in g.eps_list}})
    return rows


def consistency_knobs(rows: Iterable[dict[str, Any]]) -> set[str]:
    """The knobs (bench names) `consistency_table` chose, so the wall-clock bench can time each of them."""
    return {r["knob_name"] for r in rows if r.get("knob_name")}


def violation_summary(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Over many (set, seed) tables: per method, certified cases and how many broke their budget on test.

    Returns ``{method: {"cases", "violations", "share", "delta"}}`` for the ``max_disagree`` rows that ran (a row
    with ``error`` is not a case); the share should be at most about delta.
    """
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r.get("rule") != "max_disagree" or "error" in r:
            continue
        s = out.setdefault(r["method"], {"cases": 0, "violations": 0, "delta": r["delta"]})
        s["cases"] += 1
        s["violations"] += int(bool(r["violated"]))
    for s in out.values():
        s["share"] = s["violations"] / s["cases"] if s["cases"] else None
    return out
