"""The layer-by-layer walk (`runtime.layerwise`) on NumPy segments: its cuts and its exits, property-tested.

The fake segments carry each row's id through the layers and answer layer k with a fixed (N, L, C) table of
logits, so the walk's depths and logits can be checked against `geep_deploy.exits` on that table for any cut.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geep_deploy.errors import ConfigError
from geep_deploy.exits import entropy_exit_depths, patience_exit_depths
from runtime.dispatch import length_cuts
from runtime.layerwise import EntropyExit, PatienceExit, cut_rows, run_layerwise

L, C = 4, 3


class TableSegments:
    """Segments whose layer k answers ``table[row, k - 1]``; records (rows, width) of every layer call."""

    def __init__(self, table: np.ndarray) -> None:
        self.table, self.calls, self.copies = table, [], 0

    def embed(self, feed):
        ids = feed["input_ids"][:, :1].astype(np.float64) - 1.0  # row id + 1 in every real token
        return {"hidden": np.repeat(ids[:, :, None], feed["input_ids"].shape[1], axis=1)[:, :, 0],
                "attention_mask": feed["attention_mask"]}

    def layer(self, k, state):
        self.calls.append((state["hidden"].shape[0], state["hidden"].shape[1]))
        rows = state["hidden"][:, 0].astype(np.int64)
        return self.table[rows, k - 1].astype(np.float32)

    def keep(self, state, rows, width):
        self.copies += 1
        return {k: np.ascontiguousarray(v[rows, :width]) for k, v in state.items()}

    def close(self):
        pass


def _feed(lengths: np.ndarray) -> dict[str, np.ndarray]:
    n, width = len(lengths), int(lengths.max())
    mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)
    ids = (np.arange(n)[:, None] + 1) * mask
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=0, max_size=30), st.one_of(st.none(), st.floats(0, 100)),
       st.one_of(st.none(), st.integers(1, 9)))
def test_cut_rows_partition_in_order(lengths: list[int], call_cost: float | None, max_rows: int | None) -> None:
    lens = np.asarray(lengths, dtype=np.int64)
    rows = np.argsort(lens, kind="stable")
    pieces = cut_rows(rows, lens, call_cost, max_rows)
    flat = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
    assert flat.tolist() == rows.tolist()  # the pieces are the rows, in order
    assert all(len(p) >= 1 and (max_rows is None or len(p) <= max_rows) for p in pieces)
    if call_cost is None:
        assert len(pieces) == (0 if not len(rows) else -(-len(rows) // (max_rows or len(rows))))
    elif len(rows):  # the cuts are length_cuts' (least padded work plus the cost per call)
        ends = np.cumsum([len(p) for p in pieces]).tolist()
        assert ends == length_cuts(lens[rows], min(max_rows or len(rows), len(rows)), call_cost)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 25).flatmap(lambda n: st.tuples(
           st.lists(st.integers(1, 30), min_size=n, max_size=n),
           st.integers(0, 2**31 - 1))),
       st.one_of(st.none(), st.floats(0, 50)), st.one_of(st.none(), st.integers(1, 8)),
       st.sampled_from([("entropy", 0.0), ("entropy", 0.6), ("entropy", 0.9), ("entropy", 1.0),
                        ("patience", 1), ("patience", 2)]))
def test_walk_exits_match_the_rules_for_every_cut(batch, call_cost, max_rows, rule) -> None:
    """Whatever the cuts, every row exits where the rule on the full table says, with that depth's logits; with
    a call cost every call is trimmed to its own longest row and holds at most ``max_rows`` rows."""
    lengths, seed = np.asarray(batch[0], dtype=np.int64), batch[1]
    table = np.random.default_rng(seed).normal(0.0, 2.0, (len(lengths), L, C))
    kind, knob = rule
    exit_rule = EntropyExit(knob) if kind == "entropy" else PatienceExit(knob)
    want = entropy_exit_depths(table, knob) if kind == "entropy" else patience_exit_depths(table, knob)
    seg = TableSegments(table)
    logits, depth = run_layerwise(seg, _feed(lengths), L, exit_rule, call_cost=call_cost, max_rows=max_rows)
    np.testing.assert_array_equal(depth, want)
    np.testing.assert_allclose(logits, table[np.arange(len(lengths)), want - 1].astype(np.float32))
    assert all(max_rows is None or r <= max_rows for r, _ in seg.calls)
    if call_cost is not None:
        assert all(w in set(lengths.tolist()) for _, w in seg.calls)  # no call padded past its longest row


def test_a_layer_no_row_leaves_copies_no_state() -> None:
    """Rows stay where they are until one leaves: a walk where no row exits before L copies no state (`keep`)."""
    table = np.random.default_rng(5).normal(0.0, 2.0, (7, L, C))
    for call_cost in (None, 8.0):
        seg = TableSegments(table)
        _, depth = run_layerwise(seg, _feed(np.arange(1, 8)), L, EntropyExit(0.0), call_cost=call_cost)
        assert (depth == L).all() and seg.copies == 0 and len(seg.calls) >= L


def test_patience_state_is_fresh_per_batch() -> None:
    """A rule is a frozen value: two batches through one `PatienceExit` do not share their counts."""
    rule = PatienceExit(2)
    table = np.random.default_rng(3).normal(0.0, 2.0, (6, L, C))
    lengths = np.arange(1, 7)
    first = run_layerwise(TableSegments(table), _feed(lengths), L, rule)[1]
    again = run_layerwise(TableSegments(table), _feed(lengths), L, rule)[1]
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, patience_exit_depths(table, 2))


@pytest.mark.parametrize("bad", [-0.1, 1.5, "0.3", None, True])
def test_entropy_exit_threshold_is_checked(bad) -> None:
    with pytest.raises(ConfigError, match=r"threshold is a normalised entropy in \[0, 1\]"):
        EntropyExit(bad)
    with pytest.raises(ConfigError, match="patience >= 1"):
        PatienceExit(0)
