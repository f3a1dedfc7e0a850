"""The layer-1 probe as a model: fit, depths, knobs, its file, its FLOPs accounting and the bench's method strings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from export.probe_fit import dispatch_figures, fit_probe, probe_knob
from geep_deploy.bench.methods import parse_methods, probe_knobs
from geep_deploy.errors import ConfigError, TableError
from runtime.probe import FEATURES, ProbeModel, probe_cost

L = 4


def synthetic(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features whose entropy column orders the exit depth (more entropy, deeper), plus noise columns."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(FEATURES)))
    depth = np.clip(np.digitize(x[:, 0] + 0.3 * rng.normal(size=n), [-0.7, 0.0, 0.7]) + 1, 1, L)
    return x, depth


@pytest.fixture(scope="module")
def probe() -> ProbeModel:
    x, d = synthetic()
    return fit_probe(x, d, L, uses_table=False)


def test_fit_learns_the_ordering(probe: ProbeModel) -> None:
    x, d = synthetic(seed=1)
    pred = probe.depths(x)
    assert pred.min() >= 1 and pred.max() <= L and len(set(pred.tolist())) == L
    assert np.corrcoef(pred, d)[0, 1] > 0.8  # held-out rows: the entropy column drives the depth
    assert abs(probe.weights[0, 0]) > 5 * np.abs(probe.weights[0, 1:5]).max()  # noise columns get little weight


def test_depths_monotone_in_risk(probe: ProbeModel) -> None:
    x, _ = synthetic(seed=2)
    runs = [probe.depths(x, risk=r) for r in (0.0, 0.05, 0.2, 0.5, 0.8, 0.95, 1.0)]
    for deeper, shallower in zip(runs, runs[1:]):
        assert (shallower <= deeper).all()
    assert (runs[0] == L).all() and (runs[-1] == 1).all()  # risk 0: always depth L; risk 1: always depth 1


def test_escalation_flags_only_unsure_rows_below_L(probe: ProbeModel) -> None:
    sure, unsure = np.array([[6.0, -6.0]]), np.array([[0.0, 0.01]])
    logits = np.concatenate([sure, unsure, unsure])
    depths = np.array([2, 2, L])
    assert probe.escalated(logits, depths).tolist() == [False, False, False]  # off by default
    assert probe.with_knobs(escalate=0.5).escalated(logits, depths).tolist() == [False, True, False]
    assert probe.with_knobs(escalate=0.0).escalated(logits, depths).tolist() == [True, True, False]
    on = probe.with_knobs(risk=0.3, escalate=0.6)
    assert (on.risk, on.escalate) == (0.3, 0.6) and on.with_knobs(escalate=None).escalate is None
    assert on.with_knobs(risk=0.4).escalate == 0.6  # a knob left out keeps its value
    for bad in ({"risk": 1.5}, {"escalate": -0.1}):
        with pytest.raises(ConfigError):
            probe.with_knobs(**bad)


def test_json_round_trip_keeps_extras_out(probe: ProbeModel, tmp_path: Path) -> None:
    p = probe.with_knobs(risk=0.25, escalate=0.7).save(tmp_path / "p.json", extra={"calibration": {"rows": 3}})
    back = ProbeModel.load(p)
    assert (back.risk, back.escalate, back.uses_table, back.num_layers) == (0.25, 0.7, False, L)
    np.testing.assert_array_equal(back.weights, probe.weights)
    x, _ = synthetic(seed=3)
    np.testing.assert_array_equal(back.depths(x), probe.with_knobs(risk=0.25).depths(x))
    assert json.loads(p.read_text())["calibration"] == {"rows": 3}


@pytest.mark.parametrize("damage, match", [
    (lambda d: "{not json", "is not JSON"),
    (lambda d: json.dumps({**d, "format": "other"}), "not a GEEP probe file"),
    (lambda d: json.dumps({**d, "version": 99}), "format version 99"),
    (lambda d: json.dumps({**d, "features": ["entropy"]}), "features"),
    (lambda d: json.dumps({k: v for k, v in d.items() if k != "weights"}), "damaged probe file"),
    (lambda d: json.dumps([1, 2]), "not a GEEP probe file"),
])
def test_damaged_or_foreign_file_is_a_table_error(probe: ProbeModel, tmp_path: Path, damage, match) -> None:
    p = tmp_path / "p.json"
    p.write_text(damage(probe.to_dict()))
    with pytest.raises(TableError, match=match):
        ProbeModel.load(p)
    with pytest.raises(TableError, match="does not exist"):
        ProbeModel.load(tmp_path / "none.json")


def test_cost_is_the_dispatch_figures_model() -> None:
    """The runtime's per-row accounting and the calibration's FLOPs model are one definition."""
    from models import TINY_SHAPE

    from geep_deploy.flops import flops_speedup

    rng = np.random.default_rng(0)
    n, LL = 50, TINY_SHAPE.num_hidden_layers
    depths, esc = rng.integers(1, LL + 1, n), rng.random(n) < 0.3
    esc &= depths < LL
    layers, heads = probe_cost(depths, esc, LL)
    assert layers.tolist() == [d + (LL - 1) * e for d, e in zip(depths, esc)]
    assert heads.tolist() == [1 + (d > 1) + e for d, e in zip(depths, esc)]
    logits, labels, lengths = rng.normal(size=(n, LL, 2)), rng.integers(0, 2, n), rng.integers(3, 40, n)
    fig = dispatch_figures(TINY_SHAPE, logits, labels, lengths, depths, esc)
    assert fig["flops_speedup"] == flops_speedup(TINY_SHAPE, 2, lengths, layers, heads)


def test_bench_method_strings() -> None:
    for risk, esc in ((0.3, None), (0.3, 0.6), (0.05, 0.0), (1.0, 1.0)):
        knob = probe_knob(risk, esc)
        (spec,) = parse_methods(knob, 6)
        assert spec.name == knob and probe_knobs(spec.param) == (risk, esc)
    assert [s.name for s in parse_methods("probe,probe:0.50,geep", 6)] == ["probe", "probe:0.5", "geep"]
    for bad in ("probe:2", "probe:0.3+0.6", "probe:0.3+esc1.5", "probe:x", "probe:0.3+esc"):
        with pytest.raises(ConfigError, match="probe:R"):
            parse_methods(bad, 6)
