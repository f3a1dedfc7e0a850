"""The suite's consistency table (geep_deploy/suite/consistency.py) on random logits with a known structure."""

from __future__ import annotations

import json

import numpy as np

from geep_deploy.config import BertShape
from geep_deploy.suite.consistency import ConsistencyGrid, ScoredRows, consistency_table, violation_summary

SHAPE = BertShape(vocab_size=100, hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                  max_position_embeddings=64)


def _split(rng: np.random.Generator, n: int, L: int = 4, C: int = 3):
    """Logits whose early depths agree with depth L on most rows; the probe's P(exit > k) knows which rows are hard."""
    full = rng.integers(0, C, n)
    hard = rng.random(n) < 0.3
    logits = rng.normal(size=(n, L, C))
    for k in range(L):
        agree = ~hard | (k == L - 1) | (rng.random(n) < 0.2 * k)
        logits[agree, k, full[agree]] += 4.0
    probs = np.clip(np.where(hard, 0.8, 0.1)[:, None] + rng.normal(0, 0.05, (n, L - 1)), 0.01, 0.99)
    labels = np.where(rng.random(n) < 0.9, full, (full + 1) % C)
    return logits, rng.integers(5, 40, n), probs, labels


def test_consistency_table_rows_on_random_logits() -> None:
    rng = np.random.default_rng(0)
    pool, test = _split(rng, 1500), _split(rng, 3000)
    fb_pool, fb_test = _split(rng, 1500)[0], _split(rng, 3000)[0]
    rows = consistency_table(SHAPE, ScoredRows(*pool, fastbert_logits=fb_pool),
                             ScoredRows(*test, fastbert_logits=fb_test), ConsistencyGrid(escalations=(None, 0.5)))
    json.dumps(rows, allow_nan=False)  # JSON-able as they are
    certified = [r for r in rows if r["rule"] == "max_disagree"]
    assert [(r["method"], r["eps"]) for r in certified] == [(m, e) for e in (0.01, 0.02, 0.05)
                                                            for m in ("geep_probe", "fastbert")]
    for r in certified:
        assert "error" not in r and r["pool_rows"] == 1500 and r["knob_name"]
        assert r["pool_disagreement"] <= r["upper_bound"] <= r["eps"] and isinstance(r["violated"], bool)
        assert r["flops_speedup"] >= 1.0 and 0 <= r["test_accuracy"] <= 1
    probe = {r["eps"]: r for r in certified if r["method"] == "geep_probe"}
    # the easy 70% can exit early: a looser budget is at least as fast, and 5% buys a real speed-up
    assert probe[0.05]["flops_speedup"] >= probe[0.01]["flops_speedup"] and probe[0.05]["flops_speedup"] > 1.2
    drop = [r for r in rows if r["rule"] == "max_drop"]
    assert len(drop) == 1 and set(drop[0]["violated_at"]) == {"0.01", "0.02", "0.05"}
    summary = violation_summary(rows)
    assert summary["geep_probe"]["cases"] == 3 and summary["fastbert"]["cases"] == 3


def test_too_small_a_pool_is_a_row_with_the_rows_needed() -> None:
    rng = np.random.default_rng(1)
    pool, test = _split(rng, 100), _split(rng, 200)
    grid = ConsistencyGrid(eps_list=(0.01, 0.05))
    rows = consistency_table(SHAPE, ScoredRows(*pool[:3]), ScoredRows(*test[:3]), grid)  # no labels
    by_eps = {r["eps"]: r for r in rows}
    assert by_eps[0.01]["rows_needed"] == 230 and "at least 230 rows" in by_eps[0.01]["error"]
    assert "error" not in by_eps[0.05] and len(rows) == 2  # no labels: no --max-drop row
    assert violation_summary(rows)["geep_probe"]["cases"] == 1
