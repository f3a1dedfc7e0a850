"""The consistency guarantee's statistics (export/consistency.py) and knob families (export/guarantee.py)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from export.consistency import (
    TooFewRows,
    binomial_cdf,
    binomial_p_value,
    certify,
    certify_fastest,
    clopper_pearson_upper,
    fixed_sequence,
    min_rows,
)
from export.guarantee import depth_l_answer, entropy_family, probe_family, table_family
from geep_deploy.config import BertShape
from geep_deploy.errors import ConfigError


def _exact_cdf(k: int, n: int, p: Fraction) -> float:
    return float(sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1)))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 60), k=st.integers(0, 60), p=st.fractions(0, 1, max_denominator=50))
def test_binomial_cdf_matches_exact_sum(n: int, k: int, p: Fraction) -> None:
    k = min(k, n)
    assert binomial_cdf(k, n, float(p)) == pytest.approx(_exact_cdf(k, n, p), rel=1e-9, abs=1e-300)


def test_binomial_cdf_large_n_is_finite_and_monotone() -> None:
    vals = [binomial_cdf(40, 5000, p) for p in (0.002, 0.005, 0.008, 0.01, 0.02)]
    assert all(0.0 <= v <= 1.0 for v in vals) and vals == sorted(vals, reverse=True)
    assert binomial_cdf(40, 5000, 0.02) < 1e-10 and binomial_cdf(40, 5000, 0.002) > 0.999


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 400), k=st.integers(0, 400), level=st.floats(0.01, 0.5), eps=st.floats(0.005, 0.5))
def test_clopper_pearson_bound_is_the_test_inverted(n: int, k: int, level: float, eps: float) -> None:
    k = min(k, n)
    u = clopper_pearson_upper(k, n, level)
    assert k / n <= u <= 1.0
    # certified at eps (p-value <= level) exactly when the bound is at most eps (up to the bisection's rounding)
    if abs(u - eps) > 1e-9:
        assert (binomial_p_value(k, n, eps) <= level) == (u <= eps)


@settings(max_examples=60, deadline=None)
@given(eps=st.floats(0.001, 0.5), level=st.floats(0.001, 0.5))
def test_min_rows_is_the_smallest_n_that_certifies_with_no_disagreement(eps: float, level: float) -> None:
    n = min_rows(eps, level)
    assert (1 - eps) ** n <= level and (n == 1 or (1 - eps) ** (n - 1) > level)
    assert binomial_p_value(0, n, eps) <= level


@given(st.lists(st.floats(0, 1), max_size=20), st.floats(0.01, 0.5))
def test_fixed_sequence_stops_at_the_first_failure(p: list[float], level: float) -> None:
    r = fixed_sequence(p, level)
    assert all(x <= level for x in p[:r]) and (r == len(p) or p[r] > level)


def test_known_minimums_and_too_few_rows_says_how_many() -> None:
    assert min_rows(0.01, 0.1) == 230 and min_rows(0.05, 0.1) == 45 and min_rows(0.02, 0.05) == 149
    with pytest.raises(TooFewRows, match="at least 230 rows") as e:
        certify(np.zeros((3, 229), dtype=bool), 0.01, 0.1)
    assert e.value.needed == 230 and isinstance(e.value, ConfigError)
    # Bonferroni over two chains: each is tested at 0.05, which needs more rows
    with pytest.raises(TooFewRows, match="at least 299 rows") as e:
        certify(np.zeros((2, 250), dtype=bool), 0.01, 0.1, chain=["a", "b"])
    assert certify(np.zeros((3, 230), dtype=bool), 0.01, 0.1).certified.all()
    for bad in ((0.0, 0.1), (0.01, 1.0), (1.5, 0.1)):
        with pytest.raises(ConfigError):
            certify(np.zeros((1, 500), dtype=bool), *bad)


def test_nothing_certified_means_depth_l_with_a_message() -> None:
    rng = np.random.default_rng(0)
    d = rng.random((4, 1000)) < np.array([0.2, 0.0, 0.0, 0.0])[:, None]  # the first (safest) knob already fails
    g = certify_fastest(d, [1.5, 2.0, 3.0, 4.0], 0.05, 0.1)
    assert g.index is None and g.upper_bound is None and "serve depth L" in g.message
    assert g.to_dict()["knob"] is None and g.to_dict()["calibration_rows"] == 1000


def test_fastest_certified_knob_in_each_chain() -> None:
    n = 2000
    rng = np.random.default_rng(1)
    u = rng.random(n)
    rates = np.array([0.0, 0.005, 0.01, 0.08, 0.0, 0.004, 0.006])
    d = u[None, :] < rates[:, None]
    speed = [1.0, 1.5, 2.0, 3.0, 1.0, 1.2, 2.5]
    g = certify_fastest(d, speed, 0.03, 0.1, chain=[0, 0, 0, 0, 1, 1, 1],
                        knobs=[{"i": i} for i in range(7)])
    # chain 0 stops at the 8% knob; chain 1 certifies everything; 2.5x (chain 1's last) is the fastest certified
    assert g.index == 6 and g.knob == {"i": 6} and g.certified == 6 and g.chains == 2 and g.level == 0.05
    assert g.disagreement <= g.upper_bound <= 0.03 and g.speedup == 2.5
    # a failure stops its chain even when a later knob would pass
    d2 = d.copy()
    d2[1] = u < 0.2
    assert not certify(d2, 0.03, 0.1, chain=[0] * 7).certified[2:].any()


@pytest.mark.parametrize("eps", [0.02, 0.05])
def test_coverage_on_a_known_disagreement_curve(eps: float) -> None:
    """Many calibration draws from a known curve: the chosen knob's true disagreement exceeds eps in at most about
    delta of them. The curve crosses eps in small steps just above it, the hardest case for the procedure."""
    delta, n, draws = 0.1, 300, 1500
    rates = np.concatenate([[0.0], np.linspace(0.2 * eps, eps, 6), eps * np.array([1.05, 1.1, 1.2, 1.5, 2, 3])])
    speed = np.arange(1, len(rates) + 1, dtype=float)
    rng = np.random.default_rng(2)
    violated = chosen_above = 0
    for _ in range(draws):
        u = rng.random(n)  # nested: a row that disagrees at a safe knob disagrees at every faster one
        g = certify_fastest(u[None, :] < rates[:, None], speed, eps, delta)
        assert g.index is not None  # the depth-L knob (rate 0) always certifies with n >= min_rows
        violated += rates[g.index] > eps
        chosen_above += g.index > 6
    rate = violated / draws
    assert rate <= delta + 3 * math.sqrt(delta * (1 - delta) / draws), rate
    assert chosen_above == violated  # sanity: violations are exactly picks past the boundary


def _shape(L: int = 4) -> BertShape:
    return BertShape(vocab_size=100, hidden_size=32, num_hidden_layers=L, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)


def test_families_start_at_depth_l_and_price_like_the_curves() -> None:
    rng = np.random.default_rng(3)
    n, L, C = 300, 4, 3
    logits = rng.normal(size=(n, L, C)) * np.array([0.3, 1.0, 2.0, 3.0])[None, :, None]
    lengths = rng.integers(4, 30, n)
    ref = depth_l_answer(logits)
    shape = _shape(L)
    mass = rng.random((n, L))
    tab = table_family(mass, lengths, shape, C, (0.5, 1.0, 0.8), (0, 1))
    assert [k["quantile"] for k in tab.knobs[:3]] == [1.0, 0.8, 0.5] and tab.chain[0] != tab.chain[3]
    assert (tab.answers[0] == L).all() and tab.speedup[0] == pytest.approx(1.0)
    probs = rng.random((n, L - 1))
    pro = probe_family(probs, logits, lengths, shape, (0.5, 0.0, 0.3), (None, 0.5))
    assert pro.knobs[0] == {"risk": 0.0, "escalate": None} and (pro.answers[0] == L).all()
    assert not pro.disagreements(logits, ref)[0].any()
    from export.probe_fit import ProbeSweep, probe_curve

    sweep = ProbeSweep(risks=(0.0, 0.3, 0.5), escalations=(None, 0.5))
    curve = probe_curve(probs, logits, ref, lengths, shape, sweep)
    assert np.allclose(pro.speedup, [c["flops_speedup"] for c in curve])
    # against labels = depth L's answers, the curve's accuracy is 1 - disagreement
    assert np.allclose(1 - pro.disagreements(logits, ref).mean(axis=1), [c["accuracy"] for c in curve])
    ent = entropy_family(logits, lengths, shape, (0.3, 0.0, 0.9))
    assert [k["tau"] for k in ent.knobs] == [0.0, 0.3, 0.9] and (ent.answers[0] == L).all()
    g = ent.certify(logits, ref, 0.05, 0.1)
    assert g.index is not None and g.knob["tau"] in (0.0, 0.3, 0.9)
