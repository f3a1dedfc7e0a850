"""The exit rules' knob grids as fixed-order families for ``export.consistency`` (``calibrate --max-disagree``).

Each family lists its knobs in an order fixed by the knob values alone, safest first, so the order never depends
on the rows being tested:

- the token table (``quantile``, ``margin``): one chain per margin, quantile from 1.0 (every row at depth L) down;
- the layer-1 probe (``risk``, ``escalate``): one chain per escalation threshold, risk from 0 (depth L) up;
- FastBERT's entropy exit (``tau``): one chain, threshold from 0 (depth L) up.

For every knob and row it gives the depth whose exit answers and the FLOPs speed-up of the knob, priced as the
curves of ``export.calibration`` / ``export.probe_fit`` / ``geep_deploy.suite.points`` price it. Pure NumPy.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from export.consistency import Guarantee, certify_fastest
from geep_deploy.config import BertShape
from geep_deploy.exits import entropy_exit_depths, predictions_at
from geep_deploy.flops import flops_speedup
from geep_deploy.names import STUDENT
from runtime.predictor import depths_from_mass
from runtime.probe import depths_at_risk, escalation_mask, probe_cost


@dataclass(frozen=True)
class KnobFamily:
    """Knobs in test order: their descriptions, the depth answering each row, chain ids and FLOPs speed-ups."""

    knobs: list[dict[str, Any]]
    answers: np.ndarray  # (K, N) int64: depth whose exit answers row i under knob j
    chain: list[Hashable]
    speedup: np.ndarray  # (K,)

    def disagreements(self, exits: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """(K, N) bool: the answer under each knob differs from ``reference`` (depth L's predicted class)."""
        return np.stack([predictions_at(exits, a) != reference for a in self.answers])

    def certify(self, exits: np.ndarray, reference: np.ndarray, eps: float, delta: float,
                what: str = "calibration rows") -> Guarantee:
        """The fastest knob certified to disagree with ``reference`` on at most ``eps`` of rows (1 - delta)."""
        return certify_fastest(self.disagreements(exits, reference), self.speedup, eps, delta, self.chain,
                               self.knobs, what)


def depth_l_answer(logits: np.ndarray) -> np.ndarray:
    """(N,) depth L's predicted class from (N, L, C) logits: the reference every knob is compared with."""
    return np.asarray(logits)[:, -1].argmax(axis=-1)


def table_family(mass: np.ndarray, lengths: np.ndarray, shape: BertShape, num_labels: int,
                 quantiles: Sequence[float], margins: Sequence[int]) -> KnobFamily:
    """The token table's (quantile, margin) grid: one chain per margin, quantile descending."""
    L = shape.num_hidden_layers
    knobs, answers, chain, speed = [], [], [], []
    for m in sorted(set(int(x) for x in margins)):
        for q in sorted(set(float(x) for x in quantiles), reverse=True):
            d = np.asarray(depths_from_mass(mass, q, m, L), dtype=np.int64)
            knobs.append({"quantile": q, "margin": m})
            answers.append(d)
            chain.append(("margin", m))
            speed.append(flops_speedup(shape, num_labels, lengths, d, 1))
    return KnobFamily(knobs, np.stack(answers), chain, np.asarray(speed))


def probe_family(probabilities: np.ndarray, exits: np.ndarray, lengths: np.ndarray, shape: BertShape,
                 risks: Sequence[float], escalations: Sequence[float | None] = (None,),
                 exit_mode: str = STUDENT) -> KnobFamily:
    """The probe's (risk, escalate) grid: one chain per escalation threshold, risk ascending (0: depth L).

    ``exits`` are the (N, L, C) logits the dispatch answers from (the shared exit path's for ``exit_mode="skip"``);
    the escalation rule reads the entropy of the exit a row stops at, as the runtime does.
    """
    L = exits.shape[1]
    rows = np.arange(len(exits))
    knobs, answers, chain, speed = [], [], [], []
    for esc in escalations:
        for r in sorted(set(float(x) for x in risks)):
            d = depths_at_risk(probabilities, r, L)
            flagged = escalation_mask(exits[rows, d - 1], d, esc, L)
            layers, heads = probe_cost(d, flagged, L, exit_mode)
            knobs.append({"risk": r, "escalate": esc})
            answers.append(np.where(flagged, L, d))
            chain.append(("escalate", esc))
            speed.append(flops_speedup(shape, exits.shape[2], lengths, layers, heads))
    return KnobFamily(knobs, np.stack(answers), chain, np.asarray(speed))


def entropy_family(logits: np.ndarray, lengths: np.ndarray, shape: BertShape,
                   taus: Sequence[float]) -> KnobFamily:
    """FastBERT's normalised-entropy threshold, ascending (0: depth L); every passed layer's head is priced."""
    knobs, answers, speed = [], [], []
    for t in sorted(set(float(x) for x in taus)):
        d = entropy_exit_depths(logits, t)
        knobs.append({"tau": t})
        answers.append(d)
        speed.append(flops_speedup(shape, logits.shape[2], lengths, d, d))
    return KnobFamily(knobs, np.stack(answers), ["tau"] * len(knobs), np.asarray(speed))
