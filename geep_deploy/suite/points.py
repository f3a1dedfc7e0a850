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
           depths: np.ndarray, heads: np.ndarray | int) -> Point:
    return {"knob": knob, **exit_figures(shape, logits, labels, lengths, depths, heads)}


def static_curve(logits: np.ndarray, labels: np.ndarray, lengths: np.ndarray, shape: BertShape) -> list[Point]:
    """Every row at depth k, for k = 1..L (``static:L`` is the model's own full depth)."""
    n, L = logits.shape[:2]
    return [_point(f"static:{k}", logits, labels, lengths, shape, np.full(n, k), 1) for k in range(1, L + 1)]


def entropy_curve(logits: np.ndarray, labels: np.ndarray, lengths: np.ndarray, shape: BertShape,
                  speeds: Sequence[float] = FASTBERT_SPEEDS) -> list[Point]:
    """FastBERT's exit: the first depth whose normalised entropy is below the speed threshold."""
    out = []
    for s in speeds:
        d = entropy_exit_depths(logits, s)
        out.append(_point(f"fastbert:{s:g}", logits, labels, lengths, shape, d, d))
    return out


def patience_curve(logits: np.ndarray, labels: np.ndarray, lengths: np.ndarray, shape: BertShape,
                   patiences: Sequence[int] = PABEE_PATIENCES) -> list[Point]:
    """PABEE's exit: once the prediction stayed the same for ``patience`` consecutive layers."""
    out = []
    for p in patiences:
        if p < logits.shape[1]:
            d = patience_exit_depths(logits, p)
            out.append(_point(f"pabee:{p}", logits, labels, lengths, shape, d, d))
    return out


def geep_curve(calibration_curve: list[dict[str, Any]]) -> list[Point]:
    """The predictor's (quantile, margin) grid as curve points (from ``export.calibration.dev_curve``)."""
    return [{"knob": f"geep:{c['quantile']:g}+{c['margin']}", "accuracy": c["accuracy"],
             "flops_speedup": c["flops_speedup"], "mean_depth": c["mean_depth"]} for c in calibration_curve]


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
