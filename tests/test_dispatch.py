"""plan_groups / restore_order / length_cuts: permutation, ordering, chunking, optimality and round-trip."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geep_deploy.errors import ConfigError
from runtime.dispatch import Group, length_cuts, parse_call_cost, plan_groups, restore_order

batches = st.integers(0, 40).flatmap(
    lambda n: st.tuples(st.lists(st.integers(1, 6), min_size=n, max_size=n),
                        st.lists(st.integers(2, 64), min_size=n, max_size=n))
)


@settings(max_examples=50, deadline=None)
@given(batches, st.one_of(st.none(), st.integers(1, 7)), st.one_of(st.none(), st.floats(0, 100)))
def test_groups_partition_and_order(batch: tuple[list[int], list[int]], max_group: int | None,
                                    call_cost: float | None) -> None:
    depths, lengths = np.array(batch[0], dtype=np.int64), np.array(batch[1], dtype=np.int64)
    groups = plan_groups(depths, lengths, max_group, call_cost=call_cost)
    flat = np.concatenate([g.indices for g in groups]) if groups else np.zeros(0, dtype=np.int64)
    assert sorted(flat.tolist()) == list(range(len(depths)))  # a permutation
    assert [g.depth for g in groups] == sorted(g.depth for g in groups)
    for g in groups:
        assert (depths[g.indices] == g.depth).all()
        assert np.all(np.diff(lengths[g.indices]) >= 0)  # sorted by length inside a group
        assert g.indices.size >= 1 and (max_group is None or g.indices.size <= max_group)
    if max_group is None and call_cost is None:
        assert len(groups) == len(set(depths.tolist()))


def _cost(lengths: np.ndarray, cuts: list[int], call_cost: float) -> float:
    """Padded tokens of the calls ``cuts`` makes of sorted ``lengths``, plus ``call_cost`` per call."""
    return sum((b - a) * lengths[b - 1] + call_cost for a, b in zip([0, *cuts[:-1]], cuts))


def _all_cuts(n: int, max_rows: int) -> list[list[int]]:
    """Every way to cut n sorted rows into calls of at most max_rows (brute force, small n)."""
    if n == 0:
        return [[]]
    return [[*head, n] for k in range(max(0, n - max_rows), n) for head in _all_cuts(k, max_rows)]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(1, 64), min_size=0, max_size=8), st.integers(1, 9), st.floats(0, 200))
def test_length_cuts_are_optimal_and_valid(lengths: list[int], max_rows: int, call_cost: float) -> None:
    n = np.sort(np.array(lengths, dtype=np.int64))
    cuts = length_cuts(n, max_rows, call_cost)
    assert cuts == sorted(set(cuts)) and (cuts[-1] == len(n) if len(n) else cuts == [])
    assert all(1 <= b - a <= max_rows for a, b in zip([0, *cuts[:-1]], cuts))
    best = min(_cost(n, c, call_cost) for c in _all_cuts(len(n), max_rows))
    assert _cost(n, cuts, call_cost) == pytest.approx(best)
    fixed = list(range(max_rows, len(n), max_rows)) + ([len(n)] if len(n) else [])
    assert _cost(n, cuts, call_cost) <= _cost(n, fixed, call_cost) + 1e-9  # never worse than fixed chunks


def test_length_cuts_extremes_and_errors() -> None:
    n = np.array([3, 3, 5, 9, 9, 9, 40])
    assert length_cuts(n, 64, 0.0) == [2, 3, 6, 7]  # free calls: one per distinct length, no padding
    assert length_cuts(n, 64, 1e9) == [7]  # expensive calls: one
    assert length_cuts(n, 3, 1e9) == [3, 6, 7]  # three calls of <= 3 rows; padding picks where
    with pytest.raises(ConfigError, match="sorted"):
        length_cuts(np.array([5, 3]), 4, 1.0)
    with pytest.raises(ConfigError, match="max_rows"):
        length_cuts(n, 0, 1.0)


@settings(max_examples=50, deadline=None)
@given(batches.filter(lambda b: len(b[0]) > 0))
def test_restore_order_is_identity_of_per_row_results(batch: tuple[list[int], list[int]]) -> None:
    depths, lengths = np.array(batch[0]), np.array(batch[1])
    groups = plan_groups(depths, lengths, max_group=3)
    # each "engine" returns (row id, depth) for its rows: restore must put every row back in place
    outputs = [np.stack([g.indices, np.full(g.indices.size, g.depth)], axis=1) for g in groups]
    restored = restore_order(groups, outputs)
    assert restored[:, 0].tolist() == list(range(len(depths)))
    assert restored[:, 1].tolist() == depths.tolist()


def test_ties_keep_input_order() -> None:
    groups = plan_groups(np.array([2, 2, 1, 2]), np.array([5, 5, 9, 3]))
    assert [(g.depth, g.indices.tolist()) for g in groups] == [(1, [2]), (2, [3, 0, 1])]


def test_bad_inputs() -> None:
    with pytest.raises(ConfigError, match="equal length"):
        plan_groups(np.array([1, 2]), np.array([3]))
    with pytest.raises(ConfigError, match="integers >= 1"):
        plan_groups(np.array([0, 1]), np.array([3, 4]))
    with pytest.raises(ConfigError, match="max_group"):
        plan_groups(np.array([1]), np.array([3]), max_group=0)
    g = [Group(1, np.array([0, 1]))]
    with pytest.raises(ConfigError, match="expected"):
        restore_order(g, [np.zeros((3, 2))])
    with pytest.raises(ConfigError, match="repeat"):
        restore_order([Group(1, np.array([0, 0]))], [np.zeros((2, 2))])
    with pytest.raises(ConfigError, match="1 groups but 0 outputs"):
        restore_order(g, [])
    assert plan_groups(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)) == []


def test_parse_call_cost() -> None:
    assert [parse_call_cost(v) for v in ("auto", "off", "none", None, "12", 3)] == ["auto", None, None, None, 12.0, 3]
    for bad in ("x", "-1", float("nan")):
        with pytest.raises(ConfigError, match="call cost"):
            parse_call_cost(bad)
