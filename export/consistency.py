"""Certifying early-exit settings for consistency with depth L (Learn then Test, fixed-sequence testing).

The question a user asks is "on how many inputs will the early answer differ from the full model's?". For one
setting (knob) of an exit rule, each calibration row gives a 0/1 loss: its early answer differs from depth L's
answer. The rows need no gold label. For a disagreement budget ``eps`` and an error level ``delta``, this module
picks the fastest knob for which, with probability at least ``1 - delta`` over the draw of the calibration rows,
the disagreement rate on new rows from the same distribution is at most ``eps``.

Procedure (the Learn-then-Test recipe of Angelopoulos et al. 2021, as used for early exit by CATs, Schuster et
al. 2021; written here from the method's description):

1. Every knob ``j`` is a null hypothesis ``H_j: R_j > eps``, where ``R_j`` is its true disagreement rate.
2. p-value: with ``k`` disagreements in ``n`` rows, ``p_j = P(Binomial(n, eps) <= k)``. It is valid (``P(p_j <=
   a) <= a`` under ``H_j``) because the binomial lower tail only shrinks as the rate grows above ``eps``. The loss
   is 0/1, so the count is exactly binomial: the Hoeffding and Hoeffding-Bentkus bounds are upper bounds on this
   same tail and are never smaller, so they are not used (taking the smaller of two valid p-values would itself
   not be valid without paying for it).
3. Knobs come in chains whose order is fixed before the data is seen (safest first, e.g. by the knob's value).
   Each chain is tested in order at level ``delta / chains`` and stops at its first non-rejection (fixed-sequence
   testing); Bonferroni over the chains keeps the chance of certifying any knob with ``R_j > eps`` at most
   ``delta`` (family-wise). Every certified knob is then covered at once, so choosing the fastest of them, by any
   rule, keeps the guarantee.
4. The report gives the chosen knob's empirical disagreement and its one-sided Clopper-Pearson upper bound at the
   testing level: the bound is pointwise (the knob was selected), so the guaranteed figure is ``eps``; the bound
   says how much room the chosen knob left.

What the guarantee needs: the knobs' behaviour (model, exit predictor) fixed independently of the calibration
rows, and calibration rows exchangeable with the rows served later. It says nothing under distribution shift, and
nothing about accuracy against gold labels. Pure NumPy.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from geep_deploy.errors import ConfigError

METHOD = "learn-then-test: exact binomial p-values, fixed-sequence testing per chain, Bonferroni over chains"


class TooFewRows(ConfigError):
    """So few calibration rows that even zero disagreements cannot certify the budget; ``needed`` says how many."""

    def __init__(self, message: str, needed: int) -> None:
        super().__init__(message)
        self.needed = needed


def check_budget(eps: float, delta: float) -> None:
    """Refuse a disagreement budget outside (0, 1) or an error level outside (0, 1)."""
    if not (isinstance(eps, (int, float)) and 0.0 < eps < 1.0):
        raise ConfigError(f"consistency | the disagreement budget must be in (0, 1), got {eps!r} (0.02 = 2% of "
                          "rows may differ from depth L).")
    if not (isinstance(delta, (int, float)) and 0.0 < delta < 1.0):
        raise ConfigError(f"consistency | the error level delta must be in (0, 1), got {delta!r} (confidence "
                          "0.9 = delta 0.1).")


def binomial_cdf(k: int, n: int, p: float) -> float:
    """``P(Binomial(n, p) <= k)``, summed in log space (exact up to float rounding for any n)."""
    if n < 0 or not 0.0 <= p <= 1.0:
        raise ValueError(f"binomial_cdf needs n >= 0 and p in [0, 1], got n={n}, p={p}")
    if k < 0:
        return 0.0
    if k >= n or p == 0.0:
        return 1.0
    if p == 1.0:
        return 0.0
    i = np.arange(k, dtype=np.float64)
    # log pmf(i + 1) - log pmf(i) = log((n - i) / (i + 1)) + log(p / (1 - p))
    steps = np.log((n - i) / (i + 1.0)) + (math.log(p) - math.log1p(-p))
    log_pmf = np.concatenate(([n * math.log1p(-p)], n * math.log1p(-p) + np.cumsum(steps)))
    top = log_pmf.max()
    return float(min(1.0, math.exp(top) * np.exp(log_pmf - top).sum()))


def binomial_p_value(disagreements: int, rows: int, eps: float) -> float:
    """Valid p-value for ``H0: rate > eps`` from ``disagreements`` in ``rows``: ``P(Binomial(rows, eps) <= k)``."""
    return binomial_cdf(int(disagreements), int(rows), float(eps))


def clopper_pearson_upper(disagreements: int, rows: int, level: float) -> float:
    """One-sided ``1 - level`` Clopper-Pearson upper bound on a rate: the ``u`` with ``P(Bin(rows, u) <= k) =
    level`` (1.0 when every row disagrees). ``u <= eps`` exactly when the p-value at ``eps`` is ``<= level``."""
    k, n = int(disagreements), int(rows)
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"clopper_pearson_upper needs 0 <= k <= n and n >= 1, got k={k}, n={n}")
    if k == n:
        return 1.0
    lo, hi = k / n, 1.0
    for _ in range(80):  # the cdf falls as the rate grows; bisection to ~1e-24
        mid = 0.5 * (lo + hi)
        if binomial_cdf(k, n, mid) > level:
            lo = mid
        else:
            hi = mid
    return hi


def min_rows(eps: float, level: float) -> int:
    """The fewest rows that can certify ``eps`` at ``level``: the smallest n with ``(1 - eps)^n <= level``
    (zero disagreements in n rows)."""
    check_budget(eps, level)
    n = max(1, math.ceil(math.log(level) / math.log1p(-eps)))
    while (1.0 - eps) ** n > level:  # guard the float rounding of the logs
        n += 1
    while n > 1 and (1.0 - eps) ** (n - 1) <= level:
        n -= 1
    return n


def fixed_sequence(p_values: Sequence[float], level: float) -> int:
    """How many leading hypotheses fixed-sequence testing rejects: those before the first p-value above
    ``level``."""
    for i, p in enumerate(p_values):
        if p > level:
            return i
    return len(p_values)


def chain_order(chain: Sequence[Hashable]) -> list[list[int]]:
    """Knob indices of each chain, in the given order (chains in order of first appearance)."""
    out: dict[Hashable, list[int]] = {}
    for i, c in enumerate(chain):
        out.setdefault(c, []).append(i)
    return list(out.values())


@dataclass(frozen=True)
class Certification:
    """Per knob: disagreement count, p-value and whether it is certified; and the test's settings."""

    eps: float
    delta: float
    rows: int
    chains: int
    level: float  # delta / chains: the level each chain is tested at
    counts: np.ndarray  # (K,) disagreements per knob
    p_values: np.ndarray  # (K,)
    certified: np.ndarray  # (K,) bool


