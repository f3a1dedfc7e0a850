"""ExitPredictor: hand-checked depths, monotone in the quantile, margin and clamping, persistence, CuPy path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geep_deploy.errors import ConfigError, TableError
from runtime.exit_table import ExitHashTable, save_table
from runtime.keys import pad_rows
from runtime.predictor import ExitPredictor, build_predictor, depths_from_mass

L = 4
SPECIALS = (0, 101, 102)


def _rows(*tokens: list[int]) -> list[np.ndarray]:
    return [np.array([101, *t, 102], dtype=np.int64) for t in tokens]


def _predictor(weighting: str = "count") -> ExitPredictor:
    # token 7 always exits at 1, token 8 always at 4, token 9 at 2 or 3; unigrams only.
    rows = _rows([7], [7], [7, 7], [8], [8], [9], [9])
    exits = np.array([1, 1, 1, 4, 4, 2, 3])
    return build_predictor(rows, exits, L, SPECIALS, orders=(1,), weighting=weighting)


def test_depths_follow_the_token_histograms() -> None:
    p = _predictor()
    assert p.with_params(0.5, 0).predict(_rows([7], [8], [7, 7, 7, 8])).tolist() == [1, 4, 1]
    assert p.with_params(0.5, 0).predict(_rows([9])).tolist() == [2]
    # the prior (weight of one key) decides an input without keys: exits 1,1,1,4,4,2,3 -> median 2
    assert p.with_params(0.5, 0).predict(_rows([])).tolist() == [2]


def test_unseen_keys_pull_towards_the_prior() -> None:
    p = _predictor().with_params(0.8, 0)
    seen_only = p.predict(_rows([7]))[0]
    with_unseen = p.predict(_rows([7, 500, 501, 502, 503]))[0]
    assert seen_only == 1 and with_unseen == 3


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.sampled_from([7, 8, 9, 500, 101]), max_size=6), min_size=1, max_size=6),
       st.floats(0, 1), st.floats(0, 1), st.sampled_from(["log", "count", "uniform"]))
def test_monotone_in_quantile(rows: list[list[int]], q1: float, q2: float, weighting: str) -> None:
    p = _predictor(weighting)
    lo, hi = sorted((q1, q2))
    arr = _rows(*rows)
    d_lo, d_hi = p.with_params(lo, 0).predict(arr), p.with_params(hi, 0).predict(arr)
    assert (d_lo <= d_hi).all() and (d_lo >= 1).all() and (d_hi <= L).all()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.sampled_from([7, 8, 9, 500]), max_size=6), min_size=1, max_size=6),
       st.floats(0, 1), st.integers(-(L - 1), L - 1))
def test_margin_shifts_and_clamps(rows: list[list[int]], q: float, m: int) -> None:
    p = _predictor()
    arr = _rows(*rows)
    base = p.with_params(q, 0).predict(arr)
    assert p.with_params(q, m).predict(arr).tolist() == np.clip(base + m, 1, L).tolist()


def test_padded_equals_unpadded_and_ignores_padding_tokens() -> None:
    p = _predictor().with_params(0.6, 0)
    rows = _rows([7, 9], [8], [9, 9, 7])
    ids, mask = pad_rows(rows)
    ids_garbage = np.where(mask, ids, 8)  # padding positions hold a real token: the mask must hide it
    assert p.predict_padded(ids_garbage, mask).tolist() == p.predict(rows).tolist()
    assert p.predict_padded(ids.astype(np.int32), mask.astype(np.int32)).tolist() == p.predict(rows).tolist()
    assert p.predict([]).shape == (0,)


def test_depths_from_mass_edges() -> None:
    mass = np.array([[0.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    assert depths_from_mass(mass, 0.0, 0, L).tolist() == [1, 1]
    assert depths_from_mass(mass, 1.0, 0, L).tolist() == [3, 4]
    assert depths_from_mass(mass, 0.5, 0, L).tolist() == [3, 2]


def test_save_load_round_trip(tmp_path: Path) -> None:
    p = _predictor("uniform").with_params(0.7, 1)
    p.calibration = {"dev_accuracy": 0.9}
    p.save(tmp_path / "t.npz")
    q = ExitPredictor.load(tmp_path / "t.npz")
    assert (q.quantile, q.margin, q.weighting, q.special_ids, q.num_layers) == (0.7, 1, "uniform", SPECIALS, L)
    assert q.calibration == {"dev_accuracy": 0.9} and np.allclose(q.prior, p.prior)
    rows = _rows([7], [8, 9], [9], [500])
    assert q.predict(rows).tolist() == p.predict(rows).tolist()


def test_table_without_predictor_params_is_rejected(tmp_path: Path) -> None:
    save_table(ExitHashTable(8, L), tmp_path / "bare.npz")
    with pytest.raises(TableError, match="bare.npz holds a table but no valid predictor parameters"):
        ExitPredictor.load(tmp_path / "bare.npz")


def test_invalid_parameters() -> None:
    p = _predictor()
    with pytest.raises(ConfigError, match="quantile must be in"):
        p.with_params(1.5, 0)
    with pytest.raises(ConfigError, match="margin must be an integer"):
        p.with_params(0.5, L)
    with pytest.raises(ConfigError, match="prior"):
        ExitPredictor(p.table, SPECIALS, [0, 0, 0, 0])
    with pytest.raises(ConfigError, match="integer array"):
        p.predict_padded(np.zeros((2, 3), dtype=np.float32), None)


@pytest.mark.cupy
def test_cupy_in_cupy_out_equals_numpy() -> None:
    import cupy

    p = _predictor("log").with_params(0.6, 1)
    ids, mask = pad_rows(_rows([7, 9], [8], [9, 9, 7], [], [500, 7]))
    got = p.predict_padded(cupy.asarray(ids), cupy.asarray(mask))
    assert isinstance(got, cupy.ndarray)
    assert cupy.asnumpy(got).tolist() == p.predict_padded(ids, mask).tolist()


def test_batch_of_one_fast_path_equals_batched_rows() -> None:
    p = _predictor("log").with_params(0.6, 0)
    rows = _rows([7, 9], [8], [9, 9, 7], [], [500, 7])
    assert [int(p.predict([r])[0]) for r in rows] == p.predict(rows).tolist()


def test_fixed_point_mass_is_order_independent() -> None:
    # Float sums depend on the order of the terms (CuPy's reduction order is not NumPy's); integer sums do not.
    p = _predictor("log").with_params(0.6, 0)
    rng = np.random.default_rng(3)
    rows = [rng.choice([7, 8, 9, 500, 501], size=int(rng.integers(1, 40))) for _ in range(50)]
    ids, mask = pad_rows(_rows(*[r.tolist() for r in rows]))
    mass = p.exit_mass(ids, mask)
    assert mass.dtype == np.int64
    flipped = p.exit_mass(ids[:, ::-1].copy(), mask[:, ::-1].copy())  # same keys (unigrams), opposite order
    assert np.array_equal(mass, flipped)
    w = p.fixed_histograms()
    assert w.dtype == np.int64 and np.allclose(w / w[p.table.capacity].sum(), p.weighted_histograms()
                                               / p.weighted_histograms()[p.table.capacity].sum(), rtol=1e-9)


def test_fixed_point_quantile_is_exact_at_the_boundary_and_never_overflows() -> None:
    mass = np.array([[1, 1, 2, 0], [0, 0, 0, 4]], dtype=np.int64)
    assert depths_from_mass(mass, 0.5, 0, L).tolist() == [2, 4]  # cdf 2 of 4 reaches exactly half
    assert depths_from_mass(mass, 0.50001, 0, L).tolist() == [3, 4]
    assert depths_from_mass(mass, 0.0, 0, L).tolist() == [1, 1]
    big = np.array([[2**61, 2**61 - 1, 0, 0]], dtype=np.int64)  # float(total) rounds up past the total
    assert depths_from_mass(big, 1.0, 0, L).tolist() == [2]
    from runtime.predictor import fixed_point

    w = fixed_point(np.array([[4e9, 1.0], [0.0, 1e-3]]))  # "count" weighting: raw counts up to 2**32
    assert int(w.max()) * 2**20 < 2**62 and w[1, 1] > 0


def test_device_predictor_threshold_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime.loading import DEVICE_PREDICTOR_MIN_BATCH, MIN_BATCH_ENV, device_predictor_min_batch

    monkeypatch.delenv(MIN_BATCH_ENV, raising=False)
    assert device_predictor_min_batch() == DEVICE_PREDICTOR_MIN_BATCH
    monkeypatch.setenv(MIN_BATCH_ENV, "0")
    assert device_predictor_min_batch() == 0 and device_predictor_min_batch(16) == 16
    monkeypatch.setenv(MIN_BATCH_ENV, "many")
    with pytest.raises(ConfigError, match=MIN_BATCH_ENV):
        device_predictor_min_batch()


@pytest.mark.cupy
def test_device_predictor_paths_and_quantiles_agree_with_numpy_exactly() -> None:
    from runtime.loading import DevicePredictor

    rng = np.random.default_rng(5)
    rows = _rows(*[rng.choice([7, 8, 9, 500, 501, 502], size=int(rng.integers(0, 30))).tolist() for _ in range(200)])
    for weighting in ("log", "count", "uniform"):
        for q in (0.0, 0.25, 0.5, 0.6, 0.9, 1.0):
            p = _predictor(weighting).with_params(q, 0)
            want = p.predict(rows).tolist()
            assert DevicePredictor(p, min_batch=0).predict(rows).tolist() == want  # always the GPU
            assert DevicePredictor(p, min_batch=10**6).predict(rows).tolist() == want  # always the host
