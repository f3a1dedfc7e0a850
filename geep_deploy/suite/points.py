"""Accuracy / FLOPs curves of every method from per-depth logits, and the operating points picked from them.

Pure NumPy. Every curve point carries ``knob``: the method string the runtime bench accepts (``static:3``,
``fastbert:0.3``, ``pabee:2``, ``geep:0.9+1``), so the wall-clock bench runs exactly the point the table shows.
FastBERT and PABEE apply every passed layer's classifier (``heads = depth``); GEEP and static truncation one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from geep_deploy.config import BertShape
from geep_deploy.exits import (
    PATIENCE_GRID,
    SPEED_GRID,
    entropy_exit_depths,
    exit_figures,
    patience_exit_depths,
)

FASTBERT_SPEEDS, PABEE_PATIENCES = SPEED_GRID, PATIENCE_GRID
TARGET_SPEEDUPS = (1.5, 2.0, 3.0)
# A point "reaches" a target at 97% of it: static depth 4 of 6 is 1.497x, not 1.5x, once embeddings and the
# head are counted, and a 3% slack treats every method alike.
TARGET_SLACK = 0.97

Point = dict[str, Any]


def _point(knob: str, logits: np.ndarray, labels: np.ndarray, lengths: np.ndarray, shape: BertShape,
           depths: np.ndarray, heads: np.ndarray | int, answers: bool = False) -> Point:
    return {"knob": knob, **exit_figures(shape, logits, labels, lengths, depths, heads, answers=answers)}


def static_curve(logits: np.ndarray, labels: np.ndarray, lengths: np.ndarray, shape: BertShape,
                 answers: bool = False) -> list[Point]:
    """Every row at depth k, for k = 1..L (``static:L`` is the model's own full depth). ``answers``: every
    point also carries each row's predicted class (an array under ``"answers"``, see ``split_answers``)."""
    n, L = logits.shape[:2]
    return [_point(f"static:{k}", logits, labels, lengths, shape, np.full(n, k), 1, answers) for k in range(1, L + 1)]


def entropy_curve(logits: np.ndarray, labels: np.ndarray, lengths: np.ndarray, shape: BertShape,
                  speeds: Sequence[float] = FASTBERT_SPEEDS, answers: bool = False, suffix: str = "") -> list[Point]:
    """FastBERT's exit: the first depth whose normalised entropy is below the speed threshold (``suffix`` ends
    the knob, e.g. ``@geep`` for the same rule over GEEP's heads)."""
    out = []
    for s in speeds:
        d = entropy_exit_depths(logits, s)
        out.append(_point(f"fastbert:{s:g}{suffix}", logits, labels, lengths, shape, d, d, answers))
    return out


def patience_curve(logits: np.ndarray, labels: np.ndarray, lengths: np.ndarray, shape: BertShape,
                   patiences: Sequence[int] = PABEE_PATIENCES, answers: bool = False) -> list[Point]:
    """PABEE's exit: once the prediction stayed the same for ``patience`` consecutive layers."""
    out = []
    for p in patiences:
        if p < logits.shape[1]:
            d = patience_exit_depths(logits, p)
            out.append(_point(f"pabee:{p}", logits, labels, lengths, shape, d, d, answers))
    return out


def geep_curve(calibration_curve: list[dict[str, Any]]) -> list[Point]:
    """The predictor's (quantile, margin) grid as curve points (from ``export.calibration.dev_curve``)."""
    keep = ("accuracy", "flops_speedup", "mean_depth", "answers")
    return [{"knob": f"geep:{c['quantile']:g}+{c['margin']}", **{k: c[k] for k in keep if k in c}}
            for c in calibration_curve]


def split_answers(curves: dict[str, list[Point]]) -> tuple[dict[str, list[Point]], dict[str, np.ndarray]]:
    """(curves without their per-row answers, ``{knob: answers}``): the JSON part and the per-row part."""
    plain = {m: [{k: v for k, v in c.items() if k != "answers"} for c in cs] for m, cs in curves.items()}
    rows = {c["knob"]: np.asarray(c["answers"]) for cs in curves.values() for c in cs if "answers" in c}
    return plain, rows


# -- the same rule for every method: accuracy at exactly a FLOPs speed-up -------------------------------------

def tuned_frontier(tune_curve: list[Point], test_curve: list[Point]) -> list[Point]:
    """The knobs on the tuning rows' accuracy/FLOPs frontier, with their figures on the reported rows, by
    increasing reported FLOPs speed-up: the curve a method's accuracy at a speed-up is read off. The knobs are
    chosen where test rows are not seen; the reported figures are never used to choose them."""
    by_knob = {c["knob"]: c for c in test_curve}
    chosen = [by_knob[c["knob"]] for c in frontier(tune_curve) if c["knob"] in by_knob]
    return sorted(chosen, key=lambda c: (c["flops_speedup"], c["knob"]))


def interpolate_at(curve: list[Point], target: float) -> dict[str, Any] | None:
    """Accuracy at exactly ``target`` FLOPs speed-up, linear between the two points of ``curve`` (sorted by
    speed-up, as ``tuned_frontier`` gives it) that bracket it. Below the curve's slowest point that point answers
    (it is at least as fast as asked); above its fastest, None.

    Returns ``{"accuracy", "low", "high", "weight"}``: the knobs either side and the weight of ``low``.

    Example:
        >>> interpolate_at([{"knob": "a", "accuracy": 0.9, "flops_speedup": 1.0},
        ...                 {"knob": "b", "accuracy": 0.7, "flops_speedup": 3.0}], 2.0)["accuracy"]
        0.8
    """
    if not curve:
        return None
    for c in curve:
        if abs(c["flops_speedup"] - target) < 1e-9:
            return {"accuracy": c["accuracy"], "low": c["knob"], "high": c["knob"], "weight": 1.0}
    if target < curve[0]["flops_speedup"]:
        c = curve[0]
        return {"accuracy": c["accuracy"], "low": c["knob"], "high": c["knob"], "weight": 1.0}
    for lo, hi in zip(curve, curve[1:]):
        if lo["flops_speedup"] < target < hi["flops_speedup"]:
            w = (hi["flops_speedup"] - target) / (hi["flops_speedup"] - lo["flops_speedup"])
            return {"accuracy": round(w * lo["accuracy"] + (1 - w) * hi["accuracy"], 12), "low": lo["knob"],
                    "high": hi["knob"], "weight": w}
    return None


def fastest_mix_at(points: Sequence[tuple[float, float]], accuracy: float) -> float | None:
    """The fastest wall-clock speed-up a method reaches at ``accuracy`` or above from its benched
    ``(accuracy, speed-up)`` points, sending a share of the rows to each of two points (or all to one): the mix's
    accuracy and time per row are the shares' weighted means, so speed-ups mix harmonically. None when no point is
    that accurate.

    Example:
        >>> fastest_mix_at([(0.9, 1.0), (0.8, 3.0)], 0.85)  # half the rows at each: time (1 + 1/3) / 2
        1.5
    """
    best = None
    for a_hi, s_hi in points:
        if a_hi < accuracy:
            continue
        best = max(best or s_hi, s_hi)
        for a_lo, s_lo in points:
            if a_lo < accuracy < a_hi:
                w = (accuracy - a_lo) / (a_hi - a_lo)  # share at the accurate point
                best = max(best, 1.0 / (w / s_hi + (1 - w) / s_lo))
    return None if best is None else round(best, 12)


def area_under(curve: list[Point], lo: float = 1.0, hi: float = 3.0, steps: int = 201) -> float | None:
    """Mean accuracy over FLOPs speed-ups ``lo``..``hi`` (area under the interpolated curve over its width);
    None when the curve does not span the range."""
    xs = np.linspace(lo, hi, steps)
    ys = [interpolate_at(curve, float(x)) for x in xs]
    if any(y is None for y in ys):
        return None
    acc = np.array([y["accuracy"] for y in ys])
    return float(((acc[1:] + acc[:-1]) / 2).mean())


def interpolated_correct(at: dict[str, Any], answers: dict[str, np.ndarray], labels: np.ndarray) -> np.ndarray:
    """Per-row correctness of an ``interpolate_at`` point: the weighted mix of its two knobs' rows (its mean is
    the interpolated accuracy), for paired bootstraps over rows."""
    low = (answers[at["low"]] == labels).astype(np.float64)
    high = (answers[at["high"]] == labels).astype(np.float64)
    return at["weight"] * low + (1 - at["weight"]) * high


def seed_row_bootstrap(diffs: Sequence[np.ndarray], resamples: int = 2000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float, float]:
    """Mean of per-row differences over training seeds, with a bootstrap interval that resamples seeds and,
    within them, the same test rows for every seed (paired: both methods answer the same rows).

    ``diffs``: one (n,) array per seed, over the same n rows. Returns (mean, low, high).
    """
    d = np.stack([np.asarray(x, dtype=np.float64) for x in diffs])
    if d.ndim != 2 or d.size == 0:
        raise ValueError(f"seed_row_bootstrap needs equal, non-empty 1-D arrays, got shape {d.shape}.")
    rng = np.random.default_rng(seed)
    s, n = d.shape
    means = np.empty(resamples)
    for b in range(resamples):
        seeds, rows = rng.integers(0, s, size=s), rng.integers(0, n, size=n)
        means[b] = d[seeds][:, rows].mean()
    tail = (1 - level) / 2
    return float(d.mean()), float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def pick(curve: list[Point], target: float) -> Point | None:
    """The most accurate point reaching ``target`` (within ``TARGET_SLACK``; the faster on ties), else None."""
    ok = [c for c in curve if c["flops_speedup"] >= target * TARGET_SLACK]
    if not ok:
        return None
    return max(ok, key=lambda c: (c["accuracy"], c["flops_speedup"]))


def operating_points(curve: list[Point], targets: Sequence[float] = TARGET_SPEEDUPS) -> list[Point | None]:
    """One point per target speed-up (see ``pick``), tagged with the target."""
    out: list[Point | None] = []
    for t in targets:
        p = pick(curve, t)
        out.append(None if p is None else {**p, "target": t})
    return out


def transfer(picked: list[Point | None], curve: list[Point]) -> list[Point | None]:
    """The points of ``curve`` with the knobs of ``picked`` (chosen on held-out rows), each keeping its target and
    the held-out figures it was chosen on (``held_out``)."""
    by_knob = {c["knob"]: c for c in curve}
    out: list[Point | None] = []
    for p in picked:
        if p is None:
            out.append(None)
            continue
        held = {k: p[k] for k in ("accuracy", "flops_speedup") if k in p}
        out.append({**by_knob[p["knob"]], "target": p["target"], "held_out": held})
    return out


def frontier(curve: list[Point]) -> list[Point]:
    """The points no other point beats in both accuracy and speed-up, by increasing speed-up (for plots)."""
    best: list[Point] = []
    for c in sorted(curve, key=lambda c: (-c["flops_speedup"], -c["accuracy"])):
        if not best or c["accuracy"] > best[-1]["accuracy"]:
            best.append(c)
    return best[::-1]


def auc(score: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve of ``score`` for the boolean ``positive`` (ties share their mean rank)."""
    score, positive = np.asarray(score, dtype=np.float64), np.asarray(positive, dtype=bool)
    n1 = int(positive.sum())
    n0 = len(positive) - n1
    if n1 == 0 or n0 == 0:
        return None
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    ranks = (upper - (counts - 1) / 2.0)[inverse]
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def noise_knob(num_layers: int) -> str:
    """The bench's identical contender: GEEP's export at depth L runs the same graph shape as `full`."""
    return f"static:{num_layers}"


def paired_difference_ci(a_correct: np.ndarray, b_correct: np.ndarray, resamples: int = 2000, seed: int = 0,
                         level: float = 0.95) -> tuple[float, float, float]:
    """Accuracy of ``a`` minus ``b`` on the same rows, with a paired bootstrap interval (resampling rows).

    Both classifiers answer the same test rows, so the rows are resampled together: the interval says how far
    the difference could move with another draw of test rows of the same size (not another training seed).

    Returns:
        (difference, low, high) as fractions.

    Example:
        >>> paired_difference_ci(np.array([1, 1, 0, 1]), np.array([1, 1, 0, 1]))
        (0.0, 0.0, 0.0)
    """
    a, b = np.asarray(a_correct, dtype=np.float64), np.asarray(b_correct, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"paired_difference_ci needs two equal, non-empty 1-D arrays, got {a.shape} and {b.shape}.")
    d = a - b
    idx = np.random.default_rng(seed).integers(0, d.size, size=(resamples, d.size))
    means = d[idx].mean(axis=1)
    tail = (1 - level) / 2
    return float(d.mean()), float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))