def certify(disagree: np.ndarray, eps: float, delta: float, chain: Sequence[Hashable] | None = None,
            what: str = "calibration rows") -> Certification:
    """Test every knob's ``H: disagreement > eps`` in its chain's fixed order (see the module docstring).

    Args:
        disagree: (K, N) bool: knob j's answer on row i differs from depth L's. Knobs of one chain are tested in
            the order they appear here (safest first); the order must not depend on these rows.
        eps: disagreement budget in (0, 1).
        delta: error level in (0, 1) (confidence ``1 - delta``).
        chain: (K,) chain id per knob. Defaults to one chain.
        what: how the rows are called in the error message.

    Raises:
        TooFewRows: N is below ``min_rows(eps, delta / chains)``, so no knob could ever be certified.
        ConfigError: a bad budget, or ``disagree`` / ``chain`` of the wrong shape.
    """
    check_budget(eps, delta)
    d = np.asarray(disagree)
    if d.ndim != 2 or d.shape[0] < 1:
        raise ConfigError(f"consistency | disagreements must be (knobs, rows) with at least one knob, got {d.shape}.")
    k, n = d.shape
    chain = [0] * k if chain is None else list(chain)
    if len(chain) != k:
        raise ConfigError(f"consistency | {len(chain)} chain ids for {k} knobs.")
    chains = chain_order(chain)
    level = delta / len(chains)
    need = min_rows(eps, level)
    if n < need:
        split = f" (delta {delta:g} split over {len(chains)} knob chains)" if len(chains) > 1 else ""
        raise TooFewRows(f"consistency | {n} {what} cannot certify disagreement <= {eps:g} at confidence "
                         f"{1 - delta:g}{split}: even with no disagreement at all that takes at least {need} rows "
                         f"((1 - {eps:g})^n <= {level:.3g}). Give at least {need} rows, or raise the budget, or "
                         "lower the confidence.", need)
    counts = d.astype(bool).sum(axis=1)
    p = np.array([binomial_p_value(c, n, eps) for c in counts])
    ok = np.zeros(k, dtype=bool)
    for idx in chains:
        ok[idx[: fixed_sequence(p[idx], level)]] = True
    return Certification(float(eps), float(delta), int(n), len(chains), level, counts, p, ok)


