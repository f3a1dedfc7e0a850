"""Fitting the layer-1 probe (``runtime.probe``) and sweeping its knobs, from per-depth logits.

Labels are the consistency exit depths of rows the model did not train on: they need no gold label, so any
unlabelled pool of held-out rows serves. Knobs (risk level, escalation threshold) are tuned on scores each row got
from a probe fitted on the *other* folds (cross-fitting), so the tuning rows' own labels never fitted the probe
that scored them; the stored probe is then refitted on the whole pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from geep_deploy.config import BertShape
from geep_deploy.errors import ConfigError
from geep_deploy.exits import predictions_at
from geep_deploy.flops import flops_speedup
from geep_deploy.names import EXIT_MODES, STUDENT, check_choice
from runtime.probe import FEATURES, ProbeModel, depths_at_risk, escalation_mask, probe_cost

RISK_GRID = tuple(round(x, 2) for x in np.linspace(0.02, 0.98, 49))
ESCALATE_GRID: tuple[float | None, ...] = (None, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)
L2 = 1e-2


def _fit_logistic(x: np.ndarray, y: np.ndarray, steps: int = 300) -> np.ndarray:
    """Weights (bias last) of an L2-regularised logistic regression on standardised ``x``, by Newton steps."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(xb.shape[1])
    reg = np.full(xb.shape[1], L2 * len(x))
    reg[-1] = 1e-6 * len(x)  # the bias is (almost) free; a tiny ridge keeps one-class targets finite
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ w, -60, 60)))
        grad = xb.T @ (p - y) + reg * w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(reg)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def fit_probe(features: np.ndarray, exit_depths: np.ndarray, num_layers: int, *, uses_table: bool = True,
              risk: float = 0.5, escalate: float | None = None, exit_mode: str = STUDENT) -> ProbeModel:
    """An ordinal probe: one logistic regression per boundary k = 1..L-1 for P(exit > k).

    Args:
        features: (N, F) from ``runtime.probe.probe_features``.
        exit_depths: (N,) exit labels in 1..L (e.g. ``geep_deploy.exits.consistency_exit_depths``).
        num_layers: L.
        uses_table: whether the table columns carry a table's statistics (recorded in the probe).
        risk, escalate: the knobs stored with it.
        exit_mode: the exits whose labels these are (``"skip"``: the shared exit path), recorded in the probe.
    """
    x = np.asarray(features, dtype=np.float64)
    d = np.asarray(exit_depths)
    if x.ndim != 2 or x.shape[1] != len(FEATURES) or d.shape != x.shape[:1]:
        raise ConfigError(f"probe | features {x.shape} and exit depths {d.shape} do not match ({len(FEATURES)} "
                          "features per row).")
    if len(d) < 20:
        raise ConfigError(f"probe | {len(d)} calibration rows are too few to fit a probe; give at least 20.")
    if d.min() < 1 or d.max() > num_layers:
        raise ConfigError(f"probe | exit depths must lie in 1..{num_layers}, got {d.min()}..{d.max()}.")
    mean, sd = x.mean(axis=0), x.std(axis=0)
    scale = np.where(sd > 1e-9, sd, 1.0)
    z = (x - mean) / scale
    weights = np.stack([_fit_logistic(z, (d > k).astype(np.float64)) for k in range(1, num_layers)])
    return ProbeModel(num_layers, mean, scale, weights, risk=risk, escalate=escalate, uses_table=uses_table,
                      exit_mode=exit_mode)


def cross_fitted_probabilities(features: np.ndarray, exit_depths: np.ndarray, num_layers: int, folds: int = 5,
                               seed: int = 0) -> np.ndarray:
    """(N, L-1) P(exit > k) for every row from a probe fitted on the other folds."""
    n = len(exit_depths)
    order = np.random.default_rng(seed).permutation(n)
    out = np.zeros((n, num_layers - 1))
    for f in range(folds):
        held = order[f::folds]
        rest = np.setdiff1d(order, held)
        out[held] = fit_probe(features[rest], exit_depths[rest], num_layers).probabilities(features[held])
    return out