@dataclass(frozen=True)
class Guarantee:
    """The fastest certified knob (or none) and what is guaranteed about it; ``to_dict`` is its JSON record."""

    eps: float
    delta: float
    rows: int
    index: int | None  # the chosen knob; None: nothing certified, serve depth L
    disagreement: float | None  # its empirical disagreement on the calibration rows
    upper_bound: float | None  # its one-sided Clopper-Pearson bound at the testing level (pointwise)
    speedup: float | None
    knobs: int
    certified: int
    chains: int
    level: float
    message: str
    knob: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"max_disagree": self.eps, "confidence": 1.0 - self.delta, "delta": self.delta,
                "calibration_rows": self.rows, "certified_bound": self.upper_bound,
                "calibration_disagreement": self.disagreement, "flops_speedup": self.speedup, "knob": self.knob,
                "knobs_tested": self.knobs, "knobs_certified": self.certified, "chains": self.chains,
                "level_per_chain": self.level, "method": METHOD, "message": self.message}


def certify_fastest(disagree: np.ndarray, speedup: Sequence[float], eps: float, delta: float,
                    chain: Sequence[Hashable] | None = None, knobs: Sequence[dict[str, Any]] | None = None,
                    what: str = "calibration rows") -> Guarantee:
    """``certify``, then the fastest certified knob (ties: fewer disagreements, then the earlier knob).

    Args:
        disagree, eps, delta, chain, what: as in ``certify``.
        speedup: (K,) speed of each knob (e.g. FLOPs speed-up on the same rows); only used to choose among the
            certified knobs, which keeps the guarantee.
        knobs: (K,) JSON-able description of each knob, copied into the result.

    Returns:
        A ``Guarantee``; ``index`` is None when no knob is certified (the caller serves depth L).
    """
    cert = certify(disagree, eps, delta, chain, what)
    speed = np.asarray(speedup, dtype=np.float64)
    if speed.shape != cert.counts.shape:
        raise ConfigError(f"consistency | {speed.shape[0] if speed.ndim else 0} speed-ups for "
                          f"{cert.counts.shape[0]} knobs.")
    base = dict(eps=cert.eps, delta=cert.delta, rows=cert.rows, knobs=len(speed), certified=int(cert.certified.sum()),
                chains=cert.chains, level=cert.level)
    budget = f"disagreement <= {eps:g} at confidence {1 - delta:g} on {cert.rows} rows"
    if not cert.certified.any():
        return Guarantee(index=None, disagreement=None, upper_bound=None, speedup=None, **base,
                         message=f"no setting certifies {budget}: serve depth L (every row runs the full model). "
                                 "Raise the budget, lower the confidence or give more rows.")
    cand = np.flatnonzero(cert.certified)
    j = int(min(cand, key=lambda i: (-speed[i], cert.counts[i], i)))
    bound = clopper_pearson_upper(int(cert.counts[j]), cert.rows, cert.level)
    msg = f"certified {budget}"
    if speed[j] <= 1.0 + 1e-9:
        msg += ("; no certified setting is faster than depth L. Raise the budget, lower the confidence or give "
                "more rows.")
    return Guarantee(index=j, disagreement=float(cert.counts[j] / cert.rows), upper_bound=float(bound),
                     speedup=float(speed[j]), **base, message=msg,
                     knob=None if knobs is None else dict(knobs[j]))