def dispatch_figures(shape: BertShape, logits: np.ndarray, labels: np.ndarray, lengths: np.ndarray,
                     depths: np.ndarray, escalated: np.ndarray, exit_mode: str = STUDENT,
                     answers: bool = False) -> dict[str, Any]:
    """Accuracy, FLOPs speed-up and mean depth of the probe dispatch.

    Every row runs layer 1 and head 1; a row at depth d > 1 continues with layers 2..d and head d; an escalated
    row continues from its cached layer-1 states with layers 2..L and head L (one dense pass for all of them).
    ``logits`` are the exits the dispatch answers from: with ``exit_mode="skip"`` the shared exit path's
    (``geep_deploy.evaluate.exit_path_logits``), priced one layer more below depth L (``probe_cost``).
    ``answers``: also the predicted class per row (an array under ``"answers"``: not JSON).
    """
    L = logits.shape[1]
    d = np.asarray(depths, dtype=np.int64)
    esc = np.asarray(escalated, dtype=bool)
    answer = np.where(esc, L, d)
    layers, heads = probe_cost(d, esc, L, exit_mode)
    pred = predictions_at(logits, answer)
    out: dict[str, Any] = {"accuracy": float((pred == labels).mean()),
                           "flops_speedup": flops_speedup(shape, logits.shape[2], lengths, layers, heads),
                           "mean_depth": float(d.mean()), "escalated_share": float(esc.mean())}
    if answers:
        out["answers"] = pred
    return out


def probe_knob(risk: float, escalate: float | None, source: str | None = None) -> str:
    """The method string the runtime bench accepts: ``probe:0.3`` or ``probe:0.3+esc0.6``; ``@source`` names the
    bench's export it runs on (``probe:0.3@skip``) when that is not the main one."""
    return f"probe:{risk:g}" + ("" if escalate is None else f"+esc{escalate:g}") + (f"@{source}" if source else "")


@dataclass(frozen=True)
class ProbeSweep:
    """What `probe_curve` sweeps and what each point carries: the probe's knob grid, the exits the logits are and
    the report's extras, as one value, so a caller names only what differs from the default sweep.

    Args:
        risks: risk levels to try. Defaults to ``RISK_GRID``.
        escalations: escalation thresholds to try (None = off). Defaults to off only.
        exit_mode: the exits the logits are, ``"student"`` or ``"skip"`` (the shared exit path; see
            ``dispatch_figures``).
        source: the bench export each knob string names (``probe:0.3@skip``). Defaults to the main one.
        answers: also the predicted class per row of each point (an array under ``"answers"``: not JSON).

    Raises:
        ConfigError: an unknown exit mode.
    """

    risks: Sequence[float] = RISK_GRID
    escalations: Sequence[float | None] = (None,)
    exit_mode: str = STUDENT
    source: str | None = None
    answers: bool = False

    def __post_init__(self) -> None:
        check_choice("exit mode", self.exit_mode, EXIT_MODES)
        object.__setattr__(self, "risks", tuple(self.risks))
        object.__setattr__(self, "escalations", tuple(self.escalations))


def probe_curve(probabilities: np.ndarray, logits: np.ndarray, labels: np.ndarray, lengths: np.ndarray,
                shape: BertShape, sweep: ProbeSweep | None = None) -> list[dict[str, Any]]:
    """Every (risk, escalation) point of ``sweep`` (default: ``ProbeSweep()``): accuracy, FLOPs speed-up, mean
    depth, escalated share, knob.

    ``logits`` are the exits of ``sweep.exit_mode`` (see ``dispatch_figures``); ``sweep.source`` goes into the
    knob."""
    s = sweep if sweep is not None else ProbeSweep()
    L = logits.shape[1]
    out = []
    for esc in s.escalations:
        for r in s.risks:
            d = depths_at_risk(probabilities, r, L)
            exit_logits = logits[np.arange(len(d)), d - 1]
            flagged = escalation_mask(exit_logits, d, esc, L)
            out.append({"knob": probe_knob(r, esc, s.source), "risk": float(r), "escalate": esc,
                        **dispatch_figures(shape, logits, labels, lengths, d, flagged, s.exit_mode, s.answers)})
    return out
